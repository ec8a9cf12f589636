"""The collector's pauses counted by generation, and startup's objects frozen (gateway/hub/collector.py)."""

from __future__ import annotations

import gc
import re

from gateway.hub.collector import BUCKETS, COLLECTOR_PAUSES, CollectorPauses, freeze_startup_objects


def _driven(pauses: list[tuple[int, float]]) -> CollectorPauses:
    """A histogram fed `(generation, seconds)` pauses through its gc callback, with a clock the test moves."""
    now = [0.0]
    figures = CollectorPauses(clock=lambda: now[0])
    for generation, seconds in pauses:
        figures._callback("start", {"generation": generation})
        now[0] += seconds
        figures._callback("stop", {"generation": generation, "collected": 0, "uncollectable": 0})
    return figures


def test_each_pause_counts_in_every_bucket_at_or_above_it_and_in_its_generation_only():
    figures = _driven([(2, 0.007), (2, 0.3), (0, 0.0004)])
    assert figures.count(2) == 2 and figures.count(0) == 1 and figures.count(1) == 0
    assert abs(figures.seconds(2) - 0.307) < 1e-9 and abs(figures.seconds(0) - 0.0004) < 1e-9
    # 7 ms: not in le=0.005, in le=0.01 and above; 300 ms is above the last bound, so only in +Inf (the count).
    assert [figures.bucket(2, bound) for bound in BUCKETS] == [0, 0, 0, 1, 1, 1, 1, 1]
    assert [figures.bucket(0, bound) for bound in BUCKETS] == [1] * len(BUCKETS)


def test_the_prometheus_text_is_a_histogram_per_generation_with_cumulative_buckets():
    text = "\n".join(_driven([(1, 0.002), (1, 0.03), (1, 0.03)]).lines())
    assert "# TYPE gateway_gc_pause_seconds histogram" in text
    buckets = re.findall(r'^gateway_gc_pause_seconds_bucket\{generation="1",le="([^"]+)"\} (\d+)$', text, re.M)
    assert [bound for bound, _ in buckets] == [str(bound) for bound in BUCKETS] + ["+Inf"]
    assert [int(count) for _, count in buckets] == [0, 1, 1, 1, 1, 3, 3, 3, 3]
    assert re.search(r'^gateway_gc_pause_seconds_count\{generation="1"\} 3$', text, re.M)
    assert re.search(r'^gateway_gc_pause_seconds_sum\{generation="1"\} 0\.062000$', text, re.M)
    assert re.search(r'^gateway_gc_pause_seconds_count\{generation="2"\} 0$', text, re.M)


def test_installed_it_counts_the_collections_python_runs():
    figures = CollectorPauses()
    automatic = gc.isenabled()
    gc.disable()  # no collection of Python's own choosing in between: only the three asked for below
    try:
        figures.install()
        figures.install()  # twice is once
        try:
            before = figures.count(2)
            gc.collect(2)
            gc.collect(2)
        finally:
            figures.uninstall()
        gc.collect(2)  # after uninstall: not counted
    finally:
        if automatic:
            gc.enable()
    assert figures.count(2) == before + 2
    assert figures.seconds(2) > 0 and figures.bucket(2, BUCKETS[-1]) <= figures.count(2)


def test_freezing_moves_what_exists_out_of_the_collectors_reach_and_says_how_much():
    built_at_startup = [object()]
    try:
        frozen = freeze_startup_objects()
        assert frozen == gc.get_freeze_count() > 0
        assert not any(item is built_at_startup for item in gc.get_objects()), "a frozen object is in no generation"
        assert f"gateway_gc_frozen_objects {frozen}" in COLLECTOR_PAUSES.lines()
        made_later = [object()]
        assert any(item is made_later for item in gc.get_objects()), "what is made after the freeze is collected as before"
    finally:
        gc.unfreeze()  # the test process goes on as it was
        COLLECTOR_PAUSES.froze(0)

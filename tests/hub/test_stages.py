"""Stage timing (gateway/hub/stages.py): a timed block adds its seconds and count to its own stage, on the clock its
kind calls for, whatever happens inside it. The clocks are replaced with scripted ones, so nothing here waits."""

from __future__ import annotations

import itertools

import pytest

from gateway.hub import stages
from gateway.hub.stages import StageTimes


class ScriptedClock:
    """Returns the readings it was given, in order; counts how often it was read."""

    def __init__(self, *readings: float) -> None:
        self._readings = iter(readings)
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return next(self._readings)


@pytest.fixture
def clocks(monkeypatch):
    cpu, wall = ScriptedClock(10.0, 10.25, 20.0, 20.5), ScriptedClock(100.0, 101.5, 200.0, 200.125)
    monkeypatch.setattr(stages.time, "thread_time", cpu)
    monkeypatch.setattr(stages.time, "perf_counter", wall)
    return cpu, wall


def test_a_cpu_stage_counts_thread_time_and_a_database_stage_wall_time(clocks):
    cpu, wall = clocks
    times = StageTimes()

    with times.timed("signature"):
        pass
    with times.timed("insert", count=32):
        pass

    assert times.seconds("signature") == 0.25 and times.count("signature") == 1
    assert times.seconds("insert") == 1.5 and times.count("insert") == 32
    assert (cpu.reads, wall.reads) == (2, 2), "each block reads its own clock twice, and only its own"
    untouched = [name for name, _ in stages.STAGES if name not in ("signature", "insert")]
    assert all(times.seconds(name) == 0 and times.count(name) == 0 for name in untouched)


def test_a_block_that_raises_is_counted_and_the_error_goes_on(clocks):
    times = StageTimes()

    with pytest.raises(KeyError, match="boom"):
        with times.timed("seal"):
            raise KeyError("boom")

    assert times.seconds("seal") == 0.25 and times.count("seal") == 1


def test_blocks_add_up_in_the_slot_the_process_uses_when_they_end(clocks):
    """A worker takes its slot after the fork; a block open across that moment counts in the new slot."""
    times = StageTimes()
    times.board.share(2)

    with times.timed("commit"):
        times.board.use_slot(1)
    with times.timed("commit"):
        pass

    width = len(times.board.names)
    position = times.board.index["seconds:commit"]
    assert [times.board._all[slot * width + position] for slot in range(2)] == [0.0, 1.5 + 0.125]
    assert times.count("commit") == 2


def test_an_unknown_stage_is_refused_before_the_block_runs():
    ran = itertools.count()
    with pytest.raises(KeyError):
        with StageTimes().timed("no-such-stage"):
            next(ran)
    assert next(ran) == 0

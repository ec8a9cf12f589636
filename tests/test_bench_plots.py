"""bench/plots.py draws the open loop's latency against the offered rate from bench/accept.py --rate results.

The plot is read by people, so the test checks what can be checked without looking: a PNG is written for open-loop
results and named by the newest run's date, a closed-loop result gives none, and a run whose hub fell behind is told
apart by its note, as accept.py writes it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import plots  # noqa: E402  (bench/plots.py)


def _accept_result(rate: float | None, concurrency: int, p50: float, p99: float, date: str, behind: bool = False) -> dict:
    notes = ["the hub did not keep up with the offered rate: 1,186.2 of 1600 messages/s accepted; 7 requests left "
             "over 10 ms after they were due"] if behind else []
    return {"benchmark": "accept", "date": date, "open_loop": rate is not None, "rate_per_s": rate,
            "concurrency": concurrency, "p50_ms": p50, "p99_ms": p99, "notes": notes}


def _plot(tmp_path: Path, runs: dict[str, dict]) -> Path:
    """Write each run as `accept-<name>.json`, run bench/plots.py on them all, and return its output folder."""
    paths = []
    for name, run in runs.items():
        path = tmp_path / f"accept-{name}.json"
        path.write_text(json.dumps(run), "utf-8")
        paths.append(str(path))
    out = tmp_path / "plots"
    assert plots.main([*paths, "--out", str(out)]) == 0
    return out


def test_open_loop_results_give_a_latency_against_rate_plot(tmp_path):
    runs = [
        _accept_result(600, 64, 21.1, 105.9, "2026-12-02T06:50:00Z"),
        _accept_result(1000, 64, 97.1, 2381.8, "2026-12-02T06:55:00Z", behind=True),
        _accept_result(1000, 128, 41.3, 271.5, "2026-12-03T07:10:00Z"),
        _accept_result(None, 64, 47.2, 134.7, "2026-12-04T06:40:00Z"),  # a closed loop: not on this plot
    ]
    out = _plot(tmp_path, {str(number): run for number, run in enumerate(runs)})

    drawn = out / "latency-vs-offered-rate-20261203.png"
    assert drawn.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [path.name for path in out.iterdir()] == [drawn.name], "nothing else: no pipeline or scaleout results"
    assert plots._fell_behind(runs[1]) and not plots._fell_behind(runs[0])


def test_closed_loop_results_alone_give_no_open_loop_plot(tmp_path):
    path = tmp_path / "accept.json"
    path.write_text(json.dumps(_accept_result(None, 64, 47.2, 134.7, "2026-12-02T06:40:00Z")), "utf-8")
    out = tmp_path / "plots"
    assert plots.main([str(path), "--out", str(out)]) == 0
    assert list(out.iterdir()) == []


def test_an_open_loop_with_a_timeline_gets_a_plot_of_its_seconds(tmp_path):
    """An open-loop result with a `timeline` (bench/accept.py since a5cdb7b) gets `timeline-<file's name>.png`; one
    without (older results) gets none of its own, nor does a closed loop."""
    with_timeline = _accept_result(350, 128, 33.5, 292.6, "2026-12-02T17:50:00Z") | {
        "accepted_per_s": 349.6, "timeline": [[0, 230, 143], [1, 468, 0], [2, 0, 0], [3, 388, 387]],
        "timeline_start": "2026-12-02T17:49:00.000Z",
        "over_bound": {"bound_ms": 100.0, "answers": 530, "seconds": 2, "share_in_worst_5_seconds": 1.0}}
    without = _accept_result(500, 128, 77.3, 308.0, "2026-12-02T17:55:00Z")
    closed = _accept_result(None, 64, 47.2, 134.7, "2026-12-02T17:40:00Z")
    out = _plot(tmp_path, {"open350": with_timeline, "open500": without, "closed": closed})

    drawn = out / "timeline-accept-open350.png"
    assert drawn.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(path.name for path in out.iterdir()) == ["latency-vs-offered-rate-20261202.png", drawn.name]

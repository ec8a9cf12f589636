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


def test_open_loop_results_give_a_latency_against_rate_plot(tmp_path):
    runs = [
        _accept_result(600, 64, 21.1, 105.9, "2026-12-02T06:50:00Z"),
        _accept_result(1000, 64, 97.1, 2381.8, "2026-12-02T06:55:00Z", behind=True),
        _accept_result(1000, 128, 41.3, 271.5, "2026-12-03T07:10:00Z"),
        _accept_result(None, 64, 47.2, 134.7, "2026-12-04T06:40:00Z"),  # a closed loop: not on this plot
    ]
    paths = []
    for number, run in enumerate(runs):
        path = tmp_path / f"accept-{number}.json"
        path.write_text(json.dumps(run), "utf-8")
        paths.append(str(path))
    out = tmp_path / "plots"

    assert plots.main([*paths, "--out", str(out)]) == 0

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

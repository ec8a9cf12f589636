"""bench/compare.py's arithmetic: which figures it reads from each benchmark's JSON, their medians, and the change.

The runs themselves are the benchmarks' (tests/test_bench_accept.py, tests/test_bench_pipeline.py run them)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import compare  # noqa: E402  (bench/compare.py)


def test_figures_are_read_down_dotted_paths_and_simulators_are_added_up():
    result = {"pipeline_per_s": 200.0, "p99_ms": 600, "ratio_to_echo": 0.1,
              "cpu_us_per_message": {"hub": 2700.0, "database": 500.0, "CN-GD": 1000.0, "HK": 600.0, "MO": 650.0}}
    assert compare.figure(result, "cpu_us_per_message.hub") == 2700.0
    assert compare.figure(result, "cpu_us_per_message.CN-GD+HK+MO") == 2250.0
    assert compare.figure(result, "cpu_us_per_message.nobody") is None
    assert compare.figure({"problems": ["exit 1"]}, "cpu_us_per_message.hub") is None


def test_the_change_is_of_the_medians_and_a_failed_run_counts_for_nothing():
    def run(rate: float, hub: float) -> dict:
        return {"accepted_per_s": rate, "p99_ms": 100.0, "hub_cpu_us_per_message": hub, "database_cpu_us_per_message": 300.0,
                "echo_ceiling_per_s": 5000.0, "ratio_to_echo": rate / 5000.0}

    summary = compare.summarise("accept", {
        "base": [run(700, 2000), run(600, 2200), run(720, 1900)],
        "checkout": [run(800, 1800), {"problems": ["timed out"]}, run(760, 1700)],
    })
    assert summary["medians"]["base"]["accepted_per_s"] == 700
    assert summary["medians"]["checkout"]["accepted_per_s"] == 780, "the median of the two runs that gave a figure"
    assert summary["values"]["checkout"]["accepted_per_s"] == [800, None, 760]
    assert summary["change"]["accepted_per_s"] == round(780 / 700 - 1, 4)
    assert summary["change"]["hub_cpu_us_per_message"] == round(1750 / 2000 - 1, 4)
    assert summary["change"]["database_cpu_us_per_message"] == 0.0


def test_a_scale_out_run_is_compared_by_both_phases_and_their_ratio():
    scaleout = {"pipeline_per_s": 380.0, "p99_ms": 700.0, "one_hub_pipeline_per_s": 420.0, "three_hubs_pipeline_per_s": 380.0,
                "ratio_3_to_1": 0.905}
    summary = compare.summarise("pipeline", {"base": [scaleout, {**scaleout, "ratio_3_to_1": 0.85}],
                                             "checkout": [{**scaleout, "ratio_3_to_1": 0.95}]})
    assert summary["medians"]["base"]["ratio_3_to_1"] == (0.905 + 0.85) / 2
    assert summary["change"]["ratio_3_to_1"] == round(0.95 / ((0.905 + 0.85) / 2) - 1, 4)
    assert summary["medians"]["checkout"]["three_hubs_pipeline_per_s"] == 380.0
    plain = compare.summarise("pipeline", {"base": [{"pipeline_per_s": 450.0}], "checkout": [{"pipeline_per_s": 460.0}]})
    assert plain["medians"]["base"]["ratio_3_to_1"] is None, "a plain pipeline run has no scale-out phases"
    assert "ratio_3_to_1" not in plain["change"]

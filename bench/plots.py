"""Plots of the issue 12 benchmarks: PNG files from the JSON results of bench/pipeline.py (and bench/accept.py).

    .venv/bin/python bench/plots.py bench/results/pipeline-*.json bench/results/bulk-*.json
    .venv/bin/python bench/plots.py --out docs/performance RESULT.json ...

Writes into `--out` (default docs/performance/):

- `throughput-vs-concurrency.png`: for every result with phases (`points`), end-to-end messages/s
  (and the hub's accepted messages/s) against households in flight, one line per result file;
  p99 time to receipt on a second axis. A sweep (`--sweep 16,32,64,128`) gives one point per level.
- `latency-<benchmark>-<date>.png`: the distribution of time to receipt of each result's main
  phase (the last point; for scaleout, every phase), as the cumulative share against
  milliseconds on a log scale, from the stored percentiles 1..99.9, with the log-spaced bucket
  counts as a histogram beneath.
- `scaleout-<date>.png`: end-to-end messages/s of one hub, two hubs (with `--two-hubs`), three
  hubs, and three hubs with one killed, for a scaleout result.
- `latency-vs-offered-rate-<date>.png`: for `bench/accept.py --rate` results (open loops), p50 and
  p99 latency from the due times against the offered rate, one line per number of connections,
  with the acceptance target's bounds (1,500/s, 100 ms) drawn in; a run whose hub fell behind
  is marked with a cross. `<date>` is the newest run's.
- `timeline-<result file's name>.png`: for each open-loop result with a `timeline` (bench/accept.py since
  a5cdb7b), its answers second by second, and those over 100 ms from their due time: whether the tail
  came in a few bad seconds or all through the run.

Needs matplotlib (`.venv/bin/pip install matplotlib`); uses the Agg backend (no display).
Prints the files it wrote, one a line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "docs" / "performance"


def _load(paths: Sequence[Path]) -> list[tuple[Path, dict[str, Any]]]:
    results = []
    for path in paths:
        try:
            document = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError) as error:
            print(f"plots: skipping {path}: {error}", file=sys.stderr)
            continue
        if isinstance(document, dict):
            results.append((path, document))
    return results


def _label(path: Path, document: dict[str, Any]) -> str:
    """"pipeline 6112209 2026-11-29": results of one day are told apart by their commit."""
    date = (document.get("date") or "")[:10]
    commit = document.get("commit") or (document.get("machine") or {}).get("commit") or ""
    return " ".join(part for part in (document.get("benchmark", path.stem), commit, date) if part)


def throughput_plot(results: list[tuple[Path, dict[str, Any]]], out: Path, plt: Any) -> Path | None:
    series = []
    for path, document in results:
        points = [p for p in document.get("points") or [] if p.get("households_in_flight") and p.get("pipeline_per_s") is not None]
        if document.get("benchmark") == "scaleout":
            continue  # phases of a scaleout run differ in hubs, not concurrency
        if points:
            series.append((_label(path, document), sorted(points, key=lambda p: p["households_in_flight"])))
    if not series:
        return None
    figure, left = plt.subplots(figsize=(8, 5), dpi=110)
    right = left.twinx()
    for label, points in series:
        x = [p["households_in_flight"] for p in points]
        line, = left.plot(x, [p["pipeline_per_s"] for p in points], marker="o", label=f"{label}: end-to-end messages/s")
        accepted = [p.get("accepted_per_s") for p in points]
        if all(value is not None for value in accepted):
            left.plot(x, accepted, marker="s", linestyle="--", color=line.get_color(), alpha=0.6,
                      label=f"{label}: hub accepted messages/s")
        right.plot(x, [p.get("p99_ms") or 0 for p in points], marker="x", linestyle=":", color=line.get_color(),
                   label=f"{label}: p99 time to receipt (ms)")
    left.set_xscale("log", base=2)
    left.set_xlabel("households in flight (concurrency)")
    left.set_ylabel("messages per second")
    right.set_ylabel("p99 time to receipt, ms")
    left.set_ylim(bottom=0)
    right.set_ylim(bottom=0)
    left.grid(True, alpha=0.3)
    handles = left.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    labels = left.get_legend_handles_labels()[1] + right.get_legend_handles_labels()[1]
    left.legend(handles, labels, fontsize=7, loc="upper left")
    left.set_title("Throughput against concurrency (household re-verification)")
    figure.tight_layout()
    target = out / "throughput-vs-concurrency.png"
    figure.savefig(target)
    plt.close(figure)
    return target


def latency_plot(path: Path, document: dict[str, Any], out: Path, plt: Any) -> Path | None:
    points = document.get("points") or []
    chosen = points if document.get("benchmark") == "scaleout" else points[-1:]
    chosen = [p for p in chosen if (p.get("time_to_receipt_histogram") or {}).get("percentiles_ms")]
    if not chosen:
        return None
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(8, 7), dpi=110, sharex=True)
    for point in chosen:
        histogram = point["time_to_receipt_histogram"]
        shares = sorted(histogram["percentiles_ms"].items(), key=lambda item: float(item[0]))
        top.plot([value for _, value in shares], [float(share) for share, _ in shares], marker=".",
                 label=f"{point.get('phase')} (p50 {point.get('p50_ms')} ms, p99 {point.get('p99_ms')} ms)")
        edges, counts = histogram.get("buckets_ms") or [], histogram.get("counts") or []
        if edges and counts:
            lefts = [edges[0] / 10 ** 0.1, *edges]
            widths = [right - left for left, right in zip(lefts, [*edges, edges[-1] * 10 ** 0.1])]
            bottom.bar(lefts, counts, width=widths, align="edge", alpha=0.5, label=point.get("phase"))
    values = [value for point in chosen for value in point["time_to_receipt_histogram"]["percentiles_ms"].values() if value]
    if values:
        top.set_xlim(max(min(values) / 2, 0.05), max(max(values), max(p.get("max_ms") or 0 for p in chosen)) * 2)
    top.set_xscale("log")
    top.set_ylabel("percentile")
    top.set_ylim(0, 100)
    top.grid(True, which="both", alpha=0.3)
    top.legend(fontsize=7)
    top.set_title(f"Time to receipt: {_label(path, document)} (send to the sender's pull of the receipt)")
    bottom.set_xlabel("milliseconds (log)")
    bottom.set_ylabel("messages")
    bottom.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    date = (document.get("date") or "undated")[:10].replace("-", "")
    target = out / f"latency-{document.get('benchmark', path.stem)}-{date}.png"
    figure.savefig(target)
    plt.close(figure)
    return target


_PHASE_COLOURS = {"one-hub": "#4878a8", "two-hubs": "#e69138", "three-hubs": "#6aa84f", "three-hubs-kill": "#cc4125"}


def scaleout_plot(path: Path, document: dict[str, Any], out: Path, plt: Any) -> Path | None:
    points = document.get("points") or []
    if document.get("benchmark") != "scaleout" or not points:
        return None
    figure, axis = plt.subplots(figsize=(7, 4.5), dpi=110)
    names = [p.get("phase", "?") for p in points]
    values = [p.get("pipeline_per_s") or 0 for p in points]
    bars = axis.bar(names, values, color=[_PHASE_COLOURS.get(name, "#999999") for name in names])
    for bar, point in zip(bars, points):
        axis.annotate(f"{point.get('pipeline_per_s')}/s\np99 {point.get('p99_ms')} ms",
                      (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=8)
    axis.set_ylabel("end-to-end messages per second")
    ratio = document.get("ratio_3_to_1")
    axis.set_title(f"Scale-out: {_label(path, document)}; three hubs / one = {ratio}")
    axis.set_ylim(0, max(values + [1]) * 1.25)
    axis.grid(True, axis="y", alpha=0.3)
    figure.tight_layout()
    date = (document.get("date") or "undated")[:10].replace("-", "")
    target = out / f"scaleout-{date}.png"
    figure.savefig(target)
    plt.close(figure)
    return target


TARGET_RATE = 1500
TARGET_P99_MS = 100
"""Issue 12's acceptance target: at least this many messages/s with p99 at most this."""


def open_loop_plot(results: list[tuple[Path, dict[str, Any]]], out: Path, plt: Any) -> Path | None:
    runs = [document for _, document in results
            if document.get("benchmark") == "accept" and document.get("open_loop") and document.get("rate_per_s")]
    if not runs:
        return None
    by_connections: dict[int, list[dict[str, Any]]] = {}
    for document in runs:
        by_connections.setdefault(document.get("concurrency") or 0, []).append(document)
    figure, axis = plt.subplots(figsize=(8, 5), dpi=110)
    for connections, documents in sorted(by_connections.items()):
        documents.sort(key=lambda document: document["rate_per_s"])
        rates = [document["rate_per_s"] for document in documents]
        line, = axis.plot(rates, [document["p99_ms"] for document in documents], marker="o",
                          label=f"p99, {connections} connections")
        axis.plot(rates, [document["p50_ms"] for document in documents], marker=".", linestyle="--",
                  color=line.get_color(), alpha=0.6, label=f"p50, {connections} connections")
        behind = [document for document in documents if _fell_behind(document)]
        if behind:
            axis.scatter([document["rate_per_s"] for document in behind], [document["p99_ms"] for document in behind],
                         marker="x", s=90, color="black", zorder=3)
    axis.axhline(TARGET_P99_MS, color="#cc4125", linewidth=1, linestyle=":", label=f"target p99 {TARGET_P99_MS} ms")
    axis.axvline(TARGET_RATE, color="#cc4125", linewidth=1, linestyle=":", label=f"target rate {TARGET_RATE:,}/s")
    axis.set_yscale("log")
    axis.set_xlabel("offered messages per second (open loop)")
    axis.set_ylabel("latency from the due time, ms (log)")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=7, loc="upper left")
    dates = sorted((document.get("date") or "undated")[:10] for document in runs)
    axis.set_title(f"Acceptance in an open loop, {dates[0]}" + (f" to {dates[-1]}" if dates[-1] != dates[0] else "")
                   + " (x: the hub fell behind)")
    figure.tight_layout()
    target = out / f"latency-vs-offered-rate-{dates[-1].replace('-', '')}.png"
    figure.savefig(target)
    plt.close(figure)
    return target


def timeline_plot(path: Path, document: dict[str, Any], out: Path, plt: Any) -> Path | None:
    rows = document.get("timeline") or []
    if document.get("benchmark") != "accept" or not rows:
        return None
    seconds = [row[0] for row in rows]
    summary = document.get("over_bound") or {}
    figure, axis = plt.subplots(figsize=(9, 4), dpi=110)
    axis.bar(seconds, [row[1] for row in rows], width=0.9, color="#9fb8d0", label="answers")
    axis.bar(seconds, [row[2] for row in rows], width=0.9, color="#cc4125",
             label=f"answers over {summary.get('bound_ms', TARGET_P99_MS):g} ms from their due time")
    share = summary.get("share_in_worst_5_seconds")
    axis.set_title(f"Open loop at {document.get('rate_per_s'):g}/s, {document.get('concurrency')} connections: "
                   f"{document.get('accepted_per_s')}/s, p99 {document.get('p99_ms')} ms; over the bound: "
                   f"{summary.get('answers', 0):,} in {summary.get('seconds', 0)} s"
                   + (f", {share:.0%} in the worst 5" if share is not None else ""), fontsize=9)
    axis.set_xlabel(f"second of the run (from {document.get('timeline_start') or 'the first answer'})")
    axis.set_ylabel("answers in the second")
    axis.grid(True, axis="y", alpha=0.3)
    axis.set_ylim(0, max(row[1] for row in rows) * 1.3 or 1)  # room above the bars for the legend
    axis.legend(fontsize=7, loc="upper right", ncol=2)
    figure.tight_layout()
    target = out / f"timeline-{path.stem}.png"
    figure.savefig(target)
    plt.close(figure)
    return target


def _fell_behind(document: dict[str, Any]) -> bool:
    """The run's note says so (bench/accept.py: fewer than 98 % of rate x seconds accepted)."""
    return any("did not keep up" in note for note in document.get("notes") or [])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path, help="JSON results of bench/pipeline.py and bench/accept.py")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the PNG files (default docs/performance)")
    arguments = parser.parse_args(argv)
    try:
        import matplotlib
    except ImportError:
        print("plots: matplotlib is not installed (.venv/bin/pip install matplotlib)", file=sys.stderr)
        return 2
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = _load(arguments.results)
    if not results:
        print("plots: no readable result", file=sys.stderr)
        return 1
    arguments.out.mkdir(parents=True, exist_ok=True)
    written = [throughput_plot(results, arguments.out, plt), open_loop_plot(results, arguments.out, plt)]
    for path, document in results:
        written.append(latency_plot(path, document, arguments.out, plt))
        written.append(scaleout_plot(path, document, arguments.out, plt))
        written.append(timeline_plot(path, document, arguments.out, plt))
    for target in written:
        if target is not None:
            print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())

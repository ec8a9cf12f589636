"""bench/person_index.py: the person index's insert measured with and without migration 0013's message index, on
the real table's shape (a short run; the figures are docs/performance.md's, not asserted here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_two_tables_differ_by_the_message_index_alone_and_every_row_is_counted(database_url, tmp_path):
    out = tmp_path / "result.json"
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "person_index.py"), "--batches", "4", "--database-url", database_url,
         "--json-out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(out.read_text("utf-8"))
    assert result == json.loads(run.stdout), "the file holds what was printed"
    assert result["rows"] == 4 * 1_500 and result["batches_counted"] == 4
    assert set(result["us_per_row"]) == {"with_index", "without_index"} and min(result["us_per_row"].values()) > 0
    assert result["extra_us_per_row"] == round(result["us_per_row"]["with_index"] - result["us_per_row"]["without_index"], 3)
    sizes = result["table_bytes"]
    assert sizes["with_index"] > sizes["without_index"], "the same rows, and one more B-tree"
    assert result["embedded"] is False and result["postgresql"]

"""`gateway subject export|purge` (gateway/console/subjects.py): a lawful access request, then a lawful erasure
request, about the person the demo's referral names — ledgered, with the ledger still verifying."""

from __future__ import annotations

import hashlib
import json
import stat

from tests.console.harness import cli, query, story_exchange

NUMBER = "a 123456 (3)"
"""The HKID of the demo referral's first member (schemas/referral.submit.json), as a clerk might type it."""
REASON = "Access request 2026/031 under PDPO s.18, then erasure request 2026/032"


def _kinds(database_url: str) -> list[dict]:
    return [json.loads(row["entry"]) for row in query(database_url, "SELECT entry FROM ledger_entries ORDER BY idx")]


def test_a_person_gets_everything_held_and_then_has_it_erased_with_the_ledger_still_verifying(database_url, tmp_path):
    data_dir = tmp_path / "exchange"
    with story_exchange(database_url, data_dir) as site:
        referral_case = site.story.cases["referral CN-GD -> HK"]
        where = ["--data-dir", str(data_dir), "--database-url", database_url]

        out = tmp_path / "export.json"
        exported = cli("subject", "export", "--out", str(out), "--reason", REASON, *where, stdin=(NUMBER + "\n").encode())
        assert exported.status == 0, exported.stderr
        assert stat.S_IMODE(out.stat().st_mode) == 0o600
        document = json.loads(out.read_text("utf-8"))
        assert document["format"] == "gba-subject-export/v1" and document["cases"] == [referral_case]
        submits = [m for m in document["messages"] if m["type"] == "referral.submit"]
        assert len(submits) == 1 and "CHAN" in {n["family"] for n in submits[0]["payload"]["body"]["household"]["members"][0]["person"]["names"]}
        assert {m["case"] for m in document["messages"]} == {referral_case}
        assert _kinds(database_url)[document["ledger_index"]] | {"time": None} == {
            "v": 1, "kind": "subject-exported", "time": None, "cases": 1, "messages": len(document["messages"]),
            "request_digest": hashlib.sha256(REASON.encode()).hexdigest(),
        }
        assert "123456" not in out.read_text("utf-8").split('"payload"')[0], "the number is not echoed outside the payloads"

        dry = cli("subject", "purge", "--reason", REASON, *where, stdin=(NUMBER + "\n").encode())
        assert dry.status == 0 and f"would purge the payloads of {len(document['messages'])} messages in 1 cases" in dry.stdout
        assert query(database_url, "SELECT count(*) AS n FROM messages WHERE purged_at IS NOT NULL")[0]["n"] == 0

        purged = cli("subject", "purge", "--yes", "--reason", REASON, *where, stdin=(NUMBER + "\n").encode())
        assert purged.status == 0, purged.stderr
        rows = query(database_url, "SELECT case_id::text AS case, compact IS NULL AS gone FROM messages")
        assert all(row["gone"] for row in rows if row["case"] == referral_case)
        assert not any(row["gone"] for row in rows if row["case"] != referral_case), "the other cases keep their payloads"
        index = query(database_url, "SELECT m.case_id::text AS case FROM console_person_index i JOIN messages m ON m.id = i.message_id")
        assert index and referral_case not in {row["case"] for row in index}, \
            "no one the purged payloads named (the household's other members too) is found through them; the rest are"
        purges = [entry for entry in _kinds(database_url) if entry["kind"] == "payload-purged"]
        assert len(purges) == len(document["messages"]) and {p["reason"] for p in purges} == {"subject-request"}

        again = cli("subject", "export", "--out", str(tmp_path / "after.json"), "--reason", REASON, *where, stdin=(NUMBER + "\n").encode())
        assert again.status == 0 and json.loads((tmp_path / "after.json").read_text("utf-8"))["messages"] == []

    verified = cli("ledger", "verify", "--database-url", database_url)
    assert verified.status == 0, verified.stdout + verified.stderr


def test_a_request_without_a_number_or_a_reason_is_refused_and_changes_nothing(database_url, tmp_path):
    data_dir = tmp_path / "exchange"
    with story_exchange(database_url, data_dir):
        where = ["--data-dir", str(data_dir), "--database-url", database_url]
        size = query(database_url, "SELECT size FROM ledger_size")[0]["size"]
        bad_number = cli("subject", "purge", "--yes", "--reason", REASON, *where, stdin=b"??\n")
        assert bad_number.status == 1 and "not an identity number" in bad_number.stderr
        no_reason = cli("subject", "export", "--out", str(tmp_path / "x.json"), "--reason", "because", *where, stdin=(NUMBER + "\n").encode())
        assert no_reason.status == 1 and "10 to 500 characters" in no_reason.stderr
        assert not (tmp_path / "x.json").exists()
        assert query(database_url, "SELECT size FROM ledger_size")[0]["size"] == size, "nothing was ledgered"

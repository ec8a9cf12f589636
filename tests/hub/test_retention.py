"""Retention (gateway/hub/retention.py): payloads go when their route's retention ends; the rest stays.

The hub's clock is set three days back, so that a case ended then, on routes that keep
payloads one day, is due for purge by the real clock that `gateway retention run` uses.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta

from gateway.config import default_config
from gateway.protocol.ids import new_uuid7
from gateway.protocol.message import sign_message
from gateway.protocol.timestamps import format_timestamp
from tests.cli_runner import run_cli
from tests.hub.harness import Clock, query, running_hub
from tests.hub.test_delivery_pull import GD, HK, Party

ONE_DAY_ROUTES = tuple(dataclasses.replace(route, retention_days=1) for route in default_config(".").routes)


def _declined_referral(example, test_key, clock) -> tuple[bytes, bytes]:
    submit = dict(example("referral.submit"), id=new_uuid7(), case=new_uuid7(), created=format_timestamp(clock()))
    submit.update({"from": "CN-GD", "to": "HK"})
    decline = dict(example("referral.decline"), id=new_uuid7(), case=submit["case"], reply_to=submit["id"],
                   created=format_timestamp(clock()))
    decline.update({"from": "HK", "to": "CN-GD"})
    return sign_message(submit, test_key(GD)), sign_message(decline, test_key(HK))


def test_after_retention_the_payload_is_gone_the_purge_is_ledgered_and_the_ledger_verifies(database_url, example, test_key):
    three_days_ago = Clock()
    three_days_ago.offset = -timedelta(days=3)
    submit, decline = _declined_referral(example, test_key, three_days_ago)
    with running_hub(database_url, clock=three_days_ago, routes=ONE_DAY_ROUTES) as hub:
        first = hub.post_message(submit)
        assert first.status == 202 and hub.post_message(decline).status == 202, first.body
        Party(hub, test_key(HK), three_days_ago).deliveries()  # HK fetched the referral; CN-GD never fetches the decline

    purged = run_cli("retention", "run", "--database-url", database_url)
    assert purged.status == 0 and "deleted 2 payloads" in purged.stdout, purged.stdout + purged.stderr
    rows = query(database_url, "SELECT compact, payload_key, purged_at, hub_receipt FROM messages")
    assert len(rows) == 2 and all(row["compact"] is None and row["payload_key"] is None and row["purged_at"] for row in rows)
    assert not query(database_url, "SELECT 1 FROM outbox"), "nothing is left to deliver"

    entries = [json.loads(row["entry"]) for row in query(database_url, "SELECT entry FROM ledger_entries ORDER BY idx")]
    purges = [entry for entry in entries if entry["kind"] == "payload-purged"]
    assert len(purges) == 2 and {entry["reason"] for entry in purges} == {"retention"}
    assert {entry["undelivered"] for entry in purges} == {True}, "both deliveries were still unacknowledged"
    verified = run_cli("ledger", "verify", "--database-url", database_url)
    assert verified.status == 0, verified.stdout + verified.stderr

    with running_hub(database_url, routes=ONE_DAY_ROUTES) as hub:
        again = hub.post_message(submit)
        assert again.status == 202 and again.json()["replayed"] is True
        assert again.json()["hub_receipt"] == first.json()["hub_receipt"], "an identical resend after the purge gets its stored receipt"
    assert run_cli("retention", "run", "--database-url", database_url).stdout.startswith("no payload's retention has ended")


def test_a_case_still_open_keeps_its_payloads(database_url, example, test_key):
    three_days_ago = Clock()
    three_days_ago.offset = -timedelta(days=3)
    submit, _ = _declined_referral(example, test_key, three_days_ago)
    with running_hub(database_url, clock=three_days_ago, routes=ONE_DAY_ROUTES) as hub:
        assert hub.post_message(submit).status == 202
    assert run_cli("retention", "run", "--database-url", database_url).status == 0
    (row,) = query(database_url, "SELECT compact IS NOT NULL AS kept FROM messages")
    assert row["kept"], "retention counts from the end of the case"

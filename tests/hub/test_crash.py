"""A hub process killed (SIGKILL) in the middle of a group commit loses nothing it answered.

`GATEWAY_KILL_POINT` (gateway.hub.faults) makes `gateway serve` kill itself at an
exact point of the N-th batch — not a sleep and a hope. After a restart: every message
that got a 202 is stored, with its ledger entry; the ledger has no gap; nothing of the
killed batch is half-written; its senders resend the identical bytes and are answered.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import signal
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import pytest

from gateway.protocol.ids import new_uuid7
from gateway.protocol.message import sign_message
from gateway.protocol.timestamps import format_timestamp, utc_now
from tests.hub.harness import RunningHub, serve_process

@contextmanager
def serve(tmp_path: Path, database_url: str, kill_point: str | None = None):
    with serve_process(tmp_path, database_url, {"GATEWAY_KILL_POINT": kill_point} if kill_point else {}) as running:
        yield running


def _messages(example, test_key, count: int) -> list[tuple[str, bytes]]:
    out = []
    for _ in range(count):
        payload = dict(example("referral.submit"), id=new_uuid7(), case=new_uuid7(), created=format_timestamp(utc_now().replace(microsecond=0)))
        out.append((payload["id"], sign_message(payload, test_key("test-cn-gd-message-1"))))
    return out


def _post_all(hub: RunningHub, messages: list[tuple[str, bytes]]) -> dict[str, int | None]:
    def post(item):
        message_id, compact = item
        try:
            return message_id, hub.post_message(compact).status
        except (OSError, http.client.HTTPException):  # a killed server answers nothing
            return message_id, None

    with ThreadPoolExecutor(max_workers=12) as pool:
        return dict(pool.map(post, messages))


def _database(database_url: str) -> dict:
    async def read():
        connection = await asyncpg.connect(database_url)
        try:
            return {
                "messages": {str(r["id"]): r["ledger_index"] for r in await connection.fetch("SELECT id, ledger_index FROM messages")},
                "entries": [(r["idx"], json.loads(r["entry"])) for r in await connection.fetch("SELECT idx, entry FROM ledger_entries ORDER BY idx")],
                "size": await connection.fetchval("SELECT size FROM ledger_size"),
                "outbox": await connection.fetchval("SELECT count(*) FROM outbox"),
            }
        finally:
            await connection.close()

    return asyncio.run(read())


def _assert_consistent(state: dict) -> None:
    indexes = [index for index, _ in state["entries"]]
    assert indexes == list(range(state["size"])), "the ledger has a gap or an extra entry"
    accepted = {entry["message_id"]: index for index, entry in state["entries"] if entry["kind"] == "accepted"}
    assert accepted == state["messages"], "every stored message has exactly its ledger entry, and no entry lacks its message"
    assert state["outbox"] == len(state["messages"])


@pytest.mark.parametrize("stage", ["before-commit", "after-commit"])
def test_a_process_killed_during_a_group_commit_loses_nothing_it_answered(tmp_path, database_url, example, test_key, stage):
    messages = _messages(example, test_key, 40)
    with serve(tmp_path, database_url, kill_point=f"{stage}:4") as (process, hub):
        answers = _post_all(hub, messages)
        assert process.wait(60) == -signal.SIGKILL, "the kill point was never reached"
    answered = {message_id for message_id, status in answers.items() if status == 202}
    unanswered = [item for item in messages if answers[item[0]] is None]
    assert answered and unanswered, answers
    assert all(status in (202, None) for status in answers.values()), answers

    state = _database(database_url)
    _assert_consistent(state)
    assert answered <= set(state["messages"]), "a message answered 202 is missing after the crash"
    if stage == "before-commit":
        assert not {message_id for message_id, _ in unanswered} & set(state["messages"]), "half of a killed batch was kept"

    with serve(tmp_path, database_url) as (process, hub):
        resent = {message_id: hub.post_message(compact) for message_id, compact in unanswered}
    assert all(answer.status == 202 for answer in resent.values())
    if stage == "after-commit":
        assert any(answer.json()["replayed"] for answer in resent.values()), "the committed batch should answer from its stored receipts"
    final = _database(database_url)
    _assert_consistent(final)
    assert {message_id for message_id, _ in messages} == set(final["messages"])

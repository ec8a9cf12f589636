"""After the whole run, the embedded server's files hold no test person's name or identity number (issue 10).

This test runs last in a session (tests/conftest.py moves it there), so that it sees what
every earlier test wrote to the session's embedded PostgreSQL. It also sends the shipped
examples through a hub itself, so that alone it still proves something. Then it rewrites
every database (`VACUUM FULL`), forces a `CHECKPOINT` and a WAL switch, and reads every
file of the data directory (tables, indexes, WAL) for each personal datum of the shipped
examples: as UTF-8 in Latin, Simplified and Traditional script, and inside base64url text
(a JWS payload in clear) at each of the three byte alignments. A probe written in clear
first proves that the scan sees what is in the files.

What may survive elsewhere (backups, archived WAL, the simulators' own state) is in
docs/security.md, "Payloads at rest".
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import secrets
from pathlib import Path

import asyncpg
import opencc
import pytest

from gateway.protocol.ids import new_uuid7
from gateway.protocol.message import sign_message
from gateway.protocol.timestamps import format_timestamp, utc_now
from gateway.store.embedded import PGDATA_NAME
from tests.hub.harness import running_hub
from tests.hub.test_delivery_pull import GD, HK, Party
from tests.privacy import personal_data

MIN_BASE64_CORE = 8
"""Shorter base64url fragments would match random bytes of a large data directory by chance."""
MIN_LATIN = 4
"""Latin-script data shorter than this ("LI", "HO") are words of configuration files and catalogues; they are
still searched for inside base64url JSON (`"family":"LI"`), and the given names beside them are searched as well."""


def _variants(datum: str) -> set[bytes]:
    """`datum` as stored text could hold it: as given, and in Simplified and Traditional script."""
    texts = {datum}
    if not datum.isascii():
        texts |= {opencc.OpenCC(config).convert(datum) for config in ("s2hk", "s2t", "hk2s", "t2s")}
    return {text.encode() for text in texts}


def _base64_cores(data: bytes) -> set[bytes]:
    """The base64url characters that encode only bytes of `data`, at each alignment of `data` in a longer text."""
    cores = set()
    for offset in range(3):
        encoded = base64.urlsafe_b64encode(b"\0" * offset + data + b"\0\0").rstrip(b"=")
        start, end = -(-4 * offset // 3), (4 * (offset + len(data))) // 3
        if end - start >= MIN_BASE64_CORE:
            cores.add(encoded[start:end])
    return cores


def _needles() -> dict[re.Pattern[bytes], str]:
    """Every byte pattern that would betray a personal datum, mapped to the datum's kind (never the datum).

    Latin-script data match as whole words (not "CHAN" in "CHANGE"), the rest as they are.
    """
    needles: dict[re.Pattern[bytes], str] = {}
    for datum, kind in personal_data().items():
        if kind not in ("name", "identity number"):
            continue
        for variant in _variants(datum):
            if not variant.isascii():
                needles[re.compile(re.escape(variant))] = kind
            elif len(variant) >= MIN_LATIN:
                needles[re.compile(rb"(?<![A-Za-z0-9_])" + re.escape(variant) + rb"(?![A-Za-z0-9_])")] = kind
            member = "number" if kind == "identity number" else "family"
            for fragment in (variant, json.dumps({member: variant.decode()}, ensure_ascii=False)[1:-1].encode()):
                for core in _base64_cores(fragment):
                    needles[re.compile(re.escape(core))] = f"{kind} (base64url)"
    return needles


def _found_in(folder: Path, needles: dict[re.Pattern[bytes], str]) -> list[str]:
    found = set()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        content = path.read_bytes()
        found |= {f"{kind} in {path.relative_to(folder)}" for needle, kind in needles.items() if needle.search(content)}
    return sorted(found)


async def _rewrite_and_flush(admin_url: str) -> None:
    """VACUUM FULL every database, then CHECKPOINT and a WAL switch (each as the server's superuser)."""
    admin = await asyncpg.connect(admin_url)
    try:
        names = [row["datname"] for row in await admin.fetch("SELECT datname FROM pg_database WHERE datallowconn")]
        for name in names:
            connection = await asyncpg.connect(admin_url, database=name)
            try:
                await connection.execute("VACUUM FULL")
            finally:
                await connection.close()
        await admin.execute("CHECKPOINT")
        await admin.fetchval("SELECT pg_switch_wal()")
        await admin.execute("CHECKPOINT")
    finally:
        await admin.close()


@pytest.mark.after_everything
def test_no_personal_datum_is_in_the_embedded_servers_files_after_the_run(database_server, database_url, example, test_key):
    if not database_server.embedded:
        pytest.skip("the external server's files are not this test's to read; the embedded pass covers this")
    data_dir = database_server.data_dir / PGDATA_NAME
    with running_hub(database_url) as hub:
        for message_type in ("referral.submit", "verification.request"):
            payload = dict(example(message_type), id=new_uuid7(), case=new_uuid7(), created=format_timestamp(utc_now()))
            payload.update({"from": "CN-GD", "to": "HK"})
            answer = hub.post_message(sign_message(payload, test_key(GD)))
            assert answer.status == 202, answer.body
        deliveries, _ = Party(hub, test_key(HK)).deliveries()
        assert len(deliveries) == 2

    probe = "gba-at-rest-probe-" + secrets.token_hex(8)
    asyncio.run(_store_probe(database_url, probe))
    asyncio.run(_rewrite_and_flush(database_server.admin_url))
    assert _found_in(data_dir, {re.compile(probe.encode()): "probe"}), "the scan must see text stored in clear, or it proves nothing"

    needles = _needles()
    assert {"name", "identity number"} <= set(needles.values()), "the examples must hold names and identity numbers"
    leaks = _found_in(data_dir, needles)
    assert not leaks, "personal data at rest in the database files: " + "; ".join(leaks)


async def _store_probe(database_url: str, probe: str) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute("CREATE TABLE at_rest_probe (text text)")
        await connection.execute("INSERT INTO at_rest_probe VALUES ($1)", probe)
    finally:
        await connection.close()

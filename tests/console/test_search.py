"""Search, paging and the dashboard's numbers, over HTTP against the demo's exchange (docs/console.md, "Where it runs")."""

from __future__ import annotations

import re
from datetime import timedelta

from gateway.console import queries
from gateway.console.accounts import officer_by_name
from gateway.protocol.timestamps import format_timestamp, utc_now
from tests.console.harness import Client, enrol, query, story_exchange, totp


def _rows(page: str, table: str) -> list[list[str]]:
    body = re.search(rf'<table id="{table}">.*?<tbody>(.*?)</tbody>', page, re.DOTALL)
    if body is None:
        return []
    return [re.findall(r"<td>(.*?)</td>", row, re.DOTALL) for row in re.findall(r"<tr>(.*?)</tr>", body.group(1), re.DOTALL)]


def _text(cell: str) -> str:
    return re.sub(r"<[^>]+>", "", cell).strip()


def test_search_filters_by_type_party_state_time_and_error_code_within_the_officers_scope(database_url, tmp_path):
    with story_exchange(database_url, tmp_path) as site:
        hk = enrol(database_url, "hk-searcher", "officer", "HK", site=site)
        auditor = enrol(database_url, "all-searcher", "auditor", site=site)
        client = Client(site.base_url)
        assert client.sign_in("hk-searcher", totp(hk)).status == 303

        submits = _rows(client.get("/console/search?type=referral.submit").text, "messages")
        assert [(_text(row[2]), _text(row[3])) for row in submits] == [("referral.submit", "CN-GD → HK")]
        verifications = _rows(client.get("/console/search?type=verification.request").text, "messages")
        assert [_text(row[3]) for row in verifications] == ["CN-GD → HK"], "not the CN-GD -> MO one"
        receipted = _rows(client.get("/console/search?party=HK&state=receipted").text, "messages")
        assert receipted and all(_text(row[4]) == "receipted" for row in receipted)

        now = utc_now()
        recent = f"/console/search?since={format_timestamp(now - timedelta(hours=1))[:16]}&until={format_timestamp(now + timedelta(hours=1))[:16]}"
        assert len(_rows(client.get(recent).text, "messages")) == len(_rows(client.get("/console/search?party=HK").text, "messages")) > 0
        tomorrow = format_timestamp(now + timedelta(days=1))[:16]
        assert "Nothing found." in client.get(f"/console/search?since={tomorrow}").text

        route_refused = _rows(client.get("/console/search?code=route-refused").text, "refusals")
        assert [(_text(row[1]), _text(row[2])) for row in route_refused] == [("HK", "route-refused (/to)")], "HK's own refusal"
        stale = client.get("/console/search?code=message-stale").text
        assert "Nothing found." in stale, "Guangdong's refusal is not Hong Kong's business"

        bad = client.get("/console/search?case=not-a-case")
        assert bad.status == 400 and "case must be a case id (UUID, lower case)" in bad.text
        assert client.get("/console/search?since=yesterday").status == 400

        everyone = Client(site.base_url)
        assert everyone.sign_in("all-searcher", totp(auditor)).status == 303
        assert len(_rows(everyone.get("/console/search?code=message-stale").text, "refusals")) == 1
        dashboard = everyone.get("/console/dashboard").text
        stored = query(database_url, "SELECT count(*) AS n FROM messages")[0]["n"]
        counted = sum(int(_text(row[3])) for row in _rows(dashboard, "by-route"))
        assert counted == stored, "every stored message counted once by route, type and state"
        assert [(_text(row[0]), _text(row[1])) for row in _rows(dashboard, "refusals")] == [
            ("id-conflict", "1"), ("message-stale", "1"), ("route-refused", "1")
        ]
        size = query(database_url, "SELECT size FROM ledger_size")[0]["size"]
        assert f'<p id="ledger-size">{size} ' in dashboard

        listed = _rows(everyone.get("/console/checkpoints").text, "checkpoint-list")
        signed = query(database_url, "SELECT size FROM ledger_checkpoints ORDER BY size DESC")
        assert [int(_text(row[0])) for row in listed] == [row["size"] for row in signed]
        assert _text(listed[0][3]) == f"3 / {site.exchange.settings.quorum}", "all three witnesses cosigned the story's checkpoint"


def test_search_pages_through_results_newest_first(database_url, tmp_path):
    with story_exchange(database_url, tmp_path) as site:
        enrol(database_url, "pager", "auditor", site=site)

        async def pages() -> list[list[queries.MessageRow]]:
            import asyncpg

            connection = await asyncpg.connect(database_url)
            try:
                officer = await officer_by_name(connection, "pager")
                found, page = [], 0
                while True:
                    rows = await queries.search_messages(connection, officer, queries.SearchFilters(page=page), limit=4)
                    found.append(rows[:4])
                    if len(rows) <= 4:
                        return found
                    page += 1
            finally:
                await connection.close()

        paged = site.call(pages())
        flat = [row for page in paged for row in page]
        stored = query(database_url, "SELECT id FROM messages ORDER BY accepted_at DESC, ledger_index DESC")
        assert [row.id for row in flat] == [str(row["id"]) for row in stored], "every message once, newest first"
        assert len(paged) > 2 and all(len(page) == 4 for page in paged[:-1])

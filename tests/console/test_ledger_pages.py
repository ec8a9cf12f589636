"""What the console shows of the ledger, against the demo's exchange and story (in-process): scoping of an
officer to its jurisdictions, an altered ledger row caught by a verification the page triggers, a swapped
checkpoint key caught by the officer's pinned fingerprints. The verdicts are the entry page's own."""

from __future__ import annotations

import asyncio
import json

import asyncpg
import pyotp

from gateway.keyfiles import write_private_key
from gateway.ledger import checkpoints
from gateway.protocol.keys import generate
from gateway.protocol.timestamps import utc_now
from tests.console.harness import PASSWORD, Client, enrol, in_thread, query, story_exchange, totp
from tests.console.pages import check, screenshot, sign_in, verdict
from tests.hub.harness import running_hub


def _entries(database_url: str) -> list[tuple[int, dict]]:
    return [(row["idx"], json.loads(row["entry"])) for row in query(database_url, "SELECT idx, entry FROM ledger_entries ORDER BY idx")]


def _accepted(database_url: str, sender: str, receiver: str, message_type: str) -> tuple[int, dict]:
    return next((index, entry) for index, entry in _entries(database_url)
                if entry["kind"] == "accepted" and (entry["from"], entry["to"], entry["type"]) == (sender, receiver, message_type))


def test_a_hong_kong_officer_cannot_see_an_entry_between_guangdong_and_macao(database_url, tmp_path, browser):
    with story_exchange(database_url, tmp_path) as site:
        secret = enrol(database_url, "hk-officer", "officer", "HK", site=site)
        hidden, hidden_entry = _accepted(database_url, "CN-GD", "MO", "verification.request")
        shown, shown_entry = _accepted(database_url, "CN-GD", "HK", "referral.submit")

        client = Client(site.base_url)
        assert client.sign_in("hk-officer", totp(secret)).status == 303
        assert client.get(f"/console/entries/{shown}").status == 200, "its own referral's entry"
        for path in (f"/console/entries/{hidden}", f"/console/entries/{hidden}/proof.json", f"/console/entries/{hidden}/bundle.json",
                     f"/console/cases/{hidden_entry['case']}"):
            answer = client.get(path)
            assert answer.status == 404 and "Not found, or not visible to you." in answer.text, path
            assert hidden_entry["message_id"] not in answer.text
        searched = client.get(f"/console/search?case={hidden_entry['case']}")
        assert searched.status == 200 and "Nothing found." in searched.text
        everything = client.get("/console/search?party=MO").text
        assert "MO" not in "".join(line for line in everything.splitlines() if "<td>" in line), "no message of Macao's"
        assert "CN-GD → MO" not in client.get("/console/dashboard").text

        page = browser.new_page()
        try:
            sign_in(page, site.base_url, "hk-officer", PASSWORD, totp(secret, steps_ahead=1))
            page.goto(f"{site.base_url}/console/entries/{hidden}")
            assert page.inner_text("#message") == "Not found, or not visible to you."
            page.goto(f"{site.base_url}/console/search?party=CN-GD")
            routes = page.locator("#messages tbody tr td:nth-child(4)").all_inner_texts()
            assert routes and all("HK" in route for route in routes), routes
            page.goto(f"{site.base_url}/console/entries/{shown}")
            assert verdict(page) == "verified"
        finally:
            page.close()


def test_an_altered_ledger_row_shows_as_an_integrity_failure_with_its_index_after_a_verification(database_url, tmp_path, browser):
    with story_exchange(database_url, tmp_path) as site:
        secret = enrol(database_url, "auditor", "auditor", site=site)
        index, entry = _accepted(database_url, "HK", "CN-GD", "referral.accept")
        altered = json.dumps({**entry, "to": "MO"}, sort_keys=True, separators=(",", ":")).encode()
        query(database_url, "UPDATE ledger_entries SET entry = $2 WHERE idx = $1", index, altered)

        page = browser.new_page()
        try:
            sign_in(page, site.base_url, "auditor", PASSWORD, totp(secret))
            assert page.get_attribute("#verification", "data-intact") != "false", "nothing verified since"
            page.click("#verify-now")
            page.wait_for_selector("#verification[data-intact='false']")
            assert page.get_attribute("#verification", "data-index") == str(index)
            assert f"INTEGRITY FAILURE at entry {index}" in page.inner_text("#verification")
            screenshot(page, "dashboard-integrity-failure")
            page.goto(f"{site.base_url}/console/entries/{index}")
            assert verdict(page) == "failed", "the altered bytes no longer hash to the checkpointed leaf"
            assert check(page, "root") == "false"
        finally:
            page.close()
        latest = query(database_url, "SELECT intact, first_bad_index, by_whom FROM ledger_verifications ORDER BY id DESC LIMIT 1")[0]
        assert (latest["intact"], latest["first_bad_index"]) == (False, index) and latest["by_whom"].startswith("console:")


def test_a_checkpoint_key_swapped_on_the_server_fails_the_officers_pinned_fingerprints(database_url, tmp_path, browser):
    with story_exchange(database_url, tmp_path / "exchange") as site:
        secret = enrol(database_url, "pinned", "auditor", site=site)
        index, _ = _accepted(database_url, "CN-GD", "HK", "referral.submit")
        witnesses = site.exchange.settings.witnesses
        quorum = site.exchange.settings.quorum
        origin = site.exchange.settings.origin

    # The server now holds another checkpoint key and signs the grown ledger with it.
    swapped = generate("Ed25519", "swapped-checkpoint-key")
    key_file = tmp_path / "swapped.key.jwk"
    write_private_key(swapped, key_file)

    async def sign() -> None:
        connection = await asyncpg.connect(database_url)
        try:
            assert await checkpoints.sign_checkpoint(connection, origin, swapped, utc_now()) is not None
        finally:
            await connection.close()

    in_thread(asyncio.run, sign())
    no_urls = tuple(type(w)(w.name, w.jurisdiction, w.key, None) for w in witnesses)
    with running_hub(database_url, checkpoint_key_file=key_file, witnesses=no_urls, quorum=quorum, origin=origin) as hub:
        page = browser.new_page()
        try:
            sign_in(page, hub.base_url, "pinned", PASSWORD, pyotp.TOTP(secret).at(utc_now().timestamp() + 30))
            page.goto(f"{hub.base_url}/console/entries/{index}")
            assert verdict(page) == "failed"
            assert check(page, "log") == "true", "the new key's signature itself verifies..."
            assert check(page, "pins") == "false", "...but it is not the key the officer pinned"
            assert page.locator("#key-rows tr:first-child td.bad").count() == 1
            screenshot(page, "entry-swapped-checkpoint-key")
        finally:
            page.close()


def test_the_page_verifies_entries_at_every_shape_of_proof_and_refuses_one_not_yet_checkpointed(database_url, tmp_path, browser):
    with story_exchange(database_url, tmp_path) as site:
        secret = enrol(database_url, "shapes", "auditor", site=site)
        size = query(database_url, "SELECT max(size) AS size FROM ledger_checkpoints")[0]["size"]
        unsigned = query(database_url, "SELECT size FROM ledger_size")[0]["size"] - 1
        assert unsigned >= size, "the enrolments came after the story's checkpoint"
        page = browser.new_page()
        try:
            sign_in(page, site.base_url, "shapes", PASSWORD, totp(secret))
            for index in sorted({0, 1, 2, size // 2, size - 2, size - 1}):
                page.goto(f"{site.base_url}/console/entries/{index}")
                assert verdict(page) == "verified", (index, size, page.inner_text("#checks"))
            page.goto(f"{site.base_url}/console/entries/{unsigned}")
            assert verdict(page) == "failed"
            assert "not in a signed checkpoint yet" in page.inner_text("#check-root")
        finally:
            page.close()


def test_a_quorum_lowered_on_the_server_fails_the_officers_pinned_quorum(database_url, tmp_path, browser):
    with story_exchange(database_url, tmp_path / "exchange") as site:
        secret = enrol(database_url, "quorum-pinned", "auditor", site=site)
        index, _ = _accepted(database_url, "CN-GD", "HK", "referral.submit")
        settings = site.exchange.settings
        assert settings.quorum == 2
    # The server now claims that no witness need cosign (its own signature alone would do).
    no_urls = tuple(type(w)(w.name, w.jurisdiction, w.key, None) for w in settings.witnesses)
    with running_hub(database_url, checkpoint_key_file=settings.checkpoint_key_file, witnesses=no_urls, quorum=0, origin=settings.origin) as hub:
        page = browser.new_page()
        try:
            sign_in(page, hub.base_url, "quorum-pinned", PASSWORD, pyotp.TOTP(secret).at(utc_now().timestamp() + 30))
            page.goto(f"{hub.base_url}/console/entries/{index}")
            assert verdict(page) == "failed"
            assert check(page, "pins") == "false", "the server's quorum 0 is below the pinned 2"
            screenshot(page, "entry-lowered-quorum")
        finally:
            page.close()

"""The console's rights and exports over HTTP, against the demo's exchange: viewing a payload (a separate right,
asked with a reason, ledgered under the officer's pseudonym), finding a person through the keyed blind index
(auditors with the payload right, ledgered), CSV export that a spreadsheet cannot run, the offline bundle of an
entry, and the secure-context rule."""

from __future__ import annotations

import hashlib
import html
import http.client
import json
import re
from urllib.parse import urlsplit

from gateway.console.app import csv_cell
from gateway.console.i18n import CATALOGUES
from gateway.console.persons import normalise
from gateway.ledger.bundle import verify_bundle
from gateway.protocol import base64url
from tests.console.harness import Client, enrol, in_thread, query, story_exchange, totp
from tests.hub.harness import wait_for_row

REASON = "Complaint 2026/114: the household asks what was sent about it"


def _ledger(database_url: str) -> list[tuple[int, dict]]:
    return [(row["idx"], json.loads(row["entry"])) for row in query(database_url, "SELECT idx, entry FROM ledger_entries ORDER BY idx")]


def _referral(site) -> tuple[str, str, dict]:
    """(case, message id, payload) of the demo's referral CN-GD -> HK, from Guangdong's own record of what it sent."""
    gd = site.exchange["CN-GD"]
    case = site.story.cases["referral CN-GD -> HK"]
    submit = site.on_loop(lambda: gd.outgoing(gd.case(case).messages[0]))
    return case, submit.id, json.loads(base64url.decode(submit.compact.split(b".")[1]))


def test_viewing_a_payload_needs_the_right_and_a_reason_and_every_view_is_ledgered(database_url, tmp_path):
    with story_exchange(database_url, tmp_path) as site:
        case, message_id, payload = _referral(site)
        plain = enrol(database_url, "hk-reader", "officer", "HK", site=site)
        right = enrol(database_url, "hk-viewer", "officer", "HK", payload_right=True, site=site)
        mo = enrol(database_url, "mo-viewer", "officer", "MO", payload_right=True, site=site)

        reader = Client(site.base_url)
        assert reader.sign_in("hk-reader", totp(plain)).status == 303
        refused = reader.post(f"/console/messages/{message_id}/payload", {"csrf": reader.csrf(), "reason": REASON})
        assert refused.status == 403 and "You do not have the right to view payloads." in refused.text

        viewer = Client(site.base_url)
        assert viewer.sign_in("hk-viewer", totp(right)).status == 303
        token = viewer.csrf()
        no_reason = viewer.post(f"/console/messages/{message_id}/payload", {"csrf": token, "reason": "because"})
        assert no_reason.status == 400 and "state a reason of 10 to 500 characters" in no_reason.text
        before = len(_ledger(database_url))
        shown = viewer.post(f"/console/messages/{message_id}/payload", {"csrf": token, "reason": REASON})
        assert shown.status == 200
        shown_payload = html.unescape(re.search(r'<pre id="payload">(.*?)</pre>', shown.text, re.DOTALL).group(1))
        assert json.loads(shown_payload) == payload, "exactly what Guangdong sent"
        index = int(re.search(r'id="viewed" data-index="(\d+)"', shown.text).group(1))
        entries = _ledger(database_url)
        assert len(entries) == before + 1 and entries[-1][0] == index
        entry = entries[-1][1]
        pseudonym = str(query(database_url, "SELECT pseudonym FROM console_officers WHERE name = 'hk-viewer'")[0]["pseudonym"])
        assert entry["kind"] == "payload-viewed" and entry["message_id"] == message_id and entry["officer"] == pseudonym
        assert entry["reason_digest"] == hashlib.sha256(REASON.encode()).hexdigest()
        assert "hk-viewer" not in json.dumps(entry) and REASON not in json.dumps(entry), "no name, no free text in the ledger"
        assert query(database_url, "SELECT reason FROM console_access_reasons WHERE ledger_index = $1", index)[0]["reason"] == REASON

        outsider = Client(site.base_url)
        assert outsider.sign_in("mo-viewer", totp(mo)).status == 303
        hidden = outsider.post(f"/console/messages/{message_id}/payload", {"csrf": outsider.csrf(), "reason": REASON})
        assert hidden.status == 404, "Macao's officer has the right, but not to Guangdong -> Hong Kong messages"
        assert len(_ledger(database_url)) == before + 1, "a refused view is not a view"
        assert case not in hidden.text


def test_an_auditor_finds_a_person_by_identity_number_through_the_blind_index_and_each_search_is_ledgered(database_url, tmp_path):
    with story_exchange(database_url, tmp_path) as site:
        case, message_id, payload = _referral(site)
        number = next(document["number"] for member in _members(payload["body"]) for document in member.get("identity_documents", []))
        auditor = enrol(database_url, "finder", "auditor", payload_right=True, site=site)
        officer = enrol(database_url, "hk-finder", "officer", "HK", payload_right=True, site=site)
        in_thread(wait_for_row, database_url, "SELECT 1 FROM console_person_index WHERE message_id = $1::uuid", message_id)
        blinds = query(database_url, "SELECT blind FROM console_person_index")
        assert all(number.encode() not in bytes(row["blind"]) for row in blinds)

        not_auditor = Client(site.base_url)
        assert not_auditor.sign_in("hk-finder", totp(officer)).status == 303
        assert not_auditor.post("/console/persons", {"csrf": not_auditor.csrf(), "number": number, "reason": REASON}).status == 403

        client = Client(site.base_url)
        assert client.sign_in("finder", totp(auditor)).status == 303
        written_otherwise = " ".join(number.lower())
        found = client.post("/console/persons", {"csrf": client.csrf("/console/persons"), "number": written_otherwise, "reason": REASON})
        assert found.status == 200 and f"/console/cases/{case}" in found.text
        assert number not in found.text and written_otherwise not in found.text, "the number is not echoed back"
        index = int(re.search(r'id="searched" data-index="(\d+)"', found.text).group(1))
        entry = dict(_ledger(database_url))[index]
        assert entry["kind"] == "person-searched" and entry["results"] >= 1
        assert number not in json.dumps(entry) and "finder" not in json.dumps(entry)
        nobody = client.post("/console/persons", {"csrf": client.csrf("/console/persons"), "number": "Z9999999", "reason": REASON})
        assert nobody.status == 200 and "Nothing found." in nobody.text
        assert dict(_ledger(database_url))[int(re.search(r'data-index="(\d+)"', nobody.text).group(1))]["results"] == 0


def _members(body: dict) -> list[dict]:
    found = []

    def walk(value) -> None:
        if isinstance(value, dict):
            if "identity_documents" in value:
                found.append(value)
            for member in value.values():
                walk(member)
        elif isinstance(value, list):
            for member in value:
                walk(member)

    walk(body)
    return found


def test_exports_a_csv_no_spreadsheet_runs_and_an_offline_bundle_that_verifies_with_the_verifiers_own_keys(database_url, tmp_path):
    assert csv_cell("=HYPERLINK(\"http://x\")") == "'=HYPERLINK(\"http://x\")"
    assert [csv_cell(text) for text in ("+1", "-1", "@SUM(A1)", "\tx", "HK", None)] == ["'+1", "'-1", "'@SUM(A1)", "'\tx", "HK", ""]
    with story_exchange(database_url, tmp_path) as site:
        case, message_id, _ = _referral(site)
        secret = enrol(database_url, "exporter", "officer", "HK", site=site)
        client = Client(site.base_url)
        assert client.sign_in("exporter", totp(secret)).status == 303
        exported = client.get(f"/console/export.csv?case={case}")
        assert exported.status == 200 and exported.headers["content-type"].startswith("text/csv")
        lines = exported.text.strip().splitlines()
        assert lines[0] == "message_id,case,type,from,to,status,accepted_at,ledger_index"
        assert any(line.startswith(message_id + ",") for line in lines[1:]) and all(case in line for line in lines[1:])

        index = next(i for i, entry in _ledger(database_url) if entry.get("message_id") == message_id and entry["kind"] == "accepted")
        answer = client.get(f"/console/entries/{index}/bundle.json")
        assert answer.status == 200
        report = verify_bundle(json.loads(answer.text), site.exchange.log_key(), site.exchange.witness_keys(), site.exchange.settings.quorum)
        assert report.ok and report.entries == 1 and report.viewer == "HK", report.problems

        whole_case = json.loads(client.get(f"/console/cases/{case}/bundle.json").text)
        report = verify_bundle(whole_case, site.exchange.log_key(), site.exchange.witness_keys(), site.exchange.settings.quorum)
        timeline = re.findall(r'<a href="/console/entries/(\d+)">', client.get(f"/console/cases/{case}").text)
        assert report.ok and [item["index"] for item in whole_case["entries"]] == [int(index) for index in timeline], report.problems
        assert report.entries >= 6, "submit, accept, close, their receipts and deliveries"


def test_the_console_answers_only_over_https_or_on_loopback(database_url, tmp_path):
    from tests.hub.harness import running_hub

    with running_hub(database_url) as hub:
        parts = urlsplit(hub.base_url)
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        try:
            connection.request("GET", "/console/login", headers={"Host": "console.gba.example"})
            response = connection.getresponse()
            body = response.read().decode()
        finally:
            connection.close()
        assert response.status == 403 and "only over HTTPS or on this machine" in body
        assert Client(hub.base_url).get("/console/login").status == 200


def test_every_language_has_every_word_with_the_same_placeholders():
    english = CATALOGUES["en"]
    for language, words in CATALOGUES.items():
        assert set(words) == set(english), language
        for key, text in words.items():
            assert set(re.findall(r"{(\w+)}", text)) == set(re.findall(r"{(\w+)}", english[key])), (language, key)


def test_identity_numbers_are_normalised_before_blinding():
    assert normalise("a123456(7)") == normalise("A1234567") == "A1234567"
    assert normalise(" 4401 0619 9001 0112 3x ") == "44010619900101123X"
    assert normalise("--") is None and normalise("<script>") is None

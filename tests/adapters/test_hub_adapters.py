"""The adapters in the hub's pipeline and at delivery (docs/protocol.md PROTO-6.1-3 to -7, §9.3), over HTTP."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from gateway.adapters import schemes
from gateway.adapters.identity import mod11_2_check_character
from gateway.protocol import base64url
from gateway.protocol.ids import new_uuid7
from gateway.protocol.message import sign_message
from gateway.protocol.statements import parse_delivery, verify_delivery
from gateway.protocol.timestamps import format_timestamp, parse_timestamp, utc_now
from tests.cli_runner import assert_refused
from tests.hub.harness import query, running_hub
from tests.hub.test_delivery_pull import Party, receipt_for

GD, HK = "test-cn-gd-message-1", "test-hk-message-1"
MEMBER_ID = ("household", "members", 1, "person", "identity_documents", 0, "number")


def _referral(example, number: str | None = None) -> dict:
    payload = dict(example("referral.submit"), id=new_uuid7(), case=new_uuid7(), created=format_timestamp(utc_now()))
    payload = json.loads(json.dumps(payload))
    if number is not None:
        target = payload["body"]
        for step in MEMBER_ID[:-1]:
            target = target[step]
        target[MEMBER_ID[-1]] = number
    return payload


def _ledgered_refusals(database_url: str) -> list[tuple[str, str]]:
    entries = [json.loads(row["entry"]) for row in query(database_url, "SELECT entry FROM ledger_entries ORDER BY idx")]
    return [(e["code"], e.get("where")) for e in entries if e["kind"] == "refused"]


WHERE = "/body/household/members/1/person/identity_documents/0/number"


@pytest.mark.parametrize(
    "number, code",
    [
        ("442000196207080047", "identity-check-digit-invalid"),  # the example's number, last character changed
        ("442000194902300049", "identity-birth-date-invalid"),  # 30 February passes the schema's pattern
        ("442000209901010018", "identity-birth-date-invalid"),  # born in 2099
    ],
)
def test_an_identity_number_failing_its_published_check_is_refused_and_ledgered(database_url, example, test_key, number, code):
    with running_hub(database_url) as hub:
        answer = hub.post_message(sign_message(_referral(example, number), test_key(GD)))
    assert_refused(answer, code)
    assert answer.json()["where"] == WHERE and number not in answer.body.decode()
    assert _ledgered_refusals(database_url) == [(code, WHERE)]


def _accepted_referral(hub, example, test_key) -> dict:
    submit = _referral(example)
    assert hub.post_message(sign_message(submit, test_key(GD))).status == 202
    accept = dict(example("referral.accept"), id=new_uuid7(), case=submit["case"], reply_to=submit["id"], created=format_timestamp(utc_now()))
    assert hub.post_message(sign_message(accept, test_key(HK))).status == 202
    return submit


def _close(example, submit: dict, award_changes: dict) -> dict:
    close = json.loads(json.dumps(example("referral.close")))
    close.update(id=new_uuid7(), case=submit["case"], reply_to=None, created=format_timestamp(utc_now()))
    close["body"]["awards"][0].update(award_changes)
    return close


def test_an_award_must_name_a_scheme_of_the_granting_jurisdiction(database_url, example, test_key):
    with running_hub(database_url) as hub:
        submit = _accepted_referral(hub, example, test_key)
        unknown = hub.post_message(sign_message(_close(example, submit, {"scheme": "DIBAO"}), test_key(HK)))
        assert_refused(unknown, "scheme-unknown")
        assert unknown.json()["where"] == "/body/awards/0/scheme", "DIBAO is Guangdong's, not Hong Kong's"
        cssa = schemes.HK.get("HK_CSSA")
        good = hub.post_message(sign_message(_close(example, submit, {"scheme": cssa.code, "category": cssa.category}), test_key(HK)))
        assert good.status == 202, good.body


def test_hong_kong_receives_traditional_free_text_and_names_untouched(database_url, example, test_key, trust, schemas):
    submit = _referral(example)
    with running_hub(database_url) as hub:
        hub.post_message(sign_message(submit, test_key(GD)))
        deliveries, _ = Party(hub, test_key(HK)).deliveries()
    delivery = parse_delivery(json.dumps(deliveries[0]).encode())
    verified = verify_delivery(delivery, trust, schemas)
    texts = {text.at: text for text in verified.local_view.texts}
    simplified = [pointer for pointer in texts if _at(submit, pointer)["lang"].startswith("zh-Hans")]
    assert simplified and all(texts[p].lang == "zh-Hant-HK" for p in simplified)
    for pointer in simplified:
        assert texts[pointer].text != _at(submit, pointer)["text"], "converted to Traditional"
    assert not any("/names" in pointer for pointer in texts), "names are never converted"
    created = next(item for item in verified.local_view.times if item.at == "/created")
    assert created.zone == "Asia/Hong_Kong" and created.local.endswith("+08:00")
    assert datetime.fromisoformat(created.local) == parse_timestamp(submit["created"]), "the same instant"


def _at(payload: dict, pointer: str):
    value = payload
    for part in pointer.strip("/").split("/"):
        value = value[int(part)] if isinstance(value, list) else value[part]
    return value


@pytest.mark.parametrize("receiver", ["HK", "MO"])
def test_personal_data_leaving_guangdong_needs_a_transfer_mechanism_on_the_default_routes(database_url, example, test_key, receiver):
    """docs/data-protection.md: the shipped default configuration requires it (PIPL art. 38)."""
    without = _referral(example)
    without.update(to=receiver)
    without["legal_basis"] = {key: value for key, value in without["legal_basis"].items() if key != "transfer_mechanism"}
    with_it = _referral(example)
    with_it.update(to=receiver)
    with running_hub(database_url) as hub:
        refused = hub.post_message(sign_message(without, test_key(GD)))
        assert_refused(refused, "legal-basis-refused")
        assert refused.json()["where"] == "/legal_basis/transfer_mechanism"
        assert hub.post_message(sign_message(with_it, test_key(GD))).status == 202
        keys = {"HK": "test-hk-message-1", "MO": "test-mo-message-1"}
        delivered, _ = Party(hub, test_key(keys[receiver])).deliveries()
    assert [json.loads(base64url.decode(d["message"].split(".")[1]))["id"] for d in delivered] == [with_it["id"]]
    assert _ledgered_refusals(database_url) == [("legal-basis-refused", "/legal_basis/transfer_mechanism")]


def test_each_receiver_sees_scheme_names_in_its_own_language(database_url, example, test_key, trust, schemas):
    """HK sees its own schemes for the needed categories, in Traditional; CN-GD sees HK's awarded scheme in Simplified."""
    with running_hub(database_url) as hub:
        submit = _accepted_referral(hub, example, test_key)
        hk_view = _view(Party(hub, test_key(HK)).deliveries()[0][0], trust, schemas)
        cssa = schemes.HK.get("HK_CSSA")
        close = _close(example, submit, {"scheme": cssa.code, "category": cssa.category})
        assert hub.post_message(sign_message(close, test_key(HK))).status == 202
        gd = Party(hub, test_key(GD))
        views, cursor = [], -1
        while not any(_payload_of(d)["type"] == "referral.close" for d, _ in views):
            more, cursor = gd.deliveries(after=cursor)
            assert more, "the close never reached Guangdong"
            for delivery in more:
                views.append((delivery, _view(delivery, trust, schemas)))
                if _payload_of(delivery)["type"] != "receipt":
                    gd.post_receipt(receipt_for(delivery["message"].encode(), test_key(GD), "CN-GD"))
    needs = submit["body"]["needs"]
    expected = {
        (f"/body/needs/{index}", scheme.code, scheme.names["zh-Hant"])
        for index, category in enumerate(needs) for scheme in schemes.HK.for_category(category)
    }
    assert expected and {(item.at, item.code, item.name) for item in hk_view.schemes} == expected
    assert all(item.lang == "zh-Hant-HK" for item in hk_view.schemes)
    gd_close_view = next(view for delivery, view in views if _payload_of(delivery)["type"] == "referral.close")
    assert [(item.at, item.code, item.name, item.lang) for item in gd_close_view.schemes] == [
        ("/body/awards/0/scheme", "HK_CSSA", cssa.names["zh-Hans"], "zh-Hans-CN")
    ]


def _payload_of(delivery: dict) -> dict:
    return json.loads(base64url.decode(delivery["message"].split(".")[1]))


def _view(delivery: dict, trust, schemas):
    return verify_delivery(parse_delivery(json.dumps(delivery).encode()), trust, schemas).local_view



def test_feedback_carrying_a_member_outside_its_purpose_is_refused_and_ledgered(database_url, example, test_key):
    """docs/data-protection.md: the schema is the minimisation profile; a referral.update for feedback carries no contact."""
    with running_hub(database_url) as hub:
        submit = _accepted_referral(hub, example, test_key)
        update = dict(example("referral.update"), id=new_uuid7(), case=submit["case"], reply_to=None,
                      created=format_timestamp(utc_now()), purpose="assistance_feedback", to="CN-GD")
        update["from"] = "HK"
        update["body"] = {"progress": "under_assessment", "contact": example("referral.submit")["body"]["contact"]}
        refused = hub.post_message(sign_message(update, test_key(HK)))
        assert_refused(refused, "schema-violation")
        assert refused.json()["where"] == "/body/contact"
        minimal = dict(update, id=new_uuid7(), body={"progress": "under_assessment"})
        assert hub.post_message(sign_message(minimal, test_key(HK))).status == 202
    assert ("schema-violation", "/body/contact") in _ledgered_refusals(database_url)


def test_a_health_need_leaving_guangdong_must_rest_on_consent(database_url, example, test_key):
    """docs/data-protection.md: the shipped default names `medical` in consent_for_needs (PIPL arts. 28-29)."""
    medical = _referral(example)
    medical["body"]["needs"] = ["minimum_living_allowance", "medical"]
    other_basis = {key: value for key, value in medical["legal_basis"].items() if key != "consent_ref"}
    other_basis["basis"] = "public_interest"
    without_consent = dict(medical, legal_basis=other_basis)
    not_medical = dict(_referral(example), legal_basis=other_basis)
    not_medical["body"] = dict(not_medical["body"], needs=["minimum_living_allowance"])
    with running_hub(database_url) as hub:
        refused = hub.post_message(sign_message(without_consent, test_key(GD)))
        assert_refused(refused, "legal-basis-refused")
        assert refused.json()["where"] == "/legal_basis/basis"
        assert hub.post_message(sign_message(medical, test_key(GD))).status == 202, "with consent it passes"
        assert hub.post_message(sign_message(not_medical, test_key(GD))).status == 202, "no sensitive need, no consent needed"


def test_a_verification_leaving_guangdong_must_rest_on_consent(database_url, example, test_key):
    """docs/data-protection.md: financial information is sensitive (PIPL art. 28); the default requires consent."""
    request = dict(example("verification.request"), id=new_uuid7(), case=new_uuid7(), created=format_timestamp(utc_now()), to="HK")
    request["from"] = "CN-GD"
    request["body"] = dict(request["body"], respond_by=format_timestamp(utc_now() + timedelta(hours=1)))
    public_interest = {key: value for key, value in request["legal_basis"].items() if key != "consent_ref"}
    public_interest["basis"] = "public_interest"
    with running_hub(database_url) as hub:
        refused = hub.post_message(sign_message(dict(request, legal_basis=public_interest), test_key(GD)))
        assert_refused(refused, "legal-basis-refused")
        assert refused.json()["where"] == "/legal_basis/basis"
        assert hub.post_message(sign_message(request, test_key(GD))).status == 202


def test_a_birth_date_is_judged_on_the_receivers_calendar_not_the_utc_one(database_url, example, test_key):
    # 20:00 UTC is 04:00 the next day in Hong Kong: a child born that day there has a valid number already.
    now = parse_timestamp("2026-12-02T20:00:00Z")

    def referral_with_birth_date(born: str) -> bytes:
        number = "442000" + born + "001"
        payload = dict(_referral(example, number + mod11_2_check_character(number)), created=format_timestamp(now))
        return sign_message(payload, test_key(GD))

    with running_hub(database_url, clock=lambda: now) as hub:
        assert hub.post_message(referral_with_birth_date("20261203")).status == 202
        assert_refused(hub.post_message(referral_with_birth_date("20261204")), "identity-birth-date-invalid")

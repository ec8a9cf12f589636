"""The receiver's local view: free texts converted to its script, names never (docs/protocol.md §9.3, PROTO-6.1-2)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.adapters.local_view import RECEIVER_LANG, convert_text, free_text_pointers, local_view_texts
from gateway.contract import contract_dir
from gateway.protocol.statements import ConvertedText, LocalView, parse_delivery

HK_LANG, GD_LANG, MO_LANG = RECEIVER_LANG["HK"], RECEIVER_LANG["CN-GD"], RECEIVER_LANG["MO"]


def _at(payload: dict[str, Any], pointer: str) -> Any:
    value: Any = payload
    for token in pointer.split("/")[1:]:
        token = token.replace("~1", "/").replace("~0", "~")
        value = value[int(token)] if isinstance(value, list) else value[token]
    return value


def test_receiver_tags_are_language_tags_of_the_local_view():
    document = {"at": "/body/note", "text": "x", "lang": "", "machine_converted": True}
    for lang in RECEIVER_LANG.values():
        delivery = {"message": "a", "attestation": "b", "local_view": {"texts": [{**document, "lang": lang}], "schemes": [], "times": []}}
        assert parse_delivery(json.dumps(delivery).encode()).local_view.texts[0].lang == lang


def test_a_simplified_referral_is_shown_in_hong_kong_traditional_and_marked(example):
    payload = example("referral.submit")
    (converted,) = local_view_texts(payload, HK_LANG)
    assert converted == ConvertedText(
        "/body/circumstances",
        "申請人為香港永久性居民，2019年起與配偶在中山居住。9月中風後醫療開支大增，存款已基本用盡。",
        "zh-Hant-HK",
    )
    assert converted.to_document()["machine_converted"] is True
    assert payload == example("referral.submit"), "the message keeps the original"


def test_a_simplified_text_is_shown_in_macao_with_hong_kong_character_forms(example):
    (converted,) = local_view_texts(example("referral.submit"), MO_LANG)
    assert converted.lang == "zh-Hant-MO"
    assert "為" in converted.text and "爲" not in converted.text


def test_a_traditional_text_is_shown_simplified_in_guangdong(example):
    payload = example("referral.accept")
    (converted,) = local_view_texts(payload, GD_LANG)
    assert converted.at == "/body/note"
    assert converted.text == "已安排社工于12月8日致电申请人，核实在港居住纪录及资产情况。"
    assert converted.lang == "zh-Hans-CN"


def test_a_text_already_in_the_receivers_script_gets_no_entry(example):
    assert local_view_texts(example("referral.submit"), GD_LANG) == ()
    assert local_view_texts(example("referral.accept"), HK_LANG) == ()
    assert local_view_texts(example("referral.accept"), MO_LANG) == ()


@pytest.mark.parametrize(("simplified", "hong_kong"), [
    ("以后", "以後"),
    ("皇后", "皇后"),
    ("头发", "頭髮"),
    ("发展", "發展"),
    ("发放", "發放"),
])
def test_one_to_many_characters_follow_opencc_hong_kong_tables(simplified, hong_kong):
    assert convert_text(simplified, "zh-Hans", HK_LANG) == hong_kong
    assert convert_text(hong_kong, "zh-Hant-HK", GD_LANG) == simplified


def test_free_text_mentioning_yu_is_converted_which_is_why_names_never_are():
    """于 (a surname) and 於 (a preposition) are one character in Simplified: the converter cannot tell them apart."""
    assert convert_text("请联络于先生。", "zh-Hans", HK_LANG) == "請聯絡於先生。"


def test_a_persons_name_is_neither_converted_nor_in_the_view(example):
    payload = example("referral.submit")
    person = payload["body"]["household"]["members"][0]["person"]
    person["names"] = [
        {"script": "Hans", "family": "于", "given": "发"},
        {"script": "Latn", "family": "YU", "given": "Fa"},
    ]
    payload["body"]["circumstances"] = {"text": "于先生的头发", "lang": "zh-Hans"}
    texts = local_view_texts(payload, HK_LANG)
    assert [text.at for text in texts] == ["/body/circumstances"]
    assert texts[0].text == "於先生的頭髮"
    assert person["names"][0] == {"script": "Hans", "family": "于", "given": "发"}
    assert all("/names/" not in pointer for pointer in free_text_pointers(payload))


def test_english_and_portuguese_texts_are_left_out(example):
    assert local_view_texts(example("referral.decline"), HK_LANG) == ()  # pt
    close = example("referral.close")
    assert close["body"]["note"]["lang"] == "en"
    assert local_view_texts(close, GD_LANG) == ()
    assert convert_text("Apoio económico", "pt-MO", MO_LANG) is None
    assert convert_text("申请人", "zh-Hans", "en") is None


@pytest.mark.parametrize(("from_lang", "to_lang", "expected"), [
    ("zh-Hans", "zh-Hant-HK", "以後"),
    ("zh-Hans-CN", "zh-Hant-MO", "以後"),
    ("zh", "zh-Hant-HK", "以後"),  # CLDR: zh is likely Hans
    ("zh-Hans", "zh-Hans-CN", None),
    ("zh-Hant", "zh-Hant-HK", None),
    ("zh-HK", "zh-Hant-MO", None),  # CLDR: zh-HK is likely Hant
    ("zh-Latn", "zh-Hant-HK", None),
    ("yue", "zh-Hans-CN", "以后"),
    ("not a tag", "zh-Hant-HK", None),
])
def test_which_tags_are_converted(from_lang, to_lang, expected):
    source = "以后" if expected != "以后" else "以後"
    assert convert_text(source, from_lang, to_lang) == expected


def test_a_converted_text_keeps_its_language_and_takes_the_receivers_script_and_region():
    payload = {"body": {"note": {"text": "佢以后会嚟", "lang": "yue-Hans"}}}
    assert local_view_texts(payload, HK_LANG) == (ConvertedText("/body/note", "佢以後會嚟", "yue-Hant-HK"),)


def test_taiwan_text_uses_the_taiwan_table():
    assert convert_text("著", "zh-Hant-TW", GD_LANG) == "着"
    assert convert_text("著", "zh-Hant-HK", GD_LANG) == "著"


def test_free_text_pointers_find_exactly_the_free_text_objects_in_document_order():
    payload = {
        "body": {
            "a/b": {"c~d": {"text": "一", "lang": "zh-Hans"}},
            "list": [
                {"text": "二", "lang": "en"},
                {"text": "三", "lang": "zh-Hans", "extra": 1},  # not a free text: a third member
                {"text": 4, "lang": "en"},  # not a free text: the text is no string
            ],
            "address": {"lines": ["莲员西路"], "lang": "zh-Hans"},
            "name": {"script": "Hans", "family": "于"},
        }
    }
    assert free_text_pointers(payload) == ["/body/a~1b/c~0d", "/body/list/0"]


def test_only_free_text_has_a_text_member_in_the_schemas():
    """Why an object of exactly {text, lang} is a free text: no other schema object has a `text` member."""
    owners = []

    def walk(value: Any, where: str) -> None:
        if isinstance(value, dict):
            if isinstance(value.get("properties"), dict) and "text" in value["properties"]:
                owners.append(where)
            for key, member in value.items():
                walk(member, f"{where}/{key}")
        elif isinstance(value, list):
            for index, member in enumerate(value):
                walk(member, f"{where}/{index}")

    for schema in sorted(contract_dir("schemas").glob("*.json")):
        walk(json.loads(schema.read_text("utf-8")), schema.name)
    assert owners == ["defs.json/$defs/free_text"]


def test_every_free_text_of_every_example_is_found(example):
    for message_type in ("referral.submit", "referral.accept", "referral.decline", "referral.update",
                         "referral.withdraw", "referral.close", "verification.request", "verification.response",
                         "verification.cancel"):
        payload = example(message_type)
        for pointer in free_text_pointers(payload):
            assert _at(payload, pointer).keys() == {"text", "lang"}


def test_the_local_view_digest_is_stable(example):
    payload = example("referral.update")
    first = LocalView(local_view_texts(payload, HK_LANG))
    second = LocalView(local_view_texts(json.loads(json.dumps(payload)), HK_LANG))
    assert first.texts and first == second
    assert first.digest == second.digest
    assert first.digest != LocalView().digest
    assert LocalView(local_view_texts(payload, MO_LANG)).digest != first.digest  # the tag names the receiver's region


def test_only_the_schemas_timestamps_are_times(example):
    """§9.3: `times` points at timestamps of the payload (`/created`, `/body/respond_by`). A note, a reference or
    any other string shaped like one is not a time; one from before 1904 used to give an offset with seconds,
    which no receiver can parse (PROTO-9.3-1)."""
    from gateway.adapters.registry import load_adapter

    request = json.loads(json.dumps(example("verification.request")))
    request["body"]["note"] = {"text": "1900-01-01T00:00:00Z", "lang": "en"}
    request["legal_basis"]["consent_ref"] = "2026-11-28T09:30:00Z"
    for code, module in (("CN-GD", "cn_gd"), ("HK", "hk"), ("MO", "mo")):
        view = load_adapter(code, module).local_view(request)
        assert [time.at for time in view.times] == ["/created", "/body/respond_by"], code
        delivery = {"message": "a", "attestation": "b", "local_view": json.loads(json.dumps(view.to_document()))}
        parse_delivery(json.dumps(delivery).encode())  # a receiver can read it


def test_a_time_no_offset_of_minutes_can_say_is_left_out(example):
    """Before standard time a zone's offset has seconds (Hong Kong's +07:36:42 until 1904), which RFC 3339 cannot
    write; rounding would name another instant, so the entry is left out rather than made unreadable."""
    from gateway.adapters.registry import load_adapter

    submit = dict(example("referral.submit"), created="1900-01-01T00:00:00Z")
    for code, module in (("CN-GD", "cn_gd"), ("HK", "hk"), ("MO", "mo")):
        assert load_adapter(code, module).local_view(submit).times == (), code
    assert [time.local for time in load_adapter("HK", "hk").local_view(dict(submit, created="1950-01-01T00:00:00Z")).times] == ["1950-01-01T08:00:00+08:00"]

"""A fourth jurisdiction is one adapter module and one configuration entry: no change to the hub or the schemas.

XA (tests/adapters/atlantis.py) joins with a trust-list entry, a `[jurisdictions.XA]` table naming its adapter
module, and routes; a referral goes CN-GD -> XA, XA acknowledges it, accepts and closes it with one of its own
schemes, and Guangdong gets everything back — over HTTP, on a real database.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from gateway.config import load_config
from gateway.contract import contract_dir
from gateway.hub.http import settings_for
from gateway.protocol.ids import new_uuid7
from gateway.protocol.keys import generate
from gateway.protocol.message import sign_message
from gateway.protocol.timestamps import format_timestamp, utc_now
from gateway.protocol.trust import KeyRecord
from tests.adapters.atlantis import SCHEMES
from tests.cli_runner import assert_refused
from tests.hub.harness import running_hub
from tests.hub.test_delivery_pull import Party, receipt_for

_KEYS = contract_dir("keys") / "test"


def _trust_list_with_atlantis(folder: Path, key) -> Path:
    document = json.loads((_KEYS / "trust-list.json").read_text("utf-8"))
    document["jurisdictions"]["XA"] = {"name": {"en": "Atlantis (fictional)"}}
    now = utc_now().replace(microsecond=0)
    document["keys"].append(KeyRecord(key.kid, "XA", "message", key.public(), now - timedelta(days=1), now + timedelta(days=365), None, True).to_document())
    path = folder / "trust-list.json"
    path.write_text(json.dumps(document, ensure_ascii=False), "utf-8")
    return path


def _config(folder: Path, trust_list: Path, database_url: str) -> Path:
    routes = "".join(
        f'[[routes]]\nsender = "{a}"\nreceiver = "{b}"\ntypes = ["referral.*", "receipt"]\n'
        f'purposes = ["referral", "assistance_feedback", "delivery_receipt"]\n'
        for a, b in (("CN-GD", "XA"), ("XA", "CN-GD"))
    )
    text = f"""
mode = "test"
public_base_url = "http://127.0.0.1:8443"
database_url = "{database_url}"
[hub]
receipt_key = "{_KEYS / 'test-hub-receipt-1.key.jwk'}"
trust_list = "{trust_list}"
[jurisdictions.CN-GD]
[jurisdictions.XA]
adapter = "tests.adapters.atlantis"
{routes}"""
    path = folder / "gateway.toml"
    path.write_text(text, "utf-8")
    return path


def test_a_fictional_fourth_jurisdiction_works_end_to_end(database_url, example, test_key, tmp_path):
    xa_key = generate("Ed25519", "test-xa-message-1")
    config = load_config(_config(tmp_path, _trust_list_with_atlantis(tmp_path, xa_key), database_url))
    settings = settings_for(config, database_url)
    gd_key = test_key("test-cn-gd-message-1")
    submit = dict(example("referral.submit"), id=new_uuid7(), case=new_uuid7(), to="XA", created=format_timestamp(utc_now()))
    with running_hub(database_url, **{field: getattr(settings, field) for field in ("trust_list_file", "routes", "adapters")}) as hub:
        gd, xa = Party(hub, gd_key), Party(hub, xa_key)
        assert hub.post_message(sign_message(submit, gd_key)).status == 202
        delivered, _ = xa.deliveries()
        assert [_payload(d["message"])["id"] for d in delivered] == [submit["id"]]
        assert xa.post_receipt(receipt_for(sign_message(submit, gd_key), xa_key, "XA")).status == 202

        accept = dict(example("referral.accept"), id=new_uuid7(), case=submit["case"], reply_to=submit["id"],
                      to="CN-GD", created=format_timestamp(utc_now()))
        accept["from"] = "XA"
        assert hub.post_message(sign_message(accept, xa_key)).status == 202
        close = json.loads(json.dumps(example("referral.close")))
        close.update(id=new_uuid7(), case=submit["case"], reply_to=None, to="CN-GD", created=format_timestamp(utc_now()))
        close["from"] = "XA"
        hk_scheme = dict(close["body"]["awards"][0])
        assert_refused(hub.post_message(sign_message(close, xa_key)), "scheme-unknown")  # a Hong Kong scheme: not Atlantis's
        relief = SCHEMES.get("XA_RELIEF")
        close["id"] = new_uuid7()
        close["body"]["awards"][0] = dict(hk_scheme, scheme=relief.code, category=relief.category)
        assert hub.post_message(sign_message(close, xa_key)).status == 202

        types: list[str] = []
        cursor = -1
        while len(types) < 3:  # one case goes one message at a time: acknowledge each to get the next
            more, cursor = gd.deliveries(after=cursor)
            assert more, f"Guangdong got only {types}"
            for delivery in more:
                types.append(_payload(delivery["message"])["type"])
                if types[-1] != "receipt":
                    assert gd.post_receipt(receipt_for(delivery["message"].encode(), gd_key, "CN-GD")).status == 202
    assert types == ["receipt", "referral.accept", "referral.close"]


def _payload(compact: str) -> dict:
    from gateway.protocol import base64url

    return json.loads(base64url.decode(compact.split(".")[1]))

"""The authorisation matrix (gateway/hub/authorization.py), walked completely against a real hub.

Every route the app serves must have a row, and every row is tried with every kind of
caller: the answer must be what `OUTCOMES` says for the route's access class — allowed,
answered with the caller's share only, or refused with exactly the code the table names.
"""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass
from typing import Any, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.hub.authorization import ALLOW, API_ROUTES, CALLERS, OUTCOMES, SCOPED
from gateway.hub.http import ROUTE_ACCESS, build_app
from gateway.protocol.errors import CATALOGUE
from gateway.protocol.ids import new_uuid7
from gateway.protocol.message import sign_message
from gateway.protocol.request_proof import make_request_proof
from gateway.protocol.timestamps import format_timestamp, utc_now
from tests.hub.harness import Answer, RunningHub, hub_settings, running_hub, wait_for_row
from tests.hub.test_delivery_pull import GD, HK, receipt_for

MO = "test-mo-message-1"
KEY_OF_CALLER = {
    "hub": "test-hub-receipt-1",
    "revoked-key": "test-hk-message-revoked",
    "expired-key": "test-mo-message-expired",
}
AUTHORISATION_STATUSES = {401, 403}


@dataclass
class World:
    """What the walk needs: a hub holding one referral CN-GD -> HK, accepted and delivered."""

    hub: RunningHub
    test_key: Callable[[str], Any]
    example: Callable[[str], dict]
    referral: bytes
    referral_id: str
    accepted_index: int
    hub_access: dict

    def proof(self, kid: str, method: str, path: str, body: bytes | None = None) -> dict[str, str]:
        url = self.hub.settings.public_base_url + path.split("?")[0]
        return {"GBA-Request-Proof": make_request_proof(self.test_key(kid), method, url, body, utc_now()).decode()}

    def credentials(self, caller: str, party: str, other: str, method: str, path: str, body: bytes | None = None) -> dict[str, str]:
        """The headers `caller` sends to a jurisdiction route whose rightful caller is `party`."""
        if caller in ("anonymous", "officer", "auditor"):
            # An officer's browser holds a console session cookie; the API must not take it for a credential.
            return {"Cookie": "gba_console_session=" + base64.urlsafe_b64encode(b"session").decode()} if caller != "anonymous" else {}
        kid = {"party": party, "other-jurisdiction": other}.get(caller) or KEY_OF_CALLER[caller]
        return self.proof(kid, method, path, body)

    def new_referral(self, signer: str, sender: str = "CN-GD") -> bytes:
        payload = dict(self.example("referral.submit"), id=new_uuid7(), case=new_uuid7(), created=format_timestamp(utc_now()))
        payload.update({"from": sender, "to": "HK" if sender != "HK" else "CN-GD"})
        return sign_message(payload, self.test_key(signer))


def _message_body(world: World, caller: str) -> bytes:
    return {
        "party": lambda: world.new_referral(GD),
        "other-jurisdiction": lambda: world.new_referral(HK, sender="CN-GD"),
        "hub": lambda: world.new_referral(KEY_OF_CALLER["hub"]),
        "revoked-key": lambda: world.new_referral(KEY_OF_CALLER["revoked-key"], sender="HK"),
        "expired-key": lambda: world.new_referral(KEY_OF_CALLER["expired-key"], sender="MO"),
    }.get(caller, lambda: b"")()


def _post_message(world: World, caller: str) -> Answer:
    body = _message_body(world, caller)
    headers = {"Content-Type": "application/jose", **world.credentials(caller, GD, HK, "POST", "/v1/messages")} if caller in (
        "officer", "auditor") else {"Content-Type": "application/jose"}
    return world.hub.request("POST", "/v1/messages", body, headers)


def _post_bulk(world: World, caller: str) -> Answer:
    """The body `_post_message` sends, as a one-line bulk body (§12.9): the line's result, read as the answer to that
    line alone (PROTO-12.9-1), must be what `POST /v1/messages` answers the same caller."""
    sent = _message_body(world, caller)
    answer = world.hub.request("POST", "/v1/messages/bulk", sent, {"Content-Type": "application/vnd.gba.jose-lines"})
    if answer.status != 200:  # refused as a whole (an empty body)
        return answer
    (line,) = [json.loads(text) for text in answer.body.splitlines()]
    if "problem" in line:
        return Answer(line["status"], {"content-type": "application/problem+json"}, json.dumps(line["problem"]).encode())
    return Answer(line["status"], {"content-type": "application/json"}, json.dumps(line).encode())


def _get(path: str, party: str, other: str) -> Callable[[World, str], Answer]:
    def call(world: World, caller: str) -> Answer:
        concrete = path.format(message_id=world.referral_id, index=world.accepted_index, size=world.accepted_index + 1)
        return world.hub.request("GET", concrete, headers=world.credentials(caller, party, other, "GET", concrete))

    return call


def _post_receipt(world: World, caller: str) -> Answer:
    signer = {"party": HK, "other-jurisdiction": MO}.get(caller, HK)
    receipt = receipt_for(world.referral, world.test_key(signer), "HK" if signer == HK else "MO")
    headers = {"Content-Type": "application/jose", **world.credentials(caller, HK, MO, "POST", "/v1/receipts", receipt)}
    return world.hub.request("POST", "/v1/receipts", receipt, headers)


REQUESTS: dict[tuple[str, str], Callable[[World, str], Answer]] = {
    ("POST", "/v1/messages"): _post_message,
    ("POST", "/v1/messages/bulk"): _post_bulk,
    ("GET", "/v1/messages/{message_id}"): _get("/v1/messages/{message_id}", GD, MO),
    ("GET", "/v1/inbox"): _get("/v1/inbox", HK, MO),
    ("POST", "/v1/receipts"): _post_receipt,
    ("GET", "/v1/ledger/entries"): _get("/v1/ledger/entries", GD, MO),
    ("GET", "/v1/ledger/proof/inclusion"): _get("/v1/ledger/proof/inclusion?index={index}&size={size}", GD, MO),
    ("GET", "/v1/ledger/checkpoint"): _get("/v1/ledger/checkpoint", GD, MO),
    ("GET", "/v1/ledger/proof/consistency"): _get("/v1/ledger/proof/consistency?from=1&to=1", GD, MO),
    ("GET", "/v1/about"): _get("/v1/about", GD, MO),
    ("GET", "/v1/trust-list"): _get("/v1/trust-list", GD, MO),
    ("GET", "/healthz"): _get("/healthz", GD, MO),
    ("GET", "/readyz"): _get("/readyz", GD, MO),
    ("GET", "/metrics"): _get("/metrics", GD, MO),
    ("GET", "/openapi.json"): _get("/openapi.json", GD, MO),
}


def _scoped(route: tuple[str, str], answer: Answer, world: World) -> bool:
    """The answer gives another jurisdiction nothing of the referral CN-GD -> HK."""
    if route == ("GET", "/v1/messages/{message_id}") or route == ("GET", "/v1/ledger/proof/inclusion"):
        return answer.code == "not-found"
    if route == ("GET", "/v1/inbox"):
        return answer.status == 200 and answer.json()["deliveries"] == []
    if route == ("GET", "/v1/ledger/entries"):
        return answer.status == 200 and world.accepted_index not in {item["index"] for item in answer.json()["entries"]}
    if route == ("POST", "/v1/receipts"):
        return answer.code == "case-party-mismatch"  # MO acknowledging a delivery of a case it is no party to
    raise AssertionError(f"no scope check for {route}")


def _allowed(answer: Answer) -> bool:
    """Not refused for who the caller is (a public resource may still answer, say, not-found for a size it lacks)."""
    return answer.status < 400 or (answer.status not in AUTHORISATION_STATUSES and answer.code in (None, "not-found"))


@pytest.fixture
def world(database_url, example, test_key):
    with running_hub(database_url) as hub:
        payload = dict(example("referral.submit"), id=new_uuid7(), case=new_uuid7(), created=format_timestamp(utc_now()))
        referral = sign_message(payload, test_key(GD))
        assert hub.post_message(referral).status == 202
        row = wait_for_row(database_url, "SELECT ledger_index FROM messages WHERE id = $1::uuid", payload["id"])
        wait_for_row(database_url, "SELECT 1 FROM ledger_checkpoints WHERE size > $1", row["ledger_index"])
        access = dict(build_app(hub_settings(database_url))[ROUTE_ACCESS])
        yield World(hub, test_key, example, referral, payload["id"], row["ledger_index"], access)


def test_every_route_of_the_app_has_a_row_and_nothing_else_does(database_url):
    app = build_app(hub_settings(database_url))
    served = {(route.method, route.resource.canonical) for route in app.router.routes() if route.method != "HEAD"}
    assert served == set(app[ROUTE_ACCESS]), "a route without a row is denied; a row without a route is stale"
    assert set(API_ROUTES) == set(REQUESTS), "the walk below tries every API row"


def test_the_matrix_names_a_real_refusal_or_an_answer_in_every_cell():
    for access, outcomes in OUTCOMES.items():
        assert set(outcomes) == set(CALLERS), access
        for outcome in outcomes.values():
            assert outcome in (ALLOW, SCOPED, "sign-in", "forbidden") or outcome in CATALOGUE, (access, outcome)


def test_the_walk_of_every_api_route_with_every_caller_matches_the_matrix(world):
    mismatches = []
    for route, access in API_ROUTES.items():
        for caller in CALLERS:
            expected = OUTCOMES[access][caller]
            answer = REQUESTS[route](world, caller)
            if expected == ALLOW:
                ok = _allowed(answer)
            elif expected == SCOPED:
                ok = _scoped(route, answer, world)
            else:
                ok = answer.code == expected and answer.status == CATALOGUE[expected].status
            if not ok:
                mismatches.append(f"{route} as {caller}: expected {expected}, got {answer.status} {answer.code}")
    assert not mismatches, "\n".join(mismatches)


def test_a_route_missing_from_the_table_is_denied(database_url):
    async def secret(request: web.Request) -> web.Response:
        return web.json_response({"secret": True})

    app = build_app(hub_settings(database_url))
    app.router.add_get("/v1/new-and-unreviewed", secret)
    assert ("GET", "/v1/new-and-unreviewed") not in app[ROUTE_ACCESS]
    async def ask() -> tuple[int, dict]:
        async with TestClient(TestServer(app)) as client:
            response = await client.get("/v1/new-and-unreviewed")
            return response.status, json.loads(await response.text())

    status, problem = asyncio.run(ask())
    assert status == 404 and problem["code"] == "not-found"


# -- the console's rows ---------------------------------------------------------------------

REASON = "Authorisation matrix walk: checking who may read what"


def _console_paths(world: World) -> dict[tuple[str, str], tuple[str, dict[str, str] | None]]:
    """A concrete request (path, form or None) for every console row; a form's CSRF token is added per caller."""
    case = json.loads(base64.urlsafe_b64decode(world.referral.split(b".")[1] + b"==="))["case"]
    index = world.accepted_index
    return {
        ("GET", "/console/static"): ("/console/static/console.css", None),
        ("GET", "/console/login"): ("/console/login", None),
        ("POST", "/console/login"): ("/console/login", {"name": "nobody", "password": "wrong", "totp": "000000"}),
        ("GET", "/console/"): ("/console/", None),
        ("POST", "/console/language"): ("/console/language", {"language": "en", "next": "/console/dashboard"}),
        ("GET", "/console/dashboard"): ("/console/dashboard", None),
        ("POST", "/console/verify"): ("/console/verify", {}),
        ("GET", "/console/search"): (f"/console/search?case={case}", None),
        ("GET", "/console/export.csv"): (f"/console/export.csv?case={case}", None),
        ("GET", "/console/cases/{case}"): (f"/console/cases/{case}", None),
        ("GET", "/console/cases/{case}/bundle.json"): (f"/console/cases/{case}/bundle.json", None),
        ("GET", "/console/entries/{index}"): (f"/console/entries/{index}", None),
        ("GET", "/console/entries/{index}/proof.json"): (f"/console/entries/{index}/proof.json", None),
        ("GET", "/console/entries/{index}/bundle.json"): (f"/console/entries/{index}/bundle.json", None),
        ("GET", "/console/checkpoints"): ("/console/checkpoints", None),
        ("POST", "/console/messages/{message_id}/payload"): (f"/console/messages/{world.referral_id}/payload", {"reason": REASON}),
        ("GET", "/console/persons"): ("/console/persons", None),
        ("POST", "/console/persons"): ("/console/persons", {"number": "A123456(3)", "reason": REASON}),
        ("POST", "/console/logout"): ("/console/logout", {}),  # last: it ends the session
    }


def _console_outcome(route: tuple[str, str], reply: Any, case: str) -> str:
    """What the console answered, in the matrix's terms: `scoped` when a page about the referral CN-GD -> HK
    is not found, or a list leaves it out."""
    location = reply.headers.get("location", "")
    if reply.status == 303 and location.startswith("/console/login") or reply.status == 401:
        return "sign-in"
    if reply.status == 403:
        return "forbidden"
    if route in _RECORD_ROUTES:
        return SCOPED if reply.status == 404 else (ALLOW if reply.status < 400 else f"refused {reply.status}")
    if route in _LIST_ROUTES and reply.status == 200:
        return SCOPED if f"/console/cases/{case}" not in reply.text and f"{case}," not in reply.text else ALLOW
    return ALLOW if reply.status < 400 else f"refused {reply.status}"


_RECORD_ROUTES = {
    ("GET", "/console/cases/{case}"), ("GET", "/console/cases/{case}/bundle.json"), ("GET", "/console/entries/{index}"),
    ("GET", "/console/entries/{index}/proof.json"), ("GET", "/console/entries/{index}/bundle.json"),
    ("POST", "/console/messages/{message_id}/payload"),
}
"""Console pages about one record of the referral CN-GD -> HK: an officer of MO must not find them."""
_LIST_ROUTES = {("GET", "/console/search"), ("GET", "/console/export.csv")}
"""Console lists that name records: an officer of MO must not see the referral in them."""


def _satisfies(expected: str, actual: str, route: tuple[str, str]) -> bool:
    """A page that is not about any one record (the dashboard, the checkpoints) is scoped by construction."""
    if expected == SCOPED and route not in _RECORD_ROUTES | _LIST_ROUTES:
        return actual == ALLOW
    return actual == expected


def test_the_walk_of_every_console_route_with_every_caller_matches_the_matrix(world, database_url):
    from tests.console.harness import Client, enrol, totp

    officer_secret = enrol(database_url, "matrix-mo-officer", "officer", "MO", payload_right=True)
    auditor_secret = enrol(database_url, "matrix-auditor", "auditor", payload_right=True)
    console_routes = {route: access for route, access in world.hub_access.items() if route[1].startswith("/console")}
    paths = _console_paths(world)
    assert set(paths) == set(console_routes), "the walk tries every console row"
    case = json.loads(base64.urlsafe_b64decode(world.referral.split(b".")[1] + b"==="))["case"]
    mismatches = []
    for caller in CALLERS:
        client = Client(world.hub.base_url)
        if caller == "officer":
            assert client.sign_in("matrix-mo-officer", totp(officer_secret)).status == 303
        elif caller == "auditor":
            assert client.sign_in("matrix-auditor", totp(auditor_secret)).status == 303
        for route, (path, form) in paths.items():
            expected = OUTCOMES[console_routes[route]][caller]
            if route == ("POST", "/console/login"):
                # A real attempt with wrong credentials, each from its own address (so throttling stays out of it):
                # the route is open when it answers the attempt with the sign-in form again.
                source = f"127.0.0.{10 + CALLERS.index(caller)}"
                reply = Client(world.hub.base_url, source=source).sign_in("nobody", "000000", password="wrong")
                actual = ALLOW if reply.status == 401 and 'name="login_token"' in reply.text else f"refused {reply.status}"
            else:
                if form is not None and caller in ("officer", "auditor"):
                    form = {**form, "csrf": client.csrf()}
                reply = client.request(route[0], path, form)
                actual = _console_outcome(route, reply, case)
            if not _satisfies(expected, actual, route):
                mismatches.append(f"{route} as {caller}: expected {expected}, got {actual} ({reply.status})")
    assert not mismatches, "\n".join(mismatches)

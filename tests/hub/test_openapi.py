"""The OpenAPI 3.1 description of the hub (gateway/hub/openapi.py, GET /openapi.json, docs/openapi.json).

The document must be valid OpenAPI 3.1, describe exactly the routes of
gateway/hub/http.py, give every catalogue code a place (new codes appear by
themselves), match what a running hub really answers, and be what ships in docs/.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import OpenAPIV31SpecValidator, validate

from gateway.hub import http, openapi
from gateway.hub.openapi import NOT_ANSWERED_HERE, UNROUTED, build_document, codes_for
from gateway.protocol.errors import CATALOGUE, Code, ProtocolError
from gateway.protocol.ids import new_uuid7
from gateway.protocol.message import sign_message
from gateway.protocol.request_proof import make_request_proof
from gateway.protocol.schema import SCHEMA_BASE, load_message_schemas
from gateway.protocol.timestamps import format_timestamp, utc_now
from tests.hub.harness import hub_settings, running_hub

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "docs" / "openapi.json"
GD, HK = "test-cn-gd-message-1", "test-hk-message-1"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return build_document()


def schema_validator(document: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    """A validator for a schema of `document`; its `#/components/...` references resolve in `document`."""
    root = {"allOf": [schema], "components": document["components"]}
    return Draft202012Validator(root, format_checker=Draft202012Validator.FORMAT_CHECKER)


def response_for(document: dict[str, Any], method: str, template: str, status: int) -> dict[str, Any]:
    responses = document["paths"][template][method.lower()]["responses"]
    assert str(status) in responses, f"{method} {template} does not document status {status} (documents {sorted(responses)})"
    return responses[str(status)]


# -- the document itself --------------------------------------------------------------


def test_the_document_is_valid_openapi_3_1(document):
    assert document["openapi"].startswith("3.1.")
    validate(document, cls=OpenAPIV31SpecValidator)


def test_docs_openapi_json_is_what_the_generator_prints():
    printed = subprocess.run(
        [sys.executable, "-m", "gateway.hub.openapi"], cwd=REPO, capture_output=True, check=True, timeout=120
    ).stdout
    assert SHIPPED.exists(), "docs/openapi.json is missing: python -m gateway.hub.openapi > docs/openapi.json"
    assert SHIPPED.read_bytes() == printed, "docs/openapi.json is stale: python -m gateway.hub.openapi > docs/openapi.json"
    validate(json.loads(SHIPPED.read_bytes()), cls=OpenAPIV31SpecValidator)


def test_the_operations_are_exactly_the_routes_of_the_hub(document):
    app = http.build_app(hub_settings("postgresql://unused@127.0.0.1/unused"))
    routes = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
        and not route.resource.canonical.startswith("/console")  # the officers' HTML pages are not the API (docs/console.md)
    }
    documented = {(method, path) for path, operations in document["paths"].items() for method in operations}
    assert documented == routes


def test_the_strings_shared_with_the_http_binding_agree():
    assert (openapi.JOSE, openapi.PROBLEM, openapi.REQUEST_PROOF_HEADER) == (http.JOSE, http.PROBLEM, http.REQUEST_PROOF_HEADER)


def test_reconciliation_and_pull_delivery_are_the_resources_that_need_a_request_proof(document):
    scheme = document["components"]["securitySchemes"][openapi.SECURITY_SCHEME]
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "GBA-Request-Proof")
    assert "gba-request+jws" in scheme["description"] and "§9.5" in scheme["description"]
    secured = {
        (method, path)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        if operation["security"] != []
    }
    assert secured == {
        ("get", "/v1/messages/{message_id}"), ("get", "/v1/inbox"), ("post", "/v1/receipts"),
        ("get", "/v1/ledger/entries"), ("get", "/v1/ledger/proof/inclusion"),
    }
    assert document["paths"]["/v1/messages/{message_id}"]["get"]["security"] == [{openapi.SECURITY_SCHEME: []}]


def test_a_message_is_sent_as_application_jose_and_described_by_the_schema_ids(document):
    body = document["paths"]["/v1/messages"]["post"]["requestBody"]
    assert list(body["content"]) == ["application/jose"]
    schema = body["content"]["application/jose"]["schema"]
    assert schema == {"$ref": "#/components/schemas/CompactJws"}
    assert document["components"]["schemas"]["CompactJws"]["type"] == "string"
    for name in ("message.json", "envelope.json", "defs.json", *(f"{t}.json" for t in load_message_schemas().types)):
        assert SCHEMA_BASE + name in body["description"], name


def test_every_schema_id_named_in_the_document_is_a_shipped_schema(document):
    shipped = load_message_schemas().documents
    named = re.findall(re.escape(SCHEMA_BASE) + r"([A-Za-z0-9._-]+\.json)(#[A-Za-z0-9/$_-]*)?", json.dumps(document))
    assert named
    for name, fragment in named:
        assert name in shipped, f"{SCHEMA_BASE}{name} is not a shipped schema"
        target: Any = shipped[name]
        for part in fragment.lstrip("#").split("/")[1:]:
            assert part in target, f"{SCHEMA_BASE}{name}{fragment} does not resolve"
            target = target[part]


# -- the catalogue in the document ---------------------------------------------------


def test_the_problem_schema_has_every_catalogue_code(document):
    problem = document["components"]["schemas"]["Problem"]
    assert problem["properties"]["code"]["enum"] == list(CATALOGUE)
    assert problem["properties"]["status"]["enum"] == sorted({entry.status for entry in CATALOGUE.values()})
    assert set(problem["required"]) == {"type", "title", "status", "detail", "code", "requirement"}
    assert {"where", "instance"} <= set(problem["properties"])


def test_every_catalogue_code_has_a_place(document):
    answered = {
        code
        for operations in document["paths"].values()
        for operation in operations.values()
        for status, response in operation["responses"].items()
        if "application/problem+json" in response.get("content", {})
        for code in response["content"]["application/problem+json"]["examples"]
    }
    elsewhere = {entry.code for entry in codes_for(UNROUTED + NOT_ANSWERED_HERE)}
    homeless = [f"{code} ({CATALOGUE[code].requirement})" for code in CATALOGUE if code not in answered | elsewhere]
    assert not homeless, (
        f"catalogue codes that no operation answers and that are not listed as unrouted or checked elsewhere: {homeless}; "
        "name their section in an operation's `answers` or in NOT_ANSWERED_HERE (gateway/hub/openapi.py)"
    )
    for entry in codes_for(UNROUTED):
        assert f"`{entry.code}`" in document["info"]["description"]


def test_each_problem_response_lists_codes_of_its_status_with_examples_that_match(document):
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                media = response["content"].get("application/problem+json")
                if media is None:
                    assert status.startswith("2"), (method, path, status)
                    continue
                codes = media["schema"]["allOf"][1]["properties"]["code"]["enum"]
                assert codes and list(media["examples"]) == codes
                validator = schema_validator(document, media["schema"])
                for code in codes:
                    assert str(CATALOGUE[code].status) == status, (method, path, code)
                    assert f"`{code}`" in response["description"]
                    example = media["examples"][code]["value"]
                    assert example == ProtocolError(code).problem(instance=example["instance"])
                    validator.validate(example)
                other = next(c for c in CATALOGUE if CATALOGUE[c].status != int(status))
                assert not validator.is_valid(ProtocolError(other).problem()), (method, path, status, other)


def test_the_operations_answer_the_codes_of_their_checks(document):
    def answered(method: str, path: str) -> set[str]:
        operation = document["paths"][path][method]
        return {code for response in operation["responses"].values() for code in response["content"].get("application/problem+json", {}).get("examples", {})}

    post, reconcile = answered("post", "/v1/messages"), answered("get", "/v1/messages/{message_id}")
    assert {"media-type-unsupported", "message-too-large", "jws-malformed", "signature-invalid", "schema-violation", "id-conflict", "route-refused", "case-state-conflict", "receipt-target-invalid", "unavailable", "internal-error"} <= post
    assert not {code for code in post if code.startswith("request-proof-")} | ({"not-found", "method-not-allowed", "trust-list-invalid", "attestation-mismatch"} & post)
    assert {code for code in CATALOGUE if code.startswith("request-proof-")} | {"not-found", "key-unknown", "signature-invalid", "unavailable"} <= reconcile
    assert not {"schema-violation", "route-refused", "media-type-unsupported", "id-conflict"} & reconcile
    assert answered("get", "/healthz") == answered("get", "/v1/about") == answered("get", "/openapi.json") == {"rate-limited", "internal-error"}
    assert answered("get", "/readyz") == answered("get", "/metrics") == {"rate-limited", "unavailable", "internal-error"}
    assert {"client-certificate-required", "client-certificate-mismatch", "request-timeout"} <= post
    assert "request-timeout" not in reconcile and "client-certificate-mismatch" in reconcile


def test_a_code_added_to_the_catalogue_appears_without_an_edit(monkeypatch):
    monkeypatch.setitem(CATALOGUE, "jws-example-added", Code("jws-example-added", 400, "An example code added later", "PROTO-3.1-9"))
    monkeypatch.setitem(CATALOGUE, "case-example-added", Code("case-example-added", 409, "Another example code", "PROTO-7.3-9"))
    document = build_document()
    assert {"jws-example-added", "case-example-added"} <= set(document["components"]["schemas"]["Problem"]["properties"]["code"]["enum"])

    def codes(method: str, path: str, status: int) -> list[str]:
        return response_for(document, method, path, status)["content"]["application/problem+json"]["examples"]

    assert "jws-example-added" in codes("post", "/v1/messages", 400)
    assert "jws-example-added" in codes("get", "/v1/messages/{message_id}", 400)
    assert "case-example-added" in codes("post", "/v1/messages", 409)
    assert "409" not in document["paths"]["/v1/messages/{message_id}"]["get"]["responses"]
    validate(document, cls=OpenAPIV31SpecValidator)


# -- the running hub -------------------------------------------------------------------


def test_the_running_hub_serves_the_document_and_answers_as_it_says(database_url, example, test_key):
    payload = dict(example("referral.submit"), id=new_uuid7(), case=new_uuid7(), created=format_timestamp(utc_now().replace(microsecond=0)))
    compact = sign_message(payload, test_key(GD))
    own = f"/v1/messages/{payload['id']}"
    with running_hub(database_url) as hub:

        def proof(path: str, kid: str = GD) -> dict[str, str]:
            return {"GBA-Request-Proof": make_request_proof(test_key(kid), "GET", hub.settings.public_base_url + path, None, utc_now()).decode()}

        served = hub.request("GET", "/openapi.json")
        exchanges = [
            ("POST", "/v1/messages", hub.post_message(compact)),
            ("POST", "/v1/messages", hub.post_message(compact)),
            ("POST", "/v1/messages", hub.post_message(compact, content_type="text/plain")),
            ("POST", "/v1/messages", hub.post_message(b"not a jws")),
            ("GET", "/v1/messages/{message_id}", hub.request("GET", own, headers=proof(own))),
            ("GET", "/v1/messages/{message_id}", hub.request("GET", own)),
            ("GET", "/v1/messages/{message_id}", hub.request("GET", own, headers=proof(own, HK))),
            ("GET", "/v1/about", hub.request("GET", "/v1/about")),
            ("GET", "/healthz", hub.request("GET", "/healthz")),
            ("GET", "/readyz", hub.request("GET", "/readyz")),
            ("GET", "/metrics", hub.request("GET", "/metrics")),
            ("GET", "/openapi.json", served),
        ]
        unknown_path = hub.request("GET", "/v1/nothing-here")
        wrong_method = hub.request("DELETE", "/v1/about")

    assert served.status == 200, served.body
    assert served.headers["content-type"].split(";")[0] == "application/json"
    document = served.json()
    assert document == build_document(hub.settings.public_base_url)
    assert document["servers"][0]["url"] == hub.settings.public_base_url.rstrip("/")
    validate(document, cls=OpenAPIV31SpecValidator)

    seen = []
    for method, template, answer in exchanges:
        response = response_for(document, method, template, answer.status)
        media_type = answer.headers["content-type"].split(";")[0].strip()
        assert media_type in response["content"], f"{method} {template} {answer.status}: {media_type} not documented"
        seen.append((method, template, answer.status, answer.code))
        if media_type.endswith("json"):
            schema_validator(document, response["content"][media_type]["schema"]).validate(answer.json())
    assert [status for *_, status, _ in seen] == [202, 202, 415, 400, 200, 401, 404, 200, 200, 200, 200, 200], seen

    problem = schema_validator(document, {"$ref": "#/components/schemas/Problem"})
    for answer, code in ((unknown_path, "not-found"), (wrong_method, "method-not-allowed")):
        assert answer.code == code and answer.status == CATALOGUE[code].status
        problem.validate(answer.json())
        assert code in {entry.code for entry in codes_for(UNROUTED)}


def test_the_served_document_is_the_shipped_one_but_for_the_server(document):
    served = build_document("http://127.0.0.1:8443/")
    shipped = json.loads(SHIPPED.read_bytes())
    assert served["servers"][0]["url"] == "http://127.0.0.1:8443"
    assert {**copy.deepcopy(served), "servers": shipped["servers"]} == shipped

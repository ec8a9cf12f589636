"""Abuse limits (docs/protocol.md §12.8): rates, places in flight, long polls, sizes and slow bodies.

A real hub on a socket; budgets are set so small that the limit is reached by the
test's own requests, with refill rates so slow that time cannot refill them mid-test.
"""

from __future__ import annotations

import socket
import threading
from urllib.parse import urlsplit

from gateway.hub.limits import CallerLimit, CallerLimits
from gateway.protocol.errors import ProtocolError
from tests.cli_runner import assert_refused
from tests.hub.harness import Answer, running_hub, wait_for_row
from tests.hub.test_delivery_pull import GD, HK, Party
from tests.hub.test_transport_security import referral

FROZEN = 1e-6
"""A refill rate (tokens a second) that no test outlives."""


def test_a_jurisdiction_over_its_rate_is_refused_with_retry_after(database_url, example, test_key):
    with running_hub(database_url, caller_limit=CallerLimit(rate_per_second=FROZEN, burst=2, in_flight=10)) as hub:
        assert [hub.post_message(referral(example, test_key(GD))).status for _ in range(2)] == [202, 202]
        refused = hub.post_message(referral(example, test_key(GD)))
        assert_refused(refused, "rate-limited")
        assert int(refused.headers["retry-after"]) >= 1
        other = hub.post_message(referral(example, test_key(HK), sender="HK", receiver="CN-GD"))
        assert other.code != "rate-limited", "another jurisdiction's budget is its own"


def test_unsigned_requests_naming_a_jurisdictions_key_do_not_spend_its_budget(database_url, example, test_key):
    with running_hub(database_url, caller_limit=CallerLimit(rate_per_second=FROZEN, burst=1, in_flight=10)) as hub:
        header, payload, signature = referral(example, test_key(GD)).split(b".")
        forged = b".".join([header, payload, signature[:-4] + (b"AAAA" if not signature.endswith(b"AAAA") else b"BBBB")])
        for _ in range(5):
            assert_refused(hub.post_message(forged), "signature-invalid")
        assert hub.post_message(referral(example, test_key(GD))).status == 202


def test_an_address_over_its_rate_is_refused_before_anything_else(database_url):
    with running_hub(database_url, address_limit=CallerLimit(rate_per_second=FROZEN, burst=3, in_flight=10)) as hub:
        assert [hub.request("GET", "/v1/about").status for _ in range(3)] == [200, 200, 200]
        assert_refused(hub.request("GET", "/v1/about"), "rate-limited")


def test_a_jurisdiction_holds_at_most_its_long_polls(database_url, test_key):
    with running_hub(database_url, long_polls_per_jurisdiction=1) as hub:
        hk = Party(hub, test_key(HK))
        answers = []
        waiting = threading.Thread(target=lambda: answers.append(hk.inbox(wait=3)))
        waiting.start()
        wait_for_row(database_url, "SELECT 1 FROM request_proof_ids")
        assert_refused(hk.inbox(wait=1), "rate-limited")
        waiting.join(60)
        assert answers and answers[0].status == 200
        assert hk.inbox().status == 200, "the place is free again once the long poll ended"


def test_in_flight_places_are_released_when_the_request_ends():
    limits = CallerLimits(CallerLimit(rate_per_second=1e9, burst=10**9, in_flight=1))
    with limits.admit("HK"):
        try:
            with limits.admit("HK"):
                raise AssertionError("a second place was granted")
        except ProtocolError as refusal:
            assert refusal.code == "rate-limited" and refusal.retry_after_seconds == 1
    with limits.admit("HK"):
        pass


def _raw_exchange(base_url: str, head: bytes, body_part: bytes) -> Answer:
    """Send `head` and `body_part` on a socket; the answer, read until the server closes the connection
    (a server that waited for the rest of the body would make this time out instead)."""
    parts = urlsplit(base_url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as connection:
        connection.sendall(head + body_part)
        raw = b""
        while chunk := connection.recv(65536):
            raw += chunk
    head_part, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head_part.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in header_lines)}
    return Answer(int(status_line.split()[1]), headers, body)


def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_read(database_url):
    with running_hub(database_url) as hub:
        head = (b"POST /v1/messages HTTP/1.1\r\nHost: hub\r\nContent-Type: application/jose\r\n"
                b"Content-Length: 100000000\r\n\r\n")
        answer = _raw_exchange(hub.base_url, head, b"")
    assert_refused(answer, "message-too-large")


def test_a_body_that_does_not_arrive_in_time_is_refused(database_url):
    with running_hub(database_url, body_read_seconds=1) as hub:
        head = b"POST /v1/messages HTTP/1.1\r\nHost: hub\r\nContent-Type: application/jose\r\nContent-Length: 1000\r\n\r\n"
        answer = _raw_exchange(hub.base_url, head, b"eyJhbGciOi")
    assert_refused(answer, "request-timeout")

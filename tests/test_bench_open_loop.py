"""The acceptance benchmark's open loop (bench/accept.py --rate): requests leave on a fixed schedule, and latency
counts from when each was due, not from when it could leave (coordinated omission, as wrk2 corrects it).

A slow server makes the difference visible: it answers each request after at least SLOW_MS, while the schedule
wants one every INTERVAL_MS on the single connection. Each request then leaves later than it was due by at least
SLOW_MS - INTERVAL_MS more than the one before, so the k-th (from 0) answer's latency from its due time is at least
k * (SLOW_MS - INTERVAL_MS) + SLOW_MS, while its service time (from when it left) stays near SLOW_MS. A closed-loop
generator, or one that timed from the send, would report only the service time. Both generators are checked: wrk
(with its LuaJIT script) and the Python client processes.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.conftest import unavailable_here

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import accept  # noqa: E402  (bench/accept.py)

SLOW_MS = 60
INTERVAL_MS = 20
SLOW_SHARED_MS = 200

_SERVER = """
import asyncio, base64, json, socket, sys
from aiohttp import web

SLOW_MS, WHICH = int(sys.argv[1]), sys.argv[2]

def named(body):
    try:
        payload = body.split(b".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + b"=" * (-len(payload) % 4)))["id"]
    except (IndexError, ValueError, KeyError):
        return None

async def answer(request):
    message_id = named(await request.read())
    if WHICH == "every" or (message_id or "").endswith("-slow"):
        # The service time under test (a slow hub, or one slow answer among quick ones), not synchronisation:
        # nothing waits on it.
        await asyncio.sleep(SLOW_MS / 1000)
    return web.json_response({"message_id": message_id, "hub_receipt": "eyJ", "replayed": False}, status=202)

async def main():
    application = web.Application()
    application.router.add_post("/v1/messages", answer)
    runner = web.AppRunner(application)
    await runner.setup()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    site = web.SockSite(runner, listener)
    await site.start()
    print(listener.getsockname()[1], flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


@pytest.fixture
def server():
    """`start(slow_ms, which)`: a server that answers each message with the id it holds, as the hub's `202` does
    (PROTO-12.1-1), after `slow_ms` for `every` message or only for those whose id ends in `-slow` (`named`)."""
    processes = []

    def start(slow_ms: int, which: str) -> str:
        process = subprocess.Popen([sys.executable, "-c", _SERVER, str(slow_ms), which], stdout=subprocess.PIPE, text=True)
        processes.append(process)
        return f"http://127.0.0.1:{int(process.stdout.readline())}"

    yield start
    for process in processes:
        process.kill()
        process.wait(10)


@pytest.mark.parametrize("kind", ["python", "wrk"])
def test_latency_counts_from_when_each_request_was_due(kind, server, tmp_path):
    if kind == "wrk" and not shutil.which("wrk"):
        unavailable_here("wrk is not installed (apt-get install wrk)")
    generator = accept.LoadGenerator(kind, threads=1, concurrency=1, folder=tmp_path)
    bodies = [f"body-{number}".encode() for number in range(200)]

    result = generator.run(server(SLOW_MS, "every"), bodies, seconds=2, rate=1000 / INTERVAL_MS)

    assert result.errors == {} and result.exhausted == 0
    answered = result.answered
    assert answered >= 3, f"only {answered} answers in 2 s from a server that takes {SLOW_MS} ms"
    service = result.extra["service"]
    assert service["p50_ms"] >= SLOW_MS, service
    # The last answer waited behind every earlier one: its latency from its due time has their lateness in it.
    assert result.max_ms >= (answered - 1) * (SLOW_MS - INTERVAL_MS) + SLOW_MS, (answered, result.max_ms)
    assert result.max_ms > 2 * service["max_ms"], (result.max_ms, service)
    # Every request but the first left more than 10 ms after it was due.
    assert result.extra["late"] >= answered - 1
    # Second by second: every answer counted once, and from the third on each is over the 100-ms bound (the k-th is
    # at least k * 40 + 60 ms late), so the answers over it are all but the first two.
    rows = result.extra["timeline"]
    assert [row[0] for row in rows] == list(range(len(rows))), rows
    assert sum(row[1] for row in rows) == answered, rows
    assert sum(row[2] for row in rows) >= answered - 2, rows
    # The first row's second as wall-clock time (to find it in the logs): in the last few seconds, as the run was.
    started = datetime.fromisoformat(result.extra["timeline_start"].replace("Z", "+00:00"))
    assert timedelta(0) < datetime.now(timezone.utc) - started < timedelta(seconds=30), result.extra["timeline_start"]


def _named_bodies(count: int, slow_every: int = 0) -> list[bytes]:
    """Bodies shaped as compact JWS whose payload holds an `id`; every `slow_every`-th id ends in `-slow`."""
    def part(document: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(document).encode()).rstrip(b"=").decode()

    header = part({"alg": "EdDSA", "kid": "bench"})
    ids = [f"m-{number}" + ("-slow" if slow_every and number % slow_every == slow_every - 1 else "")
           for number in range(count)]
    return [f"{header}.{part({'id': key})}.c2ln".encode() for key in ids]


def test_the_bodies_keys_are_their_message_ids(tmp_path):
    bodies = _named_bodies(3, slow_every=3)
    assert accept.message_keys(bodies) == ["m-0", "m-1", "m-2-slow"]
    assert accept.message_keys([b"x", *bodies]) is None, "a body that is not a compact JWS: no keys"
    assert accept.message_keys(bodies + bodies[:1]) is None, "two bodies with one id could not be told apart"
    escaped = base64.urlsafe_b64encode(json.dumps({"id": "a\\b"}).encode()).rstrip(b"=")
    assert accept.message_keys([b"e30." + escaped + b".c2ln"]) is None, "an id the answer's JSON would escape"
    # Without keys a wrk thread could not tell its connections' answers apart: such an open loop is refused.
    generator = accept.LoadGenerator("wrk", threads=1, concurrency=4, folder=tmp_path)
    with pytest.raises(ValueError, match="distinct ids"):
        generator.run("http://127.0.0.1:9", [b"x"] * 10, seconds=1, rate=10)


@pytest.mark.parametrize("threads", [1, 4])
@pytest.mark.parametrize("kind", ["python", "wrk"])
def test_an_open_loop_never_sends_more_than_its_schedule(kind, threads, server, tmp_path):
    """Against a quick server the schedule, not the answers, sets the pace: one thread's four connections share its
    schedule (or, with four threads, each connection has one of its own), so in all at most one request an interval
    of a thread (and one more a thread for the fence post); every answer is matched to its request; and each latency
    from its due time is at least its service time, so every percentile of the one is at least the same percentile of
    the other."""
    if kind == "wrk" and not shutil.which("wrk"):
        unavailable_here("wrk is not installed (apt-get install wrk)")
    url = server(0, "named")
    rate = 100.0
    generator = accept.LoadGenerator(kind, threads=threads, concurrency=4, folder=tmp_path)
    result = generator.run(url, _named_bodies(2000), seconds=2, rate=rate)

    assert result.errors == {} and result.answered > 0 and result.extra["unmatched"] == 0
    assert result.answered <= int(result.duration_s * rate) + threads, (result.answered, result.duration_s)
    service = result.extra["service"]
    for share in ("p50", "p90", "p95", "p99"):
        assert getattr(result, f"{share}_ms") >= service[f"{share}_ms"], (share, result, service)
    assert result.max_ms >= service["max_ms"]


@pytest.mark.parametrize("kind", ["python", "wrk"])
def test_a_message_due_while_one_connection_waits_goes_on_another(kind, server, tmp_path):
    """One message in 12 takes SLOW_SHARED_MS to answer; one thread's eight connections share a schedule of one
    message every 20 ms. While a slow answer is awaited the other connections carry what falls due, so the quick
    answers neither wait behind it nor take its time: each answer is matched to its own request (by the id it
    names), the quick ones (11 in 12, so the 90th percentile) are counted quick, and the slow ones (the 95th and 99th
    percentiles) slow, from their due times as from when they left. With a schedule for each connection every slow
    answer would make its connection's next message late (by 40 ms here); with the pool, fewer are late than that."""
    if kind == "wrk" and not shutil.which("wrk"):
        unavailable_here("wrk is not installed (apt-get install wrk)")
    url = server(SLOW_SHARED_MS, "named")
    generator = accept.LoadGenerator(kind, threads=1, concurrency=8, folder=tmp_path)
    result = generator.run(url, _named_bodies(1000, slow_every=12), seconds=4, rate=50)

    assert result.errors == {} and result.extra["unmatched"] == 0
    # The slow ones sent in the last SLOW_SHARED_MS are not answered in the window: the others are at least 1 in 14.
    slow = result.answered // 14
    assert slow >= 8, f"only {result.answered} answers in 4 s at 50/s"
    service = result.extra["service"]
    assert service["p90_ms"] < SLOW_SHARED_MS and result.p90_ms < SLOW_SHARED_MS, (result, service)
    assert service["p95_ms"] >= SLOW_SHARED_MS and result.p95_ms >= SLOW_SHARED_MS, (result, service)
    assert result.extra["late"] < slow - 1, (result.extra["late"], slow)
    # The timeline counts every matched answer, and over the 100-ms bound the slow ones (at least 1 in 14 of the
    # answers) and few quick ones (at most 1 in 12 were slow; the margin to 1 in 6 is for a busy machine's stalls).
    rows = result.extra["timeline"]
    assert sum(row[1] for row in rows) == result.answered, rows
    assert slow <= sum(row[2] for row in rows) <= result.answered // 6, (rows, slow)


def test_the_timeline_fills_silent_seconds_and_says_where_the_tail_lies():
    """A second without answers is a row of its own (a stall is the thing to see); `over_bound` says how many answers
    were over the bound, in how many seconds, and the share of them in the worst five seconds."""
    assert accept.timeline({}, {}) == []
    rows = accept.timeline({1000: 5, 1003: 7}, {1003: 2})
    assert rows == [[0, 5, 0], [1, 0, 0], [2, 0, 0], [3, 7, 2]]
    assert accept.over_bound(rows) == {"bound_ms": accept.TIMELINE_BOUND_MS, "answers": 2, "seconds": 1,
                                       "share_in_worst_5_seconds": 1.0}
    spread = [[second, 100, 1] for second in range(20)]
    assert accept.over_bound(spread)["share_in_worst_5_seconds"] == 0.25
    assert accept.over_bound([[0, 10, 0]])["share_in_worst_5_seconds"] is None


def test_percentile_ranks_are_whole_numbers_of_values():
    """99.9 % of 1,000 values is the 999th (a float product would say the 1,000th), 90 % of 70 the 63rd."""
    assert accept.rank(1000, 99.9) == 998
    assert accept.rank(2000, 99.9) == 1997
    assert accept.rank(70, 90) == 62
    assert accept.rank(3, 50) == 1 and accept.rank(1, 99) == 0 and accept.rank(10, 100) == 9


def test_an_open_loop_gives_each_client_process_bodies_for_its_connections():
    """64 connections over 12 processes: four have six connections, eight have five. Each gets the bodies in
    proportion, so none runs out before the others (an even split would give the six-connection processes too few)."""
    bodies = [str(number).encode() for number in range(6400)]
    split = accept.shares(bodies, 64, 12, open_loop=True)
    assert [share for share, _ in split] == [6] * 4 + [5] * 8
    assert [len(mine) for _, mine in split] == [600] * 4 + [500] * 8
    assert [body for _, mine in split for body in mine] == bodies, "every body once, none lost"
    # A closed loop cycles over its bodies: every process gets some even from a handful.
    assert all(mine for _, mine in accept.shares(bodies[:3], 64, 2, open_loop=False))


@pytest.mark.parametrize("arguments, refusal", [
    (["--rate", "1", "--concurrency", "64"], "at most 60.0 s"),
    (["--rate", "2000", "--seconds", "240"], "needs more pre-signed messages"),
    (["--rate", "0.5"], "between 1 and 100,000"),
])
def test_open_loops_the_run_cannot_honour_are_refused_at_once(arguments, refusal, capsys):
    with pytest.raises(SystemExit) as stopped:
        accept.parse_arguments(arguments)
    assert stopped.value.code == 2
    assert refusal in capsys.readouterr().err

"""Instructions the hub executes per accepted message, counted by valgrind (issue 12): a figure the machine's speed
does not move.

    .venv/bin/python bench/instructions.py                    # 400 messages, 8 in flight, plain HTTP
    .venv/bin/python bench/instructions.py --messages 1000 --json-out result.json

CPU seconds on this 2-core virtual machine change with its neighbours on the host: the
Ed25519 and echo ceilings measured in the same run have moved by a third between two runs
a minute apart, and by a factor of two between days. A code change of 5-10 % cannot be
seen in them. Valgrind's callgrind counts the instructions a process executes, which are
the same for the same code, inputs and interpreter whatever the machine is doing.

What one run does:

1. starts the embedded PostgreSQL and the hub (`python -m gateway.cli serve`, the same
   configuration as `accept.py`, plain HTTP) under `valgrind --tool=callgrind`, which makes
   the hub about 50 times slower; only the hub is counted, not PostgreSQL or this client;
2. sends `--warmup` messages and waits until the console's person indexer has read them
   (first-use costs stay out of the count);
3. zeroes the counters (`callgrind_control --zero`), sends `--messages` pre-signed
   messages (the rotation of `accept.py`, each once), `--concurrency` in flight, each
   answered `202`;
4. waits until the person indexer has read them too (it runs beside acceptance in every
   process, and its work is part of a message's cost), then dumps the counters;
5. with `--deliveries` (the default): HK and MO pull the warm-up's deliveries uncounted,
   then, counted, every other delivery from their inboxes (`GET /v1/inbox`, `--pull-limit`
   a page, request proofs signed with their published test keys): the lease, attestation,
   local view and answer of each delivery.

The JSON gives `hub_instructions_per_message` and `hub_instructions_per_delivery` (each
count divided by the messages or deliveries) and the counts themselves. Timings are not
reported: under valgrind they mean nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import http.client
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))

import accept  # noqa: E402  (bench/accept.py: database, configuration, messages, processes)

START_TIMEOUT = 900.0
"""Seconds for the hub to start under valgrind (imports alone take about a minute)."""
INDEX_TIMEOUT = 600.0


def _say(message: str) -> None:
    print(f"instructions: {message}", file=sys.stderr, flush=True)


def send(url: str, bodies: Sequence[bytes], concurrency: int) -> dict[int, int]:
    """POST every body once to `url`/v1/messages, `concurrency` at a time over kept-alive connections; statuses counted."""
    parts = re.match(r"http://([^:/]+):(\d+)", url)
    assert parts is not None, url
    work: queue.SimpleQueue[bytes] = queue.SimpleQueue()
    for body in bodies:
        work.put(body)

    def worker() -> dict[int, int]:
        statuses: dict[int, int] = {}
        connection = http.client.HTTPConnection(parts[1], int(parts[2]), timeout=300)
        try:
            while True:
                try:
                    body = work.get_nowait()
                except queue.Empty:
                    return statuses
                connection.request("POST", "/v1/messages", body=body, headers={"Content-Type": "application/jose"})
                answer = connection.getresponse()
                answer.read()
                statuses[answer.status] = statuses.get(answer.status, 0) + 1
        finally:
            connection.close()

    totals: dict[int, int] = {}
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        for statuses in pool.map(lambda _: worker(), range(concurrency)):
            for status, count in statuses.items():
                totals[status] = totals.get(status, 0) + count
    return totals


def pull(url: str, receiver: str, limit: int, after: int, most: int | None = None) -> tuple[int, int]:
    """`GET /v1/inbox` as `receiver` (its published test key signs the request proofs), `limit` a page, from cursor
    `after`, until the inbox is empty or `most` deliveries came; (deliveries, the cursor reached)."""
    from gateway.keyfiles import read_private_key
    from gateway.protocol.request_proof import make_request_proof
    from gateway.protocol.timestamps import utc_now

    key = read_private_key(accept.KEYS / f"test-{receiver.lower()}-message-1.key.jwk")
    parts = re.match(r"http://([^:/]+):(\d+)", url)
    assert parts is not None, url
    connection = http.client.HTTPConnection(parts[1], int(parts[2]), timeout=300)
    taken = 0
    try:
        while most is None or taken < most:
            page = limit if most is None else min(limit, most - taken)
            proof = make_request_proof(key, "GET", f"{url}/v1/inbox", None, utc_now()).decode("ascii")
            connection.request("GET", f"/v1/inbox?after={after}&limit={page}&wait=0", headers={"GBA-Request-Proof": proof})
            answer = connection.getresponse()
            document = json.loads(answer.read())
            if answer.status != 200:
                raise RuntimeError(f"GET /v1/inbox as {receiver}: {answer.status} {document}")
            if not document["deliveries"]:
                return taken, after
            taken += len(document["deliveries"])
            after = document["cursor"]
        return taken, after
    finally:
        connection.close()


async def _indexed(dsn: str) -> bool:
    """Whether the person indexer has read every message it indexes."""
    import asyncpg

    connection = await asyncpg.connect(dsn)
    try:
        return bool(await connection.fetchval(
            "SELECT coalesce((SELECT max(ledger_index) FROM console_person_cursor), -1)"
            " >= coalesce((SELECT max(ledger_index) FROM messages WHERE type IN ('referral.submit', 'verification.request')), -1)"
        ))
    finally:
        await connection.close()


def wait_for_index(dsn: str, hub: subprocess.Popen[bytes]) -> None:
    """Until the person indexer caught up (it looks once a second); the hub must stay up."""
    deadline = time.monotonic() + INDEX_TIMEOUT
    while not asyncio.run(_indexed(dsn)):
        if hub.poll() is not None:
            raise RuntimeError(f"the hub exited ({hub.returncode}) while the index caught up")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the person indexer did not catch up within {INDEX_TIMEOUT:.0f} s")
        time.sleep(1.0)  # a poll of another process's progress, not synchronisation within this one


def _callgrind(*arguments: str) -> None:
    subprocess.run(["callgrind_control", *arguments], check=True, capture_output=True, timeout=300)


def _newest_dump(folder: Path) -> Path:
    dumps = sorted(folder.glob("callgrind.out.*"), key=lambda path: path.stat().st_mtime)
    if not dumps:
        raise RuntimeError("callgrind wrote no dump")
    return dumps[-1]


def _total(dump: Path) -> int:
    """The instruction count of a callgrind dump (its `totals:` or `summary:` line)."""
    for line in dump.read_text(errors="replace").splitlines():
        if line.startswith(("totals:", "summary:")):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {dump}")


def run(arguments: argparse.Namespace) -> dict[str, Any]:
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is not installed (Debian: apt-get install -y valgrind)")
    notes: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="gba-instructions-"))
    try:
        with accept.database(folder, None, notes) as db:
            port = accept.free_port()
            config = folder / "gateway.toml"
            config.write_text(accept.hub_config(port, folder / "data"), "utf-8")
            out = folder / "callgrind.out"
            command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-m", "gateway.cli",
                       "serve", "--config", str(config), "--port", str(port), "--data-dir", str(folder / "data")]
            log = folder / "hub.log"
            _say(f"starting the hub under valgrind (a minute or more); log {log}")
            with log.open("ab") as output:
                # `python -m` puts the working directory first on sys.path, before PYTHONPATH: run in this script's
                # checkout, or a comparison started from another checkout would count that checkout's code.
                hub = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       env=accept._child_environment(), start_new_session=True, cwd=accept.ROOT)
            try:
                accept.wait_for_line(hub, log, "gateway: serving", START_TIMEOUT)
                url = f"http://127.0.0.1:{port}"
                bodies = accept.sign_messages(arguments.warmup + arguments.messages)
                warm = send(url, bodies[:arguments.warmup], arguments.concurrency)
                if set(warm) != {202}:
                    raise RuntimeError(f"warm-up answers: {warm}")
                wait_for_index(db.dsn, hub)
                _callgrind("--zero", str(hub.pid))
                _say(f"counting {arguments.messages} messages, {arguments.concurrency} in flight")
                started = time.monotonic()
                statuses = send(url, bodies[arguments.warmup:], arguments.concurrency)
                if set(statuses) != {202}:
                    raise RuntimeError(f"answers other than 202: {statuses}")
                wait_for_index(db.dsn, hub)
                _callgrind("--dump=accepted", str(hub.pid))
                seconds = time.monotonic() - started
                total = _total(_newest_dump(folder))
                delivered = delivery_total = None
                if arguments.deliveries:
                    # The warm-up's deliveries first, uncounted (the first local view loads OpenCC's tables), then the rest.
                    warm_to = [accept.MIX[number % len(accept.MIX)][1] for number in range(arguments.warmup)]
                    cursors = {receiver: pull(url, receiver, 100, -1, most=warm_to.count(receiver))[1] for receiver in ("HK", "MO")}
                    _callgrind("--zero", str(hub.pid))
                    _say(f"counting the deliveries: pulls of up to {arguments.pull_limit} by HK and MO")
                    delivered = sum(pull(url, receiver, arguments.pull_limit, cursor)[0] for receiver, cursor in cursors.items())
                    _callgrind("--dump=delivered", str(hub.pid))
                    delivery_total = _total(_newest_dump(folder))
            finally:
                accept.stop_process(hub, timeout=300)
        return {
            "benchmark": "instructions",
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "command": accept._command_line("bench/instructions.py"),
            "messages": arguments.messages,
            "concurrency": arguments.concurrency,
            "warmup_messages": arguments.warmup,
            "hub_instructions": total,
            "hub_instructions_per_message": round(total / arguments.messages),
            "deliveries": delivered,
            "pull_limit": arguments.pull_limit if arguments.deliveries else None,
            "hub_delivery_instructions": delivery_total,
            "hub_instructions_per_delivery": round(delivery_total / delivered) if delivered else None,
            "valgrind_seconds": round(seconds, 1),
            "tls": False,
            "encryption_at_rest": True,
            "commit": accept._commit(),
            "python": sys.version.split()[0],
            "notes": notes,
        }
    finally:
        if arguments.keep:
            _say(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=400, help="messages counted (default 400)")
    parser.add_argument("--warmup", type=int, default=60, help="messages sent before counting (default 60)")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight (default 8)")
    parser.add_argument("--deliveries", action=argparse.BooleanOptionalAction, default=True,
                        help="also count the deliveries: HK and MO pull every message from their inboxes (default on)")
    parser.add_argument("--pull-limit", type=int, default=100, help="deliveries a pull (default 100)")
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (hub log, callgrind dumps)")
    arguments = parser.parse_args(argv)
    if arguments.messages < 1 or arguments.concurrency < 1 or arguments.warmup < 0:
        parser.error("--messages and --concurrency must be at least 1, --warmup at least 0")
    os.environ.pop("GATEWAY_DATABASE_URL", None)
    result = run(arguments)
    text = json.dumps(result, indent=2)
    print(text)
    if arguments.json_out:
        arguments.json_out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

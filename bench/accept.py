"""Acceptance benchmark (issue 3, item 7): a real hub, real PostgreSQL, load from outside the hub.

One run does, in order (every step bounded in time):
  1. starts a database: the embedded PostgreSQL in a new temporary data directory
     (`gateway db start --data-dir`), or a fresh database on the server of `--database-url`;
  2. starts the hub as its own process, `gateway serve --config FILE`, from a generated TOML
     file (test mode, loopback, a free port, CN-GD/HK/MO with one route per ordered pair);
  3. starts a trivial aiohttp echo server process (POST body -> 202 and a small JSON);
  4. measures the Ed25519 verify ceiling in this process (verifies/s, best of five);
  5. pre-signs distinct messages — fresh UUIDv7 ids and cases, `created` = now, a rotation
     of `referral.submit` CN-GD->HK, `verification.request` CN-GD->HK and CN-GD->MO — and
     warms the hub up with a first batch of them (not measured);
  6. signs the measured batch (sized from the warm-up rate, with a margin, so that no body
     is ever sent twice) and drives it at the hub for `--seconds`, each body exactly once,
     from a load generator process: wrk with a Lua script over the pre-signed bodies when
     wrk is installed, else several Python processes (multiprocessing + aiohttp client);
     in a closed loop (each connection sends on its last answer), or with `--rate` in an
     open loop (a fixed schedule for each generator thread, each message sent on the first of
     its connections to be free, latency counted from the due time);
  7. drives the same bodies with the same generator at the echo server: the echo ceiling;
  8. stops everything it started: generator, echo server, hub (SIGTERM, then wait), the
     embedded server (`gateway db stop --data-dir`) or the fresh database (dropped).

Prints one JSON object (stable keys: `accepted_per_s`, `p50_ms`, `p99_ms`,
`echo_ceiling_per_s`, `ratio_to_echo`, `ed25519_verify_per_s`, `messages`, `concurrency`,
`seconds`, `generator_cpu_s`, `errors`, `machine`, ...; see bench/README.md) and exits
0, or 1 when any message was answered with anything but 202 (`errors`, by status) or
the run is otherwise not valid (`problems`).
"""

from __future__ import annotations

import argparse
import array
import asyncio
import base64
import contextlib
import json
import math
import multiprocessing
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.contract import contract_dir  # noqa: E402
from gateway.keyfiles import read_private_key  # noqa: E402
from gateway.protocol import jws  # noqa: E402
from gateway.protocol.ids import new_uuid7  # noqa: E402
from gateway.protocol.message import sign_message  # noqa: E402
from gateway.protocol.timestamps import format_timestamp  # noqa: E402
from gateway.protocol.trust import load_trust_list  # noqa: E402

KEYS = contract_dir("keys") / "test"
SCHEMAS = contract_dir("schemas")
SENDER_KID = "test-cn-gd-message-1"
JURISDICTIONS = ("CN-GD", "HK", "MO")
PATH = "/v1/messages"
CONTENT_TYPE = "application/jose"
FRESHNESS_SECONDS = 300
"""The protocol's ingress window (§8.4): every body must reach the hub within it of its signing."""
MIX = (
    ("referral.submit", "HK"),
    ("verification.request", "HK"),
    ("verification.request", "MO"),
)
"""The rotation of message kinds, all from CN-GD; each message opens a new case."""

START_TIMEOUT = 120.0
STOP_TIMEOUT = 45.0
"""The hub drains for up to 30 s (`shutdown_timeout`); then it is killed."""
WARMUP_RATE_BOUND = 5000
"""Warm-up bodies per second of warm-up: more than this hub can take on two cores."""
POOL_MARGIN = 3.0
"""Measured bodies = warm-up rate x seconds x this, so that none is ever sent twice. Generous: on a busy
machine the warm-up can run at a third of the measured rate (seen in CI with other work on both cores)."""
POOL_CAP = 400_000
OPEN_LOOP_MARGIN = 1.1
"""With --rate, measured bodies = rate x seconds x this: the schedule never sends more than rate x seconds."""
OPEN_LOOP_MAX_INTERVAL = 60.0
"""With --rate, the longest a connection may wait between its requests (concurrency / rate, seconds)."""
KEPT_UP_SHARE = 0.98
"""With --rate, a run that accepts less than this share of the offered rate says the hub did not keep up."""
TIMELINE_BOUND_MS = 100.0
"""With --rate, the timeline counts a second's answers whose latency from the due time exceeds this: the acceptance
target's p99 bound (docs/performance.md), so that the timeline shows whether the answers over it came in a few
bursts or all through the run."""


# --- the messages --------------------------------------------------------------------


def _example(message_type: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / f"{message_type}.json").read_text("utf-8"))["examples"][0]


def message_templates() -> list[dict[str, Any]]:
    """One payload per entry of MIX, from the shipped schema examples (three household members each)."""
    referral = _example("referral.submit")
    request = _example("verification.request")
    members = [{"ref": m["ref"], "person": m["person"]} for m in referral["body"]["household"]["members"]]
    templates = []
    for message_type, receiver in MIX:
        if message_type == "referral.submit":
            payload = json.loads(json.dumps(referral))
        else:
            payload = json.loads(json.dumps(request))
            payload["legal_basis"] = json.loads(json.dumps(referral["legal_basis"]))
            payload["body"]["members"] = json.loads(json.dumps(members))
            payload["body"]["scheme"] = "DIBAO"
        payload["from"], payload["to"] = "CN-GD", receiver
        templates.append(payload)
    return templates


def _sign_range(job: tuple[list[dict[str, Any]], int, int]) -> list[bytes]:
    """Messages number `start` to `stop` (exclusive) of the rotation, signed now."""
    templates, start, stop = job
    key = read_private_key(KEYS / f"{SENDER_KID}.key.jwk")
    now = datetime.now(timezone.utc)
    created = format_timestamp(now.replace(microsecond=now.microsecond // 1000 * 1000))
    as_of = now.date().isoformat()
    respond_by = format_timestamp((now + timedelta(days=14)).replace(microsecond=0))
    signed = []
    for number in range(start, stop):
        payload = dict(templates[number % len(templates)])
        payload["id"] = new_uuid7()
        payload["case"] = new_uuid7()
        payload["created"] = created
        if payload["type"] == "verification.request":
            payload["body"] = dict(payload["body"], as_of=as_of, respond_by=respond_by)
        signed.append(sign_message(payload, key))
    return signed


def _sign_in_child(job: tuple[list[dict[str, Any]], int, int], results: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        results.send_bytes(b"\n".join(_sign_range(job)))
    finally:
        results.close()


def sign_messages(count: int, offset: int = 0) -> list[bytes]:
    """`count` distinct signed messages (compact JWS, ASCII), on every core when there are many."""
    templates = message_templates()
    workers = min(len(os.sched_getaffinity(0)), max(1, count // 2000))
    if workers == 1:
        return _sign_range((templates, offset, offset + count))
    bounds = [offset + count * part // workers for part in range(workers + 1)]
    context = multiprocessing.get_context("fork")
    children, pipes = [], []
    for part in range(workers):
        receive, send = context.Pipe(duplex=False)
        child = context.Process(target=_sign_in_child, args=((templates, bounds[part], bounds[part + 1]), send), daemon=True)
        child.start()
        send.close()
        children.append(child)
        pipes.append(receive)
    signed: list[bytes] = []
    try:
        for receive in pipes:
            if not receive.poll(START_TIMEOUT):
                raise RuntimeError("a signing process did not finish in time")
            signed.extend(receive.recv_bytes().split(b"\n"))
    finally:
        for child in children:
            child.join(10)
            if child.is_alive():
                child.kill()
                child.join(5)
    if len(signed) != count:
        raise RuntimeError(f"signed {len(signed)} messages, not {count}")
    return signed


def ed25519_verify_rate(compact: bytes, seconds: float = 2.0, rounds: int = 5) -> float:
    """Bare Ed25519 verifications of `compact`'s signature per second, in this process (best round)."""
    parsed = jws.parse_compact(compact, "gba-case+jws")
    public = load_trust_list((KEYS / "trust-list.json").read_bytes()).keys[parsed.kid].public
    return best_rate(lambda: public.verify(parsed.signature, parsed.signing_input), seconds, rounds)


def best_rate(operation: Callable[[], Any], seconds: float = 2.0, rounds: int = 5) -> float:
    """Calls of `operation` per second, in this process: the best of `rounds` rounds sharing `seconds`, after 50 to warm up."""
    for _ in range(50):
        operation()
    best = 0.0
    for _ in range(rounds):
        count, start = 0, time.perf_counter()
        deadline = start + seconds / rounds
        while True:
            for _ in range(100):
                operation()
            count += 100
            now = time.perf_counter()
            if now >= deadline:
                break
        best = max(best, count / (now - start))
    return best


# --- processes we start ----------------------------------------------------------------


def rank(count: int, share: float) -> int:
    """The index, in `count` sorted values, of the `share` (percent) percentile: the smallest value with at least
    that share at or below it. In whole per mille, so that 99.9 % of 1,000 values is the 999th, not the 1,000th."""
    return min(count - 1, max(0, (round(share * 10) * count + 999) // 1000 - 1))


def free_port() -> int:
    """A port for a server to listen on soon, outside the OS's range for outgoing connections (gateway/demo/exchange.py)."""
    from gateway.demo.exchange import free_port as outside_the_ephemeral_range

    return outside_the_ephemeral_range()


def gateway_command() -> list[str]:
    """The `gateway` command of this interpreter's environment."""
    script = Path(sys.executable).parent / "gateway"
    return [str(script)] if script.exists() else [sys.executable, "-m", "gateway.cli"]


def _child_environment() -> dict[str, str]:
    environment = dict(os.environ)
    environment.pop("GATEWAY_DATABASE_URL", None)  # the benchmark decides the database itself
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, (str(ROOT), environment.get("PYTHONPATH"))))
    return environment


def run_gateway(arguments: Sequence[str], timeout: float = START_TIMEOUT) -> str:
    """Run `gateway ARGUMENTS` to completion; its stdout, or RuntimeError with its stderr."""
    result = subprocess.run(
        [*gateway_command(), *arguments], capture_output=True, text=True, timeout=timeout,
        env=_child_environment(), stdin=subprocess.DEVNULL,
    )
    if result.returncode != 0:
        raise RuntimeError(f"gateway {' '.join(arguments)} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


def wait_for_line(process: subprocess.Popen[bytes], log: Path, marker: str, timeout: float) -> str:
    """The first line of `log` containing `marker`, written by `process`; RuntimeError on exit or timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text("utf-8", errors="replace") if log.exists() else ""
        for line in text.splitlines():
            if marker in line:
                return line
        if process.poll() is not None:
            raise RuntimeError(f"{log.stem} exited ({process.returncode}) before it was ready: {_tail(log)}")
        time.sleep(0.05)
    raise RuntimeError(f"{log.stem} was not ready after {timeout:.0f} s: {_tail(log)}")


def _tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text("utf-8", errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no output)"


def stop_process(process: subprocess.Popen[bytes] | None, timeout: float = STOP_TIMEOUT) -> int | None:
    """SIGTERM, wait up to `timeout`, then SIGKILL. The exit status, or None if it was not started."""
    if process is None:
        return None
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    return process.returncode


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a live process, from /proc; None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


REAPED = -1
"""The key, in a process-tree snapshot, of the CPU of the root's children that have ended: the kernel adds a child's
CPU to its parent's record when the parent waits for it. PostgreSQL's autovacuum workers and short-lived backends
come and go inside a run, and without it their CPU would be counted by nobody."""
ENDED = "ended in the window"


def _family(root: int) -> Iterator[tuple[Path, list[str]]]:
    """`root` and its children, as their /proc folder and the fields of their `stat` after the command name (field 3
    on); a process that ends while being read is left out."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if int(entry.name) == root or int(fields[1]) == root:
            yield entry, fields


def process_tree_cpu(root: int, kinds: dict[int, str] | None = None) -> dict[int, float]:
    """CPU seconds of `root` and its children (a postmaster and its backends), and of its ended children (`REAPED`).

    With `kinds`, also what each process is, from its title ("checkpointer", "autovacuum worker", ...)."""
    tick = os.sysconf("SC_CLK_TCK")
    found = {}
    for entry, fields in _family(root):
        pid = int(entry.name)
        if kinds is not None:
            try:
                title = (entry / "cmdline").read_bytes()
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
            kinds[pid] = "main process" if pid == root else process_kind(title)
        found[pid] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        if pid == root:
            found[REAPED] = (int(fields[13]) + int(fields[14])) / tick  # cutime, cstime
    return found


def process_kind(cmdline: bytes) -> str:
    """What a PostgreSQL child process is, from the title it sets: "postgres: walwriter" -> "walwriter",
    "postgres: postgres gba [local] idle" -> "client backends", "postgres: io worker 2" -> "io workers",
    "postgres: autovacuum: VACUUM public.outbox" -> "autovacuum workers"."""
    title = cmdline.replace(b"\0", b" ").decode("utf-8", "replace").strip().removeprefix("postgres: ")
    if title.startswith("autovacuum launcher"):
        return "autovacuum launcher"
    if title.startswith("autovacuum"):
        return "autovacuum workers"
    if re.search(r"\[local\]|\(\d+\) ", title):
        return "client backends"
    return re.sub(r" \d+$", "s", title) or "unnamed"


def tree_cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds the tree used between two snapshots, including children that ended in between."""
    return sum(tree_cpu_by_kind(before, after, {}).values())


def tree_cpu_by_kind(before: dict[int, float], after: dict[int, float], kinds: dict[int, str]) -> dict[str, float]:
    """`tree_cpu_delta` by what the processes are (`kinds` from the later snapshot; "other" when unknown).

    A child that ended between the snapshots has all its CPU in the root's `REAPED` total, so its share before
    the window is taken off that total's growth; what remains is `ENDED`: the window's CPU of every child that
    ended in it, autovacuum workers included."""
    found: dict[str, float] = {}
    for pid, value in after.items():
        if pid != REAPED:
            kind = kinds.get(pid, "other")
            found[kind] = found.get(kind, 0.0) + value - before.get(pid, 0.0)
    if REAPED in before and REAPED in after:
        gone = sum(value for pid, value in before.items() if pid != REAPED and pid not in after)
        found[ENDED] = after[REAPED] - before[REAPED] - gone
    return found


def context_switches(root: int | None = None) -> dict[str, dict[str, int]] | None:
    """Context switches so far: of the whole machine (/proc/stat's `ctxt`, as `{"all": {"machine": n}}`) without
    `root`, else of every thread of `root` and its children, by thread (pid, thread id and start time, so that a
    reused id is another thread): `voluntary` (the thread gave up the core: it waited, for a socket, a lock or a
    timer) and `involuntary` (the core was taken from it). Per message, they show how often each message makes the
    processes sleep and wake: an open loop, whose messages arrive one at a time, wakes them more often than a
    closed loop, which sends them in waves."""
    try:
        if root is None:
            line = next(line for line in Path("/proc/stat").read_text().splitlines() if line.startswith("ctxt "))
            return {"all": {"machine": int(line.split()[1])}}
    except (OSError, StopIteration, ValueError, IndexError):
        return None
    counts: dict[str, dict[str, int]] = {"voluntary": {}, "involuntary": {}}
    for entry, _ in _family(root):
        try:
            for task in (entry / "task").iterdir():
                started = (task / "stat").read_text().rpartition(")")[2].split()[19]  # starttime, field 22
                key = f"{entry.name}/{task.name}/{started}"
                for line in (task / "status").read_text().splitlines():
                    if line.startswith("voluntary_ctxt_switches:"):
                        counts["voluntary"][key] = int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches:"):
                        counts["involuntary"][key] = int(line.split()[1])
        except (FileNotFoundError, ProcessLookupError, PermissionError, IndexError, ValueError):
            continue  # it ended while being read
    return counts


def switches_per_message(before: dict[str, dict[str, int]] | None, after: dict[str, dict[str, int]] | None,
                         messages: int) -> dict[str, float] | None:
    """The context switches between two `context_switches` readings, per message, thread by thread: a thread that
    started in between counts in full; one that ended in between is missed (a lower bound for a tree whose children
    come and go, as PostgreSQL's backends do). None without readings or messages."""
    if not before or not after or not messages:
        return None
    return {kind: round(sum(count - before.get(kind, {}).get(key, 0) for key, count in after[kind].items()) / messages, 2)
            for kind in after}


def machine_busy_seconds() -> float | None:
    """CPU seconds spent on all cores so far, not idle (/proc/stat): compared with what the run's
    own processes used, it shows how much else ran on the machine meanwhile."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = (int(value) for value in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


# --- TLS ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsFiles:
    """A throwaway CA and a server certificate for 127.0.0.1 made for one run (PEM files in the run's folder)."""

    ca: Path
    certificate: Path
    private_key: Path

    def client_context(self) -> Any:
        """An ssl.SSLContext that trusts only this run's CA (clients connect to https://127.0.0.1:PORT)."""
        import ssl

        return ssl.create_default_context(cafile=str(self.ca))


def make_tls(folder: Path) -> TlsFiles:
    """A new CA (EC P-256) and a server certificate for 127.0.0.1 and localhost it issued, valid for two days."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.now(timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "GBA benchmark throwaway CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(folder / "bench-ca.pem", folder / "server.crt.pem", folder / "server.key.pem")
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.certificate.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    files.private_key.write_bytes(server_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    files.private_key.chmod(0o600)
    return files


def server_ssl_context(certificate: Path, private_key: Path) -> Any:
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(certificate), str(private_key))
    return context


# --- the echo server ---------------------------------------------------------------------


def serve_echo(port: int, certificate: Path | None = None, private_key: Path | None = None) -> int:
    """The echo ceiling's server: POST /v1/messages reads the body and answers 202 with a small JSON;
    POST /v1/messages/bulk answers 200 with one small JSON line per body line. HTTPS with `certificate`."""
    from aiohttp import web

    async def accept(request: web.Request) -> web.Response:
        body = await request.read()
        return web.json_response({"echoed": len(body)}, status=202)

    async def accept_bulk(request: web.Request) -> web.Response:
        body = await request.read()
        lines = body.count(b"\n") + (0 if body.endswith(b"\n") else 1)
        out = b"".join(b'{"line":%d,"status":202}\n' % number for number in range(1, lines + 1))
        return web.Response(status=200, body=out, content_type="application/x-ndjson")

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post(PATH, accept)
    app.router.add_post(PATH + "/bulk", accept_bulk)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    context = server_ssl_context(certificate, private_key) if certificate and private_key else None
    scheme = "https" if context else "http"
    print(f"echo: serving {scheme}://127.0.0.1:{listener.getsockname()[1]}", flush=True)
    web.run_app(app, sock=listener, access_log=None, print=None, handle_signals=True, shutdown_timeout=5,
                ssl_context=context)
    return 0


def echo_command(tls: TlsFiles | None) -> list[str]:
    """The command that starts the echo server on a free port (it prints `echo: serving URL`)."""
    command = [sys.executable, str(Path(__file__).resolve()), "--serve-echo", "0"]
    if tls is not None:
        command += ["--echo-certificate", str(tls.certificate), "--echo-private-key", str(tls.private_key)]
    return command


# --- load generators -----------------------------------------------------------------------


@dataclass
class LoadResult:
    """What one load run measured. Latencies in milliseconds."""

    duration_s: float
    answered: int
    statuses: dict[str, int]
    socket_errors: dict[str, int]
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    generator_cpu_s: float
    exhausted: int = 0
    """Requests the generator could not make from unsent bodies (the pool was too small)."""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def accepted(self) -> int:
        return self.statuses.get("202", 0)

    @property
    def accepted_per_s(self) -> float:
        return self.accepted / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def errors(self) -> dict[str, int]:
        """Every answer that was not 202, by status, and every request that got no answer, by kind."""
        refused = {status: count for status, count in sorted(self.statuses.items()) if status != "202" and count}
        return refused | {kind: count for kind, count in sorted(self.socket_errors.items()) if count}


WRK_ANSWERS = r"""
-- The answers of every thread, by status, as JSON members, and the requests the threads could not make.
local function answers(threads)
  local merged, spent = {}, 0
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      merged[status] = (merged[status] or 0) + n
    end
    spent = spent + thread:get("exhausted")
  end
  local parts = {}
  for status, n in pairs(merged) do
    table.insert(parts, string.format('"%d": %d', status, n))
  end
  return table.concat(parts, ", "), spent
end
"""

WRK_SCRIPT = WRK_ANSWERS + r"""
-- bench/accept.py: POST pre-signed compact JWS bodies (one a line, a file per thread), each once,
-- and count the answers by status. `cycle` (echo runs only) starts the file over when it ends.
statuses = {}
exhausted = 0
local threads = {}
local requests, count, next_index, cycle = {}, 0, 0, false

function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_number", #threads)
end

function init(args)
  cycle = args[2] == "cycle"
  local headers = {["Content-Type"] = "application/jose"}
  for line in io.lines(args[1] .. "." .. thread_number) do
    count = count + 1
    requests[count] = wrk.format("POST", "/v1/messages", headers, line)
  end
end

function request()
  next_index = next_index + 1
  if next_index > count then
    if cycle then
      next_index = 1
    else
      -- Out of unsent bodies: stop this thread (the run is reported invalid).
      exhausted = exhausted + 1
      next_index = count
      wrk.thread:stop()
    end
  end
  return requests[next_index]
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests_stats)
  local statuses, spent = answers(threads)
  local e = summary.errors
  io.write(string.format(
    'BENCH-RESULT {"duration_us": %d, "requests": %d, "statuses": {%s}, "exhausted": %d, ' ..
    '"socket_errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d}, ' ..
    '"p50_us": %d, "p90_us": %d, "p95_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.duration, summary.requests, statuses, spent,
    e.connect, e.read, e.write, e.timeout,
    latency:percentile(50.0), latency:percentile(90.0), latency:percentile(95.0),
    latency:percentile(99.0), latency.max))
end
"""


OPEN_LOOP_WRK_SCRIPT = WRK_ANSWERS + r"""
-- bench/accept.py --rate: an open-loop load. Each wrk thread sends on a fixed schedule of its own (one request
-- every `interval` microseconds, the threads' schedules staggered), whatever the answers' times: each request due
-- goes on the first of the thread's connections to be free, and a request due while all of them wait for answers
-- goes as soon as one is free (a pool of connections, as a sender's HTTP client keeps one). Latency is counted from
-- the time the schedule meant the request to leave (corrected for coordinated omission, as wrk2 does), and also
-- from when it left (`service`). Histograms in 0.1-ms buckets.
-- A free connection takes the next due time in delay() and waits for it; the times are handed out in order, and
-- request() takes the earliest one handed out and not yet sent. wrk's timers work in whole milliseconds of
-- another clock, so a request can leave up to a millisecond before it was due, and two connections whose times
-- fall in the same millisecond can leave in either order: the latency from the due time is therefore counted
-- from the earlier of the due time and the send. wrk does not tell a thread's connections apart, so with several
-- connections a thread an answer is matched to its request by the `message_id` it names (the keys file holds
-- each body's); with one connection a thread (no keys file) the answer is the one request in flight.
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock, bench_timespec *spec);
]]
local spec = ffi.new("bench_timespec")
local function now_us()
  ffi.C.clock_gettime(1, spec)  -- CLOCK_MONOTONIC
  return tonumber(spec.tv_sec) * 1000000 + tonumber(spec.tv_nsec) / 1000
end

statuses = {}
exhausted = 0
intended = {}
service = {}
late = 0
unmatched = 0
local threads = {}
local requests, keys, count, next_index = {}, nil, 0, 0
local interval, next_due, phase = 0, nil, 0
local handed, first_handed, last_handed = {}, 1, 0   -- due times handed out by delay(), not yet sent
local due_of, sent_of = {}, {}                        -- by key, the requests in flight (keyed runs)
local due_sent, sent_at = 0, 0                        -- the one request in flight (unkeyed runs)
local LATE_US = 10000
local TIMER_SLACK_US = 2000
local BOUND_US = @BOUND_US@   -- TIMELINE_BOUND_MS: a second's answers over it are counted
answered_at, over_at = {}, {}   -- by second of CLOCK_MONOTONIC, the answers and those over BOUND_US

function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_number", #threads)
end

function init(args)
  interval = tonumber(args[2])
  local thread_count = tonumber(args[3])
  local headers = {["Content-Type"] = "application/jose"}
  for line in io.lines(args[1] .. "." .. thread_number) do
    count = count + 1
    requests[count] = wrk.format("POST", "/v1/messages", headers, line)
  end
  if args[4] == "keyed" then
    keys = {}
    for line in io.lines(args[1] .. "." .. thread_number .. ".keys") do
      table.insert(keys, line)
    end
  end
  -- The first request of thread k is due (k-1)/N of an interval after its first connection is ready
  -- (the first delay() call).
  phase = interval * (thread_number - 1) / thread_count
end

function delay()
  local now = now_us()
  if next_due == nil then
    next_due = now + phase
  end
  local due = next_due
  next_due = due + interval
  last_handed = last_handed + 1
  handed[last_handed] = due
  local wait = due - now
  if wait <= 0 then
    return 0
  end
  return math.ceil(wait / 1000)
end

function request()
  if next_due == nil then
    -- wrk checks the script by one request() on the first thread before any connection: send nothing
    -- from the schedule or the pool.
    return requests[1]
  end
  next_index = next_index + 1
  if next_index > count then
    exhausted = exhausted + 1
    next_index = count
    wrk.thread:stop()
  end
  local now = now_us()
  local due = now
  -- The earliest time handed out is this send's, unless it is still ahead by more than a timer can fire early:
  -- then this is the first request after a reconnect, which wrk sends without delay(), and that time belongs to a
  -- connection still waiting for it.
  if first_handed <= last_handed and handed[first_handed] <= now + TIMER_SLACK_US then
    due = handed[first_handed]
    handed[first_handed] = nil
    first_handed = first_handed + 1
  end
  if now - due > LATE_US then
    late = late + 1
  end
  if keys then
    local key = keys[next_index]
    due_of[key] = math.min(due, now)
    sent_of[key] = now
  else
    due_sent, sent_at = math.min(due, now), now
  end
  return requests[next_index]
end

local function add(histogram, microseconds)
  local bucket = math.floor(microseconds / 100)
  histogram[bucket] = (histogram[bucket] or 0) + 1
end

local function count_in_second(now, latency)
  local second = math.floor(now / 1000000)
  answered_at[second] = (answered_at[second] or 0) + 1
  if latency > BOUND_US then
    over_at[second] = (over_at[second] or 0) + 1
  end
end

function response(status, headers, body)
  local now = now_us()
  statuses[status] = (statuses[status] or 0) + 1
  if keys then
    local key = body and string.match(body, '"message_id"%s*:%s*"([^"]+)"')
    local due = key and due_of[key]
    if due == nil then
      -- A refusal that names no message: counted by its status, its latency not known.
      unmatched = unmatched + 1
      return
    end
    add(intended, now - due)
    add(service, now - sent_of[key])
    count_in_second(now, now - due)
    due_of[key], sent_of[key] = nil, nil
  else
    add(intended, now - due_sent)
    add(service, now - sent_at)
    count_in_second(now, now - due_sent)
  end
end

local function merge(name)
  local merged = {}
  for _, thread in ipairs(threads) do
    for bucket, n in pairs(thread:get(name)) do
      merged[bucket] = (merged[bucket] or 0) + n
    end
  end
  return merged
end

local function percentiles(histogram)
  local buckets, total = {}, 0
  for bucket, n in pairs(histogram) do
    table.insert(buckets, bucket)
    total = total + n
  end
  table.sort(buckets)
  -- Ranks in whole numbers (per mille), so that 99.9 % of 1,000 is the 999th, not the 1,000th.
  local wanted, out, seen, i = {500, 900, 950, 990, 999, 1000}, {}, 0, 1
  for _, bucket in ipairs(buckets) do
    seen = seen + histogram[bucket]
    while i <= #wanted and seen >= math.floor((wanted[i] * total + 999) / 1000) do
      out[i] = (bucket + 1) * 100  -- the bucket's upper bound, in microseconds
      i = i + 1
    end
  end
  while i <= #wanted do
    out[i] = 0
    i = i + 1
  end
  return string.format('{"p50_us": %d, "p90_us": %d, "p95_us": %d, "p99_us": %d, "p99_9_us": %d, "max_us": %d}',
    out[1], out[2], out[3], out[4], out[5], out[6])
end

-- Second by second from the first answer's to the last's, a second without answers included:
-- [second, answers, answers over BOUND_US].
local function timeline()
  local answered, over = merge("answered_at"), merge("over_at")
  local first, last = nil, nil
  for second in pairs(answered) do
    first = math.min(first or second, second)
    last = math.max(last or second, second)
  end
  local parts = {}
  for second = first or 0, last or -1 do
    table.insert(parts, string.format("[%d, %d, %d]", second - first, answered[second] or 0, over[second] or 0))
  end
  return "[" .. table.concat(parts, ", ") .. "]", first or -1
end

function done(summary, latency, requests_stats)
  local statuses, spent = answers(threads)
  local late_all, unmatched_all = 0, 0
  for _, thread in ipairs(threads) do
    late_all = late_all + thread:get("late")
    unmatched_all = unmatched_all + thread:get("unmatched")
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH-RESULT {"duration_us": %d, "requests": %d, "statuses": {%s}, "exhausted": %d, "late": %d, ' ..
    '"unmatched": %d, "socket_errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d}, ' ..
    '"intended": %s, "service": %s, "timeline": %s, "timeline_first_second": %d}\n',
    summary.duration, summary.requests, statuses, spent, late_all, unmatched_all,
    e.connect, e.read, e.write, e.timeout, percentiles(merge("intended")), percentiles(merge("service")), timeline()))
end
"""
OPEN_LOOP_WRK_SCRIPT = OPEN_LOOP_WRK_SCRIPT.replace("@BOUND_US@", str(round(TIMELINE_BOUND_MS * 1000)))


def write_bodies(folder: Path, name: str, bodies: Sequence[bytes], parts: int,
                 keys: Sequence[str] | None = None) -> Path:
    """Split `bodies` round-robin into `parts` files `name.1` ... `name.N`, one compact JWS a line; with `keys`
    (one a body), each part's keys in the same order into `name.N.keys`."""
    base = folder / name
    for part in range(parts):
        (folder / f"{name}.{part + 1}").write_bytes(b"\n".join(bodies[part::parts]) + b"\n")
        if keys is not None:
            (folder / f"{name}.{part + 1}.keys").write_text("\n".join(keys[part::parts]) + "\n", "ascii")
    return base


def message_keys(bodies: Sequence[bytes]) -> list[str] | None:
    """Each body's message id, by which an open loop with several connections a wrk thread matches an answer to its
    request (the hub's `202` names it, PROTO-12.1-1); None when a body is not a compact JWS with an `id`."""
    keys = []
    for body in bodies:
        parts = body.split(b".")
        try:
            key = json.loads(base64.urlsafe_b64decode(parts[1] + b"=" * (-len(parts[1]) % 4)))["id"]
        except (IndexError, ValueError, TypeError, KeyError):
            return None
        if not isinstance(key, str) or not key or not key.isascii() or not key.isprintable() or '"' in key or "\\" in key:
            return None
        keys.append(key)
    return keys if len(set(keys)) == len(keys) else None


def run_wrk(url: str, bodies_base: Path, script: Path, threads: int, connections: int, seconds: float,
            cycle: bool, log: Path, rate: float | None = None, keyed: bool = False) -> LoadResult:
    """One wrk run over the pre-signed bodies. CPU seconds are wrk's own (rusage of the child).
    With `rate`, `script` is OPEN_LOOP_WRK_SCRIPT, each thread sending `rate / threads` a second; unless `keyed`
    (the bodies' keys files written beside them), `threads` must equal `connections`."""
    if rate and not keyed and threads != connections:
        raise ValueError("an open loop with several connections a wrk thread needs the bodies' keys")
    mode = ([f"{threads / rate * 1e6:.3f}", str(threads), "keyed" if keyed else "unkeyed"] if rate
            else ["cycle" if cycle else "once"])
    command = [
        "wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "30s",
        "-s", str(script), url + PATH, "--", str(bodies_base), *mode,
    ]
    with log.open("ab") as output:
        output.write(f"$ {' '.join(command)}\n".encode())
        output.flush()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=output, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + seconds + 60
        stdout = b""
        os.set_blocking(process.stdout.fileno(), False)
        while True:
            chunk = process.stdout.read()
            if chunk:
                stdout += chunk
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                process.returncode = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() > deadline:
                process.kill()
                _, status, usage = os.wait4(process.pid, 0)
                raise RuntimeError(f"wrk did not finish within {seconds + 60:.0f} s")
            time.sleep(0.05)
        stdout += process.stdout.read() or b""
        process.stdout.close()
        output.write(stdout)
    if process.returncode != 0:
        raise RuntimeError(f"wrk failed ({process.returncode}): {_tail(log)}")
    line = next((line for line in stdout.decode().splitlines() if line.startswith("BENCH-RESULT ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result: {stdout.decode()[-2000:]}")
    data = json.loads(line.removeprefix("BENCH-RESULT "))
    extra: dict[str, Any] = {}
    if rate:
        # Open loop: the headline latencies are counted from when the schedule meant each request to leave.
        extra = {"late": data["late"], "unmatched": data["unmatched"],
                 "service": {key.replace("_us", "_ms"): value / 1000
                                                   for key, value in data["service"].items()}}
        data |= data["intended"]
        extra["p99_9_ms"] = data["p99_9_us"] / 1000
        extra["timeline"] = data["timeline"]
        extra["timeline_start"] = wall_clock(data["timeline_first_second"]) if data["timeline"] else None
    return LoadResult(
        duration_s=data["duration_us"] / 1e6,
        answered=sum(data["statuses"].values()),
        statuses={str(status): count for status, count in data["statuses"].items()},
        socket_errors=data["socket_errors"],
        p50_ms=data["p50_us"] / 1000, p90_ms=data["p90_us"] / 1000, p95_ms=data["p95_us"] / 1000,
        p99_ms=data["p99_us"] / 1000, max_ms=data["max_us"] / 1000,
        generator_cpu_s=usage.ru_utime + usage.ru_stime,
        exhausted=data["exhausted"],
        extra=extra,
    )


@dataclass(frozen=True)
class Schedule:
    """An open loop in one client process: one request due every `interval` seconds, whatever the answers' times,
    the first `phase` seconds after the start; each goes on the first of the process's connections to be free."""

    interval: float
    phase: float

    def first_due(self, start: float) -> float:
        return start + self.phase


async def _client_load(url: str, bodies: Sequence[bytes], connections: int, seconds: float, cycle: bool,
                       cafile: str | None = None, path_content_type: str = CONTENT_TYPE,
                       schedule: Schedule | None = None) -> dict[str, Any]:
    """Closed loop (each connection sends when its last answer came), or with `schedule` an open loop whose
    latencies count from when each request was due (corrected for coordinated omission); `service` then holds
    the latencies from when each left, and `late` the requests that left more than 10 ms after they were due."""
    import ssl

    import aiohttp

    statuses: Counter[int] = Counter()
    failures: Counter[str] = Counter()
    latencies = array.array("d")
    service = array.array("d")
    answered_at: Counter[int] = Counter()  # open loop: answers, and those over the bound, by second of the clock
    over_at: Counter[int] = Counter()
    state = {"next": 0, "exhausted": 0, "late": 0, "due": 0.0}
    headers = {"Content-Type": path_content_type}
    context = ssl.create_default_context(cafile=cafile) if cafile else None
    connector = aiohttp.TCPConnector(limit=connections, limit_per_host=connections,
                                     ssl=context if context is not None else True)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, skip_auto_headers=("User-Agent",)) as session:
        cpu_start, start = os.times(), time.monotonic()
        deadline = start + seconds
        bulk = path_content_type != CONTENT_TYPE
        if schedule:
            state["due"] = schedule.first_due(start)

        async def worker() -> None:
            due = 0.0
            while time.monotonic() < deadline:
                if schedule:
                    # The next due time not yet taken: this connection is free, so it sends that request, at once
                    # if it is overdue (every connection was waiting for an answer when it fell due).
                    due = state["due"]
                    if due >= deadline:
                        return
                    state["due"] = due + schedule.interval
                    if due > time.monotonic():
                        await asyncio.sleep(due - time.monotonic())
                if state["next"] >= len(bodies):
                    if not cycle:
                        state["exhausted"] += 1
                        return
                    state["next"] = 0
                body = bodies[state["next"]]
                state["next"] += 1
                sent = time.monotonic()
                meant = min(due, sent) if schedule else sent
                if schedule:
                    if sent - meant > 0.010:
                        state["late"] += 1
                try:
                    async with session.post(url, data=body, headers=headers) as answer:
                        await answer.read()
                        statuses[202 if answer.status == 200 and bulk else answer.status] += 1
                except asyncio.TimeoutError:
                    failures["timeout"] += 1
                    continue
                except aiohttp.ClientError as error:
                    failures[type(error).__name__] += 1
                    continue
                answered = time.monotonic()
                latencies.append(answered - meant)
                service.append(answered - sent)
                if schedule:
                    answered_at[int(answered)] += 1
                    if answered - meant > TIMELINE_BOUND_MS / 1000:
                        over_at[int(answered)] += 1

        await asyncio.gather(*(worker() for _ in range(connections)))
        end, cpu_end = time.monotonic(), os.times()
    return {
        "start": start, "end": end,
        "cpu": (cpu_end.user - cpu_start.user) + (cpu_end.system - cpu_start.system),
        "statuses": dict(statuses), "failures": dict(failures), "exhausted": state["exhausted"],
        "latencies": latencies.tobytes(), "service": service.tobytes(), "late": state["late"],
        "answered_at": dict(answered_at), "over_at": dict(over_at),
    }


def over_bound(rows: Sequence[Sequence[int]], worst: int = 5) -> dict[str, Any]:
    """How the answers over TIMELINE_BOUND_MS lie in an open loop's `timeline`: how many, in how many seconds, and the
    share of them in the `worst` seconds (near 1 when a few stalls hold the tail, near worst/seconds when a queue
    holds it all through the run)."""
    over = sorted((row[2] for row in rows), reverse=True)
    total = sum(over)
    return {"bound_ms": TIMELINE_BOUND_MS, "answers": total, "seconds": sum(1 for n in over if n),
            f"share_in_worst_{worst}_seconds": round(sum(over[:worst]) / total, 3) if total else None}


def wall_clock(monotonic_second: float) -> str:
    """A second of CLOCK_MONOTONIC (time.monotonic, wrk's Lua) as UTC wall-clock time, to find a timeline's seconds
    in the hub's and PostgreSQL's logs."""
    at = datetime.fromtimestamp(monotonic_second + time.time() - time.monotonic(), timezone.utc)
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def timeline(answered_at: Mapping[int, int], over_at: Mapping[int, int]) -> list[list[int]]:
    """An open loop's answers second by second, from the first answer's second of the clock to the last's, a second
    without answers included: [second from the first, answers, answers over TIMELINE_BOUND_MS from their due time]
    (the same rows as OPEN_LOOP_WRK_SCRIPT's)."""
    if not answered_at:
        return []
    first = min(answered_at)
    return [[second - first, answered_at.get(second, 0), over_at.get(second, 0)]
            for second in range(first, max(answered_at) + 1)]


def _client_process(url: str, bodies: Sequence[bytes], connections: int, seconds: float, cycle: bool,
                    go: Any, results: Any, cafile: str | None = None, content_type: str = CONTENT_TYPE,
                    schedule: Schedule | None = None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        if not go.wait(60):
            raise RuntimeError("no start signal")
        results.send(asyncio.run(_client_load(url, bodies, connections, seconds, cycle, cafile, content_type,
                                              schedule)))
    except BaseException as error:  # noqa: BLE001 - reported to the parent, which fails the run
        results.send({"error": f"{type(error).__name__}: {error}"})
    finally:
        results.close()


def shares(bodies: Sequence[bytes], connections: int, processes: int,
           open_loop: bool) -> list[tuple[int, Sequence[bytes]]]:
    """The connections of each client process (the first `connections % processes` have one more), and its bodies:
    in an open loop in proportion to its connections, since it sends that many; else every processes-th body, so
    that a closed loop that cycles over a few bodies gives each process some."""
    result, taken = [], 0
    for number in range(processes):
        share = connections // processes + (1 if number < connections % processes else 0)
        if open_loop:
            mine = bodies[taken * len(bodies) // connections:(taken + share) * len(bodies) // connections]
        else:
            mine = bodies[number::processes]
        result.append((share, mine))
        taken += share
    return result


def run_python_clients(url: str, bodies: Sequence[bytes], processes: int, connections: int, seconds: float,
                       cycle: bool, cafile: str | None = None, path: str = PATH,
                       content_type: str = CONTENT_TYPE, rate: float | None = None) -> LoadResult:
    """Several client processes (aiohttp, keep-alive), `connections` in flight between them; https trusts `cafile`.
    With another `path` and `content_type` (the bulk endpoint), a `200` counts as accepted. With `rate`, an open
    loop: `rate` requests a second over the connections, latencies counted from when each was due (`Schedule`)."""
    context = multiprocessing.get_context("fork")
    go = context.Event()
    workers, pipes = [], []
    processes = max(1, min(processes, connections))
    for number, (share, mine) in enumerate(shares(bodies, connections, processes, rate is not None)):
        receive, send = context.Pipe(duplex=False)
        worker = context.Process(
            target=_client_process,
            args=(url + path, mine, share, seconds, cycle, go, send, cafile, content_type,
                  # This process's share of the rate, in proportion to its connections (as its bodies are), and
                  # the processes' schedules staggered.
                  Schedule(connections / (rate * share), connections / (rate * share) * number / processes)
                  if rate else None),
            daemon=True,
        )
        worker.start()
        send.close()
        workers.append(worker)
        pipes.append(receive)
    outcomes = []
    try:
        go.set()
        for receive in pipes:
            if not receive.poll(seconds + 90):
                raise RuntimeError("a client process did not report in time")
            outcomes.append(receive.recv())
    finally:
        for worker in workers:
            worker.join(10)
            if worker.is_alive():
                worker.kill()
                worker.join(5)
    failed = [outcome["error"] for outcome in outcomes if "error" in outcome]
    if failed:
        raise RuntimeError(f"client process failed: {failed[0]}")
    latencies, service = array.array("d"), array.array("d")
    statuses: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    answered_at: Counter[int] = Counter()
    over_at: Counter[int] = Counter()
    for outcome in outcomes:
        latencies.frombytes(outcome["latencies"])
        service.frombytes(outcome["service"])
        answered_at.update(outcome["answered_at"])
        over_at.update(outcome["over_at"])
        statuses.update({str(status): count for status, count in outcome["statuses"].items()})
        failures.update(outcome["failures"])
    ordered = sorted(latencies)

    def percentile(share: float, ordered: Sequence[float] = ordered) -> float:
        if not ordered:
            return 0.0
        return ordered[rank(len(ordered), share)] * 1000

    extra: dict[str, Any] = {}
    if rate:
        served = sorted(service)
        extra = {"late": sum(outcome["late"] for outcome in outcomes), "unmatched": 0, "p99_9_ms": percentile(99.9),
                 "timeline": timeline(answered_at, over_at),
                 "timeline_start": wall_clock(min(answered_at)) if answered_at else None,
                 "service": {f"p{share:g}_ms".replace(".", "_"): percentile(share, served)
                             for share in (50, 90, 95, 99, 99.9)} | {"max_ms": served[-1] * 1000 if served else 0.0}}
    return LoadResult(
        duration_s=max(o["end"] for o in outcomes) - min(o["start"] for o in outcomes),
        answered=sum(statuses.values()),
        statuses=dict(statuses),
        socket_errors=dict(failures),
        p50_ms=percentile(50), p90_ms=percentile(90), p95_ms=percentile(95), p99_ms=percentile(99),
        max_ms=(ordered[-1] * 1000 if ordered else 0.0),
        generator_cpu_s=sum(o["cpu"] for o in outcomes),
        exhausted=sum(o["exhausted"] for o in outcomes),
        extra=extra,
    )


class LoadGenerator:
    """The same client machinery for the hub and the echo server: wrk, or Python client processes."""

    def __init__(self, kind: str, threads: int, concurrency: int, folder: Path, tls: TlsFiles | None = None) -> None:
        self.kind = kind
        self.tls = tls
        self.threads = max(1, min(threads, concurrency))
        self.concurrency = concurrency
        self.folder = folder
        self.log = folder / "wrk.log"
        self._runs = 0
        if kind == "wrk":
            self.script = folder / "accept.lua"
            self.script.write_text(WRK_SCRIPT, "utf-8")
            self.open_script = folder / "accept-open-loop.lua"
            self.open_script.write_text(OPEN_LOOP_WRK_SCRIPT, "utf-8")

    def run(self, url: str, bodies: Sequence[bytes], seconds: float, cycle: bool = False,
            rate: float | None = None, keys: Sequence[str] | None = None) -> LoadResult:
        """Closed loop by default; with `rate`, an open loop of `rate` requests a second (never with `cycle`).

        wrk's Lua cannot tell a thread's connections apart, so an open loop with several connections a wrk thread
        matches answers to requests by the bodies' message ids: `keys` (`message_keys(bodies)`, worked out here when
        not given). Bodies without them are refused for such a run, not run another way."""
        if self.kind == "python":
            return run_python_clients(url, bodies, self.threads, self.concurrency, seconds, cycle,
                                      str(self.tls.ca) if self.tls else None, rate=rate)
        self._runs += 1
        pooled = bool(rate) and self.threads < self.concurrency
        if pooled and keys is None:
            keys = message_keys(bodies)
            if keys is None:
                raise ValueError("an open loop with several connections a wrk thread needs bodies that are compact JWS "
                                 "with distinct ids: run one thread a connection (threads = concurrency)")
        base = write_bodies(self.folder, f"bodies-{self._runs}", bodies, self.threads, keys if pooled else None)
        return run_wrk(url, base, self.open_script if rate else self.script, self.threads, self.concurrency, seconds,
                       cycle, self.log, rate, keyed=pooled)

    def describe(self, rate: float | None = None) -> str:
        scheme = "https" if self.tls else "http"
        loop = (f"; open loop of {rate:g} requests/s (latency from when each was due), closed loop for the warm-up "
                f"and the echo ceiling" if rate else "")
        pool = ""
        if rate:
            pool = (f"; {self.concurrency} connections, each thread's (process's) requests due on one schedule and sent "
                    f"on the first of its connections to be free" if self.threads < self.concurrency
                    else f"; {self.concurrency} connections, each on a schedule of its own")
        if self.kind == "wrk":
            return f"wrk ({_wrk_version()}), {self.threads} thread(s), Lua script over pre-signed bodies, {scheme}{loop}{pool}"
        return (f"{self.threads} Python client process(es), aiohttp {_version('aiohttp')}, keep-alive, "
                f"{scheme}{loop}{pool}")


def _wrk_version() -> str:
    try:
        result = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (result.stdout + result.stderr).splitlines()[0].split(" Copyright")[0] if (result.stdout + result.stderr) else "unknown"


def _version(distribution: str) -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


# --- the hub and its database --------------------------------------------------------------


def hub_config(port: int, data_dir: Path, tls: TlsFiles | None = None, extra: str = "") -> str:
    """The generated configuration: test mode, loopback, the published test keys, every route between CN-GD, HK, MO;
    with `tls`, a `[tls]` table (https); `extra` is appended (more TOML tables)."""
    routes = "".join(
        f'\n[[routes]]\nsender = "{sender}"\nreceiver = "{receiver}"\n'
        'types = ["referral.*", "verification.*", "receipt"]\n'
        'purposes = ["referral", "assistance_feedback", "economic_verification", "delivery_receipt"]\n'
        for sender in JURISDICTIONS for receiver in JURISDICTIONS if sender != receiver
    )
    jurisdictions = "".join(f'\n[jurisdictions.{code}]\ndelivery = "pull"\n' for code in JURISDICTIONS)
    return (
        "# Generated by bench/accept.py for one benchmark run.\n"
        'mode = "test"\n'
        'listen_host = "127.0.0.1"\n'
        f"listen_port = {port}\n"
        f'public_base_url = "{"https" if tls else "http"}://127.0.0.1:{port}"\n'
        f"data_dir = {json.dumps(str(data_dir))}\n"
        "\n[hub]\n"
        f"receipt_key = {json.dumps(str(KEYS / 'test-hub-receipt-1.key.jwk'))}\n"
        f"checkpoint_key = {json.dumps(str(KEYS / 'test-hub-checkpoint-1.key.jwk'))}\n"
        f"trust_list = {json.dumps(str(KEYS / 'trust-list.json'))}\n"
        + (f"\n[tls]\ncertificate = {json.dumps(str(tls.certificate))}\n"
           f"private_key = {json.dumps(str(tls.private_key))}\n" if tls else "")
        + f"{extra}{jurisdictions}{routes}"
    )


@dataclass
class Database:
    dsn: str
    description: str
    version: str
    embedded_data_dir: Path | None = None
    external_admin_url: str | None = None
    external_name: str | None = None

    def postmaster_pid(self) -> int | None:
        if self.embedded_data_dir is None:
            return None
        try:
            return int((self.embedded_data_dir / "postgres" / "postmaster.pid").read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None


async def _execute(url: str, statement: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(url, timeout=15)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


INDEX_BEHIND_SQL = (
    "SELECT count(*) FROM messages WHERE type IN ('referral.submit', 'verification.request')"
    " AND ledger_index > coalesce((SELECT max(ledger_index) FROM console_person_cursor), -1)"
)
"""Accepted messages the console's person indexer has not read yet (gateway/console/persons.py): work the hub still owes."""


async def season_wal(url: str, segments: int) -> dict[str, Any]:
    """Have PostgreSQL make `segments` WAL segments and recycle them (`--season-wal`): the steady state of a server
    that has run for a while, where a segment switch renames a recycled file, instead of a fresh cluster's, where each
    switch creates and zero-fills a new 16 MB file while every COMMIT waits (docs/performance.md, "Seventh pass").

    Each round writes one WAL record (so that the switch is not a no-op) and switches; CHECKPOINT then recycles the
    finished segments as future ones. Returns the segments switched, the WAL files ready ahead of the current one
    and the seconds it took."""
    import asyncpg

    started = time.monotonic()
    connection = await asyncpg.connect(url, timeout=15)
    try:
        for _ in range(segments):
            await connection.execute("SELECT pg_logical_emit_message(false, 'gba-bench', 'season')")
            await connection.execute("SELECT pg_switch_wal()")
        await connection.execute("CHECKPOINT")
        ahead = await connection.fetchval(
            "SELECT count(*) FROM pg_ls_waldir() WHERE name ~ '^[0-9A-F]{24}$' AND name > pg_walfile_name(pg_current_wal_lsn())")
    finally:
        await connection.close()
    return {"segments": segments, "recycled_ahead": ahead, "seconds": round(time.monotonic() - started, 1)}


async def _fetchval(url: str, query: str) -> Any:
    import asyncpg

    connection = await asyncpg.connect(url, timeout=15)
    try:
        return await connection.fetchval(query)
    finally:
        await connection.close()


@contextlib.contextmanager
def database(folder: Path, url: str | None, notes: list[str]) -> Iterator[Database]:
    """The embedded server in `folder/data` (stopped afterwards), or a new database on `url`'s server (dropped)."""
    if url is None:
        data_dir = folder / "data"
        try:
            dsn = run_gateway(["db", "start", "--data-dir", str(data_dir)]).strip().splitlines()[-1]
            version = asyncio.run(_fetchval(dsn, "SHOW server_version"))
            yield Database(dsn, f"embedded PostgreSQL {version} (fsync on)", version, embedded_data_dir=data_dir)
        finally:
            try:
                run_gateway(["db", "stop", "--data-dir", str(data_dir)])
            except (RuntimeError, subprocess.TimeoutExpired) as error:
                notes.append(f"stopping the embedded server failed: {error}")
        return
    from gateway.store.database import redact_url, with_database_name

    name = "gba_bench_" + secrets.token_hex(6)
    asyncio.run(_execute(url, f'CREATE DATABASE "{name}"'))
    try:
        dsn = with_database_name(url, name)
        version = asyncio.run(_fetchval(dsn, "SHOW server_version"))
        yield Database(dsn, f"PostgreSQL {version}, database {name} on {redact_url(url)}", version,
                       external_admin_url=url, external_name=name)
    finally:
        try:
            asyncio.run(_execute(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        except Exception as error:  # noqa: BLE001 - reported, never hides the run's own outcome
            notes.append(f"dropping {name} failed: {type(error).__name__}: {error}")


@contextlib.contextmanager
def started(command: list[str], log: Path, marker: str) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A server process writing to `log`, ready once it printed `marker`; SIGTERM (then SIGKILL) afterwards."""
    with log.open("ab") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=_child_environment(), start_new_session=True)
    try:
        yield process, wait_for_line(process, log, marker, START_TIMEOUT)
    finally:
        stop_process(process)


def machine_info() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    memory = None
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = round(int(line.split()[1]) / 1024 / 1024, 1)
    return {
        "load_average_1m_before": round(os.getloadavg()[0], 2),
        "cpus": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "memory_gib": memory,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "aiohttp": _version("aiohttp"),
        "asyncpg": _version("asyncpg"),
        "cryptography": _version("cryptography"),
        "commit": _commit(),
    }


def _commit() -> str | None:
    """The checkout's commit, with "+changes" when the gateway package differs from it; None outside git."""
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10)
        if head.returncode != 0:
            return None
        changed = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "gateway"],
                                 capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return head.stdout.strip() + ("+changes" if changed.stdout.strip() else "")


# --- the run -------------------------------------------------------------------------------


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the measured run (default 30)")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight (connections; default 64)")
    parser.add_argument("--database-url", help="a PostgreSQL server to run on (a fresh database is created and "
                                               "dropped); default: the embedded server in a temporary directory")
    parser.add_argument("--json-out", type=Path, help="also write the JSON result to this file")
    parser.add_argument("--generator", choices=("auto", "wrk", "python"), default="auto",
                        help="load generator: wrk (C, with a Lua script) or Python client processes; "
                             "auto = wrk when installed (default)")
    parser.add_argument("--threads", type=int, help="wrk threads or client processes (default: 1 wrk thread, "
                                                    "or one client process per core)")
    parser.add_argument("--rate", type=float, metavar="PER_S",
                        help="offer this many messages a second in an open loop: each wrk thread (client process) has a "
                             "fixed schedule and sends each message due on the first of its connections to be free; "
                             "latency counts from when each message was due (as wrk2 does). --threads equal to "
                             "--concurrency gives each connection a schedule of its own. Default: a closed loop, each "
                             "connection sending when its last answer came")
    parser.add_argument("--warmup-seconds", type=float, default=3.0, help="unmeasured load first (default 3)")
    parser.add_argument("--season-wal", type=int, default=0, metavar="SEGMENTS",
                        help="after the warm-up, have PostgreSQL make and recycle SEGMENTS WAL segments (16 MB each), as a "
                             "server that has run a while has them; default 0: the fresh cluster's first segments are "
                             "created inside the window (docs/performance.md, \"Seventh pass\")")
    parser.add_argument("--echo-seconds", type=float, help="length of the echo run (default: seconds/3, 2 to 10)")
    parser.add_argument("--profile-out", type=Path,
                        help="record the hub with py-spy during the measured run (raw collapsed stacks) into this file;"
                             " with --workers, every worker process")
    parser.add_argument("--no-tls", action="store_true",
                        help="plain HTTP (default: HTTPS with a certificate made for the run, as in production)")
    parser.add_argument("--workers", type=int, default=1,
                        help="hub processes on the one port (`gateway serve --workers N`; default 1)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, config, bodies)")
    parser.add_argument("--hub-toml", default="", help='TOML appended to the hub\'s generated configuration, e.g. '
                                                       '"[commit]\\nmax_batch = 16" (docs/configuration.md; default none)')
    parser.add_argument("--serve-echo", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--echo-certificate", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--echo-private-key", type=Path, help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)
    if arguments.serve_echo is None:
        if not 1 <= arguments.seconds <= 240:
            parser.error("--seconds must be between 1 and 240 (signed messages must reach the hub within 300 s)")
        if arguments.concurrency < 1:
            parser.error("--concurrency must be at least 1")
        if not 0 <= arguments.warmup_seconds <= 30:
            parser.error("--warmup-seconds must be between 0 and 30")
        if arguments.rate is not None:
            if not 1 <= arguments.rate <= 100_000:
                parser.error("--rate must be between 1 and 100,000 messages a second")
            if arguments.concurrency / arguments.rate > OPEN_LOOP_MAX_INTERVAL:
                parser.error(f"--concurrency / --rate is each connection's interval, at most {OPEN_LOOP_MAX_INTERVAL} s "
                             f"(the hub closes a connection idle for 75 s): use fewer connections")
            if arguments.rate * (math.ceil(arguments.seconds) + 0.2) * OPEN_LOOP_MARGIN > POOL_CAP:
                parser.error(f"--rate x --seconds needs more pre-signed messages than the {POOL_CAP:,} the benchmark "
                             f"signs: lower one of them")
    return arguments


def choose_generator(requested: str) -> str:
    if requested == "auto":
        return "wrk" if shutil.which("wrk") else "python"
    if requested == "wrk" and not shutil.which("wrk"):
        raise SystemExit("bench/accept.py: wrk is not installed (apt-get install wrk), use --generator python")
    return requested


def _terminate_on_signal() -> None:
    def handler(signal_number: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signal_number}")

    signal.signal(signal.SIGTERM, handler)


def _say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def benchmark(arguments: argparse.Namespace) -> dict[str, Any]:
    kind = choose_generator(arguments.generator)
    threads = arguments.threads or (1 if kind == "wrk" else len(os.sched_getaffinity(0)))
    echo_seconds = arguments.echo_seconds or max(2.0, min(10.0, arguments.seconds / 3))
    notes: list[str] = []
    problems: list[str] = []
    machine = machine_info()
    folder = Path(tempfile.mkdtemp(prefix="gba-bench-"))
    try:
        tls = None if arguments.no_tls else make_tls(folder / "tls")
        generator = LoadGenerator(kind, threads, arguments.concurrency, folder, tls)
        _say(f"load generator: {generator.describe(arguments.rate)}; working in {folder}")
        with database(folder, arguments.database_url, notes) as db:
            _say(f"database: {db.description}")
            port = free_port()
            config = folder / "gateway.toml"
            config.write_text(hub_config(port, folder / "data", tls, arguments.hub_toml), "utf-8")
            serve = [*gateway_command(), "serve", "--config", str(config), "--port", str(port), "--workers", str(arguments.workers)]
            serve += ["--database-url", db.dsn] if db.embedded_data_dir is None else ["--data-dir", str(folder / "data")]
            with started(serve, folder / "hub.log", "gateway: serving") as (hub, _):
                hub_url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
                with started(echo_command(tls), folder / "echo.log", "echo: serving") as (echo, line):
                    echo_url = line.split()[-1]
                    _say(f"hub pid {hub.pid} on {hub_url}, echo pid {echo.pid} on {echo_url}")

                    sample = sign_messages(1)[0]
                    verify_rate = ed25519_verify_rate(sample)
                    _say(f"Ed25519 verify ceiling: {verify_rate:,.0f}/s")

                    warm = None
                    warm_rate = 0.0
                    if arguments.warmup_seconds > 0:
                        pool = sign_messages(max(2000, int(arguments.warmup_seconds * WARMUP_RATE_BOUND)))
                        warm = generator.run(hub_url, pool, arguments.warmup_seconds)
                        warm_rate = warm.answered / warm.duration_s if warm.duration_s else 0.0
                        _say(f"warm-up: {warm.answered} answered in {warm.duration_s:.1f} s, errors {warm.errors}")
                        if warm.errors:
                            problems.append(f"warm-up answers other than 202: {warm.errors}")
                    seasoned = None
                    if arguments.season_wal > 0:
                        seasoned = asyncio.run(season_wal(db.dsn, arguments.season_wal))
                        _say(f"WAL seasoned: {seasoned['recycled_ahead']} recycled segments ahead, {seasoned['seconds']} s")
                    if arguments.rate:
                        # An open loop sends no more than its schedule; each connection gets its share of the pool.
                        # wrk runs whole seconds (1.5 -> 2), and stops within a tenth of one.
                        count = min(POOL_CAP, int(arguments.rate * (math.ceil(arguments.seconds) + 0.2) * OPEN_LOOP_MARGIN)
                                    + 4 * arguments.concurrency)
                    else:
                        estimate = warm_rate if warm and not warm.exhausted else WARMUP_RATE_BOUND * 2
                        count = min(POOL_CAP, int(max(estimate, 200) * arguments.seconds * POOL_MARGIN)
                                    + 4 * arguments.concurrency)
                    signing_started = time.monotonic()
                    bodies = sign_messages(count)
                    _say(f"signed {len(bodies)} messages in {time.monotonic() - signing_started:.1f} s; "
                         f"measuring {arguments.seconds:g} s at concurrency {arguments.concurrency}"
                         + (f", {arguments.rate:g} messages/s offered" if arguments.rate else ""))

                    keys = message_keys(bodies) if arguments.rate else None  # before the window, not in it
                    postmaster = db.postmaster_pid()
                    db_kinds: dict[int, str] = {}
                    db_before = process_tree_cpu(postmaster, db_kinds) if postmaster else {}
                    hub_before = process_tree_cpu(hub.pid)  # with --workers, the supervisor and its workers
                    busy_before = machine_busy_seconds()
                    switches_before = context_switches(), context_switches(hub.pid), \
                        context_switches(postmaster) if postmaster else None
                    gc_before, stages_before = hub_readings(hub_url, tls)
                    profiler = _start_profiler(arguments.profile_out, hub.pid, arguments.seconds, folder)
                    main = generator.run(hub_url, bodies, arguments.seconds, rate=arguments.rate, keys=keys)
                    hub_after = process_tree_cpu(hub.pid)
                    busy_after = machine_busy_seconds()
                    switches_after = context_switches(), context_switches(hub.pid), \
                        context_switches(postmaster) if postmaster else None
                    db_after = process_tree_cpu(postmaster, db_kinds) if postmaster else {}
                    gc_after, stages_after = hub_readings(hub_url, tls)
                    behind = asyncio.run(_fetchval(db.dsn, INDEX_BEHIND_SQL))
                    _finish_profiler(profiler, notes, folder / "py-spy.log")
                    if time.monotonic() - signing_started > FRESHNESS_SECONDS:
                        problems.append("the run outlasted the freshness window; later messages may be stale")
                    _say(f"hub: {main.accepted_per_s:,.0f} accepted/s, p50 {main.p50_ms:.1f} ms, "
                         f"p99 {main.p99_ms:.1f} ms, errors {main.errors}; person index {behind} messages behind")
                    if arguments.rate:
                        tail = over_bound(main.extra["timeline"])
                        _say(f"answers over {TIMELINE_BOUND_MS:g} ms from their due time: {tail['answers']} in "
                             f"{tail['seconds']} of {len(main.extra['timeline'])} seconds"
                             + (f", {tail['share_in_worst_5_seconds']:.0%} of them in the worst 5" if tail["answers"] else ""))
                    if behind > max(100, main.accepted // 20):
                        notes.append(f"the console's person indexer was {behind} messages behind at the end of the window: "
                                     f"indexing them ran after it, and its CPU is not in hub_cpu_us_per_message")

                    echo_run = generator.run(echo_url, bodies, echo_seconds, cycle=True)
                    _say(f"echo: {echo_run.accepted_per_s:,.0f}/s, p99 {echo_run.p99_ms:.1f} ms")

                    stored = asyncio.run(_fetchval(db.dsn, "SELECT count(*) FROM messages"))
                    clear = asyncio.run(_fetchval(
                        db.dsn, "SELECT count(*) FROM messages WHERE compact IS NOT NULL AND payload_key IS NULL"))
                    ledger = asyncio.run(_fetchval(db.dsn, "SELECT size FROM ledger_size"))
                hub_exit = stop_process(hub)
                if hub_exit != 0:
                    problems.append(f"the hub exited with status {hub_exit} on SIGTERM")
            if main.exhausted:
                problems.append(f"the pre-signed pool ran out ({main.exhausted} requests could not be made); "
                                f"the rate is not valid")
            if echo_run.errors:
                problems.append(f"echo answers other than 202: {echo_run.errors}")
            if main.accepted == 0:
                problems.append("no message was accepted")
            if arguments.rate and main.accepted < KEPT_UP_SHARE * arguments.rate * arguments.seconds:
                notes.append(f"the hub did not keep up with the offered rate: {main.accepted_per_s:,.1f} of "
                             f"{arguments.rate:g} messages/s accepted; {main.extra['late']} requests left over 10 ms "
                             f"after they were due")
            if arguments.rate and main.extra["unmatched"]:
                notes.append(f"{main.extra['unmatched']} answers named no message the generator had sent (refusals without "
                             f"a message id): counted by status, left out of the latencies")
            if clear:
                problems.append(f"{clear} messages stored without encryption at rest")
            warm_accepted = warm.accepted if warm else 0
            if stored < warm_accepted + main.accepted:
                problems.append(f"{stored} messages stored, fewer than the {warm_accepted + main.accepted} answered 202")

        mean_bytes = sum(map(len, bodies)) / len(bodies)
        result: dict[str, Any] = {
            "benchmark": "accept",
            "date": datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
            "command": _command_line(),
            "accepted_per_s": round(main.accepted_per_s, 1),
            "p50_ms": round(main.p50_ms, 2),
            "p90_ms": round(main.p90_ms, 2),
            "p95_ms": round(main.p95_ms, 2),
            "p99_ms": round(main.p99_ms, 2),
            "max_ms": round(main.max_ms, 2),
            "echo_ceiling_per_s": round(echo_run.accepted_per_s, 1),
            "echo_p50_ms": round(echo_run.p50_ms, 2),
            "echo_p99_ms": round(echo_run.p99_ms, 2),
            "ratio_to_echo": round(main.accepted_per_s / echo_run.accepted_per_s, 4) if echo_run.accepted_per_s else 0.0,
            "ed25519_verify_per_s": round(verify_rate),
            "person_index_behind": behind,
            "messages": main.answered,
            "accepted": main.accepted,
            "concurrency": arguments.concurrency,
            "seconds": arguments.seconds,
            "duration_s": round(main.duration_s, 3),
            "echo_seconds": round(echo_run.duration_s, 3),
            "warmup_seconds": arguments.warmup_seconds,
            "warmup_accepted": warm_accepted,
            "presigned": len(bodies),
            "message_bytes_mean": round(mean_bytes),
            "mix": [f"{message_type} CN-GD->{receiver}" for message_type, receiver in MIX],
            "tls": tls is not None,
            "encryption_at_rest": clear == 0,
            "generator": kind,
            "generator_detail": generator.describe(arguments.rate),
            "open_loop": arguments.rate is not None,
            "rate_per_s": arguments.rate,
            "p99_9_ms": round(main.extra["p99_9_ms"], 2) if arguments.rate else None,
            "late": main.extra["late"] if arguments.rate else None,
            "unmatched": main.extra["unmatched"] if arguments.rate else None,
            "service_ms": {key: round(value, 2) for key, value in main.extra["service"].items()} if arguments.rate else None,
            "over_bound": over_bound(main.extra["timeline"]) if arguments.rate else None,
            "timeline": main.extra["timeline"] if arguments.rate else None,
            "timeline_start": main.extra["timeline_start"] if arguments.rate else None,
            "generator_cpu_s": round(main.generator_cpu_s, 3),
            "generator_cpu_us_per_message": round(main.generator_cpu_s / main.answered * 1e6, 1) if main.answered else None,
            "hub_cpu_s": round(tree_cpu_delta(hub_before, hub_after), 3) if hub_after else None,
            "workers": arguments.workers,
            "hub_toml": arguments.hub_toml or None,
            "database_cpu_s": round(tree_cpu_delta(db_before, db_after), 3) if postmaster else None,
            "errors": main.errors,
            "stored_messages": stored,
            "ledger_size": ledger,
            "database": db.description,
            "machine": machine | {"postgresql": db.version},
            "context_switches_per_message": {
                name: switches_per_message(before, after, main.answered)
                for name, before, after in zip(("machine", "hub", "database"), switches_before, switches_after)},
            "hub_gc": collector_delta(gc_before, gc_after),
            "stages": stage_table(stages_before, stages_after, main.accepted),
            "wal_seasoned": seasoned,
            "problems": problems,
            "notes": notes,
        }
        if busy_before is not None and busy_after is not None:
            own = sum(value or 0.0 for value in (result["hub_cpu_s"], result["database_cpu_s"], result["generator_cpu_s"]))
            result["machine_cpu_s"] = round(busy_after - busy_before, 3)
            result["other_cpu_s"] = round(max(0.0, busy_after - busy_before - own), 3)
        if result["hub_cpu_s"] is not None:
            result["hub_cpu_us_per_message"] = round(result["hub_cpu_s"] / main.accepted * 1e6, 1) if main.accepted else None
        if result["database_cpu_s"] is not None:
            result["database_cpu_us_per_message"] = (
                round(result["database_cpu_s"] / main.accepted * 1e6, 1) if main.accepted else None
            )
            by_kind = tree_cpu_by_kind(db_before, db_after, db_kinds)
            result["database_cpu_us_per_message_by_kind"] = {
                kind: round(value / main.accepted * 1e6, 1) if main.accepted else None
                for kind, value in sorted(by_kind.items(), key=lambda item: -item[1])}
        return result
    finally:
        if arguments.keep:
            _say(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


_GC_LINE = re.compile(r'^gateway_gc_pause_seconds_(count|sum|bucket)\{generation="(\d)"(?:,le="([^"]+)")?\} ([0-9.eE+-]+)$')


def metrics_text(hub_url: str, context: Any = None) -> str | None:
    """The hub's /metrics (Prometheus text), over https with the ssl `context` if given; None if it does not answer."""
    import urllib.request

    try:
        with urllib.request.urlopen(hub_url + "/metrics", timeout=30, context=context) as answer:
            return answer.read().decode("utf-8", "replace")
    except OSError:
        return None


_STAGE_LINE = re.compile(r'^(gateway_stage_(?:seconds|count)_total)\{stage="([^"]+)"\}\s+([0-9.eE+-]+)$')


def stage_totals(text: str) -> dict[str, float]:
    """`gateway_stage_seconds_total` and `gateway_stage_count_total` by stage from a hub's /metrics text, keyed
    `metric|stage` (with --workers, the hub's /metrics sums its workers)."""
    totals: dict[str, float] = {}
    for line in text.splitlines():
        match = _STAGE_LINE.match(line.strip())
        if match:
            totals[f"{match.group(1)}|{match.group(2)}"] = float(match.group(3))
    return totals


def stage_table(before: dict[str, float] | None, after: dict[str, float] | None, messages: int) -> dict[str, Any] | None:
    """Per stage, what the window added: `us_per_message` and `seconds` of the timers, `count_per_message` of the
    counters; None without both readings or messages."""
    if before is None or after is None or not messages:
        return None
    table: dict[str, Any] = {}
    for key, value in after.items():
        metric, _, stage = key.partition("|")
        delta = value - before.get(key, 0.0)
        entry = table.setdefault(stage, {})
        if metric.endswith("seconds_total"):
            entry["us_per_message"] = round(delta / messages * 1e6, 1)
            entry["seconds"] = round(delta, 3)
        else:
            entry["count_per_message"] = round(delta / messages, 3)
    return dict(sorted(table.items()))


def hub_readings(hub_url: str, tls: TlsFiles | None) -> tuple[dict[str, float] | None, dict[str, float] | None]:
    """From one read of the hub's /metrics: its collector's pauses (`collector_pauses`) and its stage totals
    (`stage_totals`); each None when the hub does not answer or exposes none."""
    text = metrics_text(hub_url, tls.client_context() if tls else None)
    if text is None:
        return None, None
    return collector_pauses(text), stage_totals(text) or None


def collector_pauses(text: str) -> dict[str, float] | None:
    """The hub's `gateway_gc_pause_seconds` histogram (gateway/hub/collector.py) from its /metrics text, summed over
    its workers by the hub itself: `{"count:G": n, "sum:G": seconds, "le:G:BOUND": n}`; None if it exposes none."""
    found = {}
    for line in text.splitlines():
        match = _GC_LINE.match(line)
        if match:
            kind, generation, bound, value = match.groups()
            found[f"{kind if kind != 'bucket' else 'le'}:{generation}" + (f":{bound}" if bound else "")] = float(value)
    return found or None


def collector_delta(before: dict[str, float] | None, after: dict[str, float] | None) -> dict[str, Any] | None:
    """What the collector did in the window, by generation: collections, pause seconds in all, and pauses over 10 ms
    (the run's p99 is tens of milliseconds: a pause that long holds every request in flight in that worker)."""
    if before is None or after is None:
        return None

    def delta(key: str) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    return {
        generation: {
            "collections": int(delta(f"count:{generation}")),
            "pause_ms": round(delta(f"sum:{generation}") * 1000, 1),
            "pauses_over_10ms": int(delta(f"count:{generation}") - delta(f"le:{generation}:0.01")),
        }
        for generation in ("0", "1", "2")
    }


def _command_line(script: str = "bench/accept.py") -> str:
    """How this run of `script` was started, with any password in a database URL masked."""
    from gateway.store.database import redact_url

    words = [script]
    for word in sys.argv[1:]:
        option, equals, value = word.partition("=") if word.startswith("--") else ("", "", word)
        if value.startswith(("postgresql://", "postgres://")):
            word = option + equals + redact_url(value)
        words.append(word)
    return " ".join(words)


def _start_profiler(out: Path | None, pid: int, seconds: float, folder: Path) -> subprocess.Popen[bytes] | None:
    if out is None:
        return None
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    command = [spy, "record", "--pid", str(pid), "--duration", str(max(1, int(seconds))), "--rate", "100",
               "--format", "raw", "--output", str(out.resolve()), "--nonblocking", "--subprocesses"]
    with (folder / "py-spy.log").open("ab") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def _finish_profiler(profiler: subprocess.Popen[bytes] | None, notes: list[str], log: Path) -> None:
    if profiler is None:
        return
    try:
        profiler.wait(30)
    except subprocess.TimeoutExpired:
        stop_process(profiler, 10)
    if profiler.returncode != 0:
        notes.append(f"py-spy exited with status {profiler.returncode}: {_tail(log, 3)}")


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    if arguments.serve_echo is not None:
        return serve_echo(arguments.serve_echo, arguments.echo_certificate, arguments.echo_private_key)
    _terminate_on_signal()
    result = benchmark(arguments)
    text = json.dumps(result, indent=2)
    print(text)
    if arguments.json_out:
        arguments.json_out.parent.mkdir(parents=True, exist_ok=True)
        arguments.json_out.write_text(text + "\n", "utf-8")
    if result["errors"] or result["problems"]:
        _say(f"not a valid run: errors {result['errors']}, problems {result['problems']}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

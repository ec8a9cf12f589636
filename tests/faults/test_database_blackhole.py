"""The database stops answering without closing the connections (a primary lost in a failover): 503s, not a hang.

A `gateway serve` process reaches PostgreSQL through a TCP proxy of this test's own while
load generators send signed messages. Midway the proxy turns every connection open at that
moment into a black hole: the hub's side stays open and what the hub sends is swallowed,
with no answer, close or reset, as when a server's host vanishes from the network (the
server's side is closed, so PostgreSQL ends those sessions, as a lost primary's are gone). Connections opened
afterwards pass again (the address now leads to a server that answers, as after a
failover). The hub's `database_timeout_seconds` cancels a statement that gets no answer,
answers its request `503` with Retry-After, and drops the connection, so the process
serves again by itself over new ones; the registry's LISTEN connection, which sends
nothing by itself, is checked every 10 s and replaced the same way. Without that timeout
every request would wait on the swallowed connections for ever (an idle TCP connection
with nothing unacknowledged is never dropped by the kernel).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

from tests.faults.report import record
from tests.faults.test_database_restart import (
    OUTAGE_DEADLINE_SECONDS,
    SENDERS,
    Sender,
    accepted_once_and_verified,
    database_now,
    the_registry_listens_again,
)
from tests.hub.harness import SERVE_CONFIG, query, serve_process, wait_for_row
from tests.hub.test_delivery_pull import GD
from tests.hub.test_transport_security import referral

TIMEOUT_SECONDS = 2


class _Pair:
    def __init__(self, client: socket.socket, server: socket.socket) -> None:
        self.client, self.server = client, server
        self.swallowed = False


class BlackholeProxy:
    """A TCP proxy on 127.0.0.1 to a PostgreSQL server; `swallow_open()` makes every open connection a black hole."""

    def __init__(self, database_url: str) -> None:
        parts = urlsplit(database_url)
        socket_dir = parse_qs(parts.query).get("host", [None])[0]
        port = int(parse_qs(parts.query).get("port", [parts.port or 5432])[0])
        if socket_dir:  # the embedded server listens on a Unix socket only
            self._upstream: tuple[int, object] = (socket.AF_UNIX, f"{socket_dir}/.s.PGSQL.{port}")
        else:
            self._upstream = (socket.AF_INET, (parts.hostname, port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"postgresql://{parts.username}@127.0.0.1:{self._listener.getsockname()[1]}{parts.path}"
        self._pairs: list[_Pair] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def swallow_open(self) -> int:
        """Make every connection open now a black hole; how many there were.

        The server's side is closed, so PostgreSQL ends those sessions and their transactions (as the lost primary's
        are gone); the hub's side stays open, and what the hub sends on it is swallowed without an answer."""
        with self._lock:
            for pair in self._pairs:
                pair.swallowed = True
                with contextlib.suppress(OSError):
                    pair.server.shutdown(socket.SHUT_RDWR)
            return len(self._pairs)

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        with self._lock:
            for pair in self._pairs:
                for end in (pair.client, pair.server):
                    with contextlib.suppress(OSError):
                        end.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.socket(self._upstream[0], socket.SOCK_STREAM)
            server.connect(self._upstream[1])
            pair = _Pair(client, server)
            with self._lock:
                self._pairs.append(pair)
            threading.Thread(target=self._pump, args=(pair, client, server), daemon=True).start()
            threading.Thread(target=self._pump, args=(pair, server, client), daemon=True).start()

    @staticmethod
    def _pump(pair: _Pair, source: socket.socket, target: socket.socket) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                return
            if pair.swallowed:  # a black hole: nothing arrives, and no end is told
                if not data:
                    return
                continue
            if not data:
                with contextlib.suppress(OSError):
                    target.shutdown(socket.SHUT_WR)
                return
            try:
                target.sendall(data)
            except OSError:
                return


@contextlib.contextmanager
def blackhole_proxy(database_url: str) -> Iterator[BlackholeProxy]:
    proxy = BlackholeProxy(database_url)
    try:
        yield proxy
    finally:
        proxy.close()


def test_a_database_that_stops_answering_gives_503s_and_the_hub_serves_again_by_itself(tmp_path, database_url, example, test_key):
    config = f"database_timeout_seconds = {TIMEOUT_SECONDS}\n" + SERVE_CONFIG
    with blackhole_proxy(database_url) as proxy:
        with serve_process(tmp_path, proxy.url, name="blackholed-db", config_text=config) as (process, hub):
            stop = threading.Event()
            senders = [Sender(hub, lambda: referral(example, test_key(GD)), stop) for _ in range(SENDERS)]
            for sender in senders:
                sender.start()
            wait_for_row(database_url, "SELECT 1 FROM messages OFFSET 20")  # load is flowing
            swallowed_at = database_now(database_url)
            swallowed = proxy.swallow_open()
            met_by = time.monotonic() + OUTAGE_DEADLINE_SECONDS
            while not any(sender.met_outage.is_set() for sender in senders):
                assert process.poll() is None
                assert time.monotonic() < met_by, "no sender met the black hole"
                senders[0].met_outage.wait(1.0)  # an event wait; the loop re-checks the hub and the deadline
            before = query(database_url, "SELECT count(*) AS n FROM messages")[0]["n"]
            wait_for_row(database_url, "SELECT 1 FROM messages OFFSET $1", before + 20, timeout=90)  # served again, by itself
            stop.set()
            for sender in senders:
                sender.join(180)
            # The swallowed LISTEN connection is checked every 10 s (LISTENER_CHECK_SECONDS), then replaced.
            the_registry_listens_again(database_url, swallowed_at)
            assert "registry_listener_unanswered" in (tmp_path / "blackholed-db.log").read_text("utf-8"), "found by the check"
            assert hub.request("GET", "/readyz").status == 200
            assert process.poll() is None, "the hub never stopped"

    statuses = sum((sender.statuses for sender in senders), Counter())
    assert swallowed >= 2, "the pool's connections were open when the black hole began"
    assert statuses[503] > 0, f"the load met the black hole: {statuses}"
    # 0 counts a connection the hub cut or left unanswered for the client's 30 s: neither may happen.
    assert set(statuses) <= {202, 503}, f"only 202 and 503, every request answered: {statuses}"
    accepted = accepted_once_and_verified(senders, database_url)
    record("database-blackhole", "PostgreSQL stopped answering without a reset, under load", accepted=len(accepted), lost=0,
           answered_503=statuses[503], swallowed_connections=swallowed)

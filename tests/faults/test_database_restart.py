"""PostgreSQL stopped and started again under load (issue 11): 503 with Retry-After, never 500; nothing lost.

A `gateway serve` process runs on an embedded PostgreSQL of this test's own (so that the
test may stop it) while load generators send signed messages without pause. Midway the
database is stopped (fast shutdown: every connection is cut), kept down, and started
again. Every sender resends a message answered 503 with the identical bytes until it is
accepted (§8.1). Afterwards: no answer was a 5xx other than 503, every 503 carried
Retry-After, the hub served again by itself (no restart), every message is stored once,
and the ledger verifies.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

from gateway.store.embedded import ensure_embedded_server, stop_embedded_server
from tests.cli_runner import run_cli
from tests.database import temporary_data_dir
from tests.faults.report import record
from tests.hub.harness import query, serve_process, wait_for_row
from tests.hub.test_delivery_pull import GD
from tests.hub.test_transport_security import referral

SENDERS = 4
OUTAGE_DEADLINE_SECONDS = 60.0
"""The database stays down until every sender has met it (a 503 or a cut connection), at most this long."""
RESEND_DEADLINE_SECONDS = 120.0


class Sender(threading.Thread):
    """Sends fresh referrals one after another until stopped; resends a 503'd one, identically, until accepted."""

    def __init__(self, hub, make, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.hub, self.make, self.stop = hub, make, stop
        self.statuses: Counter[int] = Counter()
        self.missing_retry_after = 0
        self.accepted: set[bytes] = set()
        self.failure: BaseException | None = None
        self.met_outage = threading.Event()
        """Set at this sender's first 503 or cut connection."""

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self._deliver(self.make())
        except BaseException as error:  # noqa: BLE001 - reported by the test
            self.failure = error

    def _deliver(self, body: bytes) -> None:
        deadline = time.monotonic() + RESEND_DEADLINE_SECONDS
        while True:
            try:
                answer = self.hub.post_message(body)
            except OSError:  # the connection was cut mid-request: resend, as a client must (§8.1)
                self.statuses[0] += 1
                self.met_outage.set()
                answer = None
            if answer is not None:
                self.statuses[answer.status] += 1
                if answer.status == 202:
                    self.accepted.add(body)
                    return
                assert answer.status == 503, f"answered {answer.status} {answer.code}"
                self.met_outage.set()
                if "retry-after" not in answer.headers:
                    self.missing_retry_after += 1
            assert time.monotonic() < deadline, "a message was not accepted within the resend deadline"
            time.sleep(0.05)  # the client's own back-off between resends (not synchronisation)


def test_a_database_restart_under_load_gives_503s_and_loses_nothing(tmp_path, example, test_key):
    with temporary_data_dir() as data_dir:
        database_url = ensure_embedded_server(data_dir).dsn
        with serve_process(tmp_path, database_url, name="restarted-db") as (process, hub):
            stop = threading.Event()
            senders = [Sender(hub, lambda: referral(example, test_key(GD)), stop) for _ in range(SENDERS)]
            for sender in senders:
                sender.start()
            wait_for_row(database_url, "SELECT 1 FROM messages OFFSET 20")  # load is flowing
            outage = database_now(database_url)
            stop_embedded_server(data_dir)
            every_sender_meets_the_outage(senders, process)
            ensure_embedded_server(data_dir)
            before = query(database_url, "SELECT count(*) AS n FROM messages")[0]["n"]
            wait_for_row(database_url, "SELECT 1 FROM messages OFFSET $1", before + 20)  # served again, by itself
            stop_and_see_the_hub_ready(senders, stop, hub, process, database_url, outage)

        statuses = sum((sender.statuses for sender in senders), Counter())
        assert statuses[503] > 0, f"the load met the database down: {statuses}"
        assert set(statuses) <= {0, 202, 503}, f"only 202 and 503 (and cut connections): {statuses}"
        accepted = accepted_once_and_verified(senders, database_url)
        stop_embedded_server(data_dir)
    record("database-restart", "PostgreSQL stopped and started under load", accepted=len(accepted), lost=0,
           answered_503=statuses[503], answered_500=statuses[500], connections_cut=statuses[0])


def accepted_once_and_verified(senders: list[Sender], database_url: str) -> set[bytes]:
    """What the senders got accepted, after checking that none failed, every 503 said when to retry, each accepted
    message is stored exactly once, and the ledger verifies."""
    for sender in senders:
        assert sender.failure is None, repr(sender.failure)
    assert sum(sender.missing_retry_after for sender in senders) == 0, "every 503 says when to retry"
    accepted = set().union(*(sender.accepted for sender in senders))
    stored = query(database_url, "SELECT count(*) AS n FROM messages")[0]["n"]
    assert stored == len(accepted), f"{stored} stored, {len(accepted)} accepted: each exactly once"
    verified = run_cli("ledger", "verify", "--database-url", database_url)
    assert verified.status == 0, verified.stdout + verified.stderr
    return accepted


def every_sender_meets_the_outage(senders: list[Sender], process: Any) -> None:
    """Wait until every sender has met the outage (a 503 or a cut connection), at most OUTAGE_DEADLINE_SECONDS."""
    met_by = time.monotonic() + OUTAGE_DEADLINE_SECONDS
    while not all(sender.met_outage.is_set() for sender in senders):
        assert process.poll() is None
        assert time.monotonic() < met_by, "not every sender met the outage"
        waiting = next(sender for sender in senders if not sender.met_outage.is_set())
        waiting.met_outage.wait(1.0)  # an event wait; the loop re-checks the hub and the deadline


def database_now(database_url: str) -> Any:
    """The server's clock: the moment an outage begins, for `the_registry_listens_again`."""
    return query(database_url, "SELECT now() AS t")[0]["t"]


def the_registry_listens_again(database_url: str, since: Any) -> None:
    """Wait until the hub's registry has listened again and reloaded since `since`: it then acknowledges its version
    in `gateway_processes`, which sets `seen_at` (gateway/hub/registry.py). Reconnects back off up to 5 s apart."""
    wait_for_row(database_url, "SELECT 1 FROM gateway_processes WHERE seen_at > $1", since, timeout=60)


def stop_and_see_the_hub_ready(
    senders: list[Sender], stop: threading.Event, hub: Any, process: Any, database_url: str, since: Any
) -> None:
    """Stop the senders (each ends once its message is accepted), then see that the hub listens again by itself (an
    acknowledgement in the database after `since`) and is ready."""
    stop.set()
    for sender in senders:
        sender.join(RESEND_DEADLINE_SECONDS + 30)
    the_registry_listens_again(database_url, since)
    assert hub.request("GET", "/readyz").status == 200, "the hub is ready again by itself"
    assert process.poll() is None, "the hub never stopped"

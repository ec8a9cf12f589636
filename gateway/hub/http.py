"""The hub's HTTP binding (docs/protocol.md §12): thin handlers over `Hub`.

The application owns its resources through `cleanup_ctx` (pool, migrations, registry,
group committer); handlers only translate HTTP to calls and results to answers.
Every refusal is an RFC 9457 problem from the one catalogue; nothing from the
payload reaches a log line or a problem.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import secrets
from datetime import datetime, timedelta, timezone
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Mapping

import asyncpg
import structlog
from aiohttp import web

from gateway import __version__
from gateway.hub.acceptance import Hub
from gateway.hub.authorization import API_ROUTES, Access, access_of
from gateway.hub.committer import GroupCommitter, database_unavailable
from gateway.adapters.registry import load_adapters
from gateway.config import GatewayConfig
from gateway.jsontext import dumps_bytes
from gateway.console.settings import console_settings
from gateway.hub.delivery import OUTBOX_CHANNEL, Deliverer, DeliveryPolicy, Sweeper, Wakeups, delivered_entry, delivery_of, push_endpoints
from gateway.hub.faults import delivery_kill_point
from gateway.hub.limits import CallerLimit, CallerLimits
from gateway.hub.transport import HUB_PARTY, peer_party
from gateway.hub.witnessing import Checkpointer, WitnessEndpoint, published_note
from gateway.ledger import checkpoints, notes, scope
from gateway.ledger.tree import NotAHead, consistency_proof, inclusion_proof
from gateway.ledger.verify import verify_ledger
from gateway.hub import outbox
from gateway.hub.metrics import Metrics
from gateway.hub.openapi import OPENAPI_PATH, document_bytes
from gateway.hub.policy import RoutePolicy
from gateway.hub.retention import purge_continuously
from gateway.hub.stages import STAGE_TIMES
from gateway.hub.registry import APPLICATION_PREFIX, ModeConflict, Registry, import_trust_list, read_trust_list, settle_mode
from gateway.hub import store
from gateway.keyfiles import read_private_key
from gateway.ledger.append import LedgerAppender
from gateway.protocol.errors import ProtocolError
from gateway.store.database import dead_peer_settings
from gateway.protocol.ids import UUID7
from gateway.protocol.request_proof import WINDOW_SECONDS, VerifiedProof, check_request_proof
from gateway.protocol.schema import load_message_schemas
from gateway.protocol.timestamps import format_timestamp, utc_now
from gateway.protocol.keys import PrivateKey
from gateway.protocol.trust import TrustList, check_hub_receipt_key, load_trust_list
from gateway.store.migrate import migrate
from gateway.store.payloads import KEYS_VARIABLE, PayloadKeyError, PayloadKeys, generate_key, load_keys

JOSE = "application/jose"
PROBLEM = "application/problem+json"

_log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class HubSettings:
    """What the HTTP app needs from the configuration (gateway.config builds it)."""

    dsn: str
    mode: str
    public_base_url: str
    receipt_key_file: Any
    trust_list_file: Any
    routes: tuple[Any, ...]
    max_message_bytes: int = 262_144
    freshness_seconds: int = 300
    max_batch: int = 256
    max_wait_ms: float = 0.0
    lock_timeout_ms: int = 10_000
    pool_size: int = 10
    database_timeout_seconds: float = 30.0
    """Client side: a statement unanswered this long is cancelled and its request answered 503 (a server that vanished
    without a reset would otherwise hold the connection until the kernel gives up; docs/operations.md)."""
    push_endpoints: Mapping[str, str] = field(default_factory=dict)
    """Receiver code -> endpoint of every jurisdiction delivered by push; the others pull."""
    delivery: DeliveryPolicy = DeliveryPolicy()
    long_poll_seconds: int = 30
    max_request_bytes: int = 8_388_608
    """The largest request body: a bulk body (§12.9); a single message is capped by `max_message_bytes`."""
    bulk_max_lines: int = 1000
    delivery_kill_point: Any = None
    origin: str = "localhost/gba-ledger"
    checkpoint_key_file: Any = None
    witnesses: tuple[WitnessEndpoint, ...] = ()
    quorum: int = 0
    checkpoint_interval_seconds: float = 10.0
    verify_interval_seconds: float = 3600.0
    adapters: Mapping[str, str] = field(default_factory=lambda: {"CN-GD": "cn_gd", "HK": "hk", "MO": "mo"})
    """Jurisdiction code -> its adapter module (gateway/adapters/registry.py)."""
    body_read_seconds: float = 30.0
    caller_limit: CallerLimit = CallerLimit(rate_per_second=2000, burst=4000, in_flight=512)
    """Per authenticated caller (gateway/hub/limits.py, PROTO-12.8-4)."""
    address_limit: CallerLimit = CallerLimit(rate_per_second=5000, burst=10000, in_flight=1024)
    """Per network address, before authentication."""
    long_polls_per_jurisdiction: int = 8
    client_certificates: bool = False
    """Mutual TLS: non-public requests need a client certificate naming their jurisdiction (PROTO-12.8-2)."""
    outgoing_ssl: Any = None
    """The `ssl.SSLContext` for the hub's own calls (pushes, witnesses); None: the system's defaults."""
    payload_keys: PayloadKeys | None = None
    """Seal stored messages (gateway/store/payloads.py); required to serve."""
    purge_interval_seconds: float = 3600.0
    """How often payloads whose retention ended are deleted (gateway/hub/retention.py)."""
    receipt_key_check_seconds: float = 3600.0
    """How often the hub checks its own receipt key against the clock (`_watch_receipt_key`)."""
    console: Any = None
    """The console's settings (gateway/console/settings.py); None: no console."""


HUB = web.AppKey("hub", Hub)
POOL = web.AppKey("pool", asyncpg.Pool)
METRICS = web.AppKey("metrics", Metrics)
SETTINGS = web.AppKey("settings", HubSettings)
REGISTRY = web.AppKey("registry", Registry)
COMMITTER = web.AppKey("committer", GroupCommitter)
WAKEUPS = web.AppKey("wakeups", Wakeups)
PROCESS_ID = web.AppKey("process_id", str)
CHECKPOINTER = web.AppKey("checkpointer", Checkpointer)
CALLER_LIMITS = web.AppKey("caller_limits", CallerLimits)
ADDRESS_LIMITS = web.AppKey("address_limits", CallerLimits)
LONG_POLLS = web.AppKey("long_polls", CallerLimits)
ROUTE_ACCESS = web.AppKey("route_access", dict)
"""(method, canonical path) -> Access: the authorisation matrix's routes (gateway/hub/authorization.py)."""
CALLER = web.RequestKey("caller", VerifiedProof)
"""The request's authenticated jurisdiction, set before a jurisdiction route's handler runs."""


def settings_for(config: GatewayConfig, dsn: str, payload_keys: PayloadKeys | None = None) -> HubSettings:
    """The hub's settings from a checked configuration and the database it uses.

    The payload keys are `payload_keys`, else the configuration's: in test mode a missing key directory is
    made with a fresh key (the demo needs no set-up); in production the keys must exist (docs/operations.md).
    """
    return HubSettings(
        payload_keys=payload_keys or payload_keys_for(config),
        purge_interval_seconds=config.storage.purge_interval_seconds,
        dsn=dsn,
        database_timeout_seconds=config.database_timeout_seconds,
        mode=config.mode,
        public_base_url=config.public_base_url,
        receipt_key_file=config.hub.receipt_key,
        trust_list_file=config.hub.trust_list,
        routes=config.routes,
        max_message_bytes=config.limits.max_message_bytes,
        freshness_seconds=config.limits.freshness_seconds,
        max_batch=config.commit.max_batch,
        max_wait_ms=config.commit.max_wait_ms,
        push_endpoints=push_endpoints(config.jurisdictions.values()),
        delivery=DeliveryPolicy(
            lease_seconds=config.delivery.lease_seconds,
            retry_initial_seconds=config.delivery.retry_initial_seconds,
            retry_max_seconds=config.delivery.retry_max_seconds,
            retry_window_seconds=config.delivery.retry_window_hours * 3600,
            concurrency=config.delivery.concurrency,
            push_timeout_seconds=config.delivery.push_timeout_seconds,
        ),
        long_poll_seconds=config.limits.long_poll_seconds,
        max_request_bytes=config.limits.max_request_bytes,
        bulk_max_lines=config.limits.bulk_max_lines,
        body_read_seconds=config.limits.body_read_seconds,
        caller_limit=CallerLimit(
            config.limits.jurisdiction_rate_per_second, config.limits.jurisdiction_burst, config.limits.jurisdiction_in_flight
        ),
        address_limit=CallerLimit(config.limits.address_rate_per_second, config.limits.address_burst, config.limits.address_in_flight),
        long_polls_per_jurisdiction=config.limits.long_polls_per_jurisdiction,
        delivery_kill_point=delivery_kill_point(config.mode),
        origin=config.origin,
        checkpoint_key_file=config.hub.checkpoint_key,
        witnesses=tuple(
            WitnessEndpoint(w.name, w.jurisdiction, notes.parse_vkey(w.vkey), w.url) for w in config.witnesses
        ),
        quorum=config.quorum,
        checkpoint_interval_seconds=config.ledger.checkpoint_interval_seconds,
        verify_interval_seconds=config.ledger.verify_interval_seconds,
        adapters={code: jurisdiction.adapter for code, jurisdiction in config.jurisdictions.items()},
        console=console_settings(config),
    )


def build_app(
    settings: HubSettings, clock: Callable[[], Any] = utc_now, before_commit: Any = None, after_commit: Any = None,
    metrics: Metrics | None = None,
) -> web.Application:
    """The hub's aiohttp application; `metrics` gives counters that several workers share (default: its own)."""
    app = web.Application(middlewares=[_problems, _address_limits, _authorize], client_max_size=settings.max_message_bytes + 1)
    app[ROUTE_ACCESS] = dict(API_ROUTES)
    app[CALLER_LIMITS] = CallerLimits(settings.caller_limit)
    app[ADDRESS_LIMITS] = CallerLimits(settings.address_limit)
    app[LONG_POLLS] = CallerLimits(CallerLimit(rate_per_second=1e9, burst=10**9, in_flight=settings.long_polls_per_jurisdiction))
    app[SETTINGS] = settings
    app[METRICS] = metrics if metrics is not None else Metrics()
    app[WAKEUPS] = Wakeups()
    app.cleanup_ctx.append(_resources(clock, before_commit, after_commit))
    app.on_shutdown.append(_end_long_polls)
    app.router.add_post("/v1/messages", post_message)
    app.router.add_post(BULK_PATH, post_messages_bulk)
    app.router.add_get("/v1/messages/{message_id}", get_message)
    app.router.add_get("/v1/inbox", get_inbox)
    app.router.add_post("/v1/receipts", post_receipt)
    app.router.add_get("/v1/ledger/checkpoint", get_checkpoint)
    app.router.add_get("/v1/ledger/proof/consistency", get_consistency_proof)
    app.router.add_get("/v1/ledger/entries", get_entries)
    app.router.add_get("/v1/ledger/proof/inclusion", get_inclusion_proof)
    app.router.add_get("/v1/about", get_about)
    app.router.add_get("/v1/trust-list", get_trust_list)
    app.router.add_get("/healthz", get_health)
    app.router.add_get("/readyz", get_ready)
    app.router.add_get("/metrics", get_metrics)
    app.router.add_get(OPENAPI_PATH, get_openapi)
    if settings.console is not None:
        from gateway.console.app import mount_console  # the console's handlers read this module's app keys

        mount_console(app, clock)  # it adds its rows to app[ROUTE_ACCESS]
    return app


def _resources(clock: Callable[[], Any], before_commit: Any, after_commit: Any) -> Callable[[web.Application], AsyncIterator[None]]:
    async def context(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        process_id = f"{APPLICATION_PREFIX}{secrets.token_hex(6)}"
        async with contextlib.AsyncExitStack() as resources:
            if settings.payload_keys is None:
                raise ValueError("no payload keys: the hub seals every stored message (settings.payload_keys)")
            # Migrations and sealing may take long on a large database: they run before serving, on connections
            # of their own, without the serving pool's statement timeout.
            async with asyncpg.create_pool(
                settings.dsn, min_size=1, max_size=2, server_settings={"application_name": process_id}
            ) as startup:
                async with startup.acquire() as connection:
                    applied = await migrate(connection)
                    if applied:
                        _log.info("migrations_applied", names=applied)
                await _seal_clear_payloads(startup, settings.payload_keys)
            pool = await asyncpg.create_pool(
                settings.dsn,
                min_size=2,
                max_size=settings.pool_size,
                # Nobody waits for ever: a stalled peer holding the ledger lock yields 503s, not hangs (lock_timeout);
                # so does a server that stopped answering without closing the connection (command_timeout: asyncpg
                # cancels the statement, and closes the connection if the cancel goes unanswered too). The other way
                # round, the server drops the connections of a host that vanished within the same time, and with
                # them its locks and pull leases (dead_peer_settings; docs/operations.md, "Pull leases").
                command_timeout=settings.database_timeout_seconds,
                server_settings={
                    "application_name": process_id,
                    "lock_timeout": str(settings.lock_timeout_ms),
                    "idle_in_transaction_session_timeout": "60000",
                    **dead_peer_settings(settings.database_timeout_seconds),
                },
                reset=_no_session_reset,
            )
            resources.push_async_callback(pool.close)
            committer = GroupCommitter(
                pool, settings.max_batch, settings.max_wait_ms, before_commit=before_commit, after_commit=after_commit
            )
            committer.start()
            resources.push_async_callback(committer.close)
            await _settle_mode(pool, settings.mode, record=False)
            wakeups = app[WAKEUPS]
            registry = Registry(pool, settings.mode, process_id, listeners={OUTBOX_CHANNEL: wakeups.notified})
            resources.push_async_callback(registry.close)
            try:
                await _import_initial_trust_list(pool, committer, settings, clock)
                await registry.start()
            except ProtocolError as refusal:  # the configured trust list, or the registry, is no list of this mode
                where = f" at {refusal.where}" if refusal.where else ""
                raise HubStartError(
                    f"the key registry (or hub.trust_list, on a first start) is refused as a {settings.mode} trust "
                    f"list: {refusal.code}{where}: {refusal.detail} (docs/protocol.md §10.3, §10.5)"
                ) from refusal
            await resources.enter_async_context(_background(registry.watch(), "registry-watch"))
            await resources.enter_async_context(_background(_forget_used_request_proofs(pool, clock), "jti-sweeper"))
            receipt_key = read_private_key(settings.receipt_key_file)
            _check_receipt_key(registry.current(), receipt_key, clock())
            registry.on_loaded = lambda trust: _warn_if_receipt_key_unusable(trust, receipt_key, clock())
            await _settle_mode(pool, settings.mode, record=True)  # it loaded in this mode: the database keeps to it
            hub = Hub(
                pool=pool,
                committer=committer,
                trust=registry.current,
                schemas=load_message_schemas(),
                policy=RoutePolicy(settings.routes),
                receipt_key=receipt_key,
                clock=clock,
                freshness_seconds=settings.freshness_seconds,
                adapters=load_adapters(settings.adapters),
                payload_keys=settings.payload_keys,
            )
            app[POOL] = pool
            app[REGISTRY] = registry
            app[COMMITTER] = committer
            app[PROCESS_ID] = process_id
            app[HUB] = hub
            deliverer = Deliverer(
                pool=pool, committer=committer, hub=hub, receipt_key=receipt_key, endpoints=dict(settings.push_endpoints),
                policy=settings.delivery, process_id=process_id, clock=clock, wakeups=wakeups,
                kill_point=settings.delivery_kill_point, ssl_context=settings.outgoing_ssl,
            )
            await resources.enter_async_context(_background(deliverer.run(), "deliverer"))
            await resources.enter_async_context(
                _background(Sweeper(committer=committer, policy=settings.delivery, clock=clock).run(), "sweeper")
            )
            if settings.checkpoint_key_file is not None:
                checkpointer = Checkpointer(
                    pool=pool, origin=settings.origin, key=read_private_key(settings.checkpoint_key_file),
                    witnesses=settings.witnesses, interval_seconds=settings.checkpoint_interval_seconds, clock=clock,
                    ssl_context=settings.outgoing_ssl,
                )
                app[CHECKPOINTER] = checkpointer
                await resources.enter_async_context(_background(checkpointer.run(), "checkpointer"))
            await resources.enter_async_context(
                _background(purge_continuously(committer, pool, clock, settings.purge_interval_seconds), "retention")
            )
            await resources.enter_async_context(
                _background(_verify_continuously(pool, settings.verify_interval_seconds, clock, process_id), "verifier")
            )
            await resources.enter_async_context(_background(
                _watch_receipt_key(registry, hub.receipt_key, clock, settings.receipt_key_check_seconds), "receipt-key-watch"
            ))
            yield

    return context


def payload_keys_for(config: GatewayConfig) -> PayloadKeys:
    """The configuration's payload key ring; in test mode, a missing or empty key directory gets a fresh key."""
    folder = config.payload_keys_dir
    if config.mode == "test" and not os.environ.get(KEYS_VARIABLE) and not any(folder.glob("*.key")):
        key_id = generate_key(folder)
        _log.info("payload_key_generated", key_id=key_id, folder=str(folder))
    return load_keys(folder)


async def _seal_clear_payloads(pool: asyncpg.Pool, keys: PayloadKeys) -> None:
    """Seal rows stored in clear before payload encryption, then rewrite the table so that their old tuples are gone."""
    if not await pool.fetchval("SELECT EXISTS (SELECT 1 FROM messages WHERE payload_key IS NULL AND compact IS NOT NULL)"):
        return
    sealed = await store.reseal_messages(pool, keys, clear_only=True)
    await pool.execute("VACUUM FULL messages")
    _log.info("clear_payloads_sealed", messages=sealed)


@contextlib.asynccontextmanager
async def _background(coroutine: Any, name: str) -> AsyncIterator[None]:
    """Run `coroutine` as a task for the life of the app; cancel it (and wait) at cleanup."""
    task = asyncio.get_running_loop().create_task(coroutine, name=name)
    try:
        yield
    finally:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        except Exception as error:  # noqa: BLE001 - reported, cleanup goes on
            _log.error("background_task_failed", task=name, error=type(error).__name__)


async def _verify_continuously(pool: asyncpg.Pool, every_seconds: float, clock: Callable[[], Any], process_id: str) -> None:
    """Verify the whole ledger every `every_seconds` and store the result (§13.6); the first run after one period.

    Every process runs this loop; one whose period comes while another process's verification is
    younger than the period skips its turn, so N processes do not verify N times.
    """
    while True:
        await asyncio.sleep(every_seconds)  # a period, not synchronisation
        try:
            latest = await checkpoints.latest_verification(pool)
            if latest is not None and (clock() - latest["started_at"]).total_seconds() < every_seconds * 0.9:
                continue
            await verify_and_record(pool, clock, process_id)
        except Exception as error:  # noqa: BLE001 - the next period tries again
            _log.warning("ledger_verification_failed", error=type(error).__name__)


async def verify_and_record(pool: asyncpg.Pool, clock: Callable[[], Any], by_whom: str) -> Any:
    """One full verification of the ledger (gateway/ledger/verify.py), stored for the console and metrics."""
    started = clock()
    async with pool.acquire() as connection:
        report = await verify_ledger(connection)
    finding = report.findings[0] if report.findings else None
    await checkpoints.record_verification(
        pool, started, report.seconds, report.size, finding.index if finding else None,
        f"{finding.code}: {finding.message}" if finding else None, by_whom
    )
    (_log.info if finding is None else _log.error)("ledger_verified", size=report.size, intact=finding is None)
    return report


async def _end_long_polls(app: web.Application) -> None:
    """At shutdown, answer every long poll now (empty) and stop the push worker's waits (PROTO-12.6-1)."""
    app[WAKEUPS].close()


async def _forget_used_request_proofs(pool: asyncpg.Pool, clock: Callable[[], Any], every_seconds: float = 60.0) -> None:
    """Delete request-proof ids past their replay window (2 x 300 s), once a minute, for ever."""
    while True:
        await asyncio.sleep(every_seconds)
        try:
            removed = await store.forget_expired_request_proofs(pool, clock())
            if removed:
                _log.info("request_proof_ids_forgotten", count=removed)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            _log.warning("request_proof_sweep_failed", error=type(error).__name__)


async def _no_session_reset(connection: asyncpg.Connection) -> None:
    """Release a pooled connection without asyncpg's reset query (a round trip per acquire).

    asyncpg still rolls back an open transaction and drops listeners on release; the hub
    sets no session state on pooled connections (advisory locks are released where taken,
    the registry's LISTEN connection is held, not pooled), so nothing else needs resetting.
    """


class HubStartError(Exception):
    """The hub cannot serve as configured; the message says what to change (`gateway serve` prints it, exit 1)."""


async def _settle_mode(pool: asyncpg.Pool, mode: str, record: bool) -> None:
    try:
        async with pool.acquire() as connection:
            await settle_mode(connection, mode, record)
    except ModeConflict as conflict:
        raise HubStartError(str(conflict)) from None


def _check_receipt_key(trust: TrustList, receipt_key: PrivateKey, now: datetime) -> None:
    """Refuse to start with a receipt key the registry does not hold as the hub's, valid now: every receipt,
    attestation and trust list it signed would be refused by every consumer (§9.1, §10.3)."""
    try:
        record = check_hub_receipt_key(trust, receipt_key)
        record.check_valid_at(now)
    except ValueError as error:
        reason = str(error)
    except ProtocolError as refusal:  # revoked, expired, not yet valid
        reason = f"the key registry holds {receipt_key.kid} as {refusal.code.removeprefix('key-').replace('-', ' ')}"
    else:
        return
    raise HubStartError(
        f"hub.receipt_key ({receipt_key.kid}) cannot sign for the hub: {reason}. Point hub.receipt_key at the hub "
        "receipt key the registry holds (`gateway keys list`), or register this one (`gateway keys add`, "
        "`gateway keys rotate`; docs/operations.md)"
    )


def _warn_if_receipt_key_unusable(trust: TrustList, receipt_key: PrivateKey, now: datetime) -> None:
    """After a registry change while serving: if the hub's receipt key was revoked, retired or replaced, every receipt,
    attestation and trust list this process signs from now on is refused by every consumer; say so loudly."""
    try:
        _check_receipt_key(trust, receipt_key, now)
    except HubStartError as error:
        _log.error("hub_receipt_key_unusable", kid=receipt_key.kid, reason=str(error))


RECEIPT_KEY_WARNING = timedelta(days=30)
"""How long before its `not_after` the hub starts warning that its receipt key ends (PROTO-10.3-6: well before)."""


async def _watch_receipt_key(registry: Registry, receipt_key: PrivateKey, clock: Callable[[], datetime],
                             every_seconds: float) -> None:
    """Every `every_seconds`, the hub's receipt key against the clock: an error each time once it can no longer sign
    (it reached its `not_after`, or the registry no longer holds it as the hub's), and a warning once a day from
    RECEIPT_KEY_WARNING before its `not_after`. A registry change is checked as it loads
    (`_warn_if_receipt_key_unusable`); this is for the key that simply runs out while the hub serves, which every
    consumer then refuses (§9.1, §10.3) and which the start-up check would only find at the next start."""
    warned_on = None
    while True:
        await asyncio.sleep(every_seconds)  # a period, not synchronisation
        warned_on = check_receipt_key_in_time(registry.current(), receipt_key, clock(), warned_on)


def check_receipt_key_in_time(trust: TrustList, receipt_key: PrivateKey, now: datetime, warned_on: Any) -> Any:
    """One check of `_watch_receipt_key`: log what is due, and return the day of the last warning (`warned_on`, a
    `date` or None), so that the warning comes once a day."""
    try:
        _check_receipt_key(trust, receipt_key, now)
    except HubStartError as error:
        _log.error("hub_receipt_key_unusable", kid=receipt_key.kid, reason=str(error))
        return warned_on
    not_after = trust.keys[receipt_key.kid].not_after
    left = not_after - now
    if left > RECEIPT_KEY_WARNING or warned_on == now.date():
        return warned_on
    _log.warning("hub_receipt_key_expiring", kid=receipt_key.kid, days_left=round(left.total_seconds() / 86400, 1),
                 not_after=format_timestamp(not_after))
    return now.date()


async def _import_initial_trust_list(pool: asyncpg.Pool, committer: GroupCommitter, settings: HubSettings, clock: Any) -> None:
    """On first start, register the configured trust list (later changes go through `gateway keys`)."""
    if await read_trust_list(pool, settings.mode) is not None:
        return
    trust = load_trust_list(settings.trust_list_file.read_bytes(), require_production=settings.mode == "production")

    async def work(connection: asyncpg.Connection, appender: LedgerAppender) -> int:
        await connection.execute("LOCK TABLE keys IN EXCLUSIVE MODE")
        if await connection.fetchval("SELECT count(*) FROM keys"):
            return 0
        return await import_trust_list(connection, appender, trust, clock())

    added = await committer.run(work)
    _log.info("trust_list_imported", keys_added=added)


@web.middleware
async def _problems(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    metrics = request.app[METRICS]
    try:
        response = await handler(request)
    except ProtocolError as refusal:
        metrics.refused(refusal.code)
        response = problem_response(refusal, request.rel_url.raw_path)
        if refusal.code in _UNREAD_BODY:
            response.force_close()
        return response
    except web.HTTPRequestEntityTooLarge:
        metrics.refused("message-too-large")
        return problem_response(ProtocolError("message-too-large"), request.rel_url.raw_path)
    except web.HTTPNotFound:
        return problem_response(ProtocolError("not-found"), request.rel_url.raw_path)
    except web.HTTPMethodNotAllowed:
        return problem_response(ProtocolError("method-not-allowed"), request.rel_url.raw_path)
    except Exception as error:  # noqa: BLE001 - the last line of defence: a problem, never a traceback
        code = "unavailable" if database_unavailable(error) else "internal-error"
        _log.error(code.replace("-", "_"), path=request.path, error=type(error).__name__)
        metrics.refused(code)
        return problem_response(ProtocolError(code, retry_after_seconds=1 if code == "unavailable" else None), request.rel_url.raw_path)
    return response


@web.middleware
async def _authorize(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Enforce the authorisation matrix before any handler runs: a route it does not name does not exist."""
    resource = request.match_info.route.resource
    if resource is None:  # no route matched: the router's own not-found or method-not-allowed
        return await handler(request)
    access = access_of(request.app[ROUTE_ACCESS], request.method, resource.canonical)
    if access is None:
        raise ProtocolError("not-found", "No such resource for this caller")
    if access is Access.JURISDICTION:
        body = None
        if request.method == "POST":
            if request.content_type != JOSE:
                raise ProtocolError("media-type-unsupported", f"Send the compact JWS as {JOSE}")
            body = await read_body(request)
        request[CALLER] = await authenticate(request, body)
    return await handler(request)


_UNREAD_BODY = frozenset({"message-too-large", "request-timeout"})
"""Refusals answered before the whole body was read: the connection is closed after the answer."""


@web.middleware
async def _address_limits(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Every request spends its network address's budget first (PROTO-12.8-4)."""
    with request.app[ADDRESS_LIMITS].admit(f"address:{request.remote}"):
        return await handler(request)


def _answer(document: Any, status: int = 200) -> web.Response:
    """A JSON answer of the API, as `web.json_response` gives it, written by orjson: an inbox answer of 12
    deliveries took 300 µs by `json.dumps` on a slow machine, and 14 µs so (docs/performance.md, "Fourteenth pass")."""
    return web.Response(status=status, body=dumps_bytes(document), content_type="application/json", charset="utf-8")


def problem_response(refusal: ProtocolError, instance: str) -> web.Response:
    response = web.Response(
        status=refusal.entry.status,
        body=dumps_bytes(refusal.problem(instance=instance)),
        content_type=PROBLEM,
    )
    if refusal.retry_after_seconds is not None:
        response.headers["Retry-After"] = str(refusal.retry_after_seconds)
    return response


async def read_body(request: web.Request, limit: int | None = None, max_lines: int | None = None) -> bytes:
    """The request body, at most `limit` bytes (default: the message size limit) and, for a bulk body, at most
    `max_lines` lines: refused before reading when its declared length is over the limit (PROTO-12.2-1,
    PROTO-12.9-3), as soon as more arrives than either limit allows, and when it does not arrive within the body
    deadline (PROTO-12.8-5)."""
    settings = request.app[SETTINGS]
    if request.content_length is not None and request.content_length > (settings.max_message_bytes if limit is None else limit):
        raise ProtocolError("message-too-large")
    # One message: aiohttp's own read, capped by the app's client_max_size and kept for the handler (`_authorize`
    # reads the body it authenticates); a bulk body: read here against its own, larger cap.
    reading = request.read() if limit is None else _read_at_most(request, limit, max_lines)
    try:
        return await asyncio.wait_for(reading, settings.body_read_seconds)
    except TimeoutError:
        raise ProtocolError("request-timeout", where="body") from None


async def _read_at_most(request: web.Request, limit: int, max_lines: int | None) -> bytes:
    """The body, refused with `message-too-large` as soon as it is over `limit` bytes or starts a line past `max_lines`
    (a byte after the line feed that ends line `max_lines`), so that the rest is never read (PROTO-12.9-3)."""
    chunks, size, ended = [], 0, 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise ProtocolError("message-too-large")
        if max_lines is not None:
            ended = _lines_ended(chunk, ended, max_lines)
        chunks.append(chunk)
    return b"".join(chunks)


def _lines_ended(chunk: bytes, ended: int, max_lines: int) -> int:
    """The lines ended (line feeds seen) after `chunk`, given `ended` before it; `message-too-large` if the chunk holds
    a byte of line `max_lines` + 1."""
    if ended == max_lines:
        if chunk:
            raise ProtocolError("message-too-large", f"A bulk body holds at most {max_lines} lines")
        return ended
    feeds = chunk.count(b"\n")
    if ended + feeds < max_lines:
        return ended + feeds
    position = -1
    for _ in range(max_lines - ended):
        position = chunk.index(b"\n", position + 1)
    if position + 1 < len(chunk):
        raise ProtocolError("message-too-large", f"A bulk body holds at most {max_lines} lines")
    return max_lines


def transport_party(request: web.Request) -> str | None:
    """With mutual TLS on, the jurisdiction the client certificate names (PROTO-12.8-2); None when it is off."""
    if not request.app[SETTINGS].client_certificates:
        return None
    party = peer_party(request.transport)
    if party is None or party == HUB_PARTY:
        raise ProtocolError("client-certificate-required")
    return party


def _caller(party: str | None, owner: str, request: web.Request) -> str:
    """Whose budget an authenticated request spends: the certificate's jurisdiction, else the signer at its address
    (so that a receiver replaying another jurisdiction's signed bytes spends only its own address's budget)."""
    return party if party is not None else f"{owner}@{request.remote}"


async def post_message(request: web.Request) -> web.Response:
    """POST /v1/messages: a compact JWS in, 202 and the hub receipt out (§12)."""
    if request.content_type != JOSE:
        raise ProtocolError("media-type-unsupported", f"Send the compact JWS as {JOSE}")
    party = transport_party(request)
    body = await read_body(request)
    limits = request.app[CALLER_LIMITS]
    acceptance = await request.app[HUB].accept(
        body, sent_by=party, admit=lambda owner: limits.admit(_caller(party, owner, request))
    )
    request.app[METRICS].accepted(acceptance.replayed)
    return _answer(
        {"message_id": acceptance.message_id, "hub_receipt": acceptance.hub_receipt.decode("ascii"), "replayed": acceptance.replayed},
        status=202,
    )


BULK = "application/vnd.gba.jose-lines"
NDJSON = "application/x-ndjson"
BULK_PATH = "/v1/messages/bulk"


async def post_messages_bulk(request: web.Request) -> web.Response:
    """POST /v1/messages/bulk: compact JWSs one a line in, one result a line out, in order (§12.9)."""
    if request.content_type != BULK:
        raise ProtocolError("media-type-unsupported", f"Send the messages as {BULK}, one compact JWS a line")
    party = transport_party(request)
    settings = request.app[SETTINGS]
    lines = bulk_lines(await read_body(request, settings.max_request_bytes, settings.bulk_max_lines), settings.bulk_max_lines)
    limits, metrics = request.app[CALLER_LIMITS], request.app[METRICS]
    results = await request.app[HUB].accept_many(
        lines, sent_by=party, take=lambda owner: limits.take(_caller(party, owner, request)), max_bytes=settings.max_message_bytes
    )
    out = []
    for number, result in enumerate(results, 1):
        if isinstance(result, ProtocolError):
            metrics.refused(result.code)
            document: dict[str, Any] = {"line": number, "status": result.entry.status,
                                        "problem": result.problem(instance=f"{request.rel_url.raw_path}#line={number}")}
        else:
            metrics.accepted(result.replayed)
            document = {"line": number, "status": 202, "message_id": result.message_id,
                        "hub_receipt": result.hub_receipt.decode("ascii"), "replayed": result.replayed}
        out.append(dumps_bytes(document))
        out.append(b"\n")
    return web.Response(status=200, body=b"".join(out), content_type=NDJSON)


def bulk_lines(body: bytes, max_lines: int) -> list[bytes]:
    """The lines of a bulk body (PROTO-12.9-3): each ended by a line feed, the last one's optional."""
    if not body:
        raise ProtocolError("jws-malformed", "A bulk body holds one compact JWS a line; this one holds none", where="body")
    lines = body.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    if len(lines) > max_lines:
        raise ProtocolError("message-too-large", f"A bulk body holds at most {max_lines} lines")
    return lines


REQUEST_PROOF_HEADER = "GBA-Request-Proof"


async def authenticate(request: web.Request, body: bytes | None = None) -> VerifiedProof:
    """The caller of a non-public request, from its request proof (§9.5); its `jti` is used up here.

    With mutual TLS the proof's signer must be the certificate's jurisdiction (PROTO-12.8-3); the
    request spends the caller's budget (PROTO-12.8-4).
    """
    hub, settings = request.app[HUB], request.app[SETTINGS]
    party = transport_party(request)
    now = hub.now()
    proof = check_request_proof(
        request.headers.get(REQUEST_PROOF_HEADER),
        hub.trust(),
        method=request.method,
        url=request.rel_url.raw_path,
        body=body,
        public_base_url=settings.public_base_url,
        now=now,
    )
    if party is not None and proof.owner != party:
        raise ProtocolError("client-certificate-mismatch", where="kid")
    request.app[CALLER_LIMITS].take(_caller(party, proof.owner, request))
    expires = datetime.fromtimestamp(proof.iat, timezone.utc) + timedelta(seconds=2 * WINDOW_SECONDS)
    if not await store.remember_request_proof(request.app[POOL], proof.jti, proof.kid, expires):
        raise ProtocolError("request-proof-replayed", where="/jti")
    return proof


async def get_message(request: web.Request) -> web.Response:
    """GET /v1/messages/{id}: the sender's view of its own message; anyone else gets 404 (§12)."""
    caller = request[CALLER]
    message_id = request.match_info["message_id"]
    stored = await store.message_by_id(request.app[POOL], message_id) if UUID7.fullmatch(message_id) else None
    if stored is None or stored.sender != caller.owner:
        raise ProtocolError("not-found", "No message with this id was sent by the caller")
    return _answer(
        {
            "message_id": stored.id,
            "status": stored.status,
            "type": stored.type,
            "to": stored.receiver,
            "case": stored.case,
            "message_digest": stored.digest,
            "ledger_index": stored.ledger_index,
            "accepted_at": format_timestamp(stored.accepted_at),
            "hub_receipt": stored.hub_receipt.decode("ascii"),
            "receiver_receipt": stored.receiver_receipt.decode("ascii") if stored.receiver_receipt else None,
        }
    )


_INBOX_LIMIT = 500


async def get_inbox(request: web.Request) -> web.Response:
    """GET /v1/inbox: the caller's ready deliveries, long-polled, and its cursor (§12.6)."""
    caller = request[CALLER]
    settings, hub = request.app[SETTINGS], request.app[HUB]
    after = _query_integer(request, "after", -1, -1, 2**62)
    wait = _query_integer(request, "wait", 0, 0, settings.long_poll_seconds)
    limit = _query_integer(request, "limit", 50, 1, _INBOX_LIMIT)
    pool, wakeups = request.app[POOL], request.app[WAKEUPS]
    if after >= 0 and await outbox.receipts_to_acknowledge(pool, caller.owner, after):
        await request.app[COMMITTER].run(lambda connection, appender: _acknowledge_receipts(connection, appender, caller.owner, after, hub.now()))

    async def claim() -> list[outbox.ClaimedDelivery]:
        with STAGE_TIMES.timed("inbox_claim"):
            try:
                return await outbox.claim_for_inbox(
                    pool, caller.owner, f"inbox:{caller.owner}", request.app[PROCESS_ID], hub.now(), settings.delivery.lease_seconds,
                    limit, hub.payload_keys, settings.delivery.retry_window_seconds,
                )
            except PayloadKeyError as error:
                # This process cannot open a stored message (its key not copied here, or the row altered): another
                # process may, so the pull is unavailable here, not wrong (docs/operations.md).
                _log.error("payload_unopenable", receiver=caller.owner, error=str(error))
                raise ProtocolError("unavailable", retry_after_seconds=1) from None

    with request.app[LONG_POLLS].admit(caller.owner):
        claimed = await wakeups.long_poll(caller.owner, claim, wait, stop=lambda: _client_gone(request))
    if claimed and settings.delivery_kill_point is not None:
        await settings.delivery_kill_point("pull-leased")
    with STAGE_TIMES.timed("attest", count=len(claimed)):
        deliveries = [delivery_of(item, hub.receipt_key, hub.local_view(item.receiver, item.compact)).to_document() for item in claimed]
    if claimed and _client_gone(request):
        # Nobody will read this answer: give the deliveries back, so that no receipt counts as returned (and is then
        # acknowledged by a later cursor, PROTO-12.6-2) and no message waits out a lease for nothing. Asked after the
        # attestations, which take a while for a large page, so that a client gone meanwhile is seen too.
        await outbox.release_inbox_claim(pool, [item.message_id for item in claimed], f"inbox:{caller.owner}")
        claimed, deliveries = [], []
    cursor = max((item.ledger_index for item in claimed), default=after)
    return _answer({"deliveries": deliveries, "cursor": cursor})


def _client_gone(request: web.Request) -> bool:
    """Whether the client closed its connection (a long poll it gave up on)."""
    return request.transport is None or request.transport.is_closing()


async def _acknowledge_receipts(connection: asyncpg.Connection, appender: LedgerAppender, receiver: str, cursor: int, now: datetime) -> None:
    for message_id, attempts in await outbox.acknowledge_fetched_receipts(connection, receiver, cursor):
        await appender.add(delivered_entry(message_id, receiver, attempts, now))


_INTEGER = re.compile(r"-?[0-9]{1,18}")
"""A query's integer: ASCII digits only (`str.isdigit` takes others, and `int` takes some of those), at most 18 of them."""


def _query_integer(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    values = request.query.getall(name, [])
    if not values:
        return default
    if len(values) > 1 or not _INTEGER.fullmatch(values[0]) or not low <= int(values[0]) <= high:
        raise ProtocolError("query-invalid", f"{name} must be one integer from {low} to {high}", where=name)
    return int(values[0])


async def post_receipt(request: web.Request) -> web.Response:
    """POST /v1/receipts: a pulling receiver's receipt (§12.6); answered as POST /v1/messages."""
    body, caller = await request.read(), request[CALLER]  # read, checked and authenticated by `_authorize`
    acceptance = await request.app[HUB].accept(body, receipt_from=caller.owner)
    request.app[METRICS].accepted(acceptance.replayed)
    return _answer(
        {"message_id": acceptance.message_id, "hub_receipt": acceptance.hub_receipt.decode("ascii"), "replayed": acceptance.replayed},
        status=202,
    )


async def get_about(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    return _answer({"name": "GBA Case Gateway", "version": __version__, "protocol": 1, "mode": settings.mode})


async def get_trust_list(request: web.Request) -> web.Response:
    """GET /v1/trust-list: every party's keys, signed by the hub (public; docs/protocol.md §10.3)."""
    return web.Response(body=request.app[HUB].signed_trust_list(), content_type=JOSE)


async def get_health(request: web.Request) -> web.Response:
    return _answer({"status": "ok"})


async def get_ready(request: web.Request) -> web.Response:
    if not request.app[REGISTRY].listening:
        raise ProtocolError("unavailable", "The hub is not listening for key registry changes")
    await request.app[POOL].fetchval("SELECT 1")
    return _answer({"status": "ready"})


async def get_metrics(request: web.Request) -> web.Response:
    text = await request.app[METRICS].render(request.app[POOL], request.app[HUB].now(), request.app[SETTINGS].origin)
    return web.Response(text=text, content_type="text/plain", charset="utf-8")


async def get_openapi(request: web.Request) -> web.Response:
    """GET /openapi.json: the OpenAPI 3.1 description of this binding, naming this hub's public base URL (§12.1)."""
    return web.Response(body=document_bytes(request.app[SETTINGS].public_base_url), content_type="application/json")


# -- the ledger (§13.4-§13.6) --------------------------------------------------------------

TEXT = "text/plain"


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


async def get_checkpoint(request: web.Request) -> web.Response:
    """GET /v1/ledger/checkpoint[?size=N]: the latest (or the given) signed checkpoint with its cosignatures (public)."""
    pool, origin = request.app[POOL], request.app[SETTINGS].origin
    size = _query_integer(request, "size", -1, 0, 2**62)
    found = await (checkpoints.latest_checkpoint(pool, origin) if size < 0 else checkpoints.checkpoint_at(pool, origin, size))
    if found is None:
        raise ProtocolError("not-found", "No checkpoint of this size has been signed")
    lines = [line for _, line in await checkpoints.cosignatures(pool, origin, found.size)]
    return web.Response(text=published_note(found, lines), content_type=TEXT, charset="utf-8")


async def get_consistency_proof(request: web.Request) -> web.Response:
    """GET /v1/ledger/proof/consistency?from=A&to=B: RFC 9162 consistency proof between two tree heads (public)."""
    first = _query_integer(request, "from", -1, 1, 2**62)
    second = _query_integer(request, "to", -1, 1, 2**62)
    if first < 0 or second < first:
        raise ProtocolError("query-invalid", "from and to are tree sizes with 1 <= from <= to", where="from")
    try:
        proof = await consistency_proof(request.app[POOL], first, second)
    except NotAHead:
        raise ProtocolError("not-found", "Both sizes must be tree heads of this ledger") from None
    return _answer({"from": first, "to": second, "proof": [_b64(node) for node in proof.hashes]})


async def get_entries(request: web.Request) -> web.Response:
    """GET /v1/ledger/entries?start=I&limit=N: the entries from index I the caller is a party to (§13.6)."""
    caller = request[CALLER]
    start = _query_integer(request, "start", 0, 0, 2**62)
    limit = _query_integer(request, "limit", 100, 1, 1000)
    pool = request.app[POOL]
    rows = await pool.fetch("SELECT idx, entry FROM ledger_entries WHERE idx >= $1 ORDER BY idx LIMIT $2", start, limit)
    parties = await scope.parties_of(pool, [row["entry"] for row in rows])
    visible = [
        {"index": row["idx"], "entry": _b64(row["entry"])}
        for row, who in zip(rows, parties)
        if scope.may_see(caller.owner, who)
    ]
    following = rows[-1]["idx"] + 1 if len(rows) == limit else None
    return _answer({"entries": visible, "next": following})


async def get_inclusion_proof(request: web.Request) -> web.Response:
    """GET /v1/ledger/proof/inclusion?index=I&size=N: an entry the caller is a party to and its proof (§13.6)."""
    caller = request[CALLER]
    index = _query_integer(request, "index", -1, 0, 2**62)
    size = _query_integer(request, "size", -1, 1, 2**62)
    if index < 0 or size <= index:
        raise ProtocolError("query-invalid", "index and size with 0 <= index < size are required", where="index")
    pool = request.app[POOL]
    entry = await pool.fetchval("SELECT entry FROM ledger_entries WHERE idx = $1", index)
    if entry is None or not scope.may_see(caller.owner, (await scope.parties_of(pool, [entry]))[0]):
        raise ProtocolError("not-found", "No entry with this index concerns the caller")
    try:
        proof = await inclusion_proof(pool, index, size)
    except NotAHead:
        raise ProtocolError("not-found", "The size must be a tree head of this ledger") from None
    return _answer(
        {"index": index, "size": size, "entry": _b64(entry), "root": _b64(proof.root), "proof": [_b64(node) for node in proof.hashes]}
    )

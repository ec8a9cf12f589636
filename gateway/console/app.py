"""The console's pages: a sub-application under /console of the hub's app (docs/console.md).

Handlers stay thin: they read the session the middleware loaded, call gateway/console
(queries, accounts, sessions, payloads, persons) and render a template. Every page is
plain HTML; the one script is static/verify.js, which checks an entry's proof in the
browser. Personal data never reaches a log line: logs name the officer's pseudonym and ids.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import hashlib
import io
import json
import re
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp_jinja2
import jinja2
import structlog
from aiohttp import web

from gateway.console import accounts, persons, queries, sessions
from gateway.console.i18n import LANGUAGES, Words, language_of
from gateway.console.payloads import read_payload
from gateway.console.settings import ConsoleRuntime
from gateway.config import is_loopback
from gateway.hub.authorization import Access, access_of
from gateway.hub.http import COMMITTER, HUB, POOL, ROUTE_ACCESS, SETTINGS, verify_and_record
from gateway.hub.witnessing import published_note
from gateway.keyfiles import read_private_key
from gateway.ledger import bundle, checkpoints, notes, scope
from gateway.ledger.entries import LedgerEntry
from gateway.ledger.tree import inclusion_proof
from gateway.protocol.timestamps import format_timestamp

_log = structlog.get_logger(__name__)

PREFIX = "/console"
SESSION_COOKIE = "gba_console"
LOGIN_COOKIE = "gba_console_login"
_HERE = Path(__file__).parent

WORDS = web.RequestKey("console_words", Words)
SESSION = web.RequestKey("console_session", sessions.Session)
CLOCK = web.AppKey("console_clock", Callable)
RUNTIME = web.AppKey("console_runtime", ConsoleRuntime)
@dataclass(frozen=True, slots=True)
class VerifierKeys:
    """What the entry page verifies with: the configuration's log key, witness keys and quorum (PROTO-13.5-3)."""

    origin: str
    log: notes.NoteKey | None
    witnesses: tuple[notes.NoteKey, ...]
    quorum: int


KEYS = web.AppKey("console_keys", VerifierKeys)
INDEXER = web.AppKey("console_person_indexer", dict)
SIGN_IN_TURNS = web.AppKey("console_sign_in_turns", weakref.WeakValueDictionary)
"""Network address -> the lock its sign-ins take turns on, while any of them holds it."""

ROUTES = {
    ("GET", "/console/static"): Access.CONSOLE,
    ("GET", "/console/login"): Access.CONSOLE,
    ("POST", "/console/login"): Access.CONSOLE,
    ("GET", "/console/"): Access.OFFICER,
    ("POST", "/console/logout"): Access.OFFICER,
    ("POST", "/console/language"): Access.OFFICER,
    ("GET", "/console/dashboard"): Access.OFFICER,
    ("POST", "/console/verify"): Access.AUDITOR,
    ("GET", "/console/search"): Access.OFFICER,
    ("GET", "/console/export.csv"): Access.OFFICER,
    ("GET", "/console/cases/{case}"): Access.OFFICER,
    ("GET", "/console/cases/{case}/bundle.json"): Access.OFFICER,
    ("GET", "/console/entries/{index}"): Access.OFFICER,
    ("GET", "/console/entries/{index}/proof.json"): Access.OFFICER,
    ("GET", "/console/entries/{index}/bundle.json"): Access.OFFICER,
    ("GET", "/console/checkpoints"): Access.OFFICER,
    ("POST", "/console/messages/{message_id}/payload"): Access.OFFICER,
    ("GET", "/console/persons"): Access.AUDITOR,
    ("POST", "/console/persons"): Access.AUDITOR,
}
"""The console's rows of the authorisation matrix (gateway/hub/authorization.py): the sign-in page and assets
are open; everything else needs a session, and `AUDITOR` rows an auditor. The payload right is checked on top,
by the handlers that show payloads."""
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_PARTY = re.compile(r"[A-Z]{2}(-[A-Z0-9]{1,3})?")
_WORD = re.compile(r"[a-z0-9][a-z0-9.-]{0,63}")
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


class BadInput(ValueError):
    """A query or form value the console refuses; the message says which and why (never echoing it)."""


def mount_console(app: web.Application, clock: Callable[[], datetime]) -> None:
    """Serve the console under /console of the hub's `app`, with the app's clock."""
    console = web.Application(middlewares=[_guard])
    console[CLOCK] = clock
    console[RUNTIME] = app[SETTINGS].console
    console[KEYS] = _configured_keys(app[SETTINGS])
    console[INDEXER] = {}
    console[SIGN_IN_TURNS] = weakref.WeakValueDictionary()
    aiohttp_jinja2.setup(
        console, loader=jinja2.FileSystemLoader(_HERE / "templates"), autoescape=jinja2.select_autoescape(default=True)
    )
    console.router.add_static("/static/", _HERE / "static", name="static")
    console.router.add_get("/", _home)
    console.router.add_get("/login", login_form)
    console.router.add_post("/login", login)
    console.router.add_post("/logout", logout)
    console.router.add_post("/language", change_language)
    console.router.add_get("/dashboard", dashboard)
    console.router.add_post("/verify", verify_now)
    console.router.add_get("/search", search)
    console.router.add_get("/export.csv", export_csv)
    console.router.add_get("/cases/{case}", case_timeline)
    console.router.add_get("/cases/{case}/bundle.json", case_bundle)
    console.router.add_get("/entries/{index}", entry_page)
    console.router.add_get("/entries/{index}/proof.json", entry_proof)
    console.router.add_get("/entries/{index}/bundle.json", entry_bundle)
    console.router.add_get("/checkpoints", checkpoint_list)
    console.router.add_post("/messages/{message_id}/payload", view_payload)
    console.router.add_get("/persons", persons_form)
    console.router.add_post("/persons", find_person)
    console.on_startup.append(lambda console: _start_person_indexer(app, console))
    console.on_shutdown.append(_stop_person_indexer)
    app.add_subapp(PREFIX, console)
    app[ROUTE_ACCESS].update(ROUTES)


async def _start_person_indexer(hub: web.Application, console: web.Application) -> None:
    """Index persons in the background (gateway/console/persons.py) once the hub's pool exists."""
    console[INDEXER]["task"] = asyncio.get_running_loop().create_task(
        persons.keep_indexing(hub[POOL], console[RUNTIME], hub[HUB].payload_keys), name="person-indexer"
    )


async def _stop_person_indexer(console: web.Application) -> None:
    task = console[INDEXER].pop("task")
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    except Exception as error:  # noqa: BLE001 - reported, shutdown goes on
        _log.error("person_indexer_failed", error=type(error).__name__)


def _configured_keys(settings: Any) -> VerifierKeys:
    """The log key and witness keys this console verifies with (from the hub's configuration), and the quorum."""
    log_key = None
    if settings.checkpoint_key_file is not None:
        log_key = notes.note_key(settings.origin, read_private_key(settings.checkpoint_key_file).public())
    return VerifierKeys(settings.origin, log_key, tuple(witness.key for witness in settings.witnesses), settings.quorum)


# --- the guard: secure context, session, CSRF, headers, error pages ---------------------


def _now(request: web.Request) -> datetime:
    return request.app[CLOCK]()


def _pool(request: web.Request) -> Any:
    return request.config_dict[POOL]


def _secure_context(request: web.Request) -> bool:
    host = (request.url.host or "").strip("[]")
    return request.secure or is_loopback(host)


@web.middleware
async def _guard(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    path = request.path[len(PREFIX):] or "/"
    request[WORDS] = Words(language_of(request.query.get("lang")))
    try:
        if not _secure_context(request):
            raise _Page(403, "insecure")
        resource = request.match_info.route.resource
        access = access_of(request.config_dict[ROUTE_ACCESS], request.method, resource.canonical) if resource else None
        if access in (Access.OFFICER, Access.AUDITOR):
            runtime = request.app[RUNTIME]
            session = await sessions.load_session(
                _pool(request), request.cookies.get(SESSION_COOKIE), _now(request),
                runtime.session_idle_seconds, runtime.session_max_seconds,
            )
            if session is None:
                if path.endswith(".json"):
                    raise _Page(401, "expired")
                raise web.HTTPSeeOther(f"{PREFIX}/login?expired=1")
            request[SESSION] = session
            request[WORDS] = Words(session.language, session.officer.time_zone)
            if access is Access.AUDITOR and not session.officer.is_auditor:
                raise _Page(403, "forbidden")
            if request.method == "POST":
                form = await request.post()
                if not sessions.same_token(session.csrf, form.get("csrf")):
                    _log.warning("console_csrf_refused", officer=session.officer.pseudonym, path=request.path)
                    raise _Page(403, "csrf")
        response = await handler(request)
    except _Page as page:
        response = _render(request, "message.html", {"message": request[WORDS](page.key, **page.values)}, status=page.status)
    except BadInput as error:
        response = _render(request, "message.html", {"message": request[WORDS]("bad_input", reason=str(error))}, status=400)
    except web.HTTPNotFound:
        response = _render(request, "message.html", {"message": request[WORDS]("not_found")}, status=404)
    except web.HTTPMethodNotAllowed:
        response = _render(request, "message.html", {"message": request[WORDS]("not_found")}, status=405)
    except web.HTTPRedirection as redirect:
        response = web.Response(status=redirect.status, headers={"Location": redirect.location})
    for name, value in _SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


class _Page(Exception):
    """Answer with the message page: HTTP `status` and catalogue `key`."""

    def __init__(self, status: int, key: str, **values: Any) -> None:
        super().__init__(key)
        self.status, self.key, self.values = status, key, values


def _render(request: web.Request, template: str, context: dict[str, Any], status: int = 200) -> web.Response:
    session = request.get(SESSION)
    words = request[WORDS]
    base = {
        "t": words, "session": session, "officer": session.officer if session else None, "languages": LANGUAGES,
        "language": words.language, "here": request.path_qs, "prefix": PREFIX,
    }
    return aiohttp_jinja2.render_template(template, request, {**base, **context}, status=status)


def _set_cookie(request: web.Request, response: web.StreamResponse, name: str, value: str, max_age: int | None = None) -> None:
    response.set_cookie(name, value, path=PREFIX, httponly=True, samesite="Strict", secure=request.secure, max_age=max_age)


def _officer(request: web.Request) -> accounts.Officer:
    return request[SESSION].officer


# --- signing in and out ------------------------------------------------------------------


async def _home(request: web.Request) -> web.StreamResponse:
    raise web.HTTPSeeOther(f"{PREFIX}/dashboard")


async def login_form(request: web.Request, notice: str | None = None, status: int = 200) -> web.StreamResponse:
    token = request.cookies.get(LOGIN_COOKIE) or sessions.new_token()
    if notice is None and request.query.get("expired"):
        notice = request[WORDS]("expired")
    response = _render(request, "login.html", {"login_token": token, "notice": notice}, status=status)
    _set_cookie(request, response, LOGIN_COOKIE, token)
    return response


async def login(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    request[WORDS] = Words(language_of(str(form.get("lang", ""))))
    if not sessions.same_token(request.cookies.get(LOGIN_COOKIE), str(form.get("login_token", ""))):
        raise _Page(403, "csrf")
    # A name that cannot be an account's is still tried (as unknown: same cost, same answer), cut to a name's length.
    name = str(form.get("name", "")).strip().lower()[:63]
    password, code = str(form.get("password", ""))[:1024], str(form.get("totp", "")).strip()
    address = request.remote or "unknown"
    pool = _pool(request)
    # One sign-in of an address at a time in this process: each checks the throttle after the one before recorded its
    # failure, so that a burst of guesses sent at once waits like guesses sent one by one (docs/console.md,
    # "Throttling"); the ones over the threshold cost no Argon2 work. No database connection is held while waiting.
    turns = request.app[SIGN_IN_TURNS]
    turn = turns.get(address)
    if turn is None:
        turn = turns[address] = asyncio.Lock()
    async with turn:
        now = _now(request)
        wait = await sessions.seconds_to_wait(pool, name, address, now)
        if wait:
            _log.warning("console_sign_in_throttled", seconds=wait)
            return await login_form(request, request[WORDS]("throttled", seconds=wait), status=429)
        stored = await accounts.credentials(pool, name)
        good_password = await asyncio.to_thread(accounts.password_matches, stored[0] if stored else None, password)
        # The account's count of attempts at the code (docs/console.md, "Throttling"). While it makes the account wait,
        # the answer is the plain failure: a different one would tell a guesser that the password was right.
        attempt = await sessions.claim_code_attempt(pool, name, bool(stored and good_password), now)
        step = accounts.totp_step(stored[1], code, now, stored[2]) if stored and attempt.allowed else None
        if step is None or not await accounts.use_totp_step(pool, name, step):
            await sessions.record_failure(pool, name, address, now)
            # Looked up on every failure, so that starting a wait costs no round trip of its own.
            officer = await accounts.officer_by_name(pool, name)
            if attempt.started_wait and officer is not None:
                # Someone holds this officer's password and is guessing the code: the operator should reset it.
                _log.warning("console_second_factor_failures", officer=officer.pseudonym, seconds=attempt.started_wait)
            _log.info("console_sign_in_failed")
            return await login_form(request, request[WORDS]("login_failed"), status=401)
        await sessions.give_back_code_attempt(pool, name, attempt)
        await sessions.record_success(pool, name, address)
    token, _ = await sessions.create_session(pool, name, request[WORDS].language, now)
    officer = await accounts.officer_by_name(pool, name)
    _log.info("console_signed_in", officer=officer.pseudonym if officer else None)
    response = web.Response(status=303, headers={"Location": f"{PREFIX}/dashboard"})
    _set_cookie(request, response, SESSION_COOKIE, token)
    response.del_cookie(LOGIN_COOKIE, path=PREFIX)
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    await sessions.end_session(_pool(request), request[SESSION])
    _log.info("console_signed_out", officer=_officer(request).pseudonym)
    request.pop(SESSION)
    response = _render(request, "message.html", {"message": request[WORDS]("signed_out")})
    response.del_cookie(SESSION_COOKIE, path=PREFIX)
    return response


async def change_language(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    language = str(form.get("language", ""))
    if language not in LANGUAGES:
        raise BadInput("language must be one of " + ", ".join(LANGUAGES))
    await sessions.set_language(_pool(request), request[SESSION], language)
    target = str(form.get("next", ""))
    raise web.HTTPSeeOther(target if target.startswith(PREFIX + "/") and "//" not in target else f"{PREFIX}/dashboard")


# --- pages -------------------------------------------------------------------------------


async def dashboard(request: web.Request) -> web.StreamResponse:
    data = await queries.dashboard(_pool(request), _officer(request), request.app[KEYS].origin)
    return _render(request, "dashboard.html", {"d": data})


async def verify_now(request: web.Request) -> web.StreamResponse:
    """Run a full verification now and record it, as the scheduled one does (auditors)."""
    officer = _officer(request)
    if not officer.is_auditor:
        raise _Page(403, "forbidden")
    await verify_and_record(_pool(request), request.app[CLOCK], f"console:{officer.pseudonym}")
    raise web.HTTPSeeOther(f"{PREFIX}/dashboard")


def _filters(query: Any) -> queries.SearchFilters:
    def one(name: str, pattern: re.Pattern[str], what: str) -> str | None:
        value = query.get(name, "").strip()
        if not value:
            return None
        if not pattern.fullmatch(value):
            raise BadInput(f"{name} must be {what}")
        return value

    def moment(name: str) -> datetime | None:
        value = query.get(name, "").strip()
        if not value:
            return None
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise BadInput(f"{name} must be a date and time like 2026-11-28T12:00 (UTC unless an offset is given)") from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)

    page = query.get("page", "0")
    if not page.isdigit() or int(page) > 100_000:
        raise BadInput("page must be a whole number")
    return queries.SearchFilters(
        case=one("case", _UUID, "a case id (UUID, lower case)"),
        message_id=one("message", _UUID, "a message id (UUID, lower case)"),
        party=one("party", _PARTY, "a jurisdiction code such as HK"),
        type=one("type", _WORD, "a message type such as referral.submit"),
        state=one("state", _WORD, "a message state such as delivered"),
        since=moment("since"), until=moment("until"),
        code=one("code", _WORD, "a catalogue code such as signature-invalid"),
        page=int(page),
    )


async def search(request: web.Request) -> web.StreamResponse:
    filters = _filters(request.query)
    officer, pool = _officer(request), _pool(request)
    searched = any(request.query.get(name) for name in ("case", "message", "party", "type", "state", "since", "until", "code"))
    messages, refusals = [], []
    if searched and not filters.code:
        messages = await queries.search_messages(pool, officer, filters)
    if searched and (filters.code or not (filters.case or filters.message_id or filters.type or filters.state)):
        refusals = await queries.search_refusals(pool, officer, filters)
    more = len(messages) > queries.PAGE_SIZE or len(refusals) > queries.PAGE_SIZE
    args = {key: value for key, value in request.query.items() if key != "page" and value}
    return _render(request, "search.html", {
        "q": request.query, "searched": searched, "messages": messages[: queries.PAGE_SIZE],
        "refusals": refusals[: queries.PAGE_SIZE], "page": filters.page,
        "next_url": f"{PREFIX}/search?{urlencode({**args, 'page': filters.page + 1})}" if more else None,
        "previous_url": f"{PREFIX}/search?{urlencode({**args, 'page': filters.page - 1})}" if filters.page else None,
        "csv_url": f"{PREFIX}/export.csv?{urlencode(args)}",
    })


def csv_cell(value: Any) -> str:
    """A CSV cell that a spreadsheet will not run: text starting with = + - @ or a control character gets a quote."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r", "\n") else text


async def export_csv(request: web.Request) -> web.StreamResponse:
    filters = _filters(request.query)
    rows = await queries.search_messages(_pool(request), _officer(request), filters, limit=10_000)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["message_id", "case", "type", "from", "to", "status", "accepted_at", "ledger_index"])
    for row in rows[:10_000]:
        writer.writerow([csv_cell(value) for value in (
            row.id, row.case, row.type, row.sender, row.receiver, row.status, format_timestamp(row.accepted_at), row.ledger_index
        )])
    return web.Response(
        body=out.getvalue().encode("utf-8"), content_type="text/csv", charset="utf-8",
        headers={"Content-Disposition": 'attachment; filename="gba-messages.csv"'},
    )


async def case_timeline(request: web.Request) -> web.StreamResponse:
    case = request.match_info["case"]
    if not _UUID.fullmatch(case):
        raise BadInput("a case id is a lower-case UUID")
    pool, officer = _pool(request), _officer(request)
    entries = await queries.case_timeline(pool, officer, case)
    if not entries:
        raise web.HTTPNotFound()
    messages = {}
    for item in entries:
        message_id = item.fields.get("message_id")
        if message_id and message_id not in messages:
            messages[message_id] = await queries.message_for_officer(pool, officer, message_id)
    return _render(request, "case.html", {"case": case, "entries": entries, "messages": messages, "summary": _summary})


async def case_bundle(request: web.Request) -> web.StreamResponse:
    """The offline bundle (docs/protocol.md §13.7) of the case's entries the officer may see and the latest checkpoint
    holds, each with its inclusion proof: what the timeline shows, provable without the hub."""
    case = request.match_info["case"]
    if not _UUID.fullmatch(case):
        raise BadInput("a case id is a lower-case UUID")
    pool, officer, keys = _pool(request), _officer(request), request.app[KEYS]
    entries = await queries.case_timeline(pool, officer, case)
    checkpoint = await checkpoints.latest_checkpoint(pool, keys.origin)
    if not entries or checkpoint is None:
        raise web.HTTPNotFound()
    proved = []
    for item in entries:
        if item.index < checkpoint.size:
            proof = await inclusion_proof(pool, item.index, checkpoint.size)
            proved.append({"index": item.index, "entry": _b64(item.entry), "proof": [_b64(node) for node in proof.hashes]})
    lines = [line for _, line in await checkpoints.cosignatures(pool, keys.origin, checkpoint.size)]
    document = {
        "format": bundle.FORMAT, "origin": checkpoint.origin, "viewer": scope.AUDITOR if officer.is_auditor else ",".join(officer.jurisdictions),
        "checkpoint": published_note(checkpoint, lines), "entries": proved,
    }
    return web.Response(
        body=json.dumps(document, indent=2).encode("utf-8"), content_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="gba-case-{case}.json"'},
    )


def _summary(fields: dict[str, Any]) -> str:
    """One line for a timeline row: the entry's members but its kind, time and version."""
    return ", ".join(f"{key}={value}" for key, value in sorted(fields.items()) if key not in ("v", "kind", "time"))


def _index(request: web.Request) -> int:
    text = request.match_info["index"]
    if not text.isdigit() or len(text) > 18:
        raise BadInput("an entry index is a whole number")
    return int(text)


async def entry_page(request: web.Request) -> web.StreamResponse:
    index = _index(request)
    pool, officer = _pool(request), _officer(request)
    found = await queries.entry(pool, officer, index)
    if found is None:
        raise web.HTTPNotFound()
    message_id = found.fields.get("message_id")
    message = await queries.message_for_officer(pool, officer, message_id) if message_id else None
    keys = request.app[KEYS]
    return _render(request, "entry.html", {
        "index": index, "entry": found, "text": found.entry.decode("utf-8"), "message": message,
        "log_key": keys.log, "witness_keys": keys.witnesses, "quorum": keys.quorum,
        "fingerprint": accounts.fingerprint, "pinned": officer.pinned,
    })


async def entry_proof(request: web.Request) -> web.StreamResponse:
    """What the page's script verifies: the entry's bytes, its inclusion proof against the latest checkpoint that holds
    it, that checkpoint with its cosignatures, the keys the console is configured with and the officer's pins."""
    index = _index(request)
    pool, officer = _pool(request), _officer(request)
    found = await queries.entry(pool, officer, index)
    if found is None:
        raise web.HTTPNotFound()
    keys = request.app[KEYS]
    checkpoint = await queries.checkpoint_covering(pool, keys.origin, index)
    document: dict[str, Any] = {
        "index": index, "entry": _b64(found.entry), "log_key": keys.log.vkey() if keys.log else None,
        "witness_keys": [key.vkey() for key in keys.witnesses], "quorum": keys.quorum,
        "pinned": list(officer.pinned), "checkpoint": None,
    }
    if checkpoint is not None:
        lines = [line for _, line in await checkpoints.cosignatures(pool, keys.origin, checkpoint.size)]
        proof = await inclusion_proof(pool, index, checkpoint.size)
        document.update(size=checkpoint.size, proof=[_b64(node) for node in proof.hashes], checkpoint=published_note(checkpoint, lines),
                        bundle=f"{PREFIX}/entries/{index}/bundle.json")
    return web.json_response(document)


async def entry_bundle(request: web.Request) -> web.StreamResponse:
    """The offline bundle (docs/protocol.md §13.7) of this one entry, for `gateway ledger verify --bundle`."""
    index = _index(request)
    pool, officer = _pool(request), _officer(request)
    found = await queries.entry(pool, officer, index)
    keys = request.app[KEYS]
    checkpoint = await queries.checkpoint_covering(pool, keys.origin, index)
    if found is None or checkpoint is None:
        raise web.HTTPNotFound()
    parties = (await scope.parties_of(pool, [found.entry]))[0]
    viewer = scope.AUDITOR if officer.is_auditor else next(code for code in officer.jurisdictions if scope.may_see(code, parties))
    lines = [line for _, line in await checkpoints.cosignatures(pool, keys.origin, checkpoint.size)]
    document = await bundle.build_bundle(pool, checkpoint, published_note(checkpoint, lines), viewer, index, index + 1)
    return web.Response(
        body=json.dumps(document, indent=2).encode("utf-8"), content_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="gba-ledger-entry-{index}.json"'},
    )


async def checkpoint_list(request: web.Request) -> web.StreamResponse:
    keys = request.app[KEYS]
    pool = _pool(request)
    rows = await queries.recent_checkpoints(pool, keys.origin)
    return _render(request, "checkpoints.html", {
        "rows": rows, "b64": _b64, "witnesses": await checkpoints.witness_records(pool),
        "log_key": keys.log, "witness_keys": keys.witnesses, "quorum": keys.quorum, "fingerprint": accounts.fingerprint,
    })


# --- payloads and persons (ledgered rights) ---------------------------------------------


def _reason(form: Any) -> str:
    reason = str(form.get("reason", "")).strip()
    if not 10 <= len(reason) <= 500:
        raise BadInput("state a reason of 10 to 500 characters")
    return reason


async def _ledger_access(request: web.Request, entry: LedgerEntry, reason: str) -> int:
    """Append `entry` and keep the reason beside it, in one transaction; the entry's index."""
    officer = _officer(request)

    async def work(connection: Any, appender: Any) -> int:
        index = await appender.add(entry)
        await connection.execute(
            "INSERT INTO console_access_reasons (ledger_index, officer, reason, at) VALUES ($1, $2, $3, $4)",
            index, officer.name, reason, _now(request),
        )
        return index

    return await request.config_dict[COMMITTER].run(work)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


async def view_payload(request: web.Request) -> web.StreamResponse:
    """POST with a reason: the payload, after its view is ledgered (`payload-viewed`)."""
    officer, pool = _officer(request), _pool(request)
    message_id = request.match_info["message_id"]
    if not _UUID.fullmatch(message_id):
        raise BadInput("a message id is a lower-case UUID")
    if not officer.payload_right:
        raise _Page(403, "no_payload_right")
    reason = _reason(await request.post())
    if await queries.message_for_officer(pool, officer, message_id) is None:
        raise web.HTTPNotFound()
    entry = LedgerEntry("payload-viewed", format_timestamp(_now(request)), {
        "message_id": message_id, "officer": officer.pseudonym, "reason_digest": _digest(reason),
    })
    index = await _ledger_access(request, entry, reason)
    _log.info("console_payload_viewed", officer=officer.pseudonym, message_id=message_id, ledger_index=index)
    payload = await read_payload(pool, message_id, request.config_dict[HUB].payload_keys)
    return _render(request, "payload.html", {
        "message_id": message_id, "index": index, "payload": json.dumps(payload, indent=2, ensure_ascii=False),
    })


async def persons_form(request: web.Request) -> web.StreamResponse:
    _require_person_right(request)
    return _render(request, "persons.html", {"results": None})


def _require_person_right(request: web.Request) -> None:
    officer = _officer(request)
    if not (officer.is_auditor and officer.payload_right):
        raise _Page(403, "forbidden")


async def find_person(request: web.Request) -> web.StreamResponse:
    """An auditor with the payload right finds the messages naming an identity number, through the blind index."""
    _require_person_right(request)
    officer, pool = _officer(request), _pool(request)
    form = await request.post()
    reason = _reason(form)
    number = persons.normalise(str(form.get("number", "")))
    if not number:
        raise BadInput("an identity document number has 4 to 40 letters and digits")
    try:
        key = persons.load_key(request.app[RUNTIME])
    except (OSError, ValueError):
        key = None
    if key is None:
        raise _Page(503, "no_person_index")
    found = await persons.messages_of(pool, persons.blind(key, number))
    entry = LedgerEntry("person-searched", format_timestamp(_now(request)), {
        "officer": officer.pseudonym, "reason_digest": _digest(reason), "results": len(found),
    })
    index = await _ledger_access(request, entry, reason)
    _log.info("console_person_searched", officer=officer.pseudonym, ledger_index=index, results=len(found))
    rows = [row for row in [await queries.message_for_officer(pool, officer, message_id) for message_id in found] if row]
    return _render(request, "persons.html", {"results": rows, "index": index})


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")

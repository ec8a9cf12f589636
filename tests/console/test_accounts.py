"""Accounts, sign-in and sessions of the console over HTTP (docs/console.md, "Accounts", "Throttling", "Sessions").

A real hub on a socket (tests/hub/harness.py) with an injected clock; officers enrolled
through `gateway officers`; the console spoken to as a browser would, cookies and forms.
"""

from __future__ import annotations

import json
import re
import time
from datetime import timedelta

from tests.console.harness import PASSWORD, Client, cli, enrol, query, totp
from tests.hub.harness import Clock, running_hub


def test_an_officer_signs_in_with_password_and_totp_and_signs_out(database_url):
    secret = enrol(database_url, "hk-officer", "officer", "HK")
    with running_hub(database_url) as hub:
        client = Client(hub.base_url)
        signed_in = client.sign_in("hk-officer", totp(secret))
        assert signed_in.status == 303 and signed_in.headers["location"] == "/console/dashboard"
        cookie = signed_in.cookie("gba_console")
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie, cookie
        page = client.get("/console/dashboard")
        assert page.status == 200 and "Signed in as hk-officer (officer for HK)" in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
        signed_out = client.post("/console/logout", {"csrf": client.csrf()})
        assert signed_out.status == 200 and "You are signed out." in signed_out.text
        after = client.get("/console/dashboard")
        assert after.status == 303 and after.headers["location"].startswith("/console/login")
    assert query(database_url, "SELECT count(*) AS n FROM console_sessions")[0]["n"] == 0, "sign-out ends the session on the server"


def test_over_https_the_console_answers_any_host_and_its_cookies_are_secure(database_url, tmp_path):
    from gateway.hub.transport import client_context, server_context
    from tests.tls import CertificateAuthority

    authority = CertificateAuthority(tmp_path / "pki")
    server = authority.server()
    secret = enrol(database_url, "tls-officer", "officer", "HK")
    with running_hub(database_url, server_tls=server_context(server.certificate, server.private_key)) as hub:
        assert hub.base_url.startswith("https://")
        client = Client(hub.base_url, tls=client_context(authority.certificate), host="console.gba.example")
        assert client.get("/console/login").status == 200, "a secure context whatever the host name"
        signed_in = client.sign_in("tls-officer", totp(secret))
        assert signed_in.status == 303
        cookie = signed_in.cookie("gba_console")
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie, cookie
        assert client.get("/console/dashboard").status == 200


def test_a_wrong_password_a_wrong_code_and_a_replayed_code_are_refused(database_url):
    secret = enrol(database_url, "gd-officer", "officer", "CN-GD")
    with running_hub(database_url) as hub:
        client = Client(hub.base_url)
        wrong_password = client.sign_in("gd-officer", totp(secret), password="not the password at all")
        assert wrong_password.status == 401 and "Sign-in failed" in wrong_password.text
        assert not any(value.startswith("gba_console=") for value in wrong_password.set_cookies)
        wrong_code = client.sign_in("gd-officer", "000000" if totp(secret) != "000000" else "111111")
        assert wrong_code.status == 401
        unknown = client.sign_in("nobody-here", totp(secret))
        assert unknown.status == 401 and unknown.text.count("Sign-in failed") == 1, "an unknown name reads as any failure"
        code = totp(secret)
        assert client.sign_in("gd-officer", code).status == 303
        replay = Client(hub.base_url).sign_in("gd-officer", code)
        assert replay.status == 401, "a one-time code works once"


def test_a_form_without_the_sessions_csrf_token_is_refused(database_url):
    secret = enrol(database_url, "mo-officer", "officer", "MO")
    with running_hub(database_url) as hub:
        client = Client(hub.base_url)
        assert client.sign_in("mo-officer", totp(secret)).status == 303
        missing = client.post("/console/logout", {})
        assert missing.status == 403 and "CSRF check failed" in missing.text
        forged = client.post("/console/logout", {"csrf": "forged-token"})
        assert forged.status == 403
        assert client.get("/console/dashboard").status == 200, "a refused form changed nothing: still signed in"
        stranger = Client(hub.base_url)
        no_login_token = stranger.post("/console/login", {"name": "mo-officer", "password": PASSWORD, "totp": totp(secret, steps_ahead=1)})
        assert no_login_token.status == 403, "the sign-in form carries its own double-submit token"


def test_failed_sign_ins_slow_down_one_address_but_never_lock_the_officer_out(database_url):
    secret = enrol(database_url, "hk-auditor", "auditor")
    with running_hub(database_url) as hub:
        attacker = Client(hub.base_url, source="127.0.0.1")
        for _ in range(5):
            assert attacker.sign_in("hk-auditor", "123456", password="guessed password").status == 401
        throttled = attacker.sign_in("hk-auditor", totp(secret))
        assert throttled.status == 429 and "Too many failed sign-ins from this address" in throttled.text
        officer = Client(hub.base_url, source="127.0.0.2")
        assert officer.sign_in("hk-auditor", totp(secret)).status == 303, "the officer still signs in from elsewhere"
        assert officer.get("/console/dashboard").status == 200


def _wrong_code(secret: str) -> str:
    """A six-digit code that none of the steps the console accepts now (the current one and its neighbours) gives."""
    import pyotp

    from gateway.console.accounts import TOTP_STEP_SECONDS

    generator = pyotp.TOTP(secret, interval=TOTP_STEP_SECONDS)
    valid = {generator.at(time.time() + offset) for offset in range(-3 * TOTP_STEP_SECONDS, 4 * TOTP_STEP_SECONDS, TOTP_STEP_SECONDS)}
    return next(code for code in (f"{n:06d}" for n in range(10)) if code not in valid)


class _Frozen:
    """A hub clock that stands still until the test moves it (a wait of seconds must not run out while a loaded
    machine serves the next request)."""

    def __init__(self) -> None:
        from gateway.protocol.timestamps import utc_now

        self.now = utc_now()

    def __call__(self):
        return self.now


def _failure_page(reply) -> str:
    """The sign-in page's words without its per-request token."""
    return re.sub(r'value="[^"]*"', "", reply.text)


def test_wrong_codes_given_with_the_right_password_make_the_account_wait_from_every_address(database_url):
    """docs/console.md, "Throttling": whoever holds an officer's password may not guess at the one-time code from many
    addresses without limit. Five wrong codes, one from each of five addresses (so no address is throttled), make
    the account wait wherever the next sign-in comes from, and the operator is told. While it waits, even the right
    code is answered as any failure: another answer would tell a guesser that the password was right."""
    from structlog.testing import capture_logs

    secret = enrol(database_url, "hk-target", "auditor")
    clock = _Frozen()
    with running_hub(database_url, clock=clock) as hub:
        with capture_logs() as lines:
            for n in range(5):
                guesser = Client(hub.base_url, source=f"127.0.0.{10 + n}")
                assert guesser.sign_in("hk-target", _wrong_code(secret)).status == 401
        [warned] = [line for line in lines if line["event"] == "console_second_factor_failures"]
        assert warned["log_level"] == "warning" and warned["officer"] and warned["seconds"] == 2
        assert "hk-target" not in json.dumps(warned), "the pseudonym, not the name"

        stranger = Client(hub.base_url, source="127.0.0.19")
        wrong_password = stranger.sign_in("hk-target", _wrong_code(secret), password="guessed password")
        officer = Client(hub.base_url, source="127.0.0.20")
        waiting = officer.sign_in("hk-target", totp(secret))
        assert waiting.status == wrong_password.status == 401
        assert _failure_page(waiting) == _failure_page(wrong_password), "the same page, right password or not"
        clock.now += timedelta(seconds=2)
        assert officer.sign_in("hk-target", totp(secret)).status == 303, "a wait, not a lock"

        # The officer's sign-in cleared nothing: one more wrong code, and the account waits again, twice as long.
        assert Client(hub.base_url, source="127.0.0.15").sign_in("hk-target", _wrong_code(secret)).status == 401
        (row,) = query(database_url, "SELECT failures, blocked_until FROM console_throttle WHERE scope = 'second-factor:hk-target'")
        assert row["failures"] == 6 and row["blocked_until"] == clock.now + timedelta(seconds=4)
        # The operator resets the password the guesser held: the account's wait ends with it.
        reset = cli("officers", "reset", "hk-target", "--database-url", database_url, "--password-stdin", stdin=b"a new long passphrase here\n")
        assert reset.status == 0, reset.stderr
        new_secret = reset.stdout.split("totp secret: ")[1].split()[0]
        assert Client(hub.base_url, source="127.0.0.21").sign_in("hk-target", totp(new_secret), password="a new long passphrase here").status == 303


def test_guesses_at_the_code_sent_at_once_from_many_addresses_are_counted_one_after_another(database_url):
    """The account's count is taken before the code is checked, on a locked row: of twelve guesses sent together, each
    from its own address, five are counted and the account then waits, as after twelve sent one after another. (That
    only counted attempts have their code checked is the sequential test's: the right code is refused while the
    account waits.)"""
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    secret = enrol(database_url, "hk-many", "auditor")
    burst = 12
    together = Barrier(burst)

    def guess(n: int) -> int:
        client = Client(hub.base_url, source=f"127.0.1.{n + 1}")
        token = re.search(r'name="login_token" value="([^"]+)"', client.get("/console/login").text).group(1)
        together.wait(60)
        form = {"login_token": token, "lang": "en", "name": "hk-many", "password": PASSWORD, "totp": _wrong_code(secret)}
        return client.post("/console/login", form).status

    clock = _Frozen()
    with running_hub(database_url, clock=clock) as hub:
        with ThreadPoolExecutor(burst) as pool:
            statuses = list(pool.map(guess, range(burst)))
    assert statuses == [401] * burst
    (row,) = query(database_url, "SELECT failures, blocked_until FROM console_throttle WHERE scope = 'second-factor:hk-many'")
    assert row["failures"] == 5 and row["blocked_until"] == clock.now + timedelta(seconds=2), "five checked, seven not"


def test_attempts_at_the_code_counted_at_once_on_the_database_each_see_the_ones_before(database_url):
    """`claim_code_attempt` on twelve connections at once: five are allowed, one of them starts the first wait, and the
    count is five, not a count that lost the attempts made meanwhile."""
    import asyncio

    import asyncpg

    from gateway.console.sessions import claim_code_attempt

    enrol(database_url, "hk-claims", "auditor")  # the schema
    now = _Frozen().now

    async def at_once():
        pool = await asyncpg.create_pool(database_url, min_size=12, max_size=12)
        try:
            return await asyncio.gather(*(claim_code_attempt(pool, "hk-claims", True, now) for _ in range(12)))
        finally:
            await pool.close()

    attempts = asyncio.run(at_once())
    assert sum(attempt.allowed for attempt in attempts) == 5
    assert sorted(attempt.started_wait for attempt in attempts if attempt.started_wait) == [2]
    (row,) = query(database_url, "SELECT failures, blocked_until FROM console_throttle WHERE scope = 'second-factor:hk-claims'")
    assert row["failures"] == 5 and row["blocked_until"] == now + timedelta(seconds=2)

    async def one_at(at) -> object:
        pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
        try:
            return await claim_code_attempt(pool, "hk-claims", True, at)
        finally:
            await pool.close()

    # An hour's pause does not start the count again (a guesser could otherwise begin anew every hour); a day's does.
    assert asyncio.run(one_at(now + timedelta(hours=2))).started_wait == 4, "the sixth attempt: a wait twice as long"
    later = asyncio.run(one_at(now + timedelta(hours=2, days=1, seconds=1)))
    assert later.allowed and later.started_wait == 0
    (row,) = query(database_url, "SELECT failures FROM console_throttle WHERE scope = 'second-factor:hk-claims'")
    assert row["failures"] == 1


def test_wrong_passwords_from_many_addresses_never_make_the_account_wait(database_url):
    """Only the right password counts toward the account's wait: guessing wrong cannot lock an officer out."""
    secret = enrol(database_url, "hk-steady", "auditor")
    with running_hub(database_url) as hub:
        for n in range(8):
            guesser = Client(hub.base_url, source=f"127.0.0.{10 + n}")
            assert guesser.sign_in("hk-steady", _wrong_code(secret), password="guessed password").status == 401
        officer = Client(hub.base_url, source="127.0.0.30")
        assert officer.sign_in("hk-steady", totp(secret)).status == 303
    (row,) = query(database_url, "SELECT failures, blocked_until FROM console_throttle WHERE scope = 'second-factor:hk-steady'")
    assert row["failures"] == 0 and row["blocked_until"] is None


def test_a_burst_of_sign_ins_sent_at_once_is_throttled_like_one_sent_in_turn(database_url):
    """docs/console.md, "Throttling": the wait is checked before the password. Twelve wrong sign-ins sent together from
    one address get as many password checks as twelve sent one by one: five (the threshold of one name from one
    address), then a wait for the others."""
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    secret = enrol(database_url, "hk-burst", "auditor")
    burst = 12
    together = Barrier(burst)

    def guess(_: int) -> int:
        client = Client(hub.base_url, source="127.0.0.1")
        token = re.search(r'name="login_token" value="([^"]+)"', client.get("/console/login").text).group(1)
        together.wait(60)
        form = {"login_token": token, "lang": "en", "name": "hk-burst", "password": "guessed password", "totp": "123456"}
        return client.post("/console/login", form).status

    with running_hub(database_url) as hub:
        with ThreadPoolExecutor(burst) as pool:
            statuses = sorted(pool.map(guess, range(burst)))
        officer = Client(hub.base_url, source="127.0.0.2")
        assert officer.sign_in("hk-burst", totp(secret)).status == 303, "the officer still signs in from elsewhere"
    assert statuses == [401] * 5 + [429] * (burst - 5)
    (row,) = query(database_url, "SELECT failures FROM console_throttle WHERE scope = 'account:hk-burst|127.0.0.1'")
    assert row["failures"] == 5, "only the checked guesses count"


def test_a_token_with_characters_outside_ascii_is_a_failed_check_not_a_server_error(database_url):
    """docs/console.md: a missing or wrong token is a 403 page; a form field may hold any character."""
    secret = enrol(database_url, "mo-token", "officer", "MO")
    with running_hub(database_url) as hub:
        stranger = Client(hub.base_url)
        stranger.get("/console/login")
        refused = stranger.post("/console/login", {"login_token": "é", "name": "mo-token", "password": PASSWORD, "totp": totp(secret)})
        assert refused.status == 403 and "content-security-policy" in refused.headers
        officer = Client(hub.base_url)
        assert officer.sign_in("mo-token", totp(secret)).status == 303
        forged = officer.post("/console/logout", {"csrf": "令牌"})
        assert forged.status == 403 and "content-security-policy" in forged.headers
        assert officer.get("/console/dashboard").status == 200, "still signed in"


def test_a_session_ends_when_idle_too_long_and_after_its_maximum_age(database_url):
    secret = enrol(database_url, "idle-officer", "officer", "HK")
    clock = Clock()
    with running_hub(database_url, clock=clock) as hub:
        client = Client(hub.base_url)
        assert client.sign_in("idle-officer", totp(secret, at=clock())).status == 303
        clock.offset += timedelta(minutes=14)
        assert client.get("/console/dashboard").status == 200, "14 minutes idle: still signed in"
        clock.offset += timedelta(minutes=16)
        expired = client.get("/console/dashboard")
        assert expired.status == 303 and expired.headers["location"] == "/console/login?expired=1"
        assert "Your session has ended" in client.get(expired.headers["location"]).text

        assert client.sign_in("idle-officer", totp(secret, at=clock())).status == 303
        for _ in range(8 * 6):
            clock.offset += timedelta(minutes=10)
            if client.get("/console/dashboard").status != 200:
                break
        assert clock.offset >= timedelta(hours=8, minutes=30)
        assert client.get("/console/dashboard").status == 303, "never longer than 8 hours, however busy"


def test_officers_are_disabled_reset_and_changed_through_the_cli_and_each_change_is_ledgered(database_url):
    secret = enrol(database_url, "changing", "officer", "HK")
    with running_hub(database_url) as hub:
        client = Client(hub.base_url)
        assert client.sign_in("changing", totp(secret)).status == 303
        assert cli("officers", "role", "changing", "--role", "auditor", "--payload-right", "--database-url", database_url).status == 0
        assert client.get("/console/dashboard").status == 303, "a role change ends the sessions"
        assert cli("officers", "disable", "changing", "--database-url", database_url).status == 0
        assert Client(hub.base_url).sign_in("changing", totp(secret, steps_ahead=1)).status == 401
        reset = cli("officers", "reset", "changing", "--database-url", database_url, "--password-stdin",
                        stdin=b"a brand new password\n")
        assert reset.status == 0, reset.stderr
        new_secret = reset.stdout.split("totp secret: ")[1].split()[0]
        assert new_secret != secret
        again = Client(hub.base_url)
        assert again.sign_in("changing", totp(new_secret), password="a brand new password").status == 303
        assert "Signed in as changing (auditor)" in again.get("/console/dashboard").text
    listed = cli("officers", "list", "--database-url", database_url)
    assert listed.status == 0 and listed.stdout.startswith("changing  auditor  HK  payload=yes  UTC  active")
    assert "password" not in listed.stdout and new_secret not in listed.stdout
    entries = [json.loads(row["entry"]) for row in query(database_url, "SELECT entry FROM ledger_entries ORDER BY idx")]
    changes = [entry for entry in entries if entry["kind"] == "officer-changed"]
    assert [entry["change"] for entry in changes] == ["added", "role", "disabled", "reset"]
    assert len({entry["officer"] for entry in changes}) == 1 and "changing" not in json.dumps(changes), "a pseudonym, never the name"


def test_the_sign_in_page_speaks_three_languages(database_url):
    with running_hub(database_url) as hub:
        for language, sign_in in (("en", "Sign in"), ("zh-Hant", "登入"), ("zh-Hans", "登录")):
            page = Client(hub.base_url).get(f"/console/login?lang={language}").text
            assert f'<html lang="{language}">' in page and f"<h1>{sign_in}</h1>" in page
        assert '<html lang="en">' in Client(hub.base_url).get("/console/login?lang=xx").text, "unknown: English"


def test_the_cli_refuses_what_cannot_be_an_account(database_url):
    no_jurisdiction = cli("officers", "add", "lonely", "--role", "officer", "--database-url", database_url)
    assert no_jurisdiction.status == 1 and "needs at least one jurisdiction" in no_jurisdiction.stderr
    bad_name = cli("officers", "add", "Not A Name", "--role", "auditor", "--database-url", database_url)
    assert bad_name.status == 1 and "a name is 2-63 characters" in bad_name.stderr
    short = cli("officers", "add", "short-pass", "--role", "auditor", "--database-url", database_url, "--password-stdin", stdin=b"short\n")
    assert short.status == 1 and "at least 12 characters" in short.stderr
    bad_zone = cli("officers", "add", "zoned", "--role", "auditor", "--time-zone", "Mars/Olympus", "--database-url", database_url)
    assert bad_zone.status == 1 and "not an IANA time zone" in bad_zone.stderr
    missing = cli("officers", "disable", "ghost", "--database-url", database_url)
    assert missing.status == 1 and "no officer named ghost" in missing.stderr


def test_enrolment_prints_and_pins_the_fingerprints_of_the_configured_ledger_keys(database_url, tmp_path):
    from gateway.config import default_config
    from gateway.console.accounts import fingerprint
    from gateway.keyfiles import read_private_key
    from gateway.ledger import notes

    config = default_config(tmp_path)
    log_vkey = notes.note_key(config.origin, read_private_key(config.hub.checkpoint_key).public()).vkey()
    added = cli("officers", "add", "pinning", "--role", "auditor", "--database-url", database_url, "--data-dir", str(tmp_path))
    assert added.status == 0, added.stderr
    assert f"pinned {log_vkey}" in added.stderr and f"fingerprint {fingerprint(log_vkey)}" in added.stderr
    assert re.search(r"^password: \S{20,}$", added.stdout, re.MULTILINE), "a generated password, printed once"
    assert re.search(r"^totp uri: otpauth://totp/", added.stdout, re.MULTILINE)
    pinned = query(database_url, "SELECT pinned FROM console_officers WHERE name = 'pinning'")[0]["pinned"]
    assert pinned == [fingerprint(log_vkey), f"quorum:{config.quorum}"], "the keys, and the quorum the pages will demand"
    assert f"pinned quorum {config.quorum}" in added.stderr


def test_the_published_test_officer_exists_only_in_test_mode():
    import asyncio
    from types import SimpleNamespace

    import pytest

    from gateway.demo.console import enrol_test_officer

    with pytest.raises(RuntimeError, match="only in test mode"):
        asyncio.run(enrol_test_officer(SimpleNamespace(config=SimpleNamespace(mode="production"))))

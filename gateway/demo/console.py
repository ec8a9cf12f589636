"""The demo's test officer for the console (test mode only; docs/console.md, "The demo's test officer").

Published test material, like the keys in keys/test/: anyone may read this password and
TOTP secret, so the account exists only in test mode, where the hub also refuses
nothing but test keys would be trusted anyway.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.console import accounts
from gateway.demo.exchange import Exchange
from gateway.hub.http import COMMITTER
from gateway.protocol.timestamps import utc_now


@dataclass(frozen=True)
class TestOfficer:
    name: str = "test-auditor"
    password: str = "test-only-console-password"
    totp_secret: str = "GBADEMOTESTOFFICERTOTPSECRET2345"
    """Base32, RFC 6238 (SHA-1, 6 digits, 30 s): any authenticator app or `pyotp.TOTP(secret).now()`."""
    role: str = "auditor"
    payload_right: bool = True
    time_zone: str = "Asia/Hong_Kong"


TEST_OFFICER = TestOfficer()


async def enrol_test_officer(exchange: Exchange) -> accounts.Officer:
    """Enrol TEST_OFFICER on the exchange's hub, pinning the exchange's log and witness keys. Refused outside test mode."""
    if exchange.config.mode != "test":
        raise RuntimeError("the published test officer exists only in test mode")
    pinned = accounts.key_fingerprints(exchange.log_key(), exchange.witness_keys(), exchange.settings.quorum)
    officer = TEST_OFFICER
    return await exchange.app[COMMITTER].run(lambda connection, appender: accounts.add_officer(
        connection, appender, name=officer.name, role=officer.role, jurisdictions=(), payload_right=officer.payload_right,
        password=officer.password, totp_secret=officer.totp_secret, time_zone=officer.time_zone, pinned=pinned, now=utc_now(),
    ))

"""The authorisation matrix (docs/security.md, "Who may call what"): one table, enforced by the app, walked by a test.

Every route of the app has one access class; a route the table does not name is refused
(`not-found`, as if it did not exist): a new route is denied until the table says
otherwise. `OUTCOMES` says, for each class, what each kind of caller gets. The app's
middleware (gateway/hub/http.py) enforces the class before any handler runs: a
jurisdiction route gets its caller authenticated by a request proof, and a console route
by an officer's session, or not at all. tests/hub/test_authorization_matrix.py walks
every route against every kind of caller.
"""

from __future__ import annotations

from enum import Enum
from types import MappingProxyType


class Access(Enum):
    PUBLIC = "public"
    """Anyone, without credentials: what a witness, a monitor or a newcomer needs."""
    SIGNED = "signed"
    """The body is a message that authenticates itself by its signature (POST /v1/messages)."""
    JURISDICTION = "jurisdiction"
    """A request proof by a jurisdiction's message key (§9.5); the answer is scoped to that jurisdiction."""
    CONSOLE = "console"
    """The console's sign-in pages and assets: anyone, but nothing behind them."""
    OFFICER = "officer"
    """A signed-in officer or auditor; an officer sees entries of its jurisdictions, an auditor all (docs/console.md)."""
    AUDITOR = "auditor"
    """A signed-in auditor (person search, officer oversight)."""


CALLERS = ("party", "other-jurisdiction", "hub", "officer", "auditor", "anonymous", "revoked-key", "expired-key")
"""The kinds of caller every route is walked with.

`party`: a jurisdiction acting on its own business; `other-jurisdiction`: a valid
jurisdiction asking for another's (another's message, another's inbox entries); `hub`: a
hub key (receipt or checkpoint) used as a caller's key; `officer` and `auditor`: console
sessions; `anonymous`: no credential at all; `revoked-key`, `expired-key`: a
jurisdiction's key that was revoked, or has expired.
"""

ALLOW = "allow"
SCOPED = "scoped"
"""Answered, but with the caller's share only (its own messages, its entries, its jurisdictions)."""
SIGN_IN = "sign-in"
"""A console page's answer to a caller without a session: the sign-in page, nothing else."""

OUTCOMES = MappingProxyType({
    Access.PUBLIC: dict.fromkeys(CALLERS, ALLOW),
    Access.CONSOLE: dict.fromkeys(CALLERS, ALLOW),
    Access.SIGNED: {
        "party": ALLOW, "other-jurisdiction": "sender-mismatch", "hub": "key-use-mismatch",
        "officer": "jws-malformed", "auditor": "jws-malformed", "anonymous": "jws-malformed",
        "revoked-key": "key-revoked", "expired-key": "key-expired",
    },
    Access.JURISDICTION: {
        "party": ALLOW, "other-jurisdiction": SCOPED, "hub": "key-use-mismatch",
        "officer": "request-proof-missing", "auditor": "request-proof-missing", "anonymous": "request-proof-missing",
        "revoked-key": "key-revoked", "expired-key": "key-expired",
    },
    Access.OFFICER: {
        **dict.fromkeys(CALLERS, SIGN_IN), "officer": SCOPED, "auditor": ALLOW,
    },
    Access.AUDITOR: {
        **dict.fromkeys(CALLERS, SIGN_IN), "officer": "forbidden", "auditor": ALLOW,
    },
})
"""Access class -> caller kind -> `allow`, `scoped`, `sign-in`, `forbidden` (a signed-in officer without the right)
or the catalogue code of the refusal."""

API_ROUTES = MappingProxyType({
    ("POST", "/v1/messages"): Access.SIGNED,
    ("POST", "/v1/messages/bulk"): Access.SIGNED,
    ("GET", "/v1/messages/{message_id}"): Access.JURISDICTION,
    ("GET", "/v1/inbox"): Access.JURISDICTION,
    ("POST", "/v1/receipts"): Access.JURISDICTION,
    ("GET", "/v1/ledger/entries"): Access.JURISDICTION,
    ("GET", "/v1/ledger/proof/inclusion"): Access.JURISDICTION,
    ("GET", "/v1/ledger/checkpoint"): Access.PUBLIC,
    ("GET", "/v1/ledger/proof/consistency"): Access.PUBLIC,
    ("GET", "/v1/about"): Access.PUBLIC,
    ("GET", "/v1/trust-list"): Access.PUBLIC,
    ("GET", "/healthz"): Access.PUBLIC,
    ("GET", "/readyz"): Access.PUBLIC,
    ("GET", "/metrics"): Access.PUBLIC,
    ("GET", "/openapi.json"): Access.PUBLIC,
})
"""The hub's API (docs/protocol.md §12.1). The console adds its own routes (gateway/console/)."""


def access_of(table: dict[tuple[str, str], Access], method: str, path: str) -> Access | None:
    """The access class of a route (HEAD as its GET), or None when the table does not name it: deny."""
    return table.get(("GET" if method == "HEAD" else method, path))

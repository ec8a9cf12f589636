"""The gateway's configuration: one TOML file, read once into frozen values (docs/configuration.md).

`load_config` reads the file and checks everything at once — types, ranges, unknown
keys, files, URLs, the route policy and the production rules — so that a gateway that
starts never discovers a configuration fault later. Every fault is a `ConfigError`
naming the file, the dotted key (`routes[2].purposes`) and the reason.

The vocabulary of the route policy comes from the shipped contract, never from a
second list here: the registered types (docs/protocol.md §6), the purposes each type
may carry (§5.4, the `purpose` of each type's schema) and the transfer mechanisms
(§5.5). Route policy is deny-by-default (PROTO-5.4-2): `find_route` answers None for
anything no route allows.

Which database a command finally uses (`--database-url` > `GATEWAY_DATABASE_URL` >
`database_url` > the embedded server in `data_dir`) is decided by
`gateway.store.database.resolve_database`; this module only checks `database_url`.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import os
import re
import ssl
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Literal, Mapping, Sequence
from urllib.parse import SplitResult, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway.contract import contract_dir
from gateway.protocol import strict_json
from gateway.protocol.cases import MESSAGE_TYPES, REFERRAL_TYPES, VERIFICATION_TYPES
from gateway.protocol.errors import ProtocolError
from gateway.protocol.keys import PrivateKey, private_key_from_jwk
from gateway.protocol.trust import load_trust_list

Mode = Literal["test", "production"]
DeliveryMode = Literal["push", "pull"]

MODES: tuple[Mode, ...] = ("test", "production")
DELIVERY_MODES: tuple[DeliveryMode, ...] = ("push", "pull")
JURISDICTION_CODE = re.compile(r"[A-Z]{2}(-[A-Z0-9]{1,3})?")
"""docs/protocol.md §2.1."""
ADAPTER_NAME = re.compile(r"[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)*")
TYPE_FAMILIES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {"referral.*": REFERRAL_TYPES, "verification.*": VERIFICATION_TYPES}
)
"""The two wildcards a route may name instead of exact types."""


def _contract_vocabulary() -> tuple[tuple[str, ...], Mapping[str, tuple[str, ...]], tuple[str, ...]]:
    schemas = contract_dir("schemas")
    defs = json.loads((schemas / "defs.json").read_text("utf-8"))["$defs"]
    by_type: dict[str, tuple[str, ...]] = {}
    for message_type in MESSAGE_TYPES:
        purpose = json.loads((schemas / f"{message_type}.json").read_text("utf-8"))["properties"]["purpose"]
        by_type[message_type] = tuple(purpose["enum"]) if "enum" in purpose else (purpose["const"],)
    kinds = defs["legal_basis"]["properties"]["transfer_mechanism"]["properties"]["kind"]["enum"]
    return tuple(defs["purpose"]["enum"]), MappingProxyType(by_type), tuple(kinds)


PURPOSES, PURPOSES_BY_TYPE, TRANSFER_MECHANISMS = _contract_vocabulary()
"""The purpose codes (§5.4), the purposes each type may carry, the transfer-mechanism kinds (§5.5)."""
ASSISTANCE_CATEGORIES: tuple[str, ...] = tuple(
    json.loads((contract_dir("schemas") / "defs.json").read_text("utf-8"))["$defs"]["assistance_category"]["enum"]
)
"""The canonical assistance categories (§6.1), for `consent_for_needs`."""


class ConfigError(Exception):
    """A configuration the gateway refuses: the file, the dotted key (empty for the whole file), why."""

    def __init__(self, file: Path | str, key: str, reason: str) -> None:
        self.file = Path(file)
        self.key = key
        self.reason = reason
        super().__init__(f"{file}: {key}: {reason}" if key else f"{file}: {reason}")


@dataclass(frozen=True)
class TlsConfig:
    """The server's certificate chain and key (PEM); with `client_ca`, mutual TLS (docs/protocol.md §12.8).

    With `client_ca` every non-public request must come with a client certificate it
    signed that names a jurisdiction. `outgoing_*` are what the hub uses when it calls
    out (pushes, witnesses): its own client certificate (naming `urn:gba:hub`) and the
    CA bundle that verifies the receivers' servers (else the system's store).
    """

    certificate: Path
    private_key: Path
    client_ca: Path | None = None
    outgoing_certificate: Path | None = None
    outgoing_private_key: Path | None = None
    outgoing_ca: Path | None = None


@dataclass(frozen=True)
class HubKeys:
    """The hub's own key files and the trust list imported into an empty registry."""

    receipt_key: Path
    trust_list: Path
    checkpoint_key: Path | None = None


def _range(low: float, high: float, note: str = "") -> dict[str, Any]:
    return {"range": (low, high), "note": note}


@dataclass(frozen=True)
class Limits:
    """Sizes and waits. The two protocol windows are fixed by the spec, not configurable."""

    max_message_bytes: int = field(
        default=262144, metadata=_range(4096, 262144, "docs/protocol.md PROTO-4.5-1 caps a message at 262144 bytes")
    )
    max_request_bytes: int = field(
        default=8388608, metadata=_range(4096, 64 * 1024 * 1024, "docs/protocol.md PROTO-12.9-3: a hub takes bulk bodies of at least 8388608 bytes")
    )
    bulk_max_lines: int = field(
        default=1000, metadata=_range(1, 100_000, "docs/protocol.md PROTO-12.9-3: a hub takes bulk bodies of at least 100 lines")
    )
    long_poll_seconds: int = field(default=30, metadata=_range(1, 300))
    body_read_seconds: int = field(default=30, metadata=_range(1, 600, "a request body must arrive within this time (PROTO-12.8-5)"))
    jurisdiction_rate_per_second: int = field(default=2000, metadata=_range(1, 1_000_000))
    jurisdiction_burst: int = field(default=4000, metadata=_range(1, 1_000_000))
    jurisdiction_in_flight: int = field(default=512, metadata=_range(1, 100_000))
    address_rate_per_second: int = field(default=5000, metadata=_range(1, 1_000_000))
    address_burst: int = field(default=10000, metadata=_range(1, 1_000_000))
    address_in_flight: int = field(default=1024, metadata=_range(1, 100_000))
    long_polls_per_jurisdiction: int = field(default=8, metadata=_range(1, 1000))
    freshness_seconds: int = field(
        default=300, init=False, metadata={"fixed": "fixed at 300 s by docs/protocol.md §8.4 (PROTO-8.4-1, -2)"}
    )
    request_proof_max_age_seconds: int = field(
        default=300, init=False, metadata={"fixed": "fixed at 300 s by docs/protocol.md §9.5 (PROTO-9.5-4)"}
    )

    @property
    def request_proof_replay_seconds(self) -> int:
        """How long a `jti` is remembered: twice the proof window (PROTO-9.5-5)."""
        return 2 * self.request_proof_max_age_seconds


@dataclass(frozen=True)
class CommitSettings:
    """Group commit: a batch closes at `max_batch` messages or `max_wait_ms` after its first."""

    max_batch: int = field(default=256, metadata=_range(1, 10000))
    max_wait_ms: int = field(default=5, metadata=_range(0, 1000))


@dataclass(frozen=True)
class DeliverySettings:
    """Outbox leases and retries: backoff from `retry_initial_seconds` doubling to `retry_max_seconds`."""

    lease_seconds: int = field(default=30, metadata=_range(1, 3600))
    retry_initial_seconds: float = field(default=1.0, metadata=_range(0.001, 3600))
    retry_max_seconds: float = field(default=300.0, metadata=_range(0.001, 86400))
    retry_window_hours: float = field(default=72.0, metadata=_range(0.001, 720))
    concurrency: int = field(default=8, metadata=_range(1, 1024))
    push_timeout_seconds: float = field(default=20.0, metadata=_range(0.1, 600))


@dataclass(frozen=True)
class LedgerSettings:
    """Checkpoints, witnesses and continuous verification (docs/protocol.md §13.4-§13.6)."""

    origin: str | None = None
    """The log's origin line (C2SP tlog-checkpoint), unique to this log; default: the public host + "/gba-ledger"."""
    checkpoint_interval_seconds: float = 10.0
    operator: str = "CN-GD"
    """The jurisdiction that runs the hub; the default quorum is every other jurisdiction's witness."""
    quorum: int | None = None
    verify_interval_seconds: float = 3600.0
    previous_log_keys: tuple[str, ...] = ()
    """The checkpoint keys of earlier origins of this ledger, as C2SP vkeys (each named by its origin): a verifier
    checks checkpoints signed before a checkpoint key rotation with them (docs/operations.md, "Rotating keys")."""


@dataclass(frozen=True)
class ConsoleSettings:
    """The compliance officers' console under /console (docs/console.md)."""

    enabled: bool = True
    session_idle_minutes: int = 15
    """A session unused this long ends; the officer signs in again."""
    session_max_hours: int = 8
    """A session ends this long after sign-in, used or not."""
    blind_index_key: Path | None = None
    """The key of the person blind index (32+ random bytes in a file outside the database); in test mode
    DATA_DIR/console-blind-index.key by default, made at start if the data directory exists; in production, unset
    means no find by person."""


@dataclass(frozen=True)
class Witness:
    """A witness of the ledger (C2SP tlog-witness): who it is, where the hub sends checkpoints, its key."""

    jurisdiction: str
    vkey: str
    """The witness's cosignature key as a C2SP vkey (`name+keyid+base64(0x04||key)`); its name is the witness's name."""
    url: str | None = None
    """Where the hub POSTs `add-checkpoint` (the URL prefix); None: the hub does not contact it."""
    previous_vkeys: tuple[str, ...] = ()
    """Keys this witness cosigned with before it rotated to `vkey` (same name): they still count for the
    checkpoints they cosigned (docs/operations.md, "Rotating keys")."""

    @property
    def name(self) -> str:
        return self.vkey.split("+", 1)[0]


@dataclass(frozen=True)
class Jurisdiction:
    """One configured jurisdiction: how the hub delivers to it and which adapter module speaks for it."""

    code: str
    delivery: DeliveryMode
    endpoint: str | None
    adapter: str


def default_adapter(code: str) -> str:
    """The adapter module a jurisdiction uses unless configured: `CN-GD` -> `cn_gd`."""
    return code.lower().replace("-", "_")


@dataclass(frozen=True)
class Route:
    """One allowance of the route policy (docs/protocol.md §5.4, §5.5): who may send what, why, on which terms.

    `types` holds exact types or the wildcards `referral.*` and `verification.*`.
    `transfer_mechanisms` are the kinds of `legal_basis.transfer_mechanism` the route
    accepts, whether or not it requires one.
    """

    sender: str
    receiver: str
    types: tuple[str, ...]
    purposes: tuple[str, ...]
    require_consent: bool = False
    require_transfer_mechanism: bool = False
    transfer_mechanisms: tuple[str, ...] = TRANSFER_MECHANISMS
    consent_for_needs: tuple[str, ...] = ()
    """Assistance categories whose data is sensitive on this route: a message whose `needs` name one must rest on consent."""
    retention_days: int = 2555
    """How long the payloads of this route's messages are kept after their case ends (the purge is the security issue's)."""

    def covers_type(self, message_type: str) -> bool:
        return any(entry == message_type or message_type in TYPE_FAMILIES.get(entry, ()) for entry in self.types)

    def message_types(self) -> tuple[str, ...]:
        """The exact types the route covers, in the order of §6."""
        return tuple(t for t in MESSAGE_TYPES if self.covers_type(t))

    def allows(self, sender: str, receiver: str, message_type: str, purpose: str) -> bool:
        """True iff this route lets `sender` send `receiver` a `message_type` for `purpose` (PROTO-5.4-2)."""
        return (
            sender == self.sender
            and receiver == self.receiver
            and purpose in self.purposes
            and self.covers_type(message_type)
        )

    def legal_basis_refusal(self, legal_basis: Mapping[str, Any], body: Mapping[str, Any] | None = None) -> str | None:
        """The JSON Pointer of the `legal_basis` member that fails this route's terms, or None (PROTO-5.5-2).

        Requires a `legal_basis` that passed the schema (§5.5). `body` is the message's body, for
        `consent_for_needs` (sensitive categories need consent, docs/data-protection.md).
        """
        needs = body.get("needs", ()) if isinstance(body, Mapping) else ()
        sensitive = isinstance(needs, list) and any(need in self.consent_for_needs for need in needs)
        if (self.require_consent or sensitive) and legal_basis.get("basis") != "consent":
            return "/legal_basis/basis"
        mechanism = legal_basis.get("transfer_mechanism")
        if mechanism is None:
            return "/legal_basis/transfer_mechanism" if self.require_transfer_mechanism else None
        if mechanism.get("kind") not in self.transfer_mechanisms:
            return "/legal_basis/transfer_mechanism/kind"
        return None


def find_route(routes: Sequence[Route], sender: str, receiver: str, message_type: str, purpose: str) -> Route | None:
    """The route that allows this combination, or None: deny by default (PROTO-5.4-2).

    A loaded configuration has at most one such route; given several, the first wins.
    """
    return next((route for route in routes if route.allows(sender, receiver, message_type, purpose)), None)


@dataclass(frozen=True)
class StorageSettings:
    """Where the keys that seal personal data at rest live (gateway/store/payloads.py, docs/security.md)."""

    payload_keys: Path | None = None
    """A directory of `<key id>.key` files, outside the repository and outside the embedded database's
    directory; None: `DATA_DIR/payload-keys` in test mode (made with a fresh key when missing), required in
    production (or the variable GATEWAY_PAYLOAD_KEYS)."""
    purge_interval_seconds: float = 3600.0
    """How often the gateway deletes the payloads whose retention ended (gateway/hub/retention.py)."""


@dataclass(frozen=True)
class GatewayConfig:
    """Everything a gateway process reads from its configuration file, checked."""

    source: Path | None
    """The file it came from (absolute), or None for `default_config`."""
    mode: Mode
    listen_host: str
    listen_port: int
    public_base_url: str
    """Scheme and host in lowercase, no trailing slash, no query: request proofs' `htu` is this plus the path (§9.5)."""
    data_dir: Path
    database_url: str | None
    tls: TlsConfig | None
    insecure_development: bool
    hub: HubKeys
    limits: Limits
    commit: CommitSettings
    delivery: DeliverySettings
    jurisdictions: Mapping[str, Jurisdiction]
    routes: tuple[Route, ...]
    ledger: LedgerSettings = LedgerSettings()
    witnesses: tuple[Witness, ...] = ()
    console: ConsoleSettings = ConsoleSettings()
    storage: StorageSettings = StorageSettings()
    database_timeout_seconds: float = 30.0
    """Longest one database statement of the serving hub may go unanswered before it is cancelled (503)."""

    @property
    def payload_keys_dir(self) -> Path:
        """The payload key directory: configured, or `DATA_DIR/payload-keys`."""
        return self.storage.payload_keys or self.data_dir / "payload-keys"

    @property
    def origin(self) -> str:
        """The ledger's origin: configured, or the public base URL's host followed by `/gba-ledger`."""
        return self.ledger.origin or f"{urlsplit(self.public_base_url).hostname}/gba-ledger"

    @property
    def quorum(self) -> int:
        """Cosignatures a verifier requires: configured, or one per witness of a jurisdiction other than the operator."""
        if self.ledger.quorum is not None:
            return self.ledger.quorum
        return len({w.jurisdiction for w in self.witnesses if w.jurisdiction != self.ledger.operator})


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback addresses (127.0.0.0/8, ::1); host names other than `localhost` are not."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def load_config(path: Path) -> GatewayConfig:
    """Read and check the configuration file `path`; raise ConfigError at the first fault.

    Relative paths in the file are resolved against the file's folder.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(path, "", "no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(path, "", f"cannot be read: {error}") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise _syntax_error(path, error) from None
    config = _Reader(path, path.resolve().parent).gateway(document)
    _check(config, path)
    return config


def default_config(data_dir: Path) -> GatewayConfig:
    """The demonstration's configuration: test mode on loopback, embedded database, the published test keys,
    CN-GD, HK and MO on pull delivery, and every type for every purpose between each pair — with a transfer
    mechanism required for what Guangdong sends out (docs/data-protection.md)."""
    keys = contract_dir("keys") / "test"
    codes = ("CN-GD", "HK", "MO")
    config = GatewayConfig(
        source=None,
        mode="test",
        listen_host="127.0.0.1",
        listen_port=8443,
        public_base_url="http://127.0.0.1:8443",
        data_dir=Path(data_dir).resolve(),
        database_url=None,
        tls=None,
        insecure_development=False,
        hub=HubKeys(
            receipt_key=keys / "test-hub-receipt-1.key.jwk",
            trust_list=keys / "trust-list.json",
            checkpoint_key=keys / "test-hub-checkpoint-1.key.jwk",
        ),
        limits=Limits(),
        commit=CommitSettings(),
        delivery=DeliverySettings(),
        jurisdictions=MappingProxyType(
            {code: Jurisdiction(code, "pull", None, default_adapter(code)) for code in codes}
        ),
        routes=tuple(
            route
            for sender in codes
            for receiver in codes
            if sender != receiver
            for route in (
                # Personal data leaving the mainland needs a transfer mechanism (PIPL art. 38;
                # docs/data-protection.md); receipts carry none and need nothing.
                Route(
                    sender, receiver, ("referral.*",), ("referral", "assistance_feedback"),
                    require_transfer_mechanism=sender == "CN-GD",
                    # Health is sensitive personal information (PIPL art. 28): separate consent (art. 29).
                    consent_for_needs=("medical",) if sender == "CN-GD" else (),
                ),
                # A household's deposits, property and benefits are financial information, sensitive
                # under PIPL art. 28: verifications out of Guangdong rest on consent.
                Route(
                    sender, receiver, ("verification.*",), ("economic_verification",),
                    require_transfer_mechanism=sender == "CN-GD", require_consent=sender == "CN-GD",
                ),
                Route(sender, receiver, ("receipt",), ("delivery_receipt",)),
            )
        ),
    )
    _check(config, "<default_config>")
    return config


# --- reading: TOML values into typed values (types, required and unknown keys) ---


_REQUIRED: Any = object()
_TOML_KINDS = {
    str: "a string", int: "an integer", float: "a number", bool: "a boolean", list: "an array", dict: "a table"
}


def _syntax_error(path: Path, error: tomllib.TOMLDecodeError) -> ConfigError:
    message = str(error)
    where = re.search(r"\(at (line \d+, column \d+)\)$", message)
    if where:
        return ConfigError(path, where.group(1), "not valid TOML: " + message[: where.start()].strip())
    return ConfigError(path, "", f"not valid TOML: {message}")


def _kind_of(value: Any) -> str:
    for python_type in (bool, int, float, str, list, dict):
        if isinstance(value, python_type):
            return _TOML_KINDS[python_type]
    return "a date or time"


class _Table:
    """One TOML table being read: each key taken once, and whatever is left at the end is a typo."""

    def __init__(self, file: Path, data: Mapping[str, Any], prefix: str) -> None:
        self.file = file
        self.data = data
        self.prefix = prefix
        self._taken: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def error(self, name: str, reason: str) -> ConfigError:
        return ConfigError(self.file, self.key(name), reason)

    def missing(self, name: str, reason: str = "required") -> ConfigError:
        """A required key is absent; point at a near miss, which is most likely a typo of it."""
        near = difflib.get_close_matches(name, [key for key in self.data if key != name], n=1)
        return self.error(name, reason + (f" (is {near[0]} a typo of {name}?)" if near else ""))

    def take(self, name: str, python_type: type, default: Any = _REQUIRED) -> Any:
        self._taken.add(name)
        if name not in self.data:
            if default is _REQUIRED:
                raise self.missing(name)
            return default
        value = self.data[name]
        matches = isinstance(value, python_type) and not (python_type is int and isinstance(value, bool))
        if python_type is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not matches:
            raise self.error(name, f"expected {_TOML_KINDS[python_type]}, got {_kind_of(value)}")
        return value

    def strings(self, name: str, default: Any = _REQUIRED) -> tuple[str, ...]:
        value = self.take(name, list, default)
        for index, item in enumerate(value):
            if not isinstance(item, str):
                raise self.error(f"{name}[{index}]", f"expected a string, got {_kind_of(item)}")
        return tuple(value)

    def table(self, name: str) -> _Table | None:
        value = self.take(name, dict, None)
        return None if value is None else _Table(self.file, value, self.key(name))

    def finish(self) -> None:
        """Refuse any key nobody took, suggesting the nearest known one."""
        for name in self.data:
            if name not in self._taken:
                near = difflib.get_close_matches(name, sorted(self._taken), n=1)
                raise self.error(name, "unknown key" + (f" (did you mean {near[0]}?)" if near else ""))


class _Reader:
    def __init__(self, file: Path, folder: Path) -> None:
        self.file = file
        self.folder = folder

    def path(self, table: _Table, name: str, default: Any = _REQUIRED) -> Path | None:
        value = table.take(name, str, default)
        if value is None:
            return None
        if not value:
            raise table.error(name, "empty path")
        return (self.folder / value).resolve()

    def gateway(self, document: Mapping[str, Any]) -> GatewayConfig:
        top = _Table(self.file, document, "")
        mode = top.take("mode", str)
        listen_host = top.take("listen_host", str, "127.0.0.1")
        listen_port = top.take("listen_port", int, 8443)
        public_base_url = top.take("public_base_url", str)
        insecure_development = top.take("insecure_development", bool, False)
        data_dir = self.path(top, "data_dir", "var/gateway")
        database_url = top.take("database_url", str, None)
        database_timeout_seconds = top.take("database_timeout_seconds", float, 30.0)
        tls = self.tls(top.table("tls"))
        hub_table = top.table("hub")
        if hub_table is None:
            raise top.missing("hub", "required: the [hub] table names the hub's keys and trust list")
        hub = self.hub(hub_table)
        limits = self.settings(top.table("limits"), Limits)
        commit = self.settings(top.table("commit"), CommitSettings)
        delivery = self.settings(top.table("delivery"), DeliverySettings)
        jurisdictions = self.jurisdictions(top)
        routes = self.routes(top)
        ledger = self.ledger(top.table("ledger"))
        witnesses = self.witnesses(top)
        console = self.console(top.table("console"))
        storage = self.storage(top.table("storage"))
        top.finish()
        assert data_dir is not None
        return GatewayConfig(
            source=self.file.resolve(),
            mode=mode,
            listen_host=listen_host,
            listen_port=listen_port,
            public_base_url=_normalise_url(public_base_url),
            data_dir=data_dir,
            database_url=database_url,
            database_timeout_seconds=database_timeout_seconds,
            tls=tls,
            insecure_development=insecure_development,
            hub=hub,
            limits=limits,
            commit=commit,
            delivery=delivery,
            jurisdictions=jurisdictions,
            routes=routes,
            ledger=ledger,
            witnesses=witnesses,
            console=console,
            storage=storage,
        )

    def storage(self, table: _Table | None) -> StorageSettings:
        if table is None:
            return StorageSettings()
        settings = StorageSettings(
            payload_keys=self.path(table, "payload_keys", None),
            purge_interval_seconds=table.take("purge_interval_seconds", float, 3600.0),
        )
        table.finish()
        return settings

    def console(self, table: _Table | None) -> ConsoleSettings:
        if table is None:
            return ConsoleSettings()
        settings = ConsoleSettings(
            enabled=table.take("enabled", bool, True),
            session_idle_minutes=table.take("session_idle_minutes", int, 15),
            session_max_hours=table.take("session_max_hours", int, 8),
            blind_index_key=self.path(table, "blind_index_key", None),
        )
        table.finish()
        return settings

    def ledger(self, table: _Table | None) -> LedgerSettings:
        if table is None:
            return LedgerSettings()
        settings = LedgerSettings(
            origin=table.take("origin", str, None),
            checkpoint_interval_seconds=table.take("checkpoint_interval_seconds", float, 10.0),
            operator=table.take("operator", str, "CN-GD"),
            quorum=table.take("quorum", int, None),
            verify_interval_seconds=table.take("verify_interval_seconds", float, 3600.0),
            previous_log_keys=table.strings("previous_log_keys", ()),
        )
        table.finish()
        return settings

    def witnesses(self, top: _Table) -> tuple[Witness, ...]:
        entries = top.take("witnesses", list, None) or []
        result = []
        for index, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise top.error(f"witnesses[{index}]", f"expected a table ([[witnesses]]), got {_kind_of(entry)}")
            table = _Table(self.file, entry, f"witnesses[{index}]")
            witness = Witness(
                jurisdiction=table.take("jurisdiction", str), vkey=table.take("vkey", str), url=table.take("url", str, None),
                previous_vkeys=table.strings("previous_vkeys", ()),
            )
            table.finish()
            result.append(witness)
        return tuple(result)

    def tls(self, table: _Table | None) -> TlsConfig | None:
        if table is None:
            return None
        certificate = self.path(table, "certificate", None)
        private_key = self.path(table, "private_key", None)
        client_ca = self.path(table, "client_ca", None)
        outgoing = {name: self.path(table, name, None) for name in ("outgoing_certificate", "outgoing_private_key", "outgoing_ca")}
        table.finish()
        for name, value in (("certificate", certificate), ("private_key", private_key)):
            if value is None:
                raise table.error(name, "required: TLS needs both certificate and private_key")
        if (outgoing["outgoing_certificate"] is None) != (outgoing["outgoing_private_key"] is None):
            raise table.error("outgoing_private_key", "outgoing_certificate and outgoing_private_key go together")
        assert certificate is not None and private_key is not None
        return TlsConfig(certificate, private_key, client_ca, **outgoing)

    def hub(self, table: _Table) -> HubKeys:
        receipt_key = self.path(table, "receipt_key")
        trust_list = self.path(table, "trust_list")
        checkpoint_key = self.path(table, "checkpoint_key", None)
        table.finish()
        assert receipt_key is not None and trust_list is not None
        return HubKeys(receipt_key, trust_list, checkpoint_key)

    def settings(self, table: _Table | None, cls: type) -> Any:
        if table is None:
            return cls()
        values: dict[str, Any] = {}
        for spec in fields(cls):
            if "fixed" in spec.metadata:
                if spec.name in table.data:
                    raise table.error(spec.name, spec.metadata["fixed"] + "; not configurable")
                continue
            values[spec.name] = table.take(spec.name, {"int": int, "float": float}[str(spec.type)], spec.default)
        table.finish()
        return cls(**values)

    def jurisdictions(self, top: _Table) -> Mapping[str, Jurisdiction]:
        tables = top.table("jurisdictions")
        if tables is None or not tables.data:
            raise top.missing("jurisdictions", "required: at least one [jurisdictions.CODE] table")
        result: dict[str, Jurisdiction] = {}
        for code in list(tables.data):
            table = tables.table(code)
            assert table is not None
            delivery = table.take("delivery", str, "pull")
            endpoint = table.take("endpoint", str, None)
            adapter = table.take("adapter", str, default_adapter(code))
            table.finish()
            result[code] = Jurisdiction(code, delivery, endpoint, adapter)
        return MappingProxyType(result)

    def routes(self, top: _Table) -> tuple[Route, ...]:
        entries = top.take("routes", list, None)
        if not entries:
            raise top.missing(
                "routes", "required: at least one [[routes]] table (route policy is deny-by-default, PROTO-5.4-2)"
            )
        result = []
        for index, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise top.error(f"routes[{index}]", f"expected a table ([[routes]]), got {_kind_of(entry)}")
            table = _Table(self.file, entry, f"routes[{index}]")
            route = Route(
                sender=table.take("sender", str),
                receiver=table.take("receiver", str),
                types=table.strings("types"),
                purposes=table.strings("purposes"),
                require_consent=table.take("require_consent", bool, False),
                require_transfer_mechanism=table.take("require_transfer_mechanism", bool, False),
                transfer_mechanisms=table.strings("transfer_mechanisms", list(TRANSFER_MECHANISMS)),
                consent_for_needs=table.strings("consent_for_needs", []),
                retention_days=table.take("retention_days", int, 2555),
            )
            table.finish()
            result.append(route)
        return tuple(result)


def _normalise_url(url: str) -> str:
    """Lowercase the scheme and host, as PROTO-9.5-3 compares them; leave the rest as written."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url  # _check refuses it with the reason
    if not parts.scheme or not parts.netloc:
        return url
    userinfo, at, hostport = parts.netloc.rpartition("@")
    return f"{parts.scheme.lower()}://{userinfo}{at}{hostport.lower()}" + url.split(parts.netloc, 1)[1]


# --- checking: the typed configuration against every rule ---

_Fail = Callable[[str, str], ConfigError]


def _check(config: GatewayConfig, file: Path | str) -> None:
    """Raise ConfigError at the first rule `config` breaks; keys are those of the file."""

    def fail(key: str, reason: str) -> ConfigError:
        return ConfigError(file, key, reason)

    if config.mode not in MODES:
        raise fail("mode", f"must be one of {', '.join(MODES)}, got {config.mode!r}")
    production = config.mode == "production"
    if production and config.insecure_development:
        raise fail("insecure_development", "not allowed in production mode")
    _check_listen(config, fail)
    problem = _base_url_problem(config.public_base_url, config.insecure_development)
    if problem:
        raise fail("public_base_url", problem)
    if config.data_dir.exists() and not config.data_dir.is_dir():
        raise fail("data_dir", f"{config.data_dir} exists and is not a folder")
    if config.database_url is not None:
        problem = _database_url_problem(config.database_url)
        if problem:
            raise fail("database_url", problem)
    if not 1 <= config.database_timeout_seconds <= 3600:
        raise fail("database_timeout_seconds", "must be between 1 and 3600 seconds")
    if config.tls is not None:
        _check_tls(config.tls, fail)
    _check_hub(config.hub, production, fail)
    for prefix, settings in (("limits", config.limits), ("commit", config.commit), ("delivery", config.delivery)):
        _check_ranges(prefix, settings, fail)
    if config.limits.max_request_bytes < config.limits.max_message_bytes:
        raise fail("limits.max_request_bytes", "must be at least limits.max_message_bytes: a request carries a message")
    if config.delivery.retry_max_seconds < config.delivery.retry_initial_seconds:
        raise fail("delivery.retry_max_seconds", "must be at least delivery.retry_initial_seconds")
    for jurisdiction in config.jurisdictions.values():
        _check_jurisdiction(jurisdiction, config.insecure_development, fail)
    _check_routes(config.routes, config.jurisdictions, fail)
    _check_ledger(config, fail)
    _check_console(config, fail)
    _check_storage(config, production, fail)


def _check_storage(config: GatewayConfig, production: bool, fail: _Fail) -> None:
    """The payload keys live outside the embedded database's directory and, in production, outside any git checkout."""
    if not 1 <= config.storage.purge_interval_seconds <= 86400:
        raise fail("storage.purge_interval_seconds", "must be between 1 and 86400 seconds")
    folder = config.storage.payload_keys
    if folder is None:
        if production and not os.environ.get("GATEWAY_PAYLOAD_KEYS"):
            raise fail("storage.payload_keys", "required in production mode (or the variable GATEWAY_PAYLOAD_KEYS): "
                       "the keys that seal personal data live outside the database")
        return
    if folder.exists() and not folder.is_dir():
        raise fail("storage.payload_keys", f"{folder} is not a folder")
    database_dir = config.data_dir / "postgres"
    if folder == database_dir or database_dir in folder.parents:
        raise fail("storage.payload_keys", f"{folder} is inside the embedded database's directory: a copy of the database would carry its keys")
    if production and any((parent / ".git").exists() for parent in (folder, *folder.parents)):
        raise fail("storage.payload_keys", f"{folder} is inside a git checkout: keys never live in a repository")


def _check_console(config: GatewayConfig, fail: _Fail) -> None:
    console = config.console
    if not 1 <= console.session_idle_minutes <= 1440:
        raise fail("console.session_idle_minutes", "must be between 1 and 1440 minutes")
    if not 1 <= console.session_max_hours <= 24:
        raise fail("console.session_max_hours", "must be between 1 and 24 hours")
    if console.blind_index_key is not None:
        problem = _file_problem(console.blind_index_key)
        if problem:
            raise fail("console.blind_index_key", problem)


def _check_listen(config: GatewayConfig, fail: _Fail) -> None:
    host = config.listen_host
    if not _is_host(host):
        raise fail("listen_host", f"{host!r} is not an IP address or host name")
    if not 0 <= config.listen_port <= 65535:
        raise fail("listen_port", f"must be between 0 and 65535 (0: any free port), got {config.listen_port}")
    if config.tls is None and not is_loopback(host) and not config.insecure_development:
        raise fail(
            "listen_host",
            f"{host} is not a loopback address: serving it without [tls] needs insecure_development = true",
        )


_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_NAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*")


def _is_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return bool(_HOST_NAME.fullmatch(host))


def _split_url(url: str) -> tuple[SplitResult | None, str | None]:
    """`url` split, or the reason it is not an absolute http(s) URL with a host."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as error:
        return None, f"not a valid URL ({error})"
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None, "must be an absolute http:// or https:// URL with a host"
    if parts.username is not None or parts.password is not None:
        return None, "must not carry a user name or password"
    if "#" in url:
        return None, "must not have a fragment"
    return parts, None


def _secure_enough(parts: SplitResult, insecure_development: bool) -> str | None:
    if parts.scheme.lower() == "https" or insecure_development or is_loopback(parts.hostname or ""):
        return None
    return "must use https (plain http only for a loopback host or with insecure_development = true)"


def _base_url_problem(url: str, insecure_development: bool) -> str | None:
    parts, problem = _split_url(url)
    if parts is None:
        return problem
    if "?" in url:
        return "must not have a query: request proofs' htu is this URL plus the request path (docs/protocol.md §9.5)"
    if url.endswith("/"):
        return "must not end with '/': request proofs' htu is this URL plus the request path, which starts with '/'"
    default_port = {"http": 80, "https": 443}[parts.scheme.lower()]
    if parts.port == default_port:
        return f"leave out the default port :{default_port}: htu is compared as a string (docs/protocol.md PROTO-9.5-3)"
    return _secure_enough(parts, insecure_development)


def _database_url_problem(url: str) -> str | None:
    """Why `url` is not a PostgreSQL URL, without echoing it (it may hold a password)."""
    if not url:
        return "empty; leave the key out to use the embedded server"
    try:
        parts = urlsplit(url)
    except ValueError:
        return "not a valid URL"
    if parts.scheme not in ("postgresql", "postgres"):
        return "must be a postgresql:// URL"
    # libpq and asyncpg take several hosts, each with its own port (host1:5432,host2:5432): a failover setting.
    for host in parts.netloc.rpartition("@")[2].split(","):
        found = _HOST_AND_PORT.fullmatch(host)
        if found is None or (found.group(1) is not None and not 1 <= int(found.group(1)) <= 65535):
            return "not a valid URL: each host must be NAME, NAME:PORT, [IPv6] or [IPv6]:PORT, with a port from 1 to 65535"
    return None


_HOST_AND_PORT = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[^\[\]:/@,]*)(?::([0-9]{1,5}))?")


def _check_tls(tls: TlsConfig, fail: _Fail) -> None:
    for name in ("certificate", "private_key", "client_ca", "outgoing_certificate", "outgoing_private_key", "outgoing_ca"):
        path = getattr(tls, name)
        if path is not None:
            problem = _file_problem(path)
            if problem:
                raise fail(f"tls.{name}", problem)
    try:
        x509.load_pem_x509_certificates(tls.certificate.read_bytes())
    except ValueError:
        raise fail("tls.certificate", f"{tls.certificate} holds no PEM certificate") from None
    try:
        serialization.load_pem_private_key(tls.private_key.read_bytes(), password=None)
    except (ValueError, TypeError):
        raise fail("tls.private_key", f"{tls.private_key} is not an unencrypted PEM private key") from None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(tls.certificate, tls.private_key)
    except ssl.SSLError:
        raise fail("tls.private_key", "does not match tls.certificate") from None
    for name in ("client_ca", "outgoing_ca", "outgoing_certificate"):
        path = getattr(tls, name)
        if path is None:
            continue
        try:
            x509.load_pem_x509_certificates(path.read_bytes())
        except ValueError:
            raise fail(f"tls.{name}", f"{path} holds no PEM certificate") from None
    if tls.outgoing_certificate is not None:
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(tls.outgoing_certificate, tls.outgoing_private_key)
        except ssl.SSLError:
            raise fail("tls.outgoing_private_key", "does not match tls.outgoing_certificate") from None


def _file_problem(path: Path) -> str | None:
    if not path.exists():
        return f"no such file: {path}"
    if not path.is_file():
        return f"not a file: {path}"
    return None


def _check_hub(hub: HubKeys, production: bool, fail: _Fail) -> None:
    keys: dict[str, PrivateKey] = {}
    for name in ("receipt_key", "checkpoint_key"):
        path = getattr(hub, name)
        if path is None:
            continue
        key = _read_key(path, f"hub.{name}", fail)
        if production and (key.kid.startswith("test-") or path.name.startswith("test-")):
            raise fail(
                f"hub.{name}",
                f"{path.name} (kid {key.kid}) is a test key, refused in production mode (docs/protocol.md §10.5)",
            )
        keys[name] = key
    checkpoint = keys.get("checkpoint_key")
    if checkpoint is not None:
        if checkpoint.alg != "Ed25519":
            raise fail("hub.checkpoint_key", "checkpoint keys are Ed25519 keys (docs/protocol.md PROTO-10.2-4)")
        if checkpoint.kid == keys["receipt_key"].kid:
            raise fail("hub.checkpoint_key", "must be another key than hub.receipt_key (one key, one use)")
    problem = _file_problem(hub.trust_list)
    if problem:
        raise fail("hub.trust_list", problem)
    try:
        load_trust_list(hub.trust_list.read_bytes(), require_production=production)
    except ProtocolError as error:
        where = f" at {error.where}" if error.where else ""
        raise fail("hub.trust_list", f"not a usable trust list ({error.code}{where}): {error.detail}") from None


def _read_key(path: Path, key: str, fail: _Fail) -> PrivateKey:
    problem = _file_problem(path)
    if problem:
        raise fail(key, problem)
    try:
        return private_key_from_jwk(strict_json.loads(path.read_bytes(), part="key file"))
    except (ValueError, ProtocolError) as error:
        raise fail(key, f"{path} is not a private signing key in JWK form ({error})") from None


def _check_ranges(prefix: str, settings: Any, fail: _Fail) -> None:
    for spec in fields(settings):
        if "range" not in spec.metadata:
            continue
        low, high = spec.metadata["range"]
        value = getattr(settings, spec.name)
        if not low <= value <= high:
            note = f" ({spec.metadata['note']})" if spec.metadata["note"] else ""
            raise fail(f"{prefix}.{spec.name}", f"must be between {low} and {high}, got {value}{note}")


def _check_jurisdiction(jurisdiction: Jurisdiction, insecure_development: bool, fail: _Fail) -> None:
    key = f"jurisdictions.{jurisdiction.code}"
    if not JURISDICTION_CODE.fullmatch(jurisdiction.code):
        raise fail(key, f"not a jurisdiction code like CN-GD, HK or MO (^{JURISDICTION_CODE.pattern}$, docs/protocol.md §2.1)")
    if jurisdiction.delivery not in DELIVERY_MODES:
        raise fail(f"{key}.delivery", f"must be push or pull, got {jurisdiction.delivery!r}")
    if jurisdiction.delivery == "push":
        if jurisdiction.endpoint is None:
            raise fail(f"{key}.endpoint", "required for push delivery: the URL the hub POSTs deliveries to")
        parts, problem = _split_url(jurisdiction.endpoint)
        problem = problem or _secure_enough(parts, insecure_development)  # type: ignore[arg-type]
        if problem:
            raise fail(f"{key}.endpoint", problem)
    elif jurisdiction.endpoint is not None:
        raise fail(f"{key}.endpoint", "only push delivery has an endpoint; a pull receiver fetches GET /v1/inbox")
    if not ADAPTER_NAME.fullmatch(jurisdiction.adapter):
        raise fail(f"{key}.adapter", f"{jurisdiction.adapter!r} is not a module name (lowercase letters, digits, _, dots)")
    from gateway.adapters.registry import AdapterError, load_adapter

    try:
        load_adapter(jurisdiction.code, jurisdiction.adapter)
    except AdapterError as error:
        raise fail(f"{key}.adapter", str(error)) from None


def _check_routes(routes: Sequence[Route], jurisdictions: Mapping[str, Jurisdiction], fail: _Fail) -> None:
    if not routes:
        raise fail("routes", "none: route policy is deny-by-default, so the hub would refuse every message")
    configured = ", ".join(jurisdictions)
    combinations: list[set[tuple[str, str]]] = []
    for index, route in enumerate(routes):
        key = f"routes[{index}]"
        for name in ("sender", "receiver"):
            code = getattr(route, name)
            if code not in jurisdictions:
                raise fail(f"{key}.{name}", f"{code!r} is not a configured jurisdiction ({configured})")
        if route.receiver == route.sender:
            raise fail(f"{key}.receiver", "equals the sender: the hub carries messages between jurisdictions")
        _check_route_types(route, f"{key}.types", fail)
        _check_vocabulary(route.purposes, PURPOSES, f"{key}.purposes", "purpose (docs/protocol.md §5.4)", fail)
        _check_vocabulary(
            route.transfer_mechanisms, TRANSFER_MECHANISMS, f"{key}.transfer_mechanisms",
            "transfer mechanism kind (docs/protocol.md §5.5)", fail,
        )
        if not 1 <= route.retention_days <= 36500:
            raise fail(f"{key}.retention_days", f"must be between 1 and 36500 days, got {route.retention_days}")
        if route.consent_for_needs:
            _check_vocabulary(
                route.consent_for_needs, ASSISTANCE_CATEGORIES, f"{key}.consent_for_needs", "assistance category (docs/protocol.md §6.1)", fail
            )
        covered = route.message_types()
        for purpose in route.purposes:
            if not any(purpose in PURPOSES_BY_TYPE[t] for t in covered):
                raise fail(f"{key}.purposes", f"no type of this route may carry {purpose} (docs/protocol.md §5.4)")
        for entry in route.types:
            if entry in PURPOSES_BY_TYPE and not set(PURPOSES_BY_TYPE[entry]) & set(route.purposes):
                needs = " or ".join(PURPOSES_BY_TYPE[entry])
                raise fail(
                    f"{key}.types", f"{entry} carries {needs}, which this route does not list in purposes (docs/protocol.md §5.4)"
                )
        mine = {(t, p) for t in covered for p in route.purposes if p in PURPOSES_BY_TYPE[t]}
        for other, theirs in enumerate(combinations):
            before = routes[other]
            shared = mine & theirs
            if (before.sender, before.receiver) == (route.sender, route.receiver) and shared:
                message_type, purpose = min(shared, key=lambda pair: (MESSAGE_TYPES.index(pair[0]), pair[1]))
                raise fail(
                    key,
                    f"overlaps routes[{other}] ({route.sender} -> {route.receiver}, {message_type} for {purpose}): "
                    "one combination, one route",
                )
        combinations.append(mine)


def _check_route_types(route: Route, key: str, fail: _Fail) -> None:
    if not route.types:
        raise fail(key, "empty: list the types this route allows")
    seen: set[str] = set()
    for entry in route.types:
        members = TYPE_FAMILIES.get(entry) or ((entry,) if entry in MESSAGE_TYPES else ())
        if not members:
            raise fail(key, f"{entry!r} is not a registered type (docs/protocol.md §6), referral.* or verification.*")
        if set(members) <= seen:
            raise fail(key, f"{entry} is listed twice or already covered by a wildcard")
        if entry in TYPE_FAMILIES and seen & set(members):
            raise fail(key, f"{entry} covers a type listed before it; list the wildcard alone")
        seen.update(members)


def _check_vocabulary(values: tuple[str, ...], allowed: tuple[str, ...], key: str, what: str, fail: _Fail) -> None:
    if not values:
        raise fail(key, "empty: list at least one")
    for value in values:
        if value not in allowed:
            raise fail(key, f"{value!r} is not a {what}; one of {', '.join(allowed)}")
    if len(set(values)) != len(values):
        raise fail(key, "lists a value twice")


def _check_ledger(config: GatewayConfig, fail: _Fail) -> None:
    from gateway.ledger.notes import NoteError, parse_vkey

    ledger = config.ledger
    if ledger.origin is not None and (not ledger.origin or any(c.isspace() for c in ledger.origin) or "+" in ledger.origin):
        raise fail("ledger.origin", "a non-empty name without spaces or '+' (C2SP tlog-checkpoint origin and key name)")
    for name in ("checkpoint_interval_seconds", "verify_interval_seconds"):
        if not 0.01 <= getattr(ledger, name) <= 86400 * 7:
            raise fail(f"ledger.{name}", "must be between 0.01 and 604800 seconds")
    if ledger.operator not in config.jurisdictions:
        raise fail("ledger.operator", f"{ledger.operator!r} is not a configured jurisdiction")
    names = set()
    for index, witness in enumerate(config.witnesses):
        key = f"witnesses[{index}]"
        if witness.jurisdiction not in config.jurisdictions:
            raise fail(f"{key}.jurisdiction", f"{witness.jurisdiction!r} is not a configured jurisdiction")
        try:
            parsed = parse_vkey(witness.vkey)
        except NoteError as error:
            raise fail(f"{key}.vkey", f"not a C2SP vkey: {error}") from None
        if parsed.kind != 0x04:
            raise fail(f"{key}.vkey", "a witness key is a cosignature/v1 key (type 0x04, C2SP tlog-cosignature)")
        if parsed.name in names:
            raise fail(f"{key}.vkey", f"witness name {parsed.name!r} appears twice")
        names.add(parsed.name)
        for position, vkey in enumerate(witness.previous_vkeys):
            where = f"{key}.previous_vkeys[{position}]"
            try:
                previous = parse_vkey(vkey)
            except NoteError as error:
                raise fail(where, f"not a C2SP vkey: {error}") from None
            if previous.kind != 0x04 or previous.name != parsed.name or previous.public == parsed.public:
                raise fail(where, f"an earlier cosignature key (type 0x04) of {parsed.name!r}, other than its vkey")
        if sum(1 for other in config.witnesses if other.jurisdiction == witness.jurisdiction) > 1:
            raise fail(f"{key}.jurisdiction", f"one witness per jurisdiction: {witness.jurisdiction} has more (a quorum counts jurisdictions)")
        if witness.url is not None:
            parts, problem = _split_url(witness.url)
            problem = problem or _secure_enough(parts, config.insecure_development)  # type: ignore[arg-type]
            if problem:
                raise fail(f"{key}.url", problem)
    for position, vkey in enumerate(ledger.previous_log_keys):
        try:
            previous = parse_vkey(vkey)
        except NoteError as error:
            raise fail(f"ledger.previous_log_keys[{position}]", f"not a C2SP vkey: {error}") from None
        if previous.kind != 0x01 or previous.name == config.origin:
            raise fail(f"ledger.previous_log_keys[{position}]",
                       "a checkpoint key (type 0x01) of an earlier origin, named by that origin (not ledger.origin)")
    if not 0 <= config.quorum <= len(config.witnesses):
        raise fail("ledger.quorum", f"must be between 0 and the number of witnesses ({len(config.witnesses)}), got {config.quorum}")
    if config.witnesses and config.hub.checkpoint_key is None:
        raise fail("hub.checkpoint_key", "required when witnesses are configured: checkpoints are what they cosign")

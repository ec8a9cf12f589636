"""The configuration (gateway/config.py, docs/configuration.md): every rule checked at load, named by file and key."""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.config import (
    PURPOSES,
    TRANSFER_MECHANISMS,
    CommitSettings,
    LedgerSettings,
    Witness,
    ConfigError,
    DeliverySettings,
    GatewayConfig,
    HubKeys,
    Jurisdiction,
    Limits,
    Route,
    ConsoleSettings,
    StorageSettings,
    TlsConfig,
    default_config,
    find_route,
    load_config,
)
from gateway.keyfiles import write_private_key
from gateway.protocol.cases import MESSAGE_TYPES
from gateway.protocol.keys import generate
from tests.cli_runner import run_cli
from tests.conftest import REPO, TEST_KEYS

EXAMPLES = REPO / "docs" / "examples"
GUIDE = REPO / "docs" / "configuration.md"

BASE = f"""\
mode = "test"
public_base_url = "http://127.0.0.1:8443"
#TOP

[hub]
receipt_key = "{TEST_KEYS}/test-hub-receipt-1.key.jwk"
trust_list = "{TEST_KEYS}/trust-list.json"

[jurisdictions.CN-GD]
[jurisdictions.HK]
[jurisdictions.MO]

[[routes]]
sender = "CN-GD"
receiver = "HK"
types = ["referral.*"]
purposes = ["referral"]
"""


def _text(top: str = "", tables: str = "", replace: dict[str, str] | None = None) -> str:
    """BASE with `top` among the top-level keys, `tables` appended, and each `replace` applied once."""
    text = BASE.replace("#TOP", top) + "\n" + tables
    for old, new in (replace or {}).items():
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


def _write(folder: Path, text: str, name: str = "gateway.toml") -> Path:
    path = folder / name
    path.write_text(text, "utf-8")
    return path


def _load(tmp_path: Path, **parts) -> GatewayConfig:
    return load_config(_write(tmp_path, _text(**parts)))


def _refusal(tmp_path: Path, **parts) -> ConfigError:
    path = _write(tmp_path, _text(**parts))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.file == path
    return caught.value


def _assert_refused(error: ConfigError, key: str, fragment: str) -> None:
    assert error.key == key, f"expected key {key}, got {error.key}: {error}"
    assert fragment in error.reason, f"{fragment!r} not in {error.reason!r}"


def _route(
    sender: str = "HK", receiver: str = "CN-GD", types: str = '["referral.*"]', purposes: str = '["referral"]', more: str = ""
) -> str:
    return f'[[routes]]\nsender = "{sender}"\nreceiver = "{receiver}"\ntypes = {types}\npurposes = {purposes}\n{more}\n'


# --- the examples and the defaults ---


def test_the_complete_example_is_accepted():
    config = load_config(EXAMPLES / "gateway.toml")
    assert config.mode == "test"
    assert set(config.jurisdictions) == {"CN-GD", "HK", "MO"}
    assert config.jurisdictions["HK"].delivery == "push"
    assert config.hub.checkpoint_key == (TEST_KEYS / "test-hub-checkpoint-1.key.jwk").resolve()


def test_the_minimal_example_is_accepted_and_takes_the_documented_defaults():
    config = load_config(EXAMPLES / "gateway.minimal.toml")
    assert (config.listen_host, config.listen_port) == ("127.0.0.1", 8443)
    assert config.data_dir == (EXAMPLES / "var" / "gateway").resolve()
    assert config.database_url is None and config.tls is None and not config.insecure_development
    assert config.hub.checkpoint_key is None
    assert (config.limits, config.commit, config.delivery) == (Limits(), CommitSettings(), DeliverySettings())
    assert config.jurisdictions["CN-GD"] == Jurisdiction("CN-GD", "pull", None, "cn_gd")


def test_the_default_push_timeout_is_below_the_default_lease():
    """docs/configuration.md: a push must end within its lease, which also covers accepting the receipt it brings back;
    otherwise another process may take the row over and push the message again meanwhile."""
    from gateway.hub.delivery import DeliveryPolicy

    assert DeliverySettings().push_timeout_seconds < DeliverySettings().lease_seconds
    assert DeliveryPolicy().push_timeout_seconds < DeliveryPolicy().lease_seconds
    assert DeliveryPolicy().push_timeout_seconds == DeliverySettings().push_timeout_seconds


_TABLES = ("source", "tls", "hub", "limits", "commit", "delivery", "jurisdictions", "routes", "ledger", "witnesses", "storage", "console")


def _documented_keys() -> list[str]:
    top = [f.name for f in dataclasses.fields(GatewayConfig) if f.name not in _TABLES]
    tables = [TlsConfig, HubKeys, Limits, CommitSettings, DeliverySettings, Jurisdiction, Route, LedgerSettings, Witness, StorageSettings, ConsoleSettings]
    return top + [f.name for cls in tables for f in dataclasses.fields(cls) if f.name != "code"]


def test_the_configuration_guide_documents_every_key():
    guide = GUIDE.read_text("utf-8")
    missing = [key for key in _documented_keys() if f"`{key}`" not in guide]
    assert not missing, f"docs/configuration.md does not document {missing}"
    for precedence in ("--database-url", "GATEWAY_DATABASE_URL", "database_url", "data_dir"):
        assert precedence in guide


def test_the_complete_example_shows_every_key():
    example = (EXAMPLES / "gateway.toml").read_text("utf-8")
    fixed = {"freshness_seconds", "request_proof_max_age_seconds"}
    missing = [key for key in _documented_keys() if key not in fixed and not re.search(rf"^#? ?{key} =", example, re.MULTILINE)]
    assert not missing, f"docs/examples/gateway.toml does not show {missing}"


def test_the_default_configuration_runs_the_demo_in_test_mode_on_loopback(tmp_path):
    config = default_config(tmp_path / "data")
    assert config.mode == "test" and config.listen_host == "127.0.0.1" and config.tls is None
    assert config.database_url is None and config.data_dir == (tmp_path / "data").resolve()
    assert config.hub.receipt_key.name == "test-hub-receipt-1.key.jwk" and config.hub.receipt_key.exists()
    assert set(config.jurisdictions) == {"CN-GD", "HK", "MO"}


def test_the_default_routes_allow_every_type_for_its_purposes_between_each_pair_and_nothing_else(tmp_path):
    from gateway.config import PURPOSES_BY_TYPE

    routes = default_config(tmp_path).routes
    for sender in ("CN-GD", "HK", "MO"):
        for receiver in ("CN-GD", "HK", "MO"):
            for message_type in MESSAGE_TYPES:
                for purpose in PURPOSES_BY_TYPE[message_type]:
                    allowed = find_route(routes, sender, receiver, message_type, purpose) is not None
                    assert allowed == (sender != receiver)
    assert find_route(routes, "CN-GD", "SG", "referral.submit", "referral") is None


# --- reading: the file, its syntax, types and unknown keys ---


def test_config_error_reads_file_then_key_then_reason():
    assert str(ConfigError(Path("a/gateway.toml"), "routes[2].purposes", "empty")) == "a/gateway.toml: routes[2].purposes: empty"
    assert str(ConfigError(Path("a/gateway.toml"), "", "no such file")) == "a/gateway.toml: no such file"


def test_a_missing_file_is_refused_naming_it(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "absent.toml")
    assert caught.value.file == tmp_path / "absent.toml" and "no such file" in caught.value.reason


def test_a_toml_syntax_error_names_its_line(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, 'mode = "test"\nlisten_port = = 1\n'))
    assert caught.value.key.startswith("line 2") and "not valid TOML" in caught.value.reason


@pytest.mark.parametrize(
    "parts, key, fragment",
    [
        ({"top": 'databse_url = "postgresql://h/db"'}, "databse_url", "did you mean database_url?"),
        ({"tables": "[limits]\nmax_mesage_bytes = 1000\n"}, "limits.max_mesage_bytes", "did you mean max_message_bytes?"),
        ({"tables": _route(more='purpose = ["referral"]')}, "routes[1].purpose", "did you mean purposes?"),
        ({"replace": {"[jurisdictions.MO]": '[jurisdictions.MO]\nendpiont = "https://mo.example"'}}, "jurisdictions.MO.endpiont", "did you mean endpoint?"),
        ({"replace": {"[hub]": '[hub]\nreceipt = "x"'}}, "hub.receipt", "unknown key"),
        ({"tables": "[tls]\ncertificate = 'a'\nprivate_key = 'b'\nca = 'c'\n"}, "tls.ca", "unknown key"),
        ({"tables": "[server]\nport = 1\n"}, "server", "unknown key"),
    ],
)
def test_an_unknown_key_anywhere_is_refused_with_the_nearest_known_one(tmp_path, parts, key, fragment):
    _assert_refused(_refusal(tmp_path, **parts), key, fragment)


def test_mode_is_required(tmp_path):
    _assert_refused(_refusal(tmp_path, replace={'mode = "test"\n': ""}), "mode", "required")


def test_a_missing_required_key_points_at_its_likely_typo(tmp_path):
    error = _refusal(tmp_path, replace={'mode = "test"': 'mdoe = "test"'})
    _assert_refused(error, "mode", "required (is mdoe a typo of mode?)")
    text = _text().replace("[[routes]]", "[[route]]")
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, text))
    _assert_refused(caught.value, "routes", "(is route a typo of routes?)")


def test_mode_is_test_or_production(tmp_path):
    _assert_refused(_refusal(tmp_path, replace={'mode = "test"': 'mode = "staging"'}), "mode", "test, production")


@pytest.mark.parametrize(
    "top, key, fragment",
    [
        ('listen_port = "8443"', "listen_port", "expected an integer, got a string"),
        ("listen_port = true", "listen_port", "expected an integer, got a boolean"),
        ('insecure_development = "yes"', "insecure_development", "expected a boolean, got a string"),
        ("data_dir = 3", "data_dir", "expected a string, got an integer"),
        ("listen_port = 8443.0", "listen_port", "expected an integer, got a number"),
    ],
)
def test_a_value_of_the_wrong_type_is_refused(tmp_path, top, key, fragment):
    _assert_refused(_refusal(tmp_path, top=top), key, fragment)


def test_a_route_list_of_the_wrong_type_names_the_item(tmp_path):
    error = _refusal(tmp_path, replace={'purposes = ["referral"]': 'purposes = ["referral", 7]'})
    _assert_refused(error, "routes[0].purposes[1]", "expected a string")


def test_routes_must_be_an_array_of_tables(tmp_path):
    text = _text(top='routes = ["CN-GD"]').split("[[routes]]")[0]
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, text))
    _assert_refused(caught.value, "routes[0]", "expected a table ([[routes]]), got a string")


# --- numbers and their ranges ---


@pytest.mark.parametrize(
    "tables, key, fragment",
    [
        ("[limits]\nmax_message_bytes = 300000\n", "limits.max_message_bytes", "PROTO-4.5-1"),
        ("[limits]\nmax_request_bytes = 1024\n", "limits.max_request_bytes", "between 4096"),
        ("[limits]\nlong_poll_seconds = 0\n", "limits.long_poll_seconds", "between 1 and 300"),
        ("[commit]\nmax_batch = 0\n", "commit.max_batch", "between 1 and 10000"),
        ("[commit]\nmax_wait_ms = -1\n", "commit.max_wait_ms", "got -1"),
        ("[delivery]\nlease_seconds = 0\n", "delivery.lease_seconds", "between 1 and 3600"),
        ("[delivery]\nretry_initial_seconds = 0\n", "delivery.retry_initial_seconds", "between 0.001"),
        ("[delivery]\nretry_window_hours = nan\n", "delivery.retry_window_hours", "got nan"),
        ("[delivery]\nconcurrency = 0\n", "delivery.concurrency", "between 1 and 1024"),
    ],
)
def test_numbers_outside_their_range_are_refused(tmp_path, tables, key, fragment):
    _assert_refused(_refusal(tmp_path, tables=tables), key, fragment)


@pytest.mark.parametrize(
    "name, section",
    [("freshness_seconds", "§8.4"), ("request_proof_max_age_seconds", "§9.5")],
)
def test_the_protocol_windows_are_fixed_at_300_seconds_and_not_configurable(tmp_path, name, section):
    _assert_refused(_refusal(tmp_path, tables=f"[limits]\n{name} = 60\n"), f"limits.{name}", section)
    limits = _load(tmp_path, tables="[limits]\nlong_poll_seconds = 10\n").limits
    assert getattr(limits, name) == 300 and limits.request_proof_replay_seconds == 600


def test_a_request_limit_below_the_message_limit_is_refused(tmp_path):
    error = _refusal(tmp_path, tables="[limits]\nmax_message_bytes = 200000\nmax_request_bytes = 100000\n")
    _assert_refused(error, "limits.max_request_bytes", "at least limits.max_message_bytes")


def test_a_retry_ceiling_below_the_first_retry_is_refused(tmp_path):
    error = _refusal(tmp_path, tables="[delivery]\nretry_initial_seconds = 10\nretry_max_seconds = 5\n")
    _assert_refused(error, "delivery.retry_max_seconds", "at least delivery.retry_initial_seconds")


def test_fractional_settings_accept_whole_numbers(tmp_path):
    delivery = _load(tmp_path, tables="[delivery]\nretry_initial_seconds = 2\nretry_window_hours = 0.5\n").delivery
    assert delivery.retry_initial_seconds == 2.0 and isinstance(delivery.retry_initial_seconds, float)
    assert delivery.retry_window_hours == 0.5


# --- paths ---


def test_relative_paths_are_resolved_against_the_files_folder_not_the_working_directory(tmp_path, monkeypatch):
    keys = tmp_path / "etc" / "keys"
    keys.mkdir(parents=True)
    for name in ("test-hub-receipt-1.key.jwk", "trust-list.json"):
        (keys / name).write_bytes((TEST_KEYS / name).read_bytes())
    text = _text(top='data_dir = "../var/hub"').replace(str(TEST_KEYS), "keys")
    path = _write(tmp_path / "etc", text)
    monkeypatch.chdir(tmp_path.parent)
    config = load_config(path)
    assert config.hub.receipt_key == (keys / "test-hub-receipt-1.key.jwk").resolve()
    assert config.hub.trust_list == (keys / "trust-list.json").resolve()
    assert config.data_dir == (tmp_path / "var" / "hub").resolve()
    assert config.source == path.resolve()


def test_the_data_directory_defaults_to_var_gateway_beside_the_file(tmp_path):
    assert _load(tmp_path).data_dir == (tmp_path / "var" / "gateway").resolve()


def test_a_data_directory_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "data").write_text("")
    _assert_refused(_refusal(tmp_path, top='data_dir = "data"'), "data_dir", "not a folder")


def test_an_empty_path_is_refused(tmp_path):
    _assert_refused(_refusal(tmp_path, top='data_dir = ""'), "data_dir", "empty path")


# --- listening, TLS and the public base URL ---


def test_binding_a_non_loopback_address_without_tls_requires_insecure_development(tmp_path):
    error = _refusal(tmp_path, top='listen_host = "0.0.0.0"')
    _assert_refused(error, "listen_host", "insecure_development = true")
    assert _load(tmp_path, top='listen_host = "0.0.0.0"\ninsecure_development = true').insecure_development


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "localhost"])
def test_loopback_addresses_need_no_tls(tmp_path, host):
    assert _load(tmp_path, top=f'listen_host = "{host}"').listen_host == host


def test_a_listen_host_must_be_an_address_or_host_name(tmp_path):
    _assert_refused(_refusal(tmp_path, top='listen_host = "hub example"'), "listen_host", "not an IP address or host name")


def test_a_listen_port_outside_0_to_65535_is_refused(tmp_path):
    _assert_refused(_refusal(tmp_path, top="listen_port = 70000"), "listen_port", "between 0 and 65535")


@pytest.mark.parametrize("value", ["0.5", "3601", "nan"])
def test_a_database_timeout_outside_1_to_3600_seconds_is_refused(tmp_path, value):
    _assert_refused(_refusal(tmp_path, top=f"database_timeout_seconds = {value}"), "database_timeout_seconds", "between 1 and 3600")


def _certificate(folder: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hub.example")])
    now = datetime.now(timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / f"{name}.crt.pem", folder / f"{name}.key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def test_tls_lets_the_gateway_serve_a_public_address(tmp_path):
    certificate, key = _certificate(tmp_path, "hub")
    ca, _ = _certificate(tmp_path, "clients")
    config = _load(
        tmp_path,
        top='listen_host = "0.0.0.0"\npublic_base_url = "https://hub.example:8443"',
        tables=f'[tls]\ncertificate = "hub.crt.pem"\nprivate_key = "hub.key.pem"\nclient_ca = "{ca.name}"\n',
        replace={'public_base_url = "http://127.0.0.1:8443"\n': ""},
    )
    assert config.tls == TlsConfig(certificate.resolve(), key.resolve(), ca.resolve())


@pytest.mark.parametrize("present, missing", [("certificate", "private_key"), ("private_key", "certificate")])
def test_tls_needs_both_the_certificate_and_the_private_key(tmp_path, present, missing):
    _certificate(tmp_path, "hub")
    error = _refusal(tmp_path, tables=f'[tls]\n{present} = "hub.crt.pem"\n')
    _assert_refused(error, f"tls.{missing}", "both certificate and private_key")


def test_tls_files_must_exist(tmp_path):
    _certificate(tmp_path, "hub")
    error = _refusal(tmp_path, tables='[tls]\ncertificate = "hub.crt.pem"\nprivate_key = "absent.pem"\n')
    _assert_refused(error, "tls.private_key", "no such file")


def test_a_tls_key_that_does_not_match_the_certificate_is_refused(tmp_path):
    _certificate(tmp_path, "hub")
    _certificate(tmp_path, "other")
    error = _refusal(tmp_path, tables='[tls]\ncertificate = "hub.crt.pem"\nprivate_key = "other.key.pem"\n')
    _assert_refused(error, "tls.private_key", "does not match tls.certificate")


def test_a_tls_certificate_that_is_not_pem_is_refused(tmp_path):
    _, key = _certificate(tmp_path, "hub")
    error = _refusal(tmp_path, tables=f'[tls]\ncertificate = "{key.name}"\nprivate_key = "{key.name}"\n')
    _assert_refused(error, "tls.certificate", "no PEM certificate")


@pytest.mark.parametrize(
    "url, fragment",
    [
        ("https://hub.example/", "must not end with '/'"),
        ("https://hub.example/gba/", "must not end with '/'"),
        ("https://hub.example?x=1", "must not have a query"),
        ("https://hub.example#top", "must not have a fragment"),
        ("hub.example:8443", "absolute http:// or https:// URL"),
        ("/v1", "absolute http:// or https:// URL"),
        ("ftp://hub.example", "absolute http:// or https:// URL"),
        ("https://user:pw@hub.example", "user name or password"),
        ("https://hub.example:443", "leave out the default port :443"),
        ("https://hub.example:99999", "not a valid URL"),
        ("https://[::1", "not a valid URL"),
        ("http://hub.example:8080", "must use https"),
    ],
)
def test_the_public_base_url_is_an_absolute_url_that_request_paths_extend(tmp_path, url, fragment):
    error = _refusal(tmp_path, replace={"http://127.0.0.1:8443": url})
    _assert_refused(error, "public_base_url", fragment)


def test_the_public_base_url_may_be_plain_http_on_loopback_or_in_insecure_development(tmp_path):
    assert _load(tmp_path, replace={"http://127.0.0.1:8443": "http://localhost:8080"}).public_base_url == "http://localhost:8080"
    config = _load(tmp_path, top="insecure_development = true", replace={"http://127.0.0.1:8443": "http://hub.lan:8080"})
    assert config.public_base_url == "http://hub.lan:8080"


def test_the_public_base_url_keeps_its_path_and_is_lowercased_in_scheme_and_host(tmp_path):
    config = _load(tmp_path, replace={"http://127.0.0.1:8443": "HTTPS://Hub.Example:8443/GBA"})
    assert config.public_base_url == "https://hub.example:8443/GBA"


# --- the hub's keys and trust list ---


def test_a_hub_key_file_that_does_not_exist_is_refused(tmp_path):
    error = _refusal(tmp_path, replace={"test-hub-receipt-1.key.jwk": "test-hub-receipt-9.key.jwk"})
    _assert_refused(error, "hub.receipt_key", "no such file")


def test_the_hub_table_is_required(tmp_path):
    text = _text()
    start, end = text.index("[hub]"), text.index("[jurisdictions.CN-GD]")
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, text[:start] + text[end:]))
    _assert_refused(caught.value, "hub", "required")


def test_a_hub_key_must_be_a_private_jwk(tmp_path):
    public = tmp_path / "public.jwk"
    public.write_text(json.dumps(json.loads((TEST_KEYS / "test-hub-receipt-1.key.jwk").read_text()) | {"d": None}))
    error = _refusal(tmp_path, replace={f"{TEST_KEYS}/test-hub-receipt-1.key.jwk": str(public)})
    _assert_refused(error, "hub.receipt_key", "not a private signing key")


def test_the_checkpoint_key_is_an_ed25519_key(tmp_path):
    key = generate("ES256", "hub-checkpoint-es256")
    write_private_key(key, tmp_path / "checkpoint.key.jwk")
    error = _refusal(tmp_path, replace={"[hub]": '[hub]\ncheckpoint_key = "checkpoint.key.jwk"'})
    _assert_refused(error, "hub.checkpoint_key", "Ed25519")


def test_the_checkpoint_key_is_not_the_receipt_key(tmp_path):
    error = _refusal(tmp_path, replace={"[hub]": f'[hub]\ncheckpoint_key = "{TEST_KEYS}/test-hub-receipt-1.key.jwk"'})
    _assert_refused(error, "hub.checkpoint_key", "another key than hub.receipt_key")


def test_the_trust_list_must_be_a_trust_list(tmp_path):
    error = _refusal(tmp_path, replace={f"{TEST_KEYS}/trust-list.json": f"{TEST_KEYS}/test-hk-message-1.key.jwk"})
    _assert_refused(error, "hub.trust_list", "trust-list-invalid")


# --- production mode ---


def _production_material(folder: Path) -> None:
    """A hub receipt key that is no test key, and a production trust list that names it."""
    key = generate("Ed25519", "hub-receipt-2026-01")
    write_private_key(key, folder / "hub-receipt.key.jwk")
    document = json.loads((TEST_KEYS / "trust-list.json").read_text("utf-8"))
    document["mode"] = "production"
    document["keys"] = [
        {
            "kid": key.kid,
            "owner": "hub",
            "use": "receipt",
            "alg": key.alg,
            "jwk": key.public().to_jwk(),
            "not_before": "2026-01-01T00:00:00Z",
            "not_after": "2028-01-01T00:00:00Z",
            "status": "active",
            "test_key": False,
        }
    ]
    (folder / "production-trust-list.json").write_text(json.dumps(document), "utf-8")


_PRODUCTION = {
    'mode = "test"': 'mode = "production"',
    f"{TEST_KEYS}/test-hub-receipt-1.key.jwk": "hub-receipt.key.jwk",
    f"{TEST_KEYS}/trust-list.json": "production-trust-list.json",
    "[jurisdictions.CN-GD]": '[storage]\npayload_keys = "payload-keys"\n\n[jurisdictions.CN-GD]',
}


def test_production_accepts_its_own_keys_and_a_production_trust_list(tmp_path):
    _production_material(tmp_path)
    assert _load(tmp_path, replace=_PRODUCTION).mode == "production"


def test_production_refuses_insecure_development(tmp_path):
    _production_material(tmp_path)
    error = _refusal(tmp_path, top="insecure_development = true", replace=_PRODUCTION)
    _assert_refused(error, "insecure_development", "not allowed in production")


def test_production_refuses_the_published_test_keys(tmp_path):
    error = _refusal(tmp_path, replace={'mode = "test"': 'mode = "production"'})
    _assert_refused(error, "hub.receipt_key", "(kid test-hub-receipt-1) is a test key, refused in production")


def test_production_refuses_a_key_file_named_as_a_test_key(tmp_path):
    _production_material(tmp_path)
    (tmp_path / "hub-receipt.key.jwk").rename(tmp_path / "test-hub.key.jwk")
    error = _refusal(tmp_path, replace=_PRODUCTION | {"hub-receipt.key.jwk": "test-hub.key.jwk"})
    _assert_refused(error, "hub.receipt_key", "test-hub.key.jwk (kid hub-receipt-2026-01) is a test key")


def test_production_refuses_a_test_trust_list(tmp_path):
    _production_material(tmp_path)
    error = _refusal(tmp_path, replace=_PRODUCTION | {"production-trust-list.json": f"{TEST_KEYS}/trust-list.json"})
    _assert_refused(error, "hub.trust_list", "production")


# --- jurisdictions ---


@pytest.mark.parametrize("code", ["hk", "CNGD", "CN-GDXX", "C", "CN_GD"])
def test_a_jurisdiction_code_must_match_the_protocol_pattern(tmp_path, code):
    error = _refusal(tmp_path, tables=f"[jurisdictions.{code}]\n")
    _assert_refused(error, f"jurisdictions.{code}", "^[A-Z]{2}(-[A-Z0-9]{1,3})?$")


def test_at_least_one_jurisdiction_is_configured(tmp_path):
    text = _text().replace("[jurisdictions.CN-GD]\n[jurisdictions.HK]\n[jurisdictions.MO]\n", "")
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, text))
    _assert_refused(caught.value, "jurisdictions", "at least one")


def test_a_jurisdiction_is_a_table(tmp_path):
    text = _text().replace("[jurisdictions.CN-GD]\n[jurisdictions.HK]\n[jurisdictions.MO]\n", "[jurisdictions]\nHK = \"push\"\n")
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, text))
    _assert_refused(caught.value, "jurisdictions.HK", "expected a table")


def test_push_delivery_requires_an_endpoint(tmp_path):
    error = _refusal(tmp_path, replace={"[jurisdictions.HK]": '[jurisdictions.HK]\ndelivery = "push"'})
    _assert_refused(error, "jurisdictions.HK.endpoint", "required for push")


@pytest.mark.parametrize(
    "endpoint, fragment",
    [("http://hk.example/deliveries", "must use https"), ("hk.example", "absolute http:// or https:// URL")],
)
def test_a_push_endpoint_is_an_https_url(tmp_path, endpoint, fragment):
    error = _refusal(tmp_path, replace={"[jurisdictions.HK]": f'[jurisdictions.HK]\ndelivery = "push"\nendpoint = "{endpoint}"'})
    _assert_refused(error, "jurisdictions.HK.endpoint", fragment)


def test_a_push_endpoint_may_be_plain_http_on_loopback(tmp_path):
    config = _load(tmp_path, replace={"[jurisdictions.HK]": '[jurisdictions.HK]\ndelivery = "push"\nendpoint = "http://127.0.0.1:9001/in"'})
    assert config.jurisdictions["HK"].endpoint == "http://127.0.0.1:9001/in"


def test_a_pull_jurisdiction_has_no_endpoint(tmp_path):
    error = _refusal(tmp_path, replace={"[jurisdictions.HK]": '[jurisdictions.HK]\nendpoint = "https://hk.example/in"'})
    _assert_refused(error, "jurisdictions.HK.endpoint", "only push delivery")


def test_delivery_is_push_or_pull(tmp_path):
    error = _refusal(tmp_path, replace={"[jurisdictions.HK]": '[jurisdictions.HK]\ndelivery = "email"'})
    _assert_refused(error, "jurisdictions.HK.delivery", "push or pull")


def test_the_adapter_defaults_to_the_code_as_a_module_name_and_must_be_one(tmp_path):
    assert _load(tmp_path).jurisdictions["CN-GD"].adapter == "cn_gd"
    error = _refusal(tmp_path, replace={"[jurisdictions.HK]": '[jurisdictions.HK]\nadapter = "Hong-Kong"'})
    _assert_refused(error, "jurisdictions.HK.adapter", "not a module name")


# --- routes ---


def test_routes_are_required_because_policy_denies_by_default(tmp_path):
    text = _text().split("[[routes]]")[0]
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, text))
    _assert_refused(caught.value, "routes", "deny-by-default")


@pytest.mark.parametrize("field_name", ["sender", "receiver"])
def test_a_route_names_configured_jurisdictions(tmp_path, field_name):
    sender, receiver = ("SG", "HK") if field_name == "sender" else ("HK", "SG")
    error = _refusal(tmp_path, tables=_route(sender, receiver))
    _assert_refused(error, f"routes[1].{field_name}", "'SG' is not a configured jurisdiction (CN-GD, HK, MO)")


def test_a_route_does_not_lead_back_to_its_sender(tmp_path):
    _assert_refused(_refusal(tmp_path, tables=_route("HK", "HK")), "routes[1].receiver", "equals the sender")


@pytest.mark.parametrize(
    "types, fragment",
    [
        ('["referral.forward"]', "'referral.forward' is not a registered type"),
        ('["referral"]', "not a registered type"),
        ('["*"]', "registered type (docs/protocol.md §6), referral.* or verification.*"),
        ("[]", "empty"),
        ('["referral.submit", "referral.submit"]', "listed twice"),
        ('["referral.*", "referral.accept"]', "already covered by a wildcard"),
        ('["referral.accept", "referral.*"]', "covers a type listed before it"),
    ],
)
def test_route_types_are_registered_types_or_the_two_family_wildcards(tmp_path, types, fragment):
    _assert_refused(_refusal(tmp_path, tables=_route(types=types)), "routes[1].types", fragment)


@pytest.mark.parametrize(
    "purposes, fragment",
    [
        ('["welfare"]', "'welfare' is not a purpose"),
        ("[]", "empty"),
        ('["referral", "referral"]', "twice"),
    ],
)
def test_route_purposes_come_from_the_protocol_list(tmp_path, purposes, fragment):
    _assert_refused(_refusal(tmp_path, tables=_route(purposes=purposes)), "routes[1].purposes", fragment)


def test_a_purpose_that_none_of_the_routes_types_may_carry_is_refused(tmp_path):
    error = _refusal(tmp_path, tables=_route(types='["referral.*"]', purposes='["referral", "economic_verification"]'))
    _assert_refused(error, "routes[1].purposes", "no type of this route may carry economic_verification")


def test_an_exact_type_without_any_of_its_purposes_is_refused(tmp_path):
    error = _refusal(tmp_path, tables=_route(types='["referral.submit", "referral.close"]', purposes='["referral"]'))
    _assert_refused(error, "routes[1].types", "referral.close carries assistance_feedback")


def test_two_routes_covering_one_combination_are_refused(tmp_path):
    error = _refusal(tmp_path, tables=_route("CN-GD", "HK", '["referral.update"]', '["referral"]'))
    _assert_refused(error, "routes[1]", "overlaps routes[0] (CN-GD -> HK, referral.update for referral)")


def test_routes_may_split_one_direction_by_purpose(tmp_path):
    tables = _route("HK", "CN-GD", '["referral.update"]', '["referral"]') + _route(
        "HK", "CN-GD", '["referral.update", "referral.close"]', '["assistance_feedback"]', "require_consent = true"
    )
    routes = _load(tmp_path, tables=tables).routes
    assert not find_route(routes, "HK", "CN-GD", "referral.update", "referral").require_consent
    assert find_route(routes, "HK", "CN-GD", "referral.update", "assistance_feedback").require_consent


@pytest.mark.parametrize(
    "kinds, fragment",
    [('["pipl_consent"]', "'pipl_consent' is not a transfer mechanism kind"), ("[]", "empty")],
)
def test_transfer_mechanisms_are_kinds_of_section_5_5(tmp_path, kinds, fragment):
    error = _refusal(tmp_path, tables=_route(more=f"transfer_mechanisms = {kinds}"))
    _assert_refused(error, "routes[1].transfer_mechanisms", fragment)


def test_a_route_accepts_every_transfer_mechanism_unless_it_lists_some(tmp_path):
    config = _load(tmp_path, tables=_route(more='require_transfer_mechanism = true\ntransfer_mechanisms = ["macao_notification"]'))
    assert config.routes[0].transfer_mechanisms == TRANSFER_MECHANISMS
    assert config.routes[1].transfer_mechanisms == ("macao_notification",)
    assert config.routes[1].require_transfer_mechanism and not config.routes[1].require_consent


# --- route policy as pure functions ---

_HK_REFERRALS = Route("CN-GD", "HK", ("referral.*",), ("referral", "assistance_feedback"))


def test_a_route_allows_only_its_direction_types_and_purposes():
    assert _HK_REFERRALS.allows("CN-GD", "HK", "referral.submit", "referral")
    assert not _HK_REFERRALS.allows("HK", "CN-GD", "referral.submit", "referral")
    assert not _HK_REFERRALS.allows("CN-GD", "HK", "verification.request", "economic_verification")
    assert not _HK_REFERRALS.allows("CN-GD", "HK", "referral.submit", "delivery_receipt")


def test_a_family_wildcard_matches_the_registered_types_of_its_family_only():
    assert _HK_REFERRALS.message_types() == tuple(t for t in MESSAGE_TYPES if t.startswith("referral."))
    assert not _HK_REFERRALS.covers_type("referral.forward")
    assert not _HK_REFERRALS.covers_type("referral")


def test_find_route_denies_what_no_route_allows():
    assert find_route((), "CN-GD", "HK", "referral.submit", "referral") is None
    assert find_route((_HK_REFERRALS,), "CN-GD", "HK", "receipt", "delivery_receipt") is None
    assert find_route((_HK_REFERRALS,), "CN-GD", "HK", "referral.close", "assistance_feedback") is _HK_REFERRALS


_CONSENT = {"basis": "consent", "statute": "PIPL art. 13(1)(i)", "consent_ref": "C-1"}
_CONTRACT = {"kind": "gba_standard_contract", "ref": "GD-1"}


@pytest.mark.parametrize(
    "terms, legal_basis, refusal",
    [
        ({}, {"basis": "public_interest", "statute": "x"}, None),
        ({"require_consent": True}, {"basis": "public_interest", "statute": "x"}, "/legal_basis/basis"),
        ({"require_consent": True}, _CONSENT, None),
        ({"require_transfer_mechanism": True}, _CONSENT, "/legal_basis/transfer_mechanism"),
        ({"require_transfer_mechanism": True}, _CONSENT | {"transfer_mechanism": _CONTRACT}, None),
        ({"transfer_mechanisms": ("macao_notification",)}, _CONSENT | {"transfer_mechanism": _CONTRACT}, "/legal_basis/transfer_mechanism/kind"),
        ({"transfer_mechanisms": ("macao_notification",)}, _CONSENT, None),
    ],
)
def test_the_legal_basis_refusal_points_at_the_member_that_fails_the_routes_terms(terms, legal_basis, refusal):
    route = dataclasses.replace(_HK_REFERRALS, **terms)
    assert route.legal_basis_refusal(legal_basis) == refusal


# --- the database URL (which database a command uses: gateway/store/database.py) ---


def test_a_database_url_must_be_postgresql_and_the_refusal_never_shows_its_password(tmp_path):
    error = _refusal(tmp_path, top='database_url = "mysql://gateway:s3cret@db/gba"')
    _assert_refused(error, "database_url", "postgresql://")
    assert "s3cret" not in str(error)


def test_an_empty_database_url_is_refused(tmp_path):
    _assert_refused(_refusal(tmp_path, top='database_url = ""'), "database_url", "leave the key out")


def test_a_database_url_is_kept_as_written(tmp_path):
    url = "postgresql://gateway:s3cret@db.internal:5432/gba?sslmode=verify-full"
    assert _load(tmp_path, top=f'database_url = "{url}"').database_url == url


@pytest.mark.parametrize("url", [
    "postgresql://gateway@pg-a.internal:5432,pg-b.internal:5433/gba?target_session_attrs=read-write",
    "postgresql://gateway@[fd00::1]:5432,10.0.0.2/gba",
    "postgresql:///gba?host=/run/postgresql",
])
def test_a_database_url_with_several_hosts_each_with_its_port_is_accepted(tmp_path, url):
    """libpq's and asyncpg's failover form: the hosts are tried in order (docs/operations.md)."""
    assert _load(tmp_path, top=f'database_url = "{url}"').database_url == url


@pytest.mark.parametrize("url", ["postgresql://gateway:s3cret@db:99999/gba", "postgresql://gateway:s3cret@a:1,b:x/gba",
                                 "postgresql://gateway:s3cret@[fd00::1/gba"])
def test_a_database_url_with_a_bad_host_or_port_is_refused_without_its_password(tmp_path, url):
    error = _refusal(tmp_path, top=f'database_url = "{url}"')
    _assert_refused(error, "database_url", "not a valid URL")
    assert "s3cret" not in str(error)


# --- gateway config check ---


def test_config_check_accepts_the_example_and_prints_what_it_sets_up(monkeypatch):
    monkeypatch.delenv("GATEWAY_DATABASE_URL", raising=False)
    result = run_cli("config", "check", "--config", str(EXAMPLES / "gateway.toml"))
    assert result.status == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert "mode: test" in lines
    assert "listen: 127.0.0.1:8443 (plain HTTP on loopback)" in lines
    assert any(line.startswith(f"database: the embedded PostgreSQL in {(REPO / 'var' / 'gateway').resolve()}") for line in lines)
    assert "routes: 13" in lines
    jurisdictions = next(line for line in lines if line.startswith("jurisdictions: "))
    assert "CN-GD (pull" in jurisdictions and "HK (push to https://" in jurisdictions and "MO (pull" in jurisdictions


def test_config_check_refuses_with_file_key_and_reason_on_stderr(tmp_path):
    path = _write(tmp_path, _text(tables=_route(types='["referral.forward"]')))
    result = run_cli("config", "check", "--config", str(path))
    assert result.status == 1 and result.stdout == ""
    assert result.stderr.startswith(f"gateway: config: {path}: routes[1].types: 'referral.forward' is not a registered type")


def test_config_check_masks_the_database_password(tmp_path, monkeypatch):
    monkeypatch.delenv("GATEWAY_DATABASE_URL", raising=False)
    path = _write(tmp_path, _text(top='database_url = "postgresql://gateway:s3cret@db.internal/gba"'))
    result = run_cli("config", "check", "--config", str(path))
    assert result.status == 0, result.stderr
    assert "database: postgresql://gateway:***@db.internal/gba (from config database_url)" in result.stdout.splitlines()
    assert "s3cret" not in result.stdout


def test_config_check_shows_when_the_environment_overrides_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("GATEWAY_DATABASE_URL", "postgresql://ops:t0ps3cret@pg.internal/gba")
    result = run_cli("config", "check", "--config", str(_write(tmp_path, _text())))
    assert result.status == 0, result.stderr
    assert "database: postgresql://ops:***@pg.internal/gba (from GATEWAY_DATABASE_URL)" in result.stdout.splitlines()


def test_config_check_masks_a_password_given_as_a_url_parameter(tmp_path, monkeypatch):
    monkeypatch.delenv("GATEWAY_DATABASE_URL", raising=False)
    path = _write(tmp_path, _text(top='database_url = "postgresql://db.internal/gba?user=gateway&password=s3cret"'))
    result = run_cli("config", "check", "--config", str(path))
    assert result.status == 0, result.stderr
    assert "s3cret" not in result.stdout


def test_config_check_refuses_a_database_url_in_the_environment_that_is_not_postgresql(tmp_path, monkeypatch):
    monkeypatch.setenv("GATEWAY_DATABASE_URL", "mysql://ops:t0ps3cret@db/gba")
    result = run_cli("config", "check", "--config", str(_write(tmp_path, _text())))
    assert result.status == 1 and "GATEWAY_DATABASE_URL" in result.stderr
    assert "t0ps3cret" not in result.stderr


def test_config_check_without_a_file_is_a_usage_error():
    assert run_cli("config", "check").status == 2


def test_config_check_of_a_missing_file_exits_1(tmp_path):
    result = run_cli("config", "check", "--config", str(tmp_path / "absent.toml"))
    assert result.status == 1
    assert result.stderr == f"gateway: config: {tmp_path / 'absent.toml'}: no such file\n"


def test_purposes_and_transfer_mechanisms_are_read_from_the_shipped_contract():
    assert PURPOSES == ("referral", "assistance_feedback", "economic_verification", "delivery_receipt")
    assert "gba_standard_contract" in TRANSFER_MECHANISMS and len(TRANSFER_MECHANISMS) == 5


def test_a_route_retention_outside_its_range_is_refused_naming_the_key(tmp_path):
    text = (EXAMPLES / "gateway.toml").read_text("utf-8").replace("retention_days = 2555", "retention_days = 0", 1)
    path = EXAMPLES / "gateway.retention.toml"
    try:
        path.write_text(text, "utf-8")
        with pytest.raises(ConfigError, match=r"routes\[0\]\.retention_days: must be between 1 and 36500"):
            load_config(path)
    finally:
        path.unlink()
    assert load_config(EXAMPLES / "gateway.toml").routes[0].retention_days == 2555


def test_production_needs_payload_keys_outside_a_checkout_and_outside_the_database(tmp_path, monkeypatch):
    monkeypatch.delenv("GATEWAY_PAYLOAD_KEYS", raising=False)
    _production_material(tmp_path)
    without = {old: new for old, new in _PRODUCTION.items() if old != "[jurisdictions.CN-GD]"}
    _assert_refused(_refusal(tmp_path, replace=without), "storage.payload_keys", "required in production mode")
    (tmp_path / ".git").mkdir()
    _assert_refused(_refusal(tmp_path, replace=_PRODUCTION), "storage.payload_keys", "inside a git checkout")
    inside = {'mode = "test"': 'mode = "test"\ndata_dir = "data"',
              "[jurisdictions.CN-GD]": '[storage]\npayload_keys = "data/postgres/keys"\n\n[jurisdictions.CN-GD]'}
    _assert_refused(_refusal(tmp_path, replace=inside), "storage.payload_keys", "inside the embedded database's directory")

"""`gateway keys generate`: a key pair for one owner and one use (docs/protocol.md §10)."""

from __future__ import annotations

import argparse
import json
import re
import secrets
from datetime import timedelta
from pathlib import Path

from gateway.keyfiles import write_private_key, write_public_key
from gateway.protocol.keys import ALGORITHMS, generate
from gateway.protocol.timestamps import format_timestamp, utc_now
from gateway.protocol.trust import ED25519_ONLY_USES, HUB, KEY_USES, allowed_uses

_OWNER = re.compile(rf"{HUB}|[A-Z]{{2}}(-[A-Z0-9]{{1,3}})?")


def register(commands: argparse._SubParsersAction) -> None:
    keys = commands.add_parser("keys", help="make and manage signing keys")
    verbs = keys.add_subparsers(dest="verb", required=True, metavar="VERB")
    make = verbs.add_parser(
        "generate",
        help="write a new private key (mode 0600) and its public JWK",
        description="Writes DIR/KID.key.jwk (private, mode 0600) and DIR/KID.pub.jwk, and prints the "
        "key's trust-list entry (docs/protocol.md §10.3) on stdout. A key serves one use only.",
    )
    make.add_argument("--jurisdiction", required=True, help="owner: a jurisdiction code (CN-GD, HK, MO) or 'hub'")
    make.add_argument("--use", required=True, choices=KEY_USES)
    make.add_argument("--out", required=True, type=Path, help="folder for the key files (created if missing)")
    make.add_argument("--alg", choices=ALGORITHMS, default="Ed25519")
    make.add_argument("--kid", help="key id (default: OWNER-USE-DATE-RANDOM)")
    make.add_argument("--valid-days", type=int, default=730, help="validity window in days (default 730)")
    make.add_argument("--test-key", action="store_true", help="mark the key test-only (refused in production)")
    make.set_defaults(run=_generate)


def _generate(arguments: argparse.Namespace) -> int:
    owner = arguments.jurisdiction
    if not _OWNER.fullmatch(owner):
        raise ValueError(f"--jurisdiction must be a code like CN-GD, HK, MO or 'hub', not {owner!r}")
    now = utc_now().replace(microsecond=0)
    kid = arguments.kid or f"{owner.lower()}-{arguments.use}-{now:%Y%m%d}-{secrets.token_hex(3)}"
    allowed = allowed_uses(owner)
    if arguments.use not in allowed:
        raise ValueError(f"a key of {owner} serves {' or '.join(allowed)}, not {arguments.use} (docs/protocol.md PROTO-10.2-3)")
    if arguments.use in ED25519_ONLY_USES and arguments.alg != "Ed25519":
        raise ValueError("checkpoint and witness keys are Ed25519 keys (docs/protocol.md PROTO-10.2-4)")
    if arguments.valid_days < 1:
        raise ValueError("--valid-days must be at least 1")
    key = generate(arguments.alg, kid)
    arguments.out.mkdir(parents=True, exist_ok=True)
    private_path = arguments.out / f"{kid}.key.jwk"
    public_path = arguments.out / f"{kid}.pub.jwk"
    for path in (private_path, public_path):
        if path.exists():
            raise ValueError(f"{path} exists; keys are never overwritten")
    write_private_key(key, private_path)
    write_public_key(key.public(), public_path)
    entry = {
        "kid": kid,
        "owner": owner,
        "use": arguments.use,
        "alg": key.alg,
        "jwk": key.public().to_jwk(),
        "not_before": format_timestamp(now),
        "not_after": format_timestamp(now + timedelta(days=arguments.valid_days)),
        "status": "active",
        "test_key": arguments.test_key,
    }
    print(json.dumps(entry, indent=2))
    return 0

"""Personal data encrypted at rest (docs/security.md, "Payloads at rest"): AES-256-GCM per stored message.

Every message the hub stores is sealed with the current payload key before it reaches
PostgreSQL: the row keeps the key's id beside the sealed bytes, and the message id is
the associated data, so sealed bytes moved to another row do not open. What is sealed
is the compact JWS exactly as received: its digest (SHA-256 of those bytes, §5.6) and
the ledger never need it, and it is opened only to deliver, to show an officer who has
the right, and to answer a data-subject request.

Keys live outside the database and outside the repository: a directory of files named
`<key id>.key` (32 random bytes, base64), or the variable `GATEWAY_PAYLOAD_KEYS`
(`id=base64;id=base64`). The current key (the one that seals) is the greatest key id;
`gateway payload-keys generate` makes ids that sort by creation time, so a new key
becomes current when it is written, and `gateway payload-keys reencrypt` moves every row
sealed under an older key to the current one. A key is deleted only after no row names
it (the command says so).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEYS_VARIABLE = "GATEWAY_PAYLOAD_KEYS"
KEY_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_NONCE_BYTES = 12
_KEY_BYTES = 32
_AAD_PREFIX = b"gba-message:"


class PayloadKeyError(ValueError):
    """The payload keys are missing, malformed or do not open a row: the message names the key id, never key bytes."""


@dataclass(frozen=True)
class PayloadKeys:
    """The payload key ring: every key by id; the greatest id seals."""

    keys: Mapping[str, bytes] = field(repr=False)
    source: str = ""

    def __post_init__(self) -> None:
        if not self.keys:
            raise PayloadKeyError(f"no payload key in {self.source or 'the key ring'}: make one with `gateway payload-keys generate`")
        for key_id, key in self.keys.items():
            if not KEY_ID.fullmatch(key_id):
                raise PayloadKeyError(f"payload key id {key_id!r} in {self.source}: lowercase letters, digits and '-' only")
            if len(key) != _KEY_BYTES:
                raise PayloadKeyError(f"payload key {key_id} in {self.source}: {len(key)} bytes, want {_KEY_BYTES}")

    @property
    def current(self) -> str:
        """The id of the key that seals."""
        return max(self.keys)

    def seal(self, message_id: str, plaintext: bytes) -> tuple[str, bytes]:
        """(key id, nonce || ciphertext || tag) of `plaintext` under the current key, bound to `message_id`."""
        key_id = self.current
        nonce = secrets.token_bytes(_NONCE_BYTES)
        return key_id, nonce + AESGCM(self.keys[key_id]).encrypt(nonce, plaintext, _AAD_PREFIX + message_id.encode())

    def open(self, message_id: str, key_id: str, sealed: bytes) -> bytes:
        """The plaintext `seal` took. Requires the key `key_id`; refuses bytes altered or moved from another row."""
        key = self.keys.get(key_id)
        if key is None:
            raise PayloadKeyError(f"payload key {key_id} is not in {self.source or 'the key ring'}: a row sealed under it cannot be opened")
        try:
            return AESGCM(key).decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], _AAD_PREFIX + message_id.encode())
        except InvalidTag:
            raise PayloadKeyError(f"the payload of message {message_id} does not open under key {key_id}: altered or misplaced") from None


def new_key_id(now: datetime | None = None) -> str:
    """A key id that sorts after every earlier one: `p` and the UTC time to the microsecond."""
    return "p" + (now or datetime.now(timezone.utc)).strftime("%Y%m%d%H%M%S%f")


def generate_key(folder: Path, now: datetime | None = None) -> str:
    """Write a new random key into `folder` (mode 0600, never overwriting); its id, which is now the current key.

    Refuses (writing nothing) when a key already in `folder` has an id that sorts after the new one (a key named
    by hand, or made on a clock that ran ahead): that key would go on sealing, and a rotation away from it would
    silently not happen.
    """
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_id = new_key_id(now)
    later = max((path.stem for path in folder.glob("*.key") if path.stem >= key_id), default=None)
    if later is not None:
        raise PayloadKeyError(
            f"{folder} holds payload key {later}, whose id sorts after the new key's id {key_id}: it would stay the "
            f"key that seals (the greatest id seals), so nothing was written. If the clock is behind, correct it; "
            f"else write the new key by hand under an id that sorts after {later} (32 random bytes, base64, mode 0600)"
        )
    path = folder / f"{key_id}.key"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(base64.b64encode(secrets.token_bytes(_KEY_BYTES)).decode() + "\n")
    return key_id


def load_keys(folder: Path | None, environment: Mapping[str, str] | None = None) -> PayloadKeys:
    """The key ring from `GATEWAY_PAYLOAD_KEYS` when set, else from the `*.key` files of `folder`."""
    environment = os.environ if environment is None else environment
    text = environment.get(KEYS_VARIABLE)
    if text:
        return PayloadKeys(_parse_variable(text), f"${KEYS_VARIABLE}")
    if folder is None:
        raise PayloadKeyError(f"no payload keys: set [storage] payload_keys or ${KEYS_VARIABLE}")
    if not folder.is_dir():
        raise PayloadKeyError(f"no payload key directory at {folder}: make one with `gateway payload-keys generate`")
    keys = {}
    for path in sorted(folder.glob("*.key")):
        keys[path.stem] = _decode(path.read_text("ascii").strip(), f"{path}")
    return PayloadKeys(keys, str(folder))


def _parse_variable(text: str) -> dict[str, bytes]:
    keys = {}
    for item in filter(None, (part.strip() for part in text.split(";"))):
        key_id, separator, encoded = item.partition("=")
        if not separator:
            raise PayloadKeyError(f"${KEYS_VARIABLE}: each item is id=base64, separated by ';'")
        keys[key_id.strip()] = _decode(encoded.strip(), f"${KEYS_VARIABLE} {key_id.strip()}")
    return keys


def _decode(encoded: str, where: str) -> bytes:
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise PayloadKeyError(f"{where}: not base64") from None

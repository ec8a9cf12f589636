"""Signed notes, checkpoints and witness cosignatures, as C2SP specifies them.

- c2sp.org/signed-note: a text ending in a newline, a blank line, then lines
  "— <key name> base64(key ID[4] || signature)". Only Ed25519 (type 0x01) notes are
  signed here; key ID = SHA-256(name || 0x0A || type || public key)[:4].
- c2sp.org/tlog-checkpoint: the note text "origin\\nsize\\nbase64(root)\\n" followed by
  optional, non-empty extension lines.
- c2sp.org/tlog-cosignature, Ed25519 `cosignature/v1` (type 0x04): a witness signs
  "cosignature/v1\\ntime <t>\\n" + the checkpoint body and publishes
  base64(key ID || uint64be(t) || signature) as a note signature line.

Everything here is a pure function over strings and keys. A verifier's keys come from
its own configuration, never from the note it checks. `NoteError` means text or a key
that is not well formed; `CheckpointRefused` is a verifier saying no, with a short
stable `reason` token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from gateway.protocol import base64url
from gateway.protocol.errors import ProtocolError
from gateway.protocol.keys import PrivateKey, PublicKey, public_key_from_jwk

ED25519 = 0x01
"""Signature type of an Ed25519 note signature (c2sp.org/signed-note)."""
COSIGNATURE_V1 = 0x04
"""Signature type of an Ed25519 timestamped witness cosignature (c2sp.org/tlog-cosignature)."""

MAX_SIGNATURES = 100
"""Signature lines a note may carry. signed-note asks for at least 16; golang.org/x/mod/sumdb/note allows 100."""
MAX_TIMESTAMP = 2**63 - 1
"""tlog-cosignature: a cosignature timestamp MUST NOT exceed 2^63 - 1."""
MAX_TREE_SIZE = 2**64 - 1

_SIGNATURE_PREFIX = "\u2014 "  # em dash, space
_ED25519_SIGNATURE_SIZE = 64
_TIMESTAMP_SIZE = 8
_HEX_KEY_ID = re.compile(r"[0-9a-f]{8}")
_DECIMAL = re.compile(r"0|[1-9][0-9]*")


class NoteError(ValueError):
    """A note, key, signature line or checkpoint text that is not well formed, or a
    verifier configuration that cannot work (wrong key type, repeated witness, quorum
    above the number of witnesses)."""


class CheckpointRefused(ValueError):
    """A verifier refuses a note or checkpoint.

    `reason` is a short stable token: "malformed", "origin", "log-signature",
    "unknown-key", "timestamp", "other-checkpoint", "duplicate-witness", "quorum".
    `detail` names, for a "quorum" refusal, each witness signature that did not count
    and why, as (key name, reason) pairs in note order.
    """

    def __init__(self, reason: str, message: str, detail: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.reason = reason
        self.detail = detail


# Checkpoints


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The note text of a tlog-checkpoint: the tree head of the log named `origin`.

    The root may have any non-zero length here, as the text format allows; whoever
    hashes with it (verify_checkpoint, the witness) requires 32 bytes.
    """

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin:
            raise NoteError(f"checkpoint origin {self.origin!r} must be one non-empty line")
        if not 0 <= self.size <= MAX_TREE_SIZE:
            raise NoteError(f"checkpoint size {self.size} is outside 0..2^64-1")
        if not self.root:
            raise NoteError("checkpoint root hash is empty")
        for position, line in enumerate(self.extensions):
            if not line or "\n" in line:
                raise NoteError(f"checkpoint extension line {position} {line!r} must be one non-empty line")
        _check_text_characters(self.body(), "checkpoint")

    def body(self) -> str:
        """The note text: origin, size, base64 root and extension lines, each ending in a newline."""
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode("ascii"), *self.extensions]
        return "".join(line + "\n" for line in lines)

    @classmethod
    def parse(cls, body: str) -> Checkpoint:
        """Read a checkpoint note text strictly (c2sp.org/tlog-checkpoint, "Note text").

        At least three non-empty lines, each ending in a newline; the size in decimal
        without leading zeros and at most 2^64-1; the root in canonical padded base64;
        extension lines non-empty. Raises NoteError naming the line that is wrong.
        """
        if not body.endswith("\n"):
            raise NoteError("checkpoint text must end in a newline")
        _check_text_characters(body, "checkpoint")
        lines = body[:-1].split("\n")
        if len(lines) < 3:
            raise NoteError(f"checkpoint text has {len(lines)} lines, want at least 3 (origin, size, root)")
        origin, size_text, root_text, *extensions = lines
        if not origin:
            raise NoteError("checkpoint origin line is empty")
        if not _DECIMAL.fullmatch(size_text):
            raise NoteError(f"checkpoint size line {size_text!r} is not a decimal without leading zeros")
        size = int(size_text)
        if size > MAX_TREE_SIZE:
            raise NoteError(f"checkpoint size {size} exceeds 2^64-1")
        root = _decode_base64(root_text, "checkpoint root hash")
        for position, line in enumerate(extensions):
            if not line:
                raise NoteError(f"checkpoint extension line {position} is empty")
        return cls(origin, size, root, tuple(extensions))


# Keys


@dataclass(frozen=True, slots=True)
class NoteKey:
    """A note verifier key: an Ed25519 public key under a name, for one signature type.

    `kind` is ED25519 (0x01, note signatures) or COSIGNATURE_V1 (0x04, witness
    cosignatures). `key_id` must be SHA-256(name || 0x0A || kind || public)[:4].
    """

    name: str
    key_id: bytes
    kind: int
    public: bytes

    def __post_init__(self) -> None:
        _check_key_name(self.name)
        if self.kind not in (ED25519, COSIGNATURE_V1):
            raise NoteError(f"key type 0x{self.kind:02x} is not supported, want 0x01 or 0x04 (Ed25519)")
        if len(self.public) != 32:
            raise NoteError(f"Ed25519 public key has {len(self.public)} bytes, want 32")
        want = _key_id(self.name, self.kind, self.public)
        if self.key_id != want:
            raise NoteError(f"key id {self.key_id.hex()} for {self.name!r} does not match its key, want {want.hex()}")

    def vkey(self) -> str:
        """The verifier key text: name+hex(key ID)+base64(type || public key)."""
        material = base64.b64encode(bytes([self.kind]) + self.public).decode("ascii")
        return f"{self.name}+{self.key_id.hex()}+{material}"

    def matches(self, signature: Signature) -> bool:
        """True iff `signature` names this key: same key name and same key ID."""
        return signature.name == self.name and signature.key_id == self.key_id


def parse_vkey(vkey: str) -> NoteKey:
    """Read a verifier key "name+hex(key ID)+base64(type || key)" of type 0x01 or 0x04.

    The key ID must be eight lower-case hex digits and match the key; the public key
    must be a canonical Ed25519 point of large order. Raises NoteError otherwise.
    """
    parts = vkey.split("+", 2)
    if len(parts) != 3:
        raise NoteError(f"verifier key has {len(parts)} '+'-separated parts, want 3")
    name, key_id_hex, material_text = parts
    _check_key_name(name)
    if not _HEX_KEY_ID.fullmatch(key_id_hex):
        raise NoteError(f"verifier key id {key_id_hex!r} is not 8 lower-case hex digits")
    material = _decode_base64(material_text, "verifier key material")
    kind, public = material[0], material[1:]
    if kind not in (ED25519, COSIGNATURE_V1):
        raise NoteError(f"verifier key type 0x{kind:02x} is not supported, want 0x01 or 0x04 (Ed25519)")
    if len(public) != 32:
        raise NoteError(f"Ed25519 public key has {len(public)} bytes, want 32")
    _check_ed25519_point(public)
    return NoteKey(name, bytes.fromhex(key_id_hex), kind, public)


def note_key(name: str, public: PublicKey, kind: int = ED25519) -> NoteKey:
    """The note key for an Ed25519 `public` key under `name`, for signature type `kind`."""
    if public.alg != "Ed25519":
        raise NoteError(f"note keys are Ed25519; key {public.kid} is {public.alg}")
    if kind not in (ED25519, COSIGNATURE_V1):
        raise NoteError(f"key type 0x{kind:02x} is not supported, want 0x01 or 0x04 (Ed25519)")
    raw = public.key.public_bytes_raw()  # type: ignore[union-attr]
    return NoteKey(name, _key_id(name, kind, raw), kind, raw)


# Notes


@dataclass(frozen=True, slots=True)
class Signature:
    """One signature line of a note: key name, 4-byte key ID, and the bytes after the key ID."""

    name: str
    key_id: bytes
    data: bytes

    def line(self) -> str:
        """The signature line, "— name base64(key ID || data)\\n"."""
        encoded = base64.b64encode(self.key_id + self.data).decode("ascii")
        return f"{_SIGNATURE_PREFIX}{self.name} {encoded}\n"


def parse_note(note: str | bytes) -> tuple[str, tuple[Signature, ...]]:
    """Split a signed note into its text (with the final newline) and its signatures.

    Strictly per c2sp.org/signed-note: valid UTF-8; no control character but newline;
    the text ends in a newline and is separated from the signatures by the last blank
    line; 1 to MAX_SIGNATURES lines "— name base64", each ending in a newline, with a
    valid key name and canonical padded base64 of at least 5 bytes. Raises NoteError.
    """
    if isinstance(note, bytes):
        try:
            note = note.decode("utf-8")
        except UnicodeDecodeError as error:
            raise NoteError(f"note is not UTF-8: byte {error.start} is invalid") from None
    _check_text_characters(note, "note")
    if not note.endswith("\n"):
        raise NoteError("note must end in a newline")
    split = note.rfind("\n\n")
    if split < 0:
        raise NoteError("note has no blank line before its signatures")
    text, lines = note[: split + 1], note[split + 2 : -1].split("\n")
    if lines == [""]:
        raise NoteError("note has no signature lines")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"note has {len(lines)} signature lines, at most {MAX_SIGNATURES} allowed")
    return text, tuple(_parse_signature_line(line, position) for position, line in enumerate(lines))


def sign_note(text: str, name: str, key: PrivateKey) -> str:
    """The signed note of `text` with one Ed25519 (type 0x01) signature by `key` under `name`."""
    _check_note_text(text)
    _check_key_name(name)
    if key.alg != "Ed25519":
        raise NoteError(f"notes are signed with Ed25519; key {key.kid} is {key.alg}")
    public = note_key(name, key.public(), ED25519)
    signature = Signature(name, public.key_id, key.sign(text.encode("utf-8")))
    return text + "\n" + signature.line()


def add_signature_lines(note: str, lines: Sequence[str]) -> str:
    """`note` with signature `lines` (each "— name base64...\\n") appended, in order.

    Both the note and each line must be well formed, and the result may carry at most
    MAX_SIGNATURES signatures; NoteError otherwise. Nothing is verified here.
    """
    parse_note(note)
    for position, line in enumerate(lines):
        if not line.endswith("\n"):
            raise NoteError(f"signature line {position} must end in a newline")
        _check_text_characters(line, "signature line")
        _parse_signature_line(line[:-1], position)
    combined = note + "".join(lines)
    parse_note(combined)
    return combined


def verify_note(note: str | bytes, key: NoteKey) -> str:
    """The note's text, if it carries a valid Ed25519 signature by `key` (type 0x01).

    Signatures by other keys are ignored (signed-note, "Signatures"); every signature
    that names `key` must verify. Raises CheckpointRefused: "malformed" for a note that
    is not well formed, "log-signature" when no signature by `key` verifies.
    """
    if key.kind != ED25519:
        raise NoteError(f"verify_note needs an Ed25519 note key (type 0x01), got type 0x{key.kind:02x}")
    text, signatures = _parse_or_refuse(note)
    _require_signature(text, signatures, key)
    return text


# Cosignatures


def cosign(checkpoint_body: str, name: str, key: PrivateKey, timestamp: int) -> str:
    """The cosignature/v1 line of witness `name` over `checkpoint_body` at POSIX time `timestamp`.

    "— name base64(key ID || uint64be(timestamp) || Ed25519 signature)\\n", the key ID
    of type 0x04, signed over "cosignature/v1\\ntime <timestamp>\\n" + checkpoint_body
    (c2sp.org/tlog-cosignature, "Ed25519 signed message"). Requires a well-formed
    checkpoint body and 0 <= timestamp <= 2^63-1.
    """
    Checkpoint.parse(checkpoint_body)
    _check_key_name(name)
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise NoteError(f"cosignature timestamp {timestamp} is outside 0..2^63-1")
    if key.alg != "Ed25519":
        raise NoteError(f"cosignatures are Ed25519; key {key.kid} is {key.alg}")
    public = note_key(name, key.public(), COSIGNATURE_V1)
    sig = key.sign(_cosigned_message(checkpoint_body, timestamp))
    return Signature(name, public.key_id, timestamp.to_bytes(_TIMESTAMP_SIZE, "big") + sig).line()


def verify_cosignature(checkpoint_body: str, signature: Signature, key: NoteKey) -> int:
    """The timestamp of `signature`, a cosignature/v1 by `key` (type 0x04) over `checkpoint_body`.

    Raises CheckpointRefused: "unknown-key" when the signature names another key,
    "timestamp" when its data is not 8 + 64 bytes or the time exceeds 2^63-1, and
    "other-checkpoint" when it does not verify over this body (it was made over
    another checkpoint, or at another time, or is forged).
    """
    if key.kind != COSIGNATURE_V1:
        raise NoteError(f"verify_cosignature needs a cosignature key (type 0x04), got type 0x{key.kind:02x}")
    if not key.matches(signature):
        raise CheckpointRefused(
            "unknown-key",
            f"signature by {signature.name}+{signature.key_id.hex()} is not by {key.name}+{key.key_id.hex()}",
        )
    want = _TIMESTAMP_SIZE + _ED25519_SIGNATURE_SIZE
    if len(signature.data) != want:
        raise CheckpointRefused(
            "timestamp", f"cosignature by {key.name} has {len(signature.data)} bytes after its key id, want {want}"
        )
    timestamp = int.from_bytes(signature.data[:_TIMESTAMP_SIZE], "big")
    if timestamp > MAX_TIMESTAMP:
        raise CheckpointRefused("timestamp", f"cosignature by {key.name} has timestamp {timestamp}, above 2^63-1")
    if not _ed25519_verify(key.public, signature.data[_TIMESTAMP_SIZE:], _cosigned_message(checkpoint_body, timestamp)):
        raise CheckpointRefused(
            "other-checkpoint", f"cosignature by {key.name} at time {timestamp} does not verify over this checkpoint"
        )
    return timestamp


@dataclass(frozen=True, slots=True)
class VerifiedCheckpoint:
    """A checkpoint whose log signature verified, and the configured witnesses that cosigned it."""

    checkpoint: Checkpoint
    cosigned_by: tuple[tuple[str, int], ...]
    """(witness name, timestamp) of each counted cosignature, in note order."""


def verify_checkpoint(
    note: str | bytes, log_key: NoteKey, witness_keys: Sequence[NoteKey], quorum: int
) -> VerifiedCheckpoint:
    """Verify a cosigned checkpoint against the verifier's own log key and witness keys.

    Requires a type 0x01 log key and type 0x04 witness keys with distinct public keys,
    and 0 <= quorum <= the number of distinct witness names (NoteError otherwise).
    Several keys under one name are one witness's current and earlier keys (a rotated
    witness key, docs/operations.md "Rotating keys"). The origin line must equal the
    log key's name; every signature by the log key must verify, and there must be
    one. A witness (a name) counts once, when at least one of its cosignatures, by
    any of its keys, verifies over this checkpoint's text. Signatures by unconfigured
    keys are ignored and never count. Raises CheckpointRefused: "malformed",
    "origin", "log-signature", or "quorum" with `detail` saying why each witness
    signature that did not count was left out.
    """
    _check_configuration(log_key, witness_keys, quorum)
    text, signatures = _parse_or_refuse(note)
    try:
        checkpoint = Checkpoint.parse(text)
    except NoteError as error:
        raise CheckpointRefused("malformed", f"note text is not a checkpoint: {error}") from None
    if checkpoint.origin != log_key.name:
        raise CheckpointRefused(
            "origin", f"checkpoint origin {checkpoint.origin!r} is not the log key's name {log_key.name!r}"
        )
    if len(checkpoint.root) != 32:
        raise CheckpointRefused("malformed", f"checkpoint root hash has {len(checkpoint.root)} bytes, want 32")
    _require_signature(text, signatures, log_key)

    counted: dict[str, int] = {}  # timestamp by witness name: a witness with several keys counts once
    left_out: list[tuple[str, str]] = []
    for signature in signatures:
        if log_key.matches(signature):
            continue
        witness = next((key for key in witness_keys if key.matches(signature)), None)
        if witness is None:
            left_out.append((signature.name, "unknown-key"))
            continue
        try:
            timestamp = verify_cosignature(text, signature, witness)
        except CheckpointRefused as refusal:
            left_out.append((signature.name, refusal.reason))
            continue
        if witness.name in counted:
            left_out.append((signature.name, "duplicate-witness"))
            continue
        counted[witness.name] = timestamp

    if len(counted) < quorum:
        why = "; ".join(f"{name}: {reason}" for name, reason in left_out) or "no other witness signatures"
        raise CheckpointRefused(
            "quorum",
            f"checkpoint {checkpoint.origin} at size {checkpoint.size} has {len(counted)} valid cosignatures "
            f"from distinct configured witnesses, want {quorum}; not counted: {why}",
            tuple(left_out),
        )
    return VerifiedCheckpoint(checkpoint, tuple(counted.items()))


# Private helpers


def _key_id(name: str, kind: int, public: bytes) -> bytes:
    """SHA-256(name || 0x0A || kind || public)[:4] (signed-note, "Signatures")."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([kind]) + public).digest()[:4]


def _require_signature(text: str, signatures: Sequence[Signature], key: NoteKey) -> None:
    """Refuse ("log-signature") unless `key` signed `text` at least once and every signature by it verifies."""
    message = text.encode("utf-8")
    mine = [signature for signature in signatures if key.matches(signature)]
    if not mine:
        raise CheckpointRefused(
            "log-signature", f"note has no signature by {key.name}+{key.key_id.hex()} among its {len(signatures)}"
        )
    for position, signature in enumerate(mine):
        if not _ed25519_verify(key.public, signature.data, message):
            raise CheckpointRefused(
                "log-signature",
                f"signature {position + 1} of {len(mine)} by {key.name}+{key.key_id.hex()} does not verify",
            )


def _ed25519_verify(public: bytes, signature: bytes, message: bytes) -> bool:
    try:
        ed25519.Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
    except InvalidSignature:
        return False
    return True


def _cosigned_message(checkpoint_body: str, timestamp: int) -> bytes:
    return f"cosignature/v1\ntime {timestamp}\n{checkpoint_body}".encode("utf-8")


def _check_key_name(name: str) -> None:
    """Key names are non-empty, without Unicode spaces or '+' (signed-note, "Format")."""
    if not name:
        raise NoteError("key name is empty")
    if "+" in name or any(character.isspace() for character in name):
        raise NoteError(f"key name {name!r} contains a space or '+'")
    _check_text_characters(name, "key name")


def _check_note_text(text: str) -> None:
    if not text.endswith("\n"):
        raise NoteError("note text must end in a newline")
    _check_text_characters(text, "note text")


def _check_text_characters(text: str, what: str) -> None:
    """UTF-8 encodable, and no control character below U+0020 but newline."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise NoteError(f"{what} is not UTF-8 at character {error.start}") from None
    for position, character in enumerate(text):
        if character < " " and character != "\n":
            raise NoteError(f"{what} has control character U+{ord(character):04X} at position {position}")


def _parse_signature_line(line: str, position: int) -> Signature:
    if not line.startswith(_SIGNATURE_PREFIX):
        raise NoteError(f"signature line {position} does not start with an em dash and a space")
    name, _, encoded = line[len(_SIGNATURE_PREFIX) :].partition(" ")
    try:
        _check_key_name(name)
    except NoteError as error:
        raise NoteError(f"signature line {position}: {error}") from None
    raw = _decode_base64(encoded, f"signature line {position}")
    if len(raw) < 5:
        raise NoteError(f"signature line {position} has {len(raw)} bytes, want a 4-byte key id and a signature")
    return Signature(name, raw[:4], raw[4:])


def _decode_base64(text: str, what: str) -> bytes:
    """Canonical padded standard base64 (RFC 4648 §4), non-empty."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raw = b""
    if not raw or base64.b64encode(raw).decode("ascii") != text:
        raise NoteError(f"{what} is not canonical base64")
    return raw


def _check_ed25519_point(public: bytes) -> None:
    """Refuse non-canonical and small-order points, through the JWK profile's checks (keys.py)."""
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": base64url.encode_str(public), "kid": "note-key"}
    try:
        public_key_from_jwk(jwk)
    except ProtocolError:
        raise NoteError("verifier key is not a usable Ed25519 public key (small order or not a point)") from None


def _parse_or_refuse(note: str | bytes) -> tuple[str, tuple[Signature, ...]]:
    try:
        return parse_note(note)
    except NoteError as error:
        raise CheckpointRefused("malformed", f"not a signed note: {error}") from None


def _check_configuration(log_key: NoteKey, witness_keys: Sequence[NoteKey], quorum: int) -> None:
    """Each public key configured once, so that counting names counts witnesses.

    An Ed25519 cosignature does not commit to the witness name, so one key under two
    names would let one witness count twice (tlog-cosignature, "Ed25519 signed message").
    One name may have several keys: a witness's current key and those it rotated from.
    """
    if log_key.kind != ED25519:
        raise NoteError(f"the log key must be type 0x01, got 0x{log_key.kind:02x}")
    names, publics = set(), set()
    for key in witness_keys:
        if key.kind != COSIGNATURE_V1:
            raise NoteError(f"witness key {key.name} must be type 0x04, got 0x{key.kind:02x}")
        if key.public in publics:
            raise NoteError(f"witness key {key.name} repeats a configured public key")
        names.add(key.name)
        publics.add(key.public)
    if not 0 <= quorum <= len(names):
        raise NoteError(f"quorum {quorum} is outside 0..{len(names)} configured witnesses")

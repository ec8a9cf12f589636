"""Signed notes, checkpoints and cosignatures (gateway/ledger/notes.py).

Against ../shared/vectors/merkle/signed-notes/signed-notes.json (golang/mod sumdb/note,
transparency-dev/formats, the C2SP specs): re-signing reproduces the published bytes,
every published Ed25519 key verifies its notes, every invalid note is refused, and the
checkpoint text parses as transparency-dev/formats parses it. Then the quorum rules of
verify_checkpoint, one refusal reason per test, each shown to be that reason by the
same note passing once one correct cosignature is added.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from gateway.ledger import merkle
from gateway.ledger.notes import (
    COSIGNATURE_V1,
    ED25519,
    Checkpoint,
    CheckpointRefused,
    NoteError,
    NoteKey,
    Signature,
    add_signature_lines,
    cosign,
    note_key,
    parse_note,
    parse_vkey,
    sign_note,
    verify_checkpoint,
    verify_cosignature,
    verify_note,
)
from gateway.protocol.keys import PrivateKey, generate
from tests.conftest import NOW, shared_vectors

ORIGIN = "hub.gba.test/gba-ledger"
WITNESSES = {"gd": "witness.cn-gd.test", "hk": "witness.hk.test", "mo": "witness.mo.test"}
T0 = int(NOW.timestamp())
ENTRIES = [f"entry {index}".encode() for index in range(13)]


# The shared vectors


@pytest.fixture(scope="module")
def vectors() -> dict[str, Any]:
    return json.loads(shared_vectors("merkle", "signed-notes", "signed-notes.json").read_text("utf-8"))


def _ed25519_vectors(vectors: dict[str, Any]) -> list[dict[str, Any]]:
    return [vector for vector in vectors["valid"] if vector["alg"] == "ed25519"]


def _vkeys(vector: dict[str, Any]) -> list[str]:
    return vector["vkeys"] if "vkeys" in vector else [vector["vkey"]]


def _private_key_from_skey(skey: str) -> tuple[str, PrivateKey]:
    """Read Go's "PRIVATE+KEY+name+hex(key ID)+base64(0x01 || seed)" form (golang.org/x/mod/sumdb/note)."""
    private, key, name, key_id, material = skey.split("+", 4)
    assert (private, key) == ("PRIVATE", "KEY")
    raw = base64.b64decode(material, validate=True)
    assert raw[0] == ED25519 and len(raw) == 33, "an Ed25519 skey holds 0x01 and a 32-byte seed"
    signing_key = PrivateKey(name, "Ed25519", ed25519.Ed25519PrivateKey.from_private_bytes(raw[1:]))
    assert note_key(name, signing_key.public()).key_id.hex() == key_id
    return name, signing_key


def test_signing_reproduces_every_vector_that_has_a_private_key(vectors):
    with_private_key = [vector for vector in _ed25519_vectors(vectors) if "skey" in vector]
    assert with_private_key, "the file has an Ed25519 note with its private key"
    for vector in with_private_key:
        name, signing_key = _private_key_from_skey(vector["skey"])
        assert sign_note(vector["text"], name, signing_key) == vector["signed_note"], vector["id"]


def test_every_ed25519_vkey_parses_round_trips_and_verifies_its_note(vectors):
    for vector in _ed25519_vectors(vectors):
        text, signatures = parse_note(vector["signed_note"])
        if "text" in vector:
            assert text == vector["text"]
        for vkey in _vkeys(vector):
            key = parse_vkey(vkey)
            assert key.kind == ED25519
            assert key.vkey() == vkey
            assert verify_note(vector["signed_note"], key) == text, (vector["id"], vkey)
        assert len(signatures) == len(_vkeys(vector))


def test_a_signature_by_an_untrusted_key_is_ignored(vectors):
    """go-sumdb-note-two-sigs: trusting only PeterNeumann, EnochRoot's signature does not matter."""
    vector = next(vector for vector in vectors["valid"] if vector["id"] == "go-sumdb-note-two-sigs")
    peter = parse_vkey(vector["vkeys"][0])
    assert verify_note(vector["signed_note"], peter).startswith("If you think cryptography")


def test_vkeys_of_other_signature_types_are_refused(vectors):
    others = [vector for vector in vectors["valid"] if vector["alg"] != "ed25519"]
    assert len(others) == 3
    for vector in others:
        with pytest.raises(NoteError, match="type 0x0[25] is not supported"):
            parse_vkey(vector["vkey"])


# Why each invalid note fails with an Ed25519 key. ECDSA and RFC 6962 keys are refused
# outright, so with any key this module accepts, those notes carry no known signature.
INVALID_REASONS = {
    "rekor-bad-sig": "log-signature",
    "rome-tampered-text": "log-signature",
    "peter-corrupted-sig": "log-signature",
    "no-trusted-sig": "log-signature",
    "malformed-no-sigs": "malformed",
    "malformed-blank-no-sigs": "malformed",
    "malformed-missing-final-newline": "malformed",
    "malformed-control-char": "malformed",
    "malformed-space-in-name": "malformed",
    "malformed-trailing-line": "malformed",
    "too-many-sigs": "malformed",
}


def test_every_invalid_note_is_refused(vectors):
    assert {vector["id"] for vector in vectors["invalid"]} == set(INVALID_REASONS)
    ed25519_keys = [parse_vkey(vkey) for vector in _ed25519_vectors(vectors) for vkey in _vkeys(vector)]
    for vector in vectors["invalid"]:
        keys = list(ed25519_keys)
        if vector["vkey"] is None:  # "no trusted signature": trust only keys that did not sign it
            keys = [key for key in ed25519_keys if f"\u2014 {key.name} " not in vector["signed_note"]]
            assert keys
        else:
            try:
                keys.append(parse_vkey(vector["vkey"]))
            except NoteError:
                assert vector["vkey"].split("+")[2][:2] in ("Aj", "BT"), "only ECDSA (0x02) and RFC 6962 (0x05) keys"
        for key in keys:
            with pytest.raises(CheckpointRefused) as refused:
                verify_note(vector["signed_note"], key)
            assert refused.value.reason == INVALID_REASONS[vector["id"]], (vector["id"], key.name)


def test_malformed_vectors_are_refused_by_the_parser_itself(vectors):
    for vector in vectors["invalid"]:
        if INVALID_REASONS[vector["id"]] == "malformed":
            with pytest.raises(NoteError):
                parse_note(vector["signed_note"])


def test_a_space_in_a_signature_name_is_refused_even_with_the_final_newline(vectors):
    vector = next(vector for vector in vectors["invalid"] if vector["id"] == "malformed-space-in-name")
    with pytest.raises(NoteError):
        parse_note(vector["signed_note"] + "\n")


def test_a_note_that_is_not_utf8_is_refused(vectors):
    """note_invalid_byte_ff: 0xff + a valid signed note is not UTF-8."""
    assert vectors["note_invalid_byte_ff"]["signed_note_hex_prefix"] == "ff"
    peter = next(vector for vector in vectors["valid"] if vector["id"] == "go-sumdb-note-peterneumann")
    note = bytes.fromhex("ff") + peter["signed_note"].encode("utf-8")
    with pytest.raises(NoteError, match="not UTF-8"):
        parse_note(note)
    with pytest.raises(CheckpointRefused) as refused:
        verify_note(note, parse_vkey(peter["vkey"]))
    assert refused.value.reason == "malformed"
    with pytest.raises(NoteError, match="not UTF-8"):
        parse_note(note.decode("utf-8", "surrogateescape"))


def test_a_hundred_signatures_are_accepted_and_a_hundred_and_one_are_not(vectors):
    peter = next(vector for vector in vectors["valid"] if vector["id"] == "go-sumdb-note-peterneumann")
    line = peter["signed_note"][len(peter["text"]) + 1 :]
    key = parse_vkey(peter["vkey"])
    assert verify_note(peter["text"] + "\n" + line * 100, key) == peter["text"]
    with pytest.raises(NoteError, match="101 signature lines, at most 100"):
        parse_note(peter["text"] + "\n" + line * 101)


def test_checkpoint_texts_parse_as_the_vectors_say(vectors):
    cases = vectors["checkpoint_body_parsing"]
    for case in cases["valid"]:
        checkpoint = Checkpoint.parse(case["m"])
        assert checkpoint.origin == case["origin"]
        assert checkpoint.size == case["size"]
        if "hash_b64" in case:
            assert checkpoint.root == base64.b64decode(case["hash_b64"])
        assert "".join(line + "\n" for line in checkpoint.extensions) == case["rest"]
        assert checkpoint.body() == case["m"]
    for case in cases["invalid"]:
        with pytest.raises(NoteError):
            Checkpoint.parse(case["m"])


def test_the_go_sumdb_tree_note_is_a_checkpoint(vectors):
    case = vectors["go_sumdb_tree_note_body"]
    checkpoint = Checkpoint.parse(case["body"])
    assert checkpoint == Checkpoint("go.sum database tree", case["tree_size"], merkle.leaf_hash(b"hello world"))


ROOT = base64.b64encode(bytes(32)).decode()


@pytest.mark.parametrize(
    "text, why",
    [
        (f"Log\n0123\n{ROOT}\n", "leading zero"),
        (f"Log\n+123\n{ROOT}\n", "plus sign"),
        (f"Log\n18446744073709551616\n{ROOT}\n", "2^64"),
        (f"Log\n123\n{ROOT}\n\n", "empty extension line"),
        (f"Log\n123\n{ROOT}\next\n\nmore\n", "empty extension line in the middle"),
        (f"Log\n123\n{ROOT[:-1]}\n", "unpadded base64"),
        ("Log\n123\nYR==\n", "non-zero trailing bits"),
        (f"Log\n123\n{ROOT}\r\n", "carriage return"),
        ("Log\n123\n\n", "empty root"),
    ],
)
def test_checkpoint_text_is_read_strictly(text, why):
    with pytest.raises(NoteError):
        Checkpoint.parse(text)


def test_the_largest_tree_size_is_accepted():
    assert Checkpoint.parse(f"Log\n18446744073709551615\n{ROOT}\n").size == 2**64 - 1
    assert Checkpoint.parse(f"Log\n0\n{ROOT}\n").size == 0


def test_a_checkpoint_cannot_be_built_with_a_line_break_in_a_field():
    with pytest.raises(NoteError):
        Checkpoint("Log\n5", 1, bytes(32))
    with pytest.raises(NoteError):
        Checkpoint("Log", 1, bytes(32), ("a\nb",))
    with pytest.raises(NoteError):
        Checkpoint("Log", -1, bytes(32))


def test_the_cosigned_message_is_the_c2sp_example_layout(vectors, test_key):
    """tlog-cosignature "Ed25519 signed message": the signature covers exactly the spec's example bytes."""
    example = vectors["cosignature_v1_message_example"]
    message = example["signed_message"]
    header, time_line, body = message.split("\n", 2)
    assert (header, time_line) == ("cosignature/v1", "time 1679315147")
    witness = test_key("test-cn-gd-witness-1")
    line = cosign(body, "witness.example.com/w1", witness, 1679315147)

    assert line.startswith("\u2014 witness.example.com/w1 ") and line.endswith("\n")
    raw = base64.b64decode(line.rstrip("\n").split(" ")[2], validate=True)
    public = witness.public().key.public_bytes_raw()
    assert raw[:4] == hashlib.sha256(b"witness.example.com/w1\n\x04" + public).digest()[:4]
    assert raw[4:12] == (1679315147).to_bytes(8, "big")
    assert len(raw) == 4 + 8 + 64
    witness.public().key.verify(raw[12:], message.encode("utf-8"))  # raises if the layout differs


# Keys


def test_key_ids_follow_the_spec(test_key):
    public = test_key("test-hub-checkpoint-1").public()
    raw = public.key.public_bytes_raw()
    for kind in (ED25519, COSIGNATURE_V1):
        key = note_key(ORIGIN, public, kind)
        assert key.key_id == hashlib.sha256(ORIGIN.encode() + b"\n" + bytes([kind]) + raw).digest()[:4]
        assert parse_vkey(key.vkey()) == key
        assert key.vkey() == f"{ORIGIN}+{key.key_id.hex()}+{base64.b64encode(bytes([kind]) + raw).decode()}"


def _vkey(name: str, kind: int, public: bytes) -> str:
    """A vkey with the key ID computed as the spec says, whatever `public` is."""
    key_id = hashlib.sha256(name.encode() + b"\n" + bytes([kind]) + public).digest()[:4]
    return f"{name}+{key_id.hex()}+{base64.b64encode(bytes([kind]) + public).decode()}"


def _refused(vkey: str) -> bool:
    try:
        parse_vkey(vkey)
    except NoteError:
        return True
    return False


def test_a_vkey_is_read_strictly(test_key):
    public = test_key("test-hub-checkpoint-1").public().key.public_bytes_raw()
    good = _vkey(ORIGIN, ED25519, public)
    name, key_id, material = good.split("+", 2)
    assert not _refused(good)
    bad = {
        "wrong key id": f"{name}+{int(key_id, 16) ^ 1:08x}+{material}",
        "upper-case hex": f"{name}+{key_id.upper()}+{material}",
        "short key id": f"{name}+{key_id[:6]}+{material}",
        "two parts": f"{name}+{key_id}",
        "empty name": _vkey("", ED25519, public),
        "space in name": _vkey("hub gba", ED25519, public),
        "key of 31 bytes": _vkey(ORIGIN, ED25519, public[:31]),
        "type 0x02": _vkey(ORIGIN, 0x02, public),
        "the identity point (small order)": _vkey(ORIGIN, ED25519, (1).to_bytes(32, "little")),
        "not a point": _vkey(ORIGIN, ED25519, (2).to_bytes(32, "little")),
    }
    if key_id == key_id.upper():
        del bad["upper-case hex"]  # no letters in this key id
    assert [why for why, vkey in bad.items() if not _refused(vkey)] == []


def test_a_note_key_must_carry_its_own_key_id(test_key):
    key = note_key(ORIGIN, test_key("test-hub-checkpoint-1").public())
    with pytest.raises(NoteError, match="does not match its key"):
        NoteKey(key.name, bytes(4), key.kind, key.public)
    with pytest.raises(NoteError, match="0x02"):
        NoteKey(key.name, key.key_id, 0x02, key.public)


def test_note_keys_are_ed25519_only():
    with pytest.raises(NoteError, match="ES256"):
        note_key(ORIGIN, generate("ES256", "p256").public())


# Notes


def test_a_signed_note_verifies_and_a_changed_one_does_not(test_key):
    hub = test_key("test-hub-checkpoint-1")
    key = note_key(ORIGIN, hub.public())
    note = sign_note("some text\n\nwith a blank line\n", ORIGIN, hub)
    assert verify_note(note, key) == "some text\n\nwith a blank line\n"
    with pytest.raises(CheckpointRefused) as refused:
        verify_note(note.replace("some", "same"), key)
    assert refused.value.reason == "log-signature"


def test_every_signature_by_the_trusted_key_must_verify(test_key):
    """signed-note: if a signature from a known key fails, the whole note is refused."""
    hub = test_key("test-hub-checkpoint-1")
    key = note_key(ORIGIN, hub.public())
    note = sign_note("text\n", ORIGIN, hub)
    _, (signature,) = parse_note(note)
    forged = Signature(ORIGIN, signature.key_id, bytes(64)).line()
    with pytest.raises(CheckpointRefused, match="signature 2 of 2") as refused:
        verify_note(add_signature_lines(note, [forged]), key)
    assert refused.value.reason == "log-signature"


def test_a_signature_with_the_trusted_name_but_another_key_is_ignored(test_key):
    """signed-note: signatures that share a name, but not the key ID, with a known key are unknown."""
    hub = test_key("test-hub-checkpoint-1")
    impostor = sign_note("text\n", ORIGIN, test_key("test-hk-witness-1"))
    with pytest.raises(CheckpointRefused, match="no signature by") as refused:
        verify_note(impostor, note_key(ORIGIN, hub.public()))
    assert refused.value.reason == "log-signature"


def test_sign_note_refuses_text_that_cannot_be_a_note(test_key):
    hub = test_key("test-hub-checkpoint-1")
    for text in ("no final newline", "tab\tinside\n", "cr\r\n"):
        with pytest.raises(NoteError):
            sign_note(text, ORIGIN, hub)
    for name in ("", "a b", "a+b"):
        with pytest.raises(NoteError):
            sign_note("text\n", name, hub)


def test_add_signature_lines_appends_in_order_and_checks_each_line(test_key):
    hub = test_key("test-hub-checkpoint-1")
    body = Checkpoint(ORIGIN, 13, merkle.reference_root(ENTRIES)).body()
    note = sign_note(body, ORIGIN, hub)
    lines = [
        cosign(body, WITNESSES["hk"], test_key("test-hk-witness-1"), T0),
        cosign(body, WITNESSES["gd"], test_key("test-cn-gd-witness-1"), T0 + 1),
    ]
    combined = add_signature_lines(note, lines)
    assert combined == note + lines[0] + lines[1]
    assert [signature.name for signature in parse_note(combined)[1]] == [ORIGIN, WITNESSES["hk"], WITNESSES["gd"]]
    for bad in ("— name AAAAAAAA", "- name AAAAAAAA\n", "— name not base64\n", "— name AAAA\n"):
        with pytest.raises(NoteError):
            add_signature_lines(note, [bad])
    with pytest.raises(NoteError, match="101 signature lines"):
        add_signature_lines(note, lines[:1] * 100)


# Cosignatures


def test_a_cosignature_verifies_and_returns_its_timestamp(test_key):
    body = Checkpoint(ORIGIN, 13, merkle.reference_root(ENTRIES)).body()
    witness = test_key("test-cn-gd-witness-1")
    key = note_key(WITNESSES["gd"], witness.public(), COSIGNATURE_V1)
    line = cosign(body, WITNESSES["gd"], witness, T0)
    _, (signature,) = parse_note("x\n\n" + line)
    assert signature.key_id == key.key_id
    assert verify_cosignature(body, signature, key) == T0


def test_cosign_refuses_times_outside_the_spec(test_key):
    body = Checkpoint(ORIGIN, 13, merkle.reference_root(ENTRIES)).body()
    witness = test_key("test-cn-gd-witness-1")
    assert cosign(body, WITNESSES["gd"], witness, 2**63 - 1)
    for timestamp in (-1, 2**63):
        with pytest.raises(NoteError, match=str(timestamp)):
            cosign(body, WITNESSES["gd"], witness, timestamp)
    with pytest.raises(NoteError):
        cosign("not a checkpoint\n", WITNESSES["gd"], witness, T0)


def test_verify_cosignature_names_what_is_wrong(test_key):
    body = Checkpoint(ORIGIN, 13, merkle.reference_root(ENTRIES)).body()
    other_body = Checkpoint(ORIGIN, 12, merkle.reference_root(ENTRIES[:12])).body()
    witness = test_key("test-cn-gd-witness-1")
    key = note_key(WITNESSES["gd"], witness.public(), COSIGNATURE_V1)
    (signature,) = parse_note("x\n\n" + cosign(body, WITNESSES["gd"], witness, T0))[1]
    (on_other,) = parse_note("x\n\n" + cosign(other_body, WITNESSES["gd"], witness, T0))[1]
    cases = {
        "unknown-key": (signature, note_key(WITNESSES["gd"], test_key("test-hk-witness-1").public(), COSIGNATURE_V1)),
        "timestamp": (Signature(signature.name, signature.key_id, signature.data[1:]), key),
        "other-checkpoint": (on_other, key),
    }
    for reason, (candidate, verifier) in cases.items():
        with pytest.raises(CheckpointRefused) as refused:
            verify_cosignature(body, candidate, verifier)
        assert refused.value.reason == reason
    too_late = Signature(signature.name, signature.key_id, (2**63).to_bytes(8, "big") + signature.data[8:])
    with pytest.raises(CheckpointRefused, match="above 2\\^63-1") as refused:
        verify_cosignature(body, too_late, key)
    assert refused.value.reason == "timestamp"


# verify_checkpoint: the quorum


@pytest.fixture(scope="module")
def log(test_key) -> PrivateKey:
    return test_key("test-hub-checkpoint-1")


@pytest.fixture(scope="module")
def witness(test_key) -> dict[str, PrivateKey]:
    return {short: test_key(f"test-{kid}-witness-1") for short, kid in (("gd", "cn-gd"), ("hk", "hk"), ("mo", "mo"))}


@pytest.fixture(scope="module")
def witness_keys(witness) -> list[NoteKey]:
    return [note_key(WITNESSES[short], witness[short].public(), COSIGNATURE_V1) for short in ("gd", "hk", "mo")]


BODY = Checkpoint(ORIGIN, 13, merkle.reference_root(ENTRIES)).body()


def _cosigned(log: PrivateKey, *lines: str) -> str:
    return add_signature_lines(sign_note(BODY, ORIGIN, log), lines)


def _refusal(note: str, log: PrivateKey, witness_keys: list[NoteKey], quorum: int) -> CheckpointRefused:
    with pytest.raises(CheckpointRefused) as refused:
        verify_checkpoint(note, note_key(ORIGIN, log.public()), witness_keys, quorum)
    return refused.value


def test_a_quorum_of_distinct_configured_witnesses_verifies(log, witness, witness_keys):
    note = _cosigned(
        log, cosign(BODY, WITNESSES["hk"], witness["hk"], T0), cosign(BODY, WITNESSES["gd"], witness["gd"], T0 + 5)
    )
    verified = verify_checkpoint(note, note_key(ORIGIN, log.public()), witness_keys, 2)
    assert verified.checkpoint == Checkpoint.parse(BODY)
    assert verified.cosigned_by == ((WITNESSES["hk"], T0), (WITNESSES["gd"], T0 + 5))


def test_quorum_zero_needs_only_the_log_signature(log, witness_keys):
    verified = verify_checkpoint(_cosigned(log), note_key(ORIGIN, log.public()), witness_keys, 0)
    assert verified.cosigned_by == ()


def test_fewer_cosignatures_than_the_quorum_is_refused(log, witness, witness_keys):
    note = _cosigned(log, cosign(BODY, WITNESSES["gd"], witness["gd"], T0))
    refusal = _refusal(note, log, witness_keys, 2)
    assert refusal.reason == "quorum"
    assert "has 1 valid cosignatures" in str(refusal) and "want 2" in str(refusal)
    assert refusal.detail == ()


def test_a_witness_that_cosigns_twice_counts_once(log, witness, witness_keys):
    twice = [cosign(BODY, WITNESSES["gd"], witness["gd"], T0), cosign(BODY, WITNESSES["gd"], witness["gd"], T0 + 1)]
    refusal = _refusal(_cosigned(log, *twice), log, witness_keys, 2)
    assert refusal.reason == "quorum" and "has 1 valid" in str(refusal)
    assert refusal.detail == ((WITNESSES["gd"], "duplicate-witness"),)
    third = cosign(BODY, WITNESSES["hk"], witness["hk"], T0)
    verified = verify_checkpoint(_cosigned(log, *twice, third), note_key(ORIGIN, log.public()), witness_keys, 2)
    assert verified.cosigned_by == ((WITNESSES["gd"], T0), (WITNESSES["hk"], T0))


def test_an_unconfigured_key_never_counts(log, witness, witness_keys):
    configured = witness_keys[:2]  # gd and hk; mo is not configured
    unconfigured = [
        cosign(BODY, WITNESSES["mo"], witness["mo"], T0),  # an unknown name
        cosign(BODY, WITNESSES["hk"], witness["mo"], T0),  # a known name with another key
    ]
    lines = [cosign(BODY, WITNESSES["gd"], witness["gd"], T0), *unconfigured]
    refusal = _refusal(_cosigned(log, *lines), log, configured, 2)
    assert refusal.reason == "quorum" and "has 1 valid" in str(refusal)
    assert refusal.detail == ((WITNESSES["mo"], "unknown-key"), (WITNESSES["hk"], "unknown-key"))
    lines.append(cosign(BODY, WITNESSES["hk"], witness["hk"], T0))
    assert len(verify_checkpoint(_cosigned(log, *lines), note_key(ORIGIN, log.public()), configured, 2).cosigned_by) == 2


def test_a_cosignature_over_another_checkpoint_never_counts(log, witness, witness_keys):
    other = Checkpoint(ORIGIN, 12, merkle.reference_root(ENTRIES[:12])).body()
    lines = [cosign(BODY, WITNESSES["gd"], witness["gd"], T0), cosign(other, WITNESSES["hk"], witness["hk"], T0)]
    refusal = _refusal(_cosigned(log, *lines), log, witness_keys, 2)
    assert refusal.reason == "quorum" and "has 1 valid" in str(refusal)
    assert refusal.detail == ((WITNESSES["hk"], "other-checkpoint"),)
    lines.append(cosign(BODY, WITNESSES["mo"], witness["mo"], T0))
    assert len(verify_checkpoint(_cosigned(log, *lines), note_key(ORIGIN, log.public()), witness_keys, 2).cosigned_by) == 2


def test_a_cosignature_whose_timestamp_cannot_be_read_fails_that_signature(log, witness, witness_keys):
    good = cosign(BODY, WITNESSES["hk"], witness["hk"], T0)
    (signature,) = parse_note("x\n\n" + good)[1]
    truncated = Signature(signature.name, signature.key_id, signature.data[:7] + signature.data[8:]).line()
    lines = [cosign(BODY, WITNESSES["gd"], witness["gd"], T0), truncated]
    refusal = _refusal(_cosigned(log, *lines), log, witness_keys, 2)
    assert refusal.reason == "quorum" and "has 1 valid" in str(refusal)
    assert refusal.detail == ((WITNESSES["hk"], "timestamp"),)
    lines.append(cosign(BODY, WITNESSES["mo"], witness["mo"], T0))
    assert len(verify_checkpoint(_cosigned(log, *lines), note_key(ORIGIN, log.public()), witness_keys, 2).cosigned_by) == 2


def test_the_quorum_message_names_every_signature_left_out(log, witness, witness_keys):
    note = _cosigned(
        log,
        cosign(BODY, WITNESSES["gd"], witness["gd"], T0),
        cosign(BODY, WITNESSES["gd"], witness["gd"], T0 + 1),
        cosign(BODY, "witness.elsewhere.test", witness["mo"], T0),
    )
    refusal = _refusal(note, log, witness_keys, 3)
    assert "has 1 valid cosignatures from distinct configured witnesses, want 3" in str(refusal)
    assert f"{WITNESSES['gd']}: duplicate-witness" in str(refusal)
    assert "witness.elsewhere.test: unknown-key" in str(refusal)


def test_the_log_signature_is_required(log, witness, witness_keys):
    lines = [cosign(BODY, WITNESSES["gd"], witness["gd"], T0), cosign(BODY, WITNESSES["hk"], witness["hk"], T0)]
    cosigned_only = BODY + "\n" + "".join(lines)
    refusal = _refusal(cosigned_only, log, witness_keys, 2)
    assert refusal.reason == "log-signature"


def test_a_bad_log_signature_is_refused_whatever_the_cosignatures(log, witness, witness_keys):
    note = _cosigned(log, cosign(BODY, WITNESSES["gd"], witness["gd"], T0))
    text, (log_signature, cosignature) = parse_note(note)
    broken = Signature(log_signature.name, log_signature.key_id, bytes(64))
    refusal = _refusal(text + "\n" + broken.line() + cosignature.line(), log, witness_keys, 1)
    assert refusal.reason == "log-signature"


def test_the_origin_must_be_the_log_keys_name(log, witness_keys):
    body = Checkpoint("other.log.test/ledger", 13, merkle.reference_root(ENTRIES)).body()
    note = sign_note(body, ORIGIN, log)  # the right key, signing another origin
    assert _refusal(note, log, witness_keys, 0).reason == "origin"


def test_a_note_that_is_not_a_checkpoint_is_malformed(log, witness_keys):
    assert _refusal(sign_note("hello\n", ORIGIN, log), log, witness_keys, 0).reason == "malformed"
    short_root = Checkpoint(ORIGIN, 13, b"bananas").body()
    refusal = _refusal(sign_note(short_root, ORIGIN, log), log, witness_keys, 0)
    assert refusal.reason == "malformed" and "7 bytes, want 32" in str(refusal)
    assert _refusal(BODY, log, witness_keys, 0).reason == "malformed"


def test_the_verifier_configuration_is_checked(log, witness, witness_keys):
    log_key = note_key(ORIGIN, log.public())
    note = _cosigned(log)
    same_name = note_key(WITNESSES["gd"], witness["hk"].public(), COSIGNATURE_V1)
    same_key = note_key("witness.again.test", witness["gd"].public(), COSIGNATURE_V1)
    for keys, quorum in (
        (witness_keys + [same_name], 1),
        (witness_keys + [same_key], 1),
        (witness_keys, 4),
        (witness_keys, -1),
        ([note_key(WITNESSES["gd"], witness["gd"].public(), ED25519)], 1),
    ):
        with pytest.raises(NoteError):
            verify_checkpoint(note, log_key, keys, quorum)
    with pytest.raises(NoteError):
        verify_checkpoint(note, note_key(ORIGIN, log.public(), COSIGNATURE_V1), witness_keys, 0)


def test_the_hub_keeps_the_cosignature_line_it_verified_among_a_witnesss_lines(log, witness, witness_keys):
    """A witness may answer with several lines under its name (C2SP tlog-witness): another key's, an older key's, one
    that does not verify. The hub stores and publishes the line it verified, so that the published checkpoint meets the
    quorum it counted (PROTO-13.5-3)."""
    from gateway.hub.witnessing import WitnessEndpoint, cosignature_line
    from gateway.ledger.checkpoints import StoredCheckpoint

    latest = StoredCheckpoint(ORIGIN, 13, merkle.reference_root(ENTRIES), sign_note(BODY, ORIGIN, log), NOW)
    hk = WitnessEndpoint(WITNESSES["hk"], "HK", witness_keys[1], None)
    valid = cosign(BODY, WITNESSES["hk"], witness["hk"], T0)
    old_key = cosign(BODY, WITNESSES["hk"], generate("Ed25519", "an-old-hk-witness-key"), T0)
    other_kind = sign_note(BODY, WITNESSES["hk"], witness["hk"]).split("\n\n")[1]  # its Ed25519 note key, not type 0x04
    elsewhere = cosign(Checkpoint(ORIGIN, 12, merkle.reference_root(ENTRIES[:12])).body(), WITNESSES["hk"], witness["hk"], T0)
    for lines in ([old_key, other_kind, valid], [elsewhere, valid], [valid, elsewhere], [valid]):
        assert cosignature_line(hk, latest, "".join(lines).encode()) == valid, lines
    with pytest.raises(CheckpointRefused) as refused:
        cosignature_line(hk, latest, (old_key + elsewhere).encode())
    assert refused.value.reason == "other-checkpoint"
    with pytest.raises(NoteError, match="no cosignature by this witness"):
        cosignature_line(hk, latest, old_key.encode())
    published = add_signature_lines(latest.note, [cosignature_line(hk, latest, (old_key + valid).encode())])
    assert verify_checkpoint(published, note_key(ORIGIN, log.public()), witness_keys, 1).cosigned_by == ((WITNESSES["hk"], T0),)

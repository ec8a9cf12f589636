"""The tlog-witness add-checkpoint decision (gateway/ledger/witness.py), status by status.

Trees are built with merkle.reference_root and reference_consistency over generated
entries; the log signs with the hub's test checkpoint key and the witness cosigns with
the Guangdong witness test key, at a fixed time. The request layout and status codes
follow c2sp.org/tlog-witness and the shared vectors' `witness_add_checkpoint_request_example`.
"""

from __future__ import annotations

import base64
import json

import pytest

from gateway.ledger import merkle
from gateway.ledger.notes import (
    COSIGNATURE_V1,
    Checkpoint,
    NoteKey,
    Signature,
    note_key,
    parse_note,
    sign_note,
    verify_checkpoint,
    verify_cosignature,
)
from gateway.ledger.witness import (
    MAX_PROOF_LINES,
    AddCheckpoint,
    MalformedRequest,
    WitnessAnswer,
    WitnessState,
    add_checkpoint,
    parse_add_checkpoint,
)
from gateway.protocol.keys import PrivateKey
from tests.conftest import NOW, shared_vectors

ORIGIN = "hub.gba.test/gba-ledger"
WITNESS = "witness.cn-gd.test"
NOW_POSIX = int(NOW.timestamp())
ENTRIES = [f"entry {index}".encode() for index in range(40)]
FORK = ENTRIES[:3] + [f"forked entry {index}".encode() for index in range(3, 40)]
"""A history that agrees with ENTRIES on the first three entries only."""


@pytest.fixture(scope="module")
def log(test_key) -> PrivateKey:
    return test_key("test-hub-checkpoint-1")


@pytest.fixture(scope="module")
def witness_key(test_key) -> PrivateKey:
    return test_key("test-cn-gd-witness-1")


@pytest.fixture(scope="module")
def logs(log) -> dict[str, NoteKey]:
    return {ORIGIN: note_key(ORIGIN, log.public())}


def checkpoint_note(log: PrivateKey, size: int, entries: list[bytes] = ENTRIES) -> str:
    return sign_note(Checkpoint(ORIGIN, size, merkle.reference_root(entries[:size])).body(), ORIGIN, log)


def request_body(old: int, proof: list[bytes], note: str) -> bytes:
    lines = [f"old {old}", *(base64.b64encode(hash).decode() for hash in proof), "", note]
    return "\n".join(lines).encode("utf-8")


def decide(body: bytes, logs: dict[str, NoteKey], witness_key: PrivateKey, latest: WitnessState | None) -> WitnessAnswer:
    return add_checkpoint(
        parse_add_checkpoint(body),
        logs=logs,
        state=lambda origin: latest if origin == ORIGIN else None,
        witness_name=WITNESS,
        witness_key=witness_key,
        now=NOW_POSIX,
    )


def state_at(size: int, entries: list[bytes] = ENTRIES) -> WitnessState:
    return WitnessState(size, merkle.reference_root(entries[:size]))


def consistency(old: int, new: int, entries: list[bytes] = ENTRIES) -> list[bytes]:
    return merkle.reference_consistency(old, entries[:new])


def assert_witness_answer(answer: WitnessAnswer, status: int) -> None:
    assert answer.status == status, answer.body
    assert answer.new_state is None
    assert "\u2014".encode() not in answer.body  # no cosignature, not even in an error text


# 200: cosigning a chain


def test_a_chain_of_three_checkpoints_is_cosigned_and_the_state_advances(log, logs, witness_key):
    witness_public = note_key(WITNESS, witness_key.public(), COSIGNATURE_V1)
    latest: WitnessState | None = None
    for old, new in ((0, 5), (5, 13), (13, 40)):
        note = checkpoint_note(log, new)
        proof = consistency(old, new) if old else []
        answer = decide(request_body(old, proof, note), logs, witness_key, latest)

        assert (answer.status, answer.content_type) == (200, "text/plain; charset=utf-8")
        assert answer.new_state == state_at(new)
        line = answer.body.decode("utf-8")
        text, (signature,) = parse_note("x\n\n" + line)
        assert verify_cosignature(parse_note(note)[0], signature, witness_public) == NOW_POSIX
        # The log can attach the answer to its checkpoint and verifiers count it.
        verified = verify_checkpoint(note + line, logs[ORIGIN], [witness_public], 1)
        assert verified.cosigned_by == ((WITNESS, NOW_POSIX),)
        latest = answer.new_state


def test_the_same_checkpoint_is_cosigned_again(log, logs, witness_key):
    answer = decide(request_body(13, [], checkpoint_note(log, 13)), logs, witness_key, state_at(13))
    assert answer.status == 200
    assert answer.new_state == state_at(13)


def test_an_empty_tree_is_cosigned_with_its_own_root(log, logs, witness_key):
    answer = decide(request_body(0, [], checkpoint_note(log, 0)), logs, witness_key, None)
    assert answer.status == 200
    assert answer.new_state == WitnessState(0, merkle.EMPTY_ROOT)


def test_extra_signatures_by_unknown_keys_are_ignored(log, logs, witness_key, test_key):
    (stranger,) = parse_note(sign_note("other\n", "someone.else", test_key("test-hk-witness-1")))[1]
    note = checkpoint_note(log, 5) + stranger.line()
    assert decide(request_body(0, [], note), logs, witness_key, None).status == 200


# 422: proofs that do not show the checkpoint extends the witnessed tree


def test_a_fork_at_a_larger_size_gets_422_and_no_cosignature(log, logs, witness_key):
    fork_note = checkpoint_note(log, 13, FORK)
    for proof in (consistency(5, 13, FORK), consistency(5, 13)):  # the fork's own proof, and the honest one
        answer = decide(request_body(5, proof, fork_note), logs, witness_key, state_at(5))
        assert_witness_answer(answer, 422)


def test_flipping_any_one_proof_line_is_refused(log, logs, witness_key):
    note = checkpoint_note(log, 27)
    proof = consistency(6, 27)
    assert decide(request_body(6, proof, note), logs, witness_key, state_at(6)).status == 200
    assert len(proof) >= 4
    for position in range(len(proof)):
        flipped = list(proof)
        flipped[position] = bytes([proof[position][0] ^ 0x01]) + proof[position][1:]
        assert_witness_answer(decide(request_body(6, flipped, note), logs, witness_key, state_at(6)), 422)


def test_a_proof_of_the_wrong_length_is_refused(log, logs, witness_key):
    note = checkpoint_note(log, 27)
    proof = consistency(6, 27)
    for wrong in (proof[:-1], proof + [proof[0]], []):
        assert_witness_answer(decide(request_body(6, wrong, note), logs, witness_key, state_at(6)), 422)


def test_a_proof_from_size_zero_must_be_empty(log, logs, witness_key):
    answer = decide(request_body(0, [merkle.leaf_hash(ENTRIES[0])], checkpoint_note(log, 1)), logs, witness_key, None)
    assert_witness_answer(answer, 422)


def test_equal_sizes_need_an_empty_proof(log, logs, witness_key):
    answer = decide(request_body(13, [bytes(32)], checkpoint_note(log, 13)), logs, witness_key, state_at(13))
    assert_witness_answer(answer, 422)


def test_a_size_zero_checkpoint_needs_the_empty_trees_root(log, logs, witness_key):
    note = sign_note(Checkpoint(ORIGIN, 0, bytes(32)).body(), ORIGIN, log)
    assert_witness_answer(decide(request_body(0, [], note), logs, witness_key, None), 422)


# 409: the log does not know what the witness holds


def test_the_same_size_with_another_root_is_a_conflict(log, logs, witness_key):
    answer = decide(request_body(13, [], checkpoint_note(log, 13, FORK)), logs, witness_key, state_at(13))
    assert_witness_answer(answer, 409)
    assert (answer.body, answer.content_type) == (b"13\n", "text/x.tlog.size")


def test_an_old_size_that_is_not_the_latest_is_a_conflict(log, logs, witness_key):
    cases = ((5, state_at(13), b"13\n"), (13, state_at(5), b"5\n"), (5, None, b"0\n"), (0, state_at(5), b"5\n"))
    for old, latest, want in cases:
        proof = consistency(old, 20) if old else []
        answer = decide(request_body(old, proof, checkpoint_note(log, 20)), logs, witness_key, latest)
        assert_witness_answer(answer, 409)
        assert (answer.body, answer.content_type) == (want, "text/x.tlog.size")


# 403, 404, 400


def test_a_checkpoint_without_a_valid_log_signature_is_forbidden(log, logs, witness_key, test_key):
    body = Checkpoint(ORIGIN, 5, merkle.reference_root(ENTRIES[:5])).body()
    by_another_key = sign_note(body, ORIGIN, test_key("test-hk-witness-1"))
    text, (signature,) = parse_note(checkpoint_note(log, 5))
    corrupted = text + "\n" + Signature(signature.name, signature.key_id, bytes(64)).line()
    tampered = checkpoint_note(log, 5).replace("\n5\n", "\n6\n")
    for note in (by_another_key, corrupted, tampered):
        assert_witness_answer(decide(request_body(0, [], note), logs, witness_key, None), 403)


def test_an_unknown_origin_is_not_found(log, witness_key):
    other_logs = {"other.log.test": note_key("other.log.test", log.public())}
    assert_witness_answer(decide(request_body(0, [], checkpoint_note(log, 5)), other_logs, witness_key, None), 404)


def test_an_old_size_above_the_checkpoint_size_is_a_bad_request(log, logs, witness_key):
    assert_witness_answer(decide(request_body(13, [], checkpoint_note(log, 5)), logs, witness_key, state_at(13)), 400)


def test_a_root_that_is_not_32_bytes_is_a_bad_request(log, logs, witness_key):
    note = sign_note(Checkpoint(ORIGIN, 5, b"bananas").body(), ORIGIN, log)
    assert_witness_answer(decide(request_body(0, [], note), logs, witness_key, None), 400)


def test_a_note_that_is_not_a_checkpoint_is_a_bad_request(log, logs, witness_key):
    for note in (sign_note("hello\n", ORIGIN, log), "example.com/log\n5\n" + "A" * 44 + "\n"):
        assert_witness_answer(decide(request_body(0, [], note), logs, witness_key, None), 400)


# Parsing the request body


def test_the_spec_example_request_parses(vectors_example):
    request = parse_add_checkpoint(vectors_example["body"].encode("utf-8"))
    assert request.old_size == 20852014
    assert [base64.b64encode(hash).decode()[:8] for hash in request.proof] == ["PlRNCrwH", "jrJZDmY8", "5+pKlUdi", "/6WVhPs2"]
    assert request.note.startswith("example.com/behind-the-sofa\n20852163\n")
    assert len(parse_note(request.note)[1]) == 2


def test_the_spec_example_gets_404_then_403(vectors_example, log, witness_key):
    """Its origin is unknown to us (404); trusted under a key of ours, it is not signed by it (403)."""
    body = vectors_example["body"].encode("utf-8")
    assert_witness_answer(decide(body, {}, witness_key, None), 404)
    origin = "example.com/behind-the-sofa"
    answer = add_checkpoint(
        parse_add_checkpoint(body),
        logs={origin: note_key(origin, log.public())},
        state=lambda _: None,
        witness_name=WITNESS,
        witness_key=witness_key,
        now=NOW_POSIX,
    )
    assert_witness_answer(answer, 403)
    assert set(vectors_example["status_codes"]) == {"404", "403", "400", "409", "422"}


@pytest.fixture(scope="module")
def vectors_example() -> dict:
    document = json.loads(shared_vectors("merkle", "signed-notes", "signed-notes.json").read_text("utf-8"))
    return document["witness_add_checkpoint_request_example"]


NOTE = "example.com/log\n5\n" + base64.b64encode(bytes(32)).decode() + "\n\n\u2014 example.com/log AAAAAAA=\n"
HASH = base64.b64encode(bytes(32)).decode()


@pytest.mark.parametrize(
    "body, why",
    [
        (b"", "empty"),
        (f"\n\n{NOTE}".encode(), "no old line"),
        (f"old 05\n\n{NOTE}".encode(), "leading zero"),
        (f"old -1\n\n{NOTE}".encode(), "negative"),
        (f"old  5\n\n{NOTE}".encode(), "two spaces"),
        (f"Old 5\n\n{NOTE}".encode(), "capital"),
        (f"old 18446744073709551616\n\n{NOTE}".encode(), "above 2^64-1"),
        (f"old 5\n{HASH[:-1]}\n\n{NOTE}".encode(), "proof line not padded"),
        (f"old 5\n{base64.b64encode(bytes(31)).decode()}\n\n{NOTE}".encode(), "proof hash of 31 bytes"),
        (f"old 5\n{HASH}\r\n\n{NOTE}".encode(), "carriage return"),
        (f"old 5\n{HASH}\n{NOTE}".encode(), "no empty line"),
        (f"old 5\n{HASH}\n\n".encode(), "no checkpoint"),
        ("old 5\n\n".encode() + b"\xff" + NOTE.encode(), "not UTF-8"),
        (("old 5\n" + (HASH + "\n") * (MAX_PROOF_LINES + 1) + "\n" + NOTE).encode(), "64 proof lines"),
    ],
)
def test_malformed_request_bodies_are_bad_requests(body, why):
    with pytest.raises(MalformedRequest) as malformed:
        parse_add_checkpoint(body)
    answer = malformed.value.answer
    assert (answer.status, answer.content_type, answer.new_state) == (400, "text/plain; charset=utf-8", None)


def test_sixty_three_proof_lines_are_allowed():
    request = parse_add_checkpoint(("old 5\n" + (HASH + "\n") * MAX_PROOF_LINES + "\n" + NOTE).encode())
    assert request == AddCheckpoint(5, (bytes(32),) * MAX_PROOF_LINES, NOTE)

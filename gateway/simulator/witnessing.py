"""The simulated jurisdiction as a witness of the hub's ledger (C2SP tlog-witness; docs/protocol.md §13.5).

The decision is `gateway.ledger.witness.add_checkpoint` (pure); this module gives it the
simulator's durable state — the latest checkpoint cosigned per origin, in the same
sqlite file — and records the new state before the cosignature is answered, so a
witness that restarts never cosigns a tree inconsistent with one it cosigned before.
The logs it witnesses and their keys come from its own configuration (`--log VKEY`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import structlog

from gateway.ledger import notes, witness
from gateway.protocol.keys import PrivateKey
from gateway.simulator.state import SimulatorState

_log = structlog.get_logger("gateway.simulator")


class Witness:
    def __init__(
        self, state: SimulatorState, name: str, key: PrivateKey, logs: Mapping[str, notes.NoteKey], clock: Callable[[], int]
    ) -> None:
        self._state = state
        self._name = name
        self._key = key
        self._logs = dict(logs)
        self._clock = clock

    def note_key(self) -> notes.NoteKey:
        """This witness's cosignature key, as verifiers configure it."""
        return notes.note_key(self._name, self._key.public(), 0x04)

    def add_checkpoint(self, body: bytes) -> tuple[int, bytes, str]:
        """Answer one add-checkpoint request: (status, body, content type)."""
        try:
            request = witness.parse_add_checkpoint(body)
        except witness.MalformedRequest as error:
            return _answer(error.answer)
        answer = witness.add_checkpoint(
            request, logs=self._logs, state=self._held, witness_name=self._name, witness_key=self._key, now=self._clock()
        )
        if answer.new_state is not None:
            origin = request.note.split("\n", 1)[0]
            self._state.witness(origin, answer.new_state.size, answer.new_state.root)
            _log.info("simulator.witness.cosigned", origin=origin, size=answer.new_state.size)
        else:
            _log.info("simulator.witness.refused", status=answer.status)
        return _answer(answer)

    def _held(self, origin: str) -> witness.WitnessState | None:
        held = self._state.witnessed(origin)
        return None if held is None else witness.WitnessState(*held)


def _answer(answer: witness.WitnessAnswer) -> tuple[int, bytes, str]:
    return answer.status, answer.body, answer.content_type

"""The counters workers share (gateway/hub/counters.py): each process adds to its slot, every reader sees the sum."""

from __future__ import annotations

import multiprocessing

import pytest

from gateway.hub.counters import Board
from gateway.hub.metrics import Metrics, counter_board


def test_a_private_board_counts_what_this_process_adds():
    board = Board(["a", "b"])
    board.add("a")
    board.add("a", 2.5)
    assert board.total("a") == 3.5 and board.total("b") == 0


def _add_in_slot(board: Board, slot: int, amount: float) -> None:
    board.use_slot(slot)
    for _ in range(1000):
        board.add("a", amount)


def test_forked_processes_add_to_their_own_slots_and_every_one_reads_the_sum():
    board = Board(["a", "b"])
    board.add("a", 7)  # counted before sharing: kept, in slot 0
    board.share(3)
    fork = multiprocessing.get_context("fork")
    children = [fork.Process(target=_add_in_slot, args=(board, slot, slot)) for slot in (1, 2)]
    for child in children:
        child.start()
    for child in children:
        child.join()
        assert child.exitcode == 0
    assert board.total("a") == 7 + 1000 * 1 + 1000 * 2
    assert board.total("b") == 0


def test_a_process_started_in_a_slot_goes_on_from_its_figures():
    """A worker started in place of a dead one takes its slot: the totals never go back."""
    board = Board(["a"])
    board.share(2)
    fork = multiprocessing.get_context("fork")
    for _ in range(2):
        child = fork.Process(target=_add_in_slot, args=(board, 1, 1.0))
        child.start()
        child.join()
    assert board.total("a") == 2000


def test_slots_and_names_are_checked():
    with pytest.raises(ValueError):
        Board(["a", "a"])
    board = Board(["a"])
    with pytest.raises(ValueError):
        board.use_slot(1)
    with pytest.raises(ValueError):
        board.share(0)


def test_metrics_count_a_code_outside_the_catalogue_rather_than_fail():
    metrics = Metrics(counter_board())
    metrics.refused("signature-invalid")
    metrics.refused("not-a-catalogue-code")
    metrics.accepted(replayed=False)
    assert metrics._counts("refused:") == [("not-a-catalogue-code", 1), ("signature-invalid", 1)]
    assert metrics._counts("accepted:") == [("new", 1)]

"""The benchmarks' CPU accounting (bench/accept.py): a process tree's CPU counts the children that end in the window.

PostgreSQL's autovacuum workers and short-lived backends start and end inside a run. Before, a snapshot of the
tree's live processes missed them: their CPU went to nobody (or to the machine's `other`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import accept  # noqa: E402  (bench/accept.py)

# A child that burns CPU when told to on stdin, and says on stdout how much CPU it has used in all.
_BURNER = """
import os, sys, time
def burn(seconds):
    start = sum(os.times()[:2])
    while sum(os.times()[:2]) - start < seconds:
        pass
for line in sys.stdin:
    burn(float(line))
    print(sum(os.times()[:2]), flush=True)
"""


def _burner() -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", _BURNER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def _burn(child: subprocess.Popen[str], seconds: float) -> float:
    """Let `child` burn `seconds` of CPU; its CPU in all so far."""
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write(f"{seconds}\n")
    child.stdin.flush()
    return float(child.stdout.readline())


def test_a_child_that_ends_in_the_window_is_counted_for_its_cpu_in_the_window_only():
    child = _burner()
    try:
        before_window = _burn(child, 0.3)
        before = accept.process_tree_cpu(os.getpid())
        assert before[child.pid] > 0.0
        in_all = _burn(child, 0.4)
        child.stdin.close()  # type: ignore[union-attr]
        assert child.wait(timeout=60) == 0  # waited for: its CPU joins this process's children's total
        after = accept.process_tree_cpu(os.getpid())
    finally:
        child.kill()
    assert child.pid not in after
    by_kind = accept.tree_cpu_by_kind(before, after, {})
    # os.times() and /proc count in clock ticks; the burner's own figures bound what the window holds
    tick = 1 / os.sysconf("SC_CLK_TCK")
    in_window = in_all - before[child.pid]
    assert in_all - before_window >= 0.4
    assert abs(by_kind[accept.ENDED] - in_window) <= 3 * tick, (by_kind, in_all, before[child.pid])
    assert by_kind[accept.ENDED] >= 0.4 - 3 * tick, "the 0.4 s burnt in the window, not lost with the process"
    assert accept.tree_cpu_delta(before, after) >= by_kind[accept.ENDED]


def test_a_child_that_starts_and_ends_in_the_window_is_counted_whole():
    before = accept.process_tree_cpu(os.getpid())
    child = _burner()
    try:
        in_all = _burn(child, 0.3)
        child.stdin.close()  # type: ignore[union-attr]
        assert child.wait(timeout=60) == 0
    finally:
        child.kill()
    after = accept.process_tree_cpu(os.getpid())
    ended = accept.tree_cpu_by_kind(before, after, {})[accept.ENDED]
    tick = 1 / os.sysconf("SC_CLK_TCK")
    assert ended >= in_all - 3 * tick, (ended, in_all)


def test_live_processes_are_grouped_by_what_they_are():
    child = _burner()
    try:
        kinds: dict[int, str] = {}
        before = accept.process_tree_cpu(os.getpid(), kinds)
        _burn(child, 0.2)
        after = accept.process_tree_cpu(os.getpid(), kinds)
        by_kind = accept.tree_cpu_by_kind(before, after, kinds)
    finally:
        child.kill()
        child.wait(timeout=60)
    assert kinds[os.getpid()] == "main process"
    title = kinds[child.pid]  # not a PostgreSQL title: kept as the command line says it
    assert title.startswith(sys.executable)
    assert by_kind[title] >= 0.2 - 3 / os.sysconf("SC_CLK_TCK")
    assert by_kind[accept.ENDED] == 0.0


def test_postgresql_process_titles_are_named_by_role():
    kinds = {
        b"postgres: walwriter ": "walwriter",
        b"postgres: checkpointer ": "checkpointer",
        b"postgres: background writer ": "background writer",
        b"postgres: io worker 2": "io workers",
        b"postgres: autovacuum launcher ": "autovacuum launcher",
        b"postgres: autovacuum: VACUUM ANALYZE public.outbox": "autovacuum workers",
        b"postgres: postgres postgres [local] idle in transaction": "client backends",
        b"postgres: postgres test 127.0.0.1(41234) SELECT": "client backends",
    }
    for title, kind in kinds.items():
        assert accept.process_kind(title) == kind, title


# A child that, told a number on stdin, sleeps that many times (each sleep gives up the core: one voluntary switch,
# the thing counted, not synchronisation) and says when it is done.
_SLEEPER = """
import sys, time
for line in sys.stdin:
    for _ in range(int(line)):
        time.sleep(0.0005)
    print("done", flush=True)
"""


def test_context_switches_count_each_wait_of_a_child():
    """A child that sleeps twenty times gives up its core at least twenty times (voluntary switches), counted as the
    child's (its own tree); a thread that ended between two readings takes its switches with it, while one that
    started counts in full; `switches_per_message` divides what the window added by the messages. (Waits for input
    would not do: a line that arrives before the child reads it costs no switch.)"""
    child = subprocess.Popen([sys.executable, "-c", _SLEEPER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def sleep_times(count: int) -> None:
        child.stdin.write(f"{count}\n")  # type: ignore[union-attr]
        child.stdin.flush()  # type: ignore[union-attr]
        assert child.stdout.readline() == "done\n"  # type: ignore[union-attr]

    try:
        sleep_times(0)
        before = accept.context_switches(child.pid)
        machine_before = accept.context_switches()
        sleep_times(20)
        after = accept.context_switches(child.pid)
        machine_after = accept.context_switches()
    finally:
        child.kill()
        child.wait(60)
    [thread] = after["voluntary"]  # the child's one thread, keyed by pid, thread id and start time
    assert thread.startswith(f"{child.pid}/{child.pid}/")
    assert after["voluntary"][thread] - before["voluntary"][thread] >= 20, (before, after)
    assert accept.switches_per_message(before, after, 10)["voluntary"] >= 2.0
    assert accept.switches_per_message(machine_before, machine_after, 1)["all"] >= 20
    # Another thread in `after` (one that started) counts in full; one only in `before` (ended) is not subtracted.
    ended_and_started = {"voluntary": {"1/1/5": 100}}, {"voluntary": {"2/2/9": 40}}
    assert accept.switches_per_message(*ended_and_started, 10) == {"voluntary": 4.0}
    assert accept.switches_per_message(before, after, 0) is None and accept.switches_per_message(None, after, 10) is None

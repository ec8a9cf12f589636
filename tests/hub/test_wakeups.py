"""The long poll's wait (gateway/hub/delivery.py, `Wakeups.long_poll`): no notification is lost while a claim runs.

A pull claims what is ready, and waits only when it found nothing. Work committed while that claim ran is not in
what it found, and its NOTIFY may reach the process before the wait begins. The poll watches its receiver from
before each claim, so that notification ends the wait at once. Before, it was lost, and the delivery waited for
the next notification or the one-second re-check.

The re-check interval here is an hour: a lost notification would show as a wait that never ends, which the
`asyncio.wait_for` bounds turn into a failure.
"""

from __future__ import annotations

import asyncio

from gateway.hub.delivery import OUTBOX_CHANNEL, Wakeups

HOUR = 3600.0
BOUND = 20.0  # seconds: far beyond what these few steps take, far below the hour a lost wakeup would cost


def test_work_committed_while_a_claim_runs_ends_the_wait_at_once():
    async def scenario() -> tuple[list[str], int]:
        wakeups, claims = Wakeups(), []

        async def claim() -> list[str]:
            claims.append(1)
            if len(claims) == 1:
                # The claim's answer is made and does not hold the new work, whose NOTIFY arrives before it returns.
                wakeups.notified(None, 0, OUTBOX_CHANNEL, "HK")
                return []
            return ["delivery"]

        found = await asyncio.wait_for(wakeups.long_poll("HK", claim, HOUR, recheck_seconds=HOUR), BOUND)
        return found, len(claims)

    found, claims = asyncio.run(scenario())
    assert found == ["delivery"]
    assert claims == 2


def test_work_for_another_receiver_does_not_end_the_wait():
    async def scenario() -> tuple[list[str], int]:
        wakeups, claims = Wakeups(), []

        async def claim() -> list[str]:
            claims.append(1)
            wakeups.notified(None, 0, OUTBOX_CHANNEL, "MO")
            return []

        found = await asyncio.wait_for(wakeups.long_poll("HK", claim, 0.2, recheck_seconds=HOUR), BOUND)
        return found, len(claims)

    found, claims = asyncio.run(scenario())
    assert found == []
    assert claims == 2, "one claim, a wait to the end of the poll that MO's work does not cut short, one last claim"


def test_a_notification_during_the_wait_ends_it_and_the_poll_claims_again():
    async def scenario() -> tuple[list[str], int]:
        wakeups, claims = Wakeups(), []

        async def claim() -> list[str]:
            claims.append(1)
            if len(claims) == 1:
                # The loop runs this callback only once the poll has taken this empty answer and yielded to wait.
                asyncio.get_running_loop().call_soon(wakeups.notified, None, 0, OUTBOX_CHANNEL, "HK")
                return []
            return ["delivery"]

        found = await asyncio.wait_for(wakeups.long_poll("HK", claim, HOUR, recheck_seconds=HOUR), BOUND)
        return found, len(claims)

    assert asyncio.run(scenario()) == (["delivery"], 2)


def test_shutting_down_ends_every_poll_after_one_last_claim():
    async def scenario() -> tuple[list[str], list[str], int]:
        wakeups, claims = Wakeups(), []
        claimed_once = asyncio.Event()

        async def claim() -> list[str]:
            claims.append(1)
            claimed_once.set()
            return []

        poll = asyncio.ensure_future(wakeups.long_poll("HK", claim, HOUR, recheck_seconds=HOUR))
        await claimed_once.wait()
        wakeups.close()
        first = await asyncio.wait_for(poll, BOUND)
        late = await asyncio.wait_for(wakeups.long_poll("HK", claim, HOUR, recheck_seconds=HOUR), BOUND)
        return first, late, len(claims)

    assert asyncio.run(scenario()) == ([], [], 3), "the waiting poll claims once more, the one after shutdown once"


def test_a_poll_whose_client_is_gone_stops_without_claiming_again_and_leaves_no_watcher():
    async def scenario() -> tuple[list[str], int, bool]:
        wakeups, claims = Wakeups(), []
        gone = False

        async def claim() -> list[str]:
            nonlocal gone
            claims.append(1)
            gone = True  # the client hangs up while the claim runs
            wakeups.notified(None, 0, OUTBOX_CHANNEL, "HK")
            return []

        found = await asyncio.wait_for(wakeups.long_poll("HK", claim, HOUR, stop=lambda: gone, recheck_seconds=HOUR), BOUND)
        return found, len(claims), bool(wakeups._waiting)

    assert asyncio.run(scenario()) == ([], 1, False)

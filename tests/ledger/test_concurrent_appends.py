"""Three processes appending at once produce one gap-free tree (issue 4, Must show).

Each process appends batches through `LedgerAppender`, each batch its own transaction
with a rolled-back savepoint in it (as the hub's group commit does), and records the
indexes it got. The overlap is proven, not hoped for: the test holds the size row
until all three processes wait for it; then, in its first batch, each process holds
the row until the database shows another appender waiting behind it. Afterwards the
indexes of the three must interleave — no process got all of its indexes in one
block — and the ledger must be gap-free and verify.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import asyncpg

from gateway.ledger import merkle
from gateway.ledger.verify import verify_ledger
from gateway.store.migrate import migrate

PROCESSES = 3
BATCHES = 15
WAITING = (
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
    " AND wait_event_type = 'Lock' AND application_name LIKE 'ledger-appender-%'"
)

SCRIPT = """
import asyncio, json, sys
import asyncpg
from gateway.ledger.append import LedgerAppender
from gateway.ledger.entries import LedgerEntry

WAITING = sys.argv[4]

async def main(url, name, batches):
    connection = await asyncpg.connect(url, server_settings={"application_name": f"ledger-appender-{name}"})
    got, overlapped = [], []
    for batch in range(batches):
        async with connection.transaction():
            appender = LedgerAppender(connection)
            await appender.reserve()
            indexes = []
            for number in range(1 + batch % 4):
                entry = LedgerEntry("retried", "2026-11-28T12:00:00Z", {"process": name, "batch": batch, "n": number})
                indexes.append(await appender.add(entry))
            mark = appender.next_index
            try:
                async with connection.transaction():  # a message that fails: its index is given back
                    await appender.add(LedgerEntry("refused", "2026-11-28T12:00:00Z", {"process": name}))
                    raise RuntimeError
            except RuntimeError:
                appender.rewind(mark)
            if batch == 0:  # hold the size row until another appender waits for it
                watcher = await asyncpg.connect(url)
                deadline = asyncio.get_running_loop().time() + 60
                while await watcher.fetchval(WAITING) == 0:
                    if asyncio.get_running_loop().time() > deadline:
                        raise SystemExit(f"{name}: no other appender ever waited on the size row")
                    await asyncio.sleep(0.005)  # polling the database for a condition, bounded by the deadline
                await watcher.close()
                overlapped.append(batch)
            await appender.finish()
        got.append(indexes)
    await connection.close()
    print(json.dumps({"name": name, "batches": got, "overlapped": overlapped}))

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


def test_three_processes_appending_at_once_make_one_gap_free_tree_and_interleave(database_url):
    async def scenario() -> tuple[list[dict], object, list[bytes], list[int]]:
        holder = await asyncpg.connect(database_url)
        watcher = await asyncpg.connect(database_url)  # pg_stat_activity is read once per transaction: not the holder's
        await migrate(holder)
        gate = holder.transaction()
        await gate.start()
        await holder.execute("SELECT size FROM ledger_size FOR UPDATE")  # every appender must queue behind this
        processes = [
            subprocess.Popen([sys.executable, "-c", SCRIPT, database_url, str(name), str(BATCHES), WAITING],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for name in range(PROCESSES)
        ]
        try:
            deadline = asyncio.get_running_loop().time() + 60
            while await watcher.fetchval(WAITING) < PROCESSES:  # all three wait on the size row together
                assert asyncio.get_running_loop().time() < deadline, "the three processes never waited together"
                await asyncio.sleep(0.01)  # polling the database for a condition, bounded by the deadline
            await gate.commit()
            outputs = [await asyncio.to_thread(process.communicate, timeout=120) for process in processes]
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
        assert [process.returncode for process in processes] == [0] * PROCESSES, [err for _, err in outputs]
        results = [json.loads(out) for out, _ in outputs]
        report = await verify_ledger(holder)
        entries = [row["entry"] for row in await holder.fetch("SELECT entry FROM ledger_entries ORDER BY idx")]
        heads = [row["size"] for row in await holder.fetch("SELECT size FROM ledger_heads ORDER BY size")]
        await holder.close()
        await watcher.close()
        return results, report, entries, heads

    results, report, entries, heads = asyncio.run(scenario())

    # every process overlapped another: it held the size row while another waited for it
    assert all(result["overlapped"] == [0] for result in results)

    owner: dict[int, str] = {}
    for result in results:
        for indexes in result["batches"]:
            assert indexes == list(range(indexes[0], indexes[0] + len(indexes))), "a batch is contiguous"
            for index in indexes:
                assert index not in owner, f"index {index} was given twice"
                owner[index] = result["name"]
    total = PROCESSES * sum(1 + batch % 4 for batch in range(BATCHES))
    assert sorted(owner) == list(range(total)), "gap-free: the rolled-back savepoints gave their indexes back"

    # interleaved: no process got all of its indexes in one block
    for result in results:
        mine = sorted(index for indexes in result["batches"] for index in indexes)
        others_inside = [index for index in range(mine[0], mine[-1]) if owner[index] != result["name"]]
        assert others_inside, f"process {result['name']} appended all its entries before or after the others"
    runs = 1 + sum(owner[index] != owner[index - 1] for index in range(1, total))
    assert runs >= 2 * PROCESSES

    # one tree: a head per batch, and it is the RFC 9162 tree of the entries
    assert report.intact, report.findings
    assert (report.size, report.heads_checked) == (total, PROCESSES * BATCHES)
    assert heads[-1] == total and len(heads) == PROCESSES * BATCHES
    assert report.root == merkle.reference_root(entries)

"""Migrations run once, under an advisory lock, however many processes start together."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import asyncpg

from gateway.store.migrate import MIGRATION_LOCK, migrations

MIGRATE = (
    "import asyncio, sys, asyncpg\n"
    "from gateway.store.migrate import migrate\n"
    "async def main():\n"
    "    connection = await asyncpg.connect(sys.argv[1])\n"
    "    print(','.join(await migrate(connection)))\n"
    "    await connection.close()\n"
    "asyncio.run(main())\n"
)
WAITING = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event = 'advisory'"


def test_two_processes_starting_together_apply_each_migration_once(database_url):
    async def scenario() -> list[str]:
        holder = await asyncpg.connect(database_url)
        await holder.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)  # both starters must queue behind this
        processes = [
            subprocess.Popen([sys.executable, "-c", MIGRATE, database_url], stdout=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
        deadline = asyncio.get_running_loop().time() + 60
        while await holder.fetchval(WAITING) < 2:  # both are inside migrate(), waiting on the lock: they overlap
            assert asyncio.get_running_loop().time() < deadline, "the two processes never waited together"
            await asyncio.sleep(0.01)  # polling the database for a condition, bounded by the deadline
        await holder.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
        outputs = [process.communicate(timeout=60)[0].strip() for process in processes]
        assert [process.returncode for process in processes] == [0, 0]
        applied = await holder.fetch("SELECT version FROM schema_migrations ORDER BY version")
        await holder.close()
        assert [row["version"] for row in applied] == [m.version for m in migrations()]
        return outputs

    outputs = asyncio.run(scenario())
    names = [m.name for m in migrations()]
    assert sorted(outputs, key=len) == ["", ",".join(names)], "one process applies everything, the other nothing"


def test_migrations_are_numbered_without_gaps():
    versions = [migration.version for migration in migrations()]
    assert versions == list(range(1, len(versions) + 1))

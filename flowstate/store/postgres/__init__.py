"""PostgreSQL persistence behind the same store interface as SQLite (``pip install
'flowstate[postgres]'``).

This package's ``__init__`` imports nothing of psycopg: :func:`open_postgres_store` imports the
driver when a ``postgresql://`` URL is opened, and says how to install it if it is missing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowstate.store.connection import Synchronous
from flowstate.store.postgres.url import is_postgres_url, masked

if TYPE_CHECKING:
    from flowstate.store.postgres.store import PostgresStore

__all__ = ["is_postgres_url", "masked", "open_postgres_store"]


def open_postgres_store(
    url: str, *, busy_timeout: float, synchronous: Synchronous, call_timeout: float | None = None
) -> PostgresStore:
    """Connect to ``url``, check and migrate its schema; DatabaseError if it cannot be used."""
    from flowstate.store.postgres.connection import import_psycopg

    import_psycopg()  # a DatabaseError naming the extra to install, before anything else
    from flowstate.store.postgres.store import PostgresStore

    return PostgresStore(
        url, busy_timeout=busy_timeout, synchronous=synchronous, call_timeout=call_timeout
    )

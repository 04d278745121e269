"""Choosing the backend: a ``postgresql://`` URL opens PostgreSQL, anything else SQLite."""

from __future__ import annotations

from flowstate.store.base import StoreBackend
from flowstate.store.connection import Synchronous
from flowstate.store.postgres.url import is_postgres_url
from flowstate.store.run_cache import Store

__all__ = ["open_store"]


def open_store(
    database: str,
    *,
    busy_timeout: float,
    synchronous: Synchronous,
    call_timeout: float | None = None,
) -> StoreBackend:
    """The store for ``database``: a SQLite path (or ``:memory:``) or a PostgreSQL URL.

    psycopg is imported only for a URL (``pip install 'flowstate[postgres]'``).
    ``call_timeout`` applies to PostgreSQL only (a SQLite call never waits for a server).
    """
    if is_postgres_url(database):
        from flowstate.store.postgres import open_postgres_store

        return open_postgres_store(
            database, busy_timeout=busy_timeout, synchronous=synchronous, call_timeout=call_timeout
        )
    return Store(database, busy_timeout=busy_timeout, synchronous=synchronous)

"""What both stores do alike around their one connection: closing it, and the transaction block.

Each store opens its transactions its own way (``begin``/``end``: ``BEGIN IMMEDIATE`` on
SQLite, ``BEGIN`` with row locks on PostgreSQL); this base class gives them the same
``conn``/``close``/``in_transaction``/``transaction`` around those two methods.
"""

from __future__ import annotations

import threading
from typing import Any, Generic, TypeVar

from flowstate.errors import DatabaseError

__all__ = ["ConnectionLifecycle", "StoreTransaction"]

C = TypeVar("C")


class StoreTransaction:
    """The context manager :meth:`ConnectionLifecycle.transaction` returns (a class: cheaper
    than a generator); it gives the connection."""

    __slots__ = ("_depth", "_store")

    def __init__(self, store: ConnectionLifecycle[Any]) -> None:
        self._store = store

    def __enter__(self) -> Any:
        self._depth = self._store.begin()
        return self._store.conn

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._store.end(self._depth, exc)


class ConnectionLifecycle(Generic[C]):
    """One connection of type ``C``, shared by threads: calls are serialised by ``_lock``,
    held by the thread inside a transaction (``_owner``) for the whole of it."""

    path: str
    _conn: C | None

    def _init_lifecycle(self, path: str) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._depth = 0  # transaction nesting: 0 outside, 1 inside, 2+ in savepoints
        self._owner: int | None = None  # the thread inside transaction(), if any

    def begin(self) -> int:  # pragma: no cover - each store defines it
        raise NotImplementedError

    def end(self, depth: int, exc: BaseException | None) -> None:  # pragma: no cover
        raise NotImplementedError

    def begin_call(self) -> int:
        """``begin`` for one API call whose only failures after its first write are database
        errors; a store may open no savepoint for it inside a transaction. Pass the result to
        ``end_call``."""
        return self.begin()

    def begin_read(self) -> int:
        """``begin_call`` for a call that only reads; pass the result to ``end_call``."""
        return self.begin_call()

    def protect_call(self) -> None:
        """Called before a call writes while it decides (concurrency slots), where a rule
        may still raise or the call refuse: a store whose calls inside a block have no
        savepoint of their own opens one here. Nothing to do for this store."""

    def end_call(self, token: int, exc: BaseException | None) -> None:
        """``end`` of a ``begin_call`` or ``begin_read``."""
        self.end(token, exc)

    @property
    def conn(self) -> C:
        """The open connection (raises once the store is closed)."""
        if self._conn is None:
            raise DatabaseError(f"the database {self.path} is closed")
        return self._conn

    def close(self) -> None:
        """Close the connection; further use raises DatabaseError."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()  # type: ignore[attr-defined]
                self._conn = None

    @property
    def in_transaction(self) -> bool:
        """Whether the calling thread is inside :meth:`transaction`."""
        return self._depth > 0 and self._owner == threading.get_ident()

    def transaction(self) -> StoreTransaction:
        """One transaction (a SAVEPOINT when nested), committed at the end of the block and
        rolled back on error, which leaves as a flowstate error. Calls from other threads wait
        for the block to finish. How it locks is the store's: see its ``begin``."""
        return StoreTransaction(self)

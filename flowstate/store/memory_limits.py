"""Concurrency limits, leases and deployments in the in-memory store's tables.

:class:`~flowstate.store.limits.LimitStore`'s primitives over
:class:`~flowstate.store.memory.Tables` instead of SQL: rows are copied in and out, a lease
keeps the slots it took per limit in its row, and the SQL schema's relations hold (a limit
deleted is gone from its leases, and deployments that shared it have none).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from flowstate.concurrency.slots import LeaseRow
from flowstate.errors import DatabaseError
from flowstate.store.limits import DEPLOYMENTS, LEASES, LIMITS, LimitStore, Table
from flowstate.store.memory import MemoryStore, Tables

__all__ = ["MemoryLimitStore"]

Test = Callable[[Any, tuple[Any, ...]], bool]

TESTS: dict[str, Test] = {
    "id": lambda row, values: row.id in values,
    "name": lambda row, values: row.name in values,
    "limit": lambda lease, values: values[0] in lease.taken,
    "holder": lambda lease, values: (lease.holder_type, lease.holder_id) == values,
    "expired": lambda lease, values: lease.expiration < values[0],
    "tasks_of": lambda lease, values: lease.holder_type == "task_run"
    and lease.holder_id in values[0],
}
"""``LimitStore.WHERE`` as tests of a row (``tasks_of``: given the ids of the task runs)."""


def _no_sql(statement: str, params: Any) -> Any:
    raise DatabaseError("the in-memory store runs no SQL")


class MemoryLimitStore(LimitStore):
    """The limit, lease and deployment rows of a :class:`MemoryStore`."""

    def __init__(self, store: MemoryStore) -> None:
        super().__init__(_no_sql)
        self._store = store

    @property
    def _tables(self) -> Tables:
        return self._store.conn

    def _select(self, table: Table, by: str | None, values: tuple[Any, ...], lock: str) -> list[Any]:
        if by == "tasks_of":
            values = (self._task_run_ids(values[0]),)
        rows = self._tables.rows[table.sql]
        found = [replace(rows[key]) for key in sorted(rows)]
        if by is not None:
            found = [row for row in found if TESTS[by](row, values)]
        return [self._linked(lease) for lease in found] if table is LEASES else found

    def _task_run_ids(self, flow_run_id: str) -> set[str]:
        tasks = self._tables.runs["task"].items()
        return {str(key) for key, (task, _) in tasks if str(task.flow_run_id) == flow_run_id}  # type: ignore[union-attr]

    def _linked(self, lease: LeaseRow) -> LeaseRow:
        """A lease with its links ordered by its limits' names, and those names."""
        limits = self._tables.rows[LIMITS.sql]
        links = sorted((limits[key].name, key) for key in lease.taken)
        lease.taken = {key: lease.taken[key] for _, key in links}
        lease.names = [name for name, _ in links]
        return lease

    def _insert(self, table: Table, row: Any) -> bool:
        tables = self._tables
        rows = tables.rows[table.sql]
        if table.named and any(found.name == row.name for found in rows.values()):
            return False
        if row.id in rows or not set(getattr(row, "taken", ())) <= tables.rows[LIMITS.sql].keys():
            raise DatabaseError(f"{table.sql} {row.id}: the id is taken, or a limit is missing")
        copy = replace(row, taken=dict(row.taken), names=[]) if table is LEASES else replace(row)
        tables.put(rows, row.id, copy)
        return True

    def _update(self, table: Table, row: Any) -> None:
        tables = self._tables
        rows = tables.rows[table.sql]
        old = rows.get(row.id)
        if old is None:
            return
        kept = {key: getattr(old, key) for key in ("name", "created", "taken") if hasattr(old, key)}
        tables.put(rows, row.id, replace(row, **kept))

    def _delete(self, table: Table, row_id: str) -> bool:
        tables = self._tables
        if not tables.drop(tables.rows[table.sql], row_id):
            return False
        if table is LIMITS:
            self.drop_links_of_limit(row_id)
            for deployment in list(tables.rows[DEPLOYMENTS.sql].values()):
                if deployment.concurrency_limit_id == row_id:
                    self._update(DEPLOYMENTS, replace(deployment, concurrency_limit_id=None))
        return True

    def drop_links_of_limit(self, limit_id: str) -> None:
        tables = self._tables
        leases = tables.rows[LEASES.sql]
        for lease in [lease for lease in leases.values() if limit_id in lease.taken]:
            taken = {key: slots for key, slots in lease.taken.items() if key != limit_id}
            tables.put(leases, lease.id, replace(lease, taken=taken))

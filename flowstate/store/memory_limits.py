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

from flowstate.concurrency.slots import DeploymentRow, LeaseRow, LimitRow
from flowstate.errors import DatabaseError
from flowstate.store.limits import TABLES, LimitStore
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

    def _rows(self, kind: type[Any]) -> dict[str, Any]:
        return self._tables.rows[TABLES[kind].sql]

    def _select(self, kind: type[Any], by: str | None, values: tuple[Any, ...], lock: str) -> list[Any]:
        if by == "tasks_of":
            values = (self._task_run_ids(values[0]),)
        rows = self._rows(kind)
        found = [replace(rows[key]) for key in sorted(rows)]
        if by is not None:
            found = [row for row in found if TESTS[by](row, values)]
        return [self._linked(lease) for lease in found] if kind is LeaseRow else found

    def _task_run_ids(self, flow_run_id: str) -> set[str]:
        tasks = self._tables.runs["task"].items()
        return {str(key) for key, (task, _) in tasks if str(task.flow_run_id) == flow_run_id}  # type: ignore[union-attr]

    def _linked(self, lease: LeaseRow) -> LeaseRow:
        """A lease with its links ordered by its limits' names, and those names."""
        limits = self._rows(LimitRow)
        links = sorted((limits[key].name, key) for key in lease.taken)
        lease.taken = {key: lease.taken[key] for _, key in links}
        lease.names = [name for name, _ in links]
        return lease

    def insert(self, row: LimitRow | LeaseRow | DeploymentRow) -> bool:
        rows, taken = self._rows(type(row)), getattr(row, "taken", None)
        if taken is None and any(found.name == getattr(row, "name") for found in rows.values()):
            return False
        if row.id in rows or not set(taken or ()) <= self._rows(LimitRow).keys():
            raise DatabaseError(f"{row.id}: the id is taken, or a lease's limit is missing")
        copy = replace(row) if taken is None else replace(row, taken=dict(taken), names=[])  # type: ignore[arg-type]
        self._tables.put(rows, row.id, copy)
        return True

    def update(self, row: LimitRow | LeaseRow | DeploymentRow) -> None:
        rows = self._rows(type(row))
        old = rows.get(row.id)
        if old is not None:
            kept = {key: getattr(old, key) for key in ("name", "created", "taken") if hasattr(old, key)}
            self._tables.put(rows, row.id, replace(row, **kept))

    def delete(self, row: LimitRow | LeaseRow | DeploymentRow) -> None:
        if not self._tables.drop(self._rows(type(row)), row.id) or not isinstance(row, LimitRow):
            return
        self.drop_links_of_limit(row.id)
        for deployment in list(self._rows(DeploymentRow).values()):
            if deployment.concurrency_limit_id == row.id:
                self.update(replace(deployment, concurrency_limit_id=None))

    def drop_links_of_limit(self, limit_id: str) -> None:
        leases = self._rows(LeaseRow)
        for lease in [lease for lease in leases.values() if limit_id in lease.taken]:
            taken = {key: slots for key, slots in lease.taken.items() if key != limit_id}
            self._tables.put(leases, lease.id, replace(lease, taken=taken))

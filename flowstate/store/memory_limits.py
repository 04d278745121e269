"""Concurrency limits, leases and deployments in the in-memory store's tables.

The same methods as :class:`~flowstate.store.limits.LimitStore` and
:class:`~flowstate.store.deployments.DeploymentStore`, over
:class:`~flowstate.store.memory.Tables` instead of SQL: rows are copied in and out, and the
orders and relations are the SQL's (a lease's links go with the lease or the limit; a
deployment's limit, deleted, becomes None).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime
from typing import Any

from flowstate.concurrency.slots import LeaseRow, LimitRow
from flowstate.errors import DatabaseError
from flowstate.store.deployments import DeploymentRow, DeploymentStore
from flowstate.store.limits import LimitStore
from flowstate.store.memory import MemoryStore, Tables

__all__ = ["MemoryDeploymentStore", "MemoryLimitStore"]


def _no_sql(statement: str, params: Any) -> Any:
    raise DatabaseError("the in-memory store runs no SQL")


class _InMemory:
    """Rows kept in a :class:`MemoryStore`'s tables (no SQL runs)."""

    def __init__(self, store: MemoryStore) -> None:
        super().__init__(_no_sql)  # type: ignore[call-arg]
        self._store = store

    @property
    def _tables(self) -> Tables:
        return self._store.conn

    def _insert_named(self, table: dict[str, Any], row: Any, what: str) -> bool:
        """Insert a copy of ``row``; False if its name is taken (nothing written), as the
        tables' unique names refuse it."""
        if any(found.name == row.name for found in table.values()):
            return False
        if row.id in table:
            raise DatabaseError(f"{what} {row.id} already exists")
        self._tables.put(table, row.id, replace(row))
        return True

    def _update_named(self, table: dict[str, Any], row: Any) -> None:
        """Write ``row`` over the stored one: everything but the id, name and creation time."""
        old = table.get(row.id)
        if old is not None:
            self._tables.put(table, row.id, replace(row, name=old.name, created=old.created))


class MemoryLimitStore(_InMemory, LimitStore):
    """The limit and lease rows of a :class:`MemoryStore`."""

    # -- limits ----------------------------------------------------------------------------

    def insert_limit(self, row: LimitRow) -> bool:
        """Insert a new limit; False if its name is taken (nothing written)."""
        return self._insert_named(self._tables.limits, row, "limit")

    def read_limit(self, name: str, *, for_update: bool = False) -> LimitRow | None:
        found = [limit for limit in self._tables.limits.values() if limit.name == name]
        return replace(found[0]) if found else None

    def read_limit_by_id(self, limit_id: str) -> LimitRow | None:
        found = self._tables.limits.get(limit_id)
        return None if found is None else replace(found)

    def read_limits(self) -> list[LimitRow]:
        return sorted((replace(row) for row in self._tables.limits.values()), key=_by_name)

    def lock_limits_by_name(self, names: list[str]) -> list[LimitRow]:
        """The limits with these names (unknown names are left out), in id order."""
        wanted = set(names)
        found = [replace(r) for r in self._tables.limits.values() if r.name in wanted]
        return sorted(found, key=lambda row: row.id)

    def lock_limits_by_id(self, ids: Iterable[str]) -> list[LimitRow]:
        limits = self._tables.limits
        return [replace(limits[i]) for i in sorted(set(ids)) if i in limits]

    def update_limit(self, row: LimitRow) -> None:
        self._update_named(self._tables.limits, row)

    def delete_limit(self, limit_id: str) -> None:
        tables = self._tables
        if tables.drop(tables.limits, limit_id):
            tables.drop_where(tables.links, lambda key, _: key[1] == limit_id)
            for deployment in list(tables.deployments.values()):
                if deployment.concurrency_limit_id == limit_id:
                    changed = replace(deployment, concurrency_limit_id=None)
                    tables.put(tables.deployments, deployment.id, changed)

    # -- leases ----------------------------------------------------------------------------

    def insert_lease(self, lease: LeaseRow) -> None:
        tables = self._tables
        if lease.id in tables.leases:
            raise DatabaseError(f"lease {lease.id} already exists")
        tables.put(tables.leases, lease.id, replace(lease, taken={}, names=[]))
        for limit_id, slots in lease.taken.items():
            if limit_id not in tables.limits:
                raise DatabaseError(f"lease {lease.id}: no limit {limit_id}")
            tables.put(tables.links, (lease.id, limit_id), slots)

    def read_lease(self, lease_id: str, *, for_update: bool = False) -> LeaseRow | None:
        found = self._tables.leases.get(lease_id)
        return None if found is None else self._with_links([found])[0]

    def read_leases(self, limit_id: str | None = None) -> list[LeaseRow]:
        """Every lease (oldest first), or those holding slots of one limit."""
        tables = self._tables
        leases: Iterable[LeaseRow] = tables.leases.values()
        if limit_id is not None:
            holding = {lease_id for lease_id, linked in tables.links if linked == limit_id}
            leases = [lease for lease in leases if lease.id in holding]
        return self._with_links(sorted(leases, key=_by_age))

    def lock_leases_of_holder(self, holder_type: str, holder_id: str) -> list[LeaseRow]:
        """The leases one holder holds (oldest first)."""
        found = [
            lease for lease in self._tables.leases.values()
            if lease.holder_type == holder_type and lease.holder_id == holder_id
        ]
        return self._with_links(sorted(found, key=_by_age))

    def lock_expired_leases(self, now: datetime) -> list[LeaseRow]:
        """Leases whose expiration is before ``now``, the first to expire first."""
        found = [lease for lease in self._tables.leases.values() if lease.expiration < now]
        return self._with_links(sorted(found, key=lambda lease: (lease.expiration, lease.id)))

    def renew_lease(self, lease_id: str, expiration: datetime) -> bool:
        tables = self._tables
        found = tables.leases.get(lease_id)
        if found is None:
            return False
        tables.put(tables.leases, lease_id, replace(found, expiration=expiration))
        return True

    def _task_leases(self, flow_run_id: str) -> list[LeaseRow]:
        tables = self._tables
        tasks = {
            str(task_id) for task_id, (task, _) in tables.runs["task"].items()
            if str(task.flow_run_id) == flow_run_id  # type: ignore[union-attr]
        }
        found = [
            lease for lease in tables.leases.values()
            if lease.holder_type == "task_run" and lease.holder_id in tasks
        ]
        return sorted(found, key=_by_age)

    def lock_task_leases_of_flow_run(self, flow_run_id: str) -> list[LeaseRow]:
        """The leases the task runs of a flow run hold (oldest first)."""
        return self._with_links(self._task_leases(flow_run_id))

    def renew_task_leases_of_flow_run(self, flow_run_id: str, expiration: datetime) -> int:
        """Make the leases held by the task runs of a flow run last until ``expiration`` at
        least (a lease lasting longer keeps its time); returns how many were renewed."""
        renewed = [lease for lease in self._task_leases(flow_run_id) if lease.expiration < expiration]
        for lease in renewed:
            self.renew_lease(lease.id, expiration)
        return len(renewed)

    def delete_lease(self, lease_id: str) -> bool:
        tables = self._tables
        if not tables.drop(tables.leases, lease_id):
            return False
        tables.drop_where(tables.links, lambda key, _: key[0] == lease_id)
        return True

    def drop_links_of_limit(self, limit_id: str) -> None:
        """Let every lease go of one limit (the leases stay, with their other limits)."""
        tables = self._tables
        tables.drop_where(tables.links, lambda key, _: key[1] == limit_id)

    def _with_links(self, leases: list[LeaseRow]) -> list[LeaseRow]:
        """Copies of ``leases`` with the slots each took per limit and those limits' names."""
        tables = self._tables
        copies = []
        for lease in leases:
            links = [
                (tables.limits[limit_id].name, limit_id, slots)
                for (lease_id, limit_id), slots in tables.links.items()
                if lease_id == lease.id
            ]
            links.sort()
            copies.append(replace(
                lease,
                taken={limit_id: slots for _, limit_id, slots in links},
                names=[name for name, _, _ in links],
            ))
        return copies


class MemoryDeploymentStore(_InMemory, DeploymentStore):
    """The deployment rows of a :class:`MemoryStore`."""

    def insert(self, row: DeploymentRow) -> bool:
        """Insert a new deployment; False if its name is taken (nothing written)."""
        return self._insert_named(self._tables.deployments, row, "deployment")

    def read(self, deployment_id: str, *, for_update: bool = False) -> DeploymentRow | None:
        found = self._tables.deployments.get(deployment_id)
        return None if found is None else replace(found)

    def read_all(self) -> list[DeploymentRow]:
        rows = self._tables.deployments.values()
        return sorted((replace(row) for row in rows), key=_by_name)

    def update(self, row: DeploymentRow) -> None:
        self._update_named(self._tables.deployments, row)


def _by_name(row: Any) -> str:
    return str(row.name)


def _by_age(lease: LeaseRow) -> tuple[datetime, str]:
    return lease.created, lease.id

"""Reading and writing global concurrency limits and leases, on either database.

:class:`LimitStore` runs inside the caller's transaction (an orchestrator call) and knows SQL
only; what the numbers mean is ``flowstate.concurrency.slots``. The two stores differ in their
placeholders and in locking: on PostgreSQL a read for a change locks the limit rows
(``FOR UPDATE``, always in id order, so two calls never wait for each other in a circle); on
SQLite the transaction holds the database's write lock from its start.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, Self, TypeVar

from flowstate._ids import uuid7
from flowstate.concurrency.slots import LeaseRow, LimitRow
from flowstate.store import limits_sql as sql
from flowstate.store.rows import encode_time, parse_time

__all__ = ["LimitStore", "SqlRows"]

Execute = Callable[[str, Any], Any]
Row = TypeVar("Row")


class SqlRows:
    """Rows of one store: ``execute(statement, params)`` runs SQL written with ``?``
    placeholders (converted by ``form``); ``lock`` is appended to reads made for a change,
    ``skip_locked`` to the reaper's read of expired leases."""

    def __init__(
        self,
        execute: Execute,
        *,
        form: Callable[[str], str] = str,
        lock: str = "",
        skip_locked: str = "",
    ) -> None:
        self._run = execute
        self._form = form
        self._lock = lock
        self._skip_locked = skip_locked

    def _execute(self, statement: str, params: Any = ()) -> Any:
        return self._run(self._form(statement), params)

    @classmethod
    def of(cls, store: Any) -> Self:
        """The rows of an orchestrator's store (SQLite, PostgreSQL or memory)."""
        from flowstate.store.memory import MemoryStore
        from flowstate.store.store import SqliteStore

        if isinstance(store, SqliteStore):
            return cls(lambda statement, params: store.conn.execute(statement, params))
        if isinstance(store, MemoryStore):
            return cls._in_memory(store)
        from flowstate.store.postgres.limits_sql import FOR_UPDATE, SKIP_LOCKED, psycopg_form

        return cls(store._execute, form=psycopg_form, lock=FOR_UPDATE, skip_locked=SKIP_LOCKED)

    @classmethod
    def _in_memory(cls, store: Any) -> Self:
        raise NotImplementedError


class LimitStore(SqlRows):
    """The limit and lease rows of one store."""

    @classmethod
    def _in_memory(cls, store: Any) -> Self:
        from flowstate.store.memory_limits import MemoryLimitStore

        return MemoryLimitStore(store)  # type: ignore[return-value]

    # -- limits ----------------------------------------------------------------------------

    def insert_limit(self, row: LimitRow) -> bool:
        """Insert a new limit; False if its name is taken (nothing written)."""
        cursor = self._execute(sql.INSERT_LIMIT, _limit_params(row))
        return bool(cursor.rowcount > 0)

    def read_limit(self, name: str, *, for_update: bool = False) -> LimitRow | None:
        statement = sql.SELECT_LIMIT_BY_NAME + (self._lock if for_update else "")
        return _first(self._limit_rows(statement, (name,)))

    def read_limit_by_id(self, limit_id: str) -> LimitRow | None:
        return _first(self._limit_rows(sql.SELECT_LIMIT_BY_ID, (limit_id,)))

    def read_limits(self) -> list[LimitRow]:
        return self._limit_rows(sql.SELECT_LIMITS)

    def lock_limits_by_name(self, names: list[str]) -> list[LimitRow]:
        """The limits with these names (unknown names are left out), locked, in id order."""
        return self._limit_rows(sql.select_limits_by_names(len(names)) + self._lock, tuple(names))

    def lock_limits_by_id(self, ids: Iterable[str]) -> list[LimitRow]:
        wanted = sorted(set(ids))
        if not wanted:
            return []
        return self._limit_rows(sql.select_limits_by_ids(len(wanted)) + self._lock, tuple(wanted))

    def _limit_rows(self, statement: str, params: Any = ()) -> list[LimitRow]:
        return [_limit(row) for row in self._execute(statement, params).fetchall()]

    def update_limit(self, row: LimitRow) -> None:
        """Write the limit's fields but its id, name and creation time."""
        _id, _name, *changed, _created, updated = _limit_params(row)
        self._execute(sql.UPDATE_LIMIT, (*changed, updated, row.id))

    def delete_limit(self, limit_id: str) -> None:
        self._execute(sql.DELETE_LIMIT, (limit_id,))

    def size_limit(self, name: str, size: int, now: datetime) -> LimitRow:
        """The limit ``name`` with ``size`` slots: an existing one resized (the slots held stay
        held), else a new one created at ``now``."""
        row = self.read_limit(name, for_update=True)
        if row is None:
            row = LimitRow.new(str(uuid7()), name, size, now)
            self.insert_limit(row)
        else:
            row.limit = size
            self.update_limit(row)
        return row

    # -- leases ----------------------------------------------------------------------------

    def insert_lease(self, lease: LeaseRow) -> None:
        self._execute(
            sql.INSERT_LEASE,
            (
                lease.id,
                lease.slots,
                lease.holder_type,
                lease.holder_id,
                encode_time(lease.created),
                encode_time(lease.expiration),
            ),
        )
        for limit_id, slots in lease.taken.items():
            self._execute(sql.INSERT_LEASE_LIMIT, (lease.id, limit_id, slots))

    def read_lease(self, lease_id: str, *, for_update: bool = False) -> LeaseRow | None:
        statement = sql.SELECT_LEASE + (self._lock if for_update else "")
        return _first(self._lease_rows(statement, (lease_id,)))

    def read_leases(self, limit_id: str | None = None) -> list[LeaseRow]:
        """Every lease (oldest first), or those holding slots of one limit."""
        if limit_id is None:
            return self._lease_rows(sql.SELECT_LEASES)
        return self._lease_rows(sql.SELECT_LEASES_OF_LIMIT, (limit_id,))

    def lock_leases_of_holder(self, holder_type: str, holder_id: str) -> list[LeaseRow]:
        """The leases one holder holds (oldest first), locked."""
        return self._lease_rows(sql.SELECT_LEASES_OF_HOLDER + self._lock, (holder_id, holder_type))

    def lock_expired_leases(self, now: datetime) -> list[LeaseRow]:
        """Leases whose expiration is before ``now``, locked (on PostgreSQL, leases another
        call is releasing right now are skipped: that call deals with them)."""
        statement = sql.SELECT_EXPIRED_LEASES + self._skip_locked
        return self._lease_rows(statement, (encode_time(now),))

    def renew_lease(self, lease_id: str, expiration: datetime) -> bool:
        cursor = self._execute(sql.RENEW_LEASE, (encode_time(expiration), lease_id))
        return bool(cursor.rowcount > 0)

    def lock_task_leases_of_flow_run(self, flow_run_id: str) -> list[LeaseRow]:
        """The leases the task runs of a flow run hold (oldest first), locked."""
        return self._lease_rows(sql.SELECT_TASK_LEASES_OF_FLOW_RUN + self._lock, (flow_run_id,))

    def renew_task_leases_of_flow_run(self, flow_run_id: str, expiration: datetime) -> int:
        """Make the leases held by the task runs of a flow run last until ``expiration`` at
        least (a lease lasting longer keeps its time); returns how many were renewed."""
        at = encode_time(expiration)
        cursor = self._execute(sql.RENEW_TASK_LEASES_OF_FLOW_RUN, (at, at, flow_run_id))
        return int(cursor.rowcount)

    def delete_lease(self, lease_id: str) -> bool:
        return bool(self._execute(sql.DELETE_LEASE, (lease_id,)).rowcount > 0)

    def drop_links_of_limit(self, limit_id: str) -> None:
        """Let every lease go of one limit (the leases stay, with their other limits)."""
        self._execute(sql.DELETE_LINKS_OF_LIMIT, (limit_id,))

    def let_holders_go(self, limit_id: str) -> None:
        """No lease holds the limit any more: a lease that held only it is gone, one holding
        other limits keeps those."""
        holders = self.read_leases(limit_id)
        self.drop_links_of_limit(limit_id)
        for lease in holders:
            if set(lease.taken) == {limit_id}:
                self.delete_lease(lease.id)

    def _lease_rows(self, statement: str, params: Any = ()) -> list[LeaseRow]:
        """The leases a statement selects, with their links."""
        found = self._execute(statement, params).fetchall()
        return self._with_links([_lease(row) for row in found])

    def _with_links(self, leases: list[LeaseRow]) -> list[LeaseRow]:
        if not leases:
            return leases
        by_id = {lease.id: lease for lease in leases}
        statement = sql.select_lease_links(len(by_id))
        for lease_id, limit_id, slots, name in self._execute(statement, tuple(by_id)).fetchall():
            lease = by_id[lease_id]
            lease.taken[limit_id] = slots
            lease.names.append(name)
        return leases


def _first(rows: list[Row]) -> Row | None:
    return rows[0] if rows else None


def _limit_params(row: LimitRow) -> tuple[Any, ...]:
    return (
        row.id,
        row.name,
        row.limit,
        int(row.active),
        row.active_slots,
        row.slot_decay_per_second,
        row.avg_slot_occupancy_seconds,
        encode_time(row.created),
        encode_time(row.updated),
    )


def _limit(row: Any) -> LimitRow:
    return LimitRow(
        id=row[0],
        name=row[1],
        limit=row[2],
        active=bool(row[3]),
        active_slots=row[4],
        slot_decay_per_second=float(row[5]),
        avg_slot_occupancy_seconds=float(row[6]),
        created=parse_time(row[7]),  # type: ignore[arg-type]
        updated=parse_time(row[8]),  # type: ignore[arg-type]
    )


def _lease(row: Any) -> LeaseRow:
    return LeaseRow(
        id=row[0],
        slots=row[1],
        holder_type=row[2],
        holder_id=row[3],
        created=parse_time(row[4]),  # type: ignore[arg-type]
        expiration=parse_time(row[5]),  # type: ignore[arg-type]
    )

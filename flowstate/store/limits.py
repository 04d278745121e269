"""Reading and writing concurrency limits, their leases and deployments, on any store.

:class:`LimitStore` runs inside the caller's transaction (an orchestrator call); what the
numbers mean is ``flowstate.concurrency.slots``. Everything is built on five primitives over
three tables (select, insert, update, delete, and dropping a limit's lease links), written in
SQL here and over dictionaries by the in-memory store (``flowstate.store.memory_limits``).
SQL is written with ``?`` placeholders (PostgreSQL's store converts them) and stores times as
fixed-width UTC text. On PostgreSQL a read for a change locks its rows (``FOR UPDATE``, always
in id order; a call that gives a lease's slots back locks the lease's limits before the lease,
as a run's transition does, so two calls never wait for each other in a circle); on SQLite
the transaction holds the database's write lock from its start.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, TypeVar

from flowstate.concurrency.slots import DeploymentRow, LeaseRow, LimitRow
from flowstate.store.rows import encode_time, parse_time

__all__ = ["TABLES", "LimitStore", "Table"]

Execute = Callable[[str, Any], Any]
R = TypeVar("R", LimitRow, LeaseRow, DeploymentRow)


@dataclass(frozen=True)
class Table:
    """A table of rows of one dataclass (its fields in column order; a lease's links are
    kept apart). A named table refuses a second row of the same name."""

    sql: str
    columns: tuple[str, ...]
    row: type[Any]


LIMITS = Table(
    "concurrency_limit",
    ("id", "name", "slot_limit", "active", "active_slots", "slot_decay_per_second",
     "avg_slot_occupancy_seconds", "created", "updated"),
    LimitRow,
)
LEASES = Table(
    "concurrency_lease", ("id", "slots", "holder_type", "holder_id", "created", "expiration"),
    LeaseRow,
)
DEPLOYMENTS = Table(
    "deployment",
    ("id", "name", "concurrency_limit_id", "collision_strategy", "grace_period_seconds",
     "created", "updated"),
    DeploymentRow,
)
TABLES: dict[type[Any], Table] = {LimitRow: LIMITS, LeaseRow: LEASES, DeploymentRow: DEPLOYMENTS}
"""The table of each kind of row."""

WHERE = {
    "id": "id IN {}",
    "name": "name IN {}",
    "limit": "id IN (SELECT lease_id FROM concurrency_lease_limit WHERE limit_id = ?)",
    "holder": "holder_type = ? AND holder_id = ?",
    "expired": "expiration < ?",
    "tasks_of": "holder_type = 'task_run' AND holder_id IN "
    "(SELECT id FROM task_run WHERE flow_run_id = ?)",
}
"""What a select may ask for: its SQL (``{}``: a list of as many placeholders as values)."""

_DECODE: dict[str, Callable[[Any], Any]] = {
    "active": bool,
    "slot_decay_per_second": float,
    "avg_slot_occupancy_seconds": float,
    "created": parse_time,
    "updated": parse_time,
    "expiration": parse_time,
}
_UNCHANGING = ("id", "name", "created")
"""What an update leaves as it is."""


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return encode_time(value)
    return int(value) if isinstance(value, bool) else value


def _values(table: Table, row: Any) -> list[Any]:
    return [_encode(getattr(row, field.name)) for field in fields(table.row)[: len(table.columns)]]


def _decoded(table: Table, values: Iterable[Any]) -> Any:
    names = [field.name for field in fields(table.row)]
    return table.row(*(_DECODE.get(name, _same)(value) for name, value in zip(names, values)))


def _same(value: Any) -> Any:
    return value


def _in_list(count: int) -> str:
    return "(" + ", ".join("?" * count) + ")"


IN_LIST_SIZE = 500
"""The most values one ``IN (...)`` list holds; a longer list (the tags of a task run, the
names of a call) is read in parts: SQLite before 3.32 takes at most 999 parameters a
statement, PostgreSQL 65535."""


def _parts(values: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    return [values[at : at + IN_LIST_SIZE] for at in range(0, len(values), IN_LIST_SIZE)]


class LimitStore:
    """The limit, lease and deployment rows of one store: ``execute(statement, params)`` runs
    SQL written with ``?`` placeholders (converted by ``form``); ``lock`` is appended to reads
    made for a change, ``skip_locked`` to the reaper's read of expired leases."""

    def __init__(
        self, execute: Execute, *, form: Callable[[str], str] = str, lock: str = "",
        skip_locked: str = "",
    ) -> None:
        self._run = execute
        self._form = form
        self._lock = lock
        self._skip_locked = skip_locked

    @staticmethod
    def of(store: Any) -> LimitStore:
        """The rows of an orchestrator's store (SQLite, PostgreSQL or memory)."""
        from flowstate.store.memory import MemoryStore
        from flowstate.store.store import SqliteStore

        if isinstance(store, SqliteStore):
            return LimitStore(lambda statement, params: store.conn.execute(statement, params))
        if isinstance(store, MemoryStore):
            from flowstate.store.memory_limits import MemoryLimitStore

            return MemoryLimitStore(store)
        from flowstate.store.postgres.sql import psycopg_form

        return LimitStore(
            store._execute, form=psycopg_form, lock=" FOR UPDATE",
            skip_locked=" FOR UPDATE SKIP LOCKED",
        )

    # -- the primitives: SQL -------------------------------------------------------------------

    def _execute(self, statement: str, params: Any = ()) -> Any:
        return self._run(self._form(statement), params)

    def _select(self, kind: type[Any], by: str | None, values: tuple[Any, ...], lock: str) -> list[Any]:
        """The rows ``WHERE[by]`` selects with ``values`` (every row if None), in id order
        (leases with their links)."""
        if by in ("id", "name") and len(values) > IN_LIST_SIZE:
            return self._select_in_parts(kind, by, values, lock)
        table = TABLES[kind]
        where = "" if by is None else " WHERE " + WHERE[by].format(_in_list(len(values)))
        statement = f"SELECT {', '.join(table.columns)} FROM {table.sql}{where} ORDER BY id{lock}"
        params = tuple(_encode(value) for value in values)
        found = [_decoded(table, row) for row in self._execute(statement, params).fetchall()]
        if table is LEASES and found:
            self._read_links(found)
        return found

    def _read_links(self, leases: list[LeaseRow]) -> None:
        """Fill in the limits each of ``leases`` holds slots of (``taken``, ``names``)."""
        by_id = {lease.id: lease for lease in leases}
        for part in _parts(tuple(by_id)):
            links = (
                "SELECT k.lease_id, k.limit_id, k.slots, l.name FROM concurrency_lease_limit k "
                "JOIN concurrency_limit l ON l.id = k.limit_id "
                f"WHERE k.lease_id IN {_in_list(len(part))} ORDER BY l.name"
            )
            for lease_id, limit_id, slots, name in self._execute(links, part).fetchall():
                by_id[lease_id].taken[limit_id] = slots
                by_id[lease_id].names.append(name)

    def _select_in_parts(
        self, kind: type[Any], by: str, values: tuple[Any, ...], lock: str
    ) -> list[Any]:
        """:meth:`_select` of more ids or names than one statement takes, part by part. Rows
        read for a change are locked by id, the parts in id order (the ids of named rows are
        read first), so that they are locked in id order as always."""
        if lock:
            if by == "name":
                values = tuple(
                    row.id for part in _parts(values) for row in self._select(kind, by, part, "")
                )
                by = "id"
            values = tuple(sorted(set(values)))
        found = [row for part in _parts(values) for row in self._select(kind, by, part, lock)]
        return sorted(found, key=lambda row: row.id)

    def insert(self, row: LimitRow | LeaseRow | DeploymentRow) -> bool:
        """Insert a row; False if its name is taken (nothing written). A lease's links too."""
        table = TABLES[type(row)]
        conflict = " ON CONFLICT (name) DO NOTHING" if "name" in table.columns else ""
        statement = (
            f"INSERT INTO {table.sql} ({', '.join(table.columns)}) "
            f"VALUES {_in_list(len(table.columns))}{conflict}"
        )
        if self._execute(statement, _values(table, row)).rowcount <= 0:
            return False
        for limit_id, slots in getattr(row, "taken", {}).items():
            link = "INSERT INTO concurrency_lease_limit (lease_id, limit_id, slots) VALUES (?, ?, ?)"
            self._execute(link, (row.id, limit_id, slots))
        return True

    def update(self, row: LimitRow | LeaseRow | DeploymentRow) -> None:
        """Write a row's fields but its id, name and creation time."""
        table = TABLES[type(row)]
        changed = [
            (column, value) for column, value in zip(table.columns, _values(table, row))
            if column not in _UNCHANGING
        ]
        sets = ", ".join(f"{column} = ?" for column, _ in changed)
        self._execute(f"UPDATE {table.sql} SET {sets} WHERE id = ?", [*(v for _, v in changed), row.id])

    def delete(self, row: LimitRow | LeaseRow | DeploymentRow) -> None:
        """Delete a row (a limit's lease links go with it, and deployments let go of it)."""
        self._execute(f"DELETE FROM {TABLES[type(row)].sql} WHERE id = ?", (row.id,))

    def drop_links_of_limit(self, limit_id: str) -> None:
        """Let every lease go of one limit (the leases stay, with their other limits)."""
        self._execute("DELETE FROM concurrency_lease_limit WHERE limit_id = ?", (limit_id,))

    # -- what the calls share ----------------------------------------------------------------

    def one(self, kind: type[R], by: str, value: str, *, for_update: bool = False) -> R | None:
        """The row whose ``by`` (``"id"`` or ``"name"``) is ``value``, or None."""
        found = self._select(kind, by, (value,), self._lock if for_update else "")
        return found[0] if found else None

    def every(self, kind: type[R]) -> list[R]:
        """Every limit or deployment, by name."""
        return sorted(self._select(kind, None, (), ""), key=lambda row: row.name)

    def lock_limits_by_name(self, names: list[str]) -> list[LimitRow]:
        """The limits with these names (unknown names are left out), locked, in the order of
        ``names``."""
        order = {name: index for index, name in enumerate(names)}
        found = self._select(LimitRow, "name", tuple(names), self._lock)
        return sorted(found, key=lambda row: order[row.name])

    def lock_limits_by_id(self, ids: Iterable[str]) -> list[LimitRow]:
        wanted = tuple(sorted(set(ids)))
        return self._select(LimitRow, "id", wanted, self._lock) if wanted else []

    def size_limit(self, name: str, size: int, now: datetime) -> LimitRow:
        """The limit ``name`` with ``size`` slots: an existing one resized (the slots held stay
        held), else a new one created at ``now``."""
        row = self.one(LimitRow, "name", name, for_update=True)
        if row is None:
            row = LimitRow.new(name, size, now)
            self.insert(row)
        else:
            row.limit = size
            self.update(row)
        return row

    def _leases(
        self, by: str | None, *values: Any, lock: str = "", limits_first: bool = False
    ) -> list[LeaseRow]:
        """The leases selected, oldest first. ``limits_first`` (with a ``lock``): the limits
        they hold are locked before them, for a call that gives their slots back."""
        if lock and limits_first:
            seen = self._select(LeaseRow, by, values, "")
            if not seen:
                return []
            self.lock_limits_by_id(limit_id for lease in seen for limit_id in lease.taken)
            by, values = "id", tuple(lease.id for lease in seen)
        found = self._select(LeaseRow, by, values, lock)
        return sorted(found, key=lambda lease: (lease.created, lease.id))

    def lock_lease(self, lease_id: str) -> LeaseRow | None:
        """The lease with this id (None if there is none), locked after the limits it holds,
        for a call that gives its slots back."""
        found = self._leases("id", lease_id, lock=self._lock, limits_first=True)
        return found[0] if found else None

    def read_leases(self, limit_id: str | None = None) -> list[LeaseRow]:
        """Every lease (oldest first), or those holding slots of one limit."""
        return self._leases(None) if limit_id is None else self._leases("limit", limit_id)

    def lock_leases_of_holder(self, holder_type: str, holder_id: str) -> list[LeaseRow]:
        """The leases one holder holds (oldest first), locked after the limits they hold."""
        return self._leases("holder", holder_type, holder_id, lock=self._lock, limits_first=True)

    def lock_expired_leases(self, now: datetime) -> list[LeaseRow]:
        """Leases whose expiration is before ``now``, the first to expire first, locked after
        the limits they hold (on PostgreSQL, leases another call is releasing right now are
        skipped: that call deals with them; one renewed meanwhile is left out)."""
        found = self._leases("expired", now, lock=self._skip_locked, limits_first=True)
        expired = [lease for lease in found if lease.expiration < now]
        return sorted(expired, key=lambda lease: (lease.expiration, lease.id))

    def renew_lease(self, lease: LeaseRow, expiration: datetime) -> LeaseRow:
        """Make a lease (read for a change) last until ``expiration``."""
        lease.expiration = expiration
        self.update(lease)
        return lease

    def lock_task_leases_of_flow_run(
        self, flow_run_id: str, *, limits_first: bool = True
    ) -> list[LeaseRow]:
        """The leases the task runs of a flow run hold (oldest first), locked after the limits
        they hold (``limits_first=False``: without them, for a call that only renews)."""
        return self._leases("tasks_of", flow_run_id, lock=self._lock, limits_first=limits_first)

    def renew_task_leases_of_flow_run(self, flow_run_id: str, expiration: datetime) -> None:
        """Make the leases held by the task runs of a flow run last until ``expiration`` at
        least (a lease lasting longer keeps its time)."""
        for lease in self.lock_task_leases_of_flow_run(flow_run_id, limits_first=False):
            if lease.expiration < expiration:
                self.renew_lease(lease, expiration)

    def let_holders_go(self, limit_id: str) -> None:
        """No lease holds the limit any more: a lease that held only it is gone, one holding
        other limits keeps those."""
        holders = self.read_leases(limit_id)
        self.drop_links_of_limit(limit_id)
        for lease in holders:
            if set(lease.taken) == {limit_id}:
                self.delete(lease)

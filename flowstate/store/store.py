"""The SQLite store: transactions, reads and writes of runs, states, cache and run input.

It knows SQL and nothing of rules. Every public method runs inside :meth:`Store.transaction`
(opened by the caller or implicitly), and every ``sqlite3`` error leaves it as a
:class:`~flowstate.DatabaseError`.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Literal
from uuid import UUID

from flowstate.errors import DatabaseError
from flowstate.runs import FlowRun, TaskRun
from flowstate.states import State, StateType
from flowstate.store import rows, sql
from flowstate.store._sqlite_errors import describe, translate_sqlite_errors
from flowstate.store.connection import Synchronous, configure, connect
from flowstate.store.schema import ensure_schema

__all__ = ["RunKind", "Store"]

RunKind = Literal["flow", "task"]


class Store:
    """One SQLite database, opened, checked and migrated on construction."""

    def __init__(
        self, path: str, *, busy_timeout: float = 30.0, synchronous: Synchronous = "NORMAL"
    ) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._depth = 0
        self._owner: int | None = None  # the thread inside transaction(), if any
        conn = connect(path, busy_timeout=busy_timeout)
        try:
            with translate_sqlite_errors(path):
                ensure_schema(conn, path)
                configure(conn, path, synchronous=synchronous)
        except BaseException:
            conn.close()
            raise
        self._conn: sqlite3.Connection | None = conn

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def conn(self) -> sqlite3.Connection:
        """The open connection (raises once the store is closed)."""
        if self._conn is None:
            raise DatabaseError(f"the database {self.path} is closed")
        return self._conn

    def close(self) -> None:
        """Close the connection; further use raises DatabaseError."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    @property
    def in_transaction(self) -> bool:
        """Whether the calling thread is inside :meth:`transaction`."""
        return self._depth > 0 and self._owner == threading.get_ident()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (a SAVEPOINT when nested); rolled back on error.

        The write lock is taken at the start, so a read-decide-write inside cannot race with
        another connection. Calls from other threads wait for the block to finish.
        """
        with self._lock:
            conn = self.conn
            depth = self._depth
            savepoint = f"fs_{depth}"
            try:
                conn.execute("BEGIN IMMEDIATE" if depth == 0 else f"SAVEPOINT {savepoint}")
            except sqlite3.Error as exc:
                raise describe(exc, self.path) from exc
            self._depth = depth + 1
            self._owner = threading.get_ident()
            try:
                with translate_sqlite_errors(self.path):
                    yield conn
            except BaseException:
                self._depth = depth
                self._rollback(conn, depth, savepoint)
                raise
            self._depth = depth
            try:
                conn.execute("COMMIT" if depth == 0 else f"RELEASE SAVEPOINT {savepoint}")
            except sqlite3.Error as exc:
                self._rollback(conn, depth, savepoint)
                raise describe(exc, self.path) from exc

    @staticmethod
    def _rollback(conn: sqlite3.Connection, depth: int, savepoint: str) -> None:
        if not conn.in_transaction:
            return  # SQLite already rolled back (e.g. after a disk error)
        if depth == 0:
            conn.execute("ROLLBACK")
        else:
            conn.execute(f"ROLLBACK TO SAVEPOINT {savepoint}")
            conn.execute(f"RELEASE SAVEPOINT {savepoint}")

    # -- runs ------------------------------------------------------------------------------

    def insert_flow_run(self, run: FlowRun) -> bool:
        """Insert a new flow run; False if its id is taken (nothing written)."""
        conn = self.conn
        if conn.execute(sql.FLOW_RUN_EXISTS, (str(run.id),)).fetchone():
            return False
        conn.execute(sql.INSERT_FLOW_RUN, rows.flow_run_insert_row(run))
        return True

    def insert_task_run(self, run: TaskRun) -> bool:
        """Insert a new task run; False if its id is taken (nothing written)."""
        conn = self.conn
        if conn.execute(sql.TASK_RUN_EXISTS, (str(run.id),)).fetchone():
            return False
        conn.execute(sql.INSERT_TASK_RUN, rows.task_run_insert_row(run))
        return True

    def read_flow_run(self, run_id: UUID) -> FlowRun | None:
        """The flow run with its current state, or None."""
        row = self.conn.execute(sql.SELECT_FLOW_RUN, (str(run_id),)).fetchone()
        return None if row is None else rows.flow_run_from_row(row)

    def read_task_run(self, run_id: UUID) -> TaskRun | None:
        """The task run with its current state, or None."""
        row = self.conn.execute(sql.SELECT_TASK_RUN, (str(run_id),)).fetchone()
        return None if row is None else rows.task_run_from_row(row)

    def read_flow_runs(
        self, *, state_type: StateType | None, limit: int | None, offset: int
    ) -> list[FlowRun]:
        """Flow runs in creation order, optionally only those of one state type."""
        type_value = None if state_type is None else state_type.value
        cursor = self.conn.execute(
            sql.SELECT_FLOW_RUNS, (type_value, type_value, -1 if limit is None else limit, offset)
        )
        return [rows.flow_run_from_row(row) for row in cursor]

    def read_task_runs(
        self,
        *,
        flow_run_id: UUID | None,
        state_type: StateType | None,
        limit: int | None,
        offset: int,
    ) -> list[TaskRun]:
        """Task runs in creation order, optionally of one flow run and/or one state type."""
        flow_value = None if flow_run_id is None else str(flow_run_id)
        type_value = None if state_type is None else state_type.value
        cursor = self.conn.execute(
            sql.SELECT_TASK_RUNS,
            (flow_value, flow_value, type_value, type_value, -1 if limit is None else limit, offset),
        )
        return [rows.task_run_from_row(row) for row in cursor]

    def delete_run(self, kind: RunKind, run_id: UUID) -> bool:
        """Delete a run with its history (and a flow run's task runs); False if there was none."""
        statement = sql.DELETE_FLOW_RUN if kind == "flow" else sql.DELETE_TASK_RUN
        return self.conn.execute(statement, (str(run_id),)).rowcount > 0

    def read_states(self, kind: RunKind, run_id: UUID) -> list[State]:
        """A run's state history, oldest first."""
        statement = sql.SELECT_FLOW_RUN_STATES if kind == "flow" else sql.SELECT_TASK_RUN_STATES
        cursor = self.conn.execute(statement, (str(run_id),))
        return [rows.state_from_row(row) for row in cursor]  # type: ignore[misc]

    def save_transition(
        self,
        kind: RunKind,
        run: FlowRun | TaskRun,
        written: State | None,
        current_state_id: UUID | None,
        now: datetime,
    ) -> None:
        """Write a new state (if any) to the run's history and save the run's fields."""
        conn = self.conn
        if kind == "flow":
            if written is not None:
                conn.execute(sql.INSERT_FLOW_RUN_STATE, rows.state_insert_row(run.id, written))
            state_id = written.id if written is not None else current_state_id
            conn.execute(sql.UPDATE_FLOW_RUN, rows.flow_run_update_row(run, state_id, now))  # type: ignore[arg-type]
        else:
            if written is not None:
                conn.execute(sql.INSERT_TASK_RUN_STATE, rows.state_insert_row(run.id, written))
            state_id = written.id if written is not None else current_state_id
            conn.execute(sql.UPDATE_TASK_RUN, rows.task_run_update_row(run, state_id, now))  # type: ignore[arg-type]

    # -- task cache ------------------------------------------------------------------------

    def insert_cache_entry(self, cache_key: str, expiration: datetime | None, state_id: UUID) -> None:
        """Remember a COMPLETED task state as the result for ``cache_key``."""
        self.conn.execute(
            sql.INSERT_CACHE_ENTRY, (cache_key, rows.encode_time(expiration), str(state_id))
        )

    def read_cached_state(self, cache_key: str, now: datetime) -> State | None:
        """The newest cached state for ``cache_key`` that has not expired at ``now``."""
        row = self.conn.execute(
            sql.SELECT_CACHED_STATE, (cache_key, rows.encode_time(now))
        ).fetchone()
        return None if row is None else rows.state_from_row(row)

    # -- run input -------------------------------------------------------------------------

    def insert_run_input(
        self, flow_run_id: UUID, key: str, value: str, sender: str | None, now: datetime
    ) -> bool:
        """Store run input; False if the key is taken (the old value is kept)."""
        conn = self.conn
        if conn.execute(sql.SELECT_RUN_INPUT, (str(flow_run_id), key)).fetchone():
            return False
        conn.execute(
            sql.INSERT_RUN_INPUT, (str(flow_run_id), key, value, sender, rows.encode_time(now))
        )
        return True

    def read_run_input(self, flow_run_id: UUID, key: str) -> str | None:
        """The stored value, or None."""
        row = self.conn.execute(sql.SELECT_RUN_INPUT, (str(flow_run_id), key)).fetchone()
        return None if row is None else row[0]

    def delete_run_input(self, flow_run_id: UUID, key: str) -> bool:
        """Delete one key; False if there was none."""
        cursor = self.conn.execute(sql.DELETE_RUN_INPUT, (str(flow_run_id), key))
        return cursor.rowcount > 0

    # -- workers: due runs, lateness, heartbeats ------------------------------------------

    def due_flow_run_ids(self, now: datetime, limit: int) -> list[UUID]:
        """SCHEDULED flow runs whose scheduled time has come, oldest first."""
        cursor = self.conn.execute(sql.SELECT_DUE_FLOW_RUN_IDS, (rows.encode_time(now), limit))
        return [UUID(row[0]) for row in cursor]

    def late_candidate_ids(self, cutoff: datetime) -> list[UUID]:
        """Flow runs still named ``Scheduled`` whose scheduled time is at or before ``cutoff``."""
        cursor = self.conn.execute(sql.SELECT_LATE_CANDIDATE_IDS, (rows.encode_time(cutoff),))
        return [UUID(row[0]) for row in cursor]

    def active_flow_run_liveness(self) -> list[tuple[UUID, datetime, float | None]]:
        """PENDING/RUNNING flow runs with their last sign of life (heartbeat, else state time)
        and their own heartbeat timeout, the longest silent first."""
        cursor = self.conn.execute(sql.SELECT_SILENT_FLOW_RUNS)
        return [(UUID(r[0]), rows.parse_time(r[1]), r[2]) for r in cursor]  # type: ignore[misc]

    def record_heartbeat(
        self,
        flow_run_id: UUID,
        *,
        worker: str | None = None,
        at: datetime | None = None,
        timeout_seconds: float | None = None,
    ) -> None:
        """Record liveness (and optionally the worker and the run's own heartbeat timeout)."""
        self.conn.execute(
            sql.UPSERT_HEARTBEAT,
            (str(flow_run_id), worker, rows.encode_time(at), timeout_seconds),
        )

    def read_heartbeat(self, flow_run_id: UUID) -> tuple[str | None, datetime | None, float | None] | None:
        """(worker, last heartbeat, timeout seconds) of a flow run, or None."""
        row = self.conn.execute(sql.SELECT_HEARTBEAT, (str(flow_run_id),)).fetchone()
        return None if row is None else (row[0], rows.parse_time(row[1]), row[2])

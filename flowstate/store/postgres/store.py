"""The PostgreSQL store: the same interface as the SQLite :class:`~flowstate.store.Store`.

One connection per store, shared by threads (calls are serialised by an ``RLock`` held for the
whole of a transaction, as in the SQLite store). Transactions run at READ COMMITTED (whatever
the server's default); a read of
a run inside one locks the run's row (``SELECT ... FOR UPDATE``) until COMMIT, so the
read-decide-write of one transition cannot race with another connection's on any host. Runs
are never cached between calls: another host may have changed them.
"""

from __future__ import annotations

import threading
import weakref
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import psycopg

from flowstate.errors import DatabaseError, FlowstateError
from flowstate.runs import FlowRun, TaskRun
from flowstate.states import State, StateType
from flowstate.store import rows
from flowstate.store.base import RunKind
from flowstate.store.connection import Synchronous
from flowstate.store.lifecycle import ConnectionLifecycle
from flowstate.store.postgres import sql
from flowstate.store.postgres.connection import check_busy_timeout, connect
from flowstate.store.postgres.errors import describe
from flowstate.store.postgres.schema import ensure_schema
from flowstate.store.postgres.timeouts import (
    DEFAULT_CALL_TIMEOUT,
    check_call_timeout,
    longest_lock_wait,
    split_call_timeout,
)
from flowstate.store.postgres.url import masked
from flowstate.store.postgres.watchdog import Watchdog
from flowstate.store.sql import select_runs

__all__ = ["PostgresStore"]

_get_ident = threading.get_ident

BEGIN = "BEGIN ISOLATION LEVEL READ COMMITTED"
"""Whatever the server's default: row locks serialise transitions, and each statement sees what
was committed before it (a stricter level would turn a wait for a run's lock into an error)."""


class PostgresStore(ConnectionLifecycle[psycopg.Connection[Any]]):
    """One PostgreSQL database (or schema), connected, checked and migrated on construction.

    ``url`` is a ``postgresql://`` (or ``postgres://``) URL as libpq reads it, plus an optional
    ``call_timeout`` parameter. ``busy_timeout`` is the session's ``lock_timeout``;
    ``synchronous`` its ``synchronous_commit`` (see :mod:`flowstate.store.postgres.connection`).
    ``call_timeout`` (default: the URL's, else 30 s) bounds every wait for the server: a call
    that waits longer fails with DatabaseError (see :mod:`flowstate.store.postgres.watchdog`);
    ``lock_timeout`` is kept just under it (:func:`~flowstate.store.postgres.timeouts.
    longest_lock_wait`).

    A lost connection costs the calls that were using it, never the store: each later call
    connects again until one succeeds. Only :meth:`close` closes the store.
    """

    def __init__(
        self,
        url: str,
        *,
        busy_timeout: float = 30.0,
        synchronous: Synchronous = "NORMAL",
        call_timeout: float | None = None,
    ) -> None:
        self._init_lifecycle(masked(url))
        self._url, from_url = split_call_timeout(url)
        if call_timeout is None:
            call_timeout = DEFAULT_CALL_TIMEOUT if from_url is None else from_url
        self.call_timeout = check_call_timeout(call_timeout)
        # a lock wait ends as DatabaseBusy before the call timeout could cut it
        self._busy_timeout = min(
            check_busy_timeout(busy_timeout), longest_lock_wait(self.call_timeout)
        )
        self._synchronous: Synchronous = synchronous
        self._watchdog = Watchdog(self.call_timeout, f"flowstate call timeout {self.path}")
        try:
            self._conn: psycopg.Connection[Any] | None = self._open()
        except BaseException:
            self._watchdog.stop()
            raise
        weakref.finalize(self, self._watchdog.stop)

    def _open(self) -> psycopg.Connection[Any]:
        """A new connection with the session settings, its schema checked and migrated."""
        watchdog = self._watchdog
        watchdog.arm()
        try:
            conn = connect(
                self._url,
                self.path,
                busy_timeout=self._busy_timeout,
                synchronous=self._synchronous,
                call_timeout=self.call_timeout,
                watchdog=watchdog,
            )
            try:
                ensure_schema(conn, self.path)
            except BaseException as exc:
                conn.close()
                if isinstance(exc, psycopg.Error):
                    raise self._describe(exc) from exc
                raise
        except DatabaseError as exc:
            if watchdog.fired:
                raise self._timed_out() from exc
            raise
        finally:
            watchdog.disarm()
        return conn

    def _reconnect(self, old: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
        """Replace a lost connection. If the server cannot be reached, the old (closed)
        connection stays in place, so the next call tries again."""
        old.close()
        self._conn = conn = self._open()
        return conn

    def close(self) -> None:
        """Close the connection; further use raises DatabaseError."""
        with self._lock:
            self._watchdog.stop()
            super().close()

    def server_time(self) -> datetime:
        """The server's clock (``now()``: the start of the current transaction), in UTC."""
        now: datetime = self._execute(sql.SELECT_SERVER_TIME).fetchone()[0]  # type: ignore[index]
        return now.astimezone(UTC)

    # -- errors ------------------------------------------------------------------------------

    def _timed_out(self) -> DatabaseError:
        return DatabaseError(
            f"{self.path}: the server did not answer within the call timeout of "
            f"{self.call_timeout:g} s, so the connection was dropped; nothing of the current call "
            "was committed unless it timed out while committing; the next call reconnects "
            "(raise call_timeout if the server is just slow)"
        )

    def _describe(self, exc: BaseException) -> FlowstateError:
        """``exc`` as a flowstate error: a timeout if the watchdog cut the round trip."""
        if self._watchdog.fired and isinstance(exc, psycopg.OperationalError):
            return self._timed_out()
        return describe(exc, self.path)

    # -- transactions (conn, in_transaction, transaction: ConnectionLifecycle) ----------------

    def begin(self) -> int:
        """Open a transaction (or a savepoint inside one); returns the depth to pass to end.

        ``BEGIN`` at READ COMMITTED: reads of a run inside lock its row (see
        :meth:`_read_run`), and any ``psycopg.Error`` raised inside the block leaves as a
        flowstate error. A connection lost since the last call is replaced first (a new
        connection, the same settings), and so is one found lost by the ``BEGIN`` itself
        (nothing of the call was sent yet): a server restart between calls costs nothing,
        one during a call costs that call, and while the server is down each call fails at
        once with DatabaseError.
        """
        lock = self._lock
        lock.acquire()
        try:
            depth = self._depth
            watchdog = self._watchdog
            try:
                if depth == 0:
                    conn = self.conn  # raises once the store is closed
                    if conn.closed or conn.broken:
                        conn = self._reconnect(conn)
                    watchdog.arm()
                    try:
                        conn.execute(BEGIN)
                    except psycopg.OperationalError:
                        if not conn.broken or watchdog.fired:
                            raise
                        watchdog.disarm()
                        conn = self._reconnect(conn)  # it broke while idle
                        watchdog.arm()
                        conn.execute(BEGIN)
                else:
                    watchdog.arm()
                    self.conn.execute(f"SAVEPOINT fs_{depth}")
            except psycopg.Error as exc:
                raise self._describe(exc) from exc
            finally:
                watchdog.disarm()
        except BaseException:
            lock.release()
            raise
        self._depth = depth + 1
        self._owner = _get_ident()
        return depth

    def end(self, depth: int, exc: BaseException | None) -> None:
        """Commit (or release the savepoint); on ``exc``, roll back and re-raise it translated."""
        conn = self._conn
        watchdog = self._watchdog
        try:
            self._depth = depth
            if exc is None:
                watchdog.arm()
                try:
                    self.conn.execute("COMMIT" if depth == 0 else f"RELEASE SAVEPOINT fs_{depth}")
                except psycopg.Error as error:
                    described = self._describe(error)
                    self._rollback(conn, depth)
                    raise described from error
                finally:
                    watchdog.disarm()
                return
            if conn is not None:
                self._rollback(conn, depth)
            if isinstance(exc, psycopg.Error):
                raise self._describe(exc) from exc
        finally:
            self._lock.release()

    def _rollback(self, conn: psycopg.Connection[Any] | None, depth: int) -> None:
        if conn is None or conn.closed or conn.broken:
            return  # closed, or lost: the server rolled back
        status = conn.info.transaction_status
        if status == psycopg.pq.TransactionStatus.IDLE:
            return
        watchdog = self._watchdog
        watchdog.arm()
        try:
            if depth == 0:
                conn.execute("ROLLBACK")
            else:
                conn.execute(f"ROLLBACK TO SAVEPOINT fs_{depth}")
                conn.execute(f"RELEASE SAVEPOINT fs_{depth}")
        except psycopg.OperationalError:
            pass  # the connection broke: the server rolls back; the next begin reconnects
        finally:
            watchdog.disarm()

    def _execute(self, statement: str, params: Any = None) -> psycopg.Cursor[Any]:
        watchdog = self._watchdog
        watchdog.arm()
        try:
            return self.conn.execute(statement, params)
        except psycopg.Error as exc:
            raise self._describe(exc) from exc
        finally:
            watchdog.disarm()

    # -- runs ------------------------------------------------------------------------------

    def insert_flow_run(self, run: FlowRun) -> bool:
        """Insert a new flow run; False if its id is taken (nothing written)."""
        row = rows.flow_run_insert_row(run)
        return self._execute(sql.INSERT_FLOW_RUN_IF_NEW, row).rowcount > 0

    def insert_task_run(self, run: TaskRun) -> bool:
        """Insert a new task run; False if its id is taken (nothing written)."""
        row = rows.task_run_insert_row(run)
        return self._execute(sql.INSERT_TASK_RUN_IF_NEW, row).rowcount > 0

    def _read_run(self, select: str, locking: str, run_id: UUID) -> Any:
        """The row of a run with its current state, or None; locked inside a transaction."""
        key = (str(run_id),)
        if not self.in_transaction:
            return self._execute(select, key).fetchone()
        row = self._execute(locking, key).fetchone()
        if row is not None and row[sql.RUN_STATE_ID] != row[sql.STATE_ID]:
            # The run changed while we waited for its lock, and its new state is not in this
            # statement's snapshot (see sql.SELECT_FLOW_RUN_FOR_UPDATE): read it again.
            row = self._execute(select, key).fetchone()
        return row

    def read_flow_run(self, run_id: UUID) -> FlowRun | None:
        """The flow run with its current state, or None; inside a transaction, its row stays
        locked until the transaction ends."""
        row = self._read_run(sql.SELECT_FLOW_RUN, sql.SELECT_FLOW_RUN_FOR_UPDATE, run_id)
        return None if row is None else rows.flow_run_from_row(row)

    def working_flow_run(self, run_id: UUID) -> FlowRun | None:
        """``read_flow_run``: this store keeps no runs between reads, so every run is the
        caller's own."""
        return self.read_flow_run(run_id)

    def read_task_run(self, run_id: UUID) -> TaskRun | None:
        """The task run with its current state, or None; inside a transaction, its row stays
        locked until the transaction ends."""
        row = self._read_run(sql.SELECT_TASK_RUN, sql.SELECT_TASK_RUN_FOR_UPDATE, run_id)
        return None if row is None else rows.task_run_from_row(row)

    def read_flow_runs(
        self,
        *,
        state_type: StateType | None,
        limit: int | None,
        offset: int,
        flow_name: str | None = None,
        newest_first: bool = False,
    ) -> list[FlowRun]:
        """Flow runs in creation order (or newest first), optionally of one state type and/or
        one flow."""
        statement = select_runs(
            "flow", state_type=state_type is not None, flow_name=flow_name is not None,
            newest_first=newest_first, placeholder="%s", payload_table=False,
        )
        params: list[Any] = [] if state_type is None else [state_type.value]
        if flow_name is not None:
            params.append(flow_name)
        cursor = self._execute(statement, (*params, limit, offset))
        return [rows.flow_run_from_row(row) for row in cursor]

    def read_task_runs(
        self,
        *,
        flow_run_id: UUID | None,
        state_type: StateType | None,
        limit: int | None,
        offset: int,
        flow_name: str | None = None,
        newest_first: bool = False,
    ) -> list[TaskRun]:
        """Task runs in creation order (or newest first), optionally of one flow run, of the
        runs of one flow and/or of one state type."""
        statement = select_runs(
            "task", flow_run_id=flow_run_id is not None, state_type=state_type is not None,
            flow_name=flow_name is not None, newest_first=newest_first, placeholder="%s", payload_table=False,
        )
        params: list[Any] = [] if flow_run_id is None else [str(flow_run_id)]
        if state_type is not None:
            params.append(state_type.value)
        if flow_name is not None:
            params.append(flow_name)
        cursor = self._execute(statement, (*params, limit, offset))
        return [rows.task_run_from_row(row) for row in cursor]

    def delete_run(self, kind: RunKind, run_id: UUID) -> bool:
        """Delete a run with its history (and a flow run's task runs); False if there was none."""
        statement = sql.DELETE_FLOW_RUN if kind == "flow" else sql.DELETE_TASK_RUN
        return self._execute(statement, (str(run_id),)).rowcount > 0

    def read_states(self, kind: RunKind, run_id: UUID) -> list[State]:
        """A run's state history, oldest first."""
        statement = sql.SELECT_FLOW_RUN_STATES if kind == "flow" else sql.SELECT_TASK_RUN_STATES
        cursor = self._execute(statement, (str(run_id),))
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
        flow = kind == "flow"
        if written is not None:
            statement = sql.INSERT_FLOW_RUN_STATE if flow else sql.INSERT_TASK_RUN_STATE
            self._execute(statement, rows.state_insert_row(run.id, written))
        state_id = written.id if written is not None else current_state_id
        if flow:
            row = rows.flow_run_update_row(run, state_id, now)  # type: ignore[arg-type]
            self._execute(sql.UPDATE_FLOW_RUN, row)
        else:
            row = rows.task_run_update_row(run, state_id, now)  # type: ignore[arg-type]
            self._execute(sql.UPDATE_TASK_RUN, row)

    # -- task cache ------------------------------------------------------------------------

    def insert_cache_entry(self, cache_key: str, expiration: datetime | None, state_id: UUID) -> None:
        """Remember a COMPLETED task state as the result for ``cache_key``."""
        self._execute(
            sql.INSERT_CACHE_ENTRY, (cache_key, rows.encode_time(expiration), str(state_id))
        )

    def read_cached_state(self, cache_key: str, now: datetime) -> State | None:
        """The newest cached state for ``cache_key`` that has not expired at ``now``."""
        row = self._execute(sql.SELECT_CACHED_STATE, (cache_key, rows.encode_time(now))).fetchone()
        return None if row is None else rows.state_from_row(row)

    # -- run input -------------------------------------------------------------------------

    def insert_run_input(
        self, flow_run_id: UUID, key: str, value: str, sender: str | None, now: datetime
    ) -> bool:
        """Store run input; False if the key is taken (the old value is kept)."""
        params = (str(flow_run_id), key, value, sender, rows.encode_time(now))
        return self._execute(sql.INSERT_RUN_INPUT_IF_NEW, params).rowcount > 0

    def read_run_input(self, flow_run_id: UUID, key: str) -> str | None:
        """The stored value, or None."""
        row = self._execute(sql.SELECT_RUN_INPUT, (str(flow_run_id), key)).fetchone()
        return None if row is None else row[0]

    def read_run_inputs(self, flow_run_id: UUID, prefix: str) -> list[tuple[str, str, str | None]]:
        """(key, value, sender) of the inputs whose key starts with ``prefix``, oldest first."""
        params = (str(flow_run_id), len(prefix), prefix)
        found = self._execute(sql.SELECT_RUN_INPUTS_BY_PREFIX, params).fetchall()
        return [(key, value, sender) for key, value, sender in found]

    def delete_run_input(self, flow_run_id: UUID, key: str) -> bool:
        """Delete one key; False if there was none."""
        return self._execute(sql.DELETE_RUN_INPUT, (str(flow_run_id), key)).rowcount > 0

    # -- workers: due runs, lateness, heartbeats ------------------------------------------

    def due_flow_run_ids(self, now: datetime, limit: int) -> list[UUID]:
        """SCHEDULED flow runs whose scheduled time has come, oldest first; inside a
        transaction they are locked, and runs another transaction holds are skipped."""
        cursor = self._execute(sql.CLAIM_DUE_FLOW_RUN_IDS, (rows.encode_time(now), limit))
        return [UUID(row[0]) for row in cursor]

    def late_candidate_ids(self, cutoff: datetime) -> list[UUID]:
        """Flow runs still named ``Scheduled`` whose scheduled time is at or before ``cutoff``
        (locked until the transaction ends)."""
        cursor = self._execute(sql.LOCK_LATE_CANDIDATE_IDS, (rows.encode_time(cutoff),))
        return [UUID(row[0]) for row in cursor]

    def active_flow_run_liveness(self) -> list[tuple[UUID, datetime, float | None]]:
        """PENDING/RUNNING flow runs with their last sign of life (heartbeat, else state time)
        and their own heartbeat timeout, the longest silent first (locked until the
        transaction ends, then read)."""
        if self.in_transaction:
            self._execute(sql.LOCK_ACTIVE_FLOW_RUNS)
        cursor = self._execute(sql.SELECT_SILENT_FLOW_RUNS)
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
        self._execute(
            sql.UPSERT_HEARTBEAT,
            (str(flow_run_id), worker, rows.encode_time(at), timeout_seconds),
        )

    def read_heartbeat(
        self, flow_run_id: UUID
    ) -> tuple[str | None, datetime | None, float | None] | None:
        """(worker, last heartbeat, timeout seconds) of a flow run, or None."""
        row = self._execute(sql.SELECT_HEARTBEAT, (str(flow_run_id),)).fetchone()
        return None if row is None else (row[0], rows.parse_time(row[1]), row[2])

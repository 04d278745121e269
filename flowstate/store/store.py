"""The SQLite store: transactions, reads and writes of runs, states, cache and run input.

It knows SQL and nothing of rules. Every public method runs inside :meth:`Store.transaction`
(opened by the caller or implicitly), and every ``sqlite3`` error leaves it as a
:class:`~flowstate.DatabaseError`.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from flowstate._models import copy_with, set_fields
from flowstate.errors import DatabaseError
from flowstate.runs import FlowRun, TaskRun
from flowstate.states import State, StateType
from flowstate.store import rows, sql
from flowstate.store._sqlite_errors import describe, is_busy, translate_sqlite_errors
from flowstate.store.connection import Synchronous, configure, connect
from flowstate.store.lifecycle import ConnectionLifecycle
from flowstate.store.lock_wait import WaitNotice, wait_for_lock
from flowstate.store.schema import ensure_schema
from flowstate.store.wal import CHECK_EVERY, IDLE_RETRY, limit_wal, shrink_wal, wal_path
from flowstate.store.write_queue import WriteQueue

__all__ = ["RunKind", "Store"]

RunKind = Literal["flow", "task"]

_get_ident = threading.get_ident
_loads = __import__("json").loads

_BEGIN_WRITE = "BEGIN IMMEDIATE"
_DOOMED = (
    "a call inside this transaction failed with a database error after it had written, so the "
    "transaction cannot commit; leave its block, which rolls it back"
)

RUN_CACHE_SIZE = 16
"""Flow runs kept decoded between calls (the most recently read or written ones)."""


class _CachedFlowRun:
    """A flow run exactly as reading its row would build it, with the JSON texts it came from.

    Readers get :meth:`detached` copies; only a transition by built-in rules works on ``run``
    itself (:meth:`Store.working_flow_run`), and saving it brings it back to what reading the
    row would build. Only runs whose current state is deeply immutable (no result data, no run
    input keyset) are kept, so the copies can share the state object.
    """

    __slots__ = (
        "run", "parameters", "tags", "policy", "id_text", "policy_object", "pending", "policy_dirty",
    )

    def __init__(
        self, run: FlowRun, parameters: str | None, tags: str, policy: str, id_text: str
    ) -> None:
        self.run = run
        self.parameters: str | None = parameters
        """The parameters' JSON (None: not read yet, see Store._fetch_flow_run)."""
        self.tags = tags
        self.policy: str | None = policy
        """The policy's JSON (None: not encoded yet, after a deferred update)."""
        self.id_text = id_text
        self.policy_object = run.empirical_policy
        """The policy ``policy`` encodes: a transition that replaced it must encode the new one."""
        self.pending: tuple[str | None, datetime] | None = None
        """The run's UPDATE not executed yet (its state id and time), see Store._flush."""
        self.policy_dirty = False
        """Whether that update must write the policy too (a transition replaced it)."""

    def detached(self) -> FlowRun:
        """A copy the caller may change freely: its mutable parts are new objects."""
        run = self.run
        policy = run.empirical_policy
        return copy_with(
            run,
            {
                "parameters": {} if self.parameters == "{}" else _loads(self.parameters),  # type: ignore[arg-type]
                "tags": [] if self.tags == "[]" else _loads(self.tags),
                "empirical_policy": copy_with(policy, {"pause_keys": set(policy.pause_keys)}),
            },
        )


def _without_payload(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A new flow run's row for INSERT_FLOW_RUN, its payload columns left empty (the values go
    to flow_run_payload: see sql.PAYLOAD_COLUMNS)."""
    return (*row[:3], "", "", *row[5:14], "", *row[15:])


def _bookkeeping(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A flow_run_update_row for UPDATE_FLOW_RUN: without the policy (position 9)."""
    return row[:9] + row[10:]


def _immutable(state: State | None) -> bool:
    return state is None or (state.data is None and state.state_details.run_input_keyset is None)


def _prepare(
    conn: sqlite3.Connection, path: str, *, synchronous: Synchronous, busy_timeout: float
) -> None:
    """Check or create the schema and apply the connection settings.

    Some lock conflicts while several processes open one new file answer SQLITE_BUSY at once,
    without waiting in SQLite's busy handler (switching the journal mode to WAL needs every
    other connection out of the file): those are retried, with a short growing pause, until
    ``busy_timeout`` has passed. Both steps are idempotent.
    """
    deadline = time.monotonic() + busy_timeout
    pause = 0.005
    while True:
        try:
            ensure_schema(conn, path)
            configure(conn, path, synchronous=synchronous)
            return
        except sqlite3.OperationalError as exc:
            if not is_busy(exc) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


class Store(ConnectionLifecycle[sqlite3.Connection]):
    """One SQLite database, opened, checked and migrated on construction."""

    def __init__(
        self, path: str, *, busy_timeout: float = 30.0, synchronous: Synchronous = "NORMAL"
    ) -> None:
        self._init_lifecycle(path)
        # Flow runs as last read or written by this connection; valid while no other
        # connection has committed (PRAGMA data_version, checked at each BEGIN IMMEDIATE).
        self._runs: dict[int, _CachedFlowRun] = {}  # by UUID.int: hashing an int is cheaper
        self._data_version: int | None = None
        self._doomed = False  # a call failed halfway inside the open block (see begin_call)
        # Inside a block of several calls, a cached run's UPDATE waits until the block commits
        # (or anything else reads flow_run rows): a run that moves through several states in
        # one block has its row written once. These entries hold such an update.
        self._dirty: list[_CachedFlowRun] = []
        self._defer = False
        conn = connect(path, busy_timeout=busy_timeout)
        try:
            with translate_sqlite_errors(path):
                _prepare(conn, path, synchronous=synchronous, busy_timeout=busy_timeout)
        except BaseException:
            conn.close()
            raise
        # From now on a lock wait happens in Python, in slices a signal can interrupt (lock_wait)
        conn.execute("PRAGMA busy_timeout = 0")
        self._busy_timeout = busy_timeout
        with translate_sqlite_errors(path):
            limit_wal(conn)
            self._wal = wal_path(conn)  # kept small after commits: see store.wal
        self._commits = 0
        self._shrink_pending = False  # the WAL passed its bound and could not be emptied yet
        self._idle_timer: threading.Timer | None = None
        self._conn: sqlite3.Connection | None = conn
        # writers of a database file wait for their turn in the kernel (see write_queue)
        self._queue = None if self._wal is None else WriteQueue(self._wal[: -len("-wal")])
        # BEGIN, COMMIT and the data version check go through one cursor: conn.execute would
        # make (and drop) a cursor for each, some 1.2k instructions a statement
        self._control = conn.cursor()

    # -- transactions (conn, close, in_transaction, transaction: ConnectionLifecycle) --------

    def begin(self) -> int:
        """Open a transaction (or a savepoint inside one); returns the depth to pass to end.

        ``BEGIN IMMEDIATE`` takes the write lock at the start, so a read-decide-write inside
        cannot race with another connection."""
        return self._open(_BEGIN_WRITE)

    def _open(self, begin: str) -> int:
        """``begin`` with ``begin``: ``BEGIN IMMEDIATE``, or a plain ``BEGIN`` for a read
        transaction that runs beside a writer (WAL). Any ``sqlite3.Error`` raised inside the block leaves
        as a :class:`~flowstate.DatabaseError`. Any exception before this returns (an interrupt
        too) leaves no transaction open.
        """
        lock = self._lock
        lock.acquire()
        depth = self._depth
        try:
            try:
                if depth == 0:
                    self._start(begin)
                    self._defer = True  # a block (begin_call says when it is one call)
                else:
                    if self._doomed:
                        raise DatabaseError(_DOOMED)
                    # (a rollback to the savepoint must not lose the waiting updates)
                    self._flushed().execute(f"SAVEPOINT fs_{depth}")
            except sqlite3.Error as exc:
                raise describe(exc, self.path) from exc
            self._depth = depth + 1
            self._owner = _get_ident()
        except BaseException:
            self._depth = depth
            if depth == 0:
                self._abandon()
                if self._queue is not None:
                    self._queue.leave()
            lock.release()
            raise
        return depth

    def _start(self, begin: str) -> None:
        """Run ``begin`` and check the data version. A write first takes its turn in the
        writers' queue (see ``write_queue``); while another connection holds SQLite's lock,
        wait for it in short slices (see ``lock_wait``); both within ``busy_timeout``."""
        conn = self.conn
        if conn.in_transaction:  # left open by an interrupt: never acknowledged, undo it
            conn.execute("ROLLBACK")
        started = deadline = notice = None
        queue = self._queue
        if queue is not None and begin == _BEGIN_WRITE:
            started = time.monotonic()
            deadline = started + self._busy_timeout
            notice = WaitNotice(self.path, self._busy_timeout)
            queue.enter(deadline, notice)
        try:
            self._control.execute(begin)
            self._check_data_version()
            return
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                raise
        self._abandon()

        def attempt() -> bool:
            try:
                self._control.execute(begin)
                self._check_data_version()
                return True
            except sqlite3.OperationalError as exc:
                if not is_busy(exc):
                    raise
            self._abandon()
            return False

        if started is None or deadline is None or notice is None:
            started = time.monotonic()
            deadline = started + self._busy_timeout
            notice = WaitNotice(self.path, self._busy_timeout)
        wait_for_lock(attempt, started, deadline, notice)

    def _abandon(self) -> None:
        """Roll back the transaction a failed or interrupted BEGIN may have left open."""
        self._runs.clear()
        conn = self._conn
        if conn is not None and conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass

    def begin_read(self) -> int:
        """``begin_call`` for a call that only reads: a read transaction (``BEGIN``), which
        neither waits for nor blocks a writer; inside this thread's block, the block's."""
        if self._depth == 0 or self._owner != _get_ident():
            depth = self._open("BEGIN")
            self._defer = False
            return depth
        if self._doomed:
            raise DatabaseError(_DOOMED)
        return ~self.conn.total_changes

    def begin_call(self) -> int:
        """``begin`` for one API call. Inside this thread's transaction it opens no savepoint
        (two statements fewer per call): the call's checks all come before its first write, so
        only a database error (or an interrupt) can stop it halfway. If one does after the call
        changed rows, the enclosing block is doomed: further calls in it raise, and it rolls
        back when it ends (see ``end``). Returns the token for ``end_call``: negative there."""
        if self._depth == 0 or self._owner != _get_ident():
            depth = self.begin()
            self._defer = False  # one call: its commit follows at once
            return depth
        # this thread's block holds the lock until it ends: nothing to acquire
        if self._doomed:
            raise DatabaseError(_DOOMED)
        return ~self.conn.total_changes

    def end_call(self, token: int, exc: BaseException | None) -> None:
        """End a ``begin_call``: nothing to do for a call that succeeded inside a block (a
        negative token), so such a call need not come here at all."""
        if token >= 0:
            self.end(token, exc)
            return
        if exc is None:
            return
        self._forget_all()
        conn = self._conn
        if conn is None or conn.total_changes != ~token or not conn.in_transaction:
            self._doomed = True
        if isinstance(exc, sqlite3.Error):
            raise describe(exc, self.path) from exc

    def _check_data_version(self) -> None:
        """Forget the cached runs if another connection committed since this one last did."""
        # (fetchall: the statement runs to its end, so the cursor holds none in progress)
        version = self._control.execute(sql.DATA_VERSION).fetchall()[0][0]
        if version != self._data_version:
            self._runs.clear()
            self._data_version = version

    def end(self, depth: int, exc: BaseException | None) -> None:
        """Commit (or release the savepoint); on ``exc``, roll back and re-raise it translated."""
        conn = self._conn
        try:
            self._depth = depth
            if self._doomed:  # rolling this block back undoes the half-done call inside it
                self._doomed = False
                if exc is None:
                    self._forget_all()
                    if conn is not None:
                        self._rollback(conn, depth, f"fs_{depth}")
                    raise DatabaseError(f"the transaction was rolled back: {_DOOMED}")
            if exc is None:
                try:
                    if depth == 0:
                        self._flushed()
                        self._control.execute("COMMIT")
                        self._commits += 1
                        if self._shrink_pending or not self._commits % CHECK_EVERY:
                            self._bound_wal()
                    else:
                        conn.execute(f"RELEASE SAVEPOINT fs_{depth}")  # type: ignore[union-attr]
                except sqlite3.Error as error:
                    self._forget_all()
                    self._rollback(conn, depth, f"fs_{depth}")  # type: ignore[arg-type]
                    raise describe(error, self.path) from error
                return
            translated = describe(exc, self.path) if isinstance(exc, sqlite3.Error) else None
            self._forget_all()
            if conn is not None:
                self._rollback(conn, depth, f"fs_{depth}")
            if translated is not None:
                raise translated from exc
        finally:
            if depth == 0 and self._queue is not None:
                self._queue.leave()
            self._lock.release()

    @staticmethod
    def _rollback(conn: sqlite3.Connection, depth: int, savepoint: str) -> None:
        if not conn.in_transaction:
            return  # SQLite already rolled back (e.g. after a disk error)
        if depth == 0:
            conn.execute("ROLLBACK")
        else:
            conn.execute(f"ROLLBACK TO SAVEPOINT {savepoint}")
            conn.execute(f"RELEASE SAVEPOINT {savepoint}")

    # -- the WAL's size (see store.wal) -----------------------------------------------------

    def _bound_wal(self) -> None:
        """After a commit: empty the WAL if it passed its bound; if that cannot be done now,
        try again after the next commit, or once this connection has been idle a while."""
        conn, wal = self._conn, self._wal
        if conn is None or wal is None:
            return
        self._shrink_pending = not shrink_wal(conn, wal)
        if self._shrink_pending and self._idle_timer is None:
            timer = threading.Timer(IDLE_RETRY, self._bound_wal_when_idle)
            timer.daemon = True
            self._idle_timer = timer
            timer.start()

    def _bound_wal_when_idle(self) -> None:
        """The idle timer: retry the checkpoint unless a call is using the connection."""
        if not self._lock.acquire(blocking=False):
            self._idle_timer = None
            return  # a call is running: its commit checks again
        try:
            self._idle_timer = None
            if self._depth == 0 and self._shrink_pending:
                self._bound_wal()
        finally:
            self._lock.release()

    def close(self) -> None:
        """Close the connection (after emptying the WAL into the database if it can at once);
        further use raises DatabaseError."""
        with self._lock:
            timer, self._idle_timer = self._idle_timer, None
            if timer is not None:
                timer.cancel()
            self._shrink_pending = False
            if self._conn is not None and self._wal is not None and self._depth == 0:
                shrink_wal(self._conn, self._wal, bound=0)
            if self._queue is not None:
                self._queue.close()
            super().close()

    # -- deferred run updates --------------------------------------------------------------

    def _flushed(self) -> sqlite3.Connection:
        """The connection, once the run UPDATEs still waiting (see ``_dirty``) are executed:
        the one point they are flushed, before a statement that reads or deletes flow_run rows
        beyond the cache, a savepoint, or the commit."""
        if self._dirty:
            self._flush()
        return self.conn

    def _flush(self) -> None:
        """Execute the run UPDATEs still waiting (see ``_dirty``)."""
        dirty, self._dirty = self._dirty, []
        for cached in dirty:  # each holds a waiting update (see _forget)
            self._write_pending(cached)

    def _write_pending(self, cached: _CachedFlowRun) -> None:
        """Execute one run's waiting UPDATE (``cached.pending``)."""
        state_id, updated = cached.pending  # type: ignore[misc]
        row = rows.flow_run_update_row(cached.run, state_id, updated, cached.policy, cached.id_text)
        conn = self.conn
        conn.execute(*sql.BIND_UPDATE_FLOW_RUN(_bookkeeping(row)))
        if cached.policy_dirty:
            conn.execute(sql.UPDATE_FLOW_RUN_POLICY, (row[9], row[11]))
            cached.policy_dirty = False
        cached.pending = None
        cached.policy = row[9]

    def _forget_all(self) -> None:
        """Drop the cache after a rollback, waiting updates included (they were rolled back)."""
        self._runs.clear()
        self._dirty.clear()

    def _forget(self, key: int) -> None:
        """Drop one run from the cache, writing its waiting update first."""
        cached = self._runs.pop(key)
        if cached.pending is not None:
            self._write_pending(cached)
            self._dirty.remove(cached)  # (holding it there would keep the run alive till commit)

    def _evict_oldest(self) -> None:
        runs = self._runs
        while len(runs) > RUN_CACHE_SIZE:
            self._forget(next(iter(runs)))

    # -- runs ------------------------------------------------------------------------------

    def insert_flow_run(self, run: FlowRun) -> bool:
        """Insert a new flow run; False if its id is taken (nothing written)."""
        row = rows.flow_run_insert_row(run)
        conn = self.conn
        if conn.execute(*sql.BIND_INSERT_FLOW_RUN_IF_NEW(_without_payload(row))).rowcount == 0:
            return False
        conn.execute(sql.INSERT_FLOW_RUN_PAYLOAD, (row[0], row[3], row[4]))
        conn.execute(sql.INSERT_FLOW_RUN_POLICY, (row[0], row[14]))
        if self._caching():
            # what reading the row back builds, decoded as a read decodes it (no state yet)
            self._remember(rows.flow_run_from_row((*row, None)), row)
        return True

    def _caching(self) -> bool:
        """Whether the cache may be used: inside this thread's transaction (data_version checked)."""
        if self._depth > 0 and self._owner == _get_ident():
            return True
        self._runs.clear()  # a write outside a transaction: forget everything
        return False

    def _remember(self, run: FlowRun, row: Any) -> None:
        """Cache ``run``, decoded from ``row`` (a SELECT_FLOW_RUN or insert row)."""
        runs = self._runs
        key = run.id.int
        if key in runs:
            self._forget(key)
        if _immutable(run.state):
            runs[key] = _CachedFlowRun(run, row[3], row[4], row[14], row[0])
            if len(runs) > RUN_CACHE_SIZE:
                self._evict_oldest()

    def insert_task_run(self, run: TaskRun) -> bool:
        """Insert a new task run; False if its id is taken (nothing written)."""
        conn = self.conn
        if conn.execute(sql.TASK_RUN_EXISTS, (str(run.id),)).fetchone():
            return False
        conn.execute(*sql.BIND_INSERT_TASK_RUN(rows.task_run_insert_row(run)))
        return True

    def read_flow_run(self, run_id: UUID) -> FlowRun | None:
        """The flow run with its current state, or None. The caller may change the run."""
        caching = self._caching()
        if caching:
            cached = self._runs.get(run_id.int)
            if cached is not None:
                return self._detached(cached)
        run = self._fetch_flow_run(run_id, caching)
        if run is not None and caching and _immutable(run.state):
            return self._detached(self._runs[run_id.int])  # the fetched run is the cache's now
        return run

    def _detached(self, cached: _CachedFlowRun) -> FlowRun:
        """``cached.detached()``, its parameters read first if a transition's read left them
        out (see ``_fetch_flow_run``)."""
        if cached.parameters is None:
            row = self.conn.execute(sql.SELECT_FLOW_RUN_PARAMETERS, (cached.id_text,)).fetchone()
            cached.parameters = row[0]
        return cached.detached()

    def working_flow_run(self, run_id: UUID) -> FlowRun | None:
        """The flow run for a transition by built-in rules: the cached run itself, when there
        is one (see :meth:`StoreBackend.working_flow_run`), else a fresh read."""
        if self._depth > 0 and self._owner == _get_ident():  # (_caching(), written out)
            cached = self._runs.get(run_id.int)
            if cached is not None:
                return cached.run
            return self._fetch_flow_run(run_id, True, lean=True)
        return self._fetch_flow_run(run_id, self._caching(), lean=True)

    def _fetch_flow_run(self, run_id: UUID, caching: bool, lean: bool = False) -> FlowRun | None:
        """Read a flow run from its row, and cache it when ``caching`` and its state allow.
        ``lean``: for a transition by built-in rules, which never look at the parameters: they
        are not read (the run has none; its cache entry reads them when a copy needs them), so
        a transition's cost does not grow with them."""
        statement = sql.SELECT_FLOW_RUN_LEAN if lean else sql.SELECT_FLOW_RUN
        row = self.conn.execute(statement, (str(run_id),)).fetchone()
        if row is None:
            return None
        run = rows.flow_run_from_row(row)
        if caching and _immutable(run.state):
            self._remember(run, row)
        return run

    def read_task_run(self, run_id: UUID) -> TaskRun | None:
        """The task run with its current state, or None."""
        row = self.conn.execute(sql.SELECT_TASK_RUN, (str(run_id),)).fetchone()
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
        conn = self._flushed()
        statement = sql.select_runs(
            "flow", state_type=state_type is not None, flow_name=flow_name is not None,
            newest_first=newest_first,
        )
        parameters: list[Any] = [] if state_type is None else [state_type.value]
        if flow_name is not None:
            parameters.append(flow_name)
        cursor = conn.execute(statement, (*parameters, -1 if limit is None else limit, offset))
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
        conn = self._flushed()
        statement = sql.select_runs(
            "task", flow_run_id=flow_run_id is not None, state_type=state_type is not None,
            flow_name=flow_name is not None, newest_first=newest_first,
        )
        parameters: list[Any] = [] if flow_run_id is None else [str(flow_run_id)]
        if state_type is not None:
            parameters.append(state_type.value)
        if flow_name is not None:
            parameters.append(flow_name)
        cursor = conn.execute(statement, (*parameters, -1 if limit is None else limit, offset))
        return [rows.task_run_from_row(row) for row in cursor]

    def delete_run(self, kind: RunKind, run_id: UUID) -> bool:
        """Delete a run with its history (and a flow run's task runs); False if there was none."""
        statement = sql.DELETE_FLOW_RUN if kind == "flow" else sql.DELETE_TASK_RUN
        conn = self._flushed()
        self._runs.clear()
        return conn.execute(statement, (str(run_id),)).rowcount > 0

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
        if kind != "flow":
            conn = self.conn
            if written is not None:
                conn.execute(*sql.BIND_INSERT_TASK_RUN_STATE(rows.state_insert_row(run.id, written)))
            task_state_id = written.id if written is not None else current_state_id
            conn.execute(*sql.BIND_UPDATE_TASK_RUN(rows.task_run_update_row(run, task_state_id, now)))  # type: ignore[arg-type]
            return
        cached = None
        if self._depth > 0 and self._owner == _get_ident():  # (_caching(), written out)
            cached = self._runs.get(run.id.int)
            if cached is not None and cached.run is run:
                self._save_cached_flow_run(cached, written, current_state_id, now)
                return
        else:
            self._runs.clear()
        conn = self._flushed()
        run_text = str(run.id) if cached is None else cached.id_text
        state_row = None
        state_id: UUID | str | None = current_state_id
        if written is not None:
            state_row = rows.state_insert_row(run_text, written)
            conn.execute(*sql.BIND_INSERT_FLOW_RUN_STATE(state_row))
            state_id = state_row[1]
        policy_text = None
        if cached is not None:
            old, new = cached.policy_object, run.empirical_policy
            if new is old or (type(new) is type(old) and new.__dict__ == old.__dict__):
                policy_text = cached.policy  # unchanged: no need to encode it again
        row = rows.flow_run_update_row(run, state_id, now, policy_text, run_text)  # type: ignore[arg-type]
        conn.execute(*sql.BIND_UPDATE_FLOW_RUN(_bookkeeping(row)))
        if policy_text is None:  # (written only if it differs from the stored one)
            conn.execute(sql.UPDATE_CHANGED_FLOW_RUN_POLICY, (row[9], row[11]))
        if cached is not None:
            del self._runs[run.id.int]  # a copy was saved: the next read decodes the row

    def _save_cached_flow_run(
        self,
        cached: _CachedFlowRun,
        written: State | None,
        current_state_id: UUID | None,
        now: datetime,
    ) -> None:
        """Save a transition that built-in rules made on the cached run itself: the new state's
        row now; the run's row now, or, inside a block, when the block commits (``_dirty``);
        then bring the cached run back to what reading its row would build."""
        run = cached.run
        values = run.__dict__
        state_row = None
        if written is not None:
            state_row = rows.state_insert_row(cached.id_text, written)
            self.conn.execute(*sql.BIND_INSERT_FLOW_RUN_STATE(state_row))
            state_id = state_row[1]
        else:
            state_id = None if current_state_id is None else str(current_state_id)
        policy = values["empirical_policy"]
        policy_changed = policy is not cached.policy_object
        waiting = cached.pending is not None
        cached.pending = (state_id, now)
        if policy_changed:
            cached.policy = None  # encoded when the row is written
            cached.policy_dirty = True
        if not self._defer:
            self._write_pending(cached)
        elif not waiting:
            self._dirty.append(cached)
        self._refresh(cached, now, written, state_row, policy_changed)

    def _refresh(
        self,
        cached: _CachedFlowRun,
        now: datetime,
        written: State | None,
        state_row: tuple[Any, ...] | None,
        policy_changed: bool,
    ) -> None:
        """Bring the cached run a transition changed in place back to what reading the row
        written for it would build (for a run whose values may not be in that form yet: see
        ``_save_cached_flow_run``); forget it where that would take parsing."""
        run = cached.run
        key = run.id.int
        state: State | None
        if written is not None:
            if state_row[6] is not None:  # type: ignore[index]
                self._forget(key)  # result data: not cached (see _immutable)
                return
            state = rows.state_saved(written, state_row)  # type: ignore[arg-type]
            if not _immutable(state):
                self._forget(key)
                return
        else:
            state = run.state
        values = rows.flow_run_values_as_saved(run, state, now)
        if values is None:
            self._forget(key)
            return
        if policy_changed:  # decoded from its JSON, as a read decodes it
            text = cached.policy or rows.flow_policy_json(run.empirical_policy)
            policy = values["empirical_policy"] = rows.decode_flow_policy(text)
            cached.policy = text
            cached.policy_object = policy
        set_fields(run, values)
        runs = self._runs
        runs[key] = runs.pop(key)  # the most recently used

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

    def read_run_inputs(self, flow_run_id: UUID, prefix: str) -> list[tuple[str, str, str | None]]:
        """(key, value, sender) of the inputs whose key starts with ``prefix``, oldest first."""
        params = (str(flow_run_id), len(prefix), prefix)
        found = self.conn.execute(sql.SELECT_RUN_INPUTS_BY_PREFIX, params).fetchall()
        return [(key, value, sender) for key, value, sender in found]

    def delete_run_input(self, flow_run_id: UUID, key: str) -> bool:
        """Delete one key; False if there was none."""
        cursor = self.conn.execute(sql.DELETE_RUN_INPUT, (str(flow_run_id), key))
        return cursor.rowcount > 0

    # -- workers: due runs, lateness, heartbeats ------------------------------------------

    def due_flow_run_ids(self, now: datetime, limit: int) -> list[UUID]:
        """SCHEDULED flow runs whose scheduled time has come, oldest first."""
        cursor = self._flushed().execute(sql.SELECT_DUE_FLOW_RUN_IDS, (rows.encode_time(now), limit))
        return [UUID(row[0]) for row in cursor]

    def late_candidate_ids(self, cutoff: datetime) -> list[UUID]:
        """Flow runs still named ``Scheduled`` whose scheduled time is at or before ``cutoff``."""
        cursor = self._flushed().execute(sql.SELECT_LATE_CANDIDATE_IDS, (rows.encode_time(cutoff),))
        return [UUID(row[0]) for row in cursor]

    def active_flow_run_liveness(self) -> list[tuple[UUID, datetime, float | None]]:
        """PENDING/RUNNING flow runs with their last sign of life (heartbeat, else state time)
        and their own heartbeat timeout, the longest silent first."""
        cursor = self._flushed().execute(sql.SELECT_SILENT_FLOW_RUNS)
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

    def server_time(self) -> None:
        """None: an embedded database has no clock but the process's."""
        return None

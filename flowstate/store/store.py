"""The plain SQLite store: its connection, transactions, locking and WAL; no runs kept.

It knows SQL and nothing of rules. Every public method runs inside
:meth:`SqliteStore.transaction` (opened by the caller or implicitly), and every ``sqlite3``
error leaves it as a :class:`~flowstate.DatabaseError`. The reads and writes it shares with
PostgreSQL are in :class:`~flowstate.store.row_store.RowStore`; the store the orchestrator
opens is this one with the run cache over it (:class:`~flowstate.store.run_cache.Store`).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from typing import Any
from uuid import UUID

from flowstate.errors import DatabaseError
from flowstate.runs import FlowRun
from flowstate.store import rows, sql
from flowstate.store._sqlite_errors import describe, is_busy, translate_sqlite_errors
from flowstate.store.base import RunKind
from flowstate.store.connection import Synchronous, configure, connect
from flowstate.store.lock_wait import Wait, wait_for_lock
from flowstate.store.schema import ensure_schema
from flowstate.store.row_store import RowStore
from flowstate.store.wal import CHECK_EVERY, IDLE_RETRY, limit_wal, shrink_wal, wal_path
from flowstate.store.write_queue import WriteQueue

__all__ = ["SqliteStore"]

_get_ident = threading.get_ident

_BEGIN_WRITE = "BEGIN IMMEDIATE"
_DOOMED = (
    "a call inside this transaction failed with a database error after it had written, so the "
    "transaction cannot commit; leave its block, which rolls it back"
)



def _without_payload(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A new flow run's row for INSERT_FLOW_RUN, its payload columns left empty (the values go
    to flow_run_payload: see sql.PAYLOAD_COLUMNS)."""
    return (*row[:3], "", "", *row[5:14], "", *row[15:])


def _bookkeeping(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A flow_run_update_row for UPDATE_FLOW_RUN: without the policy (position 9)."""
    return row[:9] + row[10:]


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


class SqliteStore(RowStore[sqlite3.Connection]):
    """One SQLite database, opened, checked and migrated on construction."""

    _sql = sql

    def __init__(
        self, path: str, *, busy_timeout: float = 30.0, synchronous: Synchronous = "NORMAL"
    ) -> None:
        self._init_lifecycle(path)
        self._doomed = False  # a call failed halfway inside the open block (see begin_call)
        self._call_token = 0  # the running call's token when it has no savepoint (negative)
        self._call_savepoint = False  # SAVEPOINT fs_call is open (see protect_call)
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
        self._execute = conn.execute
        # writers of a database file wait for their turn in the kernel (see write_queue)
        self._queue = None if self._wal is None else WriteQueue(self._wal[: -len("-wal")])
        # BEGIN, COMMIT and PRAGMA data_version go through one cursor: conn.execute would
        # make (and drop) a cursor for each, some 1.2k instructions a statement; so do the
        # writes whose cursor is done with at once (RowStore._write)
        self._control = conn.cursor()
        self._write = self._control.execute

    # -- transactions (conn, close, in_transaction, transaction: lifecycle.ConnectionLifecycle)

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
                else:
                    if self._doomed:
                        raise DatabaseError(_DOOMED)
                    self._keep_call()
                    self._before_savepoint()
                    self.conn.execute(f"SAVEPOINT fs_{depth}")
                self._call_token = 0
            except sqlite3.Error as exc:
                raise describe(exc, self.path) from exc
            # the owner first: another thread that sees the depth above 0 sees the owner too
            # (else, the last owner, it would take this transaction for its own block)
            self._owner = _get_ident()
            self._depth = depth + 1
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
        """Run ``begin``. A write first takes its turn in the
        writers' queue (see ``write_queue``); while another connection holds SQLite's lock,
        wait for it in short slices (see ``lock_wait``); both within ``busy_timeout``."""
        conn = self.conn
        if conn.in_transaction:  # left open by an interrupt: never acknowledged, undo it
            conn.execute("ROLLBACK")
        wait = None
        queue = self._queue
        if queue is not None and begin == _BEGIN_WRITE:
            wait = queue.enter(self._busy_timeout, self.path)
        try:
            self._control.execute(begin)
            return
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                raise
        self._abandon()

        def attempt() -> bool:
            try:
                self._control.execute(begin)
                return True
            except sqlite3.OperationalError as exc:
                if not is_busy(exc):
                    raise
            self._abandon()
            return False

        wait_for_lock(attempt, wait if wait is not None else Wait(self.path, self._busy_timeout))

    def _before_savepoint(self) -> None:
        """Write what a layer over this store holds back (a rollback to the savepoint must not
        lose it); nothing here."""

    def _abandon(self) -> None:
        """Roll back the transaction a failed or interrupted BEGIN may have left open."""
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
            return self._open("BEGIN")
        return self.begin_call()

    def begin_call(self) -> int:
        """``begin`` for one API call. Inside this thread's transaction it opens no savepoint
        (two statements fewer per call): the call's checks all come before its first write, so
        only a database error (or an interrupt) can stop it halfway. If one does after the call
        changed rows, the enclosing block is doomed: further calls in it raise, and it rolls
        back when it ends (see ``end``). Writes made while deciding, after which a rule may
        raise or the call refuse, come after ``protect_call``. Returns the token for
        ``end_call``: negative there."""
        if self._depth == 0 or self._owner != _get_ident():
            return self.begin()
        # this thread's block holds the lock until it ends: nothing to acquire
        if self._doomed:
            raise DatabaseError(_DOOMED)
        if self._call_savepoint:
            self._keep_call()
        token = self._call_token = ~self._changes()
        return token

    def protect_call(self) -> None:
        """Inside a block, before the running call first writes while it decides: open a
        savepoint for it (``fs_call``), so that its failing undoes it alone (``end_call``).
        Nothing when the call has a transaction of its own, has a savepoint already, or has
        written before (a failure then dooms the block, as ``begin_call`` says)."""
        token = self._call_token
        if token >= 0 or self._call_savepoint or self._changes() != ~token:
            return
        self._before_savepoint()
        try:
            self.conn.execute("SAVEPOINT fs_call")
        except sqlite3.Error as exc:
            raise describe(exc, self.path) from exc
        self._call_savepoint = True

    def _keep_call(self) -> None:
        """Release the savepoint of a call that succeeded (its changes stay in the block)."""
        if self._call_savepoint:
            self._call_savepoint = False
            self.conn.execute("RELEASE SAVEPOINT fs_call")

    def _undo_call(self) -> bool:
        """Roll the failed call back to its savepoint; False if that could not be done."""
        self._call_savepoint = False
        conn = self._conn
        if conn is None or not conn.in_transaction:
            return False
        try:
            self._rollback(conn, 1, "fs_call")
        except sqlite3.Error:
            return False
        return True

    def _changes(self) -> int:
        """What tells whether a call inside a block changed anything (``end_call``): the rows
        this connection changed."""
        return self.conn.total_changes

    def end_call(self, token: int, exc: BaseException | None) -> None:
        """End a ``begin_call``: nothing to do for a call that succeeded inside a block (a
        negative token), so such a call need not come here at all."""
        if token >= 0:
            self.end(token, exc)
            return
        if exc is None:
            return
        if not (self._call_savepoint and self._undo_call()) and self._halfway(token):
            self._doomed = True
        if isinstance(exc, sqlite3.Error):
            raise describe(exc, self.path) from exc

    def _halfway(self, token: int) -> bool:
        """Whether the call inside a block that ``begin_call`` gave ``token`` and that failed
        may have changed something (then its block cannot commit)."""
        conn = self._conn
        return conn is None or not conn.in_transaction or self._changes() != ~token

    def end(self, depth: int, exc: BaseException | None) -> None:
        """Commit (or release the savepoint); on ``exc``, roll back and re-raise it translated."""
        try:
            self._depth = depth
            self._call_token = 0
            self._call_savepoint = False  # (ended with the savepoint or transaction around it)
            if self._doomed:  # rolling this block back undoes the half-done call inside it
                self._doomed = False
                if exc is None:
                    self._roll_back(depth)
                    raise DatabaseError(f"the transaction was rolled back: {_DOOMED}")
            if exc is None:
                self._commit(depth)
                return
            translated = describe(exc, self.path) if isinstance(exc, sqlite3.Error) else None
            self._roll_back(depth)
            if translated is not None:
                raise translated from exc
        finally:
            if depth == 0 and self._queue is not None:
                self._queue.leave()
            self._lock.release()

    def _commit(self, depth: int) -> None:
        """COMMIT (and keep the WAL small: see store.wal), or release the savepoint of
        ``depth``; if that fails, roll back and raise the error translated."""
        try:
            if depth == 0:
                self._control.execute("COMMIT")
                self._commits += 1
                if self._shrink_pending or not self._commits % CHECK_EVERY:
                    self._bound_wal()
            else:
                self.conn.execute(f"RELEASE SAVEPOINT fs_{depth}")
        except sqlite3.Error as error:
            self._roll_back(depth)
            raise describe(error, self.path) from error

    def _roll_back(self, depth: int) -> None:
        """Roll back the transaction, or to the savepoint of ``depth`` (none if closed)."""
        conn = self._conn
        if conn is not None:
            self._rollback(conn, depth, f"fs_{depth}")

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
            self._execute = self._write = self._closed

    # -- runs: what differs from PostgreSQL (the rest: RowStore) ------------------------

    def _closed(self, statement: str, params: Any = ()) -> Any:
        """``_execute`` once the store is closed."""
        raise DatabaseError(f"the database {self.path} is closed")

    def _insert_flow_run_row(self, run: FlowRun) -> tuple[Any, ...] | None:
        """Insert a new flow run (its payload and policy in their own tables: see
        ``sql.PAYLOAD_COLUMNS``); returns the row written, None if the id is taken."""
        row = rows.flow_run_insert_row(run)
        execute = self._execute
        if execute(sql.INSERT_FLOW_RUN_IF_NEW, _without_payload(row)).rowcount == 0:
            return None
        execute(sql.INSERT_FLOW_RUN_PAYLOAD, (row[0], row[3], row[4]))
        execute(sql.INSERT_FLOW_RUN_POLICY, (row[0], row[14]))
        return row

    def insert_flow_run(self, run: FlowRun) -> bool:
        """Insert a new flow run; False if its id is taken (nothing written)."""
        return self._insert_flow_run_row(run) is not None

    def _run_row(self, kind: RunKind, run_id: UUID) -> Any:
        """The row of a run with its current state, or None."""
        select = sql.SELECT_FLOW_RUN if kind == "flow" else sql.SELECT_TASK_RUN
        return self._execute(select, (str(run_id),)).fetchone()

    def _update_flow_run(self, row: tuple[Any, ...], policy: bool = True) -> None:
        """UPDATE_FLOW_RUN for ``row`` (a ``flow_run_update_row``); its policy too, where it
        differs from the stored one, unless ``policy`` is False (known unchanged)."""
        self._execute(sql.UPDATE_FLOW_RUN, _bookkeeping(row))
        if policy:
            self._execute(sql.UPDATE_CHANGED_FLOW_RUN_POLICY, (row[9], row[11]))

    def server_time(self) -> None:
        """None: an embedded database has no clock but the process's."""
        return None

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
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import psycopg

from flowstate.errors import DatabaseError, FlowstateError
from flowstate.runs import FlowRun
from flowstate.store import rows
from flowstate.store.base import RunKind
from flowstate.store.connection import Synchronous, check_busy_timeout
from flowstate.store.postgres import sql
from flowstate.store.postgres.connection import connect
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
from flowstate.store.row_store import RowStore

__all__ = ["PostgresStore"]

_get_ident = threading.get_ident

BEGIN = "BEGIN ISOLATION LEVEL READ COMMITTED"
"""Whatever the server's default: row locks serialise transitions, and each statement sees what
was committed before it (a stricter level would turn a wait for a run's lock into an error)."""


class PostgresStore(RowStore[psycopg.Connection[Any]]):
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

    _sql = sql

    def __init__(
        self,
        url: str,
        *,
        busy_timeout: float = 30.0,
        synchronous: Synchronous = "NORMAL",
        call_timeout: float | None = None,
    ) -> None:
        self._init_lifecycle(masked(url))
        self._reading = False  # the open transaction is a read call's: it locks no row
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
        try:
            with watchdog:
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

    # -- transactions (conn, in_transaction, transaction: lifecycle.ConnectionLifecycle) ------

    def begin(self) -> int:
        """Open a transaction (or a savepoint inside one); returns the depth to pass to end.

        ``BEGIN`` at READ COMMITTED: reads of a run inside lock its row (see
        :meth:`_run_row`), and any ``psycopg.Error`` raised inside the block leaves as a
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
                    try:
                        with watchdog:
                            conn.execute(BEGIN)
                    except psycopg.OperationalError:
                        if not conn.broken or watchdog.fired:
                            raise
                        conn = self._reconnect(conn)  # it broke while idle
                        with watchdog:
                            conn.execute(BEGIN)
                else:
                    with watchdog:
                        self.conn.execute(f"SAVEPOINT fs_{depth}")
            except psycopg.Error as exc:
                raise self._describe(exc) from exc
        except BaseException:
            lock.release()
            raise
        self._owner = _get_ident()  # (first: see SqliteStore._open)
        self._depth = depth + 1
        return depth

    def begin_read(self) -> int:
        """``begin_call`` for a call that only reads: outside this thread's block, a
        transaction whose reads of a run lock no row (see :meth:`_run_row`), so it never waits
        for another connection's transaction, nor makes one wait; inside it, the block's."""
        depth = self.begin_call()
        if depth == 0:
            self._reading = True
        return depth

    def end(self, depth: int, exc: BaseException | None) -> None:
        """Commit (or release the savepoint); on ``exc``, roll back and re-raise it translated."""
        conn = self._conn
        if depth == 0:
            self._reading = False
        try:
            self._depth = depth
            if exc is None:
                try:
                    with self._watchdog:
                        self.conn.execute(
                            "COMMIT" if depth == 0 else f"RELEASE SAVEPOINT fs_{depth}"
                        )
                except psycopg.Error as error:
                    described = self._describe(error)
                    self._rollback(conn, depth)
                    raise described from error
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
        # A connection that breaks meanwhile is rolled back by the server; the next begin
        # reconnects.
        with suppress(psycopg.OperationalError), self._watchdog:
            if depth == 0:
                conn.execute("ROLLBACK")
            else:
                conn.execute(f"ROLLBACK TO SAVEPOINT fs_{depth}")
                conn.execute(f"RELEASE SAVEPOINT fs_{depth}")

    def _execute(self, statement: str, params: Any = None) -> psycopg.Cursor[Any]:
        try:
            with self._watchdog:
                return self.conn.execute(statement, params)
        except psycopg.Error as exc:
            raise self._describe(exc) from exc

    _write = _execute  # (each statement its own cursor, as psycopg gives)

    # -- runs ------------------------------------------------------------------------------

    def insert_flow_run(self, run: FlowRun) -> bool:
        """Insert a new flow run; False if its id is taken (nothing written)."""
        row = rows.flow_run_insert_row(run)
        return self._execute(sql.INSERT_FLOW_RUN_IF_NEW, row).rowcount > 0

    def _run_row(self, kind: RunKind, run_id: UUID) -> Any:
        """The row of a run with its current state, or None; inside a transaction (but a read
        call's), the run's row stays locked until the transaction ends."""
        flow = kind == "flow"
        select = sql.SELECT_FLOW_RUN if flow else sql.SELECT_TASK_RUN
        key = (str(run_id),)
        if self._reading or not self.in_transaction:
            return self._execute(select, key).fetchone()
        locking = sql.SELECT_FLOW_RUN_FOR_UPDATE if flow else sql.SELECT_TASK_RUN_FOR_UPDATE
        row = self._execute(locking, key).fetchone()
        if row is not None and row[sql.RUN_STATE_ID] != row[sql.STATE_ID]:
            # The run changed while we waited for its lock, and its new state is not in this
            # statement's snapshot (see sql.SELECT_FLOW_RUN_FOR_UPDATE): read it again.
            row = self._execute(select, key).fetchone()
        return row

    def _update_flow_run(self, row: tuple[Any, ...]) -> None:
        self._execute(sql.UPDATE_FLOW_RUN, row)

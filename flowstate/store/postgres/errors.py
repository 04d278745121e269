"""The one boundary where ``psycopg`` errors become flowstate errors.

No psycopg exception leaves the public API: each is described as a
:class:`~flowstate.DatabaseError` (:class:`~flowstate.DatabaseBusy` for a lock that was not
granted within ``busy_timeout``, or a deadlock), with the original chained as ``__cause__``.
"""

from __future__ import annotations

import psycopg
from psycopg import errors as pg

from flowstate.errors import DatabaseBusy, DatabaseError, FlowstateError

__all__ = ["describe"]

_BUSY = (pg.LockNotAvailable, pg.DeadlockDetected, pg.SerializationFailure)


def describe(exc: BaseException, url: str) -> FlowstateError:
    """A flowstate error that says what went wrong with the database at ``url`` and what to do.

    ``url`` must already have its password masked.
    """
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, _BUSY):
        return DatabaseBusy(
            f"{url}: a lock stayed held by another connection for longer than the busy timeout, "
            f"or two transactions waited for each other (postgresql: {text}); nothing was "
            "written: retry, or raise busy_timeout"
        )
    if isinstance(exc, pg.ReadOnlySqlTransaction):
        return DatabaseError(
            f"{url} is read-only (postgresql: {text}); connect to the primary server, or to a "
            "writable database"
        )
    if isinstance(exc, pg.InsufficientPrivilege):
        return DatabaseError(
            f"{url}: permission denied (postgresql: {text}); grant the user the rights to create "
            "and write tables in the schema, or use another user"
        )
    if isinstance(exc, pg.UndefinedTable):
        return DatabaseError(
            f"{url}: a flowstate table is missing (postgresql: {text}); was the schema dropped "
            "while flowstate was using it? Reopen the orchestrator to recreate it"
        )
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return DatabaseError(
            f"cannot use the PostgreSQL database {url}: the connection failed or was lost "
            f"(postgresql: {text}); check that the server is running and reachable and that the "
            "URL, user and database are right; nothing of the current call was committed "
            "unless it failed while committing"
        )
    sqlstate = getattr(exc, "sqlstate", None)
    code = f" [{sqlstate}]" if sqlstate else ""
    return DatabaseError(f"database error on {url}{code}: {text}")

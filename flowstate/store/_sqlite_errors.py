"""The one boundary where ``sqlite3`` errors become :class:`flowstate.DatabaseError`.

An error is recognised by its SQLite result code (``sqlite3.Error.sqlite_errorname``, e.g.
``SQLITE_BUSY`` or the extended ``SQLITE_READONLY_DBMOVED``), never by its message text.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from flowstate.errors import DatabaseBusy, DatabaseError

__all__ = ["busy_error", "describe", "is_busy", "primary_code", "translate_sqlite_errors"]

_BUSY = frozenset({"BUSY", "LOCKED"})

_ADVICE = {
    "NOTADB": "{path} is not a SQLite database (sqlite3: {text}); pass the path of a flowstate "
    "database, or a new path to create one",
    "CORRUPT": "{path} is corrupt (sqlite3: {text}); restore it from a backup, or try "
    "`sqlite3 PATH .recover` on a copy",
    "READONLY": "{path} is read-only (sqlite3: {text}); open a writable copy, or fix the "
    "file's permissions",
    "CANTOPEN": "cannot open {path} (sqlite3: {text}); check that its folder exists, that you "
    "may read the file and its folder, and that the path is a file, not a directory",
    "TOOBIG": "a value is larger than {path} accepts (sqlite3: {text}); nothing was written; "
    "store a smaller value, e.g. a reference to the data instead of the data",
}


def primary_code(exc: BaseException) -> str | None:
    """The primary SQLite result code of ``exc`` without its prefix (``SQLITE_BUSY_SNAPSHOT``:
    ``"BUSY"``), or None for an error SQLite did not report (e.g. a closed connection)."""
    name = getattr(exc, "sqlite_errorname", None)
    if not name:
        return None
    return name.split("_")[1]


def is_busy(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLITE_BUSY or SQLITE_LOCKED: another connection holds the lock."""
    return primary_code(exc) in _BUSY


def busy_error() -> sqlite3.OperationalError:
    """The error a lock wait that ran out of time raises: SQLite's own SQLITE_BUSY."""
    exc = sqlite3.OperationalError("database is locked")
    exc.sqlite_errorname = "SQLITE_BUSY"
    exc.sqlite_errorcode = sqlite3.SQLITE_BUSY
    return exc


def describe(exc: sqlite3.Error, path: str) -> DatabaseError:
    """A flowstate error that says what went wrong with the database at ``path`` and what to do."""
    text = str(exc)
    code = primary_code(exc)
    if code in _BUSY:
        return DatabaseBusy(
            f"{path} stayed locked by another connection for longer than the busy timeout "
            f"(sqlite3: {text}); retry, or raise busy_timeout"
        )
    advice = _ADVICE.get(code or "")
    if advice is not None:
        return DatabaseError(advice.format(path=path, text=text))
    return DatabaseError(f"database error on {path}: {text}")


@contextmanager
def translate_sqlite_errors(path: str) -> Iterator[None]:
    """Re-raise any ``sqlite3.Error`` inside the block as a flowstate ``DatabaseError``."""
    try:
        yield
    except sqlite3.Error as exc:
        raise describe(exc, path) from exc

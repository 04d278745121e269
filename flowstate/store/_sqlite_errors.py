"""The one boundary where ``sqlite3`` errors become :class:`flowstate.DatabaseError`."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from flowstate.errors import DatabaseBusy, DatabaseError

__all__ = ["translate_sqlite_errors"]


def describe(exc: sqlite3.Error, path: str) -> DatabaseError:
    """A flowstate error that says what went wrong with the database at ``path`` and what to do."""
    text = str(exc)
    lowered = text.lower()
    if "file is not a database" in lowered or "not a database" in lowered:
        return DatabaseError(
            f"{path} is not a SQLite database (sqlite3: {text}); pass the path of a flowstate "
            "database, or a new path to create one"
        )
    if "malformed" in lowered or "corrupt" in lowered:
        return DatabaseError(
            f"{path} is corrupt (sqlite3: {text}); restore it from a backup, or try "
            "`sqlite3 PATH .recover` on a copy"
        )
    if "readonly" in lowered or "read-only" in lowered:
        return DatabaseError(
            f"{path} is read-only (sqlite3: {text}); open a writable copy, or fix the "
            "file's permissions"
        )
    if "locked" in lowered or "busy" in lowered:
        return DatabaseBusy(
            f"{path} stayed locked by another connection for longer than the busy timeout "
            f"(sqlite3: {text}); retry, or raise busy_timeout"
        )
    if "unable to open" in lowered:
        return DatabaseError(
            f"cannot open {path} (sqlite3: {text}); check that its folder exists and that the "
            "path is a file, not a directory"
        )
    if "too big" in lowered:
        return DatabaseError(
            f"a value is larger than {path} accepts (sqlite3: {text}); nothing was written; "
            "store a smaller value, e.g. a reference to the data instead of the data"
        )
    return DatabaseError(f"database error on {path}: {text}")


@contextmanager
def translate_sqlite_errors(path: str) -> Iterator[None]:
    """Re-raise any ``sqlite3.Error`` inside the block as a flowstate ``DatabaseError``."""
    try:
        yield
    except sqlite3.Error as exc:
        raise describe(exc, path) from exc

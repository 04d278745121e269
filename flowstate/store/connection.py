"""Opening a SQLite connection with flowstate's settings."""

from __future__ import annotations

import os
import sqlite3
from typing import Any, Literal

from flowstate.errors import DatabaseError, InvalidState

__all__ = ["Synchronous", "connect", "is_memory"]

Synchronous = Literal["OFF", "NORMAL", "FULL", "EXTRA"]
MAX_BUSY_TIMEOUT = 2_000_000  # seconds; SQLite takes the timeout as a 32-bit count of milliseconds


def is_memory(path: str) -> bool:
    """Whether ``path`` names an in-memory database."""
    return path == ":memory:" or path.startswith("file::memory:") or "mode=memory" in path


def check_busy_timeout(busy_timeout: Any) -> float:
    """``busy_timeout`` as seconds, or InvalidState (the bounds both backends accept)."""
    if (
        not isinstance(busy_timeout, int | float)
        or isinstance(busy_timeout, bool)
        or not 0 <= busy_timeout <= MAX_BUSY_TIMEOUT
    ):
        raise InvalidState(
            f"busy_timeout={busy_timeout!r}; expected seconds from 0 to {MAX_BUSY_TIMEOUT}"
        )
    return float(busy_timeout)


def connect(path: str, *, busy_timeout: float) -> sqlite3.Connection:
    """A connection in autocommit mode (flowstate issues BEGIN itself), shareable across threads.

    Nothing is written here: a file that is not a database is only detected by the first query.
    """
    if "\x00" in path:
        raise InvalidState(f"database path {path!r} contains a NUL byte")
    check_busy_timeout(busy_timeout)
    if not path.startswith("file:") and not is_memory(path):
        if os.path.isdir(path):
            raise DatabaseError(f"{path} is a directory; pass the path of a database file")
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise DatabaseError(
                f"cannot open {path}: the folder {folder} does not exist; create it first"
            )
    try:
        conn = sqlite3.connect(
            path,
            isolation_level=None,
            check_same_thread=False,
            timeout=busy_timeout,
            uri=path.startswith("file:"),
            cached_statements=256,
        )
    except sqlite3.Error as exc:
        from flowstate.store._sqlite_errors import describe

        raise describe(exc, path) from exc
    return conn


def configure(conn: sqlite3.Connection, path: str, *, synchronous: Synchronous) -> None:
    """Per-connection settings: WAL for files, the chosen sync mode, foreign keys on."""
    if not is_memory(path):
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        if str(mode).lower() != "wal":
            conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")  # a Literal, never user text
    conn.execute("PRAGMA foreign_keys=ON")

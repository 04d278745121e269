"""Opening a SQLite connection with flowstate's settings."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any, Literal

from flowstate.errors import DatabaseError, InvalidState

__all__ = ["NEW_FILE_MODE", "Synchronous", "connect", "is_memory", "read_only_reason"]

Synchronous = Literal["OFF", "NORMAL", "FULL", "EXTRA"]
NEW_FILE_MODE = 0o600
"""The mode of a database file flowstate creates: readable and writable by its owner only."""
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


def read_only_reason(path: str) -> str | None:
    """Why the database file at ``path`` is opened read-only, or None to open it for writing.

    An existing file is opened read-only when this user may not write it, or may not write its
    folder (where SQLite creates the ``-wal`` and ``-shm`` files it writes through), unless
    those two files are there already and writable. A new file, ``:memory:`` and ``file:`` URIs
    (which say their own mode) are opened as given.
    """
    if path.startswith("file:") or is_memory(path) or not os.path.isfile(path):
        return None
    if not os.access(path, os.W_OK):
        return f"you may not write to {path}"
    folder = os.path.dirname(os.path.abspath(path))
    if not os.access(folder, os.W_OK | os.X_OK) and not all(
        os.access(path + suffix, os.W_OK) for suffix in ("-wal", "-shm")
    ):
        return f"you may not write to its folder {folder}"
    return None


def read_only_uri(path: str) -> str:
    """The URI that opens ``path`` read-only without writing anything beside it.

    With a ``-wal`` file present (a writer may be at work) SQLite reads through it and its
    ``-shm``; without one the database file holds every committed transition, and it is opened
    ``immutable``, so SQLite needs no ``-shm`` file (which a read-only folder could not hold).
    """
    uri = Path(os.path.abspath(path)).as_uri() + "?mode=ro"
    return uri if os.path.exists(path + "-wal") else uri + "&immutable=1"


def _create_private(path: str) -> None:
    """Create the new database file ``path`` readable and writable by its owner only (SQLite
    gives its ``-wal`` and ``-shm`` files the same mode); an existing file is left alone."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, NEW_FILE_MODE)
    except FileExistsError:
        return  # another process made it first
    except OSError as exc:
        folder = os.path.dirname(os.path.abspath(path))
        if isinstance(exc, PermissionError):
            raise DatabaseError(
                f"cannot create {path}: permission denied: you may not create files in the "
                f"folder {folder}; pass a path in a folder you may write"
            ) from None
        raise DatabaseError(f"cannot create {path} ({exc.strerror})") from None
    os.close(fd)


def connect(path: str, *, busy_timeout: float) -> sqlite3.Connection:
    """A connection in autocommit mode (flowstate issues BEGIN itself), shareable across threads.

    A new database file is created with mode 0600 (:data:`NEW_FILE_MODE`); an existing one this
    user may not write is opened read-only (:func:`read_only_reason`). Nothing else is written
    here: a file that is not a database is only detected by the first query.
    """
    if "\x00" in path:
        raise InvalidState(f"database path {path!r} contains a NUL byte")
    check_busy_timeout(busy_timeout)
    target = path
    if not path.startswith("file:") and not is_memory(path):
        if os.path.isdir(path):
            raise DatabaseError(f"{path} is a directory; pass the path of a database file")
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            advice = "create it first"
            if path.startswith("~"):  # quoted in a shell, or read from an env file
                advice = "a leading ~ is not expanded here: give the full path of the file"
            raise DatabaseError(f"cannot open {path}: the folder {folder} does not exist; {advice}")
        if not os.path.exists(path):
            _create_private(path)
        elif read_only_reason(path) is not None:
            target = read_only_uri(path)
    try:
        conn = sqlite3.connect(
            target,
            isolation_level=None,
            check_same_thread=False,
            timeout=busy_timeout,
            uri=target.startswith("file:"),
            cached_statements=256,
        )
    except sqlite3.Error as exc:
        from flowstate.store._sqlite_errors import describe

        raise describe(exc, path) from exc
    return conn


def configure(conn: sqlite3.Connection, path: str, *, synchronous: Synchronous) -> None:
    """Per-connection settings: WAL for files (not switched on a file opened read-only), the
    chosen sync mode, foreign keys on."""
    if not is_memory(path) and read_only_reason(path) is None:
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        if str(mode).lower() != "wal":
            conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")  # a Literal, never user text
    conn.execute("PRAGMA foreign_keys=ON")

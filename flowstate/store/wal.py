"""Keeping SQLite's write-ahead log small.

SQLite checkpoints the WAL into the database as it goes, but it only starts writing the log from
its beginning again when no reader still uses it, which under steady traffic from several
processes rarely happens: the file then grows without bound, and it keeps its size until the
last connection closes. flowstate asks SQLite to cut the file back to
:data:`JOURNAL_SIZE_LIMIT` whenever it restarts the log, and every :data:`CHECK_EVERY` commits
of a connection looks at the file's size: past :data:`WAL_BOUND` bytes it runs a ``TRUNCATE``
checkpoint, which copies what is left into the database and empties the log. It gives up at once
if another connection holds the write lock or still reads the log; then it tries again after each
commit, and :data:`IDLE_RETRY` seconds after the last one (the writer may have gone idle). A
connection also tries one when it closes.
"""

from __future__ import annotations

import os
import sqlite3

__all__ = [
    "CHECK_EVERY",
    "IDLE_RETRY",
    "JOURNAL_SIZE_LIMIT",
    "WAL_BOUND",
    "limit_wal",
    "shrink_wal",
    "wal_path",
]

JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024
"""Bytes the WAL file is cut back to when SQLite restarts it."""

WAL_BOUND = 16 * 1024 * 1024
"""Bytes of WAL past which a connection checkpoints with TRUNCATE after a commit."""

CHECK_EVERY = 32
"""Commits of one connection between two looks at the WAL file's size."""

IDLE_RETRY = 0.25
"""Seconds after which a checkpoint that could not run at a commit is tried again."""


def wal_path(conn: sqlite3.Connection) -> str | None:
    """The WAL file of the connection's database; None for a database in memory.

    SQLite gives the file's name as the bytes the file system has: read as a blob and decoded
    as Python decodes file names, a name that is not UTF-8 (which Linux allows) works too."""
    name = conn.execute(
        "SELECT CAST(file AS BLOB) FROM pragma_database_list WHERE name = 'main'"
    ).fetchone()[0]
    return f"{os.fsdecode(name)}-wal" if name else None


def limit_wal(conn: sqlite3.Connection) -> None:
    """Have SQLite cut the WAL file back to :data:`JOURNAL_SIZE_LIMIT` when it restarts it."""
    conn.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT:d}")


def shrink_wal(conn: sqlite3.Connection, wal: str, bound: int = WAL_BOUND) -> bool:
    """Checkpoint with TRUNCATE if the WAL file is larger than ``bound``; never waits, never
    raises. False if the file is still larger (the checkpoint could not finish now)."""
    try:
        if os.stat(wal).st_size <= bound:
            return True
    except OSError:
        return True  # no WAL file (yet, or any more)
    try:
        busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()[0][0]
    except sqlite3.Error:
        return False
    return not busy

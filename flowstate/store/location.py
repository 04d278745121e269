"""Which database a ``database`` argument names, decided before anything is opened.

- ``None``: the default database, ``$FLOWSTATE_DATABASE`` if set, else
  ``~/.flowstate/flowstate.db`` (its folder created so that only its owner may enter it);
- ``":memory:"``: a throwaway database in memory;
- a path, or a ``file:`` URI (SQLite's own form);
- a ``sqlite://`` URL, read as SQLAlchemy reads it: ``sqlite:///runs.db`` is ``runs.db``
  (relative), ``sqlite:////var/runs.db`` is ``/var/runs.db``, ``sqlite://`` and
  ``sqlite:///:memory:`` are ``:memory:``;
- a ``postgresql://`` URL, left to the PostgreSQL store.

An empty string (what an unset shell variable gives) is refused: it would otherwise open a
throwaway database, and every run written to it would be lost when the program ends.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from flowstate.errors import DatabaseError, InvalidState
from flowstate.store.postgres.url import is_postgres_url, masked

__all__ = ["DEFAULT_FOLDER_MODE", "database_location", "default_database_path", "sqlite_url_path"]

DEFAULT_FOLDER_MODE = 0o700
"""The mode of the default database's folder when flowstate creates it: its owner's only."""

_ASK = (
    "pass ':memory:' for a throwaway database in memory, a file path, or leave it out (None) "
    "for the default database (~/.flowstate/flowstate.db)"
)
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")


def database_location(database: Any) -> str:
    """What the stores open for ``database``: a SQLite path (or ``:memory:``, or a ``file:``
    URI) or a PostgreSQL URL; InvalidState for anything that names no database."""
    if database is None:
        return default_database_path()
    if isinstance(database, str | os.PathLike):
        path = os.fspath(database)
        if isinstance(path, str):
            if not path.strip():
                raise InvalidState(f"database={path!r} names no database; {_ASK}")
            if is_postgres_url(path):
                return path
            return sqlite_url_path(path)
    raise InvalidState(
        f"database={database!r}; expected a path (str or os.PathLike), ':memory:', a "
        "sqlite:/// or postgresql:// URL, or None"
    )


def sqlite_url_path(text: str) -> str:
    """The SQLite path a ``sqlite://`` URL names (SQLAlchemy's reading); any other text that
    is not a URL is returned unchanged. Other URL schemes are InvalidState."""
    match = _URL.match(text)
    if match is None:
        if text[:7].lower() == "sqlite:":
            raise InvalidState(
                f"database={text!r} is neither a path nor a sqlite URL; write "
                "sqlite:///relative/path.db, sqlite:////absolute/path.db, or the plain path"
            )
        return text
    scheme = match.group(1).lower()
    shown = masked(text)  # (a URL of any scheme may hold a password: never show it)
    if scheme not in ("sqlite", "sqlite+pysqlite"):
        raise InvalidState(
            f"database={shown!r}: flowstate opens SQLite files and PostgreSQL servers, not "
            f"{scheme}://; pass a path, a sqlite:/// or postgresql:// URL, or ':memory:'"
        )
    rest = text[match.end():]
    if not rest:
        return ":memory:"  # sqlite:// is SQLAlchemy's in-memory database
    if not rest.startswith("/"):
        raise InvalidState(
            f"database={shown!r}: a sqlite:// URL has no host; write sqlite:///relative/path.db "
            "or sqlite:////absolute/path.db (three or four slashes)"
        )
    if "?" in rest:
        raise InvalidState(
            f"database={shown!r}: flowstate takes no options in a sqlite:// URL; pass the path "
            "alone (or a SQLite file: URI)"
        )
    path = unquote(rest[1:])
    if not path:
        return ":memory:"  # sqlite:/// with no path: SQLAlchemy's in-memory database too
    return path


def default_database_path() -> str:
    """``$FLOWSTATE_DATABASE`` if set, else ``~/.flowstate/flowstate.db`` (its folder created
    with mode 0700 if missing; an existing folder is left as it is)."""
    env = os.environ.get("FLOWSTATE_DATABASE")
    if env is not None:
        if not env.strip():
            raise InvalidState(
                f"FLOWSTATE_DATABASE={env!r} is set but empty; unset it for the default "
                "database (~/.flowstate/flowstate.db), or set it to ':memory:' for a throwaway "
                "database or to a file path"
            )
        return database_location(env)
    folder = Path.home() / ".flowstate"
    try:
        folder.mkdir(mode=DEFAULT_FOLDER_MODE, parents=True, exist_ok=True)
    except OSError as exc:
        raise DatabaseError(
            f"cannot create the default database folder {folder} ({exc.strerror}); set "
            "FLOWSTATE_DATABASE or pass a database path"
        ) from exc
    return str(folder / "flowstate.db")

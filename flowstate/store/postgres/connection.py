"""Opening a PostgreSQL connection with flowstate's settings.

``busy_timeout`` becomes the session's ``lock_timeout`` (how long a statement waits for a row
another transaction locked; ``0`` waits 1 ms, since PostgreSQL's 0 would mean "forever").
``synchronous`` maps onto ``synchronous_commit``:

=========== =====================================================================================
``NORMAL``  the server's own setting (``on`` unless its administrator changed it): the default
``FULL``    ``on``: a commit returns once its WAL is flushed to disk on the server
``EXTRA``   the same as ``FULL``
``OFF``     ``off``: commits return before the flush; a server crash may lose the last few
            (never corrupts)
=========== =====================================================================================
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowstate.errors import DatabaseError
from flowstate.store.connection import Synchronous, check_busy_timeout

if TYPE_CHECKING:
    import psycopg

__all__ = ["CONNECT_TIMEOUT", "check_busy_timeout", "connect", "import_psycopg"]

CONNECT_TIMEOUT = 10
"""Seconds to wait for the server to answer when the URL sets no ``connect_timeout``."""

_SYNCHRONOUS_COMMIT: dict[str, str | None] = {
    "NORMAL": None,
    "FULL": "on",
    "EXTRA": "on",
    "OFF": "off",
}


def import_psycopg() -> Any:
    """The ``psycopg`` module, or a DatabaseError that says how to install it."""
    try:
        import psycopg
    except ImportError as exc:
        raise DatabaseError(
            "a postgresql:// database needs the psycopg (version 3) driver, which is not "
            "installed; run: pip install 'flowstate[postgres]'"
        ) from exc
    return psycopg


def lock_timeout_ms(busy_timeout: float) -> int:
    """``busy_timeout`` seconds as PostgreSQL's ``lock_timeout`` (at least 1 ms)."""
    return max(1, round(busy_timeout * 1000))


def connect(
    url: str, shown: str, *, busy_timeout: float, synchronous: Synchronous
) -> psycopg.Connection[Any]:
    """An autocommit connection (flowstate issues BEGIN itself) with the session settings.

    ``shown`` is the URL with its password masked, for messages.
    """
    psycopg = import_psycopg()
    from psycopg.conninfo import conninfo_to_dict

    from flowstate.store.postgres.errors import describe

    try:
        given = conninfo_to_dict(url)
    except psycopg.Error as exc:
        raise DatabaseError(
            f"{shown} is not a valid PostgreSQL URL ({' '.join(str(exc).split())}); expected "
            "postgresql://user[:password]@host[:port]/database[?param=value...]"
        ) from exc
    extra: dict[str, Any] = {}
    if "connect_timeout" not in given:
        extra["connect_timeout"] = CONNECT_TIMEOUT
    if "application_name" not in given:
        extra["application_name"] = "flowstate"
    try:
        conn = psycopg.connect(url, autocommit=True, **extra)
    except psycopg.Error as exc:
        raise describe(exc, shown) from exc
    try:
        configure(conn, busy_timeout=busy_timeout, synchronous=synchronous)
    except psycopg.Error as exc:
        conn.close()
        raise describe(exc, shown) from exc
    return conn


def configure(
    conn: psycopg.Connection[Any], *, busy_timeout: float, synchronous: Synchronous
) -> None:
    """Session settings: lock_timeout from busy_timeout, synchronous_commit, UTC, UTF-8 text
    (which the NUL-safe text adapters of :mod:`flowstate.store.postgres.text` then use)."""
    conn.execute(
        "SELECT set_config('lock_timeout', %s, false), set_config('TimeZone', 'UTC', false), "
        "set_config('client_encoding', 'UTF8', false)",
        (f"{lock_timeout_ms(busy_timeout)}ms",),
    )
    from flowstate.store.postgres.text import register

    register(conn)
    commit = _SYNCHRONOUS_COMMIT[synchronous]
    if commit is not None:
        conn.execute("SELECT set_config('synchronous_commit', %s, false)", (commit,))

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

``call_timeout`` bounds every wait for the server (see
:mod:`flowstate.store.postgres.watchdog`); the connection also gets TCP keepalives and a
``tcp_user_timeout`` of the same length, so a server that vanished from the network is noticed
by the operating system too. Parameters the URL sets itself are kept.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from flowstate.errors import DatabaseError
from flowstate.store.connection import Synchronous

if TYPE_CHECKING:
    import psycopg

    from flowstate.store.postgres.watchdog import Watchdog

__all__ = ["CONNECT_TIMEOUT", "connect", "import_psycopg"]

CONNECT_TIMEOUT = 10
"""Seconds to wait for the server to answer when the URL sets no ``connect_timeout`` (less
when the call timeout is shorter, but at least libpq's minimum of 2)."""

KEEPALIVES = {"keepalives": "1", "keepalives_idle": "10", "keepalives_interval": "5",
              "keepalives_count": "3"}
"""TCP keepalives when the URL sets none: an idle connection to a host that vanished is found
dead after about 25 s."""

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


def connect(
    url: str,
    shown: str,
    *,
    busy_timeout: float,
    synchronous: Synchronous,
    call_timeout: float,
    watchdog: Watchdog | None = None,
) -> psycopg.Connection[Any]:
    """An autocommit connection (flowstate issues BEGIN itself) with the session settings.

    ``shown`` is the URL with its password masked, for messages. ``watchdog`` (armed by the
    caller) is given the connection as soon as it exists, so that it can cut the session
    settings' round trips too.
    """
    psycopg = import_psycopg()
    from psycopg.conninfo import conninfo_to_dict

    from flowstate.store.postgres.errors import describe

    try:
        given = conninfo_to_dict(url)
    except psycopg.Error as exc:
        # libpq quotes the URL it could not parse, password and all: show it masked, and
        # chain no cause (its text holds the password too)
        problem = " ".join(str(exc).replace(url, shown).split())
        raise DatabaseError(
            f"{shown} is not a valid PostgreSQL URL ({problem}); expected "
            "postgresql://user[:password]@host[:port]/database[?param=value...]"
        ) from None
    defaults: dict[str, Any] = {
        "connect_timeout": max(2, math.ceil(min(CONNECT_TIMEOUT, call_timeout))),
        "application_name": "flowstate",
        "tcp_user_timeout": str(max(1, round(call_timeout * 1000))),
        **KEEPALIVES,
    }
    extra = {key: value for key, value in defaults.items() if key not in given}
    try:
        conn = psycopg.connect(url, autocommit=True, **extra)
    except psycopg.Error as exc:
        raise describe(exc, shown) from exc
    if watchdog is not None:
        watchdog.conn = conn
    try:
        configure(conn, busy_timeout=busy_timeout, synchronous=synchronous)
    except psycopg.Error as exc:
        conn.close()
        raise describe(exc, shown) from exc
    return conn


def configure(
    conn: psycopg.Connection[Any], *, busy_timeout: float, synchronous: Synchronous
) -> None:
    """Session settings: lock_timeout from busy_timeout (at least 1 ms), synchronous_commit,
    UTC, UTF-8 text (which the NUL-safe text adapters of :mod:`flowstate.store.postgres.text`
    then use)."""
    conn.execute(
        "SELECT set_config('lock_timeout', %s, false), set_config('TimeZone', 'UTC', false), "
        "set_config('client_encoding', 'UTF8', false)",
        (f"{max(1, round(busy_timeout * 1000))}ms",),
    )
    from flowstate.store.postgres.text import register

    register(conn)
    commit = _SYNCHRONOUS_COMMIT[synchronous]
    if commit is not None:
        conn.execute("SELECT set_config('synchronous_commit', %s, false)", (commit,))

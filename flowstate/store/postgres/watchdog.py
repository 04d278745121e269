"""The call timeout: no wait for the PostgreSQL server lasts longer than ``call_timeout``.

psycopg waits for the server's answer without a time limit, and TCP keepalives cannot tell a
stopped server (its kernel still acknowledges) from a slow one. So each store has a
:class:`Watchdog`, which each round trip to the server runs inside (``with watchdog:``);
a daemon thread shuts down the socket of a round trip that is still waiting at its deadline.
The waiting call then fails at once (psycopg sees the connection closed), and the store turns
that into a :class:`~flowstate.DatabaseError` that names the timeout; the next call reconnects.
"""

from __future__ import annotations

import os
import socket
import threading
from time import monotonic
from typing import Any

__all__ = ["Watchdog"]


class Watchdog:
    """Shuts down the connection of a round trip that outlives ``seconds``.

    ``with watchdog:`` around a round trip; :attr:`fired` tells whether the last round trip was
    cut. The thread starts with the watchdog and ends with :meth:`stop`.
    """

    def __init__(self, seconds: float, name: str) -> None:
        self.seconds = seconds
        self.conn: Any = None
        """The connection whose socket a late round trip shuts down (set by the store)."""
        self.fired = False
        self._deadline: float | None = None
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._watch, name=name, daemon=True)
        self._thread.start()

    def __enter__(self) -> Watchdog:
        """A round trip starts: it has ``seconds`` to finish."""
        with self._lock:
            self._deadline = monotonic() + self.seconds
            self.fired = False
        return self

    def __exit__(self, *exc_info: object) -> None:
        """The round trip finished (or failed)."""
        with self._lock:
            self._deadline = None

    def stop(self) -> None:
        """End the thread (the store is closed)."""
        self._stopped.set()
        self.conn = None

    def _watch(self) -> None:
        # A deadline armed after a look is at least `seconds` away, so sleeping that long when
        # none is armed never oversleeps one; an armed one is slept up to, then checked.
        stopped = self._stopped
        while not stopped.is_set():
            deadline = self._deadline
            wait = self.seconds if deadline is None else deadline - monotonic()
            if wait > 0:
                stopped.wait(wait)
                continue
            with self._lock:
                if self._deadline is not None and monotonic() >= self._deadline:
                    self._deadline = None
                    # set before the cut: the waiting call wakes the moment the socket shuts
                    # down and asks at once whether the watchdog cut it
                    self.fired = True
                    self.fired = self._cut(self.conn)

    @staticmethod
    def _cut(conn: Any) -> bool:
        """Shut down ``conn``'s socket, waking the thread that waits on it; whether it was open."""
        try:
            fd = conn.pgconn.socket
            with socket.socket(fileno=os.dup(fd)) as sock:
                sock.shutdown(socket.SHUT_RDWR)
        except Exception:  # closed meanwhile, or never connected: nothing waits on it
            return False
        return True

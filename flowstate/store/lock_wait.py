"""Waiting for another connection's SQLite lock, in short slices that let signals through.

SQLite's own busy handler sleeps inside one C call, in steps that grow to 100 ms: Python acts
on Ctrl-C or SIGTERM only once that call returns, and a writer that has waited long sleeps
longest, so under contention it keeps losing to newer ones. flowstate sets SQLite's busy timeout
to 0 and waits here instead: it retries every :data:`SLICE` seconds (``time.sleep``, which a
signal interrupts at once) until the lock is granted or ``busy_timeout`` has passed.
Waiting longer makes the slices shorter, never longer (see :data:`LONG_WAIT_SLICES`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from flowstate.store._sqlite_errors import busy_error

__all__ = ["LONG_WAIT_SLICES", "NOTICE_AFTER", "SLICE", "wait_for_lock"]

SLICE = 0.001
"""Seconds between the first attempts to take the lock."""

LONG_WAIT_SLICES = ((0.005, 0.00025), (0.02, 0.00005))
"""(waited for, seconds between attempts from then on): a connection that has waited longer
tries more often, so the oldest waiter tends to get the lock next and no writer starves
(SQLite's own handler does the opposite)."""

NOTICE_AFTER = 1.0
"""Seconds of waiting after which one INFO message is logged (the CLI prints it)."""

logger = logging.getLogger("flowstate.lock")


def wait_for_lock(attempt: Callable[[], bool], busy_timeout: float, path: str) -> None:
    """Call ``attempt`` until it returns True (it returns False while the lock is taken).

    Raises the last ``sqlite3.OperationalError`` (database is locked) once ``busy_timeout``
    seconds have passed; a signal handler's exception (KeyboardInterrupt, SystemExit) leaves
    from the sleep within a slice.
    """
    monotonic = time.monotonic
    sleep = time.sleep
    started = monotonic()
    deadline = started + busy_timeout
    noticed = False
    while True:
        now = monotonic()
        if now >= deadline:
            raise busy_error()
        if not noticed and now - started >= NOTICE_AFTER:
            noticed = True
            logger.info(
                "waiting for the write lock on %s, held by another connection (up to %g s)",
                path,
                busy_timeout,
            )
        waited = now - started
        pause = SLICE
        for after, shorter in LONG_WAIT_SLICES:
            if waited >= after:
                pause = shorter
        sleep(min(pause, deadline - now))
        if attempt():
            return

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

__all__ = ["LONG_WAIT_SLICES", "NOTICE_AFTER", "SLICE", "Wait", "WaitNotice", "wait_for_lock"]

SLICE = 0.001
"""Seconds between the first attempts to take the lock."""

LONG_WAIT_SLICES = ((0.005, 0.00025), (0.02, 0.00005))
"""(waited for, seconds between attempts from then on): a connection that has waited longer
tries more often, so the oldest waiter tends to get the lock next and no writer starves
(SQLite's own handler does the opposite)."""

NOTICE_AFTER = 1.0
"""Seconds of waiting after which one INFO message is logged (the CLI prints it)."""

logger = logging.getLogger("flowstate.lock")


class WaitNotice:
    """Logs once, at INFO, that a call has waited :data:`NOTICE_AFTER` seconds for the write
    lock (the CLI prints it), whichever of the two waits (the writers' queue, SQLite's lock)
    it is in by then."""

    __slots__ = ("_busy_timeout", "_due", "_path")

    def __init__(self, path: str, busy_timeout: float) -> None:
        self._path = path
        self._busy_timeout = busy_timeout
        self._due: float | None = time.monotonic() + NOTICE_AFTER

    def check(self) -> None:
        due = self._due
        if due is not None and time.monotonic() >= due:
            self._due = None
            logger.info(
                "waiting for the write lock on %s, held by another connection (up to %g s)",
                self._path,
                self._busy_timeout,
            )


class Wait:
    """One call's wait for the write lock, through the writers' queue and SQLite's lock: when
    it began, when it gives up (``busy_timeout`` later; ``time.monotonic``), its notice."""

    __slots__ = ("deadline", "notice", "started")

    def __init__(self, path: str, busy_timeout: float) -> None:
        self.started = time.monotonic()
        self.deadline = self.started + busy_timeout
        self.notice = WaitNotice(path, busy_timeout)


def wait_for_lock(attempt: Callable[[], bool], wait: Wait) -> None:
    """Call ``attempt`` until it returns True (it returns False while the lock is taken).

    Raises an ``sqlite3.OperationalError`` (database is locked) at ``wait.deadline``; a signal
    handler's exception (KeyboardInterrupt, SystemExit) leaves from the sleep within a slice.
    """
    started, deadline, notice = wait.started, wait.deadline, wait.notice
    while True:
        now = time.monotonic()
        if now >= deadline:
            raise busy_error()
        notice.check()
        waited = now - started
        pause = SLICE
        for after, shorter in LONG_WAIT_SLICES:
            if waited >= after:
                pause = shorter
        time.sleep(min(pause, deadline - now))
        if attempt():
            return

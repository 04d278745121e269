"""Writers of one SQLite file wait for each other in the kernel, not by polling.

SQLite gives a writer that finds the write lock taken nothing to sleep on: it can only try
again later. With several busy writer processes those retries burn the CPU the lock's holder
needs, and who gets the lock next is luck. So before ``BEGIN IMMEDIATE`` a flowstate writer
takes an exclusive ``flock`` on a small file beside the database (``<database>-writers``,
created with the database's own permissions): a writer that finds it taken sleeps in the kernel
until the holder lets go, right after its COMMIT or ROLLBACK. The kernel drops the lock of a
process that dies, so a killed writer never keeps the others out.

SQLite's lock stays the guard of the data; the queue only decides who asks for it next. A
writer that does not use the queue (the ``sqlite3`` shell, another program) is waited for as
before (see ``lock_wait``), and where the file cannot be made (a read-only folder) the queue is
simply not used. Delete the file only while no process has the database open.

Python's ``flock`` cannot give up after a time, so a writer that has to wait hands the blocking
call to a thread of its own and waits for that thread in short slices, which let signals
(Ctrl-C, SIGTERM) through and end at ``busy_timeout``.
"""

from __future__ import annotations

import fcntl
import os
import stat
import threading
import time

from flowstate.store._sqlite_errors import busy_error
from flowstate.store.lock_wait import WaitNotice

__all__ = ["SUFFIX", "WriteQueue"]

SUFFIX = "-writers"
"""The queue's file: the database's path with this added."""

_SLICE = 0.05  # seconds between two looks at the deadline while a thread waits in the kernel


class WriteQueue:
    """One connection's place in the queue of its database's writers (not thread-safe: the
    store calls it under its own lock)."""

    __slots__ = ("_database", "_fd", "_held", "_pid")

    def __init__(self, database: str) -> None:
        self._database = database
        self._fd: int | None = None  # opened at the first write: a reader never makes the file
        self._pid = 0  # the process that opened _fd (a forked child opens its own)
        self._held: int | None = None  # the descriptor holding the lock, while this one writes

    def enter(self, deadline: float, notice: WaitNotice) -> None:
        """Wait for this connection's turn to write; ``busy_error()`` at ``deadline``
        (``time.monotonic``). Returns at once where the queue cannot be used."""
        fd = self._fd if self._pid == os.getpid() else None
        if fd is None:
            fd = self._fd = _open(self._database)
            self._pid = os.getpid()
            if fd is None:
                return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._held = _wait_in_a_thread(self._database, deadline, notice)
        except OSError:
            return  # no locks on this file system: SQLite's lock alone decides
        else:
            self._held = fd

    def leave(self) -> None:
        """Let the next writer in (call it after the COMMIT or ROLLBACK)."""
        held, self._held = self._held, None
        if held is None:
            return
        if held == self._fd:
            fcntl.flock(held, fcntl.LOCK_UN)
        else:
            os.close(held)  # a waiting thread's own descriptor: closing it unlocks it

    def close(self) -> None:
        """Leave the queue and close its file."""
        self.leave()
        fd, self._fd = self._fd, None
        if fd is not None and self._pid == os.getpid():
            os.close(fd)


def _open(database: str) -> int | None:
    """The queue file's descriptor, the file made with the database's mode; None if it
    cannot be opened for writing here."""
    try:
        mode = stat.S_IMODE(os.stat(database).st_mode)
        fd = os.open(database + SUFFIX, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, mode)
    except OSError:
        return None
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) != mode:  # the umask took bits off a new file
            os.fchmod(fd, mode)
    except OSError:
        pass  # not this user's file: its owner chose its mode
    return fd


def _wait_in_a_thread(database: str, deadline: float, notice: WaitNotice) -> int | None:
    """Wait for the queue's lock in a thread, through a descriptor of that thread's own, and
    return the descriptor once it holds the lock (None if the lock cannot be had at all). If
    the wait ends first (the deadline, or a signal handler's exception), the thread lets go of
    the lock as soon as it gets it."""
    fd = _open(database)
    if fd is None:
        return None
    granted = threading.Event()
    guard = threading.Lock()
    outcome = ["waiting"]  # then "granted", "failed" or "abandoned"

    def block() -> None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            got = "granted"
        except OSError:
            got = "failed"
        with guard:
            if outcome[0] == "abandoned" or got == "failed":
                os.close(fd)
            if outcome[0] != "abandoned":
                outcome[0] = got
        granted.set()

    threading.Thread(target=block, name="flowstate-write-queue", daemon=True).start()
    try:
        while not granted.wait(max(0.0, min(_SLICE, deadline - time.monotonic()))):
            if time.monotonic() >= deadline:
                raise busy_error()
            notice.check()
    except BaseException:
        with guard:
            if outcome[0] == "granted":
                os.close(fd)
            outcome[0] = "abandoned"
        raise
    return fd if outcome[0] == "granted" else None

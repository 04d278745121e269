"""Writers of one SQLite file take turns in the order they came, waiting in the kernel.

SQLite gives a writer that finds the write lock taken nothing to sleep on: it can only try
again later. With several busy writer processes those retries burn the CPU the lock's holder
needs, and who gets the lock next is luck. A plain kernel lock is not fair either: the writer
that has just let go is still running, and takes the lock again before a woken waiter has been
scheduled, so one process can keep it for dozens of calls while another waits.

So flowstate's writers of a file line up in a small file beside the database
(``<database>-writers``, created with the database's own permissions), with locks on single
bytes of it that belong to one open file (open-file-description locks, Linux): the kernel drops
them when a process dies, so a killed writer never keeps the others out.

* **The write lock** (one byte) is held from before ``BEGIN IMMEDIATE`` until after the COMMIT
  or ROLLBACK. A writer that finds nobody in line takes it at once: one system call to take it,
  one to let go.
* **The line.** Otherwise the writer draws a ticket (a counter in the file, under a short lock)
  and locks its ticket's byte, then waits for the byte of the ticket before its own, which that
  writer keeps until it has the write lock: writers get the lock in the order of their tickets.
  The first in line waits for the write lock itself.
* **A turn.** The writer that got the lock from the line may take it again, for its next calls,
  for :data:`SHORT_PASS` seconds while fewer than :data:`LONG_LINE` writers wait, and for up to
  :data:`PASS_FOR` once the line is that long (a process then does many calls in a row, as it
  would alone, and its caches of the database stay valid): the first in line asks for the write
  lock only once that time is over, or once the writer has left the lock free for
  :data:`IDLE_FOR` (it has stopped writing: nobody waits for a turn nobody uses). After it, the
  writer draws a new ticket like everyone else. So a writer waits about one turn for each writer
  ahead of it: a few milliseconds behind a short line; behind a long one, only the first call of
  a turn waits, for up to the line's turns.

The counters in the file (next ticket, tickets served, when the current turn began and whose it
is) only steer who asks for the lock next: the locked bytes decide who has it, and SQLite's own
lock still guards the data. A writer that does not use the queue (the ``sqlite3`` shell,
another program) is waited for as before (see ``lock_wait``). Where the file cannot be made
(a read-only folder) or the system has no such locks, the queue is not used. Delete the file
only while no process has the database open.

A lock wait cannot give up after a time, so a writer that has to wait hands the waiting to a
thread and waits for that thread in short slices, which let signals (Ctrl-C, SIGTERM) through
and end at ``busy_timeout``. Each connection has one such thread, with a descriptor of the
file of its own, from its first wait in line until it closes: a wait starts no thread and
opens no file. A wait given up keeps its place until its turn comes and then passes it on at
once, so the writers behind it are not let in early. A forked child closes the descriptors it
inherited (a parent's lock would otherwise outlive the parent) and opens its own.
"""

from __future__ import annotations

import errno
import fcntl
import itertools
import mmap
import os
import queue
import stat
import struct
import threading
import time
import weakref
from collections.abc import Callable

from flowstate.store._sqlite_errors import busy_error
from flowstate.store.lock_wait import Wait

__all__ = ["PASS_FOR", "SUFFIX", "WriteQueue"]

SUFFIX = "-writers"
"""The queue's file: the database's path with this added."""

PASS_FOR = 0.025
"""Seconds a turn lasts at most while :data:`LONG_LINE` or more writers wait: the writer that
got the lock from the line may take it again, without a new ticket, until then. Long enough for
a fast writer's calls of a turn to outnumber its waits many times over; short enough that eight
writers' turns take well under a second."""

SHORT_PASS = 0.0015
"""Seconds a turn lasts while fewer than :data:`LONG_LINE` writers wait: a few calls, so a
writer that waits at all waits a few milliseconds."""

LONG_LINE = 3
"""Writers in line from which a turn lasts :data:`PASS_FOR`: behind that many, turns of a few
calls spend much of the lock's time handing it over, and a round of the line grows past 10 ms
anyway. Behind fewer, short turns keep each wait short for writers that write in bursts."""

IDLE_FOR = 0.003
"""Seconds the write lock stays free before the first in line takes the turn early: its writer
has stopped writing. Between two calls of a busy writer the lock is free for microseconds, or
for a few milliseconds when the machine is busy and the writer waits for a core: the turn is
not cut short then."""

_SLICE = 0.05  # seconds between two looks at the deadline while a thread waits in the kernel

# The file's counters (native unsigned 64-bit): next ticket, tickets served (the line is empty
# when both are equal), when the current turn began (CLOCK_MONOTONIC, ns), whose turn it is;
# and, apart, when the write lock was last let go.
_COUNTERS = struct.Struct("=QQQQ")
_SERVED_AT = 8
_RELEASED = struct.Struct("=Q")
_RELEASED_AT = 40
_SIZE = 64
# The locked bytes.
_TICKETS = (0, 8)  # held while a ticket is drawn
_WRITE = (32, 1)  # the write lock
_SLOT_BASE = 4096  # ticket t's byte is _SLOT_BASE + t % _SLOTS
_SLOTS = 1 << 16

_SETLK = getattr(fcntl, "F_OFD_SETLK", None)
_SETLKW = getattr(fcntl, "F_OFD_SETLKW", None)
_GETLK = getattr(fcntl, "F_OFD_GETLK", None)
_FLOCK = struct.Struct("hhqqi4x")  # struct flock: type, whence, start, len, pid (0 here)
_TAKEN = (errno.EAGAIN, errno.EACCES)
_PASS_FOR_NS = int(PASS_FOR * 1e9)
_SHORT_PASS_NS = int(SHORT_PASS * 1e9)
_IDLE_FOR_NS = int(IDLE_FOR * 1e9)
_NAMES = itertools.count(1)


def _request(kind: int, span: tuple[int, int]) -> bytes:
    return _FLOCK.pack(kind, os.SEEK_SET, span[0], span[1], 0)


_TAKE_WRITE = _request(fcntl.F_WRLCK, _WRITE)
_FREE_WRITE = _request(fcntl.F_UNLCK, _WRITE)


class WriteQueue:
    """One connection's place among its database's writers (not thread-safe: the store calls
    it under its own lock)."""

    __slots__ = (
        "__weakref__", "_counters", "_database", "_fd", "_held", "_me", "_pid", "_unusable",
        "_waiter",
    )

    def __init__(self, database: str) -> None:
        self._database = database
        self._fd: int | None = None  # opened at the first write: a reader never makes the file
        self._counters: mmap.mmap | None = None
        self._pid = 0  # the process that opened _fd (a forked child opens its own)
        self._me = 0  # this connection's name in the file (see _open)
        self._held: int | None = None  # the descriptor holding the lock, while this one writes
        self._unusable = False  # no such locks here: SQLite's lock alone decides
        self._waiter: _Waiter | None = None  # started at the first wait in line
        _OPEN.add(self)

    def enter(self, busy_timeout: float, path: str) -> Wait | None:
        """Wait for this connection's turn to write; ``busy_error()`` after ``busy_timeout``
        seconds. Returns at once where the queue cannot be used. The :class:`Wait` it made if
        it had to wait (None if not), for a further wait for SQLite's lock to go on with."""
        fd = self._descriptor()
        if fd is None or (self._may_skip_line() and self._entered_at_once(fd)):
            return None
        wait = Wait(path, busy_timeout)
        waiter = self._waiter
        if waiter is None:
            waiter = self._waiter = _Waiter.start(self._database, self._me)
            if waiter is None:
                return wait
            weakref.finalize(self, waiter.stop)
        if waiter.wait(wait):
            self._held = waiter.fd
        return wait

    def _descriptor(self) -> int | None:
        """This process's descriptor of the queue's file, opened at the first write (again in
        a forked child); None where the queue cannot be used."""
        if self._fd is None or self._pid != os.getpid():
            if self._unusable or not self._open():
                return None
        return self._fd

    def _may_skip_line(self) -> bool:
        """Whether this connection may take the write lock without a ticket: nobody is in
        line, or its own turn is still on (see :data:`PASS_FOR`)."""
        counters = self._counters
        assert counters is not None  # (mapped whenever _fd is open)
        ticket, served, began, owner = _COUNTERS.unpack_from(counters)
        return ticket == served or (
            owner == self._me and time.monotonic_ns() - began < _pass_ns(ticket - served)
        )

    def _entered_at_once(self, fd: int) -> bool:
        """Try the write lock without waiting: True if this connection holds it now, or if
        the file system has no such locks (the queue is given up: SQLite's lock alone
        decides); False if another writer holds it."""
        try:
            fcntl.fcntl(fd, _SETLK, _TAKE_WRITE)  # type: ignore[arg-type]
        except OSError as exc:
            if exc.errno in _TAKEN:
                return False
            self.close()  # no such locks on this file system
            self._unusable = True
            return True
        self._held = fd
        return True

    def leave(self) -> None:
        """Let the next writer in (call it after the COMMIT or ROLLBACK)."""
        held, self._held = self._held, None
        if held is not None:
            # the time first: a waiter that finds the lock free reads when it was let go
            _RELEASED.pack_into(self._counters, _RELEASED_AT, time.monotonic_ns())  # type: ignore[arg-type]
            fcntl.fcntl(held, _SETLK, _FREE_WRITE)  # type: ignore[arg-type]

    def close(self) -> None:
        """Leave the queue, end its waiter and close its file."""
        self.leave()
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter.stop()
        fd, self._fd = self._fd, None
        counters, self._counters = self._counters, None
        if self._pid == os.getpid():
            if counters is not None:
                counters.close()
            if fd is not None:
                os.close(fd)

    def _forget(self) -> None:
        """In a forked child: close the parent's descriptors (the parent's locks stay with
        the parent, and go when it dies); the child opens its own at its first write."""
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter.forget()
        fd, self._fd = self._fd, None
        counters, self._counters = self._counters, None
        self._held = None
        if counters is not None:
            counters.close()
        if fd is not None:
            os.close(fd)

    def _open(self) -> bool:
        """Open (in a forked child: open again) the queue's file and map its counters."""
        self._fd = self._counters = None  # a parent's descriptor would share its locks
        self._waiter = None
        self._pid = os.getpid()
        if _SETLK is None:
            return False
        opened = _open_mapped(self._database)
        if opened is None:
            return False
        self._fd, self._counters = opened
        self._me = (self._pid << 24) | (next(_NAMES) & 0xFFFFFF)
        return True


_OPEN: weakref.WeakSet[WriteQueue] = weakref.WeakSet()


def _forget_in_child() -> None:
    for write_queue in list(_OPEN):
        write_queue._forget()


os.register_at_fork(after_in_child=_forget_in_child)


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


def _open_mapped(database: str) -> tuple[int, mmap.mmap] | None:
    """The queue file's descriptor and its counters, mapped; None if it cannot be used."""
    fd = _open(database)
    if fd is None:
        return None
    try:
        if os.fstat(fd).st_size < _SIZE:
            os.ftruncate(fd, _SIZE)  # (it only grows: two writers doing it change nothing)
        return fd, mmap.mmap(fd, _SIZE)
    except (OSError, ValueError):
        os.close(fd)
        return None


def _lock(fd: int, span: tuple[int, int]) -> None:
    fcntl.fcntl(fd, _SETLKW, _request(fcntl.F_WRLCK, span))  # type: ignore[arg-type]


def _unlock(fd: int, span: tuple[int, int]) -> None:
    fcntl.fcntl(fd, _SETLK, _request(fcntl.F_UNLCK, span))  # type: ignore[arg-type]


def _slot(ticket: int) -> tuple[int, int]:
    return (_SLOT_BASE + ticket % _SLOTS, 1)


def _release_all(fd: int) -> None:
    """Let go of every byte ``fd`` holds (its place in line, the write lock)."""
    fcntl.fcntl(fd, _SETLK, _request(fcntl.F_UNLCK, (0, 0)))  # type: ignore[arg-type]


def _after_the_turn(fd: int, counters: mmap.mmap, me: int) -> None:
    """Sleep until the current turn is over: its pass has passed (see :func:`_pass_ns`; the line
    is read at each look, the sleeper in it), or its writer has left the write lock free for
    :data:`IDLE_FOR`. Until then its writer may take the lock again, and the first in line
    would otherwise take it between its calls. No sleep when the turn is ``me``'s own: nobody
    else may take the lock in it."""
    while True:
        ticket, served, began, owner = _COUNTERS.unpack_from(counters)
        if owner == me:
            return
        length = _pass_ns(ticket - served)
        left = began + length - time.monotonic_ns()
        if not 0 < left <= length or not (wait := _until_idle(fd, counters)):
            return
        time.sleep(min(left, wait) / 1e9)


def _pass_ns(waiting: int) -> int:
    """How long a turn lasts with ``waiting`` writers in line: :data:`SHORT_PASS` while the line
    is short, :data:`PASS_FOR` once it is :data:`LONG_LINE` writers long."""
    return _PASS_FOR_NS if waiting >= LONG_LINE else _SHORT_PASS_NS


def _until_idle(fd: int, counters: mmap.mmap) -> int:
    """Nanoseconds until the write lock may have been free for :data:`IDLE_FOR`: 0 once it has
    (its last holder writes when it let go before letting go), what is left of it since then
    while it is free, :data:`IDLE_FOR` while it is held. The time is read again after the lock
    is found free: a holder that let go in between (it wrote a new time) has not left it free
    that long."""
    released = _RELEASED.unpack_from(counters, _RELEASED_AT)[0]
    quiet = time.monotonic_ns() - released
    if quiet < _IDLE_FOR_NS:
        return _IDLE_FOR_NS - quiet
    answer = fcntl.fcntl(fd, _GETLK, _TAKE_WRITE)  # type: ignore[arg-type]
    if _FLOCK.unpack(answer)[0] != fcntl.F_UNLCK:
        return _IDLE_FOR_NS
    return 0 if _RELEASED.unpack_from(counters, _RELEASED_AT)[0] == released else _IDLE_FOR_NS


def _take_turn(fd: int, counters: mmap.mmap, me: int, given_up: Callable[[], bool]) -> bool:
    """Line up through ``fd`` (the waiter's own descriptor) and wait for the write lock: True
    once ``fd`` holds it, False if the wait was given up before (the caller then lets go of
    what ``fd`` holds, which passes the place on)."""
    _lock(fd, _TICKETS)
    try:
        ticket = _COUNTERS.unpack_from(counters)[0]
        struct.pack_into("=Q", counters, 0, ticket + 1)
        _lock(fd, _slot(ticket))  # free: its last holder drew its ticket 65536 tickets ago
    finally:
        _unlock(fd, _TICKETS)
    before = _slot(ticket - 1)
    _lock(fd, before)  # the writer before has the write lock now (or gave up, or died)
    _unlock(fd, before)
    _after_the_turn(fd, counters, me)
    if given_up():
        return False
    _lock(fd, _WRITE)
    struct.pack_into("=QQQ", counters, _SERVED_AT, ticket + 1, time.monotonic_ns(), me)
    _unlock(fd, _slot(ticket))  # the next in line is first now
    return True


class _Turn:
    """One wait for the write lock, handed to the waiter's thread."""

    __slots__ = ("done", "outcome")

    def __init__(self) -> None:
        self.done = threading.Lock()  # released by the thread when it is done waiting
        self.done.acquire()
        self.outcome = "waiting"  # then "granted", "failed" or "abandoned"


class _Waiter:
    """One connection's thread that waits in line for it, through a descriptor of its own (a
    separate open file, so its locks are not the connection's), both kept until :meth:`stop`:
    a wait starts no thread and opens no file."""

    __slots__ = ("_counters", "_guard", "_me", "_requests", "fd")

    def __init__(self, fd: int, counters: mmap.mmap, me: int) -> None:
        self.fd = fd
        self._counters = counters
        self._me = me
        self._guard = threading.Lock()
        self._requests: queue.SimpleQueue[_Turn | None] = queue.SimpleQueue()
        threading.Thread(target=self._serve, name="flowstate-write-queue", daemon=True).start()

    @classmethod
    def start(cls, database: str, me: int) -> _Waiter | None:
        """A waiter with its own descriptor of the queue's file; None if it cannot be opened."""
        opened = _open_mapped(database)
        return None if opened is None else cls(*opened, me)

    def stop(self) -> None:
        """End the thread once it has finished the wait it may be in (a given-up wait first
        passes its turn on); it closes the descriptor."""
        self._requests.put(None)

    def forget(self) -> None:
        """In a forked child (which has no such thread): close the parent's descriptor."""
        self._counters.close()
        os.close(self.fd)

    def wait(self, wait: Wait) -> bool:
        """Wait for the write lock, held through :attr:`fd` on True (False: it cannot be had
        at all). ``busy_error()`` at the deadline; a signal handler's exception leaves within
        a slice. A wait that ends early passes its turn on as soon as it comes."""
        turn = _Turn()
        self._requests.put(turn)
        done, deadline, notice = turn.done, wait.deadline, wait.notice
        try:
            while not done.acquire(timeout=max(0.0, min(_SLICE, deadline - time.monotonic()))):
                if time.monotonic() >= deadline:
                    raise busy_error()
                notice.check()
        except BaseException:
            with self._guard:
                if turn.outcome == "granted":
                    _release_all(self.fd)
                turn.outcome = "abandoned"
            raise
        return turn.outcome == "granted"

    def _serve(self) -> None:
        """The thread: take each wait handed over in turn, until :meth:`stop`."""
        fd, requests = self.fd, self._requests
        try:
            while (turn := requests.get()) is not None:
                self._take(turn)
        finally:
            self._counters.close()
            os.close(fd)

    def _take(self, turn: _Turn) -> None:
        fd = self.fd
        got = False
        if turn.outcome != "abandoned":
            try:
                got = _take_turn(fd, self._counters, self._me, lambda: turn.outcome == "abandoned")
            except OSError:
                got = False
        with self._guard:
            if turn.outcome == "abandoned" or not got:
                _release_all(fd)  # a place given up: the next in line goes on at once
            if turn.outcome != "abandoned":
                turn.outcome = "granted" if got else "failed"
        turn.done.release()

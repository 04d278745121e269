"""SQLite: flowstate writers of one file wait for each other in the kernel (the writers'
queue, ``<database>-writers``): the wait ends when the holder commits, at ``busy_timeout``,
on a signal, or when the holder's process dies; an abandoned wait leaves nothing held."""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import struct
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from flowstate import DatabaseBusy, Orchestrator
from flowstate.states import Pending, Running, Scheduled, StateType
from flowstate.store import write_queue
from flowstate.store.write_queue import WriteQueue

from .test_lock_waits import _CHILD, _line, _scheduled_run  # _CHILD waits, then writes again


def _queue_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "flowstate-write-queue"]


def _in_line(database: Path | str) -> int:
    """Writers waiting in the queue's line (tickets drawn, less tickets served)."""
    with open(f"{database}{write_queue.SUFFIX}", "rb") as file:
        ticket, served = struct.unpack("=QQ", file.read(16))
    return ticket - served


def _until(condition: Callable[[], bool]) -> bool:
    for _ in range(100):
        if condition():
            return True
        time.sleep(0.02)
    return False


@contextmanager
def _a_flowstate_writer_in_a_block(path: Path) -> Iterator[Orchestrator]:
    """Another Orchestrator on the file, inside an open transaction block: it holds the
    writers' queue and SQLite's write lock until the block ends."""
    with Orchestrator(path) as holder:
        block = holder.transaction()
        block.__enter__()
        holder.create_flow_run(state=Scheduled())  # (a write: the block holds the lock)
        try:
            yield holder
        finally:
            block.__exit__(None, None, None)


def test_a_writer_waits_in_the_kernel_until_the_holder_commits(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    run_id = _scheduled_run(path)
    answers: list[str] = []
    with Orchestrator(path, busy_timeout=10) as waiter:
        with _a_flowstate_writer_in_a_block(path):
            thread = threading.Thread(
                target=lambda: answers.append(waiter.set_flow_run_state(run_id, Pending()).status.value)
            )
            thread.start()
            time.sleep(0.3)
            assert not answers  # still waiting...
            assert _in_line(path) == 1, "the wait is not in the writers' queue"  # ...in line
        thread.join(5)
        assert answers == ["ACCEPT"]
        assert _in_line(path) == 0
        assert waiter.read_flow_run(run_id).state_type is StateType.PENDING
    assert _until(lambda: not _queue_threads())  # the waiter's thread ends with its store


def test_a_queue_wait_ends_in_database_busy_logged_once_and_leaves_nothing_held(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "busy.db"
    run_id = _scheduled_run(path)
    caplog.set_level(logging.INFO, logger="flowstate.lock")
    with Orchestrator(path, busy_timeout=1.3) as waiter:
        with _a_flowstate_writer_in_a_block(path):
            started = time.monotonic()
            with pytest.raises(DatabaseBusy, match="busy_timeout"):
                waiter.set_flow_run_state(run_id, Pending())
            assert 1.3 <= time.monotonic() - started < 2.5
        # the holder has committed: the abandoned wait let go of its turn at once
        assert _until(lambda: _in_line(path) == 0)
        with Orchestrator(path, busy_timeout=0.5) as third:
            assert third.set_flow_run_state(run_id, Pending()).status.value == "ACCEPT"
        assert waiter.set_flow_run_state(run_id, Running()).status.value == "ACCEPT"
    notices = [r.getMessage() for r in caplog.records if r.name == "flowstate.lock"]
    assert len(notices) == 1, notices
    assert "waiting for the write lock" in notices[0]


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_a_signal_stops_a_queue_wait_at_once(tmp_path: Path, signame: str) -> None:
    path = tmp_path / "signal.db"
    run_id = _scheduled_run(path)
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(path), run_id, signame],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        with _a_flowstate_writer_in_a_block(path):
            assert _line(proc, 30) == "ready"
            time.sleep(0.3)  # the child waits in the queue by now
            sent = time.monotonic()
            proc.send_signal(getattr(signal, signame))
            answer = _line(proc, 5)
            took = time.monotonic() - sent
        expected = "KeyboardInterrupt" if signame == "SIGINT" else "SystemExit"
        assert answer == f"interrupted {expected}"
        assert took < 0.5, f"the signal took {took:.2f} s to stop the wait"
        proc.stdin.write("\n")  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]
        assert _line(proc, 10) == "after ACCEPT"
        with Orchestrator(path, busy_timeout=2) as orc:  # and nobody holds the queue now
            assert orc.create_flow_run().id
    finally:
        proc.kill()
        proc.wait()


_HOLDER = textwrap.dedent(
    """
    import sys, time
    from flowstate import Orchestrator
    orc = Orchestrator(sys.argv[1])
    block = orc.transaction()
    block.__enter__()
    orc.create_flow_run()
    print("holding", flush=True)
    time.sleep(600)
    """
)


def test_a_killed_holder_lets_the_next_writer_in(tmp_path: Path) -> None:
    path = tmp_path / "killed.db"
    run_id = _scheduled_run(path)
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert _line(proc, 30) == "holding"
        with Orchestrator(path, busy_timeout=20) as orc:
            threading.Timer(0.3, proc.kill).start()
            started = time.monotonic()
            assert orc.set_flow_run_state(run_id, Pending()).status.value == "ACCEPT"
            assert 0.25 <= time.monotonic() - started < 5
            assert len(orc.read_flow_runs()) == 1  # the killed block's run was never committed
    finally:
        proc.kill()
        proc.wait()


# -- the order of the line (the queue itself, one WriteQueue per connection) ----------------


def _database(tmp_path: Path) -> str:
    path = tmp_path / "line.db"
    Orchestrator(path).close()
    return str(path)


def _line_up(database: str, name: str, order: list[str], timeout: float = 10) -> threading.Thread:
    """A writer in a thread: waits for its turn, notes it, holds the lock a moment, leaves."""

    def write() -> None:
        queue = WriteQueue(database)
        try:
            queue.enter(timeout, database)
            order.append(name)
            time.sleep(0.02)
            queue.leave()
        finally:
            queue.close()

    thread = threading.Thread(target=write)
    thread.start()
    return thread


def _waiting(database: str, count: int) -> None:
    """Until ``count`` tickets have been drawn (the first counter of the queue's file)."""
    for _ in range(500):
        with open(database + write_queue.SUFFIX, "rb") as file:
            if struct.unpack("=Q", file.read(8))[0] >= count:
                return
        time.sleep(0.01)
    raise AssertionError(f"{count} writers never lined up")


def test_writers_get_the_lock_in_the_order_they_asked_and_the_last_holder_lines_up_too(
    tmp_path: Path,
) -> None:
    database = _database(tmp_path)
    first = WriteQueue(database)
    try:
        assert first.enter(10, database) is None  # nobody in line: at once
        order: list[str] = []
        threads = []
        for count, name in enumerate(["a", "b", "c"], start=1):
            threads.append(_line_up(database, name, order))
            _waiting(database, count)  # a, then b, then c draw their tickets
        first.leave()
        # the writer that just let go finds the lock free, but three writers wait: it lines up
        assert first.enter(10, database) is not None
        order.append("first again")
        first.leave()
        for thread in threads:
            thread.join(10)
        assert order == ["a", "b", "c", "first again"]
    finally:
        first.close()
    assert _until(lambda: not _queue_threads())


def test_a_wait_given_up_passes_its_turn_on_and_leaves_nothing_held(tmp_path: Path) -> None:
    database = _database(tmp_path)
    holder = WriteQueue(database)
    quitter = WriteQueue(database)
    try:
        holder.enter(10, database)
        failed: list[BaseException] = []

        def give_up() -> None:
            try:
                quitter.enter(0.3, database)
            except sqlite3.OperationalError as exc:  # the store turns it into DatabaseBusy
                failed.append(exc)

        thread = threading.Thread(target=give_up)
        thread.start()
        _waiting(database, 1)
        order: list[str] = []
        behind = _line_up(database, "behind", order)  # in line after the one giving up
        _waiting(database, 2)
        thread.join(5)
        assert failed and "locked" in str(failed[0])
        holder.leave()
        behind.join(5)
        assert order == ["behind"]  # the given-up place passed on
        assert _until(lambda: _in_line(database) == 0)
        assert holder.enter(1, database) is None  # the line is empty again: at once
        holder.leave()
    finally:
        holder.close()
        quitter.close()


_WAITER = textwrap.dedent(
    """
    import sys
    from flowstate import Orchestrator
    from flowstate.states import Pending
    orc = Orchestrator(sys.argv[1], busy_timeout=60)
    print("waiting", flush=True)
    orc.set_flow_run_state(sys.argv[2], Pending())
    """
)


def test_a_killed_writer_in_line_does_not_hold_up_those_behind_it(tmp_path: Path) -> None:
    path = tmp_path / "killed-in-line.db"
    run_id = _scheduled_run(path)
    proc = subprocess.Popen(
        [sys.executable, "-c", _WAITER, str(path), run_id], stdout=subprocess.PIPE, text=True
    )
    answers: list[str] = []
    try:
        with Orchestrator(path, busy_timeout=20) as behind:
            with _a_flowstate_writer_in_a_block(path):
                assert _line(proc, 30) == "waiting"
                time.sleep(0.5)  # the child has drawn its ticket and waits
                thread = threading.Thread(
                    target=lambda: answers.append(str(behind.create_flow_run().id))
                )
                thread.start()
                time.sleep(0.3)
                proc.kill()
                proc.wait()
                time.sleep(0.2)
                assert not answers  # still the block's turn
            thread.join(5)
            assert len(answers) == 1  # the killed writer's place did not hold it up
            assert len(behind.read_flow_runs()) == 3
    finally:
        proc.kill()
        proc.wait()


def test_where_there_are_no_such_locks_writers_do_without_the_queue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(write_queue, "_SETLK", None)
    path = tmp_path / "no-locks.db"
    with Orchestrator(path) as one, Orchestrator(path) as two:
        run = one.create_flow_run(state=Scheduled())
        assert two.set_flow_run_state(run.id, Pending()).status.value == "ACCEPT"
        assert one.set_flow_run_state(run.id, Running()).status.value == "ACCEPT"
    assert not (tmp_path / "no-locks.db-writers").exists()


def test_waits_in_line_start_no_thread_and_open_no_file_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = _database(tmp_path)
    started: list[str] = []
    opened: list[str] = []
    real_start, real_open = threading.Thread.start, os.open

    def start(thread: threading.Thread) -> None:
        started.append(thread.name)
        real_start(thread)

    def open_(path: str, *args: int) -> int:
        if str(path).endswith(write_queue.SUFFIX):
            opened.append(str(path))
        return real_open(path, *args)

    monkeypatch.setattr(threading.Thread, "start", start)
    monkeypatch.setattr(os, "open", open_)
    holder, waiter = WriteQueue(database), WriteQueue(database)
    held, done = threading.Semaphore(0), threading.Semaphore(0)
    waits: list[bool] = []

    def wait_behind_the_holder() -> None:
        for _ in range(100):
            held.acquire()
            waits.append(waiter.enter(10, database) is not None)
            waiter.leave()
            done.release()

    thread = threading.Thread(target=wait_behind_the_holder, name="test")
    try:
        thread.start()
        for count in range(1, 101):
            assert holder.enter(10, database) is None  # the line is empty: at once
            held.release()
            _waiting(database, count)  # the waiter has drawn its ticket
            holder.leave()
            assert done.acquire(timeout=10)
        thread.join(10)
    finally:
        holder.close()
        waiter.close()
    assert waits == [True] * 100  # each one waited in line
    assert started.count("flowstate-write-queue") <= 1
    assert len(opened) <= 3  # the holder's file, the waiter's, its thread's


def _queue_files_open() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").endswith(write_queue.SUFFIX)
        except OSError:
            pass  # (the listing's own descriptor)
    return count


def test_a_forked_child_keeps_none_of_the_parents_queue_files_open(tmp_path: Path) -> None:
    """An open file of the parent's kept in a child would keep the parent's locks after the
    parent died (they go with the file's last descriptor)."""
    path = tmp_path / "fork.db"
    run_id = _scheduled_run(path)
    with Orchestrator(path, busy_timeout=10) as orc:
        with _a_flowstate_writer_in_a_block(path):  # so that orc waits in line once
            thread = threading.Thread(target=lambda: orc.set_flow_run_state(run_id, Pending()))
            thread.start()
            assert _until(lambda: _in_line(path) == 1)
        thread.join(5)
        read, write = os.pipe()
        child = os.fork()
        if child == 0:  # pragma: no cover (the child)
            try:
                os.write(write, str(_queue_files_open()).encode())
            finally:
                os._exit(0)
        os.close(write)
        answer = os.read(read, 100)
        os.close(read)
        os.waitpid(child, 0)
        assert answer == b"0"
        assert orc.set_flow_run_state(run_id, Running()).status.value == "ACCEPT"


def _set_turns(
    monkeypatch: pytest.MonkeyPatch,
    *,
    long_line: int,
    pass_ns: int,
    idle_ns: int | None = None,
    short_ns: int | None = None,
) -> None:
    """Turns of the given lengths for one test (``None``: as the module sets them)."""
    monkeypatch.setattr(write_queue, "LONG_LINE", long_line)
    monkeypatch.setattr(write_queue, "_PASS_FOR_NS", pass_ns)
    if idle_ns is not None:
        monkeypatch.setattr(write_queue, "_IDLE_FOR_NS", idle_ns)
    if short_ns is not None:
        monkeypatch.setattr(write_queue, "_SHORT_PASS_NS", short_ns)


@contextmanager
def _a_turn_from_the_line(database: str) -> Iterator[WriteQueue]:
    """A writer holding the write lock it got from the line (its turn's pass has begun)."""
    first, turn = WriteQueue(database), WriteQueue(database)
    try:
        first.enter(10, database)
        got_turn: list[bool] = []
        waiting = threading.Thread(target=lambda: got_turn.append(turn.enter(10, database) is not None))
        waiting.start()
        _waiting(database, 1)
        first.leave()
        waiting.join(5)
        assert got_turn == [True]
        yield turn
    finally:
        first.close()
        turn.close()


def test_the_first_in_line_leaves_the_turn_to_its_writer_until_the_pass_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the long pass with one writer in line, long enough to see; a pause between calls
    _set_turns(monkeypatch, long_line=1, pass_ns=500_000_000, idle_ns=500_000_000)
    database = _database(tmp_path)
    order: list[str] = []
    with _a_turn_from_the_line(database) as turn:
        behind = _line_up(database, "behind", order)  # first in line now
        _waiting(database, 2)
        time.sleep(0.05)
        turn.leave()
        assert turn.enter(10, database) is None  # within its pass: at once, though one waits
        order.append("turn again")
        turn.leave()
        behind.join(5)
        assert order == ["turn again", "behind"]


def test_the_first_in_line_takes_the_turn_once_its_writer_stops_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the long pass with one writer in line, never over here
    _set_turns(monkeypatch, long_line=1, pass_ns=20_000_000_000)
    database = _database(tmp_path)
    order: list[str] = []
    with _a_turn_from_the_line(database) as turn:
        behind = _line_up(database, "behind", order)
        _waiting(database, 2)
        turn.leave()  # and `turn` writes no more: the lock stays free
        behind.join(10)  # (within the pass, the join would time out)
        assert order == ["behind"]
        # the turn is `behind`'s now: `turn` lines up like everyone else, and finds nobody
        assert _in_line(database) == 0


def test_a_writer_first_in_line_during_its_own_turn_takes_the_lock_once_it_is_free(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the long pass with one writer in line, never over here; an idle lock long to see
    _set_turns(monkeypatch, long_line=1, pass_ns=20_000_000_000, idle_ns=2_000_000_000)
    database = _database(tmp_path)
    other = WriteQueue(database)
    try:
        with _a_turn_from_the_line(database) as mine:
            mine.leave()
            assert other.enter(10, database) is None  # nobody in line: at once
            got: list[float] = []
            again = threading.Thread(
                target=lambda: (mine.enter(10, database), got.append(time.monotonic()))
            )
            again.start()
            _waiting(database, 2)  # `mine` waits in line, for a turn that is its own
            left = time.monotonic()
            other.leave()
            again.join(10)
            assert got and got[0] - left < 0.5  # not IDLE_FOR after the lock came free
            mine.leave()
    finally:
        other.close()


class _LetGoWhileRead:
    """write_queue._RELEASED, with the holder letting go just after the first read of when
    the lock was last let go (as if the reader were preempted there)."""

    def __init__(self, holder: WriteQueue) -> None:
        self._real = write_queue._RELEASED
        self._holder: WriteQueue | None = holder

    def unpack_from(self, buffer: object, offset: int) -> tuple[int, ...]:
        value = self._real.unpack_from(buffer, offset)  # type: ignore[arg-type]
        holder, self._holder = self._holder, None
        if holder is not None:
            holder.leave()
        return value

    def pack_into(self, buffer: object, offset: int, value: int) -> None:
        self._real.pack_into(buffer, offset, value)  # type: ignore[arg-type]


def test_a_lock_let_go_while_the_first_in_line_looks_is_not_found_idle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = _database(tmp_path)
    holder = WriteQueue(database)
    opened = write_queue._open_mapped(database)
    assert opened is not None
    fd, counters = opened
    try:
        holder.enter(10, database)
        time.sleep(2 * write_queue.IDLE_FOR)  # the last let-go is long past
        assert write_queue._until_idle(fd, counters) > 0  # held
        monkeypatch.setattr(write_queue, "_RELEASED", _LetGoWhileRead(holder))
        # free for microseconds only: the turn's writer has not stopped writing
        assert write_queue._until_idle(fd, counters) > 0
    finally:
        counters.close()
        os.close(fd)
        holder.close()


def test_the_first_in_line_takes_the_turn_idle_for_after_its_writer_let_go_not_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the long pass with one writer in line, never over here; IDLE_FOR long enough to measure
    _set_turns(monkeypatch, long_line=1, pass_ns=20_000_000_000, idle_ns=1_000_000_000)
    database = _database(tmp_path)
    behind = WriteQueue(database)
    try:
        with _a_turn_from_the_line(database) as turn:
            got: list[float] = []
            waiting = threading.Thread(
                target=lambda: (behind.enter(10, database), got.append(time.monotonic()))
            )
            waiting.start()
            _waiting(database, 2)  # first in line: it finds the lock held, and looks again later
            time.sleep(0.1)
            left = time.monotonic()
            turn.leave()  # and `turn` writes no more
            waiting.join(10)
            assert got
            assert 0.9 < got[0] - left < 1.5  # IDLE_FOR after, not up to twice that
            behind.leave()
    finally:
        behind.close()


def test_behind_a_short_line_a_turn_lasts_the_short_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a short pass long enough to see; the long pass never over here; pauses between calls
    _set_turns(
        monkeypatch, long_line=2, short_ns=300_000_000, pass_ns=20_000_000_000,
        idle_ns=20_000_000_000,
    )
    database = _database(tmp_path)
    order: list[str] = []
    with _a_turn_from_the_line(database) as turn:
        behind = _line_up(database, "behind", order)  # one writer in line: a short line
        _waiting(database, 2)
        turn.leave()
        assert turn.enter(10, database) is None  # within the short pass: at once
        order.append("turn again")
        turn.leave()
        behind.join(10)  # (with the long pass, the join would time out)
        assert order == ["turn again", "behind"]
        # once the short pass is over, `turn` lines up: behind the writer now in its turn
        assert _in_line(database) == 0

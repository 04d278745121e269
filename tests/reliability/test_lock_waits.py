"""SQLite: waiting for another connection's write lock answers signals, and nothing an
interrupt stops leaves the lock held."""

from __future__ import annotations

import logging
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from flowstate import DatabaseBusy, Orchestrator
from flowstate.states import Pending, Running, Scheduled

# A child that waits for the lock the test holds, until a signal stops the wait; then it tells
# how long the signal took to act, and (once the test lets go of the lock) makes one more call.
_CHILD = textwrap.dedent(
    """
    import signal, sys, time
    from flowstate import Orchestrator
    from flowstate.states import Running
    if sys.argv[3] == "SIGTERM":
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a graceful shutdown
    else:  # as in a terminal, even when the suite runs as a background job that ignores SIGINT
        signal.signal(signal.SIGINT, signal.default_int_handler)
    orc = Orchestrator(sys.argv[1], busy_timeout=30)
    print("ready", flush=True)
    try:
        orc.set_flow_run_state(sys.argv[2], Running())
        print("not interrupted", flush=True)
    except (KeyboardInterrupt, SystemExit) as exc:
        print("interrupted", type(exc).__name__, flush=True)
    sys.stdin.readline()  # the test has let go of its lock
    print("after", orc.set_flow_run_state(sys.argv[2], Running()).status.value, flush=True)
    sys.stdin.readline()
    """
)


def _scheduled_run(path: Path) -> str:
    with Orchestrator(path) as orc:
        return str(orc.create_flow_run(state=Scheduled()).id)


def _holding_the_write_lock(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=0, check_same_thread=False)
    conn.execute("BEGIN IMMEDIATE")
    return conn


def _line(proc: subprocess.Popen[str], within: float) -> str:
    """The child's next line; fails the test if none comes within ``within`` seconds."""
    import selectors

    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)  # type: ignore[arg-type]
        if not selector.select(within):
            proc.kill()
            pytest.fail(f"no answer from the child within {within} s")
    return proc.stdout.readline().strip()  # type: ignore[union-attr]


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_a_signal_stops_a_lock_wait_at_once_and_leaves_no_lock_held(
    tmp_path: Path, signame: str
) -> None:
    path = tmp_path / "signal.db"
    run_id = _scheduled_run(path)
    holder = _holding_the_write_lock(path)
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(path), run_id, signame],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert _line(proc, 30) == "ready"
        time.sleep(0.3)  # the child is waiting for the lock by now
        sent = time.monotonic()
        proc.send_signal(getattr(signal, signame))
        answer = _line(proc, 5)
        took = time.monotonic() - sent
        expected = "KeyboardInterrupt" if signame == "SIGINT" else "SystemExit"
        assert answer == f"interrupted {expected}"
        assert took < 0.5, f"the signal took {took:.2f} s to stop the wait"
        holder.execute("ROLLBACK")
        proc.stdin.write("\n")  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]
        # the interrupted call left no transaction open: the next one works...
        assert _line(proc, 10) == "after ACCEPT"
        # ...and commits, so the lock is free for everyone else
        holder.execute("BEGIN IMMEDIATE")
        holder.execute("ROLLBACK")
    finally:
        holder.close()
        proc.kill()
        proc.wait()


class _InterruptedAfterBegin:
    """The store's control cursor, with a KeyboardInterrupt arriving just after the first
    BEGIN returned (where a signal received during the lock wait would be acted on)."""

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor
        self.armed = True

    def execute(self, statement: str, *args: Any) -> Any:
        result = self._cursor.execute(statement, *args)
        if self.armed and statement.startswith("BEGIN"):
            self.armed = False
            raise KeyboardInterrupt
        return result


@pytest.mark.parametrize("call", ["write", "read"])
def test_an_interrupt_right_after_begin_rolls_the_transaction_back(
    tmp_path: Path, call: str
) -> None:
    path = tmp_path / "interrupt.db"
    run_id = _scheduled_run(path)
    with Orchestrator(path) as orc:
        store = orc._store
        store._control = _InterruptedAfterBegin(store._control)  # type: ignore[attr-defined]
        with pytest.raises(KeyboardInterrupt):
            if call == "write":
                orc.set_flow_run_state(run_id, Pending())
            else:
                orc.read_flow_run(run_id)
        # another connection can write at once: nothing holds the lock
        with closing(_holding_the_write_lock(path)) as other:
            other.execute("ROLLBACK")
        assert orc.set_flow_run_state(run_id, Pending()).status.value == "ACCEPT"
        assert [s.type.value for s in orc.read_flow_run_states(run_id)] == ["SCHEDULED", "PENDING"]


def test_a_long_lock_wait_is_logged_once_then_ends_in_database_busy(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "notice.db"
    run_id = _scheduled_run(path)
    caplog.set_level(logging.INFO, logger="flowstate.lock")
    with Orchestrator(path, busy_timeout=1.3) as orc, closing(_holding_the_write_lock(path)):
        started = time.monotonic()
        with pytest.raises(DatabaseBusy, match="busy_timeout"):
            orc.set_flow_run_state(run_id, Pending())
        assert 1.3 <= time.monotonic() - started < 2.5
    notices = [r.getMessage() for r in caplog.records if r.name == "flowstate.lock"]
    assert len(notices) == 1, notices
    assert "waiting for the write lock" in notices[0] and str(path) in notices[0]


def test_a_short_lock_wait_is_not_logged_and_the_call_goes_through(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import threading

    path = tmp_path / "short.db"
    run_id = _scheduled_run(path)
    caplog.set_level(logging.INFO, logger="flowstate.lock")
    holder = _holding_the_write_lock(path)
    release = threading.Timer(0.3, holder.execute, ("ROLLBACK",))
    release.start()
    try:
        with Orchestrator(path, busy_timeout=5) as orc:
            assert orc.set_flow_run_state(run_id, Pending()).status.value == "ACCEPT"
    finally:
        release.join()
        holder.close()
    assert not [r for r in caplog.records if r.name == "flowstate.lock"]


def test_reading_does_not_wait_for_a_writer(tmp_path: Path) -> None:
    """Reads run in read transactions: another connection's open write changes nothing."""
    path = tmp_path / "reads.db"
    with Orchestrator(path) as orc:
        run = orc.create_flow_run(flow_name="etl", state=Scheduled())
        task = orc.create_task_run(flow_run_id=run.id, state=Pending())
        orc.create_flow_run_input(run.id, "key", '"value"')
    with Orchestrator(path, busy_timeout=0) as orc, closing(_holding_the_write_lock(path)) as writer:
        writer.execute("UPDATE flow_run SET name = 'uncommitted'")
        assert orc.read_flow_run(run.id).name == run.name  # the committed value
        assert [r.id for r in orc.read_flow_runs()] == [run.id]
        assert [r.id for r in orc.read_flow_runs(state_type="SCHEDULED", flow_name="etl")] == [run.id]
        assert [s.type.value for s in orc.read_flow_run_states(run.id)] == ["SCHEDULED"]
        assert orc.read_flow_run_input(run.id, "key") == '"value"'
        assert orc.read_task_run(task.id).id == task.id
        assert [t.id for t in orc.read_task_runs(flow_run_id=run.id)] == [task.id]
        assert [s.type.value for s in orc.read_task_run_states(task.id)] == ["PENDING"]
        with pytest.raises(DatabaseBusy):  # while a write still waits, as it must
            orc.set_flow_run_state(run.id, Pending())
        writer.execute("ROLLBACK")
        assert orc.set_flow_run_state(run.id, Pending()).status.value == "ACCEPT"
        assert orc.read_flow_run(run.id).state_type.value == "PENDING"


def test_a_read_inside_a_transaction_block_sees_the_blocks_writes(tmp_path: Path) -> None:
    with Orchestrator(tmp_path / "block.db") as orc:
        run = orc.create_flow_run(state=Scheduled())
        with orc.transaction():
            orc.set_flow_run_state(run.id, Pending())
            assert orc.read_flow_run(run.id).state_type.value == "PENDING"
            assert [r.state_type.value for r in orc.read_flow_runs()] == ["PENDING"]
            orc.set_flow_run_state(run.id, Running())
        assert [s.type.value for s in orc.read_flow_run_states(run.id)] == [
            "SCHEDULED", "PENDING", "RUNNING",
        ]

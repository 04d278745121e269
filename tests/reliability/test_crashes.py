"""A process killed with SIGKILL at random moments loses no acknowledged transition (on both
backends: on PostgreSQL the server rolls the dead client's transaction back and frees its locks)."""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import pytest

from flowstate import Orchestrator, SetStateStatus
from flowstate.states import Completed, Pending, Running, Scheduled

from tests.backends import checker, is_postgres_url
from tests.reliability._checks import assert_database_consistent, history_ids

KILLS = 50
FORK = multiprocessing.get_context("fork")
NEXT = {"SCHEDULED": Pending, "PENDING": Running, "RUNNING": Completed}


def _transition_until_killed(path: str, write_fd: int, seed: int, synchronous: str) -> None:
    """Child: make transitions forever, writing 'ack <state id>' once each one has returned."""
    out = os.fdopen(write_fd, "w", buffering=1)
    rng = random.Random(seed)
    orc = Orchestrator(path, synchronous=synchronous)  # type: ignore[arg-type]
    open_runs = [run.id for run in orc.read_flow_runs(state_type="SCHEDULED", limit=20)]
    out.write("ready\n")
    deadline = time.monotonic() + 10  # a safety net: the parent kills long before
    while time.monotonic() < deadline:
        roll = rng.random()
        if roll < 0.25 or not open_runs:
            run = orc.create_flow_run(state=Scheduled())
            open_runs.append(run.id)
            out.write(f"ack {run.state.id}\n")
        elif roll < 0.4:
            with orc.transaction():  # grouped: a task run and two of its states
                task = orc.create_task_run(flow_run_id=rng.choice(open_runs), state=Pending())
                running = orc.set_task_run_state(task.id, Running())
            out.write(f"ack {task.state.id}\nack {running.state.id}\n")
        else:
            run_id = rng.choice(open_runs)
            current = orc.read_flow_run(run_id).state_type.value
            result = orc.set_flow_run_state(run_id, NEXT[current]())
            if result.status is SetStateStatus.ACCEPT:
                out.write(f"ack {result.state.id}\n")
                if result.state.type.value == "COMPLETED":
                    open_runs.remove(run_id)
    os._exit(3)


def read_all(fd: int) -> str:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks).decode()


def kill_at_a_random_moment(path: Path | str, seed: int, rng: random.Random) -> list[str]:
    """Run a child, SIGKILL it after a random delay, return the ids it acknowledged."""
    read_fd, write_fd = os.pipe()
    synchronous = "FULL" if seed % 2 else "NORMAL"
    child = FORK.Process(target=_transition_until_killed, args=(str(path), write_fd, seed, synchronous))
    child.start()
    os.close(write_fd)
    with os.fdopen(read_fd, "rb", buffering=0) as pipe:
        if seed % 5 == 0:  # sometimes while it is still opening the database
            time.sleep(rng.uniform(0.0, 0.01))
        else:
            assert pipe.readline() == b"ready\n"
            time.sleep(rng.uniform(0.0, 0.15))
        os.kill(child.pid, signal.SIGKILL)
        child.join(timeout=30)
        assert child.exitcode == -signal.SIGKILL
        text = read_all(pipe.fileno())
    complete_lines = text.split("\n")[:-1]  # the last piece may be cut mid-line
    return [line.split()[1] for line in complete_lines if line.startswith("ack ")]


def test_sigkilled_writers_lose_no_acknowledged_transition(database: str):
    path = database
    Orchestrator(path).close()
    rng = random.Random(20240605)
    acknowledged: set[str] = set()
    for kill in range(KILLS):
        acknowledged.update(kill_at_a_random_moment(path, kill, rng))
        assert_database_consistent(path)  # integrity ok, each run's state = newest history entry
        lost = acknowledged - history_ids(path)
        assert lost == set(), f"after kill {kill + 1}: {len(lost)} acknowledged transitions lost"
    with Orchestrator(path) as orc:  # the database opens and carries on
        run = orc.create_flow_run(state=Scheduled())
        assert orc.set_flow_run_state(run.id, Pending()).status is SetStateStatus.ACCEPT
    assert_database_consistent(path)
    print(f"\ncrashes: {KILLS} SIGKILLs, {len(acknowledged)} acknowledged transitions, 0 lost")
    assert len(acknowledged) > KILLS  # the children did real work between kills


def table_contents(path: Path | str) -> dict[str, list[tuple]]:
    if is_postgres_url(str(path)):
        conn = checker(str(path))
        names = [
            row[0]
            for row in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
            )
        ]
        return {name: sorted(conn.execute(f"SELECT * FROM {name}").fetchall(), key=repr) for name in names}
    with closing(sqlite3.connect(path)) as conn:
        names = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {name: sorted(conn.execute(f"SELECT * FROM {name}").fetchall(), key=repr) for name in names}


def test_an_exception_inside_a_transaction_rolls_all_of_it_back(database: str):
    path = database
    with Orchestrator(path) as orc:
        kept = orc.create_flow_run(state=Scheduled())
        before = table_contents(path)
        with pytest.raises(RuntimeError, match="boom"):
            with orc.transaction():
                orc.set_flow_run_state(kept.id, Pending())
                other = orc.create_flow_run(state=Scheduled())
                orc.create_flow_run_input(other.id, "note", "x")
                task = orc.create_task_run(flow_run_id=kept.id, state=Pending())
                orc.set_task_run_state(task.id, Running())
                with orc.transaction():  # a nested block that succeeded is undone too
                    orc.set_flow_run_state(other.id, Pending())
                raise RuntimeError("boom")
        assert table_contents(path) == before
        assert orc.read_flow_run(kept.id).state_type.value == "SCHEDULED"
    assert_database_consistent(path)

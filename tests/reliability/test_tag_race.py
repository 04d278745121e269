"""Eight processes drive 400 task runs tagged ``db`` under a tag limit of 2: at no instant do
more than 2 of them hold RUNNING, none is lost, each finishes. And a process holding a tag slot
that is killed (SIGKILL) loses the slot once its lease expires.

Checked from the stored histories, on both backends (the ``database`` fixture). A task run
refused a slot gets WAIT with a delay of 2 s (Prefect's); the workers here ask again after a
few milliseconds instead, so the test takes seconds, not minutes.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from flowstate import Orchestrator, SetStateStatus, StateType
from flowstate.concurrency.tags import TASK_SLOT_LEASE_SECONDS
from flowstate.states import Completed, Pending, Running

from tests.reliability._checks import race

PROCESSES = 8
RUNS_EACH = 50
LIMIT = 2
FORK = multiprocessing.get_context("fork")


def _drive(path: str, flow_run_id: str, seed: int, start: Any, results: Any) -> None:
    """Child: create RUNS_EACH task runs tagged ``db``, then take each PENDING -> RUNNING
    (asking again after a short pause while the tag is full) -> COMPLETED."""
    try:
        rng = random.Random(seed)
        with Orchestrator(path) as orc:
            start.wait()
            made = [
                orc.create_task_run(flow_run_id=flow_run_id, dynamic_key=f"{seed}-{n}", tags=["db"]).id
                for n in range(RUNS_EACH)
            ]
            waits = 0
            for run_id in made:
                assert orc.set_task_run_state(run_id, Pending()).status is SetStateStatus.ACCEPT
                while True:
                    result = orc.set_task_run_state(run_id, Running())
                    if result.status is SetStateStatus.ACCEPT:
                        break
                    assert result.status is SetStateStatus.WAIT, result
                    assert result.details.reason == "Concurrency limit reached for tags: db"
                    waits += 1
                    time.sleep(rng.uniform(0.001, 0.005))  # instead of delay_seconds
                time.sleep(rng.uniform(0.0, 0.002))  # the task's work
                done = orc.set_task_run_state(run_id, Completed())
                assert done.status is SetStateStatus.ACCEPT, done
            results.put(("ok", [str(run_id) for run_id in made], waits))
    except BaseException as exc:  # reported to the parent, which fails the test
        results.put(("error", f"{type(exc).__name__}: {exc}", 0))


def test_a_tag_limit_of_two_never_lets_three_task_runs_run_at_once(database):
    with Orchestrator(database) as orc:
        orc.create_concurrency_limit("db", LIMIT)
        flow = orc.create_flow_run(state=Running())
    run_ids, competed = race(_drive, database, str(flow.id), PROCESSES)
    assert len(run_ids) == PROCESSES * RUNS_EACH
    assert competed > 0  # they did compete for the slots

    with Orchestrator(database) as orc:
        runs = orc.read_task_runs(flow_run_id=flow.id, limit=1000)
        assert {str(run.id) for run in runs} == run_ids  # none lost
        events = []
        for run in runs:
            history = orc.read_task_run_states(run.id)
            assert [s.type for s in history] == [  # each finished; a WAIT writes nothing
                StateType.PENDING, StateType.RUNNING, StateType.COMPLETED]
            events.append((history[1].timestamp, 1))
            events.append((history[2].timestamp, -1))
        running = most = 0
        for _, change in sorted(events):  # at one instant, a COMPLETED before a RUNNING
            running += change
            most = max(most, running)
        assert most == LIMIT, f"at most {most} task runs were RUNNING at once"
        assert orc.read_global_concurrency_limit("tag:db").active_slots == 0
        assert orc.read_concurrency_limit("db").active_slots == []
        assert orc.read_concurrency_leases() == []


def _hold_a_slot(path: str, run_id: str, holding: Any) -> None:
    """Child: take the tag slot, say so, and wait to be killed."""
    with Orchestrator(path) as orc:
        result = orc.set_task_run_state(run_id, Running())
        holding.put(result.status.value)
        time.sleep(120)


def test_a_killed_holder_loses_its_tag_slot_once_its_lease_expires(database):
    with Orchestrator(database) as orc:
        orc.create_concurrency_limit("db", 1)
        flow = orc.create_flow_run(state=Running())
        killed = orc.create_task_run(flow_run_id=flow.id, dynamic_key="killed", tags=["db"])
        waiting = orc.create_task_run(flow_run_id=flow.id, dynamic_key="waiting", tags=["db"])
    holding = FORK.Queue()
    child = FORK.Process(target=_hold_a_slot, args=(database, str(killed.id), holding))
    child.start()
    try:
        assert holding.get(timeout=60) == "ACCEPT"
    finally:
        os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
        child.join(timeout=30)
    assert child.exitcode == -signal.SIGKILL

    with Orchestrator(database) as orc:
        assert orc.set_task_run_state(waiting.id, Running()).status is SetStateStatus.WAIT
        assert orc.read_concurrency_limit("db").active_slots == [killed.id]
        soon = datetime.now(timezone.utc) + timedelta(seconds=TASK_SLOT_LEASE_SECONDS - 30)
        assert orc.expire_leases(now=soon) == []  # not expired yet: the slot stays held
        later = datetime.now(timezone.utc) + timedelta(seconds=TASK_SLOT_LEASE_SECONDS + 30)
        assert [lease.holder.id for lease in orc.expire_leases(now=later)] == [killed.id]
        assert orc.read_global_concurrency_limit("tag:db").active_slots == 0
        assert orc.set_task_run_state(waiting.id, Running()).status is SetStateStatus.ACCEPT
        assert orc.read_concurrency_limit("db").active_slots == [waiting.id]

"""The in-memory store (``ReferenceOrchestrator``): real transactions, copies, cascades.

Each test runs on SQLite too, so what it asserts is what a database does. The conformance
vectors and the differential test drive the memory store through the whole API; these check
what those cannot see: a rolled-back block, a nested one, and objects shared with the caller.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from flowstate import DatabaseError, ObjectAlreadyExists, ObjectNotFound, Orchestrator, StateType
from flowstate.rules import CORE_FLOW, rule
from flowstate.states import Paused, Pending, Running, State
from flowstate.testing import FrozenClock, ReferenceOrchestrator, normalise


@pytest.fixture(params=["sqlite", "memory"])
def orc(request: pytest.FixtureRequest) -> Iterator[Orchestrator]:
    clock, uniform = FrozenClock(), random.Random(0).uniform
    if request.param == "memory":
        engine: Orchestrator = ReferenceOrchestrator(clock=clock, uniform=uniform)
    else:
        engine = Orchestrator(":memory:", clock=clock, uniform=uniform)
    with engine:
        yield engine


def picture(orc: Orchestrator) -> Any:
    """Everything the API shows of what is stored."""
    flows, tasks = orc.read_flow_runs(), orc.read_task_runs()
    return normalise({
        "flows": flows,
        "tasks": tasks,
        "histories": [orc.read_flow_run_states(r.id) for r in flows]
        + [orc.read_task_run_states(r.id) for r in tasks],
        "inputs": [_input(orc, r.id, f"key-{tag}") for r in flows for tag in TAGS],
        "limits": orc.read_global_concurrency_limits(),
        "tag limits": orc.read_concurrency_limits(),
        "leases": orc.read_concurrency_leases(),
        "deployments": orc.read_deployments(),
    })


TAGS = ("kept", "lost", "outer", "inner", "after")


def _input(orc: Orchestrator, run_id: Any, key: str) -> str | None:
    try:
        return orc.read_flow_run_input(run_id, key)
    except ObjectNotFound:
        return None


def busy_day(orc: Orchestrator, tag: str) -> None:
    """One of each kind of write."""
    run = orc.create_flow_run(flow_name=f"f-{tag}", state=Running())
    orc.set_flow_run_state(run.id, Paused(pause_key=tag))
    orc.create_flow_run_input(run.id, f"key-{tag}", "value")
    task = orc.create_task_run(flow_run_id=run.id, task_key=tag, tags=[tag])
    orc.set_task_run_state(task.id, Pending())
    orc.create_global_concurrency_limit(f"limit-{tag}", 2)
    orc.increment_concurrency_slots_with_lease(f"limit-{tag}", 1)
    orc.create_concurrency_limit(tag, 3)
    orc.create_deployment(f"deployment-{tag}", concurrency_limit=1)


def test_a_block_that_fails_leaves_nothing_behind(orc: Orchestrator) -> None:
    busy_day(orc, "kept")
    before = picture(orc)
    with pytest.raises(RuntimeError), orc.transaction():
        busy_day(orc, "lost")
        orc.delete_flow_run(orc.read_flow_runs()[0].id)
        raise RuntimeError("stop")
    assert picture(orc) == before


def test_a_nested_block_rolled_back_keeps_the_outer_blocks_writes(orc: Orchestrator) -> None:
    with orc.transaction():
        busy_day(orc, "outer")
        middle = picture(orc)
        with pytest.raises(RuntimeError), orc.transaction():
            busy_day(orc, "inner")
            raise RuntimeError("stop")
        assert picture(orc) == middle
        busy_day(orc, "after")
    names = [run.flow_name for run in orc.read_flow_runs()]
    assert names == ["f-outer", "f-after"]


def test_a_refused_call_in_a_block_writes_nothing_and_the_block_commits(orc: Orchestrator) -> None:
    with orc.transaction():
        run = orc.create_flow_run(state=Running())
        orc.create_flow_run_input(run.id, "key", "first")
        with pytest.raises(ObjectAlreadyExists):
            orc.create_flow_run_input(run.id, "key", "second")
        with pytest.raises(ObjectAlreadyExists):
            orc.create_flow_run(id=run.id)
    assert orc.read_flow_run_input(run.id, "key") == "first"
    assert [state.type for state in orc.read_flow_run_states(run.id)] == ["RUNNING"]


def test_a_reader_gets_its_own_copy_and_a_writer_keeps_its_own(orc: Orchestrator) -> None:
    parameters = {"rows": [1, 2]}
    run = orc.create_flow_run(parameters=parameters, state=Running())
    parameters["rows"].append(3)
    read = orc.read_flow_run(run.id)
    read.parameters["rows"].append(4)
    read.empirical_policy.pause_keys.add("mine")
    again = orc.read_flow_run(run.id)
    assert again.parameters == {"rows": [1, 2]}
    assert again.empirical_policy.pause_keys == set()
    assert normalise(again) == normalise(orc.read_flow_run(run.id))
    data: dict[str, Any] = {"value": [1]}
    task = orc.create_task_run(flow_run_id=run.id)
    orc.set_task_run_state(task.id, Running())
    orc.set_task_run_state(task.id, State.model_validate({"type": "COMPLETED", "data": data}))
    data["value"].append(2)
    assert orc.read_task_run_states(task.id)[-1].data == {"value": [1]}


def test_deleting_a_flow_run_deletes_what_hangs_on_it(orc: Orchestrator) -> None:
    run = orc.create_flow_run(state=Running(), heartbeat_timeout=30)
    orc.create_flow_run_input(run.id, "key", "value")
    task = orc.create_task_run(flow_run_id=run.id)
    cached = State.model_validate({"type": "COMPLETED", "state_details": {"cache_key": "k"}})
    orc.set_task_run_state(task.id, Running())
    orc.set_task_run_state(task.id, cached)
    assert _cache_hit(orc) == "COMPLETED"
    orc.delete_flow_run(run.id)
    for read in (orc.read_flow_run, orc.read_flow_run_states, orc.read_task_run):
        with pytest.raises(ObjectNotFound):
            read(run.id if read is not orc.read_task_run else task.id)
    with pytest.raises(ObjectNotFound):
        orc.read_flow_run_input(run.id, "key")
    assert _cache_hit(orc) == "RUNNING"  # no cached state left


def _cache_hit(orc: Orchestrator) -> str:
    """The state a new task run proposing Running with the cache key "k" gets."""
    other = orc.create_task_run()
    orc.set_task_run_state(other.id, Pending())
    proposed = State.model_validate({"type": "RUNNING", "state_details": {"cache_key": "k"}})
    result = orc.set_task_run_state(other.id, proposed)
    assert result.state is not None
    return result.state.type.value


def test_a_closed_orchestrator_refuses_every_call(orc: Orchestrator) -> None:
    run = orc.create_flow_run()
    orc.close()
    with pytest.raises(DatabaseError, match="closed"):
        orc.read_flow_run(run.id)
    with pytest.raises(DatabaseError, match="closed"), orc.transaction():
        pass


@rule(from_=None, to=StateType.PENDING, name="slow-start")
def slow_start(ctx: Any) -> None:
    """Leaves time between reading the run and saving the transition."""
    time.sleep(0.005)


def test_threads_sharing_it_take_turns_a_whole_block_at_a_time(orc: Orchestrator) -> None:
    orc.flow_policy = CORE_FLOW.append(slow_start)
    run = orc.create_flow_run()
    results: list[str] = []

    def start() -> None:
        with orc.transaction():
            answer = orc.set_flow_run_state(run.id, Pending())
            results.append(answer.status.value)

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["ABORT"] * 7 + ["ACCEPT"]
    assert [s.type for s in orc.read_flow_run_states(run.id)] == ["PENDING"]

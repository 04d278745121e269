"""Eight processes create, submit and drive the runs of one deployment with a limit of 1
(ENQUEUE): never two of its runs are in PENDING/RUNNING at once, none is lost, each finishes.

Checked from the stored histories, on both backends (the ``database`` fixture). A run refused
a slot is rescheduled ``AwaitingConcurrencySlot`` 30 s ahead; the workers here do not wait for
that time, they submit it again after a few milliseconds with a scheduled time of now (what a
worker deciding to start it at once would do), so the test takes seconds, not minutes.
"""

from __future__ import annotations

import random
import time
from datetime import datetime, timezone
from typing import Any

from flowstate import Orchestrator, SetStateStatus, StateType
from flowstate.states import Completed, Running, Scheduled, State, StateDetails

from tests.reliability._checks import race

PROCESSES = 8
RUNS_EACH = 5
HOLDING = {StateType.PENDING, StateType.RUNNING, StateType.CANCELLING}


def _submit_now() -> State:
    return State(
        type=StateType.PENDING,
        state_details=StateDetails(scheduled_time=datetime.now(timezone.utc)),
    )


def _drive(path: str, deployment_id: str, seed: int, start: Any, results: Any) -> None:
    """Child: create RUNS_EACH runs, then submit, run and complete each in turn, submitting
    again after a short pause whenever the deployment's slot is taken."""
    try:
        rng = random.Random(seed)
        with Orchestrator(path) as orc:
            start.wait()
            made = [orc.create_flow_run(deployment_id=deployment_id, state=Scheduled()).id
                    for _ in range(RUNS_EACH)]
            refusals = 0
            for run_id in made:
                while True:
                    result = orc.set_flow_run_state(run_id, _submit_now())
                    if result.status is SetStateStatus.ACCEPT:
                        break
                    assert result.state.name == "AwaitingConcurrencySlot", result
                    refusals += 1
                    time.sleep(rng.uniform(0.002, 0.01))
                running = orc.set_flow_run_state(run_id, Running())
                assert running.status is SetStateStatus.ACCEPT, running
                time.sleep(rng.uniform(0.001, 0.004))  # the run's work
                done = orc.set_flow_run_state(run_id, Completed())
                assert done.status is SetStateStatus.ACCEPT, done
            results.put(("ok", [str(run_id) for run_id in made], refusals))
    except BaseException as exc:  # reported to the parent, which fails the test
        results.put(("error", f"{type(exc).__name__}: {exc}", 0))


def test_a_deployment_limit_of_one_never_lets_two_of_its_runs_hold_a_slot(database):
    with Orchestrator(database) as orc:
        deployment = orc.create_deployment("nightly", concurrency_limit=1,
                                           collision_strategy="ENQUEUE")
    run_ids, competed = race(_drive, database, str(deployment.id), PROCESSES)
    assert len(run_ids) == PROCESSES * RUNS_EACH
    assert competed > 0  # they did compete for the slot

    with Orchestrator(database) as orc:
        runs = orc.read_flow_runs(limit=1000)
        assert {str(run.id) for run in runs} == run_ids  # none lost
        assert all(run.state_type is StateType.COMPLETED for run in runs)  # each finished
        spans = []
        for run in runs:
            history = orc.read_flow_run_states(run.id)
            assert [s.type for s in history if s.type in HOLDING] == [
                StateType.PENDING, StateType.RUNNING]
            entered = next(i for i, s in enumerate(history) if s.type in HOLDING)
            left = next(i for i in range(entered, len(history)) if history[i].type not in HOLDING)
            spans.append((history[entered].timestamp, history[left].timestamp, run.id))
        spans.sort()
        for (_, left, first), (entered, _, second) in zip(spans, spans[1:]):
            assert left <= entered, f"runs {first} and {second} held the slot at once"
        limit = orc.read_deployment(deployment.id).global_concurrency_limit
        assert limit is not None and limit.active_slots == 0
        assert orc.read_concurrency_leases() == []

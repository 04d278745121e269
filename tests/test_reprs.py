"""States and runs print as the constructor calls a user would write, with the details that
decide orchestration; their JSON is untouched."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timezone

import pytest

from flowstate import Orchestrator, State
from flowstate.states import (
    AwaitingRetry,
    Cached,
    Completed,
    Failed,
    Late,
    Paused,
    Pending,
    Retrying,
    Running,
    Scheduled,
    Suspended,
)

NINE = datetime(2024, 1, 1, 9, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("state", "shown"),
    [
        (Running(), "Running()"),
        (Retrying(), "Retrying()"),
        (Pending(name="Submitting"), "Pending(name='Submitting')"),
        (Scheduled(NINE), "Scheduled(scheduled_time='2024-01-01T09:00:00Z')"),
        (Late(NINE), "Late(scheduled_time='2024-01-01T09:00:00Z')"),
        (AwaitingRetry(NINE), "AwaitingRetry(scheduled_time='2024-01-01T09:00:00Z')"),
        (Paused(pause_key="b"), "Paused(pause_key='b')"),
        (Paused(pause_expiration_time=NINE, reschedule=True, pause_key="b"),
         "Paused(pause_key='b', pause_expiration_time='2024-01-01T09:00:00Z', reschedule=True)"),
        (Suspended(pause_key="b"), "Suspended(pause_key='b')"),
        (Paused(run_input_keyset={"response": "r"}), "Paused(run_input_keyset={'response': 'r'})"),
        (Cached(cache_key="k", cache_expiration=NINE),
         "Cached(cache_key='k', cache_expiration='2024-01-01T09:00:00Z')"),
        (Completed(data={"type": "unpersisted"}), "Completed(data={'type': 'unpersisted'})"),
        (Failed(retriable=False, message="boom"), "Failed(retriable=False)"),
        (Running(refresh_cache=True, cache_key="k"), "Running(cache_key='k', refresh_cache=True)"),
        (State(type="RUNNING", name="Custom"), "Running(name='Custom')"),
        (State.model_validate({"type": "PAUSED", "name": "Suspended"}),
         "Suspended(pause_reschedule=False)"),
    ],
)
def test_a_state_prints_as_its_constructor_call(state: State, shown: str) -> None:
    assert repr(state) == shown


def test_the_repr_leaves_the_json_alone() -> None:
    state = Paused(pause_key="b", pause_expiration_time=NINE, message="waiting")
    dumped = state.model_dump(mode="json")
    assert dumped["id"] == str(state.id) and dumped["message"] == "waiting"
    assert set(dumped) == {"id", "type", "name", "timestamp", "message", "data", "state_details"}
    assert State.model_validate_json(state.model_dump_json()) == state
    assert "id=" not in repr(state) and "waiting" not in repr(state)


def test_a_long_result_is_cut() -> None:
    assert repr(Completed(data="x" * 500)).endswith("...)")
    assert len(repr(Completed(data="x" * 500))) < 100


def test_runs_print_their_state_counters_and_policy() -> None:
    with Orchestrator(":memory:") as orc:
        run = orc.create_flow_run(name="nightly", empirical_policy={"retries": 2}, state=Running(),
                                  parameters={"secret": "not shown"})
        orc.set_flow_run_state(run.id, Paused(pause_key="approval"))
        flow = orc.read_flow_run(run.id)
        task = orc.read_task_run(orc.create_task_run(flow_run_id=run.id, name="t").id)
    shown = repr(flow)
    assert shown.startswith(f"FlowRun(id='{flow.id}', name='nightly', state=Paused(pause_key='approval')")
    assert "run_count=1" in shown and "retries=2" in shown and "pause_keys={'approval'}" in shown
    assert "secret" not in shown and "parameters" not in shown
    assert repr(task) == f"TaskRun(id='{task.id}', name='t', state=None, flow_run_id='{flow.id}')"
    assert flow.model_dump(mode="json")["parameters"] == {"secret": "not shown"}


def test_import_flowstate_does_not_load_the_repr_module() -> None:
    out = subprocess.run(
        [sys.executable, "-c",
         "import sys, flowstate; from flowstate.states import Running; Running(); "
         "print('flowstate._repr' in sys.modules)"],
        capture_output=True, text=True, check=True,
    )
    assert out.stdout.strip() == "False"


def test_a_subclass_of_a_run_prints_with_the_fields_of_its_kind() -> None:
    from uuid import UUID

    from flowstate import FlowRun, TaskRun

    class NightlyRun(FlowRun):
        pass

    class StepRun(TaskRun):
        pass

    flow = NightlyRun(id=UUID(int=1), name="nightly", empirical_policy={"retries": 2})
    task = StepRun(id=UUID(int=2), name="step", task_key="t", dynamic_key="0",
                   flow_run_id=UUID(int=1))
    assert repr(flow) == (
        "NightlyRun(id='00000000-0000-0000-0000-000000000001', name='nightly', state=None, "
        "retries=2)"
    )
    assert repr(task) == (
        "StepRun(id='00000000-0000-0000-0000-000000000002', name='step', state=None, "
        "flow_run_id='00000000-0000-0000-0000-000000000001')"
    )

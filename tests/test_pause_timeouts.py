"""Pause timeouts: checked when the state is built, counted on the orchestrator's clock."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from flowstate import InvalidState, Orchestrator, SetStateStatus, StateType
from flowstate.states import Paused, Running, Suspended
from flowstate.testing import FrozenClock

START = datetime(2024, 1, 1, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (float("inf"), "finite"),
        (float("-inf"), "finite"),
        (float("nan"), "finite"),
        (1e13, "year 9999"),
        (1e300, "year 9999"),
        (10**400, "year 9999"),
        ("60", "not str"),
        (True, "not bool"),
        ([60], "not list"),
    ],
)
def test_a_timeout_that_is_no_usable_number_of_seconds_is_invalid_state(value, words) -> None:
    for constructor in (Paused, Suspended):
        with pytest.raises(InvalidState, match="timeout_seconds") as caught:
            constructor(timeout_seconds=value)
        assert words in str(caught.value)


def test_two_timeouts_are_invalid_state() -> None:
    with pytest.raises(InvalidState, match="not both"):
        Paused(timeout_seconds=5, pause_expiration_time=START)


def test_a_relative_timeout_counts_from_the_orchestrators_clock(backend) -> None:
    database = backend.new_database()
    clock = FrozenClock(START)
    try:
        with Orchestrator(database, clock=clock) as orc:
            run = orc.create_flow_run(state=Running())
            clock.advance(10)
            result = orc.set_flow_run_state(run.id, Paused(timeout_seconds=60, pause_key="k"))
            assert result.status is SetStateStatus.ACCEPT
            deadline = START + timedelta(seconds=70)
            assert result.state.state_details.pause_timeout == deadline
            assert type(result.state.state_details.pause_timeout) is datetime
            stored = orc.read_flow_run(run.id).state
            assert stored.state_details.pause_timeout == deadline
            clock.advance(60)  # exactly at the deadline: not yet expired
            assert orc.resume_flow_run(run.id).state.type is StateType.RUNNING
    finally:
        backend.drop(database)


def test_a_relative_pause_expires_when_the_frozen_clock_passes_it() -> None:
    clock = FrozenClock(START)
    with Orchestrator(":memory:", clock=clock) as orc:
        run = orc.create_flow_run(state=Running())
        orc.set_flow_run_state(run.id, Paused(timeout_seconds=60))
        clock.advance(61)
        result = orc.resume_flow_run(run.id)
        assert (result.status, result.state.type) == (SetStateStatus.REJECT, StateType.FAILED)
        assert result.details.reason == "The flow run pause has timed out and can no longer resume."


def test_a_relative_timeout_a_task_run_is_paused_with_counts_from_the_clock_too() -> None:
    clock = FrozenClock(START)
    with Orchestrator(":memory:", clock=clock) as orc:
        flow = orc.create_flow_run(state=Running())
        task = orc.create_task_run(flow_run_id=flow.id, state=Running())
        result = orc.set_task_run_state(task.id, Paused(timeout_seconds=30), force=True)
        assert result.state.state_details.pause_timeout == START + timedelta(seconds=30)


def test_a_relative_timeout_out_of_range_on_the_clock_is_invalid_state_and_writes_nothing() -> None:
    clock = FrozenClock(datetime(9999, 12, 31, tzinfo=timezone.utc))
    with Orchestrator(":memory:", clock=clock) as orc:
        run = orc.create_flow_run(state=Running())
        with pytest.raises(InvalidState, match="year 9999"):
            orc.set_flow_run_state(run.id, Paused(timeout_seconds=2 * 86400))
        assert [s.type for s in orc.read_flow_run_states(run.id)] == [StateType.RUNNING]


def test_before_it_is_proposed_a_relative_timeout_shows_the_real_clocks_deadline() -> None:
    before = datetime.now(timezone.utc)
    shown = Paused(timeout_seconds=60).state_details.pause_timeout
    assert before + timedelta(seconds=60) <= shown <= datetime.now(timezone.utc) + timedelta(
        seconds=60
    )
    assert Paused(timeout_seconds=60).model_dump(mode="json")["state_details"]["pause_timeout"]


@pytest.mark.parametrize(
    "value", [10**400, 10**20, -1, float("nan"), float("inf"), "60", True], ids=repr
)
def test_pause_flow_run_with_a_timeout_no_pause_can_have_is_invalid_state(value) -> None:
    # 10**400 raised a raw OverflowError (int too large to convert to float)
    with Orchestrator(":memory:") as orc:
        run = orc.create_flow_run(state=Running())
        with pytest.raises(InvalidState, match="timeout"):
            orc.pause_flow_run(run.id, timeout=value)
        assert orc.read_flow_run(run.id).state.type is StateType.RUNNING

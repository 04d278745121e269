"""Models: Prefect's JSON shapes, defaults and UTC handling."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import flowstate
from flowstate import InvalidState, OrchestrationResult, State, StateType
from flowstate.states import (
    AwaitingRetry, Cached, Late, Paused, Pending, Retrying, Running, Scheduled, Suspended,
)

SEED = json.loads("""
{"state": {"id": "3c90c3cc-0d44-4b50-8888-8dd25736052a", "type": "SCHEDULED", "name": "<string>",
  "timestamp": "2023-11-07T05:31:56Z", "message": "Run started", "data": "<unknown>",
  "state_details": {"flow_run_id": "3c90c3cc-0d44-4b50-8888-8dd25736052a",
   "task_run_id": "3c90c3cc-0d44-4b50-8888-8dd25736052a",
   "child_flow_run_id": "3c90c3cc-0d44-4b50-8888-8dd25736052a",
   "scheduled_time": "2023-11-07T05:31:56Z", "cache_key": "<string>",
   "cache_expiration": "2023-11-07T05:31:56Z", "deferred": false, "untrackable_result": false,
   "pause_timeout": "2023-11-07T05:31:56Z", "pause_reschedule": false, "pause_key": "<string>",
   "run_input_keyset": {}, "refresh_cache": true, "retriable": true,
   "transition_id": "3c90c3cc-0d44-4b50-8888-8dd25736052a",
   "task_parameters_id": "3c90c3cc-0d44-4b50-8888-8dd25736052a", "traceparent": "<string>",
   "deployment_concurrency_lease_id": "3c90c3cc-0d44-4b50-8888-8dd25736052a"}},
 "status": "ACCEPT", "details": {"type": "accept_details"}}
""")


def test_the_seed_example_round_trips_exactly():
    result = OrchestrationResult.model_validate(SEED)
    assert result.model_dump(mode="json") == SEED
    assert list(result.model_dump(mode="json")["state"]["state_details"]) == list(
        SEED["state"]["state_details"])


@pytest.mark.parametrize("details", [
    {"type": "reject_details", "reason": "r"},
    {"type": "abort_details", "reason": "a"},
    {"type": "wait_details", "delay_seconds": 3, "reason": "w"},
])
def test_every_details_shape_round_trips(details):
    payload = {"state": None, "status": "REJECT", "details": details}
    assert OrchestrationResult.model_validate(payload).model_dump(mode="json") == payload


def test_state_json_has_prefects_keys_in_order():
    dumped = Running().model_dump(mode="json")
    assert list(dumped) == ["id", "type", "name", "timestamp", "message", "data", "state_details"]
    assert dumped["timestamp"].endswith("Z")


def test_names_default_to_the_capitalised_type():
    assert [State(type=t).name for t in StateType] == [
        "Scheduled", "Pending", "Running", "Completed", "Failed", "Cancelled", "Crashed",
        "Paused", "Cancelling"]


def test_a_naive_datetime_is_taken_as_utc():
    naive = datetime(2030, 1, 1, 12, 0)
    state = Scheduled(scheduled_time=naive)
    assert state.state_details.scheduled_time == naive.replace(tzinfo=timezone.utc)
    other_zone = datetime(2030, 1, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    assert Scheduled(other_zone).state_details.scheduled_time.tzinfo is timezone.utc


def test_constructors_set_prefects_names_and_details():
    assert Late().name == "Late" and AwaitingRetry().name == "AwaitingRetry"
    assert Retrying().name == "Retrying" and Pending(name="Submitting").name == "Submitting"
    assert Cached(cache_key="k").state_details.cache_key == "k"
    pause = Paused(timeout_seconds=60, pause_key="k")
    assert pause.state_details.pause_timeout is not None and not pause.state_details.pause_reschedule
    suspend = Suspended(pause_key="s")
    assert suspend.name == "Suspended" and suspend.state_details.pause_reschedule


def test_paused_refuses_two_timeouts():
    with pytest.raises(ValueError):
        Paused(timeout_seconds=5, pause_expiration_time=datetime.now(timezone.utc))


def test_run_models_serialise_durations_as_seconds():
    with flowstate.Orchestrator(":memory:") as orc:
        run = orc.create_flow_run()
        assert run.model_dump(mode="json")["total_run_time"] == 0.0


def _as_built(state: State) -> tuple:
    details = state.state_details
    values = {k: (type(v), v) for k, v in state.__dict__.items() if k not in ("id", "timestamp")}
    values.pop("state_details")
    return (
        type(state.id), type(state.timestamp), state.timestamp.tzinfo,
        values, state.model_fields_set, state.__pydantic_extra__, state.__pydantic_private__,
        {k: (type(v), v) for k, v in details.__dict__.items()}, details.model_fields_set,
        details.__pydantic_extra__, details.__pydantic_private__,
    )


_detail_args = st.fixed_dictionaries(
    {},
    optional={
        "pause_key": st.none() | st.text(max_size=4) | st.integers(0, 3),
        "cache_key": st.none() | st.text(max_size=4),
        "pause_reschedule": st.booleans() | st.none() | st.integers(0, 1),
        "refresh_cache": st.none() | st.booleans(),
        "deferred": st.none() | st.booleans(),
        "untrackable_result": st.none() | st.booleans(),
        "retriable": st.none() | st.booleans() | st.just("yes"),
        "traceparent": st.none() | st.text(max_size=3),
        "run_input_keyset": st.none() | st.just({"response": "k"}),
        "flow_run_id": st.none() | st.uuids().map(str),
        "scheduled_time": st.none() | st.just("2026-01-01T00:00:00Z"),
        "not_a_field": st.none(),
    },
)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(list(StateType)),
    st.none() | st.text(max_size=5),
    st.none() | st.text(max_size=5),
    st.none() | st.just({"type": "reference"}),
    _detail_args,
)
def test_constructors_build_what_validation_builds(type_, name, message, data, details) -> None:  # type: ignore[no-untyped-def]
    from flowstate.states import _state, _validated_state

    try:
        expected = _validated_state(type_, name, message, data, **details)
    except InvalidState:  # (pydantic's ValidationError, as the constructors raise it)
        with pytest.raises(InvalidState):
            _state(type_, name, message, data, details)
        return
    assert _as_built(_state(type_, name, message, data, details)) == _as_built(expected)


@pytest.mark.parametrize("type_", list(StateType))
def test_a_plain_state_is_what_validation_builds(type_: StateType) -> None:
    from flowstate.states import plain_state

    assert _as_built(plain_state(type_)) == _as_built(State(type=type_))

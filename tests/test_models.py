"""Models: Prefect's JSON shapes, defaults and UTC handling."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

import flowstate
from flowstate import OrchestrationResult, State, StateType
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

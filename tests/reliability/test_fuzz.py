"""Hypothesis throws invalid and hostile values at the public API, on both backends.

Every call must end in a FlowstateError or a result, never a raw sqlite3/psycopg/pydantic/Unicode
error, and after every call each run's row agrees with its history.
"""

from __future__ import annotations

import json
from datetime import timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowstate import FlowstateError, OrchestrationResult, Orchestrator, StateType
from flowstate.states import Paused, Running, Scheduled

from tests.backends import Backend
from tests.conftest import BACKENDS
from tests.reliability._checks import assert_database_consistent

FUZZ = settings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.data_too_large],
)

odd_text = st.one_of(
    st.text(max_size=20),
    st.text(st.characters(codec=None, categories=["Cs", "Co", "Cc", "Mn", "So"]), max_size=8),
    st.sampled_from(["\ud800", "a\x00b", "\udfff\ud800", "\u202e\ufeff", "\U0010ffff", "x" * 200_000]),
)
huge_int = st.one_of(st.integers(), st.sampled_from([2**63, -(2**63) - 1, 2**200]))
odd_float = st.one_of(st.floats(), st.sampled_from([float("nan"), float("inf"), -1e308, 1e308]))
odd_time = st.one_of(
    st.datetimes(),  # naive
    st.datetimes(timezones=st.sampled_from([timezone.utc, timezone(timedelta(hours=14)), timezone(-timedelta(hours=12))])),
    st.sampled_from(["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "yesterday", "2024-02-30T00:00:00Z"]),
)
scalar = st.one_of(st.none(), st.booleans(), huge_int, odd_float, odd_text, st.binary(max_size=8), odd_time)
value = st.recursive(scalar, lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(odd_text, inner, max_size=3)), max_leaves=8)
bad_id = st.one_of(
    st.uuids(), st.uuids().map(str), odd_text, huge_int, st.none(), st.binary(max_size=16),
    st.sampled_from(["not-a-uuid", "00000000-0000-0000-0000-00000000000g", "{12345678-1234-5678-1234-567812345678}"]),
)
state_type = st.one_of(st.sampled_from([t.value for t in StateType]), odd_text, huge_int, st.none())
detail_field = st.sampled_from(
    ["scheduled_time", "cache_key", "cache_expiration", "pause_timeout", "pause_key", "run_input_keyset",
     "transition_id", "flow_run_id", "deferred", "retriable", "traceparent", "unknown_field"]
)
state_dict = st.fixed_dictionaries(
    {"type": state_type},
    optional={
        "name": st.one_of(odd_text, huge_int),
        "message": st.one_of(odd_text, value),
        "data": value,
        "timestamp": odd_time,
        "id": bad_id,
        "state_details": st.dictionaries(detail_field, st.one_of(value, odd_time, bad_id), max_size=3),
        "surprise": value,
    },
)
state_json = st.one_of(
    state_dict.map(lambda d: json.dumps(d, default=str)),
    st.text(max_size=40),
    st.sampled_from(['{"type":', '{"type": "RUNNING", "name": "\\ud800"}', "[]", "null", '{"type": "DONE"}']),
)
any_state = st.one_of(state_dict, state_json, value, st.builds(Running, name=odd_text, message=odd_text))
policy = st.one_of(st.none(), value, st.dictionaries(
    st.sampled_from(["retries", "retry_delay", "retry_jitter_factor", "pause_keys", "max_retries", "retry_delay_seconds", "bogus"]),
    st.one_of(huge_int, odd_float, st.lists(odd_float, max_size=60), st.lists(odd_text, max_size=3), odd_text),
    max_size=3,
))


class Subject:
    """One database per test module and backend, with runs in interesting states, shared by the
    examples."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.path = backend.new_database()
        self.orc = Orchestrator(self.path)
        orc = self.orc
        self.flow = orc.create_flow_run(state=Scheduled()).id
        self.paused = orc.create_flow_run(state=Running()).id
        orc.create_flow_run_input(self.paused, "schema", '{"type": "object", "properties": {"n": {"type": "integer"}}}')
        orc.create_flow_run_input(self.paused, "taken", '"already here"')
        orc.set_flow_run_state(self.paused, Paused(run_input_keyset={"schema": "schema", "response": "taken"}))
        self.task = orc.create_task_run(flow_run_id=self.flow, state=Scheduled()).id
        self.calls = 0

    def close(self) -> None:
        self.orc.close()
        self.backend.drop(self.path)


@pytest.fixture(scope="module", params=BACKENDS)
def subject(request: pytest.FixtureRequest):
    made = Subject(request.getfixturevalue(f"{request.param}_backend"))
    yield made
    print(f"\nfuzz ({request.param}): {made.calls} hostile calls")
    made.close()


HISTORY = {
    "set_flow_run_state": "read_flow_run_states",
    "set_task_run_state": "read_task_run_states",
    "resume_flow_run": "read_flow_run_states",
}


def call(subject: Subject, method: str, *args: Any, **kwargs: Any) -> None:
    subject.calls += 1
    try:
        result = getattr(subject.orc, method)(*args, **kwargs)
    except FlowstateError:
        pass
    else:
        if isinstance(result, OrchestrationResult) and result.status.value == "ACCEPT":
            history = getattr(subject.orc, HISTORY[method])(args[0])
            assert history[-1].id == result.state.id
    assert_database_consistent(subject.path)


def some_run(subject: Subject, data: st.DataObject, kind: str = "flow") -> Any:
    known = [subject.flow, subject.paused, str(subject.flow)] if kind == "flow" else [subject.task, str(subject.task)]
    return data.draw(st.one_of(st.sampled_from(known), bad_id))


@FUZZ
@given(data=st.data())
def test_hostile_states_for_flow_runs(subject, data):
    call(subject, "set_flow_run_state", some_run(subject, data), data.draw(any_state), force=data.draw(st.booleans()))


@FUZZ
@given(data=st.data())
def test_hostile_states_for_task_runs(subject, data):
    call(subject, "set_task_run_state", some_run(subject, data, "task"), data.draw(any_state), force=data.draw(st.booleans()))


@FUZZ
@given(data=st.data())
def test_hostile_run_creation(subject, data):
    fields = {
        "flow_name": odd_text, "name": st.one_of(odd_text, st.none()), "parameters": value, "tags": value,
        "empirical_policy": policy, "deployment_id": bad_id, "infrastructure_pid": st.one_of(odd_text, huge_int),
        "parent_task_run_id": bad_id, "state": any_state, "id": st.one_of(bad_id, st.just(subject.flow)),
    }
    chosen = data.draw(st.lists(st.sampled_from(sorted(fields)), unique=True, max_size=4))
    call(subject, "create_flow_run", **{name: data.draw(fields[name]) for name in chosen})
    task_fields = {
        "flow_run_id": st.one_of(bad_id, st.just(subject.flow)), "task_key": odd_text, "dynamic_key": odd_text,
        "name": odd_text, "empirical_policy": policy, "state": any_state, "id": st.one_of(bad_id, st.just(subject.task)),
    }
    chosen = data.draw(st.lists(st.sampled_from(sorted(task_fields)), unique=True, max_size=4))
    call(subject, "create_task_run", **{name: data.draw(task_fields[name]) for name in chosen})


@FUZZ
@given(data=st.data())
def test_hostile_run_input_and_resume(subject, data):
    run = some_run(subject, data)
    key = data.draw(st.one_of(st.sampled_from(["schema", "taken", "fresh-key"]), odd_text, huge_int))
    call(subject, "create_flow_run_input", run, key, data.draw(st.one_of(odd_text, value)), sender=data.draw(st.one_of(st.none(), odd_text, huge_int)))
    call(subject, "read_flow_run_input", run, key)
    call(subject, "resume_flow_run", run, data.draw(st.one_of(value, st.dictionaries(odd_text, value, max_size=3), st.just({"n": 1}))))


@FUZZ
@given(data=st.data())
def test_hostile_reads_and_deletes(subject, data):
    call(subject, "read_flow_runs", state_type=data.draw(state_type), limit=data.draw(st.one_of(st.none(), huge_int, odd_float)), offset=data.draw(huge_int))
    call(subject, "read_task_runs", flow_run_id=data.draw(bad_id), state_type=data.draw(state_type))
    call(subject, "read_flow_run", data.draw(bad_id))
    call(subject, "read_task_run_states", data.draw(bad_id))
    call(subject, "delete_flow_run_input", some_run(subject, data), data.draw(odd_text))
    call(subject, "delete_task_run", data.draw(bad_id))

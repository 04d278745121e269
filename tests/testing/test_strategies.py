"""The strategies produce valid, coherent states, and sequences that explore the graph."""

from __future__ import annotations

import json
from datetime import timedelta
from uuid import UUID

import pytest
from hypothesis import Phase, find, given, settings
from hypothesis import strategies as st

from flowstate import Orchestrator, State, StateType
from flowstate.orchestration.resume import validate_run_input
from flowstate.states import Paused, Running
from flowstate.testing import (
    FrozenClock,
    plausible_proposals,
    proposals,
    run_inputs,
    state_types,
    states,
    transition_sequences,
)
from flowstate.testing.clock import DEFAULT_START
from flowstate.testing.strategies import CACHE_KEYS, PAUSE_KEYS

SCHEMA = {
    "type": "object",
    "properties": {
        "approved": {"type": "boolean"},
        "reviewer": {"type": "string", "minLength": 1, "maxLength": 8},
        "score": {"type": "integer", "minimum": 0, "maximum": 10},
        "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 3},
    },
    "required": ["approved", "score"],
}
HOUR = timedelta(hours=1)


@settings(max_examples=300, deadline=None)
@given(states())
def test_states_are_valid_and_their_details_coherent(state: State) -> None:
    assert State.model_validate_json(state.model_dump_json()) == state
    details = state.state_details
    if state.type is StateType.SCHEDULED:
        assert state.name in {"Scheduled", "Late", "AwaitingRetry"}
        assert details.scheduled_time is None or abs(details.scheduled_time - DEFAULT_START) <= HOUR
    if state.type is StateType.PAUSED:
        assert (state.name == "Suspended") is details.pause_reschedule
        assert details.pause_key in {None, *PAUSE_KEYS}
        assert details.pause_timeout is None or abs(details.pause_timeout - DEFAULT_START) <= HOUR
    if details.cache_key is not None:
        assert state.type in {StateType.COMPLETED, StateType.RUNNING}
        assert details.cache_key in CACHE_KEYS


@settings(max_examples=100, deadline=None)
@given(st.data(), st.sampled_from(list(StateType)))
def test_flow_states_have_no_cache_keys_and_types_are_honoured(data: st.DataObject, type_: StateType) -> None:
    assert data.draw(states(kind="flow")).state_details.cache_key is None
    assert data.draw(states(type_)).type is type_
    assert data.draw(states([type_, type_.value])).type is type_


@pytest.mark.parametrize("type_", list(StateType), ids=lambda t: t.value)
def test_states_with_no_argument_reach_every_state_type(type_: StateType) -> None:
    found = find(states(), lambda s: s.type is type_,
                 settings=settings(max_examples=500, database=None, phases=[Phase.generate]))
    assert found.type is type_


def test_states_are_relative_to_the_given_now() -> None:
    later = DEFAULT_START + timedelta(days=30)
    paused = find(states("PAUSED", now=later), lambda s: s.state_details.pause_timeout is not None)
    assert paused.state_details.pause_timeout == later  # the simplest time: exactly now
    expired = find(states("PAUSED", now=later), lambda s: (s.state_details.pause_timeout or later) < later)
    assert later - HOUR <= expired.state_details.pause_timeout < later


def test_state_types_and_bad_arguments() -> None:
    assert find(state_types(exclude=["PAUSED"]), lambda t: True) is not StateType.PAUSED
    with pytest.raises(ValueError):
        states("DONE")
    with pytest.raises(ValueError, match="min_size"):
        transition_sequences(min_size=3, max_size=2)
    with pytest.raises(ValueError, match="JSON object"):
        run_inputs({"type": "array"})


def test_proposals_are_sometimes_forced_unless_told() -> None:
    assert find(proposals(), lambda p: p[1])[1] is True
    assert find(proposals(), lambda p: not p[1])[1] is False
    with pytest.raises(Exception):  # noqa: B017 - hypothesis' NoSuchExample
        find(proposals(force=False), lambda p: p[1], settings=settings(max_examples=50))


@settings(max_examples=100, deadline=None)
@given(states(kind="task"), st.booleans())
def test_the_engine_takes_every_generated_state(state: State, force: bool) -> None:
    with Orchestrator(":memory:", clock=FrozenClock()) as orc:
        run = orc.create_task_run()
        orc.set_task_run_state(run.id, state, force=force)  # never InvalidState
        orc.set_task_run_state(run.id, state.model_dump(mode="json"), force=True)


@settings(max_examples=100, deadline=None)
@given(run_inputs(SCHEMA))
def test_run_inputs_satisfy_their_schema(value: dict) -> None:
    assert validate_run_input(value, SCHEMA) is None


@settings(max_examples=25, deadline=None)
@given(run_inputs(json.dumps(SCHEMA)))
def test_a_paused_run_resumes_with_generated_run_input(value: dict) -> None:
    keyset = {"description": "k-description", "response": "k-response", "schema": "k-schema"}
    with Orchestrator(":memory:", clock=FrozenClock()) as orc:
        run = orc.create_flow_run(id=UUID(int=1))
        orc.set_flow_run_state(run.id, Running())
        orc.set_flow_run_state(run.id, Paused(pause_key="k", run_input_keyset=keyset))
        orc.create_flow_run_input(run.id, "k-schema", json.dumps(SCHEMA))
        assert orc.resume_flow_run(run.id, value).status.value == "ACCEPT"
        assert json.loads(orc.read_flow_run_input(run.id, "k-response")) == value


@settings(max_examples=100, deadline=None)
@given(transition_sequences("task", min_size=2, max_size=6))
def test_sequences_respect_their_bounds_and_tasks_do_not_pause(steps: list) -> None:
    assert 2 <= len(steps) <= 6
    assert all(isinstance(state, State) and isinstance(force, bool) for state, force in steps)


def _replay(steps: list) -> list[StateType]:
    with Orchestrator(":memory:", clock=FrozenClock()) as orc:
        run = orc.create_flow_run(deployment_id=UUID(int=9))
        for state, force in steps:
            orc.set_flow_run_state(run.id, state, force=force)
        return [s.type for s in orc.read_flow_run_states(run.id)]


@pytest.mark.parametrize("deep", [StateType.PAUSED, StateType.CANCELLING, StateType.COMPLETED])
def test_sequences_reach_deep_states_through_the_engine(deep: StateType) -> None:
    found = find(transition_sequences("flow", max_size=10), lambda steps: deep in _replay(steps),
                 settings=settings(max_examples=2000, deadline=None, database=None,
                                   phases=[Phase.generate]))
    assert found


def test_plausible_proposals_follow_the_graph_from_the_current_state() -> None:
    pause = find(plausible_proposals("RUNNING"), lambda p: p[0].type is StateType.PAUSED)
    assert pause[0].state_details.pause_key in {None, *PAUSE_KEYS}
    first = find(plausible_proposals(None), lambda p: not p[1])
    assert first[0].type in set(StateType)


RICH_SCHEMA = {
    "$defs": {"Address": {"type": "object", "properties": {
        "zip": {"type": "string", "pattern": "^[0-9]{5}$"}}, "required": ["zip"],
        "additionalProperties": False}},
    "type": "object",
    "properties": {
        "address": {"$ref": "#/$defs/Address"},
        "count": {"type": "integer", "exclusiveMinimum": 0, "maximum": 5},
        "ratio": {"type": "number", "minimum": 0, "maximum": 1},
        "note": {"anyOf": [{"type": "string", "maxLength": 3}, {"type": "null"}]},
        "color": {"const": "red"},
    },
    "required": ["address", "count"],
    "additionalProperties": False,
}


@given(run_inputs(RICH_SCHEMA))
def test_run_inputs_cover_refs_patterns_bounds_and_unions(value):
    import jsonschema

    jsonschema.validate(value, RICH_SCHEMA)


def test_run_inputs_refuse_keywords_they_cannot_honour():
    with pytest.raises(ValueError, match="patternProperties"):
        run_inputs({"type": "object", "patternProperties": {"^x": {"type": "string"}}})


ALL_OF_SCHEMA = {
    "definitions": {"Named": {"type": "object", "properties": {"name": {"type": "string"}},
                              "required": ["name"]}},
    "allOf": [
        {"$ref": "#/definitions/Named"},
        {"properties": {"size": {"type": ["integer", "null"]}}, "required": ["size"]},
    ],
}
LOOSE_SCHEMA = {
    "type": "object",
    "properties": {
        "anything": {},
        "either": {"type": ["string", "boolean"]},
        "kind": {"enum": ["a", "b"]},
        "shape": {"oneOf": [{"type": "integer"}, {"type": "array", "items": {"type": "boolean"},
                                                   "minItems": 2, "maxItems": 3}]},
        "extra": {"type": "object", "additionalProperties": {"type": "integer"}},
    },
    "required": ["anything", "either", "kind", "shape", "extra"],
}
BOUNDS_SCHEMA = {
    "type": "object",
    "properties": {  # bounds that are not whole numbers, and both kinds of lower bound at once
        "a": {"type": "integer", "minimum": 1.5, "maximum": 3},
        "b": {"type": "integer", "minimum": -4, "maximum": -1.5},
        "c": {"type": "integer", "exclusiveMinimum": -1.5, "exclusiveMaximum": 0.5},
        "d": {"type": "integer", "minimum": 5, "exclusiveMinimum": 0, "maximum": 9},
        "e": {"type": "number", "minimum": 5, "exclusiveMinimum": 0, "exclusiveMaximum": 6},
    },
    "required": ["a", "b", "c", "d", "e"],
    "additionalProperties": False,
}


@pytest.mark.parametrize("schema", [ALL_OF_SCHEMA, LOOSE_SCHEMA, BOUNDS_SCHEMA],
                         ids=["allOf-and-definitions", "types-enum-oneOf-items", "bounds"])
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_run_inputs_of_every_documented_keyword_satisfy_their_schema(schema, data):
    import jsonschema

    jsonschema.Draft202012Validator(schema).validate(data.draw(run_inputs(schema)))


DRAFT_4_SCHEMA = {"type": "object", "properties": {
    "n": {"type": "integer", "minimum": 0, "maximum": 10, "exclusiveMinimum": True}},
    "required": ["n"], "$schema": "http://json-schema.org/draft-04/schema#"}


@settings(max_examples=100, deadline=None)
@given(run_inputs(DRAFT_4_SCHEMA))
def test_a_draft_4_boolean_exclusive_minimum_makes_the_minimum_exclusive(value):
    assert 1 <= value["n"] <= 10


def test_the_integers_a_bound_allows_are_all_reached():
    assert find(run_inputs(DRAFT_4_SCHEMA), lambda value: value["n"] == 1)["n"] == 1
    schema = {"type": "object", "properties": {
        "n": {"type": "integer", "exclusiveMinimum": -1.5, "exclusiveMaximum": 1.5}},
        "required": ["n"], "additionalProperties": False}
    for n in (-1, 1):
        assert find(run_inputs(schema), lambda value, n=n: value["n"] == n) == {"n": n}


CLOSED_PART_SCHEMA = {
    "allOf": [
        {"properties": {"name": {"type": "string"}, "note": {"type": "string"}},
         "required": ["name"], "additionalProperties": False},
        {"properties": {"size": {"type": "integer"}}},  # optional: the first part refuses it
    ],
}


@settings(max_examples=200, deadline=None)
@given(run_inputs(CLOSED_PART_SCHEMA))
def test_an_allof_part_that_allows_no_other_properties_keeps_them_out(value):
    import jsonschema

    jsonschema.Draft202012Validator(CLOSED_PART_SCHEMA).validate(value)
    assert set(value) <= {"name", "note"}


def test_run_inputs_refuse_an_allof_they_cannot_satisfy_or_honour():
    conflict = {"allOf": [{"properties": {"a": {}}, "additionalProperties": False},
                          {"properties": {"b": {}}, "required": ["b"]}]}
    with pytest.raises(ValueError, match="refuses"):
        run_inputs(conflict).example()
    typed_extras = {"allOf": [{"properties": {"a": {}}, "additionalProperties": {"type": "integer"}}]}
    with pytest.raises(ValueError, match="additionalProperties"):
        run_inputs(typed_extras).example()


def test_run_inputs_refuse_a_ref_they_cannot_resolve():
    with pytest.raises(ValueError, match="local"):
        run_inputs({"type": "object", "properties": {"x": {"$ref": "other.json#/Thing"}}}).example()

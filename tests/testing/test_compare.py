"""normalise, assert_same_answers and assert_matches_core."""

from __future__ import annotations

import pytest

from flowstate import Orchestrator, StateType
from flowstate.rules import CORE_FLOW, CORE_TASK, Reject, rule
from flowstate.states import Paused, Running
from flowstate.testing import (
    FrozenClock,
    ReferenceOrchestrator,
    assert_matches_core,
    assert_same_answers,
    normalise,
)
from flowstate.testing.compare import GENERATED_KEY, ID


def _paused_twice(engine):  # type: ignore[no-untyped-def]
    run = engine.create_flow_run(name="same", state=Running())
    first = engine.set_flow_run_state(run.id, Paused())  # no key: the engine makes one
    engine.resume_flow_run(run.id)
    second = engine.set_flow_run_state(run.id, Paused(pause_key="review"))
    return [first, second, engine.read_flow_run(run.id), engine.read_flow_run_states(run.id)]


def test_two_engines_agree_once_generated_ids_and_keys_are_normalised() -> None:
    clock = FrozenClock()
    real = _paused_twice(Orchestrator(":memory:", clock=clock))
    clock.set(FrozenClock().now)
    model = _paused_twice(ReferenceOrchestrator(clock=clock))
    assert real[2].empirical_policy.pause_keys != model[2].empirical_policy.pause_keys
    assert_same_answers(real, model)
    run = normalise(real[2])
    assert run["id"] == ID and run["state"]["id"] == ID
    assert run["empirical_policy"]["pause_keys"] == [GENERATED_KEY, "review"]


def test_a_difference_is_named_by_its_path() -> None:
    clock = FrozenClock()
    with Orchestrator(":memory:", clock=clock) as orc:
        run = orc.create_flow_run(name="same", state=Running())
        a = orc.set_flow_run_state(run.id, Paused(pause_key="a"))
        b = orc.set_flow_run_state(run.id, Paused(pause_key="b"))
    with pytest.raises(AssertionError, match=r"answer\.details\.reason: None != 'Cannot pause"):
        assert_same_answers(a, b)
    assert_same_answers({"x": 1, "message": "one"}, {"x": 1, "message": "two"}, ignore={"message"})
    with pytest.raises(AssertionError, match=r"answer\.message"):
        assert_same_answers({"x": 1, "message": "one"}, {"x": 1, "message": "two"})


@rule(from_=StateType.RUNNING, to=StateType.PAUSED, name="no-pauses")
def no_pauses(ctx):  # type: ignore[no-untyped-def]
    return Reject("No pauses here.")


def _pausing_a_running_run(run, state) -> bool:  # type: ignore[no-untyped-def]
    return run.state_type is StateType.RUNNING and state.type is StateType.PAUSED


def test_the_core_policies_match_themselves() -> None:
    assert_matches_core(CORE_FLOW, max_examples=60)
    assert_matches_core(CORE_TASK, max_examples=60)


def test_a_policy_that_differs_only_where_it_says_matches_core() -> None:
    assert_matches_core(
        CORE_FLOW.append(no_pauses), except_when=_pausing_a_running_run, max_examples=150
    )


def test_a_policy_that_differs_elsewhere_is_caught() -> None:
    with pytest.raises(AssertionError, match=r"reason: None != 'No pauses here.'[\s\S]*state=Running\(\)[\s\S]*Proposal\(Paused"):
        assert_matches_core(CORE_FLOW.append(no_pauses), max_examples=100)
    with pytest.raises(TypeError):
        assert_matches_core("CORE_FLOW")  # type: ignore[arg-type]

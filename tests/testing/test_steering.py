"""Steering the strategies: corners they reach, modes and weights, runs already in a state, and
an orchestrator per example under ``@given``."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from uuid import UUID

import pytest
from hypothesis import Phase, find, given, settings
from hypothesis import strategies as st

from flowstate import Orchestrator, StateType
from flowstate.rules import CORE_FLOW, Reject, decide_transition, rule
from flowstate.states import Paused, Pending, Running
from flowstate.testing import (
    OrchestratorOnClock,
    orchestrators,
    plausible_proposals,
    proposals,
    runs_in,
    states,
    transition_sequences,
)
from flowstate.testing.clock import DEFAULT_START
from flowstate.testing.strategies import PAUSE_KEYS

FIND = settings(max_examples=2000, deadline=None, database=None, derandomize=True,
                phases=[Phase.generate])


# -- corners ---------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("strategy", "corner"),
    [
        (states("PAUSED"), lambda s: (s.state_details.pause_timeout or DEFAULT_START) < DEFAULT_START),
        (states("PAUSED"), lambda s: s.state_details.pause_timeout == DEFAULT_START),
        (states("SCHEDULED"), lambda s: s.state_details.scheduled_time == DEFAULT_START),
        (states("SCHEDULED"), lambda s: (s.state_details.scheduled_time or DEFAULT_START) < DEFAULT_START),
        (states("COMPLETED", kind="task"),
         lambda s: (s.state_details.cache_expiration or DEFAULT_START) < DEFAULT_START),
        (states("PAUSED", pause_keys=["used"]), lambda s: s.state_details.pause_key == "used"),
    ],
    ids=["expired pause", "pause times out now", "scheduled now", "scheduled in the past",
         "expired cache entry", "a given pause key"],
)
def test_states_reach_every_corner(strategy, corner) -> None:
    assert corner(find(strategy, corner, settings=FIND))


def test_states_refuse_bad_pause_keys() -> None:
    with pytest.raises(ValueError, match="pause_keys"):
        states("PAUSED", pause_keys=[""])


def _pauses_through_the_engine(steps: list) -> int:
    with Orchestrator(":memory:") as orc:
        run = orc.create_flow_run(deployment_id=UUID(int=1))
        for state, force in steps:
            orc.set_flow_run_state(run.id, state, force=force)
        return len(orc.read_flow_run(run.id).empirical_policy.pause_keys)


def test_the_pause_mode_reaches_three_pauses() -> None:
    steps = find(transition_sequences("flow", mode="pauses", max_size=12),
                 lambda steps: _pauses_through_the_engine(steps) >= 3, settings=FIND)
    assert _pauses_through_the_engine(steps) >= 3


def _share(strategy, wanted) -> float:
    seen: list[bool] = []

    @settings(max_examples=300, database=None, deadline=None, derandomize=True,
              phases=[Phase.generate])
    @given(strategy)
    def count(proposal) -> None:
        seen.append(wanted(proposal))

    count()
    return sum(seen) / len(seen)


def test_weights_favour_an_edge_and_zero_leaves_it_out() -> None:
    def paused(p):
        return p.state.type is StateType.PAUSED and not p.force

    def completed(p):
        return p.state.type is StateType.COMPLETED and not p.force

    plain = _share(plausible_proposals("RUNNING"), paused)
    assert _share(plausible_proposals("RUNNING", weights={"pause": 50}), paused) > plain + 0.2
    assert _share(plausible_proposals("RUNNING", mode="pauses"), paused) > plain + 0.1
    only_complete = {"pause": 0, "suspend": 0, "fail": 0, "crash": 0, "cancel": 0, "cancelled": 0}
    # along the graph (three draws in five) every step now completes the run
    assert _share(plausible_proposals("RUNNING", weights=only_complete), completed) > 0.55
    assert _share(plausible_proposals("RUNNING"), completed) < 0.3


def test_bad_modes_and_weights_are_refused() -> None:
    with pytest.raises(ValueError, match="mode"):
        transition_sequences(mode="sleepy")
    with pytest.raises(ValueError, match="no trigger named"):
        plausible_proposals("RUNNING", weights={"nap": 2})
    with pytest.raises(ValueError, match="int >= 0"):
        transition_sequences(weights={"pause": -1})


def test_proposals_print_as_constructor_calls() -> None:
    proposal = find(proposals(type="PAUSED", force=True),
                    lambda p: p.state.state_details.pause_key == "review")
    assert repr(proposal) == "Proposal(state=Paused(pause_key='review'), force=True)"
    state, force = proposal  # still a (state, force) pair
    assert force is True and state is proposal.state


# -- runs already in a state -------------------------------------------------------------------

@settings(max_examples=100, deadline=None)
@given(runs_in(StateType.PAUSED, pauses=2))
def test_runs_in_a_state_with_a_history(run) -> None:
    assert run.state.type is StateType.PAUSED and run.state_type is StateType.PAUSED
    assert len(run.empirical_policy.pause_keys) == 2
    assert run.state.state_details.pause_key in run.empirical_policy.pause_keys
    assert run.run_count >= 1
    if run.state.state_details.pause_reschedule:
        assert run.deployment_id is not None


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([None, *StateType]).flatmap(lambda t: runs_in(t, kind="task")))
def test_task_runs_in_every_state(run) -> None:
    assert run.state_type == (None if run.state is None else run.state.type)


@settings(max_examples=50, deadline=None)
@given(runs_in(StateType.RUNNING, pauses=2))
def test_a_third_pause_is_refused_by_the_docs_rule(run) -> None:
    @rule(from_=StateType.RUNNING, to=StateType.PAUSED, name="max-2-pauses")
    def at_most_two_pauses(ctx):  # type: ignore[no-untyped-def]
        if len(ctx.run.empirical_policy.pause_keys) >= 2:
            return Reject("This run has already paused 2 times.")
        return None

    policy = CORE_FLOW.insert_after("handle_pausing_flows", at_most_two_pauses)
    outcome = decide_transition(policy, run=run, initial=run.state,
                                proposed=Paused(pause_key="fresh"), now=DEFAULT_START)
    assert outcome.result.status.value == "REJECT"


def test_runs_in_refuses_incoherent_histories() -> None:
    with pytest.raises(ValueError, match="at least once"):
        runs_in("PAUSED", pauses=0)
    with pytest.raises(ValueError, match="do not pause"):
        runs_in("RUNNING", kind="task", pauses=1)
    with pytest.raises(ValueError, match="run_count"):
        runs_in("RUNNING", run_count=-1)
    with pytest.raises(ValueError):
        runs_in("ASLEEP")


# -- an orchestrator per example -------------------------------------------------------------

SEEN: list[int] = []


@settings(max_examples=20, deadline=None)
@given(env=orchestrators(), steps=st.integers(1, 3))
def test_every_example_gets_a_fresh_orchestrator(env: OrchestratorOnClock, steps: int) -> None:
    with env as (orc, clock):
        assert orc.read_flow_runs() == []
        for _ in range(steps):
            orc.create_flow_run()
        clock.advance(60)
        SEEN.append(id(orc))


def test_orchestrators_are_not_shared_between_examples() -> None:
    SEEN.clear()
    test_every_example_gets_a_fresh_orchestrator()
    assert len(SEEN) > 1 and len(set(SEEN)) == len(SEEN)


@settings(max_examples=30, deadline=None)
@given(env=orchestrators(start=st.datetimes(
    min_value=datetime(2024, 1, 1), max_value=datetime(2024, 1, 8), timezones=st.just(timezone.utc))))
def test_orchestrators_take_a_start_and_policies(env: OrchestratorOnClock) -> None:
    orc, clock = env
    run = orc.create_flow_run(state=Pending())
    result = orc.set_flow_run_state(run.id, Running())
    assert result.state is not None
    # the clock's time (a microsecond later: the run's first state was written at that time)
    assert clock.now <= result.state.timestamp <= clock.now + timedelta(microseconds=1)
    assert DEFAULT_START <= clock.now <= DEFAULT_START + timedelta(days=7)


def test_orchestrators_use_the_given_policy_and_refuse_bad_arguments() -> None:
    @rule(from_=StateType.PENDING, to=StateType.RUNNING, name="never-start")
    def never(ctx):  # type: ignore[no-untyped-def]
        return Reject("no")

    env = find(orchestrators(flow_policy=CORE_FLOW.append(never)), lambda e: True)
    run = env.orc.create_flow_run(state=Pending())
    assert env.orc.set_flow_run_state(run.id, Running()).status.value == "REJECT"
    assert repr(env) == "OrchestratorOnClock(clock='2024-01-01T00:00:00Z')"
    with pytest.raises(TypeError):
        orchestrators(flow_policy="CORE_FLOW")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        orchestrators(start="monday")  # type: ignore[arg-type]

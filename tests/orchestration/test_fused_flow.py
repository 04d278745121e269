"""The fused core flow path answers exactly as the rule pipeline does, or not at all."""

from __future__ import annotations

import copy
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowstate import Orchestrator
from flowstate.orchestration.context import TransitionContext
from flowstate.orchestration.fused_flow import FUSED_PAIRS, FUSED_RULES, fused_core_flow
from flowstate.orchestration.policies import CORE_FLOW, MARK_LATE, MINIMAL_FLOW
from flowstate.orchestration.policy import Policy
from flowstate.results import OrchestrationResult, SetStateStatus
from flowstate.runs import FlowRun, FlowRunPolicy
from flowstate.states import (
    Completed,
    Paused,
    Pending,
    Running,
    Scheduled,
    State,
    StateDetails,
    StateType,
)
from flowstate.store import rows
from flowstate.testing import states, transition_sequences
from flowstate.testing.strategies import PAUSE_KEYS

from tests.orchestration.builders import NOW, _ids
from tests.test_run_cache import _exact, _fresh

S = StateType
_times = st.none() | st.integers(-7200, 7200).map(lambda s: NOW + timedelta(seconds=s))


def _pipeline(run: FlowRun, proposed: State, now: datetime) -> tuple[Any, TransitionContext]:
    """What the orchestrator does without the fused path: CORE_FLOW.decide in its context."""
    ctx = CORE_FLOW.context(run, proposed, now, _ids())
    return CORE_FLOW.decide(ctx), ctx


def _model(value: Any) -> Any:
    """A model's values and set fields, nested models included (for exact comparisons)."""
    if hasattr(value, "__pydantic_fields_set__"):
        return (
            type(value),
            sorted(value.__pydantic_fields_set__),
            {k: _model(v) for k, v in value.__dict__.items()},
        )
    if isinstance(value, set):
        return ("set", sorted(value))
    return value


def _compare(run: FlowRun, proposed: State, now: datetime) -> bool:
    """Run both paths on copies of ``run``; assert they agree. True if the fused one answered."""
    mine, theirs = copy.deepcopy(run), copy.deepcopy(run)
    before = _model(mine)
    new_id = _ids()
    answer = fused_core_flow(mine, proposed, now, new_id)
    outcome, ctx = _pipeline(theirs, proposed, now)
    if answer is None:
        assert _model(mine) == before, "the fused path changed the run and then gave up"
        assert new_id() == uuid.UUID(int=1), "the fused path drew an id and then gave up"
        return False
    written, result, as_read = answer
    if as_read:  # the store keeps it as the run's state, unchecked: it must be what reading gives
        row = rows.state_insert_row(run.id, written)
        assert _model(written) == _model(rows.state_from_row(row, 1))
    assert outcome.result.status is SetStateStatus.ACCEPT, outcome.result
    assert _model(written) == _model(outcome.written)
    assert _model(result) == _model(outcome.result)
    assert result.state is written
    assert _model(mine) == _model(theirs)
    assert ctx.effects == [] and ctx.run_changed
    return True


@st.composite
def _runs(draw: st.DrawFn) -> FlowRun:
    initial = draw(st.none() | states(kind="flow", now=NOW - timedelta(seconds=30)))
    if initial is not None and draw(st.booleans()):  # details the engine adds to what it writes
        initial = initial.model_copy(
            update={
                "state_details": initial.state_details.model_copy(
                    update={
                        "flow_run_id": uuid.UUID(int=1000),
                        "deployment_concurrency_lease_id": draw(
                            st.sampled_from([None, uuid.UUID(int=5000)])
                        ),
                    }
                )
            }
        )
    return FlowRun(
        id=uuid.UUID(int=1000),
        name="run",
        state=initial,
        run_count=draw(st.integers(0, 3)),
        start_time=draw(_times),
        end_time=draw(_times),
        expected_start_time=draw(_times),
        next_scheduled_start_time=draw(_times),
        total_run_time=timedelta(seconds=draw(st.integers(0, 100))),
        empirical_policy=FlowRunPolicy(
            resuming=draw(st.booleans()),
            pause_keys=set(draw(st.lists(st.sampled_from(PAUSE_KEYS), max_size=2))),
            retries=draw(st.sampled_from([None, 0, 2])),
        ),
        deployment_id=draw(st.sampled_from([None, uuid.UUID(int=2000)])),
        parent_task_run_id=draw(st.sampled_from([None, None, uuid.UUID(int=3000)])),
    )


_PLAIN = st.sampled_from(
    [Scheduled, Pending, Running, Completed, lambda: Paused(pause_key="k")]
).map(lambda make: make())


@settings(max_examples=1500, deadline=None)
@given(
    run=_runs(),
    proposed=st.one_of(_PLAIN, states(kind="flow", now=NOW)),
    now=st.integers(-120, 7200).map(lambda s: NOW + timedelta(seconds=s)),
)
def test_the_fused_path_answers_as_the_pipeline_or_gives_way(
    run: FlowRun, proposed: State, now: datetime
) -> None:
    _compare(run, proposed, now)


def _initial(from_type: StateType | None) -> State | None:
    if from_type is None:
        return None
    details: dict[str, Any] = {"flow_run_id": uuid.UUID(int=1000)}
    if from_type is S.SCHEDULED:
        details["scheduled_time"] = NOW - timedelta(minutes=5)
    return State(type=from_type, timestamp=NOW - timedelta(minutes=1),
                 state_details=StateDetails(**details))


@pytest.mark.parametrize(("from_type", "to_type"), sorted(FUSED_PAIRS, key=str))
def test_every_fused_pair_is_answered_by_the_fused_path(
    from_type: StateType | None, to_type: StateType
) -> None:
    run = FlowRun(id=uuid.UUID(int=1000), name="run", state=_initial(from_type))
    assert _compare(run, State(type=to_type), NOW), "the fused path gave way"


@pytest.mark.parametrize("pair", sorted(FUSED_PAIRS, key=str))
def test_the_fused_path_accounts_for_every_rule_of_its_pairs(pair: Any) -> None:
    names = {rule.name for rule in CORE_FLOW.rules_for(*pair)}
    assert names <= FUSED_RULES, f"a rule the fused path does not know: {names - FUSED_RULES}"


def test_only_the_core_flow_policy_is_fused() -> None:
    assert CORE_FLOW.fused is fused_core_flow
    assert CORE_FLOW.append(name="derived").fused is None  # its rules may differ
    assert Policy("copy", CORE_FLOW.rules, kind="flow").fused is None
    assert MINIMAL_FLOW.fused is None and MARK_LATE.fused is None


def _run(state: State | None, **fields: Any) -> FlowRun:
    return FlowRun(id=uuid.UUID(int=1000), name="run", state=state, **fields)


def _at(type_: StateType, name: str | None = None, **details: Any) -> State:
    return State(type=type_, name=name, timestamp=NOW - timedelta(minutes=1),
                 state_details=StateDetails(**details))


def test_the_fused_path_gives_way_where_a_rule_intervenes() -> None:
    running = _run(_at(S.RUNNING), empirical_policy=FlowRunPolicy(pause_keys={"k"}, retries=1))
    assert not _compare(running, Paused(pause_key="k"), NOW)  # already fired: REJECT
    assert not _compare(running, State(type=S.FAILED), NOW)  # a retry: REJECT with a state
    assert not _compare(running, Pending(), NOW)  # ABORT
    assert not _compare(_run(_at(S.PENDING)), Paused(), NOW)  # not running: REJECT
    assert not _compare(_run(None), Paused(), NOW)  # no state: ABORT
    for initial in (_at(S.RUNNING), _at(S.SCHEDULED, "Late", scheduled_time=NOW)):
        assert not _compare(_run(initial), Scheduled(name="Late"), NOW)  # REJECT
    assert _compare(_run(None), Scheduled(name="Late"), NOW)  # a new run may start out Late
    waiting = _run(_at(S.SCHEDULED, scheduled_time=NOW + timedelta(minutes=5)))
    assert not _compare(waiting, Running(), NOW)  # WAIT
    assert _compare(waiting, Running(), NOW + timedelta(minutes=5))
    expired = _run(_at(S.PAUSED, pause_timeout=NOW - timedelta(seconds=1)))
    assert not _compare(expired, Running(), NOW)  # REJECT with a Failed state
    suspended = _run(_at(S.PAUSED, "Suspended", pause_reschedule=True))
    assert not _compare(suspended, Scheduled(), NOW)  # no deployment: REJECT
    assert not _compare(_run(_at(S.PAUSED)), Pending(), NOW)  # REJECT
    leased = _run(_at(S.RUNNING, deployment_concurrency_lease_id=uuid.UUID(int=9)))
    assert not _compare(leased, Completed(), NOW)  # the lease is copied


def test_the_fused_path_gives_way_to_a_deployments_run_proposing_pending() -> None:
    deployed = _run(_at(S.SCHEDULED, scheduled_time=NOW), deployment_id=uuid.UUID(int=7))
    assert fused_core_flow(copy.deepcopy(deployed), Pending(), NOW, _ids()) is None  # a slot?
    assert _compare(deployed, Running(), NOW)  # nothing to take without PENDING
    assert _compare(_run(_at(S.SCHEDULED, scheduled_time=NOW)), Pending(), NOW)


def test_a_timestamp_that_would_not_increase_is_moved_as_the_pipeline_moves_it() -> None:
    run = _run(State(type=S.RUNNING, timestamp=NOW))
    for now in (NOW, NOW - timedelta(seconds=5)):
        assert _compare(run, Completed(), now)
        written, _, _ = fused_core_flow(copy.deepcopy(run), Completed(), now, _ids())  # type: ignore[misc]
        assert written.timestamp == NOW + timedelta(microseconds=1)


def _as_read(run: FlowRun, proposed: State) -> bool:
    answer = fused_core_flow(copy.deepcopy(run), proposed, NOW, _ids())
    assert answer is not None
    return answer[2]


def test_the_fused_path_tells_when_its_state_is_what_reading_the_row_gives() -> None:
    # the constructors' states, once stamped: every field given, no detail at its default
    assert _as_read(_run(None), Scheduled())  # scheduled_time=None, stamped with "now"
    assert _as_read(_run(_at(S.SCHEDULED, scheduled_time=NOW)), Pending())  # the time copied
    assert _as_read(_run(_at(S.PENDING)), Running())
    assert _as_read(_run(_at(S.RUNNING)), Completed())
    # reading back would count fewer fields as given
    assert not _as_read(_run(_at(S.RUNNING)), State(type=S.COMPLETED))  # name, message, data
    assert not _as_read(_run(_at(S.RUNNING)), Paused(pause_key="k"))  # pause_timeout=None, ...
    assert not _as_read(_run(_at(S.RUNNING)), Paused(pause_key="k", timeout_seconds=60))
    assert not _as_read(_run(_at(S.RUNNING)), Completed(pause_key=None))
    assert not _as_read(_run(_at(S.SCHEDULED)), Pending())  # a copied scheduled_time of None


def test_states_of_one_run_share_their_stamped_details_when_nothing_else_differs() -> None:
    run = _run(None)
    shared = []
    for proposed in (Pending(), Running(), State(type=S.RUNNING), Completed()):
        answer = fused_core_flow(run, proposed, NOW, _ids())
        assert answer is not None
        run.__dict__["state"] = answer[0]
        shared.append(answer[0].state_details)
    assert all(details is shared[0] for details in shared)
    assert shared[0].model_fields_set == {"flow_run_id"}
    # a run id that is another object, a scheduled time, or details of its own: a new one
    other = FlowRun(id=uuid.UUID(int=1000), name="run")
    assert fused_core_flow(other, Pending(), NOW, _ids())[0].state_details is not shared[0]  # type: ignore[index]
    scheduled = fused_core_flow(run := _run(None), Scheduled(), NOW, _ids())
    assert scheduled is not None and scheduled[0].state_details is not shared[0]
    run.__dict__["state"] = scheduled[0]  # Pending copies its scheduled time: the same details
    assert fused_core_flow(run, Pending(), NOW, _ids())[0].state_details is scheduled[0].state_details  # type: ignore[index]
    paused = fused_core_flow(_run(_at(S.RUNNING)), Paused(pause_key="k"), NOW, _ids())
    assert paused is not None and paused[0].state_details.pause_key == "k"


def test_the_fused_path_gives_way_to_what_it_does_not_handle() -> None:
    running = _run(_at(S.RUNNING))
    assert not _compare(running, Completed(data={"x": 1}), NOW)  # result data
    assert not _compare(running, State(type=S.CANCELLING), NOW)
    assert not _compare(_run(_at(S.CANCELLED)), Scheduled(), NOW)  # from a final state
    assert not _compare(_run(_at(S.RUNNING), parent_task_run_id=uuid.UUID(int=3)), Completed(),
                        NOW)  # a subflow's parent task follows it
    with_details = State(type=S.COMPLETED, state_details=StateDetails(transition_id=uuid.UUID(int=4)))
    assert not _compare(running, with_details, NOW)
    assert _compare(running, Completed(), NOW)
    assert not _compare(running, Completed(), NOW.astimezone(timezone(timedelta(hours=2))))


@settings(max_examples=60, deadline=None)
@given(steps=transition_sequences("flow", max_size=12), batched=st.booleans())
def test_runs_read_after_fused_transitions_equal_a_fresh_read(
    tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[State, bool]], batched: bool
) -> None:
    path = str(tmp_path_factory.mktemp("fused") / "runs.db")
    with Orchestrator(path) as orc:
        run_id = orc.create_flow_run(flow_name="f").id
        results: list[OrchestrationResult] = []
        with orc.transaction() if batched else _nothing():
            for state, force in steps:
                results.append(orc.set_flow_run_state(run_id, state, force=force))
        mine = orc.read_flow_run(run_id)
        history = orc.read_flow_run_states(run_id)
    fresh = _fresh(path, run_id)
    mine.estimated_run_time = fresh.estimated_run_time = timedelta(0)  # "now"-dependent
    assert _exact(mine) == _exact(fresh)
    written = [r.state for r in results if r.status is not SetStateStatus.ABORT and r.state]
    assert [s.id for s in history] == list(dict.fromkeys(s.id for s in written))


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None

"""The engine's bookkeeping (one pass per kind of run) does exactly what Prefect's steps do,
one by one (``bookkeeping_spec``)."""

from __future__ import annotations

import copy
import uuid
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from flowstate.orchestration.bookkeeping import FLOW_BOOKKEEPING, TASK_BOOKKEEPING
from flowstate.orchestration.context import TransitionContext
from flowstate.runs import FlowRun, FlowRunPolicy, TaskRun
from flowstate.states import State
from flowstate.testing import states

from tests.orchestration.bookkeeping_spec import FLOW_STEPS, TASK_STEPS, apply_steps
from tests.orchestration.builders import NOW, _ids

_times = st.none() | st.integers(-7200, 7200).map(lambda s: NOW + timedelta(seconds=s))


@st.composite
def _contexts(draw: st.DrawFn, kind: str) -> TransitionContext:
    initial: State | None = draw(st.none() | states(kind=kind, now=NOW - timedelta(minutes=1)))
    proposed: State = draw(states(kind=kind, now=NOW))
    if draw(st.booleans()) and initial is not None:  # same or earlier timestamp: bumped
        proposed = proposed.model_copy(update={"timestamp": initial.timestamp})
    fields = dict(
        id=uuid.UUID(int=1000),
        name="run",
        state=initial,
        run_count=draw(st.integers(0, 3)),
        start_time=draw(_times),
        end_time=draw(_times),
        expected_start_time=draw(_times),
        next_scheduled_start_time=draw(_times),
        total_run_time=timedelta(seconds=draw(st.integers(0, 100))),
    )
    if kind == "flow":
        run: FlowRun | TaskRun = FlowRun(
            **fields,
            empirical_policy=FlowRunPolicy(resuming=draw(st.booleans())),
            parent_task_run_id=draw(st.sampled_from([None, uuid.UUID(int=3000)])),
        )
        if draw(st.booleans()):  # details that already name the run
            proposed = proposed.model_copy(
                update={"state_details": proposed.state_details.model_copy(
                    update={"flow_run_id": run.id, "task_run_id": run.parent_task_run_id})}
            )
    else:
        run = TaskRun(**fields, flow_run_id=draw(st.sampled_from([None, uuid.UUID(int=1000)])))
    return TransitionContext(kind=kind, run=run, initial=initial,  # type: ignore[arg-type]
                             proposed=proposed, now=NOW, new_id=_ids())


def _snapshot(ctx: TransitionContext) -> tuple:
    proposed = ctx.proposed
    assert proposed is not None
    run = ctx.run
    policy = run.empirical_policy
    return (
        proposed.__dict__, proposed.model_fields_set,
        proposed.state_details.__dict__, proposed.state_details.model_fields_set,
        {k: v for k, v in run.__dict__.items() if k != "empirical_policy"}, run.model_fields_set,
        policy.__dict__, policy.model_fields_set, ctx.run_changed,
    )


def _check(ctx: TransitionContext, bookkeeping, steps) -> None:  # type: ignore[no-untyped-def]
    other = copy.deepcopy(ctx)
    ctx.proposed = bookkeeping.before(ctx, ctx.proposed)
    apply_steps(steps, other)
    assert _snapshot(ctx) == _snapshot(other)


@settings(max_examples=400, deadline=None)
@given(_contexts("flow"))
def test_fused_flow_bookkeeping_equals_its_steps(ctx: TransitionContext) -> None:
    _check(ctx, FLOW_BOOKKEEPING, FLOW_STEPS)


@settings(max_examples=400, deadline=None)
@given(_contexts("task"))
def test_fused_task_bookkeeping_equals_its_steps(ctx: TransitionContext) -> None:
    _check(ctx, TASK_BOOKKEEPING, TASK_STEPS)

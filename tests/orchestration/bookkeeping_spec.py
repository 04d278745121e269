"""Prefect's global bookkeeping, step by step: the specification the engine's one-pass
bookkeeping (``flowstate.orchestration.bookkeeping``) is checked against.

Each step is a small function of the context, applied in Prefect's order after the policy's
rules and before the state is written, changing the run only through ``ctx.update_run``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from flowstate._models import copy_with
from flowstate.orchestration.bookkeeping import flow_details_update
from flowstate.orchestration.context import TransitionContext
from flowstate.runs import FlowRunPolicy
from flowstate.states import State, StateType

_ONE_MICROSECOND = timedelta(microseconds=1)

Step = Callable[[TransitionContext, State], State]


def keep_timestamps_increasing(ctx: TransitionContext, proposed: State) -> State:
    """A run's state timestamps are unique and never go backwards: bump by 1 µs when needed.

    Prefect bumps only on an exact collision; flowstate also refuses to go back in time, so that
    a run's history in timestamp order is the order it was written (relevant with injected clocks).
    """
    initial = ctx.initial
    if initial is not None and proposed.timestamp <= initial.timestamp:
        return copy_with(proposed, {"timestamp": initial.timestamp + _ONE_MICROSECOND})
    return proposed


def set_run_state_fields(ctx: TransitionContext, proposed: State) -> State:
    """The run's denormalised ``state_type`` and ``state_name`` follow the new state."""
    ctx.update_run(state_type=proposed.type, state_name=proposed.name)
    return proposed


def set_start_time(ctx: TransitionContext, proposed: State) -> State:
    """The first RUNNING state sets the run's start time; retries and resumes do not move it."""
    if proposed.type is StateType.RUNNING and ctx.run.start_time is None:
        ctx.update_run(start_time=proposed.timestamp)
    return proposed


def set_end_time(ctx: TransitionContext, proposed: State) -> State:
    """Leaving a final state clears the end time; the first final state sets it (and a start)."""
    if ctx.initial is not None and ctx.initial.is_final and not proposed.is_final:
        ctx.update_run(end_time=None)
    run = ctx.run  # (after a change: update_run leaves the run read before as it was)
    if proposed.is_final and run.end_time is None:
        if run.start_time is None:
            ctx.update_run(start_time=proposed.timestamp)
        ctx.update_run(end_time=proposed.timestamp)
    return proposed


def increment_run_time(ctx: TransitionContext, proposed: State) -> State:
    """Time spent RUNNING adds up in ``total_run_time``."""
    initial = ctx.initial
    if initial is not None and initial.type is StateType.RUNNING:
        ctx.update_run(total_run_time=ctx.run.total_run_time + (proposed.timestamp - initial.timestamp))
    return proposed


def set_expected_start_time(ctx: TransitionContext, proposed: State) -> State:
    """Set once, by the first state: its scheduled time if SCHEDULED, else its timestamp."""
    if ctx.run.expected_start_time is None:
        if proposed.type is StateType.SCHEDULED:
            ctx.update_run(expected_start_time=proposed.state_details.scheduled_time)
        else:
            ctx.update_run(expected_start_time=proposed.timestamp)
    return proposed


def set_next_scheduled_start_time(ctx: TransitionContext, proposed: State) -> State:
    """The run's next scheduled start is the scheduled time of its SCHEDULED state, if any."""
    if ctx.initial is not None and ctx.initial.type is StateType.SCHEDULED:
        ctx.update_run(next_scheduled_start_time=None)
    if proposed.type is StateType.SCHEDULED:
        ctx.update_run(next_scheduled_start_time=proposed.state_details.scheduled_time)
    return proposed


def update_flow_state_details(ctx: TransitionContext, proposed: State) -> State:
    """A flow run's state names its run (and, for a subflow, the parent's tracking task)."""
    update = flow_details_update(ctx.run.__dict__, proposed.state_details)
    return proposed if update is None else ctx.with_details(proposed, **update)


def update_task_state_details(ctx: TransitionContext, proposed: State) -> State:
    """A task run's state names its flow run (None for standalone tasks) and itself."""
    run = ctx.run
    details = proposed.state_details
    flow_run_id = getattr(run, "flow_run_id", None)
    if details.flow_run_id == flow_run_id and details.task_run_id == run.id:
        return proposed
    return ctx.with_details(proposed, flow_run_id=flow_run_id, task_run_id=run.id)


def increment_flow_run_count(ctx: TransitionContext, proposed: State) -> State:
    """Entering RUNNING counts an attempt, except when continuing after a reschedule resume."""
    policy: FlowRunPolicy = ctx.run.empirical_policy  # type: ignore[assignment]  # a flow run's
    if proposed.type is StateType.RUNNING and not policy.resuming:
        ctx.update_run(run_count=ctx.run.run_count + 1)
    return proposed


def remove_resuming_indicator(ctx: TransitionContext, proposed: State) -> State:
    """The ``resuming`` flag lasts until the next RUNNING or final state."""
    policy: FlowRunPolicy = ctx.run.empirical_policy  # type: ignore[assignment]  # a flow run's
    if policy.resuming and (proposed.type is StateType.RUNNING or proposed.is_final):
        ctx.update_run(empirical_policy=copy_with(policy, {"resuming": False}))
    return proposed


def increment_task_run_count(ctx: TransitionContext, proposed: State) -> State:
    """Every RUNNING state of a task run counts an attempt."""
    if proposed.type is StateType.RUNNING:
        ctx.update_run(run_count=ctx.run.run_count + 1)
    return proposed


_COMMON: tuple[Step, ...] = (
    set_run_state_fields,
    set_start_time,
    set_end_time,
    increment_run_time,
    set_expected_start_time,
    set_next_scheduled_start_time,
)

FLOW_STEPS: tuple[Step, ...] = (
    keep_timestamps_increasing,
    *_COMMON,
    update_flow_state_details,
    increment_flow_run_count,
    remove_resuming_indicator,
)

TASK_STEPS: tuple[Step, ...] = (
    keep_timestamps_increasing,
    *_COMMON,
    update_task_state_details,
    increment_task_run_count,
)


def apply_steps(steps: tuple[Step, ...], ctx: TransitionContext) -> None:
    """Run ``steps`` in order over the context's proposal (nothing when there is none)."""
    proposed = ctx.proposed
    if proposed is None:
        return
    for step in steps:
        proposed = step(ctx, proposed)
    ctx.proposed = proposed

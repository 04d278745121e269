"""The universal bookkeeping every transition gets, forced or not (Prefect's global policies).

Each step is a small function of the context, applied in Prefect's order after the policy's rules
and before the state is written. All of them leave nullified transitions (nothing to write) alone.

The steps are the specification; :func:`flow_bookkeeping` and :func:`task_bookkeeping` are the
same steps fused into one function each (one pass, the run's fields changed together), which is
what the engine runs: a transition's bookkeeping then costs one call instead of eleven.
``tests/orchestration/test_bookkeeping.py`` checks that both give the same run and state.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flowstate._models import copy_with, set_fields
from flowstate.orchestration.context import TransitionContext
from flowstate.orchestration.decisions import MirrorToParentTask
from flowstate.runs import FlowRun, FlowRunPolicy
from flowstate.states import TERMINAL_TYPES, State, StateDetails, StateType

__all__ = [
    "FLOW_BOOKKEEPING",
    "TASK_BOOKKEEPING",
    "Bookkeeping",
    "common_bookkeeping",
    "flow_bookkeeping",
    "flow_details_update",
    "task_bookkeeping",
]

_ONE_MICROSECOND = timedelta(microseconds=1)
_RUNNING, _SCHEDULED = StateType.RUNNING, StateType.SCHEDULED

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
    run = ctx.run
    if ctx.initial is not None and ctx.initial.is_final and not proposed.is_final:
        ctx.update_run(end_time=None)
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
    update = flow_details_update(ctx.run, proposed.state_details)  # type: ignore[arg-type]
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


def mirror_subflow_state_to_parent_task(ctx: TransitionContext) -> None:
    """A subflow's parent task run follows the subflow's states (forced, after the write)."""
    parent_task_run_id = getattr(ctx.run, "parent_task_run_id", None)
    if parent_task_run_id is not None and ctx.proposed is not None and ctx.validated is not None:
        ctx.effects.append(
            MirrorToParentTask(
                task_run_id=parent_task_run_id, child_flow_run_id=ctx.run.id, state=ctx.validated
            )
        )


def common_bookkeeping(
    initial: State | None, values: dict[str, Any], proposed: State, changes: dict[str, Any]
) -> tuple[State, StateType]:
    """keep_timestamps_increasing then the _COMMON steps, fused, for a run whose fields are
    ``values`` (its ``__dict__``) and whose current state is ``initial``: the run's new values
    go to ``changes``; returns the (possibly re-stamped) proposal and its type."""
    # (the states' __dict__: one lookup instead of pydantic's attribute hook per field)
    stated = proposed.__dict__
    current = None if initial is None else initial.__dict__
    timestamp = stated["timestamp"]
    if current is not None and timestamp <= current["timestamp"]:
        timestamp = current["timestamp"] + _ONE_MICROSECOND
        proposed = copy_with(proposed, {"timestamp": timestamp})
    to_type = stated["type"]
    from_type = None if current is None else current["type"]
    changes["state_type"] = to_type
    changes["state_name"] = stated["name"]
    start_time = values["start_time"]
    if to_type is _RUNNING and start_time is None:
        changes["start_time"] = start_time = timestamp
    final = to_type in TERMINAL_TYPES
    end_time = values["end_time"]
    if from_type in TERMINAL_TYPES and not final:
        changes["end_time"] = end_time = None
    if final and end_time is None:
        if start_time is None:
            changes["start_time"] = timestamp
        changes["end_time"] = timestamp
    if from_type is _RUNNING:
        changes["total_run_time"] = values["total_run_time"] + (timestamp - current["timestamp"])  # type: ignore[index]
    if values["expected_start_time"] is None:
        changes["expected_start_time"] = (
            stated["state_details"].scheduled_time if to_type is _SCHEDULED else timestamp
        )
    if to_type is _SCHEDULED:
        changes["next_scheduled_start_time"] = stated["state_details"].scheduled_time
    elif from_type is _SCHEDULED:
        changes["next_scheduled_start_time"] = None
    return proposed, to_type


def _save_changes(ctx: TransitionContext, changes: dict[str, Any]) -> None:
    """Apply ``changes`` to the run as :meth:`TransitionContext.update_run` would."""
    set_fields(ctx.run, changes)
    ctx.run_changed = True


def flow_details_update(run: FlowRun, details: StateDetails) -> dict[str, Any] | None:
    """The detail values update_flow_state_details sets on a flow run's new state (its run id,
    and its parent task run's), or None when ``details`` holds them already."""
    task_run_id = getattr(run, "parent_task_run_id", None)
    flow_run_id, run_id = details.flow_run_id, run.id
    if (
        flow_run_id is not None  # (None == a UUID would call UUID.__eq__)
        and (flow_run_id is run_id or flow_run_id == run_id)
        and (task_run_id is None or details.task_run_id == task_run_id)
    ):
        return None
    if task_run_id is None:
        return {"flow_run_id": run.id}
    return {"flow_run_id": run.id, "task_run_id": task_run_id}


def flow_bookkeeping(ctx: TransitionContext, proposed: State) -> State:
    """FLOW_BOOKKEEPING's before-steps in one pass (same result as applying them in order)."""
    changes: dict[str, Any] = {}
    proposed, to_type = common_bookkeeping(ctx.initial, ctx.run.__dict__, proposed, changes)
    run = ctx.run
    details = proposed.state_details
    update = flow_details_update(run, details)  # type: ignore[arg-type]
    if update is not None:
        proposed = copy_with(proposed, {"state_details": copy_with(details, update)})
    policy: FlowRunPolicy = run.empirical_policy  # type: ignore[assignment]  # a flow run's
    if to_type is _RUNNING and not policy.resuming:
        changes["run_count"] = run.run_count + 1
    if policy.resuming and (to_type is _RUNNING or to_type in TERMINAL_TYPES):
        changes["empirical_policy"] = copy_with(policy, {"resuming": False})
    _save_changes(ctx, changes)
    return proposed


def task_bookkeeping(ctx: TransitionContext, proposed: State) -> State:
    """TASK_BOOKKEEPING's before-steps in one pass (same result as applying them in order)."""
    changes: dict[str, Any] = {}
    proposed, to_type = common_bookkeeping(ctx.initial, ctx.run.__dict__, proposed, changes)
    run = ctx.run
    details = proposed.state_details
    flow_run_id = getattr(run, "flow_run_id", None)
    if details.flow_run_id != flow_run_id or details.task_run_id != run.id:
        update = {"flow_run_id": flow_run_id, "task_run_id": run.id}
        proposed = copy_with(proposed, {"state_details": copy_with(details, update)})
    if to_type is _RUNNING:
        changes["run_count"] = run.run_count + 1
    _save_changes(ctx, changes)
    return proposed


@dataclass(frozen=True)
class Bookkeeping:
    """Ordered steps applied to every non-nullified proposal, then steps run after the write.

    ``fused``, if given, is one function doing exactly what ``before`` does, run in its place.
    """

    before: Sequence[Step]
    after: Sequence[Callable[[TransitionContext], None]] = ()
    fused: Step | None = None

    def apply_before(self, ctx: TransitionContext) -> None:
        """Run the before-steps over the proposal (nothing happens when there is none)."""
        proposed = ctx.proposed
        if proposed is None:
            return
        if self.fused is not None:
            ctx.proposed = self.fused(ctx, proposed)
            return
        for step in self.before:
            proposed = step(ctx, proposed)
        ctx.proposed = proposed

    def stepwise(self) -> Bookkeeping:
        """The same bookkeeping run step by step (the specification the fused one follows)."""
        return Bookkeeping(before=self.before, after=self.after)

    def apply_after(self, ctx: TransitionContext) -> None:
        """Run the after-steps once the new state is known."""
        for step in self.after:
            step(ctx)


_COMMON: tuple[Step, ...] = (
    set_run_state_fields,
    set_start_time,
    set_end_time,
    increment_run_time,
    set_expected_start_time,
    set_next_scheduled_start_time,
)

FLOW_BOOKKEEPING = Bookkeeping(
    before=(
        keep_timestamps_increasing,
        *_COMMON,
        update_flow_state_details,
        increment_flow_run_count,
        remove_resuming_indicator,
    ),
    after=(mirror_subflow_state_to_parent_task,),
    fused=flow_bookkeeping,
)

TASK_BOOKKEEPING = Bookkeeping(
    before=(
        keep_timestamps_increasing,
        *_COMMON,
        update_task_state_details,
        increment_task_run_count,
    ),
    fused=task_bookkeeping,
)

"""Build transition contexts for pure rule tests: no database, a fixed clock, counted ids."""

from __future__ import annotations

import itertools
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from flowstate.orchestration.context import TransitionContext
from flowstate.orchestration.policies import CORE_FLOW, CORE_TASK
from flowstate.orchestration.policy import Outcome, Policy
from flowstate.runs import FlowRun, FlowRunPolicy, TaskRun, TaskRunPolicy
from flowstate.states import State, StateDetails, StateType

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)


def _ids():  # deterministic ids for readable failures
    counter = itertools.count(1)
    return lambda: uuid.UUID(int=next(counter))


def state(type_: str | StateType, *, name: str | None = None, at: datetime | None = None,
          data: Any = None, message: str | None = None, **details: Any) -> State:
    """A state of ``type_`` stamped at ``at`` (default: one minute before NOW)."""
    return State(
        type=StateType(type_),
        name=name,
        timestamp=at or NOW - timedelta(minutes=1),
        data=data,
        message=message,
        state_details=StateDetails(**details),
    )


def flow_ctx(initial: State | None, proposed: State, *, pause_keys: set[str] | None = None,
             deployment: bool = False, subflow: bool = False, run_count: int | None = None,
             **policy: Any) -> TransitionContext:
    """A flow transition context; ``policy`` fields go to the run's empirical policy."""
    run = FlowRun(
        id=uuid.UUID(int=1000),
        name="run",
        state=initial,
        empirical_policy=FlowRunPolicy(pause_keys=pause_keys or set(), **policy),
        deployment_id=uuid.UUID(int=2000) if deployment else None,
        parent_task_run_id=uuid.UUID(int=3000) if subflow else None,
        run_count=run_count if run_count is not None
        else 1 if initial is not None and initial.type is StateType.RUNNING else 0,
    )
    return TransitionContext(kind="flow", run=run, initial=initial,
                             proposed=proposed.model_copy(update={"timestamp": NOW}),
                             now=NOW, new_id=_ids())


def task_ctx(initial: State | None, proposed: State, *, flow_state: State | None = None,
             standalone: bool = False, run_count: int = 0, flow_run_count: int = 1,
             flow_run_run_count: int = 0, cached: State | None = None,
             **policy: Any) -> TransitionContext:
    """A task transition context inside a flow run in ``flow_state`` (RUNNING by default)."""
    flow_run = None
    if not standalone:
        flow_run = FlowRun(id=uuid.UUID(int=1000), name="flow", run_count=flow_run_count,
                           state=flow_state if flow_state is not None else state("RUNNING"))
    run = TaskRun(id=uuid.UUID(int=4000), name="task", state=initial, run_count=run_count,
                  flow_run_id=None if standalone else flow_run.id,  # type: ignore[union-attr]
                  flow_run_run_count=flow_run_run_count,
                  empirical_policy=TaskRunPolicy(**policy))
    return TransitionContext(kind="task", run=run, initial=initial,
                             proposed=proposed.model_copy(update={"timestamp": NOW}),
                             now=NOW, new_id=_ids(), flow_run=flow_run, cached_state=cached)


def decide_flow(ctx: TransitionContext, policy: Policy = CORE_FLOW) -> Outcome:
    return policy.decide(ctx)


def decide_task(ctx: TransitionContext, policy: Policy = CORE_TASK) -> Outcome:
    return policy.decide(ctx)

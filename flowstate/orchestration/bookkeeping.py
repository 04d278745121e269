"""The universal bookkeeping every transition gets, forced or not (Prefect's global policies).

After the policy's rules and before the state is written, in one pass per kind of run
(:func:`flow_bookkeeping`, :func:`task_bookkeeping`, sharing :func:`common_bookkeeping`): the
timestamp kept increasing, the run's state fields, start, end and run times, expected and next
scheduled start, the state's run ids, the run count, the resuming flag, and a subflow's
parent task run following the state written. Nullified
transitions (nothing to write) are left alone. ``tests/orchestration/bookkeeping_spec.py`` states
the same steps one by one, Prefect's way, and ``tests/orchestration/test_bookkeeping.py`` checks
that both give the same run and state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flowstate._models import copy_with
from flowstate.orchestration.context import TransitionContext
from flowstate.orchestration.decisions import MirrorToParentTask
from flowstate.runs import FlowRunPolicy
from flowstate.states import TERMINAL_TYPES, State, StateDetails, StateType

__all__ = [
    "FLOW_BOOKKEEPING",
    "TASK_BOOKKEEPING",
    "Bookkeeping",
    "common_bookkeeping",
    "flow_bookkeeping",
    "flow_details_update",
    "task_bookkeeping",
    "task_details_update",
]

_ONE_MICROSECOND = timedelta(microseconds=1)
_RUNNING, _SCHEDULED = StateType.RUNNING, StateType.SCHEDULED

Step = Callable[[TransitionContext, State], State]


def common_bookkeeping(
    initial: State | None, values: dict[str, Any], proposed: State, changes: dict[str, Any]
) -> tuple[State, StateType]:
    """The steps flow and task runs share (the timestamp kept increasing, the state fields, the
    times) for a run whose fields are ``values`` (its ``__dict__``) and whose current state is
    ``initial``: the run's new values go to ``changes``; returns the (possibly re-stamped)
    proposal and its type."""
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
    _start_and_end(values, from_type, to_type, timestamp, changes)
    if from_type is _RUNNING:
        changes["total_run_time"] = values["total_run_time"] + (timestamp - current["timestamp"])  # type: ignore[index]
    scheduled_time = stated["state_details"].scheduled_time
    if values["expected_start_time"] is None:
        changes["expected_start_time"] = scheduled_time if to_type is _SCHEDULED else timestamp
    if to_type is _SCHEDULED:
        changes["next_scheduled_start_time"] = scheduled_time
    elif from_type is _SCHEDULED:
        changes["next_scheduled_start_time"] = None
    return proposed, to_type


def _start_and_end(
    values: dict[str, Any],
    from_type: StateType | None,
    to_type: StateType,
    timestamp: datetime,
    changes: dict[str, Any],
) -> None:
    """The run's start and end times for a move from ``from_type`` to ``to_type`` at
    ``timestamp`` (into ``changes``): the first RUNNING or final state starts it, the first
    final state ends it, leaving a final state clears the end."""
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


def flow_details_update(values: Mapping[str, Any], details: StateDetails) -> dict[str, Any] | None:
    """The detail values update_flow_state_details sets on the new state of the flow run whose
    fields are ``values`` (its run id, and its parent task run's), or None when ``details``
    holds them already."""
    task_run_id = values.get("parent_task_run_id")
    flow_run_id, run_id = details.flow_run_id, values["id"]
    if (
        flow_run_id is not None  # (None == a UUID would call UUID.__eq__)
        and (flow_run_id is run_id or flow_run_id == run_id)
        and (task_run_id is None or details.task_run_id == task_run_id)
    ):
        return None
    if task_run_id is None:
        return {"flow_run_id": run_id}
    return {"flow_run_id": run_id, "task_run_id": task_run_id}


def task_details_update(values: Mapping[str, Any], details: StateDetails) -> dict[str, Any] | None:
    """The detail values update_task_run_state_details sets on the new state of the task run
    whose fields are ``values`` (its run id, and its flow run's), or None when ``details``
    holds them already."""
    flow_run_id, run_id = values["flow_run_id"], values["id"]
    stated = details.__dict__
    given_flow, given_task = stated["flow_run_id"], stated["task_run_id"]
    if (  # (a proposal names none yet; one named by the context, these very ids)
        given_task is not None
        and (given_task is run_id or given_task == run_id)
        and (given_flow is flow_run_id or given_flow == flow_run_id)
    ):
        return None
    return {"flow_run_id": flow_run_id, "task_run_id": run_id}


def flow_bookkeeping(ctx: TransitionContext, proposed: State) -> State:
    """FLOW_BOOKKEEPING's steps in one pass (same result as applying them in order); a
    subflow's parent task run is to follow the state written (an effect, after the save)."""
    changes: dict[str, Any] = {}
    values = ctx._values()
    proposed, to_type = common_bookkeeping(ctx.initial, values, proposed, changes)
    details = proposed.state_details
    update = flow_details_update(values, details)
    if update is not None:
        proposed = copy_with(proposed, {"state_details": copy_with(details, update)})
    policy: FlowRunPolicy = values["empirical_policy"]
    if to_type is _RUNNING and not policy.resuming:
        changes["run_count"] = values["run_count"] + 1
    if policy.resuming and (to_type is _RUNNING or to_type in TERMINAL_TYPES):
        changes["empirical_policy"] = copy_with(policy, {"resuming": False})
    ctx._record_bookkeeping(changes)
    parent_task_run_id = values["parent_task_run_id"]
    if parent_task_run_id is not None:  # a subflow's parent task run follows the state written
        ctx.effects.append(
            MirrorToParentTask(
                task_run_id=parent_task_run_id, child_flow_run_id=values["id"], state=proposed
            )
        )
    return proposed


def task_bookkeeping(ctx: TransitionContext, proposed: State) -> State:
    """TASK_BOOKKEEPING's steps in one pass (same result as applying them in order)."""
    changes: dict[str, Any] = {}
    values = ctx._values()
    proposed, to_type = common_bookkeeping(ctx.initial, values, proposed, changes)
    details = proposed.state_details
    update = task_details_update(values, details)
    if update is not None:
        proposed = copy_with(proposed, {"state_details": copy_with(details, update)})
    if to_type is _RUNNING:
        changes["run_count"] = values["run_count"] + 1
    ctx._record_bookkeeping(changes)
    return proposed


@dataclass(frozen=True)
class Bookkeeping:
    """What every non-nullified proposal gets after the rules (``before``: the proposal as it
    is written, the run's fields changed, the effects that follow the write).
    ``details_update``: the run's ids a proposal names from the start."""

    before: Step
    details_update: Callable[[Mapping[str, Any], StateDetails], dict[str, Any] | None]


FLOW_BOOKKEEPING = Bookkeeping(before=flow_bookkeeping, details_update=flow_details_update)
TASK_BOOKKEEPING = Bookkeeping(before=task_bookkeeping, details_update=task_details_update)

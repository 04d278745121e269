"""The core flow policy's everyday transitions, fused into one pass.

Most proposals a flow run meets in an ordinary life draw no objection from any rule of the core
flow policy: the most a rule does is copy a scheduled time or note a pause key. For those,
:func:`fused_core_flow` computes in one pass, on the run's own values, exactly what stamping the
proposal, ``CORE_FLOW.decide`` (its rules, the bookkeeping, the rules' after-steps) and the result
would: the state written, the run's new fields and the ACCEPT result. That is a fraction of the
pipeline's cost, which goes on looking up and entering a dozen rules per transition.

It answers None, having changed nothing, wherever a rule could do more — refuse, wait, abort,
substitute a state — or where something is out of the ordinary (result data, details other than
a scheduled time, a pause key or a pause timeout, a subflow, a deployment concurrency lease, a
deployment's run submitted (PENDING), a clock that is not plain UTC): the pipeline then decides as usual. Everything it accepts and
everything it makes holds plain values (UTC datetimes, text, UUIDs), the form reading the rows
back gives, which lets the store keep the run cached without checking it again.

``tests/orchestration/test_fused_flow.py`` compares it with the pipeline on generated runs and
proposals, and checks that the rules it stands in for are the ones ``CORE_FLOW`` compiles.
"""

from __future__ import annotations

from collections.abc import Callable, Set as AbstractSet
from datetime import datetime
from typing import Any
from uuid import UUID

from flowstate._models import construct, copy_with, set_fields
from flowstate._time import UTC, FromNow, resolve_from_now
from flowstate.orchestration.bookkeeping import common_bookkeeping
from flowstate.orchestration.policy import _ACCEPT_DETAILS
from flowstate.orchestration.scheduling_rules import seconds_to_wait
from flowstate.results import OrchestrationResult, SetStateStatus
from flowstate.runs import FlowRun
from flowstate.states import _DETAIL_DEFAULTS, TERMINAL_TYPES, State, StateDetails, StateType

__all__ = ["FUSED_PAIRS", "FUSED_RULES", "fused_core_flow"]

S = StateType
_FROM: frozenset[StateType | None] = frozenset({None, S.SCHEDULED, S.PENDING, S.RUNNING, S.PAUSED})
_TO: frozenset[StateType] = frozenset({S.SCHEDULED, S.PENDING, S.RUNNING, S.PAUSED, *TERMINAL_TYPES})
_LEAVING_A_PAUSE_TO = frozenset({S.RUNNING, S.SCHEDULED, *TERMINAL_TYPES})
_TIMES = frozenset({"scheduled_time", "pause_timeout"})
_STATE_FIELD_COUNT = len(State.model_fields)
_DETAIL_COUNT = len(_DETAIL_DEFAULTS)
_NO_NAMES: frozenset[str] = frozenset()
_GIVEN_BY_CONSTRUCTORS = frozenset({"type", "name", "message", "data"})
"""The state fields ``Running()`` and the others count as given; stamping adds the rest."""

FUSED_PAIRS: frozenset[tuple[StateType | None, StateType]] = frozenset(
    (from_type, to_type)
    for from_type in _FROM
    for to_type in _TO
    if not (to_type is S.PAUSED and from_type is not S.RUNNING)
    and not (to_type is S.PENDING and from_type in (S.PENDING, S.RUNNING))
    and not (from_type is S.RUNNING and to_type is S.FAILED)
    and not (from_type is S.PAUSED and to_type not in _LEAVING_A_PAUSE_TO)
)
"""The (from, to) pairs the fused path may answer; it answers None for every other."""

FUSED_RULES = frozenset(
    {
        "preserve_deployment_concurrency_lease_id",
        "prevent_duplicate_transitions",
        "secure_flow_concurrency_slots",
        "validate_deployment_concurrency_at_running",
        "release_flow_concurrency_slots",
        "ensure_only_scheduled_flows_marked_late",
        "handle_pausing_flows",
        "handle_resuming_paused_flows",
        "copy_scheduled_time",
        "wait_for_scheduled_time",
    }
)
"""The core flow rules whose effect the fused path reproduces (or falls back on): the deployment
concurrency rules act only on a run with a lease, or on a deployment's run proposing PENDING,
where it gives way."""


def _plain_proposal(proposed: State) -> AbstractSet[str] | None:
    """None unless the proposal holds only values the fused path handles, in their plain form;
    else the detail fields it gives at their default value (``Scheduled()`` gives
    ``scheduled_time=None``): reading the state back would count them as not given."""
    values = proposed.__dict__
    message = values["message"]
    if (
        type(proposed) is not State
        or values["data"] is not None
        or type(values["name"]) is not str
        or not (message is None or type(message) is str)
        or len(values) != _STATE_FIELD_COUNT
        or proposed.__pydantic_extra__ is not None
        or proposed.__pydantic_private__ is not None
    ):
        return None
    return _plain_details(values["state_details"])


def _plain_details(details: StateDetails) -> AbstractSet[str] | None:
    """``_plain_proposal`` for the proposal's details."""
    if (
        type(details) is not StateDetails
        or details.__pydantic_extra__ is not None
        or details.__pydantic_private__ is not None
        or len(details.__dict__) != _DETAIL_COUNT
    ):
        return None
    stated = details.__dict__
    at_default: AbstractSet[str] = _NO_NAMES
    for name in details.__pydantic_fields_set__:  # the others hold their defaults
        value = stated[name]
        if value is _DETAIL_DEFAULTS[name]:  # None or False: as good as not given
            at_default = at_default | {name}
            continue
        if name in _TIMES:
            if type(value) is FromNow and name == "pause_timeout":
                continue  # (stamping counts it from "now")
            if type(value) is not datetime or value.tzinfo is not UTC:
                return None
        elif name != "pause_key" or type(value) is not str:
            return None
    return at_default


_ABSENT: Any = object()
_last_stamped: tuple[Any, Any, StateDetails | None] = (None, None, None)
"""The details :func:`_stamped_details` built last: for this run id and scheduled time."""


def _stamped_details(details: StateDetails, update: dict[str, Any], shared: bool) -> StateDetails:
    """``details`` with the stamped values ``update`` (a run id, maybe a scheduled time).

    ``shared``: ``details`` gives nothing but defaults (``Running()``'s, ``Scheduled()``'s) and
    the stamp replaces every one it gives, so the result depends on ``update`` alone:
    successive states of one run then share one instance (details are frozen), which lets the
    store encode it once."""
    global _last_stamped
    if not shared:
        return copy_with(details, update)
    run_id, scheduled = update["flow_run_id"], update.get("scheduled_time", _ABSENT)
    last = _last_stamped
    if last[0] is run_id and last[1] is scheduled:
        return last[2]  # type: ignore[return-value]
    made = construct(StateDetails, {**_DETAIL_DEFAULTS, **update}, set(update))
    _last_stamped = (run_id, scheduled, made)
    return made


def fused_core_flow(
    run: FlowRun, proposed: State, now: datetime, new_id: Callable[[], UUID]
) -> tuple[State, OrchestrationResult, bool] | None:
    """What the core flow policy answers to ``proposed`` for ``run`` at ``now``, when it is an
    ACCEPT no rule intervenes in: the state written, the result, and whether the state written
    is exactly what reading its row back builds (every field pydantic counts as given
    included); the run's fields are changed in place as the pipeline changes them. None
    (nothing changed, no id drawn) otherwise."""
    values = run.__dict__
    initial: State | None = values["state"]
    if (
        type(now) is not datetime
        or now.tzinfo is not UTC
        or values["parent_task_run_id"] is not None
    ):
        return None
    at_default = _plain_proposal(proposed)
    if at_default is None:
        return None
    proposal = proposed.__dict__
    from_type = None if initial is None else initial.__dict__["type"]
    if _a_rule_may_intervene(values, initial, from_type, proposal, now):
        return None
    stamped = _stamp(values, initial, from_type, proposed, now, new_id, at_default)
    if stamped is None:
        return None
    written, pause_key, as_read = stamped
    changes: dict[str, Any] = {}
    written, to_type = common_bookkeeping(initial, values, written, changes)
    # the run count, and the policy as the resuming and pausing rules' after-steps leave it
    policy = values["empirical_policy"]
    resuming = policy.__dict__["resuming"]
    if to_type is S.RUNNING and not resuming:
        changes["run_count"] = values["run_count"] + 1
    policy_update: dict[str, Any] = {}
    if resuming and (to_type is S.RUNNING or to_type in TERMINAL_TYPES):
        policy_update["resuming"] = False
    if from_type is S.PAUSED:
        if to_type is S.SCHEDULED:  # HandleResumingPausedFlows, leaving a blocking pause
            policy_update.update(resuming=False, pause_keys=set(), retry_type="reschedule")
        else:
            policy_update["resuming"] = True
    elif to_type is S.PAUSED:  # HandlePausingFlows records the key
        policy_update["pause_keys"] = policy.__dict__["pause_keys"] | {pause_key}
    if policy_update:
        changes["empirical_policy"] = copy_with(policy, policy_update)
    set_fields(run, changes)
    result = construct(
        OrchestrationResult,
        {"state": written, "status": SetStateStatus.ACCEPT, "details": _ACCEPT_DETAILS},
    )
    return written, result, as_read


def _a_rule_may_intervene(
    values: dict[str, Any],
    initial: State | None,
    from_type: StateType | None,
    proposal: dict[str, Any],
    now: datetime,
) -> bool:
    """Whether a rule of the core flow policy could do more than copy a scheduled time or note
    a pause key for this proposal: refuse, wait, abort or substitute a state."""
    to_type = proposal["type"]
    if initial is None:
        current: dict[str, Any] = _DETAIL_DEFAULTS
    else:
        current = initial.__dict__["state_details"].__dict__
        if current["deployment_concurrency_lease_id"] is not None:
            return True  # PreserveDeploymentConcurrencyLeaseId would copy it
        if to_type is S.SCHEDULED and proposal["name"] == "Late":
            return True  # EnsureOnlyScheduledFlowsMarkedLate may refuse it
    if (from_type, to_type) not in FUSED_PAIRS:
        return True
    if to_type is S.PENDING and values["deployment_id"] is not None:
        return True  # SecureFlowConcurrencySlots may take a slot, or refuse
    pause_key = proposal["state_details"].__dict__["pause_key"]
    pause_keys = values["empirical_policy"].__dict__["pause_keys"]
    if to_type is S.PAUSED and pause_key is not None and pause_key in pause_keys:
        return True  # HandlePausingFlows: this pause has already fired
    if from_type is S.PAUSED:
        timeout = current["pause_timeout"]
        # HandleResumingPausedFlows may refuse it
        return bool(current["pause_reschedule"]) or (timeout is not None and timeout < now)
    if to_type is S.RUNNING and (from_type is S.SCHEDULED or from_type is S.PENDING):
        scheduled = current["scheduled_time"]
        # WaitForScheduledTime would answer WAIT
        return scheduled is not None and seconds_to_wait(scheduled, now) > 0
    return False


def _stamp(
    values: dict[str, Any],
    initial: State | None,
    from_type: StateType | None,
    proposed: State,
    now: datetime,
    new_id: Callable[[], UUID],
    at_default: AbstractSet[str],
) -> tuple[State, str | None, bool] | None:
    """The proposal stamped (a new id, "now", the run's id, the scheduled time), the pause key
    (drawn after the state's id when a pause has none), and whether the stamped state is what
    reading its row back builds; None where the pipeline's stamping must say what is wrong."""
    proposal = proposed.__dict__
    to_type = proposal["type"]
    stated = proposal["state_details"].__dict__
    run_id = values["id"]
    update: dict[str, Any] = {"flow_run_id": run_id}
    copied_as_is = True  # (a copied time that reading back might not give as it is: False)
    if stated["scheduled_time"] is None:
        if to_type is S.SCHEDULED:
            update["scheduled_time"] = now
        elif from_type is S.SCHEDULED and to_type is S.PENDING:
            current = initial.__dict__["state_details"].__dict__  # type: ignore[union-attr]
            copied = update["scheduled_time"] = current["scheduled_time"]  # CopyScheduledTime
            copied_as_is = type(copied) is datetime and copied.tzinfo is UTC
    pause_key = stated["pause_key"]
    if to_type is S.PAUSED:
        timeout = stated["pause_timeout"]
        if type(timeout) is FromNow:
            try:
                update["pause_timeout"] = resolve_from_now(timeout, now)
            except OverflowError:
                return None
    state_id = new_id()
    if to_type is S.PAUSED and pause_key is None:
        pause_key = str(new_id())  # HandlePausingFlows draws a key after the state's id
    # the details given at their default value are all replaced by the stamp
    defaults_replaced = not at_default or at_default <= update.keys()
    details = proposal["state_details"]
    shared = defaults_replaced and details.__pydantic_fields_set__ == at_default
    stamped = _stamped_details(details, update, shared)
    written = copy_with(proposed, {"id": state_id, "timestamp": now, "state_details": stamped})
    # Reading the row back counts every state field as given, and only the details that hold
    # something other than their default: the same, here, unless the proposal left a state
    # field to its default or gave a detail its default value that stamping did not replace.
    as_read = (
        copied_as_is
        and type(run_id) is UUID
        and defaults_replaced
        and _GIVEN_BY_CONSTRUCTORS <= proposed.__pydantic_fields_set__
    )
    return written, pause_key, as_read

"""The rules of Prefect's core flow policy, one small function each, in policy order.

Reason strings are Prefect's, character for character: callers and the conformance vectors
compare them.
"""

from __future__ import annotations

from datetime import timedelta

from flowstate._models import copy_with
from flowstate.orchestration.context import TransitionContext
from flowstate.orchestration.decisions import Abort, Decision, DeleteRunInputs, Proceed, Reject
from flowstate.result_data import has_persisted_result
from flowstate.orchestration.rules import ANY_STATE, TERMINAL, rule
from flowstate.runs import FlowRunPolicy
from flowstate.states import State, StateType

__all__ = [
    "bypass_cancelling_flow_runs_with_no_infra",
    "enforce_cancelling_to_cancelled_transition",
    "ensure_only_scheduled_flows_marked_late",
    "handle_flow_terminal_state_transitions",
    "handle_pausing_flows",
    "handle_resuming_paused_flows",
    "preserve_deployment_concurrency_lease_id",
    "prevent_duplicate_transitions",
    "prevent_pending_transitions",
    "prevent_result_data_loss",
    "retry_crashed_flows",
    "retry_failed_flows",
]

S = StateType
_CANNOT_FOLLOW_TERMINAL = frozenset({S.CANCELLING, S.PAUSED, S.CRASHED})
_MAY_LEAVE_PAUSE = frozenset({S.RUNNING, S.SCHEDULED, S.CANCELLING}) | frozenset(TERMINAL)


def _pause_verb(ctx: TransitionContext) -> str:
    """Prefect says "suspend" only when the proposed state is named ``Suspended``."""
    assert ctx.proposed is not None
    return "suspend" if ctx.proposed.name == "Suspended" else "pause"


@rule(from_=ANY_STATE, to=ANY_STATE, prefect="PreserveDeploymentConcurrencyLeaseId")
def preserve_deployment_concurrency_lease_id(ctx: TransitionContext) -> Decision | None:
    """A proposal without a deployment concurrency lease id carries the current state's."""
    initial, proposed = ctx.initial, ctx.proposed
    if initial is None or proposed is None:
        return None
    lease_id = initial.state_details.deployment_concurrency_lease_id
    if lease_id is None or proposed.state_details.deployment_concurrency_lease_id is not None:
        return None
    return Proceed(ctx.with_details(proposed, deployment_concurrency_lease_id=lease_id))


@rule(from_=ANY_STATE, to=ANY_STATE, prefect="PreventDuplicateTransitions")
def prevent_duplicate_transitions(ctx: TransitionContext) -> Decision | None:
    """A proposal with the same transition id as the current state was already made."""
    initial, proposed = ctx.initial, ctx.proposed
    if initial is None or proposed is None:
        return None
    transition_id = proposed.state_details.transition_id
    if transition_id is not None and transition_id == initial.state_details.transition_id:
        return Reject("This run has already made this state transition.")
    return None


@rule(from_=TERMINAL, to=ANY_STATE, prefect="HandleFlowTerminalStateTransitions")
def handle_flow_terminal_state_transitions(ctx: TransitionContext) -> Decision | None:
    """Guard finished runs; a manual re-run out of a final state resets the pause bookkeeping."""
    initial, proposed = ctx.initial, ctx.proposed
    if initial is None or proposed is None:
        return None
    refusal = _refused_after_terminal(ctx, initial, proposed)
    if refusal is None and not proposed.is_final:
        retry_type = "reschedule" if proposed.type is S.SCHEDULED else None
        policy = ctx._value("empirical_policy")
        update = {"resuming": False, "pause_keys": set(), "retry_type": retry_type}
        ctx._update_unchecked(empirical_policy=copy_with(policy, update))
    return refusal


def _refused_after_terminal(
    ctx: TransitionContext, initial: State, proposed: State
) -> Decision | None:
    """Why a run in the final state ``initial`` may not move to ``proposed`` (None: it may)."""
    if proposed.type in _CANNOT_FOLLOW_TERMINAL:
        return Abort(f"Run is already in terminal state {initial.type.value}.")
    if initial.type is S.COMPLETED and has_persisted_result(initial.data):
        if not proposed.is_final:
            return Reject("Run is already COMPLETED.")
        if proposed.type is S.COMPLETED and not has_persisted_result(proposed.data):
            return Reject(
                "Cannot overwrite a COMPLETED state that carries persisted result data with one "
                "that does not."
            )
    if proposed.type is S.SCHEDULED and ctx._value("deployment_id") is None:
        return Abort("Cannot reschedule a run without an associated deployment.")
    return None


@rule(
    from_={S.CANCELLING},
    to=ANY_STATE - {S.CANCELLED},
    prefect="EnforceCancellingToCancelledTransition",
)
def enforce_cancelling_to_cancelled_transition(ctx: TransitionContext) -> Decision | None:
    """A cancelling flow run can only become CANCELLED."""
    return Reject("Cannot transition flows that are cancelling to a state other than Cancelled.")


@rule(from_={S.SCHEDULED, S.PAUSED}, to={S.CANCELLING}, prefect="BypassCancellingFlowRunsWithNoInfra")
def bypass_cancelling_flow_runs_with_no_infra(ctx: TransitionContext) -> Decision | None:
    """Nothing runs for a scheduled run without infrastructure or a suspended run: cancel at once."""
    initial = ctx.initial
    if initial is None or ctx.proposed is None:
        return None
    no_infrastructure = ctx._value("infrastructure_pid") is None
    if (initial.type is S.SCHEDULED and no_infrastructure) or initial.name == "Resuming":
        return Reject(
            "Scheduled flow run has no infrastructure to terminate.",
            ctx.fresh_state(S.CANCELLED),
        )
    if initial.type is S.PAUSED and initial.state_details.pause_reschedule:
        return Reject(
            "Suspended flow run has no infrastructure to terminate.",
            ctx.fresh_state(S.CANCELLED),
        )
    return None


@rule(
    from_={S.PENDING, S.CANCELLING, S.RUNNING, S.CANCELLED},
    to={S.PENDING},
    prefect="PreventPendingTransitions",
)
def prevent_pending_transitions(ctx: TransitionContext) -> Decision | None:
    """Two workers cannot both submit a run; named PENDING sub-steps may follow each other."""
    initial, proposed = ctx.initial, ctx.proposed
    if initial is None or proposed is None:
        return None
    if (
        initial.type is S.PENDING
        and initial.name != proposed.name
        and proposed.name != "Pending"
    ):
        details = initial.state_details
        return Proceed(
            ctx.with_details(
                proposed,
                scheduled_time=details.scheduled_time,
                deployment_concurrency_lease_id=details.deployment_concurrency_lease_id,
            )
        )
    return Abort(
        f"This run is in a {initial.type.name} state and cannot transition to a PENDING state."
    )


@rule(from_=ANY_STATE, to={S.SCHEDULED}, prefect="EnsureOnlyScheduledFlowsMarkedLate")
def ensure_only_scheduled_flows_marked_late(ctx: TransitionContext) -> Decision | None:
    """Only a SCHEDULED run can be marked ``Late``, and only once."""
    initial, proposed = ctx.initial, ctx.proposed
    if initial is None or proposed is None or proposed.name != "Late":
        return None  # a run with no state may start out Late (Prefect 3.9.1 accepts it)
    if initial.type is not S.SCHEDULED:
        return Reject("Only scheduled flows can be marked late.")
    if initial.name == "Late":
        return Reject("This flow run is already marked late.")
    return None


def _record_pause(ctx: TransitionContext) -> None:
    """After a pause is written: remember its key, and clear stale input under its keyset."""
    key = ctx.parameters.get("pause_key")
    if key is not None:
        policy: FlowRunPolicy = ctx._value("empirical_policy")
        ctx._update_unchecked(
            empirical_policy=copy_with(policy, {"pause_keys": policy.pause_keys | {key}})
        )
    validated = ctx.validated
    keyset = validated.state_details.run_input_keyset if validated is not None else None
    if keyset:
        ctx.effects.append(DeleteRunInputs(ctx._value("id"), tuple(keyset.values())))


@rule(from_=ANY_STATE, to={S.PAUSED}, prefect="HandlePausingFlows", after=_record_pause)
def handle_pausing_flows(ctx: TransitionContext) -> Decision | None:
    """Only a RUNNING flow can pause, once per pause key; suspending needs a top-level deployment."""
    initial, proposed = ctx.initial, ctx.proposed
    assert proposed is not None
    verb = _pause_verb(ctx)
    if initial is None:
        return Abort(f"Cannot {verb} flows with no state.")
    if initial.type is not S.RUNNING:
        return Reject(f"Cannot {verb} flows that are not currently running.")
    key = proposed.state_details.pause_key or str(ctx.new_id())
    policy: FlowRunPolicy = ctx._value("empirical_policy")
    if key in policy.pause_keys:
        return Reject(f"This {verb} has already fired.")
    if proposed.state_details.pause_reschedule:
        if ctx._value("parent_task_run_id") is not None:
            return Abort(f"Cannot {verb} subflows.")
        if ctx._value("deployment_id") is None:
            return Abort(f"Cannot {verb} flows without a deployment.")
    ctx.parameters["pause_key"] = key
    return None


def _mark_resuming(ctx: TransitionContext) -> None:
    """After leaving a pause (even when refused): flag the next RUNNING as a continuation.

    Leaving a blocking pause for SCHEDULED instead starts over: the pause bookkeeping is reset.
    """
    initial, validated = ctx.initial, ctx.validated
    assert initial is not None
    policy = ctx._value("empirical_policy")
    blocking = not initial.state_details.pause_reschedule
    if blocking and validated is not None and validated.type is S.SCHEDULED:
        update = {"resuming": False, "pause_keys": set(), "retry_type": "reschedule"}
    else:
        update = {"resuming": True}
    ctx._update_unchecked(empirical_policy=copy_with(policy, update))


@rule(from_={S.PAUSED}, to=ANY_STATE, prefect="HandleResumingPausedFlows", after=_mark_resuming)
def handle_resuming_paused_flows(ctx: TransitionContext) -> Decision | None:
    """A paused run may resume, reschedule, be cancelled or finish; an expired pause fails."""
    initial, proposed = ctx.initial, ctx.proposed
    if initial is None or proposed is None:
        return None
    if proposed.type not in _MAY_LEAVE_PAUSE:
        return Reject(
            f"This run cannot transition to the StateType.{proposed.type.value} state "
            "from the StateType.PAUSED state."
        )
    display = (proposed.name or proposed.type.value).lower()
    details = initial.state_details
    if details.pause_reschedule and ctx._value("deployment_id") is None:
        return Reject(f"Cannot reschedule a {display} flow run without a deployment.")
    if proposed.type is S.CANCELLING:
        return None
    if details.pause_timeout is not None and details.pause_timeout < ctx.now:
        return Reject(
            f"The flow run {_pause_verb(ctx)} has timed out and can no longer resume.",
            ctx.fresh_state(S.FAILED, message=f"The flow was {display} and never resumed."),
        )
    return None


def _retry_if_attempts_left(ctx: TransitionContext) -> Decision | None:
    """Reschedule a failed (or crashed) attempt as ``AwaitingRetry`` while retries are left."""
    initial, proposed = ctx.initial, ctx.proposed
    if initial is None or proposed is None:
        return None
    policy: FlowRunPolicy = ctx._value("empirical_policy")
    if policy.retries is None or ctx._value("run_count") > policy.retries:
        ctx._update_unchecked(empirical_policy=copy_with(policy, {"retry_type": None}))
        return None
    update = {"resuming": False, "pause_keys": set(), "retry_type": "in_process"}
    ctx._update_unchecked(empirical_policy=copy_with(policy, update))
    retry = ctx.fresh_state(
        S.SCHEDULED,
        name="AwaitingRetry",
        message=proposed.message,
        data=proposed.data,
        scheduled_time=ctx.now + timedelta(seconds=policy.retry_delay or 0),
        deployment_concurrency_lease_id=initial.state_details.deployment_concurrency_lease_id,
    )
    return Reject("Retrying", retry)


@rule(from_={S.RUNNING}, to={S.FAILED}, prefect="RetryFailedFlows")
def retry_failed_flows(ctx: TransitionContext) -> Decision | None:
    """A failed attempt with retries left is rescheduled as ``AwaitingRetry``."""
    return _retry_if_attempts_left(ctx)


@rule(from_={S.RUNNING}, to={S.CRASHED})
def retry_crashed_flows(ctx: TransitionContext) -> Decision | None:
    """Not in Prefect's policy (an opt-in flowstate rule): a crashed attempt with retries left
    is rescheduled as ``AwaitingRetry``, like a failed one. Add it to a policy to retry runs
    that :meth:`~flowstate.Orchestrator.mark_lost_runs` finds dead."""
    return _retry_if_attempts_left(ctx)


@rule(from_=TERMINAL, to=TERMINAL, prefect="PreventResultDataLoss")
def prevent_result_data_loss(ctx: TransitionContext) -> Decision | None:
    """Even forced, a persisted COMPLETED result is not replaced by one that is not persisted."""
    initial, proposed = ctx.initial, ctx.proposed
    if initial is None or proposed is None:
        return None
    if (
        initial.type is S.COMPLETED
        and proposed.type is S.COMPLETED
        and has_persisted_result(initial.data)
        and not has_persisted_result(proposed.data)
    ):
        return Reject(
            "Cannot overwrite a COMPLETED state that carries persisted result data with one "
            "that does not."
        )
    return None

"""The deployment concurrency rules of Prefect's flow policies: a flow run of a deployment with
a limit holds one of its slots from PENDING until it leaves PENDING, RUNNING and CANCELLING.

The slot is held by a lease of the run (holder ``flow_run``), whose id the run's states carry
(``deployment_concurrency_lease_id``). Where Prefect 3.9.1 loses or leaks slots, these rules do
not (the README's deliberate differences): a run gives back only a slot its own lease holds; a
run that kept its slot through an automatic retry goes on with it; an inactive limit restricts
nothing. Reason and message texts are Prefect's.
"""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

from flowstate.concurrency.run_slots import DeploymentLimit
from flowstate.orchestration.context import TransitionContext
from flowstate.orchestration.decisions import Abort, Decision, Proceed, Reject
from flowstate.orchestration.rules import ANY_STATE, rule
from flowstate.results import SetStateStatus
from flowstate.states import State, StateType

__all__ = [
    "SLOT_WAIT_SECONDS",
    "release_flow_concurrency_slots",
    "secure_flow_concurrency_slots",
    "validate_deployment_concurrency_at_running",
]

S = StateType
HOLDING = frozenset({S.PENDING, S.RUNNING, S.CANCELLING})
"""A deployment's run holds its slot while in one of these."""
SLOT_WAIT_SECONDS = 30
"""How far ahead an enqueued run is rescheduled (``AwaitingConcurrencySlot``)."""
LIMIT_REACHED = "Deployment concurrency limit reached."
ZERO_LIMIT = "The deployment concurrency limit is 0. The flow will deadlock if submitted again."
LOST_REASON = "Deployment concurrency limit reached after lease expiry."
LOST_MESSAGE = (
    "Deployment concurrency slot lost during provisioning - no slots available to continue "
    "execution"
)
_TAKEN = "deployment_concurrency_lease_taken"
"""``ctx.parameters`` key: the lease a rule took in this transition (given back on a fizzle)."""


def _holder(ctx: TransitionContext) -> tuple[str, str]:
    return ("flow_run", str(ctx._value("id")))


def _lease_of(state: State | None) -> UUID | None:
    return None if state is None else state.state_details.deployment_concurrency_lease_id


def _give_back_taken(ctx: TransitionContext) -> None:
    """Cleanup of a fizzled transition: the slot taken for it goes back, and the state
    returned shows no lease."""
    taken = ctx.parameters.pop(_TAKEN, None)
    if taken is None:
        return
    ctx.slots.release(taken, _holder(ctx))
    validated = ctx.validated
    if validated is not None and _lease_of(validated) is not None:
        ctx.validated = ctx.with_details(validated, deployment_concurrency_lease_id=None)


@rule(
    from_=ANY_STATE - HOLDING,
    to={S.PENDING},
    prefect="SecureFlowConcurrencySlots",
    cleanup=_give_back_taken,
)
def secure_flow_concurrency_slots(ctx: TransitionContext) -> Decision | None:
    """A run submitted (PENDING) takes a slot of its deployment's limit; when it is full the run
    is rescheduled 30 s later (ENQUEUE, the default) or cancelled (CANCEL_NEW)."""
    proposed = ctx.proposed
    if proposed is None:
        return None
    deployment = ctx.slots.deployment_limit(ctx._value("deployment_id"))
    if deployment is None:
        return None
    kept = _lease_of(ctx.initial)
    if kept is not None and ctx.slots.held(kept, _holder(ctx)) is not None:
        # the run kept its slot (an automatic retry): it goes on with it
        if _lease_of(proposed) == kept:
            return None
        return Proceed(ctx.with_details(proposed, deployment_concurrency_lease_id=kept))
    return _take_slot(ctx, proposed, deployment)


def _take_slot(
    ctx: TransitionContext, proposed: State, deployment: DeploymentLimit
) -> Decision | None:
    """A submitted run without a slot takes one of its deployment's limit (and its state
    carries the lease); a full limit reschedules the run or cancels it, as the deployment's
    collision strategy says."""
    limit = deployment.limit
    if not limit.active:
        return None  # an inactive limit restricts nothing
    if limit.limit == 0:
        return Abort(ZERO_LIMIT)
    taken = _take_anew(ctx, proposed, deployment)
    if taken is not None:
        return taken
    if deployment.collision_strategy == "CANCEL_NEW":
        return Reject(LIMIT_REACHED, ctx.fresh_state(S.CANCELLED, message=LIMIT_REACHED))
    waiting = ctx.fresh_state(
        S.SCHEDULED,
        name="AwaitingConcurrencySlot",
        scheduled_time=ctx.now + timedelta(seconds=SLOT_WAIT_SECONDS),
    )
    return Reject(LIMIT_REACHED, waiting)


def _take_anew(
    ctx: TransitionContext, proposed: State, deployment: DeploymentLimit
) -> Proceed | None:
    """A new slot of the deployment's limit for the run, ``proposed`` carrying its lease;
    None (nothing taken) when the limit is full."""
    lease, _full = ctx.slots.take([deployment.limit], _holder(ctx), deployment.grace)
    if lease is None:
        return None
    ctx.parameters[_TAKEN] = lease
    return Proceed(ctx.with_details(proposed, deployment_concurrency_lease_id=lease))


@rule(
    from_={S.PENDING},
    to={S.RUNNING},
    prefect="ValidateDeploymentConcurrencyAtRunning",
    cleanup=_give_back_taken,
)
def validate_deployment_concurrency_at_running(ctx: TransitionContext) -> Decision | None:
    """PENDING -> RUNNING carries the run's lease and renews it for the grace period; a run
    whose lease is gone takes a slot again, or is cancelled when none is free."""
    proposed = ctx.proposed
    if proposed is None or ctx.initial is None:
        return None
    lease_id = _lease_of(ctx.initial)
    decision: Decision | None = None
    if _lease_of(proposed) != lease_id:
        proposed = ctx.with_details(proposed, deployment_concurrency_lease_id=lease_id)
        decision = Proceed(proposed)
    if lease_id is None:
        return decision
    deployment = ctx.slots.deployment_limit(ctx._value("deployment_id"))
    if deployment is None:
        return decision
    if ctx.slots.renew(lease_id, _holder(ctx), deployment.grace):
        return decision
    if not deployment.limit.active:
        return decision  # an inactive limit restricts nothing
    taken = _take_anew(ctx, proposed, deployment)
    if taken is not None:
        return taken
    return Reject(LOST_REASON, ctx.fresh_state(S.CANCELLED, message=LOST_MESSAGE))


def _release_own_slot(ctx: TransitionContext) -> None:
    """After a run leaves PENDING, RUNNING and CANCELLING: its lease gives its slot back."""
    initial, proposed = ctx.initial, ctx.proposed
    if proposed is None or initial is None:
        return  # nothing was written
    if initial.type not in HOLDING or proposed.type in HOLDING:
        return
    if ctx.status is SetStateStatus.REJECT and proposed.name == "AwaitingRetry":
        return  # an automatic retry keeps the slot for the next attempt
    lease_id = _lease_of(initial)
    if lease_id is None or ctx._value("deployment_id") is None:
        return
    ctx.slots.release(lease_id, _holder(ctx))


@rule(
    from_=ANY_STATE,
    to=ANY_STATE,
    prefect="ReleaseFlowConcurrencySlots",
    after=_release_own_slot,
    universal=True,
)
def release_flow_concurrency_slots(ctx: TransitionContext) -> Decision | None:
    """A run leaving PENDING, RUNNING and CANCELLING (forced too) gives back the slot its lease
    holds; the AwaitingRetry of an automatic retry keeps it."""
    return None

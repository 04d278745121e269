"""The tag concurrency rules of Prefect's task policies: a task run whose tags have limits
holds one slot of each while RUNNING (or CANCELLING), and gives it back when it leaves.

The slot is held by a lease of the task run (holder ``task_run``) over all of its tags' active
limits at once: all or none. Where Prefect 3.9.1 loses or leaks slots, these rules do not (the
README's deliberate differences): a tag limit of 0 aborts before any slot is taken; a run gives
back the slots of its own leases, whatever became of the limit meanwhile (deactivated and
reactivated, its holders reset). The WAIT delay is Prefect's, without its random jitter: the
fullest limit's average slot occupancy, at most 10 s (2 s for a limit that has seen no
release yet). Reason texts are Prefect's.
"""

from __future__ import annotations

from flowstate.concurrency.slots import LimitRow
from flowstate.concurrency.tags import TASK_SLOT_LEASE_SECONDS
from flowstate.orchestration.context import TransitionContext
from flowstate.orchestration.decisions import Abort, Decision, Wait
from flowstate.orchestration.rules import ANY_STATE, rule
from flowstate.states import StateType

__all__ = [
    "TAG_SLOT_WAIT_SECONDS",
    "release_task_concurrency_slots",
    "secure_task_concurrency_slots",
    "wait_seconds",
]

S = StateType
HOLDING = frozenset({S.RUNNING, S.CANCELLING})
"""A task run holds its tag slots while in one of these."""
TAG_SLOT_WAIT_SECONDS = 10
"""The longest WAIT before a task run asks for its tag slots again (Prefect's
``tag_concurrency_slot_wait_seconds``)."""
_TAKEN = "task_concurrency_lease_taken"
"""``ctx.parameters`` key: the lease taken in this transition (given back on a fizzle)."""


def _holder(ctx: TransitionContext) -> tuple[str, str]:
    return ("task_run", str(ctx._value("id")))


def _tags(ctx: TransitionContext) -> list[str]:
    return ctx._value("tags") if ctx.kind == "task" else []  # type: ignore[no-any-return]


def wait_seconds(full: list[tuple[LimitRow, int]]) -> int:
    """The WAIT delay for limits that are full, each with the slots it holds: the average slot
    occupancy of the fullest one (held / limit), at most :data:`TAG_SLOT_WAIT_SECONDS`,
    rounded; Prefect draws it between 0.752 and 1.3 times that."""
    fullest, _held = max(full, key=lambda pair: pair[1] / pair[0].limit)
    occupancy = fullest.avg_slot_occupancy_seconds or TAG_SLOT_WAIT_SECONDS
    return round(min(occupancy, TAG_SLOT_WAIT_SECONDS))


def _give_back_taken(ctx: TransitionContext) -> None:
    """Cleanup of a fizzled transition (WaitForScheduledTime answered WAIT): the slots taken
    for it go back."""
    taken = ctx.parameters.pop(_TAKEN, None)
    if taken is not None:
        ctx.slots.release(taken, _holder(ctx), count_occupancy=False)


@rule(
    from_=ANY_STATE,
    to={S.RUNNING},
    prefect="SecureTaskConcurrencySlots",
    cleanup=_give_back_taken,
)
def secure_task_concurrency_slots(ctx: TransitionContext) -> Decision | None:
    """A task run entering RUNNING takes a slot of each of its tags' limits, all or none; it
    waits while one is full, and aborts when one is 0 (it could never run). Inactive and
    negative limits restrict nothing."""
    tags = _tags(ctx)
    if ctx.proposed is None or not tags:
        return None
    limits = [row for row in ctx.slots.tag_limits(tags) if row.active]
    zero = next((row for row in limits if row.limit == 0), None)
    if zero is not None:  # the task run could never run
        return Abort(
            f'The concurrency limit on tag "{_tag_of(zero)}" is 0 and will deadlock if the '
            "task tries to run again."
        )
    return _take_or_wait(ctx, [row for row in limits if row.limit > 0])


def _tag_of(row: LimitRow) -> str:
    """The tag a tag limit is named after (its name is ``tag:<tag>``)."""
    return row.name.split(":", 1)[1]


def _take_or_wait(ctx: TransitionContext, limits: list[LimitRow]) -> Decision | None:
    """A slot of each of the limits (all positive), all or none: WAIT while one is full."""
    if not limits:
        return None
    lease, full = ctx.slots.take(limits, _holder(ctx), TASK_SLOT_LEASE_SECONDS)
    if lease is not None:
        ctx.parameters[_TAKEN] = lease
        return None
    names = ", ".join(_tag_of(row) for row in limits)
    return Wait(wait_seconds(full), f"Concurrency limit reached for tags: {names}")


def _release_own_slots(ctx: TransitionContext) -> None:
    """After a task run's new state, unless it is RUNNING or CANCELLING: the leases it holds on
    its tags' limits give their slots back."""
    proposed = ctx.proposed
    if proposed is None or proposed.type in HOLDING:
        return  # nothing was written, or the run still holds its slots
    tags = _tags(ctx)
    if tags:
        ctx.slots.release_held(_holder(ctx), ctx.slots.tag_limits(tags))


@rule(
    from_=ANY_STATE,
    to=ANY_STATE,
    prefect="ReleaseTaskConcurrencySlots",
    after=_release_own_slots,
    universal=True,
)
def release_task_concurrency_slots(ctx: TransitionContext) -> Decision | None:
    """A task run leaving RUNNING and CANCELLING (forced too; AwaitingRetry and PAUSED
    included) gives back the tag slots it holds."""
    return None

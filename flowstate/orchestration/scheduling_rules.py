"""Rules about scheduled start times, shared by the flow and task policies."""

from __future__ import annotations

import math
from datetime import datetime

from flowstate.orchestration.context import TransitionContext
from flowstate.orchestration.decisions import Decision, Proceed, Wait
from flowstate.orchestration.rules import rule
from flowstate.states import StateType

__all__ = ["copy_scheduled_time", "seconds_to_wait", "wait_for_scheduled_time"]

SCHEDULED, PENDING, RUNNING = StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING


@rule(from_={SCHEDULED}, to={PENDING}, prefect="CopyScheduledTime")
def copy_scheduled_time(ctx: TransitionContext) -> Decision | None:
    """A PENDING state keeps the scheduled time of the SCHEDULED state it follows."""
    assert ctx.initial is not None and ctx.proposed is not None
    if ctx.proposed.state_details.scheduled_time is not None:
        return None
    scheduled_time = ctx.initial.state_details.scheduled_time
    return Proceed(ctx.with_details(ctx.proposed, scheduled_time=scheduled_time))


def seconds_to_wait(scheduled_time: datetime, now: datetime) -> int:
    """The whole seconds a run scheduled for ``scheduled_time`` still has to wait at ``now``,
    rounded as Prefect does: whole seconds plus the rounded fraction (0.5 s left is no wait)."""
    remaining = scheduled_time - now
    return math.floor(remaining.total_seconds()) + round(remaining.microseconds / 1e6)


@rule(from_={SCHEDULED, PENDING}, to={RUNNING}, prefect="WaitForScheduledTime")
def wait_for_scheduled_time(ctx: TransitionContext) -> Decision | None:
    """A run cannot start before its scheduled time: WAIT for the remaining whole seconds."""
    assert ctx.initial is not None
    scheduled_time = ctx.initial.state_details.scheduled_time
    if scheduled_time is None:
        return None
    seconds = seconds_to_wait(scheduled_time, ctx.now)
    if seconds > 0:
        return Wait(seconds, "Scheduled time is in the future")
    return None

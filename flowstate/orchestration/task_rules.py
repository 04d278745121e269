"""The rules of Prefect's core task policy, one small function each, in policy order."""

from __future__ import annotations

from datetime import timedelta

from flowstate._models import copy_with
from flowstate.orchestration.context import TransitionContext
from flowstate.orchestration.decisions import Abort, Decision, InsertCacheEntry, Proceed, Reject
from flowstate.orchestration.jitter import jittered_delay
from flowstate.result_data import has_persisted_task_result
from flowstate.orchestration.rules import ANY_STATE, TERMINAL, rule
from flowstate.runs import TaskRunPolicy
from flowstate.states import StateType

__all__ = [
    "MAX_CACHE_KEY_LENGTH",
    "cache_insertion",
    "cache_retrieval",
    "handle_task_terminal_state_transitions",
    "prevent_running_tasks_from_stopped_flows",
    "rename_reruns",
    "retry_failed_tasks",
    "retry_delay_for_attempt",
    "update_flow_run_tracker_on_tasks",
]

S = StateType
MAX_CACHE_KEY_LENGTH = 2000
_CANNOT_FOLLOW_TERMINAL = frozenset({S.CANCELLING, S.PAUSED, S.CRASHED})
_NOT_RUNNING_FLOW = "The enclosing flow must be running to begin task execution."


@rule(from_=ANY_STATE, to={S.RUNNING}, prefect="CacheRetrieval")
def cache_retrieval(ctx: TransitionContext) -> Decision | None:
    """A RUNNING proposal whose cache key has an unexpired entry completes from the cache."""
    proposed = ctx.proposed
    assert proposed is not None
    details = proposed.state_details
    if not details.cache_key or details.refresh_cache or ctx.cached_state is None:
        return None
    return Reject("Retrieved state from cache", ctx.fresh_copy(ctx.cached_state, name="Cached"))


@rule(from_=TERMINAL, to=ANY_STATE, prefect="HandleTaskTerminalStateTransitions")
def handle_task_terminal_state_transitions(ctx: TransitionContext) -> Decision | None:
    """Guard finished tasks; re-running one starts its retry count over."""
    initial, proposed = ctx.initial, ctx.proposed
    if initial is None or proposed is None:
        return None
    if proposed.type in _CANNOT_FOLLOW_TERMINAL:
        return Abort(f"Run is already {initial.type.value}.")
    if initial.type is S.COMPLETED and has_persisted_task_result(initial.data):
        return Reject("This run is already completed.")
    if not proposed.is_final:
        ctx._update_unchecked(run_count=0)
    flow_run = ctx._flow_run
    if (
        proposed.type is S.RUNNING
        and flow_run is not None
        and ctx._value("flow_run_run_count") < flow_run.run_count
    ):
        return Proceed(copy_with(proposed, {"name": "Retrying"}))
    return None


@rule(from_=ANY_STATE, to={S.RUNNING}, prefect="PreventRunningTasksFromStoppedFlows")
def prevent_running_tasks_from_stopped_flows(ctx: TransitionContext) -> Decision | None:
    """A task in a flow run can start only while that flow run is RUNNING."""
    flow_run = ctx._flow_run
    if flow_run is None:
        return None
    flow_state = flow_run.state
    if flow_state is None:
        return Abort(_NOT_RUNNING_FLOW)
    if flow_state.type is S.PAUSED:
        details = flow_state.state_details
        not_ready = ctx.fresh_state(
            S.PAUSED,
            name="NotReady",
            pause_timeout=details.pause_timeout,
            pause_reschedule=details.pause_reschedule,
        )
        return Reject(
            "The flow is paused, new tasks can execute after resuming flow run: "
            f"{flow_run.id}.",
            not_ready,
        )
    if flow_state.type is not S.RUNNING:
        return Abort(_NOT_RUNNING_FLOW)
    return None


def retry_delay_for_attempt(policy: TaskRunPolicy, run_count: int) -> float:
    """The configured delay before retrying after attempt ``run_count`` (lists repeat their last)."""
    delay = policy.retry_delay
    if isinstance(delay, list):
        if not delay:
            return 0.0
        return float(delay[min(run_count - 1, len(delay) - 1)])
    return float(delay or 0)


@rule(from_={S.RUNNING}, to={S.FAILED}, prefect="RetryFailedTasks")
def retry_failed_tasks(ctx: TransitionContext) -> Decision | None:
    """A failed attempt with retries left is rescheduled as ``AwaitingRetry`` after its delay."""
    initial, proposed = ctx.initial, ctx.proposed
    if initial is None or proposed is None:
        return None
    policy: TaskRunPolicy = ctx._value("empirical_policy")
    run_count: int = ctx._value("run_count")
    if proposed.state_details.retriable is False:
        return None
    if policy.retries is None or run_count > policy.retries:
        return None
    delay = retry_delay_for_attempt(policy, run_count)
    if policy.retry_jitter_factor and delay > 0:
        delay = jittered_delay(delay, policy.retry_jitter_factor, ctx.uniform)
    retry = ctx.fresh_state(
        S.SCHEDULED,
        name="AwaitingRetry",
        message=proposed.message,
        data=proposed.data,
        scheduled_time=ctx.now + timedelta(seconds=delay),
    )
    return Reject("Retrying", retry)


@rule(from_=ANY_STATE, to={S.RUNNING}, prefect="RenameReruns")
def rename_reruns(ctx: TransitionContext) -> Decision | None:
    """A task entering RUNNING again is named ``Retrying`` after AwaitingRetry, else ``Rerunning``."""
    initial, proposed = ctx.initial, ctx.proposed
    if initial is None or proposed is None or ctx._value("run_count") <= 0:
        return None
    name = "Retrying" if initial.name == "AwaitingRetry" else "Rerunning"
    return Proceed(copy_with(proposed, {"name": name}))


def _track_flow_run_count(ctx: TransitionContext) -> None:
    if ctx._flow_run is not None:
        ctx._update_unchecked(flow_run_run_count=ctx._flow_run.run_count)


@rule(
    from_=ANY_STATE,
    to={S.RUNNING},
    prefect="UpdateFlowRunTrackerOnTasks",
    after=_track_flow_run_count,
)
def update_flow_run_tracker_on_tasks(ctx: TransitionContext) -> Decision | None:
    """After a task enters RUNNING it records its flow run's attempt number."""
    return None


def _insert_into_cache(ctx: TransitionContext) -> None:
    validated = ctx.validated
    if validated is not None and validated.state_details.cache_key:
        details = validated.state_details
        ctx.effects.append(
            InsertCacheEntry(details.cache_key, details.cache_expiration, validated.id)  # type: ignore[arg-type]
        )


@rule(from_=ANY_STATE, to={S.COMPLETED}, prefect="CacheInsertion", after=_insert_into_cache)
def cache_insertion(ctx: TransitionContext) -> Decision | None:
    """A COMPLETED state with a cache key is cached; an over-long key is flagged, yet kept."""
    proposed = ctx.proposed
    assert proposed is not None
    key = proposed.state_details.cache_key
    if key is not None and len(key) > MAX_CACHE_KEY_LENGTH:
        return Reject(
            f"Cache key exceeded maximum allowed length of {MAX_CACHE_KEY_LENGTH} characters.",
            proposed,
        )
    return None

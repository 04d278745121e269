"""The core task policy, one behaviour per test, decided in memory (no database)."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from flowstate.orchestration.decisions import InsertCacheEntry
from flowstate.orchestration.jitter import jitter_bounds, jittered_delay
from flowstate.orchestration.policies import MINIMAL_TASK
from flowstate.orchestration.task_rules import retry_delay_for_attempt
from flowstate.results import SetStateStatus
from flowstate.runs import TaskRunPolicy
from flowstate.states import StateType

from .builders import NOW, decide_task, state, task_ctx

ACCEPT, REJECT, ABORT, WAIT = (SetStateStatus.ACCEPT, SetStateStatus.REJECT,
                               SetStateStatus.ABORT, SetStateStatus.WAIT)


def test_a_cache_hit_completes_the_task_as_cached_even_when_the_flow_is_paused():
    cached = state("COMPLETED", data={"storage_key": "r"}, cache_key="k")
    ctx = task_ctx(state("PENDING"), state("RUNNING", cache_key="k"), cached=cached,
                   flow_state=state("PAUSED"))
    outcome = decide_task(ctx)
    assert (outcome.result.status, outcome.result.details.reason) == (REJECT, "Retrieved state from cache")
    assert (outcome.written.type, outcome.written.name) == (StateType.COMPLETED, "Cached")
    assert outcome.written.id != cached.id and outcome.written.data == {"storage_key": "r"}
    assert outcome.written.state_details.task_run_id == ctx.run.id


def test_refresh_cache_skips_the_lookup():
    cached = state("COMPLETED", cache_key="k")
    ctx = task_ctx(state("PENDING"), state("RUNNING", cache_key="k", refresh_cache=True), cached=cached)
    assert decide_task(ctx).result.status is ACCEPT


def test_a_completed_state_with_a_cache_key_is_cached():
    ctx = task_ctx(state("RUNNING"), state("COMPLETED", cache_key="k"))
    outcome = decide_task(ctx)
    assert outcome.result.status is ACCEPT
    assert ctx.effects == [InsertCacheEntry("k", None, outcome.written.id)]


def test_an_overlong_cache_key_is_rejected_yet_written_and_cached():
    key = "x" * 2001
    ctx = task_ctx(state("RUNNING"), state("COMPLETED", cache_key=key))
    outcome = decide_task(ctx)
    assert outcome.result.status is REJECT
    assert outcome.result.details.reason == "Cache key exceeded maximum allowed length of 2000 characters."
    assert outcome.written is not None and ctx.effects[0].cache_key == key


def test_forced_completed_states_are_not_cached():
    ctx = task_ctx(state("RUNNING"), state("COMPLETED", cache_key="k"))
    decide_task(ctx, MINIMAL_TASK)
    assert ctx.effects == []


def test_a_finished_task_cannot_be_paused_with_the_task_wording():
    outcome = decide_task(task_ctx(state("FAILED"), state("PAUSED")))
    assert (outcome.result.status, outcome.result.details.reason) == (ABORT, "Run is already FAILED.")


def test_a_completed_task_with_a_persisted_result_refuses_everything_else():
    initial = state("COMPLETED", data={"storage_key": "r"})
    outcome = decide_task(task_ctx(initial, state("FAILED")))
    assert (outcome.result.status, outcome.result.details.reason) == (REJECT, "This run is already completed.")


def test_rerunning_a_finished_task_resets_its_count_and_is_named_retrying_after_a_flow_retry():
    ctx = task_ctx(state("FAILED"), state("RUNNING"), run_count=3, flow_run_count=2, flow_run_run_count=1)
    outcome = decide_task(ctx)
    assert outcome.written.name == "Retrying"
    assert ctx.run.run_count == 1  # reset to 0, then this RUNNING counted
    assert ctx.run.flow_run_run_count == 2


def test_a_task_cannot_start_in_a_flow_that_is_not_running():
    outcome = decide_task(task_ctx(None, state("RUNNING"), flow_state=state("COMPLETED")))
    assert outcome.result.details.reason == "The enclosing flow must be running to begin task execution."


def test_a_task_asked_to_run_in_a_paused_flow_is_paused_not_ready():
    pause_until = NOW + timedelta(hours=1)
    ctx = task_ctx(None, state("RUNNING"), flow_state=state("PAUSED", pause_timeout=pause_until))
    outcome = decide_task(ctx)
    assert outcome.result.status is REJECT
    assert (outcome.written.type, outcome.written.name) == (StateType.PAUSED, "NotReady")
    assert outcome.written.state_details.pause_timeout == pause_until
    assert str(ctx.flow_run.id) in outcome.result.details.reason


def test_standalone_tasks_run_without_a_flow():
    outcome = decide_task(task_ctx(None, state("RUNNING"), standalone=True))
    assert outcome.result.status is ACCEPT and outcome.written.state_details.flow_run_id is None


def test_a_failed_task_with_retries_left_awaits_a_retry_after_the_listed_delay():
    ctx = task_ctx(state("RUNNING"), state("FAILED"), run_count=2, retries=3, retry_delay=[1, 5])
    outcome = decide_task(ctx)
    assert (outcome.result.status, outcome.written.name) == (REJECT, "AwaitingRetry")
    assert outcome.written.state_details.scheduled_time == NOW + timedelta(seconds=5)


def test_retriable_false_fails_the_task_at_once():
    ctx = task_ctx(state("RUNNING"), state("FAILED", retriable=False), run_count=1, retries=3)
    assert decide_task(ctx).result.status is ACCEPT


def test_a_task_retry_is_renamed_retrying_and_a_rerun_rerunning():
    ctx = task_ctx(state("SCHEDULED", name="AwaitingRetry", scheduled_time=NOW), state("RUNNING"), run_count=1)
    assert decide_task(ctx).written.name == "Retrying"
    ctx = task_ctx(state("RUNNING"), state("RUNNING"), run_count=1)
    assert decide_task(ctx).written.name == "Rerunning"


@pytest.mark.parametrize(("delays", "attempt", "expected"), [
    (None, 1, 0), (7, 3, 7), ([1, 2, 3], 1, 1), ([1, 2, 3], 3, 3), ([1, 2, 3], 9, 3)])
def test_list_delays_index_by_attempt_and_repeat_the_last(delays, attempt, expected):
    assert retry_delay_for_attempt(TaskRunPolicy(retry_delay=delays), attempt) == expected


def test_jittered_delays_stay_within_bounds_and_average_near_the_base():
    rng = random.Random(1234)
    base, factor = 10.0, 0.5
    low, high = jitter_bounds(base, factor)
    draws = [jittered_delay(base, factor, rng.uniform) for _ in range(5000)]
    assert all(low <= d <= high for d in draws)
    assert high == pytest.approx(15.0)
    assert sum(draws) / len(draws) == pytest.approx(base, rel=0.05)
    assert min(draws) < base < max(draws)


def test_jitter_is_reproducible_with_a_seeded_source():
    one = [jittered_delay(4.0, 1.0, random.Random(7).uniform) for _ in range(3)]
    two = [jittered_delay(4.0, 1.0, random.Random(7).uniform) for _ in range(3)]
    assert one == two


def test_a_retry_with_jitter_uses_the_injected_source():
    ctx = task_ctx(state("RUNNING"), state("FAILED"), run_count=1, retries=1, retry_delay=10,
                   retry_jitter_factor=0.5)
    ctx.uniform = lambda low, high: high  # the largest delay the bounds allow
    outcome = decide_task(ctx)
    delay = (outcome.written.state_details.scheduled_time - NOW).total_seconds()
    assert delay == pytest.approx(jitter_bounds(10, 0.5)[1], rel=1e-6)

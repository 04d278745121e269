"""The core flow policy, one behaviour per test, decided in memory (no database)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from flowstate.orchestration.policies import MINIMAL_FLOW
from flowstate.results import SetStateStatus
from flowstate.states import StateType

from .builders import NOW, decide_flow, flow_ctx, state

ACCEPT, REJECT, ABORT, WAIT = (SetStateStatus.ACCEPT, SetStateStatus.REJECT,
                               SetStateStatus.ABORT, SetStateStatus.WAIT)


def test_a_repeated_transition_id_is_rejected_and_keeps_the_current_state():
    tid = "00000000-0000-0000-0000-00000000abcd"
    initial = state("RUNNING", transition_id=tid)
    outcome = decide_flow(flow_ctx(initial, state("COMPLETED", transition_id=tid)))
    assert outcome.result.status is REJECT
    assert outcome.result.details.reason == "This run has already made this state transition."
    assert outcome.written is None and outcome.result.state is initial


def test_a_finished_run_cannot_be_paused_crashed_or_cancelling():
    for proposed in ("PAUSED", "CRASHED", "CANCELLING"):
        outcome = decide_flow(flow_ctx(state("FAILED"), state(proposed)))
        assert outcome.result.status is ABORT
        assert outcome.result.details.reason == "Run is already in terminal state FAILED."


def test_a_completed_run_with_a_persisted_result_refuses_to_run_again():
    initial = state("COMPLETED", data={"storage_key": "x"})
    outcome = decide_flow(flow_ctx(initial, state("RUNNING")))
    assert (outcome.result.status, outcome.result.details.reason) == (REJECT, "Run is already COMPLETED.")


def test_a_persisted_result_is_not_overwritten_even_with_force():
    initial = state("COMPLETED", data={"storage_key": "x"})
    for policy in (None, MINIMAL_FLOW):
        ctx = flow_ctx(initial, state("COMPLETED", data={"type": "unpersisted"}))
        outcome = decide_flow(ctx) if policy is None else decide_flow(ctx, policy)
        assert outcome.result.status is REJECT
        assert outcome.result.details.reason.startswith("Cannot overwrite a COMPLETED state")


def test_rescheduling_a_finished_run_needs_a_deployment():
    outcome = decide_flow(flow_ctx(state("COMPLETED"), state("SCHEDULED")))
    assert outcome.result.details.reason == "Cannot reschedule a run without an associated deployment."
    ctx = flow_ctx(state("COMPLETED"), state("SCHEDULED"), deployment=True, pause_keys={"k"},
                   resuming=True)
    outcome = decide_flow(ctx)
    assert outcome.result.status is ACCEPT
    policy = ctx.run.empirical_policy
    assert (policy.retry_type, policy.pause_keys, policy.resuming) == ("reschedule", set(), False)


def test_a_cancelling_run_can_only_become_cancelled():
    outcome = decide_flow(flow_ctx(state("CANCELLING"), state("COMPLETED")))
    assert outcome.result.status is REJECT
    assert decide_flow(flow_ctx(state("CANCELLING"), state("CANCELLED"))).result.status is ACCEPT


def test_cancelling_a_scheduled_run_without_infrastructure_cancels_it_at_once():
    outcome = decide_flow(flow_ctx(state("SCHEDULED"), state("CANCELLING")))
    assert outcome.result.status is REJECT
    assert outcome.written is not None and outcome.written.type is StateType.CANCELLED
    assert outcome.result.details.reason == "Scheduled flow run has no infrastructure to terminate."


def test_pending_twice_is_aborted_but_named_pending_steps_may_follow():
    outcome = decide_flow(flow_ctx(state("PENDING"), state("PENDING")))
    assert outcome.result.details.reason == (
        "This run is in a PENDING state and cannot transition to a PENDING state.")
    outcome = decide_flow(flow_ctx(state("PENDING", name="Submitting"),
                                   state("PENDING", name="InfrastructurePending")))
    assert outcome.result.status is ACCEPT


def test_only_a_scheduled_run_can_be_marked_late_and_only_once():
    assert decide_flow(flow_ctx(state("PENDING"), state("SCHEDULED", name="Late"))).result.details.reason == (
        "Only scheduled flows can be marked late.")
    assert decide_flow(flow_ctx(state("SCHEDULED", name="Late"), state("SCHEDULED", name="Late"))
                       ).result.details.reason == "This flow run is already marked late."


def test_pausing_twice_with_the_same_key_is_rejected():
    outcome = decide_flow(flow_ctx(state("RUNNING"), state("PAUSED", pause_key="k"), pause_keys={"k"}))
    assert (outcome.result.status, outcome.result.details.reason) == (REJECT, "This pause has already fired.")


def test_an_accepted_pause_records_its_key_even_when_generated():
    ctx = flow_ctx(state("RUNNING"), state("PAUSED"))
    outcome = decide_flow(ctx)
    assert outcome.result.status is ACCEPT
    assert outcome.written.state_details.pause_key is None
    assert len(ctx.run.empirical_policy.pause_keys) == 1


def test_suspending_needs_a_deployment_and_a_top_level_flow():
    suspend = state("PAUSED", name="Suspended", pause_reschedule=True)
    assert decide_flow(flow_ctx(state("RUNNING"), suspend)).result.details.reason == (
        "Cannot suspend flows without a deployment.")
    assert decide_flow(flow_ctx(state("RUNNING"), suspend, deployment=True, subflow=True)
                       ).result.details.reason == "Cannot suspend subflows."


def test_a_paused_run_cannot_go_back_to_pending_and_is_marked_resuming_anyway():
    ctx = flow_ctx(state("PAUSED"), state("PENDING"))
    outcome = decide_flow(ctx)
    assert outcome.result.details.reason == (
        "This run cannot transition to the StateType.PENDING state from the StateType.PAUSED state.")
    assert ctx.run.empirical_policy.resuming is True


def test_an_expired_pause_fails_the_run_with_a_message_from_the_proposal():
    initial = state("PAUSED", pause_timeout=NOW - timedelta(seconds=5))
    outcome = decide_flow(flow_ctx(initial, state("CANCELLED")))
    assert outcome.result.status is REJECT
    assert outcome.written.type is StateType.FAILED
    assert outcome.written.message == "The flow was cancelled and never resumed."
    assert outcome.result.details.reason == "The flow run pause has timed out and can no longer resume."


def test_a_blocking_pause_left_for_scheduled_starts_the_pause_bookkeeping_over():
    ctx = flow_ctx(state("PAUSED"), state("SCHEDULED"), pause_keys={"k"})
    decide_flow(ctx)
    policy = ctx.run.empirical_policy
    assert (policy.resuming, policy.pause_keys, policy.retry_type) == (False, set(), "reschedule")


def test_pending_copies_the_scheduled_time():
    when = NOW - timedelta(seconds=30)
    outcome = decide_flow(flow_ctx(state("SCHEDULED", scheduled_time=when), state("PENDING")))
    assert outcome.written.state_details.scheduled_time == when


@pytest.mark.parametrize(("remaining", "expected"), [(10.0, 10), (1.4, 1), (1.6, 2), (0.4, None)])
def test_running_before_the_scheduled_time_waits_the_rounded_remainder(remaining, expected):
    initial = state("SCHEDULED", scheduled_time=NOW + timedelta(seconds=remaining))
    outcome = decide_flow(flow_ctx(initial, state("RUNNING")))
    if expected is None:
        assert outcome.result.status is ACCEPT
    else:
        assert outcome.result.status is WAIT
        assert outcome.result.details.delay_seconds == expected
        assert outcome.result.details.reason == "Scheduled time is in the future"


def test_a_failed_attempt_with_retries_left_awaits_a_retry():
    ctx = flow_ctx(state("RUNNING"), state("FAILED", message="boom"), retries=2, retry_delay=30)
    outcome = decide_flow(ctx)
    assert (outcome.result.status, outcome.result.details.reason) == (REJECT, "Retrying")
    retry = outcome.written
    assert (retry.type, retry.name, retry.message) == (StateType.SCHEDULED, "AwaitingRetry", "boom")
    assert retry.state_details.scheduled_time == NOW + timedelta(seconds=30)
    assert ctx.run.empirical_policy.retry_type == "in_process"


def test_retries_are_exhausted_after_retries_plus_one_attempts():
    ctx = flow_ctx(state("RUNNING"), state("FAILED"), retries=1, run_count=2)
    assert decide_flow(ctx).result.status is ACCEPT


def test_bookkeeping_counts_running_entries_and_sets_times():
    ctx = flow_ctx(None, state("RUNNING"))
    outcome = decide_flow(ctx)
    assert ctx.run.run_count == 1 and ctx.run.start_time == NOW
    assert outcome.written.state_details.flow_run_id == ctx.run.id


def test_a_rule_that_fizzles_has_its_run_changes_undone():
    # CANCELLED -> PENDING with a deployment: the terminal rule resets the pause bookkeeping,
    # then the pending guard aborts; the reset must not survive.
    ctx = flow_ctx(state("CANCELLED"), state("PENDING"), pause_keys={"k"}, deployment=True)
    outcome = decide_flow(ctx)
    assert outcome.result.status is ABORT
    assert ctx.run.empirical_policy.pause_keys == {"k"}

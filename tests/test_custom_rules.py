"""Custom rules, derived policies and transition listeners: the orchestrator made the user's own."""

from __future__ import annotations

import copy
import logging
import queue
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from flowstate import InvalidState, Orchestrator, SetStateStatus, StateType
from flowstate.errors import RuleError
from flowstate.rules import (
    ANY_STATE, CORE_FLOW, CORE_TASK, Abort, Policy, Proceed, Reject, Wait, decide_transition, rule,
)
from flowstate.runs import FlowRun, FlowRunPolicy
from flowstate.states import (
    Cancelled, Cancelling, Completed, Failed, Paused, Pending, Running, Scheduled,
)
from flowstate.testing import FrozenClock

MONDAY_NIGHT = datetime(2026, 11, 30, 22, 30, tzinfo=timezone.utc)
MONDAY_NOON = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)


@rule(from_=ANY_STATE, to=StateType.RUNNING, name="business-hours")
def business_hours(ctx):
    """Runs start between 09:00 and 17:00 UTC; outside that window, WAIT until 09:00."""
    if 9 <= ctx.now.hour < 17:
        return None
    opening = ctx.now.replace(hour=9, minute=0, second=0, microsecond=0)
    if ctx.now.hour >= 17:
        opening += timedelta(days=1)
    return Wait(int((opening - ctx.now).total_seconds()), "Outside business hours (09:00-17:00 UTC)")


def max_pauses(limit: int):
    """A rule that rejects the pause after ``limit`` pauses of the same run."""
    @rule(from_=StateType.RUNNING, to=StateType.PAUSED, name=f"max-{limit}-pauses")
    def at_most(ctx):
        if len(ctx.run.empirical_policy.pause_keys) >= limit:
            return Reject(f"This run has already paused {limit} times.")
        return None
    return at_most


BUSINESS_FLOWS = CORE_FLOW.insert_before("wait_for_scheduled_time", business_hours, name="business")


def test_the_business_hours_rule_waits_until_opening_without_a_database():
    outcome = decide_transition(BUSINESS_FLOWS, initial=Pending(), proposed=Running(), now=MONDAY_NIGHT)
    assert outcome.result.status is SetStateStatus.WAIT
    assert outcome.result.details.delay_seconds == 10 * 3600 + 30 * 60
    assert outcome.written is None


def test_the_business_hours_rule_lets_runs_start_by_day():
    outcome = decide_transition(BUSINESS_FLOWS, initial=Pending(), proposed=Running(), now=MONDAY_NOON)
    assert outcome.result.status is SetStateStatus.ACCEPT
    assert outcome.run.run_count == 1


def test_the_business_hours_rule_in_an_orchestrator():
    clock = [MONDAY_NIGHT]
    with Orchestrator(":memory:", clock=lambda: clock[0], flow_policy=BUSINESS_FLOWS) as orc:
        run = orc.create_flow_run(state=Pending())
        assert orc.set_flow_run_state(run.id, Running()).status is SetStateStatus.WAIT
        clock[0] = MONDAY_NIGHT + timedelta(hours=11)
        assert orc.set_flow_run_state(run.id, Running()).status is SetStateStatus.ACCEPT


def test_the_max_pauses_rule_rejects_the_third_pause():
    policy = CORE_FLOW.insert_after("handle_pausing_flows", max_pauses(2), name="two-pauses")
    with Orchestrator(":memory:", flow_policy=policy) as orc:
        run = orc.create_flow_run(state=Running())
        for key in ("a", "b"):
            assert orc.set_flow_run_state(run.id, Paused(pause_key=key)).status is SetStateStatus.ACCEPT
            assert orc.resume_flow_run(run.id).status is SetStateStatus.ACCEPT
        third = orc.set_flow_run_state(run.id, Paused(pause_key="c"))
        assert (third.status, third.details.reason) == (SetStateStatus.REJECT, "This run has already paused 2 times.")
        assert orc.read_flow_run(run.id).state_type is StateType.RUNNING


def test_a_custom_rule_does_not_run_for_transitions_it_does_not_apply_to():
    calls = []

    @rule(from_=StateType.RUNNING, to=StateType.COMPLETED, name="spy")
    def spy(ctx):
        calls.append(ctx.proposed_type)

    policy = CORE_FLOW.append(spy)
    decide_transition(policy, initial=Pending(), proposed=Running())
    assert calls == []
    assert policy.rules_for(StateType.PENDING, StateType.RUNNING) == CORE_FLOW.rules_for(
        StateType.PENDING, StateType.RUNNING)
    decide_transition(policy, initial=Running(), proposed=Completed())
    assert calls == [StateType.COMPLETED]


def test_an_after_step_runs_only_for_kept_transitions():
    kept = []
    track = rule(from_=ANY_STATE, to=StateType.RUNNING, name="track",
                 after=lambda ctx: kept.append(ctx.validated.name))(lambda ctx: None)
    policy = CORE_FLOW.append(track)
    decide_transition(policy, initial=Pending(), proposed=Running())
    late = datetime.now(timezone.utc) + timedelta(hours=1)
    decide_transition(policy, initial=Scheduled(late), proposed=Running())  # WAIT: not kept
    assert kept == ["Running"]


def test_policies_can_be_edited_by_rule_name():
    assert "prevent_pending_transitions" not in CORE_FLOW.remove("prevent_pending_transitions").names
    replaced = CORE_FLOW.replace("retry_failed_flows", business_hours)
    assert replaced.names[-2:] == ("business-hours", "release_flow_concurrency_slots")
    assert CORE_FLOW["retry_failed_flows"].prefect == "RetryFailedFlows"
    with pytest.raises(KeyError, match="no rule named 'nope'"):
        CORE_FLOW.remove("nope")
    with pytest.raises(ValueError, match="duplicate rule names: business-hours"):
        BUSINESS_FLOWS.append(business_hours)


def test_policies_are_validated_at_construction():
    with pytest.raises(ValueError, match="'DONE' is not a StateType"):
        rule(from_={"DONE"}, to=ANY_STATE)(lambda ctx: None)
    with pytest.raises(TypeError, match="is not a Rule"):
        Policy("bad", [lambda ctx: None], kind="flow")
    with pytest.raises(ValueError, match="kind="):
        Policy("bad", [], kind="job")
    with pytest.raises(InvalidState, match="is a task policy"):
        Orchestrator(":memory:", flow_policy=CORE_TASK)


def test_a_rule_may_substitute_its_own_state_and_it_is_written_on_the_engine_clock():
    @rule(from_=StateType.RUNNING, to=StateType.CANCELLING, name="cancel-immediately")
    def cancel_now(ctx):
        return Reject("No infrastructure to stop.", ctx.fresh_state(StateType.CANCELLED))

    clock = datetime(2030, 1, 1, tzinfo=timezone.utc)
    with Orchestrator(":memory:", clock=lambda: clock, flow_policy=CORE_FLOW.append(cancel_now)) as orc:
        run = orc.create_flow_run(state=Running())
        result = orc.set_flow_run_state(run.id, Cancelling())
        assert result.state.type is StateType.CANCELLED
        assert result.state.timestamp > clock - timedelta(seconds=1)


def test_listeners_hear_committed_transitions_after_the_commit():
    with Orchestrator(":memory:") as orc:
        heard = []
        remove = orc.add_listener(heard.append)
        run = orc.create_flow_run()
        orc.set_flow_run_state(run.id, Pending())
        orc.set_flow_run_state(run.id, Pending())  # aborted: nothing written, nothing heard
        assert [(e.kind, e.state.type, e.forced) for e in heard] == [("flow", StateType.PENDING, False)]
        remove()
        orc.set_flow_run_state(run.id, Running())
        assert len(heard) == 1


def test_listeners_hear_a_transaction_only_once_it_commits_and_never_if_it_rolls_back():
    with Orchestrator(":memory:") as orc:
        heard = []
        orc.add_listener(lambda event: heard.append((event.state.type, orc._store.in_transaction)))
        run = orc.create_flow_run()
        with orc.transaction():
            orc.set_flow_run_state(run.id, Pending())
            assert heard == []
        assert heard == [(StateType.PENDING, False)]
        with pytest.raises(RuntimeError):
            with orc.transaction():
                orc.set_flow_run_state(run.id, Running())
                raise RuntimeError("rolled back")
        assert len(heard) == 1


def test_a_listener_added_inside_a_block_hears_what_commits_and_not_what_a_nested_block_undid():
    with Orchestrator(":memory:") as orc:
        run = orc.create_flow_run()
        orc.set_flow_run_state(run.id, Pending())  # before any listener: nothing is held
        heard = []
        with orc.transaction():
            orc.add_listener(lambda event: heard.append(event.state.type))
            with pytest.raises(RuntimeError):
                with orc.transaction():  # the first event ever held, then undone
                    orc.set_flow_run_state(run.id, Running())
                    raise RuntimeError("undo the nested block")
            orc.set_flow_run_state(run.id, Cancelled())
            assert heard == []
        assert heard == [StateType.CANCELLED]


def test_a_failing_listener_is_isolated_and_reported(caplog):
    with Orchestrator(":memory:") as orc:
        def broken(event):
            raise ValueError("listener bug")
        heard = []
        orc.add_listener(broken)
        orc.add_listener(heard.append)
        run = orc.create_flow_run()
        with caplog.at_level(logging.ERROR, logger="flowstate.listeners"):
            result = orc.set_flow_run_state(run.id, Pending())
        assert result.status is SetStateStatus.ACCEPT and len(heard) == 1
        assert orc.read_flow_run(run.id).state_type is StateType.PENDING
        assert isinstance(orc.listener_errors[0][2], ValueError)
        assert "listener bug" in caplog.text


@pytest.mark.parametrize("callback", [None, 5, "print"])
def test_a_listener_that_cannot_be_called_is_refused_when_added(callback):
    with Orchestrator(":memory:") as orc:
        with pytest.raises(InvalidState, match="listener must be callable"):
            orc.add_listener(callback)
        orc.create_flow_run(state=Pending())
        assert orc.listener_errors == []


def test_a_subscription_queues_events_for_another_thread():
    import threading

    with Orchestrator(":memory:") as orc:
        subscription = orc.subscribe()
        received = []
        consumer = threading.Thread(target=lambda: received.extend(e.state.name for e in subscription))
        consumer.start()
        run = orc.create_flow_run()
        for state in (Pending(), Running(), Completed()):
            orc.set_flow_run_state(run.id, state)
        subscription.close()
        consumer.join(timeout=5)
        assert received == ["Pending", "Running", "Completed"]


def test_a_single_calls_listeners_run_after_its_commit(database):
    """A listener may read the run through another connection: the call that told it has
    committed, so it sees the new state and waits for no lock (DatabaseBusy if it did)."""
    with Orchestrator(database) as orc, Orchestrator(database, busy_timeout=0.2) as other:
        seen = []

        def read_elsewhere(event):
            try:
                if event.kind == "flow":
                    stored = other.read_flow_run(event.run_id).state
                else:
                    stored = other.read_task_run(event.run_id).state
                seen.append((event.state.type, stored.type, stored.id == event.state.id))
            except Exception as exc:  # kept for the assertion below
                seen.append((event.state.type, type(exc).__name__))

        orc.add_listener(read_elsewhere)
        run = orc.create_flow_run(state=Pending())
        orc.set_flow_run_state(run.id, Running())  # the core policy's one-pass road
        task = orc.create_task_run(flow_run_id=run.id, state=Pending())
        orc.set_task_run_state(task.id, Running())
        orc.set_flow_run_state(run.id, Paused(pause_key="k"))
        orc.resume_flow_run(run.id)
        orc.set_flow_run_state(run.id, Cancelling())  # the rule pipeline's road
        orc.set_flow_run_state(run.id, Completed(), force=True)
        S = StateType
        expected = [S.PENDING, S.RUNNING, S.PENDING, S.RUNNING, S.PAUSED, S.RUNNING,
                    S.CANCELLING, S.COMPLETED]
        assert seen == [(t, t, True) for t in expected]
        assert orc.listener_errors == []


@rule(from_=StateType.PAUSED, to=ANY_STATE, name="look-only")
def look_only(ctx):
    return None


@pytest.mark.parametrize("late", [timedelta(0), timedelta(microseconds=1)], ids=["at", "after"])
def test_a_resume_at_the_pause_timeout_gets_the_same_answer_from_core_and_derived_policies(
    database, late
):
    """CORE_FLOW answers its everyday transitions in one pass; a policy derived from it runs
    the rules one by one. A pause may be left up to and including its timeout."""
    start = datetime(2026, 3, 1, tzinfo=timezone.utc)
    answers = []
    for policy in (CORE_FLOW, CORE_FLOW.append(look_only, name="derived")):
        clock = FrozenClock(start)
        with Orchestrator(database, clock=clock, flow_policy=policy) as orc:
            run = orc.create_flow_run(state=Running())
            deadline = start + timedelta(minutes=5)
            orc.set_flow_run_state(run.id, Paused(pause_expiration_time=deadline, pause_key="k"))
            clock.set(deadline + late)
            result = orc.resume_flow_run(run.id)
            answers.append((result.status, result.state.type, getattr(result.details, "reason", None)))
    assert answers[0] == answers[1]
    if late:
        assert answers[0][:2] == (SetStateStatus.REJECT, StateType.FAILED)
    else:
        assert answers[0] == (SetStateStatus.ACCEPT, StateType.RUNNING, None)


def _scribble(run):
    """What a careless rule might do to the run it was given, in place."""
    run.run_count = 99
    run.tags.append("scribbled")
    run.empirical_policy.retries = 7
    if isinstance(run, FlowRun):
        run.parameters["scribbled"] = True
        run.empirical_policy.pause_keys.add("scribbled")


def test_a_run_a_user_rule_keeps_is_its_own_copy(database):
    """``ctx.run`` is the rule's own copy: changing it in place changes nothing the store
    keeps or answers, and later transitions do not change a run a rule kept."""
    kept = []

    @rule(from_=ANY_STATE, to=ANY_STATE, name="keep-runs")
    def keep_runs(ctx):
        _scribble(ctx.run)
        kept.append((ctx.run, ctx.run.model_copy(deep=True)))

    clock = FrozenClock(MONDAY_NOON)
    with Orchestrator(database, clock=clock, flow_policy=CORE_FLOW.append(keep_runs)) as orc:
        run = orc.create_flow_run(state=Pending(), tags=["a"], parameters={"x": 1})
        orc.set_flow_run_state(run.id, Running())
        orc.set_flow_run_state(run.id, Completed())
        orc.set_flow_run_state(run.id, Running())
        read = orc.read_flow_run(run.id)
        with Orchestrator(database, clock=clock) as other:
            assert read == other.read_flow_run(run.id)
    assert (read.run_count, read.tags, read.parameters) == (2, ["a"], {"x": 1})
    assert (read.empirical_policy.retries, read.empirical_policy.pause_keys) == (None, set())
    assert len(kept) == 3 and all(copy == snapshot for copy, snapshot in kept)
    assert kept[0][0] is not kept[1][0]


def test_a_task_run_a_user_rule_keeps_is_its_own_copy(database):
    """As for flow runs: ``ctx.run`` of a task transition is the rule's own copy."""
    kept = []

    @rule(from_=ANY_STATE, to=ANY_STATE, name="keep-task-runs")
    def keep_runs(ctx):
        _scribble(ctx.run)
        kept.append((ctx.run, ctx.run.model_copy(deep=True)))

    clock = FrozenClock(MONDAY_NOON)
    with Orchestrator(database, clock=clock, task_policy=CORE_TASK.append(keep_runs)) as orc:
        task = orc.create_task_run(state=Pending(), tags=["a"])
        orc.set_task_run_state(task.id, Running())
        orc.set_task_run_state(task.id, Completed())
        orc.set_task_run_state(task.id, Running(), force=True)
        read = orc.read_task_run(task.id)
        with Orchestrator(database, clock=clock) as other:
            assert read == other.read_task_run(task.id)
    assert (read.run_count, read.tags, read.empirical_policy.retries) == (2, ["a"], None)
    assert len(kept) == 2 and all(copy == snapshot for copy, snapshot in kept)


def test_a_rule_sees_the_parameters_a_transition_does_not_read(database):
    """A transition reads a flow run without its parameters; ``ctx.run`` and a task's
    ``ctx.flow_run`` have them, the run kept or not, after another connection's commit too."""
    seen = []

    @rule(from_=ANY_STATE, to=ANY_STATE, name="look")
    def look(ctx):
        seen.append(ctx.run.parameters)

    @rule(from_=ANY_STATE, to=StateType.RUNNING, name="look-up")
    def look_up(ctx):
        seen.append(ctx.flow_run.parameters)

    options = dict(flow_policy=CORE_FLOW.append(look), task_policy=CORE_TASK.append(look_up))
    with Orchestrator(database, **options) as orc, Orchestrator(database) as other:
        run = orc.create_flow_run(parameters={"x": [1]}, state=Pending())
        orc.set_flow_run_state(run.id, Running())
        other.create_flow_run()
        task = orc.create_task_run(flow_run_id=run.id, state=Pending())
        orc.set_task_run_state(task.id, Running())
        orc.set_flow_run_state(run.id, Paused())
    with Orchestrator(database, **options) as orc:
        orc.set_flow_run_state(run.id, Running())
    assert seen == [{"x": [1]}] * 4


def test_a_rule_reads_a_runs_parameters_alone_on_every_backend(open_orchestrator):
    """``ctx.run.parameters`` and a task rule's ``ctx.flow_run.parameters`` are the run's on
    every backend, each a copy of the rule's own; each store reads a flow run's parameters
    alone (``read_flow_run_parameters``: None for a run that is not there)."""
    parameters = {"x": [1, {"y": None}], "z": "text"}
    seen = []

    @rule(from_=ANY_STATE, to=ANY_STATE, name="look")
    def look(ctx):
        seen.append(copy.deepcopy(ctx.run.parameters))
        ctx.run.parameters["x"].append("changed by a rule")  # (its own copy: nothing else sees it)

    @rule(from_=ANY_STATE, to=StateType.RUNNING, name="look-up")
    def look_up(ctx):
        seen.append(copy.deepcopy(ctx.flow_run.parameters))
        ctx.flow_run.parameters.clear()

    options = dict(flow_policy=CORE_FLOW.append(look), task_policy=CORE_TASK.append(look_up))
    with open_orchestrator(**options) as orc:
        run = orc.create_flow_run(parameters=parameters, state=Pending())
        orc.set_flow_run_state(run.id, Running())
        task = orc.create_task_run(flow_run_id=run.id, state=Pending())
        orc.set_task_run_state(task.id, Running())
        orc.set_flow_run_state(run.id, Paused())
        assert orc.read_flow_run(run.id).parameters == parameters
        with orc.transaction():
            assert orc._store.read_flow_run_parameters(run.id) == parameters
            assert orc._store.read_flow_run_parameters(uuid.uuid4()) is None
    assert seen == [parameters] * 3


def test_a_rule_changing_a_field_runs_do_not_have_fails_the_call_and_changes_nothing(database):
    """``ctx.update_run`` with a name that is not a field of the run: a RuleError naming it."""
    @rule(from_=ANY_STATE, to=StateType.RUNNING, name="typo")
    def typo(ctx):
        ctx.update_run(run_cuont=1)

    with Orchestrator(database, flow_policy=CORE_FLOW.append(typo)) as orc:
        run = orc.create_flow_run(state=Pending())
        with pytest.raises(RuleError, match="run_cuont"):
            orc.set_flow_run_state(run.id, Running())
        after = orc.read_flow_run(run.id)
        assert (after.state_type, after.run_count) == (StateType.PENDING, 0)


def test_the_flow_run_a_user_task_rule_sees_is_its_own_copy(database):
    """``ctx.flow_run`` of a task transition: with a rule of yours in the task policy, a copy
    (changing it changes nothing the store keeps or answers)."""

    @rule(from_=ANY_STATE, to=ANY_STATE, name="scribble-on-the-flow-run")
    def scribble(ctx):
        if ctx.flow_run is not None:
            ctx.flow_run.run_count = 99
            ctx.flow_run.tags.append("scribbled")

    with Orchestrator(database, task_policy=CORE_TASK.append(scribble)) as orc:
        flow = orc.create_flow_run(state=Running(), tags=["a"])
        task = orc.create_task_run(flow_run_id=flow.id, state=Pending())
        orc.set_task_run_state(task.id, Running())
        after = orc.read_flow_run(flow.id)
        assert (after.run_count, after.tags) == (1, ["a"])
        orc.set_flow_run_state(flow.id, Completed())
        assert orc.read_flow_run(flow.id).run_count == 1


def test_deciding_changes_no_run_a_fizzled_rules_changes_are_dropped():
    """``decide`` leaves the run it was given as it was: the outcome carries the changes (the
    run as saved, and its changed fields); the changes of a rule whose transition a later rule
    changed are dropped, a kept rule's stay."""
    @rule(from_=ANY_STATE, to=StateType.RUNNING, name="count-from-ten")
    def count_from_ten(ctx):
        ctx.update_run(run_count=10, flow_run_run_count=3)

    @rule(from_=ANY_STATE, to=StateType.RUNNING, name="no-running")
    def no_running(ctx):
        return Reject("no", ctx.fresh_state(StateType.PENDING))

    from flowstate.runs import TaskRun

    given = TaskRun(id=uuid.uuid4(), name="t", state=Pending(), run_count=1)
    before = given.model_copy(deep=True)
    kept = CORE_TASK.append(count_from_ten, name="kept")
    outcome = decide_transition(kept, initial=given.state, proposed=Running(), run=given)
    assert given == before
    assert (outcome.run.run_count, outcome.run.flow_run_run_count) == (11, 3)
    assert outcome.updates["run_count"] == 11 and outcome.updates["flow_run_run_count"] == 3
    fizzled = CORE_TASK.append(count_from_ten, no_running, name="fizzled")
    outcome = decide_transition(fizzled, initial=given.state, proposed=Running(), run=given)
    assert outcome.written.type is StateType.PENDING and given == before
    assert (outcome.run.run_count, outcome.run.flow_run_run_count) == (1, 0)


def _make_transitions(orc, pauses):
    """Pending, Running, then ``pauses`` times Paused and Running again: 2 + 2 * pauses events."""
    run = orc.create_flow_run()
    orc.set_flow_run_state(run.id, Pending())
    orc.set_flow_run_state(run.id, Running())
    for _ in range(pauses):
        orc.set_flow_run_state(run.id, Paused())
        orc.set_flow_run_state(run.id, Running())


def _in_a_daemon_thread(target, seconds=10.0):
    """Run ``target``; whether it finished within ``seconds`` (a hang must fail, not stall)."""
    import threading

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(timeout=seconds)
    return not worker.is_alive()


def test_a_full_subscription_with_no_consumer_never_blocks_a_transition():
    with Orchestrator(":memory:") as orc:
        subscription = orc.subscribe(maxsize=2)
        assert _in_a_daemon_thread(lambda: _make_transitions(orc, 3))
        events = subscription.pending()
        names = [(e.initial.name, e.state.name) for e in events]
        assert names == [("Running", "Paused"), ("Paused", "Running")]  # the newest two
        assert subscription.dropped == 6
        assert subscription.pending() == []


def test_closing_a_full_subscription_does_not_block_and_ends_after_the_queued_events():
    with Orchestrator(":memory:") as orc:
        subscription = orc.subscribe(maxsize=1)
        assert _in_a_daemon_thread(lambda: _make_transitions(orc, 1))
        assert _in_a_daemon_thread(subscription.close)
        received = []
        assert _in_a_daemon_thread(lambda: received.extend(e.state.name for e in subscription))
        assert received == ["Running"] and subscription.dropped == 3
        with pytest.raises(queue.Empty, match="closed"):
            subscription.get(timeout=0)


def test_a_subscription_with_room_drops_nothing_and_get_times_out_when_empty():
    with Orchestrator(":memory:") as orc:
        subscription = orc.subscribe(maxsize=10)
        _make_transitions(orc, 1)
        assert [subscription.get(timeout=1).state.name for _ in range(3)] == [
            "Pending",
            "Running",
            "Paused",
        ]
        assert subscription.get(timeout=1).state.name == "Running"
        with pytest.raises(queue.Empty):
            subscription.get(timeout=0.01)
        assert subscription.dropped == 0


def test_a_closed_subscription_is_let_go():
    import gc
    import weakref

    with Orchestrator(":memory:") as orc:
        kept = orc.subscribe()
        closed = [orc.subscribe() for _ in range(3)]
        refs = [weakref.ref(subscription) for subscription in closed]
        for subscription in closed:
            subscription.close()
        del closed, subscription
        gc.collect()
        assert [ref() for ref in refs] == [None, None, None]
        _make_transitions(orc, 0)
        assert [e.state.name for e in kept.pending()] == ["Pending", "Running"]


def test_closing_the_orchestrator_ends_its_subscriptions_after_their_queued_events():
    orc = Orchestrator(":memory:")
    subscription = orc.subscribe()
    received = []
    import threading

    consumer = threading.Thread(
        target=lambda: received.extend(e.state.name for e in subscription), daemon=True
    )
    consumer.start()
    _make_transitions(orc, 0)
    orc.close()
    consumer.join(timeout=10)
    assert not consumer.is_alive() and received == ["Pending", "Running"]
    with pytest.raises(queue.Empty, match="closed"):
        orc.subscribe().get(timeout=10)  # made after the close: ended at once


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 1e300, 10**400, -1, "1", True])
def test_a_subscription_get_timeout_that_is_not_a_usable_number_of_seconds_is_invalid(bad):
    with Orchestrator(":memory:") as orc:
        subscription = orc.subscribe()
        got = []
        # (NaN waited forever, a str or a huge number raised TypeError/OverflowError)
        assert _in_a_daemon_thread(lambda: got.append(_raised(subscription.get, bad)), 5)
        assert got == [InvalidState]


def _raised(call, *args):
    try:
        call(*args)
    except Exception as exc:  # noqa: BLE001 (the type is what is checked)
        return type(exc)
    return None


@pytest.mark.parametrize("bad", [-1, 1.5, "3", True, None])
def test_a_bad_subscription_maxsize_is_invalid(bad):
    with Orchestrator(":memory:") as orc:
        with pytest.raises(InvalidState, match="maxsize"):
            orc.subscribe(maxsize=bad)


def test_a_rules_cleanup_runs_when_a_later_rule_changes_the_proposal():
    seen: list[str] = []

    @rule(from_=ANY_STATE, to=StateType.RUNNING, name="take-something",
          after=lambda ctx: seen.append("after"), cleanup=lambda ctx: seen.append("cleanup"))
    def take_something(ctx):
        seen.append("before")
        return None

    policy = CORE_FLOW.insert_before("wait_for_scheduled_time", take_something)
    decide_transition(policy, initial=Pending(), proposed=Running())
    assert seen == ["before", "after"]
    seen.clear()
    late = datetime.now(timezone.utc) + timedelta(hours=1)
    outcome = decide_transition(policy, initial=Scheduled(late), proposed=Running())
    assert outcome.result.status is SetStateStatus.WAIT  # the proposal fizzled: cleanup instead
    assert seen == ["before", "cleanup"]


def test_a_universal_rule_runs_after_whatever_earlier_rules_made_of_the_proposal():
    seen: list[object] = []

    @rule(from_=ANY_STATE, to=ANY_STATE, name="audit", universal=True,
          after=lambda ctx: seen.append(ctx.proposed_type))
    def audit(ctx):
        return None

    @rule(from_=ANY_STATE, to=ANY_STATE, name="plain-after",
          after=lambda ctx: seen.append("plain"))
    def plain(ctx):
        return None

    def retried_run() -> FlowRun:
        return FlowRun(id=uuid.uuid4(), name="r", state=Running(),
                       empirical_policy=FlowRunPolicy(retries=1))

    policy = CORE_FLOW.append(plain, audit)
    cancelled = decide_transition(policy, initial=Running(), proposed=Cancelled(), run=retried_run())
    assert cancelled.result.status is SetStateStatus.ACCEPT
    assert seen == [StateType.CANCELLED, "plain"]
    seen.clear()
    outcome = decide_transition(
        policy, initial=Running(), proposed=Failed(), run=retried_run())
    assert outcome.result.status is SetStateStatus.REJECT  # FAILED became AwaitingRetry
    assert seen == [StateType.SCHEDULED]  # the universal rule still ran; the plain one did not


# -- what a user rule gives back is checked where it enters the engine -----------------------

BAD_DECISIONS = {
    "Wait(nan)": lambda ctx: Wait(float("nan"), "later"),  # was a raw pydantic ValidationError
    "Wait(1.5)": lambda ctx: Wait(1.5, "later"),
    "Wait('5')": lambda ctx: Wait("5", "later"),  # was taken as 5
    "Wait(10**400)": lambda ctx: Wait(10**400, "later"),  # was a 400-digit delay in the result
    "Reject(5)": lambda ctx: Reject(5),  # was a raw pydantic ValidationError
    "Reject(surrogate)": lambda ctx: Reject("\ud800"),  # a result that cannot be dumped as JSON
    "Reject(dict)": lambda ctx: Reject("no", {"type": "FAILED"}),  # was a raw AttributeError
    "Proceed(5)": lambda ctx: Proceed(5),  # was a raw AttributeError
    "Abort(5)": lambda ctx: Abort(5),
    "state with a surrogate": lambda ctx: Proceed(ctx.fresh_state(StateType.RUNNING, message="\ud800")),
    "update_run(name)": lambda ctx: ctx.update_run(name="renamed"),  # was silently not saved
    "update_run(state)": lambda ctx: ctx.update_run(state=Completed()),
    "update_run(run_count='x')": lambda ctx: ctx.update_run(run_count="x"),  # was a raw TypeError
    "update_run(run_count=10**30)": lambda ctx: ctx.update_run(run_count=10**30),  # OverflowError
    "update_run(start_time=5j)": lambda ctx: ctx.update_run(start_time=5j),
}


@pytest.mark.parametrize("give", BAD_DECISIONS.values(), ids=BAD_DECISIONS.keys())
def test_a_rule_giving_back_what_the_engine_cannot_use_fails_the_call_and_changes_nothing(database, give):
    """Each is a RuleError naming the rule, raised inside the rule, before anything is written,
    instead of a traceback from pydantic, sqlite3 or the engine, or a change silently lost."""
    @rule(from_=ANY_STATE, to=StateType.RUNNING, name="odd")
    def odd(ctx):
        return give(ctx)

    with Orchestrator(database, flow_policy=CORE_FLOW.append(odd)) as orc:
        run = orc.create_flow_run(state=Pending())
        with pytest.raises(RuleError, match="'odd'"):
            orc.set_flow_run_state(run.id, Running())
        after = orc.read_flow_run(run.id)
        assert (after.state_type, after.run_count, after.name) == (StateType.PENDING, 0, run.name)
        assert [s.name for s in orc.read_flow_run_states(run.id)] == ["Pending"]


def test_update_run_names_the_fields_a_transition_saves(database):
    @rule(from_=ANY_STATE, to=StateType.RUNNING, name="tagger")
    def tagger(ctx):
        ctx.update_run(tags=["x"])

    with Orchestrator(database, flow_policy=CORE_FLOW.append(tagger)) as orc:
        run = orc.create_flow_run(state=Pending())
        with pytest.raises(RuleError, match="tags=.*saves only .*empirical_policy.*run_count"):
            orc.set_flow_run_state(run.id, Running())


def test_update_run_converts_values_as_the_runs_model_does_and_they_are_saved(database):
    """A naive datetime is UTC, a dict is the policy it describes, a whole float a count."""
    @rule(from_=ANY_STATE, to=StateType.RUNNING, name="setter")
    def setter(ctx):
        ctx.update_run(
            expected_start_time=datetime(2030, 1, 2, 3, 4),
            empirical_policy={"retries": 3, "retry_delay": 7},
        )

    with Orchestrator(database, flow_policy=CORE_FLOW.append(setter)) as orc:
        run = orc.create_flow_run(state=Pending())
        assert orc.set_flow_run_state(run.id, Running()).status is SetStateStatus.ACCEPT
        after = orc.read_flow_run(run.id)
        assert after.expected_start_time == datetime(2030, 1, 2, 3, 4, tzinfo=timezone.utc)
        assert (after.empirical_policy.retries, after.empirical_policy.retry_delay) == (3, 7)


def test_a_wait_of_whole_seconds_given_as_a_float_is_kept(database):
    @rule(from_=ANY_STATE, to=StateType.RUNNING, name="wait-a-minute")
    def wait_a_minute(ctx):
        return Wait(timedelta(minutes=1).total_seconds(), "a minute")

    with Orchestrator(database, flow_policy=CORE_FLOW.append(wait_a_minute)) as orc:
        run = orc.create_flow_run(state=Pending())
        result = orc.set_flow_run_state(run.id, Running())
        assert (result.status, result.details.delay_seconds) == (SetStateStatus.WAIT, 60)
        assert result.model_dump(mode="json")["details"]["delay_seconds"] == 60


@pytest.mark.parametrize(
    "arguments",
    [
        {"policy": 5},
        {"proposed": 5},
        {"initial": 5},  # was a raw pydantic ValidationError
        {"cached_state": "not a state"},
        {"run": {"name": "x"}},  # the others: a raw AttributeError
        {"flow_run": "x"},
        {"now": "2030-01-01"},
        {"uniform": 0.5},
    ],
    ids=repr,
)
def test_decide_transition_refuses_an_argument_of_the_wrong_kind(arguments):
    given = {"policy": CORE_FLOW, "initial": Pending(), "proposed": Running(), **arguments}
    with pytest.raises(InvalidState, match=next(iter(arguments)).split("_")[0]):
        decide_transition(given.pop("policy"), **given)


def test_decide_transition_takes_states_in_every_form_the_orchestrator_takes():
    for proposed in ({"type": "RUNNING", "name": "Running"}, "RUNNING", StateType.RUNNING):
        outcome = decide_transition(CORE_FLOW, initial=Pending(), proposed=proposed, now=MONDAY_NOON)
        assert (outcome.result.status, outcome.written.type) == (SetStateStatus.ACCEPT, StateType.RUNNING)


def test_a_rule_that_edits_a_resumes_proposal_changes_that_resume_alone():
    """Every resume of a blocking pause proposes Running, stamped for its transition: a state
    cannot be changed in place (frozen), and a rule's edited copy is its resume's alone."""
    tried = []

    @rule(from_=StateType.PAUSED, to=StateType.RUNNING, name="scribble")
    def scribble(ctx):
        try:
            ctx.proposed.message = "edited"
        except ValueError:  # (pydantic's ValidationError: a frozen instance)
            tried.append("frozen")
        return Proceed(ctx.with_details(ctx.proposed, traceparent="edited"))

    def resumed(orc: Orchestrator):
        run = orc.create_flow_run()
        for state in (Pending(), Running(), Paused(pause_key="k")):
            orc.set_flow_run_state(run.id, state)
        return orc.resume_flow_run(run.id).state

    with Orchestrator(":memory:", flow_policy=CORE_FLOW.append(scribble)) as editing:
        edited = resumed(editing)
    with Orchestrator(":memory:") as plain:
        first, second = resumed(plain), resumed(plain)
    assert tried == ["frozen"]
    assert (edited.name, edited.message, edited.state_details.traceparent) == (
        "Running", None, "edited")
    for state in (first, second):
        assert (state.name, state.message, state.state_details.traceparent) == (
            "Running", None, None)
    assert len({edited.id, first.id, second.id}) == 3
    assert edited.timestamp <= first.timestamp <= second.timestamp

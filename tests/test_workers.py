"""Workers' side: claiming due runs, heartbeats, lost runs and late runs (frozen clock).

Each test runs on both backends (SQLite in memory, a fresh PostgreSQL schema)."""

from __future__ import annotations

import multiprocessing
import threading
from datetime import datetime, timedelta, timezone

import pytest

from flowstate import InvalidState, Orchestrator, SetStateStatus, StateType
from flowstate.rules import CORE_FLOW, Reject, retry_crashed_flows, rule
from flowstate.states import Completed, Pending, Running, Scheduled
from flowstate.testing import FrozenClock


T0 = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(T0)


@pytest.fixture
def orc(clock, open_orchestrator):
    with open_orchestrator(clock=clock) as orchestrator:
        yield orchestrator


def schedule(orc, offsets):
    return [orc.create_flow_run(name=f"r{i}", state=Scheduled(T0 + timedelta(seconds=o))).id
            for i, o in enumerate(offsets)]


def test_claims_take_due_runs_oldest_first_up_to_the_limit(orc):
    ids = schedule(orc, [-10, -30, 60, -20])
    claimed = orc.claim_due_flow_runs(limit=2, worker="w1")
    assert [r.id for r in claimed] == [ids[1], ids[3]]
    assert all(r.state_type is StateType.PENDING for r in claimed)
    assert claimed[0].state.message == "Claimed by w1"
    assert [r.id for r in orc.claim_due_flow_runs(limit=5)] == [ids[0]]
    assert orc.claim_due_flow_runs(limit=5) == []  # the future run is not due yet


def test_late_runs_are_claimed_too(orc, clock):
    [run_id] = schedule(orc, [-60])
    [late] = orc.mark_late_runs(threshold=15)
    assert (late.status, late.state.name) == (SetStateStatus.ACCEPT, "Late")
    assert late.state.state_details.scheduled_time == T0 - timedelta(seconds=60)
    assert [r.id for r in orc.claim_due_flow_runs(limit=1)] == [run_id]


def test_marking_late_respects_the_threshold_and_happens_once(orc):
    schedule(orc, [-10, -20])
    assert len(orc.mark_late_runs(threshold=15)) == 1
    assert orc.mark_late_runs(threshold=15) == []


def test_a_silent_run_is_crashed_exactly_once(orc, clock):
    run = orc.create_flow_run(state=Running())
    clock.advance(30)
    assert orc.mark_lost_runs(timeout=60) == []
    clock.advance(31)
    [result] = orc.mark_lost_runs(timeout=60)
    assert result.status is SetStateStatus.ACCEPT and result.state.type is StateType.CRASHED
    assert "No heartbeat for 61 s" in result.state.message
    assert orc.mark_lost_runs(timeout=60) == []
    assert [s.type for s in orc.read_flow_run_states(run.id)].count(StateType.CRASHED) == 1


def test_a_run_silent_for_exactly_the_timeout_is_not_lost(orc, clock):
    """Lost means silent for *more* than the timeout (the run's own timeout, or the call's)."""
    run = orc.create_flow_run(state=Running())
    patient = orc.create_flow_run(state=Running(), heartbeat_timeout=90)
    clock.advance(30)
    orc.heartbeat(run.id)  # silence now counts from here
    clock.advance(60)
    assert orc.mark_lost_runs(timeout=60) == []  # 60 s and 90 s of silence: both at the limit
    assert orc.read_flow_run(run.id).state_type is StateType.RUNNING
    clock.advance(microseconds=1)
    lost = orc.mark_lost_runs(timeout=60)
    assert [r.state.state_details.flow_run_id for r in lost] == [patient.id, run.id]
    assert all(r.state.type is StateType.CRASHED for r in lost)


def test_heartbeats_keep_a_run_alive(orc, clock):
    run = orc.create_flow_run(state=Running())
    for _ in range(5):
        clock.advance(50)
        orc.heartbeat(run.id, worker="w1")
        assert orc.mark_lost_runs(timeout=60) == []
    clock.advance(61)
    assert len(orc.mark_lost_runs(timeout=60)) == 1


def test_a_runs_own_heartbeat_timeout_wins(orc, clock):
    patient = orc.create_flow_run(state=Running(), heartbeat_timeout=600)
    impatient = orc.create_flow_run(state=Running())
    clock.advance(120)
    results = orc.mark_lost_runs(timeout=60)
    assert [r.state.state_details.flow_run_id for r in results] == [impatient.id]
    orc.set_heartbeat_timeout(impatient.id, 30)
    assert orc.read_flow_run(patient.id).state_type is StateType.RUNNING


def test_only_active_runs_heartbeat(orc):
    run = orc.create_flow_run(state=Completed())
    with pytest.raises(InvalidState, match="only PENDING or RUNNING"):
        orc.heartbeat(run.id)
    with pytest.raises(InvalidState):
        orc.mark_lost_runs(timeout=-1)


BAD_SECONDS = [float("nan"), float("inf"), -1, 10**400, 1e308, True, "5"]


@pytest.mark.parametrize("seconds", BAD_SECONDS, ids=repr)
def test_a_span_of_seconds_that_is_not_a_finite_number_up_to_a_century_is_refused(orc, clock, seconds):
    """NaN compared as "silent too long" for every run, and an infinite or huge span overflowed
    inside datetime: each is an InvalidState naming the argument, and nothing changes."""
    running = orc.create_flow_run(state=Running())
    (due,) = schedule(orc, [-3600])
    clock.advance(120)
    calls = {
        "timeout": lambda: orc.mark_lost_runs(timeout=seconds),
        "threshold": lambda: orc.mark_late_runs(threshold=seconds),
        "heartbeat_timeout": lambda: orc.create_flow_run(heartbeat_timeout=seconds),
        "timeout ": lambda: orc.set_heartbeat_timeout(running.id, seconds),
        "poll_interval": lambda: orc.iter_due_flow_runs(poll_interval=seconds),
    }
    for name, call in calls.items():
        with pytest.raises(InvalidState, match=f"^{name.strip()}=.*at most a century"):
            call()
    assert orc.read_flow_run(running.id).state_type is StateType.RUNNING
    assert orc.read_flow_run(due).state.name == "Scheduled"
    assert len(orc.read_flow_runs()) == 2


@pytest.mark.parametrize("limit", [0, True, 2**63, 1.0, "1"], ids=repr)
def test_a_claim_limit_that_is_not_a_whole_number_a_database_holds_is_refused(orc, limit):
    (due,) = schedule(orc, [-10])
    with pytest.raises(InvalidState, match="^limit=.*whole number from 1 to 2\\*\\*63-1"):
        orc.claim_due_flow_runs(limit=limit)
    with pytest.raises(InvalidState, match="^limit="):
        orc.iter_due_flow_runs(limit=limit)
    assert orc.read_flow_run(due).state.name == "Scheduled"


@pytest.mark.parametrize("worker", [5, b"w1", "w\ud800"], ids=repr)
def test_a_worker_name_that_is_not_text_is_refused_before_anything_is_written(orc, worker):
    (due,) = schedule(orc, [-10])
    with pytest.raises(InvalidState, match="worker"):
        orc.claim_due_flow_runs(limit=1, worker=worker)
    assert orc.read_flow_run(due).state.name == "Scheduled"
    running = orc.create_flow_run(state=Running())
    with pytest.raises(InvalidState, match="worker"):
        orc.heartbeat(running.id, worker=worker)
    assert orc._store.read_heartbeat(running.id) is None


def test_a_worker_name_is_kept_as_given(orc):
    (due,) = schedule(orc, [-10])
    orc.claim_due_flow_runs(limit=1, worker="w\x00é")
    assert orc._store.read_heartbeat(due)[0] == "w\x00é"


def test_no_run_is_late_at_the_earliest_time_there_is(orc):
    schedule(orc, [-10])
    earliest = datetime.min.replace(tzinfo=timezone.utc)
    assert orc.mark_late_runs(threshold=15, now=earliest) == []


def test_a_crashed_run_with_retries_left_awaits_a_retry_with_the_opt_in_rule(clock, memory_database):
    policy = CORE_FLOW.append(retry_crashed_flows)
    with Orchestrator(memory_database, clock=clock, flow_policy=policy) as orc:
        run = orc.create_flow_run(empirical_policy={"retries": 1, "retry_delay": 10}, state=Pending())
        orc.set_flow_run_state(run.id, Running())
        clock.advance(120)
        [result] = orc.mark_lost_runs(timeout=60)
        assert (result.status, result.state.name) == (SetStateStatus.REJECT, "AwaitingRetry")
        assert result.state.state_details.scheduled_time == clock.now + timedelta(seconds=10)
        clock.advance(10)
        assert [r.id for r in orc.claim_due_flow_runs(limit=1)] == [run.id]
        orc.set_flow_run_state(run.id, Running())
        clock.advance(120)
        [second] = orc.mark_lost_runs(timeout=60)  # retries exhausted: CRASHED stays
        assert second.status is SetStateStatus.ACCEPT and second.state.type is StateType.CRASHED


def test_without_the_opt_in_rule_prefects_policy_does_not_retry_crashes(orc, clock):
    run = orc.create_flow_run(empirical_policy={"retries": 3}, state=Running())
    clock.advance(120)
    [result] = orc.mark_lost_runs(timeout=60)
    assert result.state.type is StateType.CRASHED
    assert orc.read_flow_run(run.id).state_type is StateType.CRASHED


def test_a_claimed_run_keeps_its_scheduled_time(orc):
    [run_id] = schedule(orc, [-10])
    [claimed] = orc.claim_due_flow_runs(limit=1, worker="w1")
    assert claimed.state.state_details.scheduled_time == T0 - timedelta(seconds=10)
    stored = orc.read_flow_run_states(run_id)[-1]
    assert (stored.type, stored.state_details.scheduled_time) == (
        StateType.PENDING, T0 - timedelta(seconds=10))


@rule(from_=StateType.SCHEDULED, to=StateType.PENDING, name="no-claims-for-held-runs")
def hold_runs_tagged_hold(ctx):
    if "hold" in ctx.run.tags:
        return Reject("This run is on hold.")
    return None


def test_claims_go_through_the_configured_flow_policy(clock, memory_database):
    policy = CORE_FLOW.append(hold_runs_tagged_hold)
    with Orchestrator(memory_database, clock=clock, flow_policy=policy) as orc:
        held = orc.create_flow_run(tags=["hold"], state=Scheduled(T0 - timedelta(seconds=20)))
        free = orc.create_flow_run(state=Scheduled(T0 - timedelta(seconds=10)))
        assert [r.id for r in orc.claim_due_flow_runs(limit=5, worker="w1")] == [free.id]
        assert orc.read_flow_run(held.id).state_type is StateType.SCHEDULED
        assert [s.type for s in orc.read_flow_run_states(held.id)] == [StateType.SCHEDULED]
        assert orc.claim_due_flow_runs(limit=5) == []  # still refused, still not claimed


def test_iter_due_flow_runs_yields_claims_and_stops(orc):
    ids = schedule(orc, [-3, -2, -1])
    stop = threading.Event()
    seen = []
    for run in orc.iter_due_flow_runs(limit=2, poll_interval=0.01, stop=stop):
        seen.append(run.id)
        if len(seen) == 3:
            stop.set()
    assert seen == ids


def _claim_all(path: str, worker: str, queue, barrier) -> None:
    with Orchestrator(path) as orc:
        barrier.wait(timeout=60)  # all eight start claiming together
        mine = []
        while True:
            runs = orc.claim_due_flow_runs(limit=7, worker=worker)
            if not runs:
                break
            mine.extend(str(r.id) for r in runs)
        queue.put(mine)


def test_eight_processes_never_claim_the_same_run(database):
    path = database
    past = datetime.now(timezone.utc) - timedelta(minutes=5)
    with Orchestrator(path) as orc:
        with orc.transaction():
            ids = {str(orc.create_flow_run(state=Scheduled(past)).id) for _ in range(400)}
    ctx = multiprocessing.get_context("spawn")
    queue, barrier = ctx.Queue(), ctx.Barrier(8)
    workers = [ctx.Process(target=_claim_all, args=(path, f"w{i}", queue, barrier)) for i in range(8)]
    for process in workers:
        process.start()
    claims = [queue.get(timeout=120) for _ in workers]
    for process in workers:
        process.join(timeout=60)
        assert process.exitcode == 0
    flat = [run_id for claim in claims for run_id in claim]
    assert len(flat) == len(set(flat)) == 400 and set(flat) == ids


@pytest.mark.parametrize(
    "poll_interval", [float("nan"), float("inf"), -1, 1e300, "5", None], ids=repr
)
def test_a_worker_loop_refuses_a_poll_interval_no_clock_can_wait_before_it_claims(
    orc, poll_interval
):
    [run_id] = schedule(orc, [-10])
    with pytest.raises(InvalidState, match="poll_interval"):
        orc.iter_due_flow_runs(poll_interval=poll_interval, stop=threading.Event())
    with pytest.raises(InvalidState, match="limit"):
        orc.iter_due_flow_runs(limit=0)
    assert orc.read_flow_run(run_id).state_type is StateType.SCHEDULED


def test_a_worker_loop_polls_with_a_zero_interval_too(orc):
    [run_id] = schedule(orc, [-10])
    stop = threading.Event()
    for run in orc.iter_due_flow_runs(poll_interval=0, stop=stop):
        assert run.id == run_id
        stop.set()

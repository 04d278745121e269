"""Hosts whose clocks disagree, sharing one PostgreSQL database: heartbeats and the lost-run
check use the server's clock (``now()``) unless an explicit ``clock=`` was given.

A host's skewed clock is simulated by patching the real clock an Orchestrator takes when it is
built without ``clock=`` (``flowstate.orchestrator.utcnow``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone

import pytest

import flowstate.orchestrator
from flowstate import Orchestrator, StateType
from flowstate._time import utcnow
from flowstate.states import Pending, Running
from flowstate.testing import FrozenClock
from tests.backends import PostgresBackend, admin

SKEW = timedelta(seconds=120)


@pytest.fixture
def url(postgres_backend: PostgresBackend) -> Iterator[str]:
    made = postgres_backend.new_database()
    yield made
    postgres_backend.drop(made)


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, timedelta], Orchestrator]:
    """``host(url, skew)``: an Orchestrator on a host whose clock is off by ``skew``."""
    made: list[Orchestrator] = []

    def build(url: str, skew: timedelta) -> Orchestrator:
        monkeypatch.setattr(flowstate.orchestrator, "utcnow", lambda: utcnow() + skew)
        orc = Orchestrator(url)
        monkeypatch.setattr(flowstate.orchestrator, "utcnow", utcnow)
        made.append(orc)
        return orc

    yield build  # type: ignore[misc]
    for orc in made:
        orc.close()


def server_now(url: str) -> datetime:
    with admin(url) as conn:
        now: datetime = conn.execute("SELECT now()").fetchone()[0]
    return now.astimezone(timezone.utc)


def running_run(orc: Orchestrator) -> object:
    run = orc.create_flow_run(state=Pending())
    orc.set_flow_run_state(run.id, Running())
    return run.id


def test_a_reaper_whose_clock_runs_ahead_does_not_crash_a_run_that_just_beat(url, host) -> None:
    worker, reaper = host(url, timedelta(0)), host(url, SKEW)
    run_id = running_run(worker)
    worker.heartbeat(run_id)
    assert reaper.mark_lost_runs(timeout=60) == []
    assert reaper.read_flow_run(run_id).state_type is StateType.RUNNING


def test_a_worker_whose_clock_runs_behind_still_keeps_its_run_alive(url, host) -> None:
    worker, reaper = host(url, -SKEW), host(url, timedelta(0))
    run_id = running_run(reaper)
    worker.heartbeat(run_id)
    assert reaper.mark_lost_runs(timeout=60) == []
    assert reaper.read_flow_run(run_id).state_type is StateType.RUNNING


def test_heartbeats_and_claims_are_stamped_with_the_servers_clock(url, host) -> None:
    worker = host(url, -SKEW)
    run_id = running_run(worker)
    worker.heartbeat(run_id, worker="w1")
    _who, beat, _timeout = worker._store.read_heartbeat(run_id)  # type: ignore[misc]
    assert abs(beat - server_now(url)) < timedelta(seconds=30)
    worker.create_flow_run(state={"type": "SCHEDULED"})
    (claimed,) = worker.claim_due_flow_runs(limit=1, worker="w1")
    _who, beat, _timeout = worker._store.read_heartbeat(claimed.id)  # type: ignore[misc]
    assert abs(beat - server_now(url)) < timedelta(seconds=30)


def test_a_silent_run_is_still_crashed_by_the_servers_clock(url, host) -> None:
    worker, reaper = host(url, timedelta(0)), host(url, -SKEW)
    run_id = running_run(worker)
    worker.heartbeat(run_id)
    time.sleep(1.0)  # silent for longer than the timeout below, by the server's clock
    (result,) = reaper.mark_lost_runs(timeout=0.5)
    assert result.state.type is StateType.CRASHED
    assert "No heartbeat for" in result.state.message


def test_an_explicit_clock_stamps_heartbeats_and_measures_silence(url) -> None:
    clock = FrozenClock(datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc))
    with Orchestrator(url, clock=clock) as orc:
        run_id = running_run(orc)
        orc.heartbeat(run_id)
        assert orc._store.read_heartbeat(run_id)[1] == clock()  # type: ignore[index]
        clock.advance(seconds=61)
        (result,) = orc.mark_lost_runs(timeout=60)
        assert result.state.type is StateType.CRASHED


def test_leases_are_stamped_and_expired_by_the_servers_clock(url, host):
    behind = host(url, -SKEW)  # a host two minutes slow takes a one-minute lease
    ahead = host(url, SKEW)  # a reaper two minutes fast must not take it for expired
    behind.create_global_concurrency_limit("warehouse", 1)
    lease = behind.increment_concurrency_slots_with_lease("warehouse", 1, lease_duration=60)
    assert abs(lease.created - server_now(url)) < timedelta(seconds=10)
    assert ahead.expire_leases() == []
    assert ahead.read_global_concurrency_limit("warehouse").active_slots == 1
    # an explicit clock still wins, as for heartbeats
    later = FrozenClock(server_now(url) + timedelta(seconds=61))
    with Orchestrator(url, clock=later) as reaper:
        assert [expired.lease_id for expired in reaper.expire_leases()] == [lease.lease_id]

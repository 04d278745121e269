"""FrozenClock, and the plugin's fixtures: time-dependent rules tested without sleeping."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest

from flowstate import Orchestrator
from flowstate.states import Completed, Paused, Pending, Running, Scheduled
from flowstate.testing.clock import DEFAULT_START, FrozenClock


def test_a_frozen_clock_stands_still_until_moved() -> None:
    clock = FrozenClock()
    assert clock() == clock() == clock.now == DEFAULT_START
    assert clock.advance(1.5) == DEFAULT_START + timedelta(seconds=1.5)
    assert clock.advance(minutes=2) == DEFAULT_START + timedelta(seconds=121.5)
    assert clock.advance(-121.5) == DEFAULT_START


def test_set_takes_naive_times_as_utc_and_converts_others() -> None:
    clock = FrozenClock()
    assert clock.set(datetime(2025, 5, 1, 12)) == datetime(2025, 5, 1, 12, tzinfo=timezone.utc)
    paris = timezone(timedelta(hours=2))
    assert clock.set(datetime(2025, 5, 1, 14, tzinfo=paris)).hour == 12
    assert clock().tzinfo is timezone.utc
    with pytest.raises(TypeError, match="expected a datetime"):
        clock.set("2025-05-01")  # type: ignore[arg-type]


def test_threads_see_every_advance() -> None:
    clock = FrozenClock()
    workers = [threading.Thread(target=lambda: [clock.advance(1) for _ in range(500)]) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert clock() == DEFAULT_START + timedelta(seconds=2000)


def test_the_fixtures_give_an_in_memory_orchestrator_on_the_frozen_clock(
    orchestrator: Orchestrator, frozen_clock: FrozenClock
) -> None:
    assert orchestrator.database == ":memory:"
    run = orchestrator.create_flow_run()
    assert run.created == frozen_clock() == DEFAULT_START


def test_a_wait_shrinks_as_the_clock_moves_and_ends_when_due(
    orchestrator: Orchestrator, frozen_clock: FrozenClock
) -> None:
    run = orchestrator.create_flow_run()
    orchestrator.set_flow_run_state(run.id, Scheduled(frozen_clock() + timedelta(minutes=10)))
    assert orchestrator.set_flow_run_state(run.id, Running()).details.delay_seconds == 600
    frozen_clock.advance(590)
    assert orchestrator.set_flow_run_state(run.id, Running()).details.delay_seconds == 10
    frozen_clock.advance(10)
    assert orchestrator.set_flow_run_state(run.id, Running()).status.value == "ACCEPT"


def test_a_pause_times_out_on_the_frozen_clock(
    orchestrator: Orchestrator, frozen_clock: FrozenClock
) -> None:
    run = orchestrator.create_flow_run()
    orchestrator.set_flow_run_state(run.id, Running())
    deadline = frozen_clock() + timedelta(seconds=60)
    orchestrator.set_flow_run_state(run.id, Paused(pause_expiration_time=deadline, pause_key="a"))
    frozen_clock.advance(61)
    result = orchestrator.resume_flow_run(run.id)
    assert result.status.value == "REJECT" and result.state is not None
    assert result.state.type.value == "FAILED"


def test_a_cache_entry_expires_on_the_frozen_clock(
    orchestrator: Orchestrator, frozen_clock: FrozenClock
) -> None:
    first = orchestrator.create_task_run(task_key="t", dynamic_key="1")
    expires = frozen_clock() + timedelta(hours=1)
    orchestrator.set_task_run_state(first.id, Running())
    orchestrator.set_task_run_state(
        first.id, Completed(cache_key="k", cache_expiration=expires, data={"type": "reference"})
    )
    hit = orchestrator.create_task_run(task_key="t", dynamic_key="2")
    assert orchestrator.set_task_run_state(hit.id, Running(cache_key="k")).state.name == "Cached"
    frozen_clock.advance(hours=1)
    miss = orchestrator.create_task_run(task_key="t", dynamic_key="3")
    assert orchestrator.set_task_run_state(miss.id, Running(cache_key="k")).state.name == "Running"


def test_a_frozen_clock_can_be_shared_by_two_orchestrators(tmp_path) -> None:
    clock = FrozenClock()
    with Orchestrator(tmp_path / "a.db", clock=clock) as a, Orchestrator(tmp_path / "a.db", clock=clock) as b:
        run = a.create_flow_run()
        clock.advance(5)
        b.set_flow_run_state(run.id, Pending())
        assert a.read_flow_run_states(run.id)[0].timestamp == DEFAULT_START + timedelta(seconds=5)

"""Tag limits on task runs: SecureTaskConcurrencySlots and ReleaseTaskConcurrencySlots in the
task policies, on both backends.

Prefect 3.9.1's answers are the conformance vectors' (category ``task-tag-concurrency``); the
tests below add what the vectors do not show, and the rows of the conformance README's "Prefect
bugs that flowstate does not copy" that concern tags, each from its right-hand column.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from flowstate import AsyncOrchestrator, Orchestrator, SetStateStatus
from flowstate.concurrency.tags import TASK_SLOT_LEASE_SECONDS
from flowstate.orchestration.policies import CORE_TASK, MINIMAL_TASK
from flowstate.states import Completed, Failed, Pending, Running
from flowstate.testing import FrozenClock

ACCEPT, WAIT, ABORT = SetStateStatus.ACCEPT, SetStateStatus.WAIT, SetStateStatus.ABORT


@pytest.fixture
def clock():
    return FrozenClock()


@pytest.fixture
def orc(memory_database, clock):
    with Orchestrator(memory_database, clock=clock) as made:
        yield made


def task(orc: Orchestrator, *tags: str):
    """A task run with these tags, in a RUNNING flow run."""
    flow = orc.create_flow_run(state=Running())
    return orc.create_task_run(flow_run_id=flow.id, tags=list(tags))


def held(orc: Orchestrator, tag: str) -> tuple[int, list]:
    """(slots held, holders) of a tag's limit."""
    return (
        orc.read_global_concurrency_limit(f"tag:{tag}").active_slots,
        orc.read_concurrency_limit(tag).active_slots,
    )


def test_the_rules_stand_where_prefect_has_them() -> None:
    names = CORE_TASK.names
    assert names.index("secure_task_concurrency_slots") == 3
    assert names[names.index("prevent_running_tasks_from_stopped_flows") + 1] == (
        "secure_task_concurrency_slots"
    )
    assert names[-1] == "release_task_concurrency_slots"
    assert MINIMAL_TASK.names == ("release_task_concurrency_slots",)


def test_at_most_two_warehouse_tasks_run_at_once(orc) -> None:
    orc.create_concurrency_limit("warehouse", 2)
    first, second, third = (task(orc, "warehouse") for _ in range(3))
    assert orc.set_task_run_state(first.id, Running()).status is ACCEPT
    assert orc.set_task_run_state(second.id, Running()).status is ACCEPT
    waiting = orc.set_task_run_state(third.id, Running())
    assert waiting.status is WAIT
    assert waiting.details.reason == "Concurrency limit reached for tags: warehouse"
    assert 2 <= waiting.details.delay_seconds <= 3  # Prefect's range for a fresh limit
    assert orc.read_task_run(third.id).state is None  # nothing written
    assert held(orc, "warehouse") == (2, [first.id, second.id])
    orc.set_task_run_state(first.id, Completed())
    assert orc.set_task_run_state(third.id, Running()).status is ACCEPT
    assert held(orc, "warehouse") == (2, [second.id, third.id])


def test_a_task_takes_all_its_tags_or_none(orc) -> None:
    orc.create_concurrency_limit("a", 5)
    orc.create_concurrency_limit("b", 1)
    holder, both = task(orc, "b"), task(orc, "a", "b")
    orc.set_task_run_state(holder.id, Running())
    waiting = orc.set_task_run_state(both.id, Running())
    assert (waiting.status, waiting.details.reason) == (
        WAIT, "Concurrency limit reached for tags: a, b"
    )
    assert held(orc, "a") == (0, [])  # nothing taken on a either
    orc.set_task_run_state(holder.id, Completed())
    assert orc.set_task_run_state(both.id, Running()).status is ACCEPT
    assert held(orc, "a") == (1, [both.id]) and held(orc, "b") == (1, [both.id])
    orc.set_task_run_state(both.id, Failed())
    assert held(orc, "a") == (0, []) and held(orc, "b") == (0, [])


def test_the_wait_grows_with_the_limits_average_occupancy_up_to_ten_seconds(orc) -> None:
    orc.create_concurrency_limit("a", 1)
    orc.increment_concurrency_slots("tag:a", 1)
    orc.decrement_concurrency_slots("tag:a", 1, occupancy_seconds=6.0)  # average 2 -> 4
    holder, waiting = task(orc, "a"), task(orc, "a")
    orc.set_task_run_state(holder.id, Running())
    assert orc.set_task_run_state(waiting.id, Running()).details.delay_seconds == 4
    orc.decrement_concurrency_slots("tag:a", 1, occupancy_seconds=1000.0)
    orc.increment_concurrency_slots("tag:a", 1)
    assert orc.set_task_run_state(waiting.id, Running()).details.delay_seconds == 10


def test_a_task_slot_expires_with_its_lease_and_is_not_given_back_twice(orc, clock) -> None:
    """A task run whose process died keeps its slot no longer than its lease; when it shows up
    later and leaves RUNNING, it gives back nothing (the slot is somebody else's by then)."""
    orc.create_concurrency_limit("a", 1)
    lost, other = task(orc, "a"), task(orc, "a")
    orc.set_task_run_state(lost.id, Running())
    clock.advance(TASK_SLOT_LEASE_SECONDS - 1)
    assert orc.expire_leases() == []
    clock.advance(2)
    assert [lease.holder.id for lease in orc.expire_leases()] == [lost.id]
    assert held(orc, "a") == (0, [])
    assert orc.set_task_run_state(other.id, Running()).status is ACCEPT
    orc.set_task_run_state(lost.id, Completed())
    assert held(orc, "a") == (1, [other.id])


def test_a_forced_running_takes_no_slot_and_a_forced_final_state_gives_it_back(orc) -> None:
    orc.create_concurrency_limit("a", 1)
    forced, normal = task(orc, "a"), task(orc, "a")
    orc.set_task_run_state(forced.id, Running(), force=True)
    assert held(orc, "a") == (0, [])
    orc.set_task_run_state(normal.id, Running())
    orc.set_task_run_state(normal.id, Completed(), force=True)
    assert held(orc, "a") == (0, [])


def test_a_task_run_without_a_limit_on_its_tags_runs_freely(orc) -> None:
    runs = [task(orc, "unlimited") for _ in range(3)]
    assert {orc.set_task_run_state(r.id, Running()).status for r in runs} == {ACCEPT}
    assert orc.read_global_concurrency_limits() == []


# -- Prefect bugs not copied (conformance README, last section), the rows about tags -------------


def test_reset_sets_the_count_to_what_the_remaining_holders_hold(orc) -> None:
    """Prefect (quirk vector task-tag-api-reset-leaks-slots): reset revokes the holders but
    keeps the count, so the tag stays full for good. flowstate: the count is what the holders
    left hold: 0 after a plain reset, one slot per override run up to the limit."""
    orc.create_concurrency_limit("a", 1)
    old, main = task(orc, "a"), task(orc, "a")
    orc.set_task_run_state(old.id, Running())
    orc.reset_concurrency_limit("a")
    assert held(orc, "a") == (0, [])
    assert orc.set_task_run_state(main.id, Running()).status is ACCEPT  # Prefect: WAIT
    orc.set_task_run_state(old.id, Completed())  # its slot was taken from it: gives nothing
    assert held(orc, "a") == (1, [main.id])
    orc.set_task_run_state(main.id, Completed())
    assert held(orc, "a") == (0, [])

    override = task(orc, "a")
    orc.set_task_run_state(main.id, Running())
    orc.reset_concurrency_limit("a", slot_override=[override.id])
    assert held(orc, "a") == (1, [override.id])
    orc.set_task_run_state(main.id, Completed())  # main no longer holds anything
    assert held(orc, "a") == (1, [override.id])
    orc.set_task_run_state(override.id, Failed(), force=True)
    assert held(orc, "a") == (0, [])


def test_a_zero_tag_limit_aborts_first_and_takes_no_slot_anywhere(orc) -> None:
    """Prefect (task-tag-zero-and-free-leaks, quirk vector task-tag-zero-and-full): the ABORT
    still takes a slot on the task's other tags and keeps it, and a full other tag turns the
    ABORT into WAIT. flowstate: ABORT, nothing taken."""
    orc.create_concurrency_limit("a", 0)
    orc.create_concurrency_limit("b", 1)
    main = task(orc, "a", "b")
    orc.set_task_run_state(main.id, Pending())
    aborted = orc.set_task_run_state(main.id, Running())
    assert (aborted.status, aborted.details.reason) == (
        ABORT,
        'The concurrency limit on tag "a" is 0 and will deadlock if the task tries to run again.',
    )
    assert held(orc, "b") == (0, [])
    holder = task(orc, "b")
    orc.set_task_run_state(holder.id, Running())
    assert orc.set_task_run_state(main.id, Running()).status is ABORT  # Prefect: WAIT
    assert held(orc, "b") == (1, [holder.id])


def test_slots_follow_their_holders_across_deactivation_and_reactivation(orc) -> None:
    """A slot taken before a limit was deactivated is given back by its holder after the
    reactivation, and a run that ran while the limit was inactive (holding nothing) gives back
    nothing: the count stays that of the holders."""
    orc.create_concurrency_limit("a", 2)
    before, during = task(orc, "a"), task(orc, "a")
    orc.set_task_run_state(before.id, Running())
    orc.update_global_concurrency_limit("tag:a", active=False)
    assert orc.set_task_run_state(during.id, Running()).status is ACCEPT
    orc.update_global_concurrency_limit("tag:a", active=True)
    assert held(orc, "a") == (1, [before.id])
    orc.set_task_run_state(during.id, Completed())
    assert held(orc, "a") == (1, [before.id])
    orc.set_task_run_state(before.id, Completed())
    assert held(orc, "a") == (0, [])


def test_an_inactive_tag_limit_restricts_nothing(orc) -> None:
    orc.create_global_concurrency_limit("tag:a", 1, active=False)
    orc.create_global_concurrency_limit("tag:zero", 0, active=False)
    runs = [task(orc, "a", "zero") for _ in range(3)]
    assert {orc.set_task_run_state(r.id, Running()).status for r in runs} == {ACCEPT}
    assert held(orc, "a") == (0, []) and held(orc, "zero") == (0, [])


def test_the_async_orchestrator_has_the_tag_calls(memory_database) -> None:
    async def main() -> tuple[int, int]:
        async with AsyncOrchestrator(memory_database) as aorc:
            await aorc.create_concurrency_limit("a", 1)
            run = await aorc.create_task_run(tags=["a"])
            await aorc.set_task_run_state(run.id, Running())
            during = len((await aorc.read_concurrency_limit("a")).active_slots)
            await aorc.set_task_run_state(run.id, Completed())
            after = len((await aorc.read_concurrency_limits())[0].active_slots)
            await aorc.reset_concurrency_limit("a")
            await aorc.delete_concurrency_limit("a")
            return during, after

    assert asyncio.run(main()) == (1, 0)


def test_the_lease_of_a_task_slot_lasts_its_documented_duration(orc, clock) -> None:
    orc.create_concurrency_limit("a", 1)
    run = task(orc, "a")
    orc.set_task_run_state(run.id, Running())
    (lease,) = orc.read_concurrency_leases("tag:a")
    assert lease.expiration - lease.created == timedelta(seconds=TASK_SLOT_LEASE_SECONDS)
    assert (lease.holder.type, lease.holder.id, lease.limits) == ("task_run", run.id, ["tag:a"])


def test_a_long_task_renews_its_slots(orc, clock) -> None:
    orc.create_concurrency_limit("a", 1)
    orc.create_concurrency_limit("b", 1)
    run = task(orc, "a", "b")
    orc.set_task_run_state(run.id, Running())
    clock.advance(TASK_SLOT_LEASE_SECONDS - 10)
    (renewed,) = orc.renew_task_run_slots(run.id, lease_duration=600)
    assert renewed.expiration == clock.now + timedelta(seconds=600)
    assert renewed.limits == ["tag:a", "tag:b"]
    clock.advance(500)
    assert orc.expire_leases() == []
    assert held(orc, "a") == (1, [run.id])
    orc.set_task_run_state(run.id, Completed())
    assert orc.renew_task_run_slots(run.id) == []


def test_renewing_the_slots_of_an_unknown_task_run_or_for_too_short_is_an_error(orc) -> None:
    from uuid import uuid4

    from flowstate import InvalidState, ObjectNotFound

    with pytest.raises(ObjectNotFound):
        orc.renew_task_run_slots(uuid4())
    run = task(orc, "a")
    with pytest.raises(InvalidState, match="lease_duration"):
        orc.renew_task_run_slots(run.id, lease_duration=10)


def test_the_flow_runs_heartbeat_keeps_its_task_runs_slots(orc, clock) -> None:
    """A worker sending heartbeats for its flow run keeps the tag slots of the flow's running
    tasks, however long they run; once the heartbeats stop, the slots expire with the lease."""
    orc.create_concurrency_limit("a", 2)
    flow = orc.create_flow_run(state=Running())
    kept = orc.create_task_run(flow_run_id=flow.id, dynamic_key="kept", tags=["a"])
    orc.set_task_run_state(kept.id, Running())
    other = task(orc, "a")  # in another flow run, whose heartbeat nobody sends
    orc.set_task_run_state(other.id, Running())
    for _ in range(3):
        clock.advance(TASK_SLOT_LEASE_SECONDS - 60)
        orc.heartbeat(flow.id)
    assert [lease.holder.id for lease in orc.expire_leases()] == [other.id]
    assert held(orc, "a") == (1, [kept.id])
    (lease,) = orc.read_concurrency_leases("tag:a")
    assert lease.expiration == clock.now + timedelta(seconds=TASK_SLOT_LEASE_SECONDS)
    orc.renew_task_run_slots(kept.id, lease_duration=3600)
    orc.heartbeat(flow.id)  # a longer lease keeps its time
    (lease,) = orc.read_concurrency_leases("tag:a")
    assert lease.expiration == clock.now + timedelta(seconds=3600)
    clock.advance(3601)
    assert [lease.holder.id for lease in orc.expire_leases()] == [kept.id]


def test_deleting_a_task_run_or_its_flow_run_gives_its_tag_slots_back(orc) -> None:
    orc.create_concurrency_limit("a", 3)
    deleted, kept = task(orc, "a"), task(orc, "a")
    flow = orc.create_flow_run(state=Running())
    inside = orc.create_task_run(flow_run_id=flow.id, tags=["a"])
    for run in (deleted, kept, inside):
        orc.set_task_run_state(run.id, Running())
    assert held(orc, "a")[0] == 3
    orc.delete_task_run(deleted.id)
    assert held(orc, "a") == (2, [kept.id, inside.id])
    orc.delete_flow_run(flow.id)
    assert held(orc, "a") == (1, [kept.id])
    assert [lease.holder.id for lease in orc.read_concurrency_leases()] == [kept.id]

"""Deployments and their concurrency limits: the calls, the flow rules that hold a deployment's
slots, and the deliberate differences from Prefect 3.9.1, on both backends.

The Prefect behaviour followed is recorded in ``prefect-3.9.1-concurrency.jsonl`` (category
``flow-deployment-concurrency`` / ``flow-deployment-lease``); where Prefect loses or leaks
slots (``quirks/``, the README's deliberate differences), a test here shows what flowstate does
instead.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from uuid import uuid4

import pytest

from flowstate import (
    AsyncOrchestrator,
    Deployment,
    InvalidState,
    ObjectAlreadyExists,
    ObjectNotFound,
    Orchestrator,
    SetStateStatus,
)
from flowstate.states import (
    AwaitingRetry,
    Cancelled,
    Completed,
    Failed,
    Paused,
    Pending,
    Running,
    Scheduled,
    StateType,
)
from flowstate.testing import FrozenClock

ACCEPT, REJECT, ABORT = SetStateStatus.ACCEPT, SetStateStatus.REJECT, SetStateStatus.ABORT


@pytest.fixture
def orc(open_orchestrator):
    with open_orchestrator() as made:
        yield made


def held(orc: Orchestrator, deployment: Deployment) -> int:
    """The slots of the deployment's limit held now."""
    limit = orc.read_deployment(deployment.id).global_concurrency_limit
    assert limit is not None
    return limit.active_slots


def lease_of(orc: Orchestrator, run_id) -> object:
    return orc.read_flow_run(run_id).state.state_details.deployment_concurrency_lease_id


def what_is_stored(orc: Orchestrator) -> tuple[object, ...]:
    return (
        [(d.name, d.concurrency_limit) for d in orc.read_deployments()],
        [(g.name, g.limit, g.active_slots) for g in orc.read_global_concurrency_limits()],
    )


# -- the calls -------------------------------------------------------------------------------


def test_a_deployment_with_a_limit_owns_the_global_limit_deployment_id(orc):
    made = orc.create_deployment("nightly", concurrency_limit=2, collision_strategy="CANCEL_NEW")

    assert made.name == "nightly" and made.concurrency_limit == 2
    assert made.concurrency_options.collision_strategy == "CANCEL_NEW"
    assert made.concurrency_options.grace_period_seconds is None
    limit = made.global_concurrency_limit
    assert (limit.name, limit.limit, limit.active, limit.active_slots) == (
        f"deployment:{made.id}", 2, True, 0)
    assert orc.read_global_concurrency_limit(f"deployment:{made.id}").id == limit.id
    assert orc.read_deployment(made.id) == made
    assert orc.read_deployments() == [made]


def test_a_deployment_without_options_has_none_and_without_a_limit_no_limit(orc):
    plain = orc.create_deployment("plain")
    assert (plain.concurrency_limit, plain.concurrency_options, plain.global_concurrency_limit) == (
        None, None, None)
    assert orc.read_global_concurrency_limits() == []
    graced = orc.create_deployment("graced", concurrency_limit=1, grace_period_seconds=120)
    assert graced.concurrency_options.collision_strategy == "ENQUEUE"
    assert graced.concurrency_options.grace_period_seconds == 120


def test_deployments_may_share_a_global_limit(orc):
    shared = orc.create_global_concurrency_limit("warehouse", 1)
    first = orc.create_deployment("d1", global_concurrency_limit_id=shared.id)
    second = orc.create_deployment("d2", global_concurrency_limit_id=str(shared.id))
    assert first.global_concurrency_limit.name == second.global_concurrency_limit.name == "warehouse"
    one = orc.create_flow_run(deployment_id=first.id)
    two = orc.create_flow_run(deployment_id=second.id)

    assert orc.set_flow_run_state(one.id, Pending()).status is ACCEPT
    result = orc.set_flow_run_state(two.id, Pending())

    assert result.status is REJECT and result.state.name == "AwaitingConcurrencySlot"
    assert orc.read_global_concurrency_limit("warehouse").active_slots == 1


def test_update_deployment_resizes_creates_and_removes_its_own_limit(orc):
    made = orc.create_deployment("d", concurrency_limit=2)
    run = orc.create_flow_run(deployment_id=made.id)
    orc.set_flow_run_state(run.id, Pending())

    lowered = orc.update_deployment(made.id, concurrency_limit=1)
    assert lowered.concurrency_limit == 1 and lowered.global_concurrency_limit.active_slots == 1
    assert lowered.global_concurrency_limit.id == made.global_concurrency_limit.id

    removed = orc.update_deployment(made.id, concurrency_limit=None)
    assert removed.global_concurrency_limit is None
    assert orc.read_global_concurrency_limits() == []
    # its run finishes without a limit to give a slot back to
    assert orc.set_flow_run_state(run.id, Running()).status is ACCEPT
    assert orc.set_flow_run_state(run.id, Completed()).status is ACCEPT

    again = orc.update_deployment(made.id, concurrency_limit=3, collision_strategy="CANCEL_NEW")
    assert again.global_concurrency_limit.name == f"deployment:{made.id}"
    assert (again.concurrency_limit, again.global_concurrency_limit.active_slots) == (3, 0)
    assert again.concurrency_options.collision_strategy == "CANCEL_NEW"
    cleared = orc.update_deployment(made.id, collision_strategy=None)
    assert cleared.concurrency_options is None and cleared.concurrency_limit == 3


def test_update_deployment_switches_between_its_own_limit_and_a_shared_one(orc):
    shared = orc.create_global_concurrency_limit("shared", 4)
    made = orc.create_deployment("d", concurrency_limit=1)

    switched = orc.update_deployment(made.id, global_concurrency_limit_id=shared.id)
    assert switched.global_concurrency_limit.name == "shared"
    assert [g.name for g in orc.read_global_concurrency_limits()] == ["shared"]  # own one gone

    unlinked = orc.update_deployment(made.id, global_concurrency_limit_id=None)
    assert unlinked.global_concurrency_limit is None
    assert orc.read_global_concurrency_limit("shared").limit == 4  # a shared limit stays


def test_update_deployment_pointed_at_the_limit_it_already_owns_keeps_it(orc):
    # (read a deployment, write its limit back with another change: the limit stays)
    made = orc.create_deployment("d", concurrency_limit=2)
    run = orc.create_flow_run(deployment_id=made.id)
    orc.set_flow_run_state(run.id, Pending())
    own = made.global_concurrency_limit

    kept = orc.update_deployment(
        made.id, global_concurrency_limit_id=own.id, collision_strategy="CANCEL_NEW"
    )
    assert kept.global_concurrency_limit.id == own.id
    assert (kept.concurrency_limit, kept.global_concurrency_limit.active_slots) == (2, 1)
    assert kept.concurrency_options.collision_strategy == "CANCEL_NEW"
    assert orc.read_deployment(made.id) == kept
    assert orc.set_flow_run_state(run.id, Running()).status is ACCEPT
    assert orc.set_flow_run_state(run.id, Completed()).status is ACCEPT
    assert held(orc, made) == 0


def test_the_async_orchestrator_has_the_deployment_calls(memory_database):
    async def scenario() -> None:
        async with AsyncOrchestrator(memory_database) as orc:
            made = await orc.create_deployment("nightly", concurrency_limit=1)
            assert (await orc.read_deployment(made.id)).name == "nightly"
            assert [d.id for d in await orc.read_deployments()] == [made.id]
            run = await orc.create_flow_run(deployment_id=made.id)
            assert (await orc.set_flow_run_state(run.id, Pending())).status is ACCEPT
            changed = await orc.update_deployment(made.id, concurrency_limit=2)
            assert changed.global_concurrency_limit.active_slots == 1

    asyncio.run(scenario())


# -- bad input: a FlowstateError naming the field, nothing written ------------------------------


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"concurrency_limit": 0}, "concurrency_limit"),  # Prefect: 422
        ({"concurrency_limit": -1}, "concurrency_limit"),
        ({"concurrency_limit": True}, "concurrency_limit"),
        ({"concurrency_limit": 2.5}, "concurrency_limit"),
        ({"concurrency_limit": 2**63}, "concurrency_limit"),
        ({"collision_strategy": "QUEUE"}, "collision_strategy"),
        ({"collision_strategy": "enqueue"}, "collision_strategy"),
        ({"grace_period_seconds": -5}, "grace_period_seconds"),
        ({"grace_period_seconds": 59}, "grace_period_seconds"),
        ({"grace_period_seconds": 86401}, "grace_period_seconds"),
        ({"grace_period_seconds": 90.5}, "grace_period_seconds"),
        ({"global_concurrency_limit_id": "not-a-uuid"}, "global_concurrency_limit_id"),
        ({"concurrency_limit": 1, "global_concurrency_limit_id": uuid4()}, "concurrency_limit"),
    ],
)
def test_bad_create_deployment_arguments_are_invalid_state_naming_the_field(
    orc, arguments, field
):
    orc.create_deployment("existing", concurrency_limit=1)
    before = what_is_stored(orc)
    with pytest.raises(InvalidState, match=field):
        orc.create_deployment("new", **arguments)
    assert what_is_stored(orc) == before


@pytest.mark.parametrize("name", ["", "   ", 42, None, "a\x00b"])
def test_a_bad_deployment_name_is_invalid_state(orc, name):
    with pytest.raises(InvalidState, match="name"):
        orc.create_deployment(name)
    assert orc.read_deployments() == []


def test_a_taken_name_is_object_already_exists_and_writes_no_limit(orc):
    orc.create_deployment("nightly", concurrency_limit=1)
    before = what_is_stored(orc)
    with pytest.raises(ObjectAlreadyExists, match="nightly"):
        orc.create_deployment("nightly", concurrency_limit=5)
    assert what_is_stored(orc) == before


def test_an_unknown_global_limit_is_object_not_found_naming_the_field(orc):
    with pytest.raises(ObjectNotFound, match="global_concurrency_limit_id"):
        orc.create_deployment("d", global_concurrency_limit_id=uuid4())
    assert orc.read_deployments() == []
    made = orc.create_deployment("d", concurrency_limit=1)
    before = what_is_stored(orc)
    with pytest.raises(ObjectNotFound, match="global_concurrency_limit_id"):
        orc.update_deployment(made.id, global_concurrency_limit_id=uuid4())
    assert what_is_stored(orc) == before


def test_an_unknown_deployment_is_object_not_found_for_read_and_update(orc):
    missing = uuid4()
    with pytest.raises(ObjectNotFound, match=str(missing)):
        orc.read_deployment(missing)
    with pytest.raises(ObjectNotFound, match=str(missing)):
        orc.update_deployment(missing, concurrency_limit=2)
    assert what_is_stored(orc) == ([], [])
    with pytest.raises(InvalidState, match="deployment_id"):
        orc.read_deployment("nope")
    with pytest.raises(InvalidState, match="deployment_id"):
        orc.update_deployment(42, concurrency_limit=2)


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"concurrency_limit": 0}, "concurrency_limit"),
        ({"concurrency_limit": -3}, "concurrency_limit"),
        ({"collision_strategy": "CANCEL_OLD"}, "collision_strategy"),
        ({"grace_period_seconds": -1}, "grace_period_seconds"),
        ({"concurrency_limit": 2, "global_concurrency_limit_id": None}, "concurrency_limit"),
    ],
)
def test_bad_update_deployment_arguments_change_nothing(orc, arguments, field):
    made = orc.create_deployment("d", concurrency_limit=1, collision_strategy="ENQUEUE")
    before = what_is_stored(orc)
    with pytest.raises(InvalidState, match=field):
        orc.update_deployment(made.id, **arguments)
    assert what_is_stored(orc) == before
    assert orc.read_deployment(made.id) == made


# -- the flow rules --------------------------------------------------------------------------


def test_enqueue_reschedules_a_run_30_s_later_and_it_proceeds_when_the_slot_is_free(memory_database):
    clock = FrozenClock()
    with Orchestrator(memory_database, clock=clock) as orc:
        made = orc.create_deployment("d", concurrency_limit=1, collision_strategy="ENQUEUE")
        first = orc.create_flow_run(deployment_id=made.id, state=Scheduled())
        second = orc.create_flow_run(deployment_id=made.id, state=Scheduled())
        assert orc.set_flow_run_state(first.id, Pending()).status is ACCEPT

        waiting = orc.set_flow_run_state(second.id, Pending())
        assert waiting.status is REJECT
        assert waiting.details.reason == "Deployment concurrency limit reached."
        assert waiting.state.name == "AwaitingConcurrencySlot"
        assert waiting.state.state_details.scheduled_time == clock() + timedelta(seconds=30)
        assert waiting.state.state_details.deployment_concurrency_lease_id is None

        orc.set_flow_run_state(first.id, Running())
        orc.set_flow_run_state(first.id, Completed())
        assert held(orc, made) == 0
        assert orc.set_flow_run_state(second.id, Pending()).status is ACCEPT
        assert orc.set_flow_run_state(second.id, Running()).status is SetStateStatus.WAIT
        clock.advance(30)
        assert orc.set_flow_run_state(second.id, Running()).status is ACCEPT
        assert held(orc, made) == 1


def test_cancel_new_cancels_a_run_submitted_while_the_limit_is_full(orc):
    made = orc.create_deployment("d", concurrency_limit=1, collision_strategy="CANCEL_NEW")
    first = orc.create_flow_run(deployment_id=made.id)
    second = orc.create_flow_run(deployment_id=made.id)
    orc.set_flow_run_state(first.id, Pending())

    result = orc.set_flow_run_state(second.id, Pending())

    assert result.status is REJECT
    assert (result.state.type, result.state.message) == (
        StateType.CANCELLED, "Deployment concurrency limit reached.")
    assert held(orc, made) == 1


def test_a_run_holds_its_slot_through_running_and_cancelling_and_renews_it_at_running(
    memory_database,
):
    clock = FrozenClock()
    with Orchestrator(memory_database, clock=clock) as orc:
        made = orc.create_deployment("d", concurrency_limit=1, grace_period_seconds=600)
        run = orc.create_flow_run(deployment_id=made.id)
        orc.set_flow_run_state(run.id, Pending())
        lease_id = lease_of(orc, run.id)
        (lease,) = orc.read_concurrency_leases(f"deployment:{made.id}")
        assert (lease.lease_id, lease.holder.type, lease.holder.id) == (lease_id, "flow_run", run.id)
        assert lease.expiration == clock() + timedelta(seconds=600)

        clock.advance(500)
        orc.set_flow_run_state(run.id, Running())
        (renewed,) = orc.read_concurrency_leases(f"deployment:{made.id}")
        assert renewed.expiration == clock() + timedelta(seconds=600)
        assert lease_of(orc, run.id) == lease_id

        orc.set_flow_run_state(run.id, "CANCELLING")
        assert held(orc, made) == 1
        orc.set_flow_run_state(run.id, Cancelled())
        assert held(orc, made) == 0
        assert orc.read_concurrency_leases() == []


def test_runs_of_a_deployment_create_deployment_did_not_make_work_as_before(orc):
    unknown = uuid4()
    runs = [orc.create_flow_run(deployment_id=unknown) for _ in range(3)]
    for run in runs:
        assert orc.set_flow_run_state(run.id, Scheduled()).status is ACCEPT
        result = orc.set_flow_run_state(run.id, Pending())
        assert result.status is ACCEPT
        assert result.state.state_details.deployment_concurrency_lease_id is None
        assert orc.set_flow_run_state(run.id, Running()).status is ACCEPT
    assert orc.read_global_concurrency_limits() == []


def test_a_zero_limit_set_through_the_global_limit_aborts_the_submission(orc):
    made = orc.create_deployment("d", concurrency_limit=1)
    orc.update_global_concurrency_limit(f"deployment:{made.id}", limit=0)
    run = orc.create_flow_run(deployment_id=made.id, state=Scheduled())
    result = orc.set_flow_run_state(run.id, Pending())
    assert result.status is ABORT
    assert result.details.reason == (
        "The deployment concurrency limit is 0. The flow will deadlock if submitted again.")


def test_a_slot_lost_while_pending_is_taken_again_at_running_or_the_run_is_cancelled(orc):
    made = orc.create_deployment("d", concurrency_limit=1)
    run = orc.create_flow_run(deployment_id=made.id)
    other = orc.create_flow_run(deployment_id=made.id)
    orc.set_flow_run_state(run.id, Pending())
    orc.release_concurrency_lease(lease_of(orc, run.id))  # as expire_leases would

    kept = orc.set_flow_run_state(run.id, Running())  # a free slot: taken again
    assert kept.status is ACCEPT
    new_lease = kept.state.state_details.deployment_concurrency_lease_id
    assert new_lease is not None and held(orc, made) == 1
    orc.set_flow_run_state(run.id, Completed())
    assert held(orc, made) == 0

    orc.set_flow_run_state(run.id, Pending())  # a manual rerun
    orc.release_concurrency_lease(lease_of(orc, run.id))
    assert orc.set_flow_run_state(other.id, Pending()).status is ACCEPT  # the slot goes elsewhere
    lost = orc.set_flow_run_state(run.id, Running())
    assert lost.status is REJECT
    assert lost.details.reason == "Deployment concurrency limit reached after lease expiry."
    assert lost.state.type is StateType.CANCELLED
    assert held(orc, made) == 1  # the other run's slot stays taken


def test_a_forced_completed_releases_the_slot(orc):
    made = orc.create_deployment("d", concurrency_limit=1)
    run = orc.create_flow_run(deployment_id=made.id)
    orc.set_flow_run_state(run.id, Pending())
    orc.set_flow_run_state(run.id, Running())
    assert orc.set_flow_run_state(run.id, Completed(), force=True).status is ACCEPT
    assert held(orc, made) == 0


# -- deliberate differences from Prefect 3.9.1 (README; conformance quirks/) ---------------------


def test_a_run_releases_only_a_slot_it_holds_not_another_runs(orc):
    """Prefect (quirk flow-dep-over-release-without-lease): a run forced into PENDING holds no
    slot, yet leaving PENDING frees one — another run's — and a third run then runs beside it."""
    made = orc.create_deployment("d", concurrency_limit=1)
    holder, forced, third = (orc.create_flow_run(deployment_id=made.id) for _ in range(3))
    assert orc.set_flow_run_state(holder.id, Pending()).status is ACCEPT
    orc.set_flow_run_state(forced.id, Pending(), force=True)

    assert orc.set_flow_run_state(forced.id, Cancelled()).status is ACCEPT

    assert held(orc, made) == 1  # still the holder's
    result = orc.set_flow_run_state(third.id, Pending())
    assert result.status is REJECT and result.state.name == "AwaitingConcurrencySlot"


def test_a_run_whose_lease_is_gone_frees_no_other_runs_slot_when_it_finishes(orc):
    """Prefect (vector flow-dep-lease-lost-while-running): the run's COMPLETED falls back to a
    plain decrement, taking the slot of the run that took it over."""
    made = orc.create_deployment("d", concurrency_limit=1)
    run, second, third = (orc.create_flow_run(deployment_id=made.id) for _ in range(3))
    orc.set_flow_run_state(run.id, Pending())
    orc.set_flow_run_state(run.id, Running())
    orc.release_concurrency_lease(lease_of(orc, run.id))  # its lease expired and was released
    assert orc.set_flow_run_state(second.id, Pending()).status is ACCEPT

    assert orc.set_flow_run_state(run.id, Completed()).status is ACCEPT

    assert held(orc, made) == 1
    assert orc.set_flow_run_state(third.id, Pending()).status is REJECT


def test_a_retried_run_keeps_using_its_own_slot(orc):
    """Prefect (quirk flow-dep-retry-then-pending-self-blocks): after an automatic retry kept
    the slot, PENDING from AwaitingRetry asks for a second one and, with limit 1, queues
    behind itself."""
    made = orc.create_deployment("d", concurrency_limit=1)
    run = orc.create_flow_run(deployment_id=made.id, empirical_policy={"retries": 1})
    other = orc.create_flow_run(deployment_id=made.id)
    orc.set_flow_run_state(run.id, Pending())
    lease_id = lease_of(orc, run.id)
    orc.set_flow_run_state(run.id, Running())
    retry = orc.set_flow_run_state(run.id, Failed())
    assert (retry.status, retry.state.name) == (REJECT, "AwaitingRetry")
    assert held(orc, made) == 1

    again = orc.set_flow_run_state(run.id, Pending())

    assert again.status is ACCEPT
    assert again.state.state_details.deployment_concurrency_lease_id == lease_id
    assert held(orc, made) == 1
    assert orc.set_flow_run_state(other.id, Pending()).status is REJECT  # the slot is its
    assert orc.set_flow_run_state(run.id, Running()).status is ACCEPT
    orc.set_flow_run_state(run.id, Completed())
    assert held(orc, made) == 0


def test_a_client_proposed_awaiting_retry_gives_the_slot_back(orc):
    made = orc.create_deployment("d", concurrency_limit=1)
    run = orc.create_flow_run(deployment_id=made.id)
    orc.set_flow_run_state(run.id, Pending())
    orc.set_flow_run_state(run.id, Running())
    assert orc.set_flow_run_state(run.id, AwaitingRetry()).status is ACCEPT
    assert held(orc, made) == 0
    assert orc.set_flow_run_state(run.id, Pending()).status is ACCEPT  # takes a new one
    assert held(orc, made) == 1


def test_an_inactive_deployment_limit_restricts_nothing(orc):
    """Prefect (quirk flow-dep-inactive-limit-blocks): an inactive deployment limit can never
    be incremented, so every run is enqueued (while an inactive tag limit is ignored)."""
    made = orc.create_deployment("d", concurrency_limit=1)
    orc.update_global_concurrency_limit(f"deployment:{made.id}", active=False)
    runs = [orc.create_flow_run(deployment_id=made.id, state=Scheduled()) for _ in range(3)]

    for run in runs:
        result = orc.set_flow_run_state(run.id, Pending())
        assert (result.status, result.state.type) == (ACCEPT, StateType.PENDING)
        assert orc.set_flow_run_state(run.id, Running()).status is ACCEPT
    assert held(orc, made) == 0


def test_a_blocking_pause_gives_the_slot_back_and_the_resumed_run_frees_no_other(orc):
    made = orc.create_deployment("d", concurrency_limit=1)
    run = orc.create_flow_run(deployment_id=made.id)
    other = orc.create_flow_run(deployment_id=made.id)
    orc.set_flow_run_state(run.id, Pending())
    orc.set_flow_run_state(run.id, Running())
    orc.set_flow_run_state(run.id, Paused(pause_key="approval"))
    assert held(orc, made) == 0
    assert orc.set_flow_run_state(other.id, Pending()).status is ACCEPT
    assert orc.resume_flow_run(run.id).status is ACCEPT

    orc.set_flow_run_state(run.id, Completed())

    assert held(orc, made) == 1  # the other run's


# -- lease expiry: a crashed holder never keeps a slot for ever ----------------------------------

RUN_HOLDER = """
import sys, time
from flowstate import Orchestrator
from flowstate.states import Pending, Running
with Orchestrator(sys.argv[1]) as orc:
    run = orc.create_flow_run(deployment_id=sys.argv[2])
    orc.set_flow_run_state(run.id, Pending())
    orc.set_flow_run_state(run.id, Running())
    print(run.id, flush=True)
    time.sleep(600)
"""


def test_a_run_killed_with_sigkill_loses_its_deployment_slot_once_its_lease_expires(database):
    import signal
    import subprocess
    import sys
    from datetime import datetime, timezone
    from uuid import UUID

    with Orchestrator(database) as orc:
        made = orc.create_deployment("nightly", concurrency_limit=1, grace_period_seconds=60)
    holder = subprocess.Popen([sys.executable, "-c", RUN_HOLDER, database, str(made.id)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        lost = UUID(holder.stdout.readline().strip())
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    with Orchestrator(database) as orc:
        assert orc.expire_leases() == []  # not expired yet: the dead run's slot stays taken
        waiting = orc.create_flow_run(deployment_id=made.id)
        assert orc.set_flow_run_state(waiting.id, Pending()).state.name == "AwaitingConcurrencySlot"
    later = FrozenClock(datetime.now(timezone.utc) + timedelta(seconds=61))
    with Orchestrator(database, clock=later) as orc:
        [expired] = orc.expire_leases()
        assert (expired.holder.type, expired.holder.id) == ("flow_run", lost)
        assert expired.limits == [f"deployment:{made.id}"]
        assert held(orc, made) == 0
        later.advance(30)  # (the enqueued run was rescheduled 30 s ahead)
        assert orc.set_flow_run_state(waiting.id, Pending()).status is ACCEPT
        # the dead run, found silent, is crashed and gives back nothing more
        [crashed] = orc.mark_lost_runs(timeout=60)
        assert crashed.state.type is StateType.CRASHED
        assert orc.read_flow_run(lost).state_type is StateType.CRASHED
        assert held(orc, made) == 1  # the waiting run's slot


def test_mark_lost_runs_gives_back_the_slots_of_the_runs_it_crashes(memory_database):
    clock = FrozenClock()
    with Orchestrator(memory_database, clock=clock) as orc:
        made = orc.create_deployment("d", concurrency_limit=2, grace_period_seconds=3600)
        silent, alive = (orc.create_flow_run(deployment_id=made.id) for _ in range(2))
        for run in (silent, alive):
            orc.set_flow_run_state(run.id, Pending())
            orc.set_flow_run_state(run.id, Running())
        clock.advance(120)
        orc.heartbeat(alive.id)

        crashed = orc.mark_lost_runs(timeout=60)

        assert [result.state.state_details.flow_run_id for result in crashed] == [silent.id]
        assert held(orc, made) == 1
        [lease] = orc.read_concurrency_leases(f"deployment:{made.id}")
        assert lease.holder.id == alive.id


def test_a_crashed_run_retried_in_process_keeps_its_slot_until_its_lease_expires(memory_database):
    from flowstate.rules import CORE_FLOW, retry_crashed_flows

    clock = FrozenClock()
    policy = CORE_FLOW.insert_before("release_flow_concurrency_slots", retry_crashed_flows)
    with Orchestrator(memory_database, clock=clock, flow_policy=policy) as orc:
        made = orc.create_deployment("d", concurrency_limit=1, grace_period_seconds=60)
        run = orc.create_flow_run(deployment_id=made.id, empirical_policy={"retries": 1})
        orc.set_flow_run_state(run.id, Pending())
        orc.set_flow_run_state(run.id, Running())
        clock.advance(45)
        [result] = orc.mark_lost_runs(timeout=30)
        assert (result.status, result.state.name) == (REJECT, "AwaitingRetry")
        assert held(orc, made) == 1  # kept for the retry
        clock.advance(20)  # nobody renewed it: past the 60 s grace period
        assert len(orc.expire_leases()) == 1
        assert held(orc, made) == 0


def test_deleting_a_run_gives_back_the_slot_it_holds(orc):
    made = orc.create_deployment("d", concurrency_limit=1)
    run, other = (orc.create_flow_run(deployment_id=made.id) for _ in range(2))
    orc.set_flow_run_state(run.id, Pending())
    assert orc.set_flow_run_state(other.id, Pending()).status is REJECT

    orc.delete_flow_run(run.id)

    assert held(orc, made) == 0 and orc.read_concurrency_leases() == []
    assert orc.set_flow_run_state(other.id, Pending()).status is ACCEPT
    with pytest.raises(ObjectNotFound):
        orc.delete_flow_run(run.id)
    assert held(orc, made) == 1


def test_heartbeats_keep_a_long_runs_slot_and_its_silence_lets_it_expire(memory_database):
    clock = FrozenClock()
    with Orchestrator(memory_database, clock=clock) as orc:
        made = orc.create_deployment("d", concurrency_limit=1, grace_period_seconds=60)
        run = orc.create_flow_run(deployment_id=made.id)
        orc.set_flow_run_state(run.id, Pending())
        orc.set_flow_run_state(run.id, Running())
        for _ in range(5):  # 250 s of work, a heartbeat every 50 s
            clock.advance(50)
            orc.heartbeat(run.id)
            assert orc.expire_leases() == []
        assert held(orc, made) == 1
        (lease,) = orc.read_concurrency_leases()
        assert lease.expiration == clock() + timedelta(seconds=60)
        clock.advance(61)  # silent for longer than the grace period
        assert [expired.lease_id for expired in orc.expire_leases()] == [lease.lease_id]
        assert held(orc, made) == 0
        orc.heartbeat(run.id)  # too late: the slot is gone, a heartbeat does not take it back
        assert held(orc, made) == 0

"""Global concurrency limits (Prefect's V2 limits): the calls, slots, rate limits and leases, on
both backends.

Where Prefect 3.9.1 was recorded (``prefect-3.9.1-concurrency.jsonl``, category
``global-concurrency-limit``), a test names the vector it follows and asserts the recorded
answers; the replayer's mapping of Prefect's HTTP codes is ObjectNotFound 404 (410 for a
renewal), ObjectAlreadyExists 409, InvalidState 422, ConcurrencyLimitReached 423.
"""

from __future__ import annotations

import math
import secrets
import multiprocessing
import time
from datetime import timedelta
from uuid import UUID, uuid4

import pytest

from flowstate import (
    ConcurrencyLease,
    ConcurrencyLimitReached,
    GlobalConcurrencyLimit,
    InvalidState,
    ObjectAlreadyExists,
    ObjectNotFound,
    Orchestrator,
)
from flowstate.testing import FrozenClock

SHOWN = ("name", "limit", "active", "active_slots", "slot_decay_per_second")


def shown(limit: GlobalConcurrencyLimit) -> dict[str, object]:
    """The fields the vectors record of a limit."""
    return {field: getattr(limit, field) for field in SHOWN}


def slots(orc: Orchestrator, name: str) -> int:
    return orc.read_global_concurrency_limit(name).active_slots


@pytest.fixture
def orc(open_orchestrator):
    with open_orchestrator() as made:
        yield made


@pytest.fixture
def clock():
    return FrozenClock()


@pytest.fixture
def frozen(open_orchestrator, clock):
    with open_orchestrator(clock=clock) as made:
        yield made


# -- the limits (vectors gcl-create-read, gcl-create-duplicate, gcl-read-update-delete) ---------


def test_create_then_read_gcl_create_read(orc):
    created = orc.create_global_concurrency_limit("db", 5)
    expected = {"name": "db", "limit": 5, "active": True, "active_slots": 0,
                "slot_decay_per_second": 0.0}
    assert shown(created) == expected
    assert shown(orc.read_global_concurrency_limit("db")) == expected
    assert isinstance(created.id, UUID) and created.avg_slot_occupancy_seconds == 2.0


def test_a_taken_name_is_refused_and_the_limit_kept_gcl_create_duplicate(orc):
    orc.create_global_concurrency_limit("db", 5)
    with pytest.raises(ObjectAlreadyExists, match="'db' already exists"):
        orc.create_global_concurrency_limit("db", 2)
    assert orc.read_global_concurrency_limit("db").limit == 5


def test_update_then_delete_gcl_read_update_delete(orc):
    orc.create_global_concurrency_limit("db", 2)
    updated = orc.update_global_concurrency_limit("db", limit=4, active_slots=3)
    assert (updated.limit, updated.active_slots) == (4, 3)
    assert shown(orc.read_global_concurrency_limit("db")) == {
        "name": "db", "limit": 4, "active": True, "active_slots": 3, "slot_decay_per_second": 0.0}
    orc.delete_global_concurrency_limit("db")
    for call in (
        lambda: orc.read_global_concurrency_limit("db"),
        lambda: orc.update_global_concurrency_limit("db", limit=1),
        lambda: orc.delete_global_concurrency_limit("db"),
    ):
        with pytest.raises(ObjectNotFound, match="'db' not found"):
            call()


def test_update_keeps_the_slots_held_unless_told(orc):
    orc.create_global_concurrency_limit("db", 3)
    orc.increment_concurrency_slots(["db"], 2)
    assert orc.update_global_concurrency_limit("db", limit=5).active_slots == 2
    assert orc.update_global_concurrency_limit("db", active=False).active is False
    assert slots(orc, "db") == 2


def test_limits_are_listed_by_name(orc):
    for name in ("b", "a", "c"):
        orc.create_global_concurrency_limit(name, 1)
    assert [limit.name for limit in orc.read_global_concurrency_limits()] == ["a", "b", "c"]


def test_limits_tag_limits_and_deployments_are_listed_in_code_point_order_on_every_backend(orc):
    # (whatever the PostgreSQL server's collation: upper case before lower case)
    names = ["b", "B", "a", "A"]
    for name in names:
        orc.create_global_concurrency_limit(f"g-{name}", 1)
        orc.create_concurrency_limit(f"t-{name}", 1)
        orc.create_deployment(f"d-{name}")
    global_names = [limit.name for limit in orc.read_global_concurrency_limits()]
    assert [name for name in global_names if name.startswith("g-")] == ["g-A", "g-B", "g-a", "g-b"]
    assert [limit.tag for limit in orc.read_concurrency_limits()] == ["t-A", "t-B", "t-a", "t-b"]
    assert [deployment.name for deployment in orc.read_deployments()] == [
        "d-A", "d-B", "d-a", "d-b"
    ]


# -- slots ----------------------------------------------------------------------------------


def test_increment_until_the_limit_is_full_gcl_increment_until_locked(orc):
    orc.create_global_concurrency_limit("db", 3)
    assert orc.increment_concurrency_slots(["db"], 2) == ["db"]
    assert slots(orc, "db") == 2
    assert orc.increment_concurrency_slots(["db"], 1) == ["db"]
    with pytest.raises(ConcurrencyLimitReached) as refused:
        orc.increment_concurrency_slots(["db"], 1)
    assert refused.value.retry_after > 0 and refused.value.limits == ("db",)
    assert slots(orc, "db") == 3


def test_more_slots_than_the_limit_is_invalid_gcl_increment_more_than_limit(orc):
    orc.create_global_concurrency_limit("db", 2)
    with pytest.raises(InvalidState, match="^Slots requested is greater than the limit$"):
        orc.increment_concurrency_slots(["db"], 3)
    assert slots(orc, "db") == 0


def test_several_limits_all_or_none_gcl_increment_several_all_or_none(orc):
    orc.create_global_concurrency_limit("a", 2)
    orc.create_global_concurrency_limit("b", 1)
    assert orc.increment_concurrency_slots(["b"], 1) == ["b"]
    with pytest.raises(ConcurrencyLimitReached) as refused:
        orc.increment_concurrency_slots(["a", "b"], 1)
    assert refused.value.limits == ("b",)
    assert (slots(orc, "a"), slots(orc, "b")) == (0, 1)


def test_a_name_without_a_limit_is_ignored_gcl_increment_unknown_name(orc):
    assert orc.increment_concurrency_slots(["nothing-here"], 1) == []
    assert orc.read_global_concurrency_limits() == []


def test_an_inactive_limit_is_named_but_takes_nothing_gcl_increment_inactive(orc):
    orc.create_global_concurrency_limit("db", 1, active=False)
    assert orc.increment_concurrency_slots(["db"], 1) == ["db"]
    assert orc.increment_concurrency_slots(["db"], 1) == ["db"]
    assert slots(orc, "db") == 0


def test_decrement_clamps_at_zero_and_moves_the_average_occupancy(orc):
    orc.create_global_concurrency_limit("db", 2)
    orc.increment_concurrency_slots("db", 2)
    assert orc.decrement_concurrency_slots(["db"], 1, occupancy_seconds=10.0) == ["db"]
    limit = orc.read_global_concurrency_limit("db")
    assert limit.active_slots == 1
    assert limit.avg_slot_occupancy_seconds == pytest.approx(2.0 + (10.0 - 2.0) / 4)
    orc.decrement_concurrency_slots(["db"], 5)
    assert slots(orc, "db") == 0
    assert orc.decrement_concurrency_slots(["nothing-here"], 1) == []


def test_retry_after_grows_with_the_average_occupancy(orc):
    orc.create_global_concurrency_limit("db", 1)
    orc.increment_concurrency_slots("db", 1)
    with pytest.raises(ConcurrencyLimitReached) as first:
        orc.increment_concurrency_slots("db", 1)
    for _ in range(10):
        orc.decrement_concurrency_slots("db", 1, occupancy_seconds=60)
        orc.increment_concurrency_slots("db", 1)
    with pytest.raises(ConcurrencyLimitReached) as later:
        orc.increment_concurrency_slots("db", 1)
    assert first.value.retry_after == pytest.approx(2.0)
    assert later.value.retry_after > 50


# -- rate limits ----------------------------------------------------------------------------


def test_a_fast_decay_frees_the_slots_by_the_next_call_gcl_rate_limit_fast_decay(orc):
    orc.create_global_concurrency_limit("api", 2, slot_decay_per_second=1_000_000.0)
    assert orc.increment_concurrency_slots(["api"], 2, mode="rate_limit") == ["api"]
    time.sleep(0.001)
    assert slots(orc, "api") == 0
    assert orc.increment_concurrency_slots(["api"], 2, mode="rate_limit") == ["api"]
    time.sleep(0.001)
    assert shown(orc.read_global_concurrency_limit("api")) == {
        "name": "api", "limit": 2, "active": True, "active_slots": 0,
        "slot_decay_per_second": 1_000_000.0}


def test_slots_decay_whole_and_a_started_slot_is_not_lost(frozen, clock):
    # Prefect restarts the decay at every write, so asking every 0.6 s at 1 slot/s would never
    # free a slot; flowstate keeps the fraction already decayed.
    frozen.create_global_concurrency_limit("api", 2, slot_decay_per_second=1.0)
    frozen.increment_concurrency_slots("api", 2, mode="rate_limit")
    clock.advance(0.6)
    with pytest.raises(ConcurrencyLimitReached) as refused:
        frozen.increment_concurrency_slots("api", 1, mode="rate_limit")
    assert refused.value.retry_after == pytest.approx(1.0)
    clock.advance(0.6)  # 1.2 s after the first: one slot decayed
    frozen.increment_concurrency_slots("api", 1, mode="rate_limit")
    assert slots(frozen, "api") == 2
    clock.advance(0.9)  # 2.1 s: the second slot decayed, though the last write was 0.9 s ago
    assert slots(frozen, "api") == 1
    clock.advance(10)
    assert slots(frozen, "api") == 0


def test_a_huge_decay_frees_every_slot_and_a_tiny_one_none(frozen, clock):
    frozen.create_global_concurrency_limit("fast", 2, active_slots=2, slot_decay_per_second=1e308)
    frozen.create_global_concurrency_limit("slow", 2, active_slots=2, slot_decay_per_second=1e-300)
    clock.advance(1000)  # 1e308 slots/s for 1000 s is more than a float holds
    assert slots(frozen, "fast") == 0 and slots(frozen, "slow") == 2
    assert frozen.increment_concurrency_slots("fast", 2, mode="rate_limit") == ["fast"]


def test_rate_limit_mode_needs_decay_and_concurrency_mode_refuses_it(orc):
    orc.create_global_concurrency_limit("db", 2)
    orc.create_global_concurrency_limit("api", 2, slot_decay_per_second=1.0)
    with pytest.raises(InvalidState, match="slot_decay_per_second > 0.*: db"):
        orc.increment_concurrency_slots(["db", "api"], 1, mode="rate_limit")
    with pytest.raises(InvalidState, match="slot_decay_per_second > 0.*api.*rate_limit"):
        orc.increment_concurrency_slots(["api"], 1)
    with pytest.raises(InvalidState, match="rate_limit"):
        orc.increment_concurrency_slots_with_lease(["api"], 1)
    assert (slots(orc, "db"), slots(orc, "api")) == (0, 0)
    assert orc.read_concurrency_leases() == []


def test_a_lease_on_a_rate_limit_gives_no_slot_back_its_slots_free_themselves(frozen, clock):
    # one call per 100 s: a lease taken in rate_limit mode and released (or expired) a second
    # later must not let a second call through at once
    from flowstate.states import Completed, Running

    frozen.create_global_concurrency_limit("api", 1, slot_decay_per_second=0.01)
    released = frozen.increment_concurrency_slots_with_lease("api", 1, mode="rate_limit")
    clock.advance(1)
    frozen.release_concurrency_lease(released.lease_id)
    assert slots(frozen, "api") == 1
    with pytest.raises(ConcurrencyLimitReached) as refused:
        frozen.increment_concurrency_slots("api", 1, mode="rate_limit")
    assert refused.value.retry_after == pytest.approx(100.0)  # (what one slot takes)
    clock.advance(100)
    expired = frozen.increment_concurrency_slots_with_lease(
        "api", 1, mode="rate_limit", lease_duration=60
    )
    clock.advance(61)
    assert [lease.lease_id for lease in frozen.expire_leases()] == [expired.lease_id]
    assert slots(frozen, "api") == 1  # 61 s of 100: not yet decayed

    # a tag limit with decay: a task run leaving RUNNING gives back no slot that decayed
    frozen.create_global_concurrency_limit("tag:x", 1, slot_decay_per_second=1.0)
    flow = frozen.create_flow_run(state=Running())
    first, second, third = (
        frozen.create_task_run(flow_run_id=flow.id, task_key=key, tags=["x"]) for key in "abc"
    )
    assert frozen.set_task_run_state(first.id, Running()).status.value == "ACCEPT"
    clock.advance(1.5)  # first's slot decayed: second may start
    assert frozen.set_task_run_state(second.id, Running()).status.value == "ACCEPT"
    frozen.set_task_run_state(first.id, Completed())
    assert slots(frozen, "tag:x") == 1  # second's slot stays taken
    assert frozen.set_task_run_state(third.id, Running()).status.value == "WAIT"
    clock.advance(1)
    assert frozen.set_task_run_state(third.id, Running()).status.value == "ACCEPT"


# -- leases ---------------------------------------------------------------------------------


def test_lease_lifecycle_gcl_lease_lifecycle(orc):
    orc.create_global_concurrency_limit("db", 2)
    lease = orc.increment_concurrency_slots_with_lease(["db"], 2)
    assert isinstance(lease, ConcurrencyLease) and lease.limits == ["db"] and lease.slots == 2
    assert slots(orc, "db") == 2
    renewed = orc.renew_concurrency_lease(lease.lease_id)
    assert renewed.expiration >= lease.expiration
    with pytest.raises(ConcurrencyLimitReached):
        orc.increment_concurrency_slots(["db"], 1)
    orc.release_concurrency_lease(lease.lease_id)
    assert slots(orc, "db") == 0
    with pytest.raises(ObjectNotFound, match="not found"):
        orc.renew_concurrency_lease(lease.lease_id)
    orc.release_concurrency_lease(lease.lease_id)  # gone: a quiet no-op
    assert shown(orc.read_global_concurrency_limit("db"))["active_slots"] == 0


def test_a_full_limit_gives_no_lease_gcl_lease_locked(orc):
    orc.create_global_concurrency_limit("db", 1)
    orc.increment_concurrency_slots(["db"], 1)
    with pytest.raises(ConcurrencyLimitReached):
        orc.increment_concurrency_slots_with_lease(["db"], 1)
    assert orc.read_concurrency_leases() == [] and slots(orc, "db") == 1


def test_a_lease_shorter_than_a_minute_is_invalid_gcl_lease_too_short(orc):
    orc.create_global_concurrency_limit("db", 1)
    with pytest.raises(InvalidState, match="lease_duration=10"):
        orc.increment_concurrency_slots_with_lease(["db"], 1, lease_duration=10)
    lease = orc.increment_concurrency_slots_with_lease(["db"], 1)
    for seconds in (59, 86401, float("nan"), "300"):
        with pytest.raises(InvalidState, match="lease_duration"):
            orc.renew_concurrency_lease(lease.lease_id, seconds)
    assert slots(orc, "db") == 1 and len(orc.read_concurrency_leases()) == 1


def test_deleting_a_limit_keeps_its_leases_gcl_delete_with_lease(orc):
    orc.create_global_concurrency_limit("db", 2)
    lease = orc.increment_concurrency_slots_with_lease(["db"], 1)
    orc.delete_global_concurrency_limit("db")
    assert orc.renew_concurrency_lease(lease.lease_id).limits == []
    orc.release_concurrency_lease(lease.lease_id)
    with pytest.raises(ObjectNotFound):
        orc.renew_concurrency_lease(lease.lease_id)
    # a new limit of the same name is not the old one: nothing of it is released
    orc.create_global_concurrency_limit("db", 2, active_slots=1)
    orc.release_concurrency_lease(lease.lease_id)
    assert slots(orc, "db") == 1


def test_leases_list_their_holders_and_limits(orc):
    orc.create_global_concurrency_limit("a", 2)
    orc.create_global_concurrency_limit("b", 2)
    run = uuid4()
    both = orc.increment_concurrency_slots_with_lease(
        ["b", "a"], 1, holder={"type": "task_run", "id": str(run)})
    only_a = orc.increment_concurrency_slots_with_lease("a", 1)
    assert both.limits == ["a", "b"]
    assert both.holder is not None and (both.holder.type, both.holder.id) == ("task_run", run)
    assert [lease.lease_id for lease in orc.read_concurrency_leases("a")] == [
        both.lease_id, only_a.lease_id]
    assert [lease.lease_id for lease in orc.read_concurrency_leases("b")] == [both.lease_id]
    with pytest.raises(ObjectNotFound):
        orc.read_concurrency_leases("c")


def test_a_lease_gives_back_its_slots_even_after_the_limit_was_deactivated(orc):
    # Prefect releases only on active limits: a slot taken before a deactivation stays
    # counted after the reactivation. flowstate's slots follow their holders.
    orc.create_global_concurrency_limit("db", 2)
    lease = orc.increment_concurrency_slots_with_lease("db", 1)
    orc.update_global_concurrency_limit("db", active=False)
    orc.release_concurrency_lease(lease.lease_id)
    assert orc.update_global_concurrency_limit("db", active=True).active_slots == 0
    # and a lease taken while the limit was inactive gives back nothing it did not take
    orc.update_global_concurrency_limit("db", active=False)
    idle = orc.increment_concurrency_slots_with_lease("db", 1)
    orc.update_global_concurrency_limit("db", active=True)
    orc.increment_concurrency_slots("db", 2)
    orc.release_concurrency_lease(idle.lease_id)
    assert slots(orc, "db") == 2


def test_reset_empties_a_limit_and_its_holders(orc):
    orc.create_global_concurrency_limit("a", 2)
    orc.create_global_concurrency_limit("b", 2)
    only_a = orc.increment_concurrency_slots_with_lease("a", 1)
    both = orc.increment_concurrency_slots_with_lease(["a", "b"], 1)
    assert orc.reset_global_concurrency_limit("a").active_slots == 0
    assert orc.read_concurrency_leases("a") == []
    assert [lease.limits for lease in orc.read_concurrency_leases()] == [["b"]]
    orc.increment_concurrency_slots("a", 1)
    orc.release_concurrency_lease(only_a.lease_id)
    orc.release_concurrency_lease(both.lease_id)
    assert (slots(orc, "a"), slots(orc, "b")) == (1, 0)


def test_leases_survive_a_restart(database):
    with Orchestrator(database) as first:
        first.create_global_concurrency_limit("db", 1)
        lease = first.increment_concurrency_slots_with_lease("db", 1)
    with Orchestrator(database) as second:
        assert [kept.lease_id for kept in second.read_concurrency_leases("db")] == [lease.lease_id]
        with pytest.raises(ConcurrencyLimitReached):
            second.increment_concurrency_slots("db", 1)
        second.renew_concurrency_lease(lease.lease_id)
        second.release_concurrency_lease(lease.lease_id)
        assert slots(second, "db") == 0


# -- expiry ---------------------------------------------------------------------------------


def test_expire_leases_gives_back_what_was_not_renewed(frozen, clock):
    frozen.create_global_concurrency_limit("db", 3)
    crashed = frozen.increment_concurrency_slots_with_lease("db", 2, lease_duration=60)
    alive = frozen.increment_concurrency_slots_with_lease("db", 1, lease_duration=60)
    clock.advance(50)
    frozen.renew_concurrency_lease(alive.lease_id, 60)
    clock.advance(5)
    assert frozen.expire_leases() == []  # both are within their time still
    clock.advance(6)  # 61 s after the first was taken: it expired
    expired = frozen.expire_leases()
    assert [lease.lease_id for lease in expired] == [crashed.lease_id]
    assert slots(frozen, "db") == 1
    assert [lease.lease_id for lease in frozen.read_concurrency_leases()] == [alive.lease_id]
    with pytest.raises(ObjectNotFound):
        frozen.renew_concurrency_lease(crashed.lease_id)
    assert frozen.expire_leases() == []
    # an expired lease nobody released yet still renews (as in Prefect)
    clock.advance(120)
    frozen.renew_concurrency_lease(alive.lease_id)
    assert frozen.expire_leases() == [] and slots(frozen, "db") == 1


def test_expiry_counts_the_occupancy_until_the_lease_expired(frozen, clock):
    frozen.create_global_concurrency_limit("db", 1)
    frozen.increment_concurrency_slots_with_lease("db", 1, lease_duration=60)
    clock.advance(days=30)
    frozen.expire_leases()
    average = frozen.read_global_concurrency_limit("db").avg_slot_occupancy_seconds
    assert average == pytest.approx(2.0 + (60.0 - 2.0) / 2)


def test_expire_leases_at_a_given_time(orc):
    orc.create_global_concurrency_limit("db", 1)
    lease = orc.increment_concurrency_slots_with_lease("db", 1, lease_duration=60)
    assert orc.expire_leases(now=lease.created + timedelta(seconds=59)) == []
    assert len(orc.expire_leases(now=lease.expiration + timedelta(seconds=1))) == 1
    assert slots(orc, "db") == 0


# -- bad input: a FlowstateError naming the field, nothing written ------------------------------


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("db", -1), "limit=-1"),
        (("db", 1.5), "limit=1.5"),
        (("db", True), "limit=True"),
        (("", 1), "name must not be empty"),
        ((7, 1), "name must be a str"),
        (("a\x00b", 1), "NUL"),
        (("\ud800", 1), "lone surrogate"),
        (("db", 2**63), "limit=9223372036854775808; expected a whole number from 0 to 2\\*\\*63-1"),
        (("db", 10**30), "limit=10{30}"),
    ],
)
def test_bad_limits_are_refused(orc, arguments, message):
    with pytest.raises(InvalidState, match=message):
        orc.create_global_concurrency_limit(*arguments)
    assert orc.read_global_concurrency_limits() == []


NAMED = {
    "global": lambda orc, name: orc.create_global_concurrency_limit(name, 1).name,
    "tag": lambda orc, name: orc.create_concurrency_limit(name[len("tag:"):], 1).tag,
    "deployment": lambda orc, name: orc.create_deployment(name).name,
}


@pytest.mark.parametrize("kind", NAMED)
def test_a_name_of_up_to_2000_bytes_is_taken_and_a_longer_one_refused_on_every_store(
    orc, kind
):
    # (random hex: PostgreSQL cannot compress it into its index, which holds ~2700 bytes)
    create = NAMED[kind]
    longest = "tag:" + secrets.token_hex(998) if kind == "tag" else secrets.token_hex(1000)
    assert len(create(orc, longest)) in (1996, 2000)
    for name in ("tag:" + secrets.token_hex(1000), "tag:" + "\u00e9" * 999):  # 2004, 2002 bytes
        with pytest.raises(InvalidState, match="at most 2000 bytes"):
            create(orc, name)
    assert len(orc.read_global_concurrency_limits()) == (0 if kind == "deployment" else 1)
    assert len(orc.read_deployments()) == (1 if kind == "deployment" else 0)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"active_slots": -1}, "active_slots=-1"),
        ({"slot_decay_per_second": -0.5}, "slot_decay_per_second=-0.5"),
        ({"slot_decay_per_second": math.inf}, "slot_decay_per_second=inf"),
        ({"slot_decay_per_second": 10**400}, "slot_decay_per_second=10{39}; expected"),
        ({"active": "yes"}, "active='yes'"),
        ({"active_slots": 2**63}, "active_slots=9223372036854775808"),
    ],
)
def test_bad_fields_are_refused_on_create_and_update(orc, options, message):
    with pytest.raises(InvalidState, match=message):
        orc.create_global_concurrency_limit("db", 1, **options)
    orc.create_global_concurrency_limit("db", 1)
    with pytest.raises(InvalidState, match=message):
        orc.update_global_concurrency_limit("db", **options)
    assert shown(orc.read_global_concurrency_limit("db")) == {
        "name": "db", "limit": 1, "active": True, "active_slots": 0, "slot_decay_per_second": 0.0}


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda orc: orc.increment_concurrency_slots([], 1), "at least one"),
        (lambda orc: orc.increment_concurrency_slots(None, 1), "names must be"),
        (lambda orc: orc.increment_concurrency_slots(["db", 3], 1), "names must be a str"),
        (lambda orc: orc.increment_concurrency_slots("db", 0), "slots=0"),
        (lambda orc: orc.increment_concurrency_slots("db", -2), "slots=-2"),
        (lambda orc: orc.increment_concurrency_slots("db", 1, mode="fast"), "mode='fast'"),
        (lambda orc: orc.decrement_concurrency_slots("db", 0), "slots=0"),
        (lambda orc: orc.decrement_concurrency_slots("db", 1, occupancy_seconds=-1),
         "occupancy_seconds=-1"),
        (lambda orc: orc.decrement_concurrency_slots("db", 1, occupancy_seconds=10**400),
         "occupancy_seconds=10{39}; expected"),
        (lambda orc: orc.increment_concurrency_slots_with_lease("db", 1, lease_duration=10**400),
         "lease_duration=10{39}; expected"),
        (lambda orc: orc.increment_concurrency_slots_with_lease("db", 1, holder={"type": "x"}),
         "holder="),
        (lambda orc: orc.increment_concurrency_slots_with_lease(
            "db", 1, holder={"type": "robot", "id": str(uuid4())}), "holder type 'robot'"),
        (lambda orc: orc.increment_concurrency_slots_with_lease(
            "db", 1, holder={"type": "task_run", "id": "nope"}), "holder id"),
        (lambda orc: orc.renew_concurrency_lease("not-a-lease"), "lease_id"),
        (lambda orc: orc.release_concurrency_lease(42), "lease_id"),
    ],
)
def test_bad_slot_and_lease_arguments_are_refused(orc, call, message):
    orc.create_global_concurrency_limit("db", 2, active_slots=1)
    with pytest.raises(InvalidState, match=message):
        call(orc)
    assert slots(orc, "db") == 1 and orc.read_concurrency_leases() == []


def test_unknown_names_and_gone_leases(orc):
    for call in (
        lambda: orc.read_global_concurrency_limit("nope"),
        lambda: orc.update_global_concurrency_limit("nope", limit=1),
        lambda: orc.delete_global_concurrency_limit("nope"),
        lambda: orc.reset_global_concurrency_limit("nope"),
        lambda: orc.read_concurrency_leases("nope"),
        lambda: orc.renew_concurrency_lease(uuid4()),
    ):
        with pytest.raises(ObjectNotFound):
            call()
    orc.release_concurrency_lease(uuid4())  # nothing to release: no error
    assert orc.read_global_concurrency_limits() == []


# -- two processes never both win a slot --------------------------------------------------------


def _hold_and_log(database: str, rounds: int, barrier, queue) -> None:
    """Take a slot of "db" ``rounds`` times; log when each hold surely began and ended
    (time.monotonic is one clock for every process of the machine)."""
    held = []
    with Orchestrator(database) as orc:
        barrier.wait(timeout=60)
        for _ in range(rounds):
            while True:
                try:
                    lease = orc.increment_concurrency_slots_with_lease("db", 1)
                    break
                except ConcurrencyLimitReached:
                    time.sleep(0.002)
            began = time.monotonic()
            time.sleep(0.005)
            ended = time.monotonic()
            orc.release_concurrency_lease(lease.lease_id)
            held.append((began, ended))
    queue.put(held)


def test_processes_racing_for_a_limit_of_two_never_hold_three(database):
    with Orchestrator(database) as orc:
        orc.create_global_concurrency_limit("db", 2)
    ctx = multiprocessing.get_context("spawn")
    workers, rounds = 4, 15
    queue, barrier = ctx.Queue(), ctx.Barrier(workers)
    processes = [
        ctx.Process(target=_hold_and_log, args=(database, rounds, barrier, queue))
        for _ in range(workers)
    ]
    for process in processes:
        process.start()
    holds = [hold for _ in processes for hold in queue.get(timeout=120)]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    assert len(holds) == workers * rounds
    events = sorted([(began, 1) for began, _ in holds] + [(ended, -1) for _, ended in holds],
                    key=lambda event: (event[0], event[1]))
    held, most = 0, 0
    for _, change in events:
        held += change
        most = max(most, held)
    assert most <= 2
    with Orchestrator(database) as orc:
        assert slots(orc, "db") == 0 and orc.read_concurrency_leases() == []


# -- long lists of names, tags and leases --------------------------------------------------------


def test_a_task_run_with_more_tags_than_a_statement_takes_parameters_runs_on_every_store(orc):
    """PostgreSQL takes at most 65535 parameters a statement, SQLite before 3.32 at most 999
    (set here on SQLite): the tags of a task run, the names of a call and the leases read are
    looked up in parts."""
    import sqlite3

    from flowstate.states import Completed, Running

    if isinstance(getattr(orc._store, "conn", None), sqlite3.Connection):
        orc._store.conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)
    tags = [f"t{n}" for n in range(66_000)]
    orc.create_concurrency_limit("t7", 1)
    orc.create_concurrency_limit("t65999", 2)
    flow = orc.create_flow_run(state=Running())
    run = orc.create_task_run(flow_run_id=flow.id, task_key="many", tags=tags)
    other = orc.create_task_run(flow_run_id=flow.id, task_key="other", tags=["t7"])

    assert orc.set_task_run_state(run.id, Running()).status.value == "ACCEPT"
    assert (slots(orc, "tag:t7"), slots(orc, "tag:t65999")) == (1, 1)
    assert orc.set_task_run_state(other.id, Running()).status.value == "WAIT"
    assert orc.set_task_run_state(run.id, Completed()).status.value == "ACCEPT"
    assert (slots(orc, "tag:t7"), slots(orc, "tag:t65999")) == (0, 0)

    names = [f"tag:{tag}" for tag in tags]
    assert orc.increment_concurrency_slots(names, 1) == ["tag:t7", "tag:t65999"]
    assert orc.decrement_concurrency_slots(names, 1) == ["tag:t7", "tag:t65999"]
    leases = [orc.increment_concurrency_slots_with_lease("none", 1) for _ in range(1000)]
    assert len(orc.read_concurrency_leases()) == 1000
    for lease in leases[:2]:
        orc.release_concurrency_lease(lease.lease_id)
    after_all = orc.read_concurrency_leases()[-1].expiration + timedelta(seconds=1)
    assert len(orc.expire_leases(now=after_all)) == 998

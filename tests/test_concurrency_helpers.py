"""``orc.concurrency(...)`` and ``orc.rate_limit(...)``: waiting with the orchestrator's sleep
and clock, holding a renewed lease for the block, releasing it however the block ends; and
their async forms."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from flowstate import (
    AsyncOrchestrator,
    InvalidState,
    ObjectNotFound,
    Orchestrator,
    WaitTimeout,
)
from flowstate.concurrency.holding import LeaseKeeper
from flowstate.testing import FrozenClock


class Sleeps:
    """A sleep for the orchestrator: advances the FrozenClock, records each nap, and runs
    ``then(count)`` after each (e.g. to let another holder go)."""

    def __init__(self, clock: FrozenClock) -> None:
        self.clock = clock
        self.naps: list[float] = []
        self.then = lambda count: None

    def __call__(self, seconds: float) -> None:
        self.naps.append(seconds)
        self.clock.advance(seconds)
        self.then(len(self.naps))


@pytest.fixture
def clock():
    return FrozenClock()


@pytest.fixture
def sleeps(clock):
    return Sleeps(clock)


@pytest.fixture
def orc(database, clock, sleeps):
    with Orchestrator(database, clock=clock, sleep=sleeps) as made:
        yield made


def held(orc: Orchestrator, name: str) -> int:
    return orc.read_global_concurrency_limit(name).active_slots


def test_the_block_holds_a_lease_and_leaving_releases_it(orc, sleeps):
    orc.create_global_concurrency_limit("warehouse", 2)
    with orc.concurrency("warehouse", occupy=2, timeout=30) as slots:
        assert held(orc, "warehouse") == 2
        assert slots.lease is not None and slots.lease.limits == ["warehouse"]
        assert [lease.lease_id for lease in orc.read_concurrency_leases()] == [slots.lease.lease_id]
    assert held(orc, "warehouse") == 0 and orc.read_concurrency_leases() == []
    assert sleeps.naps == []


def test_entering_waits_retry_after_at_a_time_until_a_slot_is_free(orc, sleeps):
    orc.create_global_concurrency_limit("warehouse", 1)
    other = orc.increment_concurrency_slots_with_lease("warehouse", 1)
    sleeps.then = lambda count: count == 3 and orc.release_concurrency_lease(other.lease_id)
    with orc.concurrency("warehouse", timeout=30):
        assert held(orc, "warehouse") == 1
    assert sleeps.naps == [2.0, 2.0, 2.0]  # the limit's average occupancy: 2 s for one slot
    assert held(orc, "warehouse") == 0


def test_a_timeout_on_the_orchestrators_clock_ends_the_wait(orc, sleeps, clock):
    orc.create_global_concurrency_limit("warehouse", 1, active_slots=1)
    start = clock.now
    with pytest.raises(WaitTimeout, match="'warehouse' within 5 s"):
        with orc.concurrency("warehouse", timeout=5):
            pytest.fail("the block ran without a slot")
    assert (clock.now - start).total_seconds() == pytest.approx(5.0)
    assert sleeps.naps == [2.0, 2.0, 1.0]
    assert held(orc, "warehouse") == 1 and orc.read_concurrency_leases() == []
    with pytest.raises(WaitTimeout):
        with orc.concurrency("warehouse", timeout=0):
            pass
    assert len(sleeps.naps) == 3  # timeout=0: one attempt, no wait


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
def test_an_exception_or_ctrl_c_in_the_block_releases_the_slots(orc, error):
    orc.create_global_concurrency_limit("warehouse", 1)
    with pytest.raises(type(error)):
        with orc.concurrency("warehouse"):
            assert held(orc, "warehouse") == 1
            raise error
    assert held(orc, "warehouse") == 0 and orc.read_concurrency_leases() == []


def test_an_interrupt_right_after_the_slots_were_taken_gives_them_back(orc, monkeypatch):
    orc.create_global_concurrency_limit("warehouse", 1)

    def interrupted(self) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(LeaseKeeper, "start", interrupted)
    with pytest.raises(KeyboardInterrupt):
        with orc.concurrency("warehouse"):
            pytest.fail("the block ran")
    assert held(orc, "warehouse") == 0 and orc.read_concurrency_leases() == []


def test_entering_the_same_block_again_before_leaving_it_is_refused(orc):
    orc.create_global_concurrency_limit("warehouse", 2)
    block = orc.concurrency("warehouse")
    with block:
        with pytest.raises(InvalidState, match="already entered"):
            with block:
                pytest.fail("the block was entered twice")
        assert held(orc, "warehouse") == 1
    assert held(orc, "warehouse") == 0 and orc.read_concurrency_leases() == []
    with block:  # entered again once left: a new lease
        assert held(orc, "warehouse") == 1
    assert held(orc, "warehouse") == 0
    assert not [t for t in threading.enumerate() if t.name.startswith("flowstate-lease")]


def test_a_long_retry_after_is_asked_again_within_a_minute(orc, sleeps):
    orc.create_global_concurrency_limit("slow", 1, active_slots=1, slot_decay_per_second=1e-300)
    orc.create_global_concurrency_limit("db", 1, active_slots=1)
    orc.decrement_concurrency_slots("db", 1, occupancy_seconds=1e308)  # a huge average occupancy
    orc.increment_concurrency_slots("db", 1)
    sleeps.then = lambda count: count == 2 and orc.reset_global_concurrency_limit("slow")
    assert orc.rate_limit("slow") == ["slow"]  # retry_after: 1e300 s
    sleeps.then = lambda count: count == 4 and orc.reset_global_concurrency_limit("db")
    with orc.concurrency("db"):
        pass
    assert sleeps.naps == [60.0] * 4


def test_occupying_more_than_the_limit_fails_at_once(orc, sleeps):
    orc.create_global_concurrency_limit("warehouse", 2)
    with pytest.raises(InvalidState, match="Slots requested is greater than the limit"):
        with orc.concurrency("warehouse", occupy=3):
            pass
    assert sleeps.naps == [] and held(orc, "warehouse") == 0


def test_a_crashed_holders_expired_lease_is_reaped_by_the_waiter(orc, sleeps, clock):
    orc.create_global_concurrency_limit("warehouse", 1)
    orc.increment_concurrency_slots_with_lease("warehouse", 1, lease_duration=60)  # then it died
    clock.advance(61)
    with orc.concurrency("warehouse", timeout=0):
        assert held(orc, "warehouse") == 1
    assert sleeps.naps == []


def test_names_without_a_limit_are_ignored_unless_strict(orc):
    orc.create_global_concurrency_limit("warehouse", 1)
    with orc.concurrency(["warehouse", "nothing-here"]) as slots:
        assert slots.lease is not None and slots.lease.limits == ["warehouse"]
    with pytest.raises(ObjectNotFound, match="'nothing-here'"):
        with orc.concurrency(["warehouse", "nothing-here"], strict=True):
            pass
    assert held(orc, "warehouse") == 0 and orc.read_concurrency_leases() == []


def test_bad_arguments_fail_before_anything_is_taken(orc):
    orc.create_global_concurrency_limit("warehouse", 1)
    for call, message in (
        (lambda: orc.concurrency("warehouse", occupy=0), "occupy=0"),
        (lambda: orc.concurrency("warehouse", timeout=-1), "timeout=-1"),
        (lambda: orc.concurrency("warehouse", lease_duration=5), "lease_duration=5"),
        (lambda: orc.concurrency([], 1), "at least one"),
        (lambda: orc.rate_limit("warehouse", occupy=True), "occupy=True"),
        (lambda: orc.concurrency("warehouse", occupy=2**64), "occupy=18446744073709551616"),
        (lambda: orc.concurrency("warehouse", timeout=1e12), "timeout=1000000000000.0"),
        (lambda: orc.rate_limit("warehouse", timeout=1e300), "timeout=1e\\+300"),
        (lambda: orc.rate_limit("warehouse", timeout=10**400), "timeout=10{39}; expected"),
        (lambda: orc.concurrency("warehouse", strict="no"), "strict='no'; expected True or False"),
        (lambda: orc.rate_limit("warehouse", strict=1), "strict=1; expected True or False"),
    ):
        with pytest.raises(InvalidState, match=message):
            call()
    assert held(orc, "warehouse") == 0


def test_waiting_inside_a_transaction_block_is_refused(orc):
    orc.create_global_concurrency_limit("warehouse", 1)
    with orc.transaction():
        with pytest.raises(InvalidState, match="transaction"):
            with orc.concurrency("warehouse"):
                pass
        with pytest.raises(InvalidState, match="transaction"):
            orc.rate_limit("warehouse")
    assert held(orc, "warehouse") == 0


def test_the_lease_is_renewed_in_the_background_while_the_block_runs(orc):
    orc.create_global_concurrency_limit("warehouse", 1)
    slots = orc.concurrency("warehouse", lease_duration=90)
    with slots:
        keeper = slots._keeper
        assert keeper is not None and keeper.interval == pytest.approx(30.0)
        assert keeper._thread.is_alive()
    assert not keeper._thread.is_alive()


def test_the_keeper_renews_and_notices_a_lost_lease(orc):
    orc.create_global_concurrency_limit("warehouse", 1)
    lease = orc.increment_concurrency_slots_with_lease("warehouse", 1)
    renewed = threading.Event()

    def renew() -> None:
        orc.renew_concurrency_lease(lease.lease_id)
        renewed.set()

    keeper = LeaseKeeper(renew, 0.01, "warehouse")
    keeper.start()
    assert renewed.wait(10)
    orc.release_concurrency_lease(lease.lease_id)  # as if it had expired and been reaped
    deadline = time.monotonic() + 10
    while not keeper.lost and time.monotonic() < deadline:
        time.sleep(0.01)
    keeper.stop()
    assert keeper.lost and keeper.renewals >= 1


# -- rate limits ----------------------------------------------------------------------------


def test_rate_limit_waits_for_slots_to_decay(orc, sleeps):
    orc.create_global_concurrency_limit("api", 2, slot_decay_per_second=1.0)
    assert orc.rate_limit("api", occupy=2) == ["api"]
    assert orc.rate_limit("api") == ["api"]
    assert sleeps.naps == [1.0]
    with pytest.raises(WaitTimeout):
        orc.rate_limit("api", occupy=2, timeout=0.5)
    assert sleeps.naps == [1.0, 0.5]


def test_rate_limit_is_also_a_with_block_as_the_api_contract_writes_it(
    orc, database, clock, sleeps
):
    orc.create_global_concurrency_limit("api", 1, slot_decay_per_second=1.0)
    with orc.rate_limit("api", occupy=1) as taken:  # waits, takes the slot, then runs the block
        assert taken == ["api"] and held(orc, "api") == 1
    assert held(orc, "api") == 1 and sleeps.naps == []  # the slot frees itself, as it decays
    with orc.rate_limit("api"):
        pass
    assert sleeps.naps == [1.0]

    async def main():
        async with AsyncOrchestrator(database, clock=clock, sleep=sleeps) as aorc:
            await aorc.create_global_concurrency_limit("rate", 1, slot_decay_per_second=1.0)
            with await aorc.rate_limit("rate") as taken:
                return taken

    assert asyncio.run(main()) == ["rate"]


def test_the_timeout_may_be_given_third_as_the_api_contract_writes_it(orc, sleeps, clock):
    orc.create_global_concurrency_limit("warehouse", 1)
    orc.create_global_concurrency_limit("api", 1, slot_decay_per_second=0.001)
    orc.increment_concurrency_slots("warehouse", 1)
    with pytest.raises(WaitTimeout):
        with orc.concurrency("warehouse", 1, 5):
            pass
    assert orc.rate_limit("api", 1, 5) == ["api"]
    with pytest.raises(WaitTimeout):
        orc.rate_limit("api", 1, 5)

    async def main():
        async with AsyncOrchestrator(":memory:", clock=clock, sleep=sleeps) as aorc:
            await aorc.create_global_concurrency_limit("warehouse", 1)
            async with aorc.concurrency("warehouse", 1, 5) as slots:
                return slots.lease is not None

    assert asyncio.run(main())


def test_rate_limit_needs_a_decaying_limit(orc, sleeps):
    orc.create_global_concurrency_limit("db", 2)
    with pytest.raises(InvalidState, match="slot_decay_per_second > 0"):
        orc.rate_limit("db")
    orc.create_global_concurrency_limit("api", 1, slot_decay_per_second=1.0)
    with pytest.raises(InvalidState, match="use mode='rate_limit'"):
        with orc.concurrency("api"):
            pass
    assert sleeps.naps == [] and held(orc, "db") == 0 and held(orc, "api") == 0


# -- async forms ----------------------------------------------------------------------------


def test_async_concurrency_holds_waits_and_releases(database, clock, sleeps):
    async def main() -> None:
        async with AsyncOrchestrator(database, clock=clock, sleep=sleeps) as orc:
            await orc.create_global_concurrency_limit("warehouse", 1)
            other = await orc.increment_concurrency_slots_with_lease("warehouse", 1)

            def release(count: int) -> None:
                if count == 2:  # (in the engine's thread, between two attempts)
                    orc._opened_orchestrator().release_concurrency_lease(other.lease_id)

            sleeps.then = release
            async with orc.concurrency("warehouse", timeout=30) as slots:
                assert slots.lease is not None
                assert (await orc.read_global_concurrency_limit("warehouse")).active_slots == 1
            assert sleeps.naps == [2.0, 2.0]
            assert (await orc.read_global_concurrency_limit("warehouse")).active_slots == 0

            started = asyncio.Event()

            async def holder() -> None:
                async with orc.concurrency("warehouse"):
                    started.set()
                    await asyncio.sleep(60)

            task = asyncio.ensure_future(holder())
            await started.wait()
            assert (await orc.read_global_concurrency_limit("warehouse")).active_slots == 1
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert (await orc.read_global_concurrency_limit("warehouse")).active_slots == 0
            assert await orc.read_concurrency_leases() == []

            await orc.create_global_concurrency_limit("api", 1, slot_decay_per_second=1.0)
            assert await orc.rate_limit("api") == ["api"]
            assert await orc.rate_limit("api") == ["api"]
            assert sleeps.naps[-1] == 1.0
            with pytest.raises(ObjectNotFound):
                async with orc.concurrency("nothing-here", strict=True):
                    pass

            block = orc.concurrency("warehouse")
            async with block:
                with pytest.raises(InvalidState, match="already entered"):
                    async with block:
                        pytest.fail("the block was entered twice")
            assert (await orc.read_global_concurrency_limit("warehouse")).active_slots == 0
            assert await orc.read_concurrency_leases() == []

    asyncio.run(main())


def test_async_slots_given_back_while_another_task_has_a_block_open_stay_given_back(database):
    """Leaving ``async with orc.concurrency(...)`` while another task's ``async with
    orc.transaction()`` is open waits for that block, as every call does: the release is not
    made inside the other block, whose rollback undid it and left the slot taken (until its
    lease expired) before."""
    from flowstate.states import Pending, Scheduled

    async def main() -> None:
        async with AsyncOrchestrator(database) as orc:
            await orc.create_global_concurrency_limit("warehouse", 1)
            run = await orc.create_flow_run(state=Scheduled())
            holding, block_open = asyncio.Event(), asyncio.Event()

            async def holder() -> None:
                async with orc.concurrency("warehouse"):
                    holding.set()
                    await block_open.wait()

            async def failing_block() -> None:
                await holding.wait()
                with pytest.raises(RuntimeError):
                    async with orc.transaction():
                        await orc.set_flow_run_state(run.id, Pending())
                        block_open.set()
                        for _ in range(100):  # the holder leaves its block meanwhile
                            await asyncio.sleep(0)
                        await orc.read_concurrency_leases()
                        raise RuntimeError("the block fails")

            async with asyncio.timeout(60):  # (a hang guard)
                await asyncio.gather(holder(), failing_block())
            assert (await orc.read_global_concurrency_limit("warehouse")).active_slots == 0
            assert await orc.read_concurrency_leases() == []
            assert (await orc.read_flow_run(run.id)).state_type.value == "SCHEDULED"

    asyncio.run(main())


# -- a holder killed with SIGKILL -------------------------------------------------------------

HOLDER = """
import sys, time
from flowstate import Orchestrator
with Orchestrator(sys.argv[1]) as orc:
    with orc.concurrency("warehouse", lease_duration=60):
        print("holding", flush=True)
        time.sleep(600)
"""


def test_a_holder_killed_with_sigkill_loses_its_slot_once_its_lease_expires(database):
    import signal
    import subprocess
    import sys
    from datetime import datetime, timedelta, timezone

    from flowstate import ConcurrencyLimitReached

    with Orchestrator(database) as orc:
        orc.create_global_concurrency_limit("warehouse", 1)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, database], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "holding\n"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    with Orchestrator(database) as orc:
        assert orc.expire_leases() == []  # not expired yet: the slot stays taken
        with pytest.raises(ConcurrencyLimitReached):
            orc.increment_concurrency_slots("warehouse", 1)
    later = FrozenClock(datetime.now(timezone.utc) + timedelta(seconds=61))
    with Orchestrator(database, clock=later) as orc:
        [expired] = orc.expire_leases()
        assert expired.limits == ["warehouse"]
        with orc.concurrency("warehouse", timeout=0):
            assert held(orc, "warehouse") == 1
        assert held(orc, "warehouse") == 0

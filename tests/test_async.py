"""AsyncOrchestrator: the sync engine's calls as coroutines, cancellation, blocks, listeners.

No async test plugin is used: each test drives its coroutine with ``asyncio.run``. The races,
random cancellations and lock waits on both backends are in ``tests/reliability/test_async.py``.
"""

from __future__ import annotations

import asyncio
import inspect
import queue
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

import flowstate
from flowstate import (
    AsyncOrchestrator,
    DatabaseError,
    InvalidState,
    ObjectNotFound,
    Orchestrator,
    SetStateStatus,
    StateType,
)
from flowstate.aio import AsyncSubscription
from flowstate.states import Completed, Paused, Pending, Running, Scheduled
from flowstate.testing import FrozenClock

NOT_COROUTINES = {
    "transaction": "an async context manager",
    "add_listener": "no I/O: registers at once",
    "subscribe": "an async iterator",
    "iter_due_flow_runs": "an async generator",
    "receive_input": "an async iterator",
    "concurrency": "an async context manager",
}


def public_methods(cls: type) -> dict[str, Any]:
    return {
        name: member
        for name, member in inspect.getmembers(cls)
        if not name.startswith("_") and inspect.isfunction(member)
    }


def parameters(function: Any) -> list[tuple[str, Any, Any]]:
    """Names, kinds and defaults, without ``self`` (annotations may say ``asyncio.Event``)."""
    params = list(inspect.signature(function).parameters.values())[1:]
    return [(p.name, p.kind, p.default) for p in params]


def test_every_public_orchestrator_method_has_an_async_twin_with_the_same_parameters():
    sync = public_methods(Orchestrator)
    twins = public_methods(flowstate.AsyncOrchestrator)
    assert len(sync) > 20
    missing = sorted(set(sync) - set(twins))
    assert missing == [], f"Orchestrator methods without an AsyncOrchestrator twin: {missing}"
    for name, method in sync.items():
        twin = twins[name]
        assert parameters(twin) == parameters(method), name
        if name in NOT_COROUTINES:
            continue
        assert inspect.iscoroutinefunction(twin), f"AsyncOrchestrator.{name} is not a coroutine"
    for name in ("database", "listener_errors", "flow_policy", "task_policy"):
        assert hasattr(AsyncOrchestrator, name)
    assert parameters(AsyncOrchestrator.__init__) == parameters(Orchestrator.__init__)


def test_the_twins_without_a_coroutine_have_their_async_forms():
    assert inspect.isasyncgenfunction(AsyncOrchestrator.iter_due_flow_runs)

    async def main() -> None:
        async with AsyncOrchestrator(":memory:") as orc:
            assert hasattr(orc.transaction(), "__aenter__")
            with orc.subscribe() as events:  # a plain ``with`` closes it too
                assert hasattr(events, "__aiter__")
            assert events.closed

    asyncio.run(main())


def test_calls_return_the_sync_engines_models_and_raise_its_errors():
    async def main() -> None:
        async with AsyncOrchestrator(":memory:") as orc:
            run = await orc.create_flow_run(flow_name="etl", state=Scheduled())
            assert isinstance(run, flowstate.FlowRun) and run.state_type is StateType.SCHEDULED
            assert (await orc.set_flow_run_state(run.id, Pending())).status is SetStateStatus.ACCEPT
            again = await orc.set_flow_run_state(run.id, Pending())
            assert again.status is SetStateStatus.ABORT
            assert "PENDING state" in (again.details.reason or "")
            await orc.set_flow_run_state(run.id, Running())
            await orc.set_flow_run_state(run.id, Paused(pause_key="k"))
            assert (await orc.resume_flow_run(run.id)).state.type is StateType.RUNNING
            history = [s.name for s in await orc.read_flow_run_states(run.id)]
            assert history == ["Scheduled", "Pending", "Running", "Paused", "Running"]
            task = await orc.create_task_run(flow_run_id=run.id, state=Running())
            await orc.set_task_run_state(task.id, Completed())
            assert (await orc.read_task_run(task.id)).state_type is StateType.COMPLETED
            await orc.create_flow_run_input(run.id, "answer", '"yes"')
            assert await orc.read_flow_run_input(run.id, "answer") == '"yes"'
            with pytest.raises(InvalidState):
                await orc.set_flow_run_state("not-a-uuid", Pending())
            with pytest.raises(ObjectNotFound):
                await orc.read_flow_run("00000000-0000-0000-0000-000000000000")
            assert orc.database == ":memory:"
            assert orc.flow_policy is not None and orc.task_policy is not None

    asyncio.run(main())


def test_an_async_orchestrator_shares_the_database_with_a_sync_one(tmp_path: Path):
    path = tmp_path / "shared.db"
    with Orchestrator(path) as sync:
        run = sync.create_flow_run(state=Scheduled())

        async def main() -> None:
            async with AsyncOrchestrator(path) as orc:
                assert (await orc.set_flow_run_state(run.id, Pending())).status.value == "ACCEPT"

        asyncio.run(main())
        assert sync.read_flow_run(run.id).state_type is StateType.PENDING


def test_one_orchestrator_serves_one_event_loop_after_another():
    orc = AsyncOrchestrator(":memory:")
    run = asyncio.run(orc.create_flow_run(state=Scheduled()))
    assert asyncio.run(orc.set_flow_run_state(run.id, Pending())).status.value == "ACCEPT"
    asyncio.run(orc.close())


def test_a_database_that_cannot_be_opened_raises_from_open_and_from_every_call(tmp_path: Path):
    bad = tmp_path / "missing-folder" / "x.db"

    async def main() -> None:
        orc = AsyncOrchestrator(bad)
        with pytest.raises(DatabaseError, match="missing-folder"):
            await orc.open()
        with pytest.raises(DatabaseError, match="missing-folder"):
            await orc.create_flow_run()
        with pytest.raises(DatabaseError):
            orc.database
        orc._shutdown()

    asyncio.run(main())


def test_calls_on_a_database_that_could_not_open_do_not_pile_up_one_traceback(tmp_path: Path):
    """Each call raises what opening raised (same type, message and cause), but not the one
    stored object again and again, whose traceback grew by the raising frames on every call
    (a retry loop while a server is down grew it without end)."""

    def length(exc: BaseException) -> int:
        tb, count = exc.__traceback__, 0
        while tb is not None:
            tb, count = tb.tb_next, count + 1
        return count

    async def main() -> None:
        orc = AsyncOrchestrator(tmp_path / "missing-folder" / "x.db")
        lengths = []
        for _ in range(20):
            with pytest.raises(DatabaseError, match="missing-folder") as caught:
                await orc.read_flow_runs()
            lengths.append(length(caught.value))
        assert lengths == [lengths[0]] * 20
        orc._shutdown()

    asyncio.run(main())


def test_an_orchestrator_dropped_without_close_stops_its_thread_and_closes_its_database(
    tmp_path: Path,
):
    import gc

    async def main() -> threading.Thread:
        orc = await AsyncOrchestrator(tmp_path / "dropped.db").open()
        await orc.create_flow_run()
        return orc._worker._thread

    thread = asyncio.run(main())
    gc.collect()
    thread.join(timeout=30)
    assert not thread.is_alive()
    with Orchestrator(tmp_path / "dropped.db") as orc:
        assert len(orc.read_flow_runs()) == 1


def test_bad_options_raise_the_sync_engines_typed_error():
    async def main() -> None:
        with pytest.raises(InvalidState, match="synchronous"):
            async with AsyncOrchestrator(":memory:", synchronous="SOMETIMES"):  # type: ignore[arg-type]
                pass
        with pytest.raises(InvalidState, match="call_timeout"):
            async with AsyncOrchestrator(":memory:", call_timeout=0):
                pass

    asyncio.run(main())


def test_the_orchestrators_thread_has_ended_when_close_returns():
    """No thread is left behind once ``await orc.close()`` (or ``async with``) returns, also
    for a second close after one that was cancelled."""

    def flowstate_threads() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "flowstate-async"]

    async def main() -> None:
        async with AsyncOrchestrator(":memory:") as orc:
            await orc.create_flow_run()
            thread = orc._worker._thread
        assert not thread.is_alive()
        orc = await AsyncOrchestrator(":memory:").open()
        closing = asyncio.create_task(orc.close())
        await asyncio.sleep(0)
        closing.cancel()
        await asyncio.gather(closing, return_exceptions=True)
        await orc.close()
        assert not orc._worker._thread.is_alive()
        assert [t for t in flowstate_threads() if t not in before] == []

    before = flowstate_threads()
    asyncio.run(main())


def test_calls_after_close_raise_database_error_at_once():
    async def main() -> None:
        orc = AsyncOrchestrator(":memory:")
        run = await orc.create_flow_run()
        await orc.close()
        await orc.close()  # twice is fine
        with pytest.raises(DatabaseError, match="closed"):
            await orc.read_flow_run(run.id)
        with pytest.raises(InvalidState):  # input is still checked first, as in the sync engine
            await orc.read_flow_run("nope")

    asyncio.run(main())


# -- cancellation -------------------------------------------------------------------------------


class GatedClock:
    """A clock that makes the worker thread wait (inside a call) while the gate is closed."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def __call__(self) -> datetime:
        self.entered.set()
        self.gate.wait(30)
        return datetime.now(timezone.utc)

    def close_gate(self) -> None:
        self.entered.clear()
        self.gate.clear()


async def until(condition: Any) -> None:
    while not condition():
        await asyncio.sleep(0.001)


def notes(exc: BaseException) -> str:
    return " ".join(getattr(exc, "__notes__", []))


def test_a_cancelled_call_that_had_not_started_does_nothing():
    clock = GatedClock()

    async def main() -> None:
        async with AsyncOrchestrator(":memory:", clock=clock) as orc:
            run = await orc.create_flow_run(state=Scheduled())
            clock.close_gate()
            first = asyncio.create_task(orc.read_flow_run(run.id))  # holds the worker
            await until(clock.entered.is_set)
            second = asyncio.create_task(orc.set_flow_run_state(run.id, Pending()))
            await asyncio.sleep(0.01)
            second.cancel()
            with pytest.raises(asyncio.CancelledError) as caught:
                await second
            assert "before it started: it did nothing" in notes(caught.value)
            clock.gate.set()
            await first
            assert (await orc.read_flow_run(run.id)).state_type is StateType.SCHEDULED

    asyncio.run(main())


def test_a_cancelled_call_that_had_started_commits_whole_before_the_cancellation_goes_on():
    clock = GatedClock()

    async def main() -> None:
        async with AsyncOrchestrator(":memory:", clock=clock) as orc:
            told: list[StateType] = []
            orc.add_listener(lambda event: told.append(event.state.type))
            run = await orc.create_flow_run(state=Scheduled())
            clock.close_gate()
            call = asyncio.create_task(orc.set_flow_run_state(run.id, Pending()))
            await until(clock.entered.is_set)  # the call is inside its transaction
            call.cancel()
            await asyncio.sleep(0.02)
            assert not call.done()  # it waits for the call to end
            clock.gate.set()
            with pytest.raises(asyncio.CancelledError) as caught:
                await call
            assert "returned ACCEPT (committed)" in notes(caught.value)
            assert told == [StateType.SCHEDULED, StateType.PENDING]  # its listeners ran
            assert (await orc.read_flow_run(run.id)).state_type is StateType.PENDING

    asyncio.run(main())


def test_a_timeout_behaves_as_a_cancellation():
    clock = GatedClock()

    async def main() -> None:
        async with AsyncOrchestrator(":memory:", clock=clock) as orc:
            run = await orc.create_flow_run(state=Scheduled())
            clock.close_gate()
            threading.Timer(0.1, clock.gate.set).start()
            with pytest.raises(TimeoutError) as caught:
                async with asyncio.timeout(0.02):
                    await orc.set_flow_run_state(run.id, Pending())
            # (the cancellation is the cause; Python 3.11.2 leaves it the context only)
            cancellation = caught.value.__cause__ or caught.value.__context__
            assert "(committed)" in notes(cancellation)  # type: ignore[arg-type]
            assert (await orc.read_flow_run(run.id)).state_type is StateType.PENDING

    asyncio.run(main())


def test_a_call_after_a_cancelled_close_waits_in_the_orchestrators_thread_not_on_the_loop():
    """close() cancelled while another call holds the orchestrator's thread: a later call
    raises DatabaseError once the thread is done, and the event loop runs meanwhile (before,
    the call ran in the loop's thread and blocked it on the database's lock)."""
    clock = GatedClock()

    async def main() -> None:
        orc = await AsyncOrchestrator(":memory:", clock=clock).open()
        run = await orc.create_flow_run(state=Scheduled())
        clock.close_gate()
        slow = asyncio.create_task(orc.set_flow_run_state(run.id, Pending()))
        await until(clock.entered.is_set)
        closing = asyncio.create_task(orc.close())
        await asyncio.sleep(0)  # close() queues its job behind the slow call
        closing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await closing
        loop_ran = threading.Event()

        def open_the_gate() -> None:
            loop_ran.wait(20)  # (a hang guard: set at once unless the loop is blocked)
            clock.gate.set()

        threading.Thread(target=open_the_gate).start()
        after = asyncio.create_task(orc.read_flow_run(run.id))
        asyncio.get_running_loop().call_soon(loop_ran.set)
        await asyncio.sleep(0)
        gate_was_closed_when_the_loop_ran = not clock.gate.is_set()
        with pytest.raises(DatabaseError, match="closed"):
            await after
        assert gate_was_closed_when_the_loop_ran
        assert (await slow).status is SetStateStatus.ACCEPT

    asyncio.run(main())


def test_a_call_after_a_close_cancelled_while_opening_raises_database_error(tmp_path: Path):
    """The database is still opening (another connection holds the lock its schema needs) when
    close() is cancelled: a call made then raises DatabaseError, not AssertionError."""
    import sqlite3

    path = tmp_path / "opening.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")

    async def main() -> None:
        orc = AsyncOrchestrator(path)
        closing = asyncio.create_task(orc.close())
        await asyncio.sleep(0)  # close() queues its job while the thread opens the database
        closing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await closing
        call = asyncio.create_task(orc.read_flow_runs())
        await asyncio.sleep(0)
        holder.execute("ROLLBACK")  # opening goes on
        with pytest.raises(DatabaseError, match="closed"):
            await call
        await orc.close()

    try:
        asyncio.run(main())
    finally:
        holder.close()


def test_closing_inside_ones_own_block_makes_leaving_it_raise_database_error_as_in_sync(
    tmp_path: Path,
):
    """``await orc.close()`` inside ``async with orc.transaction()``: leaving the block raises
    DatabaseError (closed) and nothing of it is kept, as with the sync Orchestrator (before:
    RuntimeError: cannot release un-acquired lock)."""

    def sync(path: Path) -> None:
        orc = Orchestrator(path)
        run = orc.create_flow_run(state=Scheduled())
        with pytest.raises(DatabaseError, match="closed"):
            with orc.transaction():
                orc.set_flow_run_state(run.id, Pending())
                orc.close()

    async def main(path: Path) -> None:
        orc = AsyncOrchestrator(path)
        run = await orc.create_flow_run(state=Scheduled())
        with pytest.raises(DatabaseError, match="closed"):
            async with orc.transaction():
                await orc.set_flow_run_state(run.id, Pending())
                await orc.close()
        with pytest.raises(DatabaseError, match="closed"):
            await orc.read_flow_run(run.id)

    for kind in ("sync", "async"):
        path = tmp_path / f"{kind}.db"
        sync(path) if kind == "sync" else asyncio.run(main(path))
        with Orchestrator(path) as orc:
            (run,) = orc.read_flow_runs()
            assert run.state_type is StateType.SCHEDULED, kind


def test_cancelling_inside_a_transaction_block_rolls_the_whole_block_back():
    async def main() -> None:
        async with AsyncOrchestrator(":memory:") as orc:
            run = await orc.create_flow_run(state=Scheduled())
            entered = asyncio.Event()

            async def block() -> None:
                async with orc.transaction():
                    await orc.set_flow_run_state(run.id, Pending())
                    await orc.set_flow_run_state(run.id, Running())
                    entered.set()
                    await asyncio.sleep(30)

            task = asyncio.create_task(block())
            await entered.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert [s.type for s in await orc.read_flow_run_states(run.id)] == [StateType.SCHEDULED]
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.05):
                    async with orc.transaction():
                        await orc.set_flow_run_state(run.id, Pending())
                        await asyncio.sleep(30)
            assert (await orc.read_flow_run(run.id)).state_type is StateType.SCHEDULED
            async with orc.transaction():
                await orc.set_flow_run_state(run.id, Pending())
            assert (await orc.read_flow_run(run.id)).state_type is StateType.PENDING

    asyncio.run(main())


def test_a_cancellation_while_a_block_commits_waits_for_the_commit_and_says_so():
    clock = GatedClock()

    async def main() -> None:
        async with AsyncOrchestrator(":memory:", clock=clock) as orc:
            run = await orc.create_flow_run(state=Scheduled())
            clock.close_gate()
            done = threading.Event()

            async def block() -> None:
                async with orc.transaction():
                    await orc.set_flow_run_state(run.id, Pending())
                done.set()

            task = asyncio.create_task(block())
            await until(clock.entered.is_set)
            task.cancel()  # lands in the call inside the block: the block rolls back
            clock.gate.set()
            with pytest.raises(asyncio.CancelledError) as caught:
                await task
            assert "kept only if the transaction block around it commits" in notes(caught.value)
            assert (await orc.read_flow_run(run.id)).state_type is StateType.SCHEDULED

    asyncio.run(main())


def test_other_tasks_wait_while_a_block_is_open_and_nested_blocks_are_savepoints():
    async def main() -> None:
        async with AsyncOrchestrator(":memory:") as orc:
            run = await orc.create_flow_run(state=Scheduled())
            seen_by_other: list[Any] = []
            inside = asyncio.Event()

            async def other() -> None:
                await inside.wait()
                seen_by_other.append((await orc.read_flow_run(run.id)).state_type)

            other_task = asyncio.create_task(other())
            async with orc.transaction():
                await orc.set_flow_run_state(run.id, Pending())
                inside.set()
                await asyncio.sleep(0.02)
                assert seen_by_other == []  # the other task's read waits for the block
                with pytest.raises(ValueError):
                    async with orc.transaction():
                        await orc.set_flow_run_state(run.id, Running())
                        raise ValueError("undo the nested block only")
                assert (await orc.read_flow_run(run.id)).state_type is StateType.PENDING
            await other_task
            assert seen_by_other == [StateType.PENDING]

    asyncio.run(main())


def test_one_block_object_entered_again_in_its_task_nests_and_commits(tmp_path: Path):
    """``tx = orc.transaction()`` entered again inside itself nests as a second block would,
    as with the sync engine: leaving both commits the outer block. Before, the second entry
    overwrote the first's, the outer block was never ended, and everything after it (to the
    close, which rolled it back) was lost. Leaving it where it is not open is InvalidState."""
    path = tmp_path / "reentered.db"

    async def main() -> None:
        async with AsyncOrchestrator(path) as orc:
            run = await orc.create_flow_run(state=Scheduled())
            tx = orc.transaction()
            async with tx:
                await orc.set_flow_run_state(run.id, Pending())
                with pytest.raises(ValueError):
                    async with tx:
                        await orc.set_flow_run_state(run.id, Running())
                        raise ValueError("undo the nested entry only")
                async with tx:
                    pass
            await orc.create_flow_run(state=Scheduled())
            with pytest.raises(InvalidState, match="not open in this task"):
                await tx.__aexit__(None, None, None)
            async with tx:
                with pytest.raises(InvalidState, match="not open in this task"):
                    await asyncio.ensure_future(tx.__aexit__(None, None, None))

    asyncio.run(main())
    with Orchestrator(path) as orc:
        runs = orc.read_flow_runs()
        assert len(runs) == 2
        states = {str(run.id): run.state_type for run in runs}
        assert sorted(states.values()) == [StateType.PENDING, StateType.SCHEDULED]


def test_a_block_that_cannot_begin_raises_the_sync_engines_error(tmp_path: Path):
    """Another connection holds the write lock past busy_timeout: ``async with
    orc.transaction()`` raises DatabaseBusy, as ``with orc.transaction()`` does (not an
    AttributeError from undoing a transaction that never began), and the next block works."""
    import sqlite3

    path = tmp_path / "locked.db"
    Orchestrator(path).close()
    holder = sqlite3.connect(path, isolation_level=None)

    async def main() -> None:
        async with AsyncOrchestrator(path, busy_timeout=0.05) as orc:
            holder.execute("BEGIN IMMEDIATE")
            with pytest.raises(flowstate.DatabaseBusy):
                async with orc.transaction():
                    pytest.fail("the block ran without the lock")
            holder.execute("ROLLBACK")
            async with orc.transaction():
                run = await orc.create_flow_run(state=Scheduled())
            assert (await orc.read_flow_run(run.id)).state_type is StateType.SCHEDULED

    try:
        asyncio.run(main())
    finally:
        holder.close()
    with Orchestrator(path, busy_timeout=0.05) as sync:
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(flowstate.DatabaseBusy):
            with sync.transaction():
                pass
        holder.close()


def test_a_call_from_another_event_loop_waits_for_a_block_then_runs_and_wakes_subscribers():
    """One orchestrator used from a second event loop in another thread while this loop has a
    block open: the other loop's call waits for the block and then runs (before, it waited
    for ever: the block's end woke only this loop), and a subscriber here is woken by the
    other loop's call (before, it slept until its timeout)."""
    orc = AsyncOrchestrator(":memory:")
    answers: list[Any] = []

    def in_another_loop(make: Any) -> threading.Thread:
        def run() -> None:
            try:
                answers.append(asyncio.run(make()))
            except BaseException as exc:  # (the test below reports it)
                answers.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    async def read_runs() -> int:
        return len(await orc.read_flow_runs())

    async def create_run() -> Any:
        return (await orc.create_flow_run(state=Scheduled())).id

    async def main() -> None:
        async with orc.transaction():
            await orc.create_flow_run(state=Scheduled())
            other = in_another_loop(read_runs)
            for _ in range(100):
                await asyncio.sleep(0)
            assert answers == []  # it waits for the block
        await asyncio.to_thread(other.join, 20)  # (a hang guard)
        assert answers == [1]
        events = orc.subscribe()
        getter = asyncio.create_task(events.get(timeout=20))  # (a hang guard)
        await asyncio.sleep(0)
        creator = in_another_loop(create_run)
        event = await getter
        await asyncio.to_thread(creator.join, 20)  # (its answer comes after the event)
        assert event.run_id == answers[1]
        await orc.close()

    asyncio.run(main())


# -- listeners and subscriptions ------------------------------------------------------------------


def test_coroutine_listeners_are_awaited_after_the_commit_and_their_failures_kept():
    async def main() -> None:
        async with AsyncOrchestrator(":memory:") as orc:
            told: list[tuple[str, StateType]] = []

            async def slow(event: Any) -> None:
                await asyncio.sleep(0.01)
                told.append(("slow", event.state.type))

            async def broken(event: Any) -> None:
                raise RuntimeError("listener bug")

            orc.add_listener(slow)
            remove = orc.add_listener(broken)
            orc.add_listener(lambda event: told.append(("plain", event.state.type)))
            run = await orc.create_flow_run(state=Scheduled())
            assert told == [("slow", StateType.SCHEDULED), ("plain", StateType.SCHEDULED)]
            result = await orc.set_flow_run_state(run.id, Pending())
            assert result.status is SetStateStatus.ACCEPT
            assert [type(e).__name__ for _, _, e in orc.listener_errors] == ["RuntimeError"] * 2
            remove()
            await orc.set_flow_run_state(run.id, Running())
            assert len(orc.listener_errors) == 2
            async with orc.transaction():
                await orc.set_flow_run_state(run.id, Completed())
                assert told[-1] == ("plain", StateType.RUNNING)  # not yet: the block is open
            assert told[-1] == ("plain", StateType.COMPLETED)

    asyncio.run(main())


def test_a_listener_whose_call_returns_a_coroutine_is_awaited_even_with_no_coroutine_function():
    """An object with ``async def __call__`` and a lambda returning a coroutine are awaited
    whether or not a coroutine function is registered beside them (no "never awaited")."""

    class Notifier:
        def __init__(self) -> None:
            self.told: list[str] = []

        async def __call__(self, event: Any) -> None:
            await asyncio.sleep(0)
            self.told.append(event.state.name)

    async def post(told: list[str], event: Any) -> None:
        await asyncio.sleep(0)
        told.append(event.state.name)

    async def main(with_a_coroutine_function: bool) -> tuple[list[str], list[str]]:
        async with AsyncOrchestrator(":memory:") as orc:
            notifier, posted = Notifier(), []
            orc.add_listener(notifier)
            orc.add_listener(lambda event: post(posted, event))
            if with_a_coroutine_function:
                async def nothing(event: Any) -> None:
                    pass

                orc.add_listener(nothing)
            run = await orc.create_flow_run(state=Scheduled())
            await orc.set_flow_run_state(run.id, Pending())
            assert orc.listener_errors == []
            return notifier.told, posted

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "coroutine ... was never awaited" would fail the test
        for with_a_coroutine_function in (True, False):
            told, posted = asyncio.run(main(with_a_coroutine_function))
            assert told == posted == ["Scheduled", "Pending"], with_a_coroutine_function


def test_a_listener_that_raises_cancelled_error_of_its_own_is_a_listener_failure():
    """A coroutine listener whose own await is cancelled (the caller is not) fails like any
    listener: kept in listener_errors, the next listeners told, the call returns. Before, the
    call raised CancelledError (without its note) for a committed transition and the next
    listeners were not told."""

    async def main() -> None:
        async with AsyncOrchestrator(":memory:") as orc:
            told: list[str] = []

            async def awaits_a_cancelled_future(event: Any) -> None:
                future = asyncio.get_running_loop().create_future()
                future.cancel()
                await future

            async def next_listener(event: Any) -> None:
                told.append(event.state.name)

            orc.add_listener(awaits_a_cancelled_future)
            orc.add_listener(next_listener)
            run = await orc.create_flow_run(state=Scheduled())
            assert run.state_type is StateType.SCHEDULED
            assert told == ["Scheduled"]
            assert [type(e).__name__ for _, _, e in orc.listener_errors] == ["CancelledError"]
            assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]

    asyncio.run(main())


def test_a_listener_may_make_calls_itself():
    async def main() -> None:
        async with AsyncOrchestrator(":memory:") as orc:
            async def start_when_pending(event: Any) -> None:
                if event.state.type is StateType.PENDING:
                    await orc.set_flow_run_state(event.run_id, Running())

            orc.add_listener(start_when_pending)
            run = await orc.create_flow_run(state=Scheduled())
            await orc.set_flow_run_state(run.id, Pending())
            assert (await orc.read_flow_run(run.id)).state_type is StateType.RUNNING
            other = await orc.create_flow_run(state=Scheduled())
            async with asyncio.timeout(20):  # the listener's call must not wait for the block
                async with orc.transaction():
                    await orc.set_flow_run_state(other.id, Pending())
            assert (await orc.read_flow_run(other.id)).state_type is StateType.RUNNING

    asyncio.run(main())


def test_subscribe_is_an_async_iterator_of_committed_transitions_in_order():
    async def main() -> None:
        async with AsyncOrchestrator(":memory:") as orc:
            events = orc.subscribe()
            received: list[tuple[str, StateType]] = []

            async def consume() -> None:
                async for event in events:
                    received.append((str(event.run_id), event.state.type))

            consumer = asyncio.create_task(consume())
            runs = [await orc.create_flow_run() for _ in range(4)]
            expected = []

            async def drive(run_id: Any) -> None:
                for state in (Scheduled, Pending, Running, Completed):
                    await orc.set_flow_run_state(run_id, state())

            await asyncio.gather(*(drive(run.id) for run in runs))
            async with orc.transaction():
                await orc.set_flow_run_state(runs[0].id, Running(), force=True)
                raise_later = False
            assert not raise_later
            await asyncio.sleep(0.01)
            events.close()
            await consumer
            for run in runs:
                mine = [t for r, t in received if r == str(run.id)]
                expected = [StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING,
                            StateType.COMPLETED]
                if run is runs[0]:
                    expected.append(StateType.RUNNING)
                assert mine == expected
            with pytest.raises(queue.Empty):
                await events.get()

    asyncio.run(main())


def test_a_full_subscription_drops_its_oldest_event_and_never_holds_a_caller_back():
    async def main() -> None:
        async with AsyncOrchestrator(":memory:") as orc:
            events: AsyncSubscription = orc.subscribe(maxsize=2)
            run = await orc.create_flow_run(state=Scheduled())
            for state in (Pending(), Running(), Completed()):  # nobody reads meanwhile
                result = await asyncio.wait_for(orc.set_flow_run_state(run.id, state), 5)
                assert result.status is SetStateStatus.ACCEPT
            assert events.dropped == 2  # SCHEDULED and PENDING made room for the newer two
            assert [e.state.type for e in events.pending()] == [
                StateType.RUNNING,
                StateType.COMPLETED,
            ]
            with pytest.raises(queue.Empty):
                await events.get(timeout=0.01)  # an empty, open subscription times out

    asyncio.run(main())


@pytest.mark.parametrize("maxsize", [-1, 1.5, True, "2"])
def test_a_bad_maxsize_is_an_invalid_state_as_in_the_sync_engine(maxsize: object):
    async def main() -> None:
        async with AsyncOrchestrator(":memory:") as orc:
            with pytest.raises(InvalidState, match="maxsize"):
                orc.subscribe(maxsize=maxsize)  # type: ignore[arg-type]

    asyncio.run(main())


def test_iter_due_flow_runs_claims_due_runs_until_stopped():
    async def main() -> None:
        async with AsyncOrchestrator(":memory:") as orc:
            runs = [await orc.create_flow_run(state=Scheduled()) for _ in range(3)]
            stop = asyncio.Event()
            claimed = []
            async for run in orc.iter_due_flow_runs(poll_interval=0.01, worker="w", stop=stop):
                claimed.append(run.id)
                if len(claimed) == 3:
                    stop.set()
            assert claimed == [run.id for run in runs]
            assert {r.state_type for r in await orc.read_flow_runs()} == {StateType.PENDING}

    asyncio.run(main())


@pytest.mark.parametrize(
    "arguments",
    [{"poll_interval": float("nan")}, {"poll_interval": -1}, {"limit": 0}, {"worker": 5}],
    ids=repr,
)
def test_iter_due_flow_runs_refuses_bad_arguments_before_it_claims_anything(arguments):
    """A negative poll interval made the loop spin without sleeping, and NaN failed inside
    asyncio; each is an InvalidState at the first step, before any claim."""

    async def main() -> None:
        async with AsyncOrchestrator(":memory:") as orc:
            run = await orc.create_flow_run(state=Scheduled())
            with pytest.raises(InvalidState, match=f"^{next(iter(arguments))}"):
                async for _ in orc.iter_due_flow_runs(**arguments):
                    break
            assert (await orc.read_flow_run(run.id)).state.name == "Scheduled"

    asyncio.run(main())


# -- the pytest fixture -------------------------------------------------------------------------------


def test_the_async_orchestrator_fixture_is_in_memory_on_the_frozen_clock(
    async_orchestrator: AsyncOrchestrator, frozen_clock: FrozenClock
):
    async def main() -> None:
        run = await async_orchestrator.create_flow_run(state=Scheduled())
        frozen_clock.advance(60)
        await async_orchestrator.set_flow_run_state(run.id, Pending())
        history = await async_orchestrator.read_flow_run_states(run.id)
        assert (history[1].timestamp - history[0].timestamp).total_seconds() == 60
        assert async_orchestrator.database == ":memory:"

    asyncio.run(main())


# -- human in the loop --------------------------------------------------------------------------------


def test_wait_for_resume_waits_on_the_loop_while_other_calls_go_on():
    async def main() -> None:
        async with AsyncOrchestrator(":memory:") as orc:
            run = await orc.create_flow_run(state=Running())
            paused = await orc.pause_flow_run(run.id, key="approval", wait_for_input=bool)
            assert paused.status is SetStateStatus.ACCEPT
            waiting = asyncio.create_task(
                orc.wait_for_resume(run.id, key="approval", model=bool, poll_interval=0.01)
            )
            ticks = 0
            async with asyncio.timeout(20):
                while ticks < 10:  # the loop goes on, and so do other calls (the thread is free)
                    await asyncio.sleep(0.01)
                    await orc.read_flow_run(run.id)
                    assert not waiting.done()
                    ticks += 1
            resumed = await orc.resume_flow_run(run.id, run_input={"value": True})
            assert resumed.status is SetStateStatus.ACCEPT
            assert await waiting is True
            assert await orc.read_pause_input(run.id, key="approval", model=bool) is True

    asyncio.run(main())


def test_wait_for_resume_raises_the_sync_engines_typed_errors(
    async_orchestrator: AsyncOrchestrator,
):
    async def main() -> None:
        orc = async_orchestrator
        run = await orc.create_flow_run(state=Running())
        await orc.pause_flow_run(run.id, key="k", timeout=None)
        with pytest.raises(flowstate.WaitTimeout):  # on the frozen clock: no real sleep
            await orc.wait_for_resume(run.id, key="k", timeout=3600, poll_interval=60)
        await orc.set_flow_run_state(run.id, flowstate.states.Cancelled(), force=True)
        with pytest.raises(flowstate.RunNotResumed):
            await orc.wait_for_resume(run.id, key="k")
        with pytest.raises(InvalidState):
            await orc.wait_for_resume(run.id, key="k", poll_interval=0)
        with pytest.raises(TypeError):
            await orc.wait_for_resume(run.id, "k")  # type: ignore[misc]

    asyncio.run(main())


def test_receive_input_is_an_async_iterator_in_the_order_sent():
    async def main() -> None:
        async with AsyncOrchestrator(":memory:") as orc:
            run = await orc.create_flow_run(state=Running())
            sender = await orc.create_flow_run(state=Running())
            await orc.send_input(run.id, "first", sender=sender.id)
            got = []

            async def receive() -> None:
                async for value in orc.receive_input(run.id, str, timeout=0.3, poll_interval=0.01):
                    got.append(value)

            receiving = asyncio.create_task(receive())
            await asyncio.sleep(0.05)
            await orc.send_input(run.id, "second")
            await receiving  # ends 0.3 s after the last input
            assert got == ["first", "second"]
            seen: set[str] = set()
            with_meta = [
                item async for item in orc.receive_input(
                    run.id, str, timeout=0, exclude_keys=seen, with_metadata=True
                )
            ]
            assert [m.value for m in with_meta] == ["first", "second"] and len(seen) == 2
            assert with_meta[0].metadata.sender == f"prefect.flow-run.{sender.id}"
            with pytest.raises(ObjectNotFound):
                async for _ in orc.receive_input("00000000-0000-0000-0000-000000000000", str):
                    pass

    asyncio.run(main())

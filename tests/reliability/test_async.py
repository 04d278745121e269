"""AsyncOrchestrator under load, on both backends: coroutines racing for the same runs, calls
cancelled at random moments, and a call waiting for another process's lock while the event
loop goes on."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from flowstate import AsyncOrchestrator, Orchestrator, SetStateStatus, StateType
from flowstate.states import Pending, Running, Scheduled, State

from tests.backends import is_postgres_url
from tests.reliability._checks import assert_database_consistent

ORCHESTRATORS = 4


def scheduled_runs(database: str, count: int) -> list[str]:
    with Orchestrator(database) as orc:
        return [str(orc.create_flow_run(state=Scheduled()).id) for _ in range(count)]


def test_500_coroutines_racing_for_50_scheduled_runs_have_exactly_one_winner_each(database: str):
    run_ids = scheduled_runs(database, 50)
    rng = random.Random(22)

    async def contender(orc: AsyncOrchestrator, runs: list[str]) -> list[tuple[str, str]]:
        return [(run_id, (await orc.set_flow_run_state(run_id, Pending())).status.value)
                for run_id in runs]

    async def main() -> list[tuple[str, str]]:
        # several orchestrators (threads, connections) so that the database decides the race too
        orcs = [await AsyncOrchestrator(database).open() for _ in range(ORCHESTRATORS)]
        try:
            jobs = [contender(orcs[i % ORCHESTRATORS], rng.sample(run_ids, 3)) for i in range(500)]
            return [outcome for outcomes in await asyncio.gather(*jobs) for outcome in outcomes]
        finally:
            for orc in orcs:
                await orc.close()

    outcomes = asyncio.run(main())
    assert len(outcomes) == 1500
    accepted = Counter(run_id for run_id, status in outcomes if status == "ACCEPT")
    assert accepted == Counter({run_id: 1 for run_id in run_ids})
    assert {status for _, status in outcomes} == {"ACCEPT", "ABORT"}
    with Orchestrator(database) as orc:
        for run_id in run_ids:
            history = [state.type for state in orc.read_flow_run_states(run_id)]
            assert history == [StateType.SCHEDULED, StateType.PENDING]
    assert_database_consistent(database)


FORCED = [StateType.RUNNING, StateType.COMPLETED, StateType.FAILED, StateType.PENDING,
          StateType.SCHEDULED, StateType.CRASHED]


def _notes(exc: BaseException | None) -> str:
    found = []
    while exc is not None:
        found += getattr(exc, "__notes__", [])
        exc = exc.__cause__
    return " ".join(found)


def test_1000_calls_cancelled_at_random_moments_leave_a_consistent_history(database: str):
    """Every call that reported it was done is in the history, and no other call is: a call
    cancelled before it started did nothing, one cancelled while it ran committed whole (and
    says so), a transaction block cancelled anywhere but in its commit left nothing."""
    rng = random.Random(1000)
    outcomes: dict[str, str] = {}  # message -> "done" | "not started" | "started" | "rolled back"

    async def single(orc: AsyncOrchestrator, run_id: str, message: str, delay: float) -> None:
        state = State(type=rng.choice(FORCED), message=message)
        try:
            async with asyncio.timeout(delay):
                result = await orc.set_flow_run_state(run_id, state, force=True)
            assert result.status is SetStateStatus.ACCEPT
            outcomes[message] = "done"
        except (TimeoutError, asyncio.CancelledError) as exc:
            # (a timeout's cancellation is its cause; Python 3.11.2 leaves it the context only)
            cancellation = exc.__cause__ or exc.__context__
            notes = _notes(exc if isinstance(exc, asyncio.CancelledError) else cancellation)
            if "returned ACCEPT (committed)" in notes:
                outcomes[message] = "started"
            else:
                assert "before it started: it did nothing" in notes, notes
                outcomes[message] = "not started"

    async def block(orc: AsyncOrchestrator, run_id: str, messages: list[str]) -> None:
        try:
            async with orc.transaction():
                for message in messages:
                    state = State(type=rng.choice(FORCED), message=message)
                    await orc.set_flow_run_state(run_id, state, force=True)
            kept = "done"
        except asyncio.CancelledError as exc:  # a cancel() from outside
            kept = "started" if "committed the transaction" in _notes(exc) else "rolled back"
        for message in messages:
            outcomes[message] = kept

    # cancellations spread over about the time a wave of 50 calls takes on the backend
    spread = 0.06 if is_postgres_url(database) else 0.012

    async def main() -> None:
        async with AsyncOrchestrator(database) as orc:
            runs = [str((await orc.create_flow_run(state=Running())).id) for _ in range(50)]
            loop = asyncio.get_running_loop()
            calls = 0
            while calls < 1000:
                wave = []
                for _ in range(50):
                    run_id = rng.choice(runs)
                    if rng.random() < 0.2:
                        messages = [f"call-{calls}", f"call-{calls + 1}"]
                        calls += 2
                        task = asyncio.create_task(block(orc, run_id, messages))
                        loop.call_later(rng.uniform(0, spread), task.cancel)
                    else:
                        wave.append(single(orc, run_id, f"call-{calls}", rng.uniform(0, spread)))
                        calls += 1
                        continue
                    wave.append(task)
                for answer in await asyncio.gather(*wave, return_exceptions=True):
                    assert answer is None or isinstance(answer, asyncio.CancelledError), answer

    asyncio.run(main())
    assert len(outcomes) >= 1000
    kinds = Counter(outcomes.values())
    assert kinds["done"] > 0 and kinds["not started"] > 0 and kinds["started"] > 0, kinds
    with Orchestrator(database) as orc:
        written = {
            state.message
            for run in orc.read_flow_runs()
            for state in orc.read_flow_run_states(run.id)
            if state.message and state.message.startswith("call-")
        }
    reported_done = {m for m, kind in outcomes.items() if kind in ("done", "started")}
    assert written == reported_done
    assert_database_consistent(database)


HOLD_SQLITE = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("held", flush=True)
sys.stdin.readline()
conn.execute("ROLLBACK")
"""

HOLD_POSTGRES = """
import psycopg, sys
conn = psycopg.connect(sys.argv[1])
conn.execute("SELECT 1 FROM flow_run WHERE id = %s FOR UPDATE", (sys.argv[2],))
print("held", flush=True)
sys.stdin.readline()
conn.rollback()
"""


def hold_lock(database: str, run_id: str) -> subprocess.Popen[str]:
    """Another process that holds the lock a transition of ``run_id`` needs, until told."""
    script = HOLD_POSTGRES if is_postgres_url(database) else HOLD_SQLITE
    holder = subprocess.Popen(
        [sys.executable, "-c", script, database, run_id],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def postgres_lock_waits(database: str) -> int:
    from tests.backends import admin

    with admin(database) as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        ).fetchone()[0]


def test_a_call_waiting_for_another_processs_lock_does_not_stop_the_event_loop(database: str):
    run_id = scheduled_runs(database, 1)[0]

    async def main(holder: subprocess.Popen[str]) -> tuple[int, Any]:
        async with AsyncOrchestrator(database, busy_timeout=20) as orc:
            call = asyncio.create_task(orc.set_flow_run_state(run_id, Pending()))
            ticks = 0
            while ticks < 30:  # a ticker: it could not run if the call blocked the loop
                await asyncio.sleep(0.01)
                assert not call.done()  # the other process still holds the lock
                ticks += 1
            if is_postgres_url(database):  # the server shows the call waiting for the row
                assert await asyncio.to_thread(postgres_lock_waits, database) == 1
            holder.communicate("release\n", timeout=30)
            return ticks, await call

    holder = hold_lock(database, run_id)
    try:
        ticks, result = asyncio.run(main(holder))
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    assert ticks == 30
    assert result.status is SetStateStatus.ACCEPT
    with Orchestrator(database) as orc:
        assert orc.read_flow_run(run_id).state_type is StateType.PENDING
    assert_database_consistent(database)


def test_the_lock_test_would_see_a_blocked_loop(tmp_path: Path):
    """The check above can fail: the sync engine, called on the loop, stops the ticker."""
    database = str(tmp_path / "blocked.db")
    run_id = scheduled_runs(database, 1)[0]
    holder = hold_lock(database, run_id)
    ticks: list[float] = []

    async def main() -> None:
        async def ticker() -> None:
            while True:
                await asyncio.sleep(0.01)
                ticks.append(asyncio.get_running_loop().time())

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0.05)
        before = len(ticks)
        with Orchestrator(database, busy_timeout=0.3) as orc:
            try:
                orc.set_flow_run_state(run_id, Pending())  # blocks the loop for 0.3 s
            except Exception:
                pass
        assert len(ticks) == before  # no tick happened while it waited
        task.cancel()

    try:
        asyncio.run(main())
    finally:
        holder.communicate("release\n", timeout=30)

"""Many processes and threads proposing the same transition: exactly one wins, nothing leaks.

Each race runs on both backends (the ``database`` fixture: a SQLite file, a fresh PostgreSQL
schema); processes on one machine stand in for hosts sharing a PostgreSQL server."""

from __future__ import annotations

import multiprocessing
import random
import sqlite3
import threading
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from flowstate import DatabaseBusy, Orchestrator, SetStateStatus, StateType
from flowstate.states import Pending, Running, Scheduled

from tests.backends import PostgresBackend, admin
from tests.reliability._checks import assert_database_consistent

PROCESSES = 8
THREADS = 8
RUNS = 100
FORK = multiprocessing.get_context("fork")


def scheduled_runs(path: Path | str, count: int = RUNS) -> list[str]:
    with Orchestrator(path) as orc:
        return [str(orc.create_flow_run(state=Scheduled()).id) for _ in range(count)]


def propose_pending(orc: Orchestrator, run_ids: list[str], seed: int) -> list[tuple[str, str]]:
    order = list(run_ids)
    random.Random(seed).shuffle(order)
    return [(run_id, orc.set_flow_run_state(run_id, Pending()).status.value) for run_id in order]


def describe(exc: BaseException) -> str:
    return f"{type(exc).__module__}.{type(exc).__name__}: {exc}"


def _process_worker(path: str, run_ids: list[str], seed: int, start: Any, results: Any) -> None:
    try:
        with Orchestrator(path) as orc:
            start.wait()
            results.put(("ok", propose_pending(orc, run_ids, seed)))
    except BaseException as exc:  # reported to the parent, which fails the test
        results.put(("error", describe(exc)))


def _open_and_create_worker(path: str, start: Any, results: Any) -> None:
    try:
        start.wait()
        with Orchestrator(path) as orc:
            run = orc.create_flow_run(state=Scheduled())
            results.put(("ok", [(str(run.id), "created")]))
    except BaseException as exc:
        results.put(("error", describe(exc)))


def run_processes(target: Any, args: tuple[Any, ...], count: int) -> list[tuple[str, str]]:
    start, results = FORK.Barrier(count), FORK.Queue()
    workers = [FORK.Process(target=target, args=(*args(i), start, results)) for i in range(count)]
    for worker in workers:
        worker.start()
    reports = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    errors = [detail for kind, detail in reports if kind == "error"]
    assert errors == []
    return [outcome for _, outcomes in reports for outcome in outcomes]


def assert_one_winner_per_run(path: Path | str, run_ids: list[str], outcomes: list[tuple[str, str]], contenders: int) -> None:
    accepted = Counter(run_id for run_id, status in outcomes if status == SetStateStatus.ACCEPT.value)
    assert accepted == Counter({run_id: 1 for run_id in run_ids})
    assert len(outcomes) == len(run_ids) * contenders
    assert {status for _, status in outcomes} <= {"ACCEPT", "ABORT"}
    with Orchestrator(path) as orc:
        for run_id in run_ids:
            history = [state.type for state in orc.read_flow_run_states(run_id)]
            assert history == [StateType.SCHEDULED, StateType.PENDING]
    assert_database_consistent(path)


def test_processes_racing_to_submit_the_same_runs_have_exactly_one_winner_each(database: str):
    path = database
    run_ids = scheduled_runs(path)
    outcomes = run_processes(_process_worker, lambda i: (str(path), run_ids, i), PROCESSES)
    assert_one_winner_per_run(path, run_ids, outcomes, PROCESSES)


def test_processes_opening_a_brand_new_database_at_once_all_succeed(database: str):
    path = database
    outcomes = run_processes(_open_and_create_worker, lambda i: (str(path),), PROCESSES)
    with Orchestrator(path) as orc:
        assert {str(run.id) for run in orc.read_flow_runs()} == {run_id for run_id, _ in outcomes}
    assert_database_consistent(path)


def run_threads(work: Any, count: int) -> list[tuple[str, str]]:
    start = threading.Barrier(count)
    outcomes: list[tuple[str, str]] = []
    errors: list[str] = []
    lock = threading.Lock()

    def body(index: int) -> None:
        try:
            start.wait()
            found = work(index)
        except BaseException as exc:
            found, error = [], describe(exc)
            with lock:
                errors.append(error)
        with lock:
            outcomes.extend(found)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return outcomes


def test_threads_sharing_one_orchestrator_have_exactly_one_winner_per_run(database: str):
    path = database
    run_ids = scheduled_runs(path)
    with Orchestrator(path) as orc:
        outcomes = run_threads(lambda i: propose_pending(orc, run_ids, i), THREADS)
    assert_one_winner_per_run(path, run_ids, outcomes, THREADS)


def test_threads_with_their_own_orchestrators_have_exactly_one_winner_per_run(database: str):
    path = database
    run_ids = scheduled_runs(path)

    def work(index: int) -> list[tuple[str, str]]:
        with Orchestrator(path) as orc:
            return propose_pending(orc, run_ids, index)

    outcomes = run_threads(work, THREADS)
    assert_one_winner_per_run(path, run_ids, outcomes, THREADS)


def test_a_lock_held_past_the_busy_timeout_raises_database_busy_and_writes_nothing(tmp_path: Path):
    path = tmp_path / "busy.db"
    run_id = scheduled_runs(path, 1)[0]
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with Orchestrator(path, busy_timeout=0.2) as orc:
            with pytest.raises(DatabaseBusy, match="busy_timeout") as caught:
                orc.set_flow_run_state(run_id, Pending())
            assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
            with pytest.raises(DatabaseBusy):
                orc.create_flow_run()
            holder.execute("ROLLBACK")
            assert orc.set_flow_run_state(run_id, Pending()).status is SetStateStatus.ACCEPT
            assert len(orc.read_flow_runs()) == 1
    finally:
        holder.close()
    assert_database_consistent(path)


def test_a_row_lock_held_past_the_busy_timeout_raises_database_busy_on_postgres(
    postgres_backend: PostgresBackend,
):
    """PostgreSQL: busy_timeout is the lock_timeout; a run another connection has locked
    raises DatabaseBusy for its transitions (reads never wait: they lock no row), other runs
    stay usable."""
    import psycopg

    url = postgres_backend.new_database()
    run_id = scheduled_runs(url, 1)[0]
    with admin(url) as holder:
        holder.execute("BEGIN")
        holder.execute("SELECT 1 FROM flow_run WHERE id = %s FOR UPDATE", (run_id,))
        with Orchestrator(url, busy_timeout=0.2) as orc:
            with pytest.raises(DatabaseBusy, match="busy_timeout") as caught:
                orc.set_flow_run_state(run_id, Pending())
            assert isinstance(caught.value.__cause__, psycopg.errors.LockNotAvailable)
            assert orc.read_flow_run(run_id).state_type is StateType.SCHEDULED
            other = orc.create_flow_run(state=Scheduled())  # row locks: other runs go on
            holder.execute("ROLLBACK")
            assert orc.set_flow_run_state(run_id, Pending()).status is SetStateStatus.ACCEPT
            assert len(orc.read_flow_runs()) == 2
            assert [s.type for s in orc.read_flow_run_states(other.id)] == [StateType.SCHEDULED]
    assert_database_consistent(url)


def _reap_worker(path: str, start: Any, results: Any) -> None:
    try:
        with Orchestrator(path) as orc:
            start.wait()
            later = datetime.now(timezone.utc) + timedelta(hours=1)
            found = orc.mark_lost_runs(timeout=60, now=later)
            results.put(("ok", [(str(r.state.state_details.flow_run_id), r.status.value) for r in found]))
    except BaseException as exc:
        results.put(("error", describe(exc)))


def test_processes_reaping_the_same_silent_runs_crash_each_exactly_once(database: str):
    with Orchestrator(database) as orc:
        run_ids = [str(orc.create_flow_run(state=Running()).id) for _ in range(30)]
    outcomes = run_processes(_reap_worker, lambda i: (database,), PROCESSES)
    accepted = Counter(run_id for run_id, status in outcomes if status == "ACCEPT")
    assert accepted == Counter({run_id: 1 for run_id in run_ids})
    with Orchestrator(database) as orc:
        for run_id in run_ids:
            history = [state.type for state in orc.read_flow_run_states(run_id)]
            assert history == [StateType.RUNNING, StateType.CRASHED]
    assert_database_consistent(database)


def test_a_transition_that_waited_for_the_lock_sees_the_state_written_meanwhile(database: str):
    """The second proposal waits while the first holds the run, then must see PENDING (on
    PostgreSQL: the read after the wait cannot use the state rows of its old snapshot)."""
    with Orchestrator(database) as orc:
        run_id = orc.create_flow_run(state=Scheduled()).id
    holding, waiting_result = threading.Event(), []
    with Orchestrator(database) as first, Orchestrator(database) as second:

        def propose_second() -> None:
            holding.wait()
            waiting_result.append(second.set_flow_run_state(run_id, Pending()))

        thread = threading.Thread(target=propose_second)
        thread.start()
        with first.transaction():
            assert first.set_flow_run_state(run_id, Pending()).status is SetStateStatus.ACCEPT
            holding.set()
            time.sleep(0.3)  # the second proposal is now waiting for the lock
        thread.join(timeout=30)
        assert waiting_result[0].status is SetStateStatus.ABORT
        assert "PENDING state" in (waiting_result[0].details.reason or "")
        history = [state.type for state in first.read_flow_run_states(run_id)]
        assert history == [StateType.SCHEDULED, StateType.PENDING]


def test_a_thread_never_takes_another_threads_transaction_being_opened_for_its_own(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Thread A opens a transaction on an orchestrator that thread B used last. While A has
    begun it but not yet finished opening it, B's next call must wait for A's transaction, not
    run inside it as if in a block of its own (A then rolls back: B's acknowledged transition
    would be lost)."""
    from flowstate.store import store as sqlite_store
    from flowstate.store.postgres import store as postgres_store

    module, opening = (
        (postgres_store, "begin") if database.startswith("postgres") else (sqlite_store, "_open")
    )
    real = module._get_ident
    a_inside, b_done = threading.Event(), threading.Event()

    with Orchestrator(database) as orc:
        runs = [orc.create_flow_run(state=Scheduled()).id for _ in range(2)]
        assert orc.set_flow_run_state(runs[0], Pending()).status is SetStateStatus.ACCEPT  # B:
        # this thread
        answers: list[Any] = []

        def ident() -> int:
            if threading.current_thread().name == "A" and not a_inside.is_set():
                import sys

                if sys._getframe(1).f_code.co_name == opening:  # A's BEGIN has been sent
                    a_inside.set()
                    b_done.wait(0.5)  # B's call, which must wait for A's transaction
            return real()

        monkeypatch.setattr(module, "_get_ident", ident)

        def a() -> None:
            try:
                orc.set_flow_run_state(uuid.uuid4(), Pending())  # unknown: rolled back
            except Exception as exc:  # (ObjectNotFound)
                answers.append(type(exc).__name__)

        thread_a = threading.Thread(target=a, name="A")
        thread_a.start()
        assert a_inside.wait(10)
        answers.append(orc.set_flow_run_state(runs[1], Pending()).status)  # B again
        b_done.set()
        thread_a.join(10)
        assert sorted(map(str, answers)) == sorted(["ObjectNotFound", str(SetStateStatus.ACCEPT)])
    with Orchestrator(database) as fresh:
        assert fresh.read_flow_run(runs[1]).state_type is StateType.PENDING

"""PostgreSQL taken away under a live Orchestrator: stopped (``pg_ctl stop -m immediate``),
restarted, frozen (SIGSTOP), and the call timeout.

These tests stop and freeze a cluster of their own (``pg_server.OwnCluster``), never the
suite's shared server. ``python -m tests.reliability.pg_outage`` is the long version of the
worker-process test (8 workers, a 5 s outage).
"""

from __future__ import annotations

import math
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowstate import DatabaseError, InvalidState, Orchestrator, StateType
from flowstate.states import Completed, Pending, Running, Scheduled
from tests.backends import admin, server_binaries_found, with_search_path
from tests.reliability.pg_outage import run_outage
from tests.reliability.pg_server import OwnCluster

FAIL_FAST = 5.0
"""A call while the server is down must fail, not wait: far below the 10 s connect timeout.
(A bound on a hang, not a speed measurement.)"""


@pytest.fixture(scope="module")
def cluster() -> Iterator[OwnCluster]:
    if not server_binaries_found():
        reason = "no PostgreSQL server binaries found (scripts/pg-cluster bindir)"
        if os.environ.get("CI"):
            pytest.fail(f"CI is set, so the PostgreSQL tests must run: {reason}", pytrace=False)
        pytest.skip(reason)
    # not under pytest's basetemp: its root folder is private (the server's user, when the
    # suite runs as root, could not reach it) and pruned by other pytest sessions
    own = OwnCluster(Path(tempfile.mkdtemp(prefix="flowstate-own-pg-")))
    try:
        yield own
    finally:
        own.close()


@pytest.fixture
def url(cluster: OwnCluster) -> Iterator[str]:
    """A fresh schema on the test's own server (which is up when the test starts)."""
    schema = f"t_{os.urandom(8).hex()}"
    with admin(cluster.url) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    yield with_search_path(cluster.url, schema)


def failing_call(orc: Orchestrator, run_id: Any) -> tuple[DatabaseError, float]:
    started = time.monotonic()
    with pytest.raises(DatabaseError) as caught:
        orc.set_flow_run_state(run_id, Running())
    return caught.value, time.monotonic() - started


def in_a_thread(call: Any, seconds: float) -> tuple[bool, Any]:
    """``call()`` in a daemon thread: (whether it ended within ``seconds``, its result or the
    exception it raised). A hang fails the test instead of stalling the suite."""
    outcome: list[Any] = []

    def target() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    return not thread.is_alive(), outcome[0] if outcome else None


# -- item 1: a stopped server -------------------------------------------------------------------


def test_calls_while_the_server_is_down_fail_fast_and_the_same_orchestrator_works_after_it(
    cluster: OwnCluster, url: str
) -> None:
    with Orchestrator(url) as orc:
        run = orc.create_flow_run(state=Scheduled())
        assert orc.set_flow_run_state(run.id, Pending()).status.value == "ACCEPT"
        cluster.stop()
        try:
            for _ in range(3):
                error, took = failing_call(orc, run.id)
                assert "connection failed or was lost" in str(error)
                assert took < FAIL_FAST
        finally:
            cluster.restart()
        result = orc.set_flow_run_state(run.id, Running())  # the first call after the restart
        assert result.status.value == "ACCEPT"
        assert [s.type for s in orc.read_flow_run_states(run.id)] == [
            StateType.SCHEDULED,
            StateType.PENDING,
            StateType.RUNNING,
        ]


def test_a_restart_between_two_calls_costs_no_call(cluster: OwnCluster, url: str) -> None:
    with Orchestrator(url) as orc:
        run = orc.create_flow_run(state=Pending())
        cluster.stop()
        cluster.restart()
        assert orc.set_flow_run_state(run.id, Running()).status.value == "ACCEPT"
        assert orc.read_flow_run(run.id).state_type is StateType.RUNNING


def test_only_close_closes_an_orchestrator_that_lived_through_an_outage(
    cluster: OwnCluster, url: str
) -> None:
    orc = Orchestrator(url)
    run = orc.create_flow_run(state=Pending())
    cluster.stop()
    try:
        failing_call(orc, run.id)
    finally:
        cluster.restart()
    orc.close()
    with pytest.raises(DatabaseError, match="is closed"):
        orc.read_flow_run(run.id)


def test_worker_processes_lose_nothing_and_recover_from_an_outage(
    cluster: OwnCluster, tmp_path: Path
) -> None:
    # the short version of `python -m tests.reliability.pg_outage` (8 workers, 5 s)
    with admin(cluster.url) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
    figures = run_outage(cluster, workers=3, outage=1.5, runs=400, after=2.0, folder=tmp_path,
                         recover_within=math.inf)
    assert figures["acknowledged"] > 0 and figures["failed_calls_while_down"] > 0
    assert figures["lost"] == 0
    assert figures["double_claims_in_logs"] == 0
    assert figures["runs_with_two_pending_states"] == 0
    assert None not in figures["recovery_seconds_after_restart"].values()
    assert figures["slowest_failed_call_while_down_seconds"] < FAIL_FAST


# -- item 7: a hung server, the call timeout -----------------------------------------------------


def test_a_frozen_server_turns_a_call_into_a_database_error_after_the_call_timeout(
    cluster: OwnCluster, url: str
) -> None:
    with Orchestrator(url, call_timeout=1) as orc:
        run = orc.create_flow_run(state=Pending())
        with cluster.frozen():
            ended, outcome = in_a_thread(lambda: orc.read_flow_run(run.id), 20)
            assert ended, "the call hung on the frozen server"
            assert isinstance(outcome, DatabaseError)
            assert "did not answer within the call timeout of 1 s" in str(outcome)
            ended, outcome = in_a_thread(lambda: orc.set_flow_run_state(run.id, Running()), 20)
            assert ended and isinstance(outcome, DatabaseError)  # reconnecting is bounded too
        assert orc.set_flow_run_state(run.id, Running()).status.value == "ACCEPT"
        assert orc.read_flow_run(run.id).state_type is StateType.RUNNING


def test_the_timeout_is_named_even_when_the_cut_call_wakes_before_the_watchdog_returns(
    cluster: OwnCluster, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On a loaded machine the call whose socket was shut down may run before the watchdog's
    # thread does again: it must still learn that the watchdog cut it.
    from flowstate.store.postgres.watchdog import Watchdog

    cut = Watchdog._cut

    def slow_to_return(conn: Any) -> bool:
        done = cut(conn)
        time.sleep(0.5)
        return done

    monkeypatch.setattr(Watchdog, "_cut", staticmethod(slow_to_return))
    with Orchestrator(url, call_timeout=1) as orc:
        run = orc.create_flow_run(state=Pending())
        with cluster.frozen():
            ended, outcome = in_a_thread(lambda: orc.read_flow_run(run.id), 20)
        assert ended and isinstance(outcome, DatabaseError)
        assert "did not answer within the call timeout of 1 s" in str(outcome)


def test_a_server_frozen_inside_a_transaction_fails_it_and_nothing_of_it_is_written(
    cluster: OwnCluster, url: str
) -> None:
    with Orchestrator(url, call_timeout=1) as orc:
        run = orc.create_flow_run(state=Pending())
        inside, frozen = threading.Event(), threading.Event()
        outcome: list[BaseException] = []

        def block() -> None:
            try:
                with orc.transaction():
                    orc.set_flow_run_state(run.id, Running())
                    inside.set()
                    frozen.wait(20)
                    orc.set_flow_run_state(run.id, Completed())
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=block, daemon=True)
        thread.start()
        assert inside.wait(20)
        with cluster.frozen():  # in this thread: the server is continued whatever happens
            frozen.set()
            thread.join(20)
            assert not thread.is_alive(), "the call hung on the frozen server"
        assert isinstance(outcome[0], DatabaseError)
        assert "did not answer within the call timeout" in str(outcome[0])
        assert [s.type for s in orc.read_flow_run_states(run.id)] == [StateType.PENDING]


def test_the_call_timeout_is_an_option_or_a_url_parameter(url: str) -> None:
    with Orchestrator(url) as orc:
        assert orc._store.call_timeout == 30.0  # type: ignore[attr-defined]
    with Orchestrator(url + "&call_timeout=2.5") as orc:  # libpq never sees it
        assert orc._store.call_timeout == 2.5  # type: ignore[attr-defined]
        assert orc.create_flow_run().run_count == 0
    with Orchestrator(url + "&call_timeout=2.5", call_timeout=4) as orc:
        assert orc._store.call_timeout == 4.0  # type: ignore[attr-defined]


def libpq_settings(orc: Orchestrator) -> dict[str, str]:
    conn = orc._store.conn  # type: ignore[attr-defined]
    return {
        option.keyword.decode(): option.val.decode()
        for option in conn.pgconn.info
        if option.val is not None
    }


def test_connections_get_keepalives_and_a_tcp_user_timeout_of_the_call_timeout(url: str) -> None:
    with Orchestrator(url, call_timeout=3) as orc:
        settings = libpq_settings(orc)
    assert settings["tcp_user_timeout"] == "3000"
    assert settings["keepalives"] == "1"
    assert settings["keepalives_idle"] == "10"
    assert settings["connect_timeout"] == "3"
    with Orchestrator(url + "&keepalives_idle=7&tcp_user_timeout=500") as orc:
        settings = libpq_settings(orc)
    assert settings["keepalives_idle"] == "7" and settings["tcp_user_timeout"] == "500"


@pytest.mark.parametrize("bad", [0, -1, math.nan, math.inf, "5", True, 86_401])
def test_a_bad_call_timeout_is_invalid_on_either_backend(bad: object, tmp_path: Path) -> None:
    with pytest.raises(InvalidState, match="call_timeout"):
        Orchestrator(str(tmp_path / "x.db"), call_timeout=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidState, match="call_timeout"):
        Orchestrator("postgresql://u@127.0.0.1:1/db", call_timeout=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["abc", "0", "-2", "nan", ""])
def test_a_bad_call_timeout_in_the_url_is_invalid_before_connecting(bad: str) -> None:
    with pytest.raises(InvalidState, match="URL's call_timeout"):
        Orchestrator(f"postgresql://u@127.0.0.1:1/db?sslmode=disable&call_timeout={bad}")

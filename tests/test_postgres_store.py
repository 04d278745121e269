"""The PostgreSQL store's own behaviour: URLs, schema versions, errors, settings, the interface.

Behaviour shared with SQLite (conformance, races, workers, the engine's API, the stateful
tests) is tested on both backends elsewhere; this file holds what only PostgreSQL has.
"""

from __future__ import annotations

import inspect
import socket
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowstate import DatabaseBusy, DatabaseError, InvalidState, Orchestrator, StateType
from flowstate.states import Completed, Pending, Running, Scheduled
from flowstate.store import Store
from flowstate.store.base import StoreBackend
from flowstate.store.postgres.schema import SCHEMA_VERSION
from flowstate.store.postgres.text import ESCAPE, decode, encode
from flowstate.store.postgres.url import is_postgres_url, masked
from tests.backends import PostgresBackend, admin, schema_of, with_search_path


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tables(url: str) -> list[str]:
    with admin(url) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
            "ORDER BY table_name",
            (schema_of(url),),
        ).fetchall()
    return [row[0] for row in rows]


# -- URLs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("postgresql://u@h/db", True),
        ("postgres://u@h/db", True),
        ("POSTGRESQL://u@h/db", True),
        ("flows.db", False),
        (":memory:", False),
        ("file:x.db?mode=ro", False),
        ("postgresql.db", False),
    ],
)
def test_only_postgres_urls_select_the_postgres_backend(text: str, expected: bool) -> None:
    assert is_postgres_url(text) is expected


def test_passwords_are_masked_in_the_user_part_and_the_query() -> None:
    shown = masked("postgresql://ann:s3cret@db:5432/flows?password=other&sslmode=require")
    assert "s3cret" not in shown and "other" not in shown
    assert shown.startswith("postgresql://ann:***@db:5432/flows?")
    assert "sslmode=require" in shown


def test_the_database_property_is_the_url(postgres_backend: PostgresBackend) -> None:
    url = postgres_backend.new_database()
    with Orchestrator(url) as orc:
        assert orc.database == url  # no password in it to mask


# -- schema: creation, versions, foreign schemas -------------------------------------------------


def test_a_new_schema_gets_every_migration_recorded(postgres_backend: PostgresBackend) -> None:
    url = postgres_backend.new_database()
    Orchestrator(url).close()
    with admin(url) as conn:
        versions = conn.execute("SELECT version, name FROM flowstate_migration ORDER BY 1").fetchall()
    assert [v for v, _ in versions] == list(range(1, SCHEMA_VERSION + 1))
    assert "flow_run" in tables(url) and "flow_run_heartbeat" in tables(url)


def test_a_schema_from_a_newer_version_is_refused_and_left_unchanged(
    postgres_backend: PostgresBackend,
) -> None:
    url = postgres_backend.new_database()
    Orchestrator(url).close()
    with admin(url) as conn:
        conn.execute("INSERT INTO flowstate_migration (version, name) VALUES (99, 'future')")
    before = tables(url)
    with pytest.raises(DatabaseError, match="newer flowstate .*schema version 99"):
        Orchestrator(url)
    assert tables(url) == before


def test_a_foreign_schema_is_refused_and_nothing_is_created_in_it(
    postgres_backend: PostgresBackend,
) -> None:
    url = postgres_backend.new_database()
    with admin(url) as conn:
        conn.execute(f'CREATE TABLE "{schema_of(url)}".invoices (id int)')
    with pytest.raises(DatabaseError, match="not a flowstate database .*invoices|not a flowstate"):
        Orchestrator(url)
    assert tables(url) == ["invoices"]


def test_an_older_schema_is_migrated_keeping_its_runs(postgres_backend: PostgresBackend) -> None:
    url = postgres_backend.new_database()
    with Orchestrator(url) as orc:
        run = orc.create_flow_run(state=Scheduled())
    with admin(url) as conn:  # back to version 1: no heartbeat table, no listing indexes
        conn.execute("DROP TABLE flow_run_heartbeat")
        conn.execute("DROP INDEX ix_flow_run_type_created, ix_flow_run_flow_name")
        conn.execute("DROP TABLE deployment")
        conn.execute("DROP TABLE concurrency_lease_limit, concurrency_lease, concurrency_limit")
        conn.execute("ALTER TABLE task_run DROP COLUMN tags")
        conn.execute("DELETE FROM flowstate_migration WHERE version > 1")
    with Orchestrator(url) as orc:
        assert orc.read_flow_run(run.id).state_type is StateType.SCHEDULED
        orc.set_flow_run_state(run.id, Pending())
        orc.heartbeat(run.id, worker="w1")  # needs the table of migration 2
        orc.create_global_concurrency_limit("db", 1)  # and those of migration 4
        orc.create_deployment("nightly", concurrency_limit=1)  # and that of migration 5
        assert orc.create_task_run(tags=["db"]).tags == ["db"]  # and the column of migration 6
    assert {"flow_run_heartbeat", "concurrency_limit", "concurrency_lease", "deployment"} <= set(
        tables(url)
    )


def test_a_search_path_schema_that_does_not_exist_is_a_database_error(
    postgres_backend: PostgresBackend,
) -> None:
    url = with_search_path(postgres_backend.server_url, "no_such_schema")
    with pytest.raises(DatabaseError, match="no schema of the search_path exists"):
        Orchestrator(url)


# -- connections: bad URLs, no server, a lost connection ------------------------------------------


def test_an_unreachable_server_is_a_database_error_with_the_password_masked() -> None:
    url = f"postgresql://ann:s3cret@127.0.0.1:{closed_port()}/flows"
    with pytest.raises(DatabaseError, match="connection failed") as caught:
        Orchestrator(url)
    assert "s3cret" not in str(caught.value)
    assert "ann:***@127.0.0.1" in str(caught.value)


@pytest.mark.parametrize(
    "url",
    ["postgresql://u@127.0.0.1:notaport/db", "postgresql://u@127.0.0.1/db?no_such_option=1"],
)
def test_a_malformed_url_is_a_database_error(url: str) -> None:
    with pytest.raises(DatabaseError):
        Orchestrator(url)


def test_a_connection_lost_while_idle_is_replaced_without_failing_the_next_call(
    postgres_backend: PostgresBackend,
) -> None:
    url = postgres_backend.new_database()
    with Orchestrator(url) as orc:
        run = orc.create_flow_run(state=Scheduled())
        pid = orc._store.conn.info.backend_pid  # type: ignore[attr-defined]
        with admin(url) as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        assert orc.set_flow_run_state(run.id, Pending()).status.value == "ACCEPT"
        assert orc._store.conn.info.backend_pid != pid  # type: ignore[attr-defined]
        assert [s.type for s in orc.read_flow_run_states(run.id)] == [
            StateType.SCHEDULED,
            StateType.PENDING,
        ]


def test_a_connection_lost_inside_a_transaction_fails_it_clearly_and_the_next_call_reconnects(
    postgres_backend: PostgresBackend,
) -> None:
    url = postgres_backend.new_database()
    with Orchestrator(url) as orc:
        run = orc.create_flow_run(state=Scheduled())
        with pytest.raises(DatabaseError, match="connection failed or was lost"):
            with orc.transaction():
                orc.set_flow_run_state(run.id, Pending())
                pid = orc._store.conn.info.backend_pid  # type: ignore[attr-defined]
                with admin(url) as conn:
                    conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
                orc.set_flow_run_state(run.id, Running())
        assert orc.read_flow_run(run.id).state_type is StateType.SCHEDULED  # rolled back
        assert orc.set_flow_run_state(run.id, Pending()).status.value == "ACCEPT"


def test_without_psycopg_a_url_says_which_extra_to_install() -> None:
    code = (
        "import sys; sys.modules['psycopg'] = None\n"
        "from flowstate import Orchestrator, DatabaseError\n"
        "try:\n    Orchestrator('postgresql://u@127.0.0.1/db')\n"
        "except DatabaseError as exc:\n    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'flowstate[postgres]'" in out.stdout


def test_a_closed_orchestrator_says_so(postgres_backend: PostgresBackend) -> None:
    orc = Orchestrator(postgres_backend.new_database())
    orc.close()
    with pytest.raises(DatabaseError, match="closed"):
        orc.read_flow_runs()


# -- text PostgreSQL cannot hold as it is, transactions ---------------------------------------------------


@given(st.text())
def test_the_text_encoding_round_trips_and_never_stores_a_nul(text: str) -> None:
    stored = encode(text)
    assert decode(stored) == text
    assert "\x00" not in stored
    if "\x00" not in text and ESCAPE not in text:
        assert stored == text  # ordinary text is stored as it is


@given(st.text(alphabet="a\x000\ufffe", max_size=6), st.text(alphabet="a\x000\ufffe", max_size=6))
def test_different_texts_stay_different_once_encoded(a: str, b: str) -> None:
    assert (encode(a) == encode(b)) == (a == b)


def test_nul_and_the_escape_character_round_trip_and_keys_still_match(
    postgres_backend: PostgresBackend,
) -> None:
    odd = "a\x00b\ufffe0\ufffe\ufffe\x00"
    url = postgres_backend.new_database()
    with Orchestrator(url) as orc:
        run = orc.create_flow_run(name=odd, flow_name="plain", state=Running(message=odd))
        again = orc.read_flow_run(run.id)
        assert (again.name, again.state.message) == (odd, odd)
        orc.create_flow_run_input(run.id, "k", odd, sender=odd)
        assert orc.read_flow_run_input(run.id, "k") == odd
        task = orc.create_task_run(flow_run_id=run.id, task_key=odd, state=Running(cache_key=odd))
        orc.set_task_run_state(task.id, Completed(cache_key=odd))
        other = orc.create_task_run(flow_run_id=run.id, task_key="other")
        cached = orc.set_task_run_state(other.id, Running(cache_key=odd))  # found by its key
        assert cached.state.type is StateType.COMPLETED and cached.state.name == "Cached"
    with admin(url) as conn:  # ordinary text is stored as it is
        assert conn.execute("SELECT flow_name FROM flow_run").fetchone()[0] == "plain"


def test_a_server_error_in_a_nested_block_rolls_back_to_its_savepoint_only(
    postgres_backend: PostgresBackend,
) -> None:
    """After a failed statement PostgreSQL refuses everything until a rollback: the savepoint
    of the nested block is that rollback, and the outer transaction goes on and commits."""
    url = postgres_backend.new_database()
    with Orchestrator(url, busy_timeout=0.2) as orc:
        locked = orc.create_flow_run(state=Scheduled())
        with admin(url) as holder:
            holder.execute("BEGIN")
            holder.execute("SELECT 1 FROM flow_run WHERE id = %s FOR UPDATE", (str(locked.id),))
            with orc.transaction():
                kept = orc.create_flow_run()
                with pytest.raises(DatabaseBusy), orc.transaction():
                    orc.create_flow_run()  # undone with the block
                    orc.set_flow_run_state(locked.id, Pending())  # lock timeout
                after = orc.create_flow_run()
            holder.execute("ROLLBACK")
        assert {r.id for r in orc.read_flow_runs()} == {locked.id, kept.id, after.id}
        assert orc.read_flow_run(locked.id).state_type is StateType.SCHEDULED


def test_two_transactions_locking_runs_in_opposite_orders_end_with_one_database_busy(
    postgres_backend: PostgresBackend,
) -> None:
    """A deadlock is PostgreSQL's to detect; flowstate reports it as DatabaseBusy (retry)."""
    import threading

    url = postgres_backend.new_database()
    with Orchestrator(url) as orc:
        runs = [orc.create_flow_run(state=Scheduled()).id for _ in range(2)]
    both_hold_one = threading.Barrier(2)
    outcomes: list[str] = []

    def lock_both(order: list) -> None:  # type: ignore[type-arg]
        with Orchestrator(url) as own:
            try:
                with own.transaction():
                    own.set_flow_run_state(order[0], Pending())
                    both_hold_one.wait(timeout=10)
                    own.set_flow_run_state(order[1], Pending())
                outcomes.append("committed")
            except DatabaseBusy as exc:
                outcomes.append(f"busy: {exc}")

    threads = [
        threading.Thread(target=lock_both, args=(order,)) for order in (runs, runs[::-1])
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(o.split(":")[0] for o in outcomes) == ["busy", "committed"], outcomes
    assert "deadlock" in next(o for o in outcomes if o.startswith("busy"))
    with Orchestrator(url) as orc:  # the winner's two transitions, nothing of the loser's
        assert [len(orc.read_flow_run_states(run)) for run in runs] == [2, 2]


def test_the_default_database_may_be_a_url(
    postgres_backend: PostgresBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = postgres_backend.new_database()
    monkeypatch.setenv("FLOWSTATE_DATABASE", url)
    with Orchestrator() as orc:
        assert orc.database == url
        orc.create_flow_run()
    assert "flow_run" in tables(url)


# -- settings: busy_timeout, synchronous ----------------------------------------------------------


@pytest.mark.parametrize(
    "synchronous, expected", [("FULL", "on"), ("EXTRA", "on"), ("OFF", "off"), ("NORMAL", "on")]
)
def test_synchronous_maps_onto_synchronous_commit(
    postgres_backend: PostgresBackend, synchronous: str, expected: str
) -> None:
    # NORMAL keeps the server's setting, which is PostgreSQL's default ("on") on the test server
    with Orchestrator(postgres_backend.new_database(), synchronous=synchronous) as orc:  # type: ignore[arg-type]
        conn = orc._store.conn  # type: ignore[attr-defined]
        assert conn.execute("SHOW synchronous_commit").fetchone()[0] == expected


@pytest.mark.parametrize(
    "busy_timeout, call_timeout, expected",
    [(0, None, "1ms"), (0.2, None, "200ms"), (30, 60, "30s"), (30, None, "29s"), (5, 2, "1800ms")],
)
def test_busy_timeout_is_the_lock_timeout_kept_under_the_call_timeout(
    postgres_backend: PostgresBackend, busy_timeout: float, call_timeout: float | None, expected: str
) -> None:
    with Orchestrator(
        postgres_backend.new_database(), busy_timeout=busy_timeout, call_timeout=call_timeout
    ) as orc:
        conn = orc._store.conn  # type: ignore[attr-defined]
        assert conn.execute("SHOW lock_timeout").fetchone()[0] == expected


@pytest.mark.parametrize("bad", [-1, float("nan"), "5", True])
def test_a_bad_busy_timeout_is_invalid_before_connecting(bad: object) -> None:
    with pytest.raises(InvalidState, match="busy_timeout"):
        Orchestrator(f"postgresql://u@127.0.0.1:{closed_port()}/db", busy_timeout=bad)  # type: ignore[arg-type]


# -- the store interface ------------------------------------------------------------------------


def _members(cls: type) -> dict[str, inspect.Signature | None]:
    found: dict[str, inspect.Signature | None] = {}
    for name, value in vars(StoreBackend).items():
        if name.startswith(("__", "_abc_", "_is_")):  # typing.Protocol's own machinery
            continue
        member = getattr(cls, name, None)
        assert member is not None, f"{cls.__name__} lacks {name}"
        found[name] = inspect.signature(member) if callable(value) else None
    return found


def test_every_store_implements_every_member_of_the_interface() -> None:
    """Both database stores, and the in-memory one (``ReferenceOrchestrator``'s)."""
    from flowstate.store.memory import MemoryStore
    from flowstate.store.postgres.store import PostgresStore

    interface = _members(StoreBackend)
    assert "read_flow_run" in interface and "begin" in interface
    for cls in (Store, PostgresStore, MemoryStore):
        mine = _members(cls)
        for name, signature in interface.items():
            if signature is not None:
                assert list(mine[name].parameters) == list(signature.parameters), (cls, name)  # type: ignore[union-attr]
    assert "path" in StoreBackend.__annotations__


# -- the command line ----------------------------------------------------------------------------


def test_the_command_line_takes_a_url_for_database(postgres_backend: PostgresBackend) -> None:
    import json

    from click.testing import CliRunner

    from flowstate.cli import main

    url = postgres_backend.new_database()
    demo = CliRunner().invoke(main, ["--database", url, "demo"])
    assert demo.exit_code == 0, demo.output
    listed = CliRunner().invoke(main, ["runs", "ls", "--json", "--database", url])
    assert listed.exit_code == 0, listed.output
    assert len(json.loads(listed.stdout)) >= 1


def test_the_command_line_reports_an_unreachable_server_in_one_line() -> None:
    from click.testing import CliRunner

    from flowstate.cli import main

    url = f"postgresql://ann:s3cret@127.0.0.1:{closed_port()}/flows"
    result = CliRunner().invoke(main, ["--database", url, "runs", "ls"])
    assert result.exit_code == 1
    assert "DatabaseError" in result.output and "s3cret" not in result.output
    assert "Traceback" not in result.output


def test_transactions_are_read_committed_whatever_the_servers_default(
    postgres_backend: PostgresBackend,
) -> None:
    """Under a serializable default, a proposal that waited for a run's lock would fail with a
    serialization error; flowstate's transactions are READ COMMITTED, so it gets its answer."""
    import threading
    import time

    url = postgres_backend.new_database() + "%20-cdefault_transaction_isolation%3Dserializable"
    with Orchestrator(url) as orc:
        run_id = orc.create_flow_run(state=Scheduled()).id
        assert orc._store.conn.execute("SHOW default_transaction_isolation").fetchone()[0] == (  # type: ignore[attr-defined]
            "serializable"
        )
    holding, answers = threading.Event(), []
    with Orchestrator(url) as first, Orchestrator(url) as second:

        def propose_second() -> None:
            holding.wait()
            answers.append(second.set_flow_run_state(run_id, Pending()).status.value)

        thread = threading.Thread(target=propose_second)
        thread.start()
        with first.transaction():
            first.set_flow_run_state(run_id, Pending())
            holding.set()
            time.sleep(0.3)
        thread.join(timeout=30)
    assert answers == ["ABORT"]


WAITING_ON_A_LIMIT = (
    "SELECT 1 FROM pg_locks w WHERE NOT w.granted AND w.pid IN "
    "(SELECT pid FROM pg_locks WHERE relation = 'concurrency_limit'::regclass)"
)
"""A connection waits for a lock while it holds (or waits for) a row of this schema's limits."""


@pytest.mark.parametrize("holder", ["task_run", "flow_run"])
def test_expire_leases_and_a_run_giving_its_slot_back_never_wait_for_each_other_in_a_circle(
    postgres_backend: PostgresBackend, holder: str
) -> None:
    """A run's transition locks its limit, then its lease; ``expire_leases`` (the worker's poll,
    the reaper, a waiting ``concurrency()``) must lock the limits of the leases it releases
    before those leases too, or the two end in a deadlock (one of them DatabaseBusy)."""
    import threading
    import time
    from datetime import datetime, timedelta, timezone

    url = postgres_backend.new_database()
    with Orchestrator(url) as orc:
        if holder == "task_run":
            orc.create_concurrency_limit("x", 2)
            flow = orc.create_flow_run(state=Running())
            run = orc.create_task_run(flow_run_id=flow.id, task_key="t", tags=["x"])
            orc.set_task_run_state(run.id, Running())
            limit, finish = "tag:x", orc.set_task_run_state
        else:
            deployment = orc.create_deployment("d", concurrency_limit=2)
            run = orc.create_flow_run(deployment_id=deployment.id)
            orc.set_flow_run_state(run.id, Pending())
            assert deployment.global_concurrency_limit is not None
            limit, finish = deployment.global_concurrency_limit.name, orc.set_flow_run_state
        outcomes: list[str] = []

        def expire() -> None:
            with Orchestrator(url) as reaper:
                later = datetime.now(timezone.utc) + timedelta(days=1)
                try:
                    outcomes.append(f"expired {len(reaper.expire_leases(now=later))}")
                except DatabaseBusy as exc:
                    outcomes.append(f"busy: {exc}")

        reaper = threading.Thread(target=expire)
        with orc.transaction():
            orc.increment_concurrency_slots(limit, 1)  # the limit is locked, as by a transition
            reaper.start()
            deadline = time.monotonic() + 10
            with admin(url) as conn:  # until the reaper waits for the limit
                while not conn.execute(WAITING_ON_A_LIMIT).fetchone():
                    assert time.monotonic() < deadline, "expire_leases never waited"
                    time.sleep(0.01)
            try:
                outcomes.append(finish(run.id, Completed()).status.value)
            except DatabaseBusy as exc:
                outcomes.append(f"busy: {exc}")
        reaper.join(timeout=30)
        assert outcomes == ["ACCEPT", "expired 0"]
        assert orc.read_global_concurrency_limit(limit).active_slots == 1  # the increment's
        assert orc.read_concurrency_leases() == []


def test_a_lock_wait_inside_a_concurrency_rule_is_database_busy_not_a_rule_error(
    postgres_backend: PostgresBackend,
) -> None:
    """A task run giving its tag slot back locks its lease inside a rule: a lock held longer
    than ``busy_timeout`` is DatabaseBusy there too (retry), as anywhere else."""
    url = postgres_backend.new_database()
    with Orchestrator(url, busy_timeout=0.2) as orc:
        orc.create_concurrency_limit("x", 1)
        flow = orc.create_flow_run(state=Running())
        run = orc.create_task_run(flow_run_id=flow.id, task_key="t", tags=["x"])
        orc.set_task_run_state(run.id, Running())
        (lease,) = orc.read_concurrency_leases()
        with admin(url) as holder:
            holder.execute("BEGIN")
            holder.execute(
                "SELECT 1 FROM concurrency_lease WHERE id = %s FOR UPDATE", (str(lease.lease_id),)
            )
            with pytest.raises(DatabaseBusy):
                orc.set_task_run_state(run.id, Completed())
            holder.execute("ROLLBACK")
        assert orc.read_task_run(run.id).state_type is StateType.RUNNING  # nothing written
        assert orc.set_task_run_state(run.id, Completed()).status.value == "ACCEPT"  # retried
        assert orc.read_global_concurrency_limit("tag:x").active_slots == 0

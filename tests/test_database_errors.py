"""Unusable database files give a DatabaseError that names the problem, and stay untouched."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

import flowstate
from flowstate import DatabaseError, Orchestrator
from flowstate.states import Running
from flowstate.store.schema import APPLICATION_ID, SCHEMA_VERSION


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_file_that_is_not_sqlite_is_refused_and_left_unchanged(tmp_path):
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are my notes, not a database\n" * 200)
    before = digest(path)
    with pytest.raises(DatabaseError, match="is not a SQLite database"):
        Orchestrator(path)
    assert digest(path) == before


def test_a_foreign_sqlite_database_is_refused_and_left_unchanged(tmp_path):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    before = digest(path)
    with pytest.raises(DatabaseError, match="is not a flowstate database"):
        Orchestrator(path)
    assert digest(path) == before


def test_a_database_from_a_newer_schema_version_is_refused(tmp_path):
    path = tmp_path / "new.db"
    Orchestrator(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    before = digest(path)
    with pytest.raises(DatabaseError, match="newer flowstate"):
        Orchestrator(path)
    assert digest(path) == before


def test_a_directory_is_refused(tmp_path):
    with pytest.raises(DatabaseError, match="is a directory"):
        Orchestrator(tmp_path)


def test_a_path_in_a_missing_folder_is_refused(tmp_path):
    with pytest.raises(DatabaseError, match="does not exist"):
        Orchestrator(tmp_path / "missing" / "x.db")
    assert not (tmp_path / "missing").exists()


def test_a_path_starting_with_a_tilde_is_not_a_home_folder_and_the_error_says_so(
    tmp_path, monkeypatch
):
    # "~/runs.db" quoted in a shell, or in an env file, reaches flowstate unexpanded
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatabaseError) as caught:
        Orchestrator("~/runs.db")
    message = str(caught.value)
    assert "not expanded" in message and "full path" in message
    assert "create it first" not in message  # a folder named ~ is not what was meant
    assert list(tmp_path.iterdir()) == []


def test_a_corrupt_database_gives_a_database_error(tmp_path):
    path = tmp_path / "corrupt.db"
    with Orchestrator(path) as orc:
        for _ in range(200):
            run = orc.create_flow_run(parameters={"pad": "x" * 500})
            orc.set_flow_run_state(run.id, Running())
    raw = bytearray(path.read_bytes())
    page_size = 4096
    for offset in range(2 * page_size, len(raw), page_size):  # scribble over every page but the header's
        raw[offset:offset + 64] = b"\xff" * 64
    path.write_bytes(bytes(raw))
    before = digest(path)
    with pytest.raises(DatabaseError, match="corrupt|not a SQLite database"):
        with Orchestrator(path) as orc:
            orc.read_flow_runs()
    assert digest(path) == before


def test_a_read_only_database_can_be_read_but_writes_say_read_only(tmp_path):
    path = tmp_path / "ro.db"
    with Orchestrator(path) as orc:
        run = orc.create_flow_run()
    before = digest(path)
    with Orchestrator(f"file:{path}?mode=ro") as orc:
        assert orc.read_flow_run(run.id).id == run.id
        with pytest.raises(DatabaseError, match="read-only"):
            orc.set_flow_run_state(run.id, Running())
    assert digest(path) == before


def test_a_new_database_is_marked_as_flowstates(tmp_path):
    path = tmp_path / "fresh.db"
    Orchestrator(path).close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_reopening_a_database_keeps_its_runs(tmp_path):
    path = tmp_path / "keep.db"
    with Orchestrator(path) as orc:
        run = orc.create_flow_run(flow_name="kept")
        orc.set_flow_run_state(run.id, Running())
    with Orchestrator(path) as orc:
        again = orc.read_flow_run(run.id)
        assert again.flow_name == "kept" and again.state_type is flowstate.StateType.RUNNING


def test_a_closed_orchestrator_says_so(tmp_path):
    orc = Orchestrator(":memory:")
    orc.close()
    with pytest.raises(DatabaseError, match="closed"):
        orc.read_flow_runs()


def test_the_default_database_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOWSTATE_DATABASE", str(tmp_path / "env.db"))
    with Orchestrator() as orc:
        assert orc.database == str(tmp_path / "env.db")
    monkeypatch.delenv("FLOWSTATE_DATABASE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with Orchestrator() as orc:
        assert orc.database == str(tmp_path / "home" / ".flowstate" / "flowstate.db")


def test_an_uncreatable_default_folder_is_a_database_error(tmp_path, monkeypatch):
    blocker = tmp_path / "file-not-folder"
    blocker.write_text("x")
    monkeypatch.delenv("FLOWSTATE_DATABASE", raising=False)
    monkeypatch.setenv("HOME", str(blocker))
    with pytest.raises(DatabaseError, match="FLOWSTATE_DATABASE"):
        Orchestrator()


def test_an_older_schema_is_migrated_in_place_keeping_its_runs(tmp_path):
    path = tmp_path / "old.db"
    with Orchestrator(path) as orc:
        run = orc.create_flow_run(
            state=Running(), parameters={"x": 1}, tags=["t"], empirical_policy={"retries": 2}
        )
    with sqlite3.connect(path) as conn:  # turn it back into a version-1 database
        for column, table in (
            ("parameters", "flow_run_payload"), ("tags", "flow_run_payload"),
            ("empirical_policy", "flow_run_policy"),
        ):
            conn.execute(
                f"UPDATE flow_run SET {column} = "
                f"(SELECT {column} FROM {table} WHERE flow_run_id = flow_run.id)"
            )
        conn.execute("DROP TABLE flow_run_payload")
        conn.execute("DROP TABLE flow_run_policy")
        conn.execute("DROP TABLE flow_run_heartbeat")
        for table in ("deployment", "concurrency_lease_limit", "concurrency_lease", "concurrency_limit"):
            conn.execute(f"DROP TABLE {table}")
        conn.execute("ALTER TABLE task_run DROP COLUMN tags")
        conn.execute("DROP INDEX ix_flow_run_type_created")
        conn.execute("DROP INDEX ix_flow_run_flow_name")
        conn.execute("DELETE FROM _sqlite_migrations WHERE name != '0001_initial'")
        conn.execute("PRAGMA user_version=1")
    with Orchestrator(path) as orc:
        assert orc.read_flow_run(run.id).state_type is flowstate.StateType.RUNNING
        orc.heartbeat(run.id)
        assert [r.id for r in orc.read_flow_runs(state_type="RUNNING", newest_first=True)] == [run.id]
        again = orc.read_flow_run(run.id)
        assert (again.parameters, again.tags, again.empirical_policy.retries) == ({"x": 1}, ["t"], 2)
        orc.create_global_concurrency_limit("db", 1)
        orc.increment_concurrency_slots_with_lease("db", 1)
        orc.create_deployment("nightly", concurrency_limit=1)
        assert orc.create_task_run(tags=["db"]).tags == ["db"]
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {"ix_flow_run_type_created", "ix_flow_run_flow_name"} <= indexes


# -- corruption at several positions, truncation, empty files, WAL leftovers --------------------

PAGE = 4096


@pytest.fixture(scope="module")
def healthy_bytes(tmp_path_factory) -> tuple[bytes, dict[str, int]]:
    """A flowstate database of ~120 pages, and the root page of each table."""
    path = tmp_path_factory.mktemp("healthy") / "healthy.db"
    with Orchestrator(path) as orc:
        for _ in range(200):
            run = orc.create_flow_run(parameters={"pad": "x" * 500})
            orc.set_flow_run_state(run.id, Running())
    with sqlite3.connect(path) as conn:
        roots = dict(conn.execute("SELECT name, rootpage FROM sqlite_master WHERE type = 'table'"))
    return path.read_bytes(), roots


def flipped(raw: bytes, offset: int, length: int = 64) -> bytes:
    damaged = bytearray(raw)
    damaged[offset:offset + length] = bytes(byte ^ 0xFF for byte in damaged[offset:offset + length])
    return bytes(damaged)


def read_everything(path: Path) -> None:
    with Orchestrator(path) as orc:
        for run in orc.read_flow_runs():
            orc.read_flow_run_states(run.id)
        orc.read_flow_runs(flow_name="flow")  # (the listing indexes)
        orc.read_flow_runs(state_type="RUNNING")


@pytest.mark.parametrize(
    ("where", "problem"),
    [
        ("magic", "not a SQLite database"),
        ("page-size", "not a SQLite database"),
        ("schema", "corrupt|malformed"),
        ("flow_run-root", "corrupt"),
        ("flow_run_state-root", "corrupt"),
        ("last-page", "corrupt"),
    ],
)
def test_flipped_bytes_anywhere_give_a_database_error_and_leave_the_file_unchanged(
    tmp_path, healthy_bytes, where, problem
):
    raw, roots = healthy_bytes
    offset = {
        "magic": 0,
        "page-size": 16,
        "schema": PAGE - 64,  # the end of page 1, where sqlite_master's cells live
        "flow_run-root": (roots["flow_run"] - 1) * PAGE,
        "flow_run_state-root": (roots["flow_run_state"] - 1) * PAGE,
        "last-page": len(raw) - PAGE,
    }[where]
    path = tmp_path / "flipped.db"
    path.write_bytes(flipped(raw, offset, 2 if where == "page-size" else 64))
    before = digest(path)
    with pytest.raises(DatabaseError, match=problem):
        read_everything(path)
    assert digest(path) == before


@pytest.mark.parametrize("keep", [0.5, 3 * 4096 + 100], ids=["half", "mid-page"])
def test_a_truncated_database_is_corrupt_and_left_unchanged(tmp_path, healthy_bytes, keep):
    raw, _ = healthy_bytes
    path = tmp_path / "truncated.db"
    path.write_bytes(raw[: int(len(raw) * keep) if keep < 1 else int(keep)])
    before = digest(path)
    with pytest.raises(DatabaseError, match="corrupt"):
        read_everything(path)
    assert digest(path) == before


def test_a_zero_length_file_is_an_empty_database_and_becomes_a_flowstate_one(tmp_path):
    path = tmp_path / "touched.db"
    path.touch()  # SQLite defines an empty file as an empty database, like `sqlite3 touched.db`
    with Orchestrator(path) as orc:
        assert orc.read_flow_runs() == []
        orc.create_flow_run()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID


def test_committed_transitions_left_only_in_the_wal_are_recovered(tmp_path):
    """A copy taken while a writer is alive (as after a crash) holds recent commits only in -wal."""
    path, copy = tmp_path / "live.db", tmp_path / "copy.db"
    orc = Orchestrator(path)
    run = orc.create_flow_run()
    orc.set_flow_run_state(run.id, Running())
    assert Path(f"{path}-wal").stat().st_size > 0
    copy.write_bytes(path.read_bytes())
    Path(f"{copy}-wal").write_bytes(Path(f"{path}-wal").read_bytes())
    orc.close()
    with Orchestrator(copy) as again:
        assert again.read_flow_run(run.id).state_type is flowstate.StateType.RUNNING


def test_a_stale_wal_of_garbage_is_ignored_and_the_database_opens(tmp_path):
    path = tmp_path / "stale.db"
    with Orchestrator(path) as orc:
        run = orc.create_flow_run()
        orc.set_flow_run_state(run.id, Running())
    Path(f"{path}-wal").write_bytes(b"\x37\x7f\x06\x82" + b"\xab" * 5000)  # WAL magic, bad header
    before = digest(path)
    with Orchestrator(path) as orc:
        assert orc.read_flow_run(run.id).state_type is flowstate.StateType.RUNNING
    assert digest(path) == before


def test_opening_a_new_file_waits_for_a_reader_holding_it(tmp_path):
    import threading

    path = tmp_path / "contended.db"
    reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM sqlite_master").fetchone()  # a shared lock, held
    release = threading.Timer(0.3, lambda: reader.execute("COMMIT"))
    release.start()
    try:
        with Orchestrator(path, busy_timeout=10) as orc:  # schema creation + WAL switch wait
            run = orc.create_flow_run(state=Running())
            assert orc.read_flow_run(run.id).state_type is flowstate.StateType.RUNNING
    finally:
        release.join()
        reader.close()


def _change_rows(database: str, statement: str) -> None:
    """Run ``statement`` on ``database`` as another program would (SQLite file or PostgreSQL)."""
    if database.startswith("postgresql"):
        from tests.backends import admin

        with admin(database) as conn:
            conn.execute(statement)
        return
    conn = sqlite3.connect(database)
    conn.execute(statement)
    conn.commit()
    conn.close()


@pytest.mark.parametrize(
    ("statement", "what"),
    [
        ("UPDATE flow_run SET state_type = 'running' WHERE id = '{run}'", "flow run"),
        ("UPDATE flow_run SET deployment_id = 'not-a-uuid' WHERE id = '{run}'", "flow run"),
        ("UPDATE flow_run_state SET timestamp = 'yesterday' WHERE flow_run_id = '{run}'", "state"),
        ("UPDATE task_run SET created = 'soon' WHERE id = '{task}'", "task run"),
        ("UPDATE task_run_state SET type = 'DONE' WHERE task_run_id = '{task}'", "state"),
    ],
    ids=["state_type", "deployment_id", "state_timestamp", "task_created", "task_state_type"],
)
def test_a_row_another_program_wrote_that_flowstate_cannot_read_is_a_database_error(
    database, statement, what
):
    with Orchestrator(database) as orc:
        run = orc.create_flow_run(state=Running())
        task = orc.create_task_run(flow_run_id=run.id, state=Running())
    _change_rows(database, statement.format(run=run.id, task=task.id))
    with Orchestrator(database) as orc:
        flow_side = "task" not in statement
        calls = (
            [lambda: orc.read_flow_run(run.id), lambda: orc.set_flow_run_state(run.id, "COMPLETED")]
            if flow_side
            else [lambda: orc.read_task_run(task.id), lambda: orc.read_task_runs()]
        )
        if "_state " in statement:
            calls.append(
                (lambda: orc.read_flow_run_states(run.id))
                if flow_side
                else (lambda: orc.read_task_run_states(task.id))
            )
        for call in calls:
            with pytest.raises(DatabaseError, match=f"a stored {what} .*cannot be read"):
                call()
        other = orc.create_flow_run()  # the orchestrator goes on
        assert orc.read_flow_run(other.id).id == other.id

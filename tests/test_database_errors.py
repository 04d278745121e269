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
        run = orc.create_flow_run(state=Running())
    with sqlite3.connect(path) as conn:  # turn it back into a version-1 database
        conn.execute("DROP TABLE flow_run_heartbeat")
        conn.execute("DELETE FROM _sqlite_migrations WHERE name = '0002_heartbeats'")
        conn.execute("PRAGMA user_version=1")
    with Orchestrator(path) as orc:
        assert orc.read_flow_run(run.id).state_type is flowstate.StateType.RUNNING
        orc.heartbeat(run.id)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION

"""SQLite: the WAL file does not keep the size a burst of writes (or a long reader) gave it."""

from __future__ import annotations

import os
import sqlite3
import time
from contextlib import closing
from pathlib import Path

from flowstate import Orchestrator
from flowstate.states import Pending, Scheduled
from flowstate.store.wal import CHECK_EVERY, JOURNAL_SIZE_LIMIT, WAL_BOUND


def _wal_size(path: Path) -> int:
    wal = Path(f"{path}-wal")
    return wal.stat().st_size if wal.exists() else 0


def test_the_wal_shrinks_once_a_reader_that_held_it_is_gone(tmp_path: Path) -> None:
    path = tmp_path / "wal.db"
    big = {"blob": "x" * 200_000}
    with Orchestrator(path) as orc, closing(sqlite3.connect(path)) as reader:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM flow_run").fetchall()  # holds its snapshot
        while _wal_size(path) <= WAL_BOUND:  # SQLite cannot restart the log meanwhile
            orc.create_flow_run(parameters=big)
        grown = _wal_size(path)
        reader.execute("COMMIT")
        run = orc.create_flow_run(state=Scheduled())
        for _ in range(CHECK_EVERY):
            orc.set_flow_run_state(run.id, Pending(), force=True)
        assert grown > WAL_BOUND
        assert _wal_size(path) < 1_000_000, (grown, _wal_size(path))
        assert orc.read_flow_runs(limit=1, newest_first=True)[0].id == run.id


def test_the_wal_shrinks_when_the_writer_is_idle(tmp_path: Path) -> None:
    """The checkpoint a commit could not run (a reader held the log) is retried once the
    connection is idle: no further commit is needed."""
    path = tmp_path / "idle.db"
    big = {"blob": "x" * 200_000}
    with Orchestrator(path) as orc, closing(sqlite3.connect(path)) as reader:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM flow_run").fetchall()
        while _wal_size(path) <= WAL_BOUND:
            orc.create_flow_run(parameters=big)
        for _ in range(CHECK_EVERY):  # a check comes, and fails: the reader still holds the log
            orc.create_flow_run()
        assert _wal_size(path) > WAL_BOUND
        reader.execute("COMMIT")
        deadline = time.monotonic() + 5
        while _wal_size(path) > 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _wal_size(path) == 0
        assert len(orc.read_flow_runs()) > CHECK_EVERY


def test_closing_an_orchestrator_empties_the_wal_while_others_stay_open(tmp_path: Path) -> None:
    path = tmp_path / "close.db"
    with closing(sqlite3.connect(path)) as other:
        with Orchestrator(path) as orc:
            for _ in range(20):
                orc.create_flow_run(state=Scheduled())
            other.execute("SELECT count(*) FROM flow_run").fetchall()  # another connection, open
            assert _wal_size(path) > 0
        assert _wal_size(path) == 0
        assert other.execute("SELECT count(*) FROM flow_run").fetchone()[0] == 20


def test_the_journal_size_limit_is_set(tmp_path: Path) -> None:
    with Orchestrator(tmp_path / "limit.db") as orc:
        conn = orc._store.conn  # type: ignore[attr-defined]
        assert conn.execute("PRAGMA journal_size_limit").fetchone()[0] == JOURNAL_SIZE_LIMIT
    assert os.path.exists(tmp_path / "limit.db")

"""Reading a database needs no write access; what cannot work without it says so.

The commands run in a child process as a user the file modes apply to. The suite runs as root
here, and root may write any file whatever its mode, so as root the child runs under
``setpriv`` without the capabilities that override file modes (CAP_DAC_OVERRIDE,
CAP_DAC_READ_SEARCH, CAP_FOWNER): a 0444 file and a 0555 folder then refuse it writes as they
would refuse any user. ``test_the_child_really_may_not_write`` checks that this holds.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowstate import Orchestrator
from flowstate.states import Running

DROP_OVERRIDES = "--bounding-set=-dac_override,-dac_read_search,-fowner"


def as_user(args: list[str]) -> list[str]:
    """``args`` run so that file modes apply (see the module's docstring)."""
    if os.geteuid() != 0:
        return args
    setpriv = shutil.which("setpriv")
    assert setpriv, "as root, these tests need setpriv (util-linux) to drop the mode overrides"
    return [setpriv, DROP_OVERRIDES, *args]


def flowstate(database: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        as_user([sys.executable, "-m", "flowstate", "--database", str(database), *args]),
        capture_output=True,
        text=True,
        timeout=60,
    )


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Path]:
    """A folder holding one database with a run paused for input; made writable again after."""
    where = tmp_path / "shared"
    where.mkdir()
    with Orchestrator(where / "runs.db") as orc:
        run = orc.create_flow_run(flow_name="etl", state=Running())
        orc.create_task_run(flow_run_id=run.id, state=Running())
        orc.pause_flow_run(run.id, key="approval", wait_for_input={"type": "object"})
    (where / "run_id").write_text(str(run.id))
    yield where
    where.chmod(0o755)
    for item in where.iterdir():
        item.chmod(0o644)


def read_everything(database: Path, run_id: str) -> None:
    """Every reading command works and shows the run."""
    for args in (
        ["runs", "ls"],
        ["runs", "ls", "--json"],
        ["runs", "show", run_id],
        ["tasks", "ls"],
        ["runs", "input", run_id],
        ["diagram", "--run", run_id],
    ):
        done = flowstate(database, *args)
        assert done.returncode == 0, (args, done.stderr)
        assert done.stderr == "", (args, done.stderr)
    listed = json.loads(flowstate(database, "runs", "ls", "--json").stdout)
    assert [run["id"] for run in listed] == [run_id]
    assert "approval" in flowstate(database, "runs", "input", run_id).stdout


def test_the_child_really_may_not_write(folder):
    target = folder / "runs.db"
    target.chmod(0o444)
    tried = subprocess.run(
        as_user([sys.executable, "-c", f"open({str(target)!r}, 'ab')"]), capture_output=True, text=True
    )
    assert tried.returncode != 0 and "PermissionError" in tried.stderr


def test_a_read_only_file_can_be_read_and_nothing_is_left_beside_it(folder):
    database, run_id = folder / "runs.db", (folder / "run_id").read_text()
    database.chmod(0o444)
    before = digest(database)
    # (the writer that made it left its writers' queue file, as it would in use)
    assert sorted(p.name for p in folder.iterdir()) == ["run_id", "runs.db", "runs.db-writers"]
    read_everything(database, run_id)
    assert sorted(p.name for p in folder.iterdir()) == ["run_id", "runs.db", "runs.db-writers"]
    assert digest(database) == before


def test_a_write_to_a_read_only_file_is_one_line_saying_read_only(folder):
    database, run_id = folder / "runs.db", (folder / "run_id").read_text()
    database.chmod(0o444)
    before = digest(database)
    done = flowstate(database, "set-state", run_id, "CANCELLED")
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "read-only" in done.stderr
    assert digest(database) == before


@pytest.mark.parametrize("file_mode", [0o444, 0o644])
def test_a_database_in_a_read_only_folder_can_be_read(folder, file_mode):
    database, run_id = folder / "runs.db", (folder / "run_id").read_text()
    database.chmod(file_mode)
    (folder / "run_id").chmod(0o444)
    folder.chmod(0o555)
    before = digest(database)
    read_everything(database, run_id)
    assert digest(database) == before


def test_a_read_only_folder_is_read_through_the_wal_of_a_writer_at_work(folder):
    database = folder / "runs.db"
    with Orchestrator(database) as writer:  # its -wal and -shm stay while it is open
        run = writer.create_flow_run(flow_name="in-the-wal")
        assert (folder / "runs.db-wal").stat().st_size > 0
        for item in folder.iterdir():
            item.chmod(0o644)
        folder.chmod(0o555)
        done = flowstate(database, "runs", "ls", "--json")
        assert done.returncode == 0, done.stderr
        assert str(run.id) in done.stdout
        folder.chmod(0o755)


def test_a_read_only_database_that_needs_a_migration_says_so(folder):
    database = folder / "runs.db"
    with sqlite3.connect(database) as conn:
        conn.execute("PRAGMA user_version=1")
    conn.close()
    database.chmod(0o444)
    before = digest(database)
    done = flowstate(database, "runs", "ls")
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert "needs an upgrade from schema version 1" in done.stderr
    assert "can only be read" in done.stderr
    assert digest(database) == before


def test_the_python_api_reads_a_read_only_database_too(folder):
    database, run_id = folder / "runs.db", (folder / "run_id").read_text()
    database.chmod(0o444)
    folder.chmod(0o555)
    script = (
        "import sys\n"
        "from flowstate import DatabaseError, Orchestrator\n"
        "from flowstate.states import Running\n"
        "with Orchestrator(sys.argv[1]) as orc:\n"
        "    run = orc.read_flow_run(sys.argv[2])\n"
        "    print(run.state.type.value, len(orc.read_flow_run_states(run.id)))\n"
        "    try:\n"
        "        orc.set_flow_run_state(run.id, Running())\n"
        "    except DatabaseError as exc:\n"
        "        print('refused:', exc)\n"
    )
    done = subprocess.run(
        as_user([sys.executable, "-c", script, str(database), run_id]), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.splitlines()
    assert first == "PAUSED 2"
    assert second.startswith("refused:") and "read-only" in second


def test_a_new_database_in_a_folder_the_user_may_not_write_says_permission_denied(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        done = flowstate(locked / "new.db", "runs", "ls")
    finally:
        locked.chmod(0o755)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert "permission denied" in done.stderr and "does not exist" not in done.stderr
    assert list(locked.iterdir()) == []

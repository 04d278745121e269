"""Private by default: a run's parameters and inputs may hold secrets, so the files flowstate
creates are its owner's only. The default folder is made 0700, a new database file and its
-wal and -shm files 0600; an existing file's mode is left as its owner set it."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowstate import Orchestrator


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """The umask most systems give users (022: files 0644, folders 0755 unless asked)."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_the_default_folder_is_created_for_its_owner_only(tmp_path, monkeypatch):
    monkeypatch.delenv("FLOWSTATE_DATABASE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with Orchestrator() as orc:
        orc.create_flow_run(parameters={"token": "s3cret"})
        folder = tmp_path / ".flowstate"
        assert mode(folder) == 0o700
        assert mode(folder / "flowstate.db") == 0o600


def test_a_new_database_file_and_its_wal_and_shm_are_for_their_owner_only(tmp_path):
    path = tmp_path / "runs.db"
    with Orchestrator(path) as orc:
        orc.create_flow_run(parameters={"token": "s3cret"})
        made = sorted(p.name for p in tmp_path.iterdir())
        assert made == ["runs.db", "runs.db-shm", "runs.db-wal", "runs.db-writers"]
        assert {name: mode(tmp_path / name) for name in made} == dict.fromkeys(made, 0o600)


def test_an_existing_file_and_folder_keep_their_modes(tmp_path, monkeypatch):
    path = tmp_path / "shared.db"
    Orchestrator(path).close()
    path.chmod(0o664)
    with Orchestrator(path) as orc:
        orc.create_flow_run()
    assert mode(path) == 0o664
    assert mode(tmp_path / "shared.db-writers") == 0o664  # the writers' queue: as the database
    home = tmp_path / "home"
    (home / ".flowstate").mkdir(parents=True)
    (home / ".flowstate").chmod(0o750)
    monkeypatch.delenv("FLOWSTATE_DATABASE", raising=False)
    monkeypatch.setenv("HOME", str(home))
    Orchestrator().close()
    assert mode(home / ".flowstate") == 0o750


def test_an_empty_file_made_by_the_user_is_used_as_it_is(tmp_path):
    path = tmp_path / "made-by-me.db"
    path.touch(mode=0o640)
    with Orchestrator(path) as orc:
        orc.create_flow_run()
    assert mode(path) == 0o640

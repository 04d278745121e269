"""Which database a ``database`` argument names: an empty one is refused, sqlite:// URLs are paths.

An unset shell variable gives an empty string; it must never open a throwaway database that
loses every run. A ``sqlite:///path`` URL (as SQLAlchemy users write it) names that path, never
a folder called ``sqlite:``.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from flowstate import AsyncOrchestrator, DatabaseError, InvalidState, Orchestrator
from flowstate.cli import main
from flowstate.store.location import sqlite_url_path

ASKS_FOR_MEMORY_OR_DEFAULT = r"(?s)':memory:'.*default"


@pytest.mark.parametrize("empty", ["", "   ", Path("")])
def test_an_empty_database_is_refused_saying_how_to_ask_for_memory_or_the_default(
    empty, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    if isinstance(empty, Path):  # Path("") is ".", the current folder: a directory, refused too
        with pytest.raises(DatabaseError, match="directory"):
            Orchestrator(empty)
        return
    with pytest.raises(InvalidState, match=ASKS_FOR_MEMORY_OR_DEFAULT) as caught:
        Orchestrator(empty)
    assert "None" in str(caught.value)
    assert os.listdir(tmp_path) == []


def test_the_async_orchestrator_refuses_an_empty_database_the_same_way():
    async def open_empty() -> None:
        async with AsyncOrchestrator(""):
            pass

    with pytest.raises(InvalidState, match=ASKS_FOR_MEMORY_OR_DEFAULT):
        asyncio.run(open_empty())


def test_an_empty_flowstate_database_variable_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOWSTATE_DATABASE", "")
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(InvalidState, match=r"FLOWSTATE_DATABASE.*empty.*unset it.*':memory:'"):
        Orchestrator()
    assert not (tmp_path / ".flowstate").exists()


def test_the_cli_refuses_an_empty_database_option_as_a_usage_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for args in (["--database", "", "demo"], ["demo", "--database", ""], ["--database", " ", "runs", "ls"]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2, (args, result.output)
        assert "'--database'" in result.output and "':memory:'" in result.output
        assert "Traceback" not in result.output
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("value", ["", " ", "\t"], ids=["empty", "space", "tab"])
def test_the_cli_refuses_an_empty_flowstate_database_variable_in_one_line(tmp_path, value):
    result = CliRunner().invoke(
        main, ["runs", "ls"], env={"FLOWSTATE_DATABASE": value, "HOME": str(tmp_path)}
    )
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "FLOWSTATE_DATABASE" in lines[0] and "empty" in lines[0]
    assert "--database" not in lines[0]  # the option was not given: the variable was


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///runs.db", "runs.db"),
        ("sqlite:///data/runs.db", "data/runs.db"),
        ("sqlite:////srv/runs.db", "/srv/runs.db"),
        ("sqlite:///:memory:", ":memory:"),
        ("sqlite://", ":memory:"),
        ("SQLite:///runs.db", "runs.db"),
        ("sqlite+pysqlite:///runs.db", "runs.db"),
        ("sqlite:///my%20runs.db", "my runs.db"),
        ("runs.db", "runs.db"),
        ("sqlite_runs.db", "sqlite_runs.db"),
        (":memory:", ":memory:"),
        ("file:runs.db?mode=ro", "file:runs.db?mode=ro"),
    ],
)
def test_sqlite_urls_name_the_path_sqlalchemy_gives_them(url, path):
    assert sqlite_url_path(url) == path


def test_a_sqlite_url_opens_that_file_relative_or_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with Orchestrator("sqlite:///relative.db") as orc:
        run = orc.create_flow_run(flow_name="kept")
        assert orc.database == "relative.db"
    with Orchestrator(f"sqlite:///{tmp_path / 'absolute.db'}") as orc:  # four slashes in all
        assert orc.database == str(tmp_path / "absolute.db")
        orc.create_flow_run()
    assert not (tmp_path / "sqlite:").exists()
    assert (tmp_path / "relative.db").is_file() and (tmp_path / "absolute.db").is_file()
    with Orchestrator(tmp_path / "relative.db") as orc:
        assert orc.read_flow_run(run.id).flow_name == "kept"


def test_sqlite_memory_urls_open_a_database_in_memory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for url in ("sqlite://", "sqlite:///:memory:"):
        with Orchestrator(url) as orc:
            assert orc.database == ":memory:"
            orc.create_flow_run()
    assert os.listdir(tmp_path) == []


def test_the_environment_variable_takes_a_sqlite_url_too(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FLOWSTATE_DATABASE", "sqlite:///env.db")
    with Orchestrator() as orc:
        assert orc.database == "env.db"
    assert (tmp_path / "env.db").is_file() and not (tmp_path / "sqlite:").exists()


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("sqlite://host/runs.db", "no host"),
        ("sqlite:runs.db", "sqlite:///relative"),
        ("sqlite:///runs.db?timeout=5", "no options"),
        ("mysql://user@host/db", "not mysql://"),
        ("http://example.invalid/runs.db", "not http://"),
    ],
)
def test_urls_flowstate_cannot_open_are_refused_clearly(text, says, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InvalidState, match=says):
        Orchestrator(text)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("postgresql+psycopg://ann:s3cr3t@db.example/flows", "not postgresql+psycopg://"),
        ("mysql://ann:s3cr3t@db.example/flows", "not mysql://"),
        ("sqlite://ann:s3cr3t@db.example/runs.db", "no host"),
        ("sqlite:///runs.db?password=s3cr3t", "no options"),
    ],
)
def test_a_refused_url_is_shown_without_its_password(text, says, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InvalidState, match=re.escape(says)) as refused:
        Orchestrator(text)
    assert "s3cr3t" not in str(refused.value)
    monkeypatch.setenv("FLOWSTATE_DATABASE", text)
    with pytest.raises(InvalidState, match=re.escape(says)) as refused:
        Orchestrator()
    assert "s3cr3t" not in str(refused.value)
    assert os.listdir(tmp_path) == []


def test_a_postgresql_url_that_cannot_be_parsed_is_refused_without_its_password():
    pytest.importorskip("psycopg")
    with pytest.raises(DatabaseError, match="not a valid PostgreSQL URL") as refused:
        Orchestrator("postgresql://ann:s3cr3t@[::1/flows")
    shown = [str(refused.value)]
    cause = refused.value.__cause__ or refused.value.__context__
    if cause is not None and not refused.value.__suppress_context__:
        shown.append(str(cause))
    assert not [text for text in shown if "s3cr3t" in text]


def test_the_cli_opens_a_sqlite_url_as_its_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    made = CliRunner().invoke(main, ["--database", "sqlite:///cli.db", "runs", "create", "etl"])
    assert made.exit_code == 0, made.output
    listed = CliRunner().invoke(main, ["--database", str(tmp_path / "cli.db"), "runs", "ls"])
    assert made.output.strip() in listed.output
    assert sorted(os.listdir(tmp_path))[0] == "cli.db" and not (tmp_path / "sqlite:").exists()


def test_a_database_whose_file_name_is_not_utf_8_opens_writes_and_reopens(tmp_path):
    # a name Linux allows and os.listdir gives back as a str with a surrogate escape
    raw = os.fsencode(tmp_path) + b"/runs-\xff.db"
    path = os.fsdecode(raw)
    try:
        open(raw, "wb").close()
        os.unlink(raw)
    except OSError:
        pytest.skip("this file system refuses names that are not UTF-8")
    with Orchestrator(path) as orc:
        run = orc.create_flow_run(flow_name="bytes-named")
    with Orchestrator(path) as orc:
        assert orc.read_flow_run(run.id).flow_name == "bytes-named"
    assert os.path.exists(raw)


@pytest.mark.skipif(sys.platform != "linux", reason="file names of any bytes: Linux")
def test_a_database_whose_path_is_not_utf8_opens_from_python_and_the_cli(tmp_path):
    # Python hands such names over with surrogate escapes (argv, os.listdir, os.fsdecode)
    path = os.path.join(os.fsdecode(bytes(tmp_path)), os.fsdecode(b"runs-\xff.db"))
    with Orchestrator(path) as orc:
        run = orc.create_flow_run(flow_name="latin1")
    with Orchestrator(path) as orc:
        assert orc.read_flow_run(run.id).flow_name == "latin1"
    argv = [sys.executable, "-m", "flowstate", "--database", path, "demo"]
    strict = {**os.environ, "PYTHONIOENCODING": "utf-8:strict"}  # as on a en_US.UTF-8 desktop
    done = subprocess.run([os.fsencode(a) for a in argv], capture_output=True, timeout=120,
                          env=strict)
    assert done.returncode == 0, done.stderr
    assert b"Traceback" not in done.stderr and b"runs-" in done.stdout

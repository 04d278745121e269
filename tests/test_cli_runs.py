"""`flowstate runs ls | show` and `flowstate tasks ls`: tables, JSON, filters and errors."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from flowstate import FlowRun, Orchestrator, State, TaskRun
from flowstate.cli import main
from flowstate.demo import run_demo
from flowstate.states import Completed, Pending, Running, Scheduled


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "runs.db"


@pytest.fixture
def demo_run(database: Path) -> tuple[str, list[str]]:
    """A completed demo flow run and its two task runs."""
    with Orchestrator(str(database)) as orc:
        demo = run_demo(orc)
    return str(demo.flow_run_id), [str(t) for t in demo.task_run_ids]


def invoke(database: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--database", str(database), *args])


def assert_ok(result: Result) -> None:
    assert result.exit_code == 0, result.output
    assert result.exception is None, result.exception


def assert_one_line_error(result: Result, *words: str) -> None:
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    for word in words:
        assert word in result.stderr


def make_runs(database: Path) -> list[str]:
    """Three flow runs, oldest first: SCHEDULED, RUNNING, COMPLETED."""
    with Orchestrator(str(database)) as orc:
        return [
            str(orc.create_flow_run(flow_name=f"f{i}", state=state).id)
            for i, state in enumerate((Scheduled(), Running(), Completed()))
        ]


# -- runs ls --------------------------------------------------------------------------------------


def test_runs_ls_lists_the_newest_first(database: Path) -> None:
    ids = make_runs(database)
    result = invoke(database, "runs", "ls")

    assert_ok(result)
    out = result.stdout
    assert "Flow runs (3)" in out
    assert out.index(ids[2]) < out.index(ids[1]) < out.index(ids[0])
    assert "COMPLETED" in out and "SCHEDULED" in out


def test_runs_ls_json_is_a_list_of_prefect_shaped_flow_runs(database: Path) -> None:
    ids = make_runs(database)
    result = invoke(database, "runs", "ls", "--json")

    assert_ok(result)
    data = json.loads(result.stdout)
    runs = [FlowRun.model_validate(item) for item in data]
    assert [str(run.id) for run in runs] == ids[::-1]
    assert [run.model_dump(mode="json") for run in runs] == data


def test_runs_ls_filters_by_state_and_limits(database: Path) -> None:
    ids = make_runs(database)

    running = json.loads(invoke(database, "runs", "ls", "--state", "running", "--json").stdout)
    newest_two = json.loads(invoke(database, "runs", "ls", "--limit", "2", "--json").stdout)

    assert [item["id"] for item in running] == [ids[1]]
    assert [item["id"] for item in newest_two] == [ids[2], ids[1]]


def test_runs_ls_on_an_empty_database_shows_an_empty_table(database: Path) -> None:
    result = invoke(database, "runs", "ls")
    assert_ok(result)
    assert "Flow runs (0)" in result.stdout
    assert invoke(database, "runs", "ls", "--json").stdout.strip() == "[]"


def test_runs_ls_rejects_a_bad_limit_as_a_usage_error(database: Path) -> None:
    assert invoke(database, "runs", "ls", "--limit", "0").exit_code == 2


def _many_runs(database: Path, count: int, flow_name: str = "many") -> list[str]:
    with Orchestrator(str(database)) as orc:
        with orc.transaction():
            return [
                str(orc.create_flow_run(flow_name=flow_name, state=Scheduled()).id)
                for _ in range(count)
            ]


def test_runs_ls_shows_the_20_newest_by_default_and_the_rest_with_offset_or_all(
    database: Path,
) -> None:
    ids = _many_runs(database, 25)[::-1]  # newest first

    def listed(*args: str) -> list[str]:
        result = invoke(database, "runs", "ls", *args, "--json")
        assert_ok(result)
        return [item["id"] for item in json.loads(result.stdout)]

    assert listed() == ids[:20]
    assert listed("--offset", "20") == ids[20:]
    assert listed("--limit", "5", "--offset", "3") == ids[3:8]
    assert listed("--all") == ids
    table = invoke(database, "runs", "ls")
    assert "Flow runs (20 shown, newest first; --offset 20 for the next, --all" in table.stdout
    assert "Flow runs (25)" in invoke(database, "runs", "ls", "--all").stdout


def test_runs_ls_and_tasks_ls_filter_by_flow_name(database: Path) -> None:
    ours = _many_runs(database, 2, "ours")
    _many_runs(database, 3, "theirs")
    with Orchestrator(str(database)) as orc:
        task = orc.create_task_run(flow_run_id=ours[0], state=Pending())
        run = orc.read_flow_runs(flow_name="theirs", limit=1)[0]
        orc.create_task_run(flow_run_id=run.id, state=Pending())

    runs = json.loads(invoke(database, "runs", "ls", "--flow", "ours", "--json").stdout)
    tasks = json.loads(invoke(database, "tasks", "ls", "--flow", "ours", "--json").stdout)

    assert [item["id"] for item in runs] == ours[::-1]
    assert [item["id"] for item in tasks] == [str(task.id)]
    assert json.loads(invoke(database, "runs", "ls", "--flow", "nobody", "--json").stdout) == []


def test_runs_ls_decodes_only_the_runs_it_shows(database: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The limit is applied by the database: listing 5 of 30 runs reads 5 rows, not 30."""
    from flowstate.store import rows

    _many_runs(database, 30)
    decoded = []
    original = rows.flow_run_from_row
    monkeypatch.setattr(rows, "flow_run_from_row", lambda row: decoded.append(1) or original(row))

    assert_ok(invoke(database, "runs", "ls", "--limit", "5"))
    assert len(decoded) == 5


def test_tasks_ls_shows_the_20_newest_by_default(database: Path) -> None:
    with Orchestrator(str(database)) as orc:
        ids = [str(orc.create_task_run(state=Pending()).id) for _ in range(22)][::-1]
    data = json.loads(invoke(database, "tasks", "ls", "--json").stdout)
    every = json.loads(invoke(database, "tasks", "ls", "--all", "--json").stdout)
    page = json.loads(invoke(database, "tasks", "ls", "--offset", "20", "--json").stdout)
    assert [item["id"] for item in data] == ids[:20]
    assert [item["id"] for item in every] == ids
    assert [item["id"] for item in page] == ids[20:]


def test_a_command_waiting_for_the_write_lock_says_so_once_and_honours_busy_timeout(
    database: Path,
) -> None:
    import sqlite3
    import time

    ids = make_runs(database)
    holder = sqlite3.connect(database, isolation_level=None, timeout=0)
    holder.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        result = invoke(database, "--busy-timeout", "1.5", "set-state", ids[0], "PENDING")
        took = time.monotonic() - started
    finally:
        holder.close()
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2, lines
    assert "waiting for the write lock" in lines[0] and str(database) in lines[0]
    assert "DatabaseBusy" in lines[1]
    assert 1.5 <= took < 3
    # reading needs no write lock: it never waits
    holder = sqlite3.connect(database, isolation_level=None, timeout=0)
    holder.execute("BEGIN IMMEDIATE")
    try:
        listed = invoke(database, "--busy-timeout", "0", "runs", "ls", "--json")
    finally:
        holder.close()
    assert_ok(listed)
    assert len(json.loads(listed.stdout)) == 3


def test_a_negative_busy_timeout_is_a_usage_error(database: Path) -> None:
    assert invoke(database, "--busy-timeout", "-1", "runs", "ls").exit_code == 2


# -- runs show ------------------------------------------------------------------------------------


def test_runs_show_prints_fields_and_the_history_with_durations(
    database: Path, demo_run: tuple[str, list[str]]
) -> None:
    flow_run_id, _ = demo_run
    result = invoke(database, "runs", "show", flow_run_id)

    assert_ok(result)
    out = result.stdout
    assert flow_run_id in out and "demo-etl" in out
    assert "State history" in out and "duration" in out
    history = out[out.index("State history"):]
    order = [history.index(word) for word in ("SCHEDULED", "PENDING", "PAUSED", "COMPLETED")]
    assert order == sorted(order)
    assert " ms " in history or " s " in history


def test_runs_show_json_has_the_run_and_its_states(
    database: Path, demo_run: tuple[str, list[str]]
) -> None:
    flow_run_id, _ = demo_run
    data = json.loads(invoke(database, "runs", "show", flow_run_id, "--json").stdout)

    assert set(data) == {"flow_run", "states"}
    run = FlowRun.model_validate(data["flow_run"])
    states = [State.model_validate(item) for item in data["states"]]
    assert run.model_dump(mode="json") == data["flow_run"]
    assert [s.type.value for s in states] == [
        "SCHEDULED", "PENDING", "RUNNING", "PAUSED", "RUNNING", "COMPLETED"
    ]


def test_runs_show_a_task_run(database: Path, demo_run: tuple[str, list[str]]) -> None:
    _, task_ids = demo_run
    table = invoke(database, "runs", "show", task_ids[0])
    data = json.loads(invoke(database, "runs", "show", task_ids[0], "--json").stdout)

    assert_ok(table)
    assert "Task run" in table.stdout and "demo-etl.extract" in table.stdout
    assert TaskRun.model_validate(data["task_run"]).task_key == "demo-etl.extract"
    assert len(data["states"]) == 3


def test_runs_show_a_running_run_says_how_long_so_far(database: Path) -> None:
    with Orchestrator(str(database)) as orc:
        run_id = str(orc.create_flow_run(state=Running()).id)
    result = invoke(database, "runs", "show", run_id)
    assert_ok(result)
    assert "so far" in result.stdout


def test_runs_show_an_unknown_id_is_one_line(database: Path) -> None:
    unknown = str(uuid.uuid4())
    assert_one_line_error(invoke(database, "runs", "show", unknown), "ObjectNotFound", unknown)


# -- tasks ls -------------------------------------------------------------------------------------


def test_tasks_ls_of_a_flow_run(database: Path, demo_run: tuple[str, list[str]]) -> None:
    flow_run_id, task_ids = demo_run
    with Orchestrator(str(database)) as orc:  # a task run of another flow run is not listed
        other = orc.create_flow_run()
        orc.create_task_run(flow_run_id=other.id, task_key="elsewhere", state=Pending())

    table = invoke(database, "tasks", "ls", "--flow-run", flow_run_id)
    data = json.loads(invoke(database, "tasks", "ls", "--flow-run", flow_run_id, "--json").stdout)

    assert_ok(table)
    assert "Task runs (2)" in table.stdout and "elsewhere" not in table.stdout
    assert [str(TaskRun.model_validate(item).id) for item in data] == task_ids[::-1]


def test_tasks_ls_without_a_flow_run_lists_all(database: Path, demo_run: tuple[str, list[str]]) -> None:
    data = json.loads(invoke(database, "tasks", "ls", "--state", "COMPLETED", "--json").stdout)
    assert len(data) == 2


def test_tasks_ls_of_an_unknown_flow_run_is_one_line(database: Path) -> None:
    result = invoke(database, "tasks", "ls", "--flow-run", str(uuid.uuid4()))
    assert_one_line_error(result, "ObjectNotFound")


def test_an_unreadable_database_is_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "a-directory.db"
    folder.mkdir()
    assert_one_line_error(invoke(folder, "runs", "ls"), "DatabaseError")


def test_the_database_option_after_the_command_and_the_environment(
    database: Path, demo_run: tuple[str, list[str]]
) -> None:
    after = CliRunner().invoke(main, ["runs", "ls", "--json", "--database", str(database)])
    env = CliRunner().invoke(main, ["runs", "ls", "--json"], env={"FLOWSTATE_DATABASE": str(database)})
    assert len(json.loads(after.stdout)) == len(json.loads(env.stdout)) == 1


# -- the real process -----------------------------------------------------------------------------


def test_python_dash_m_flowstate_runs_show(database: Path, demo_run: tuple[str, list[str]]) -> None:
    flow_run_id, _ = demo_run
    process = subprocess.run(
        [sys.executable, "-m", "flowstate", "--database", str(database), "runs", "show", flow_run_id],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert process.returncode == 0, process.stderr
    assert "State history" in process.stdout and "COMPLETED" in process.stdout


def test_names_and_messages_are_shown_as_written_never_as_rich_markup(database: Path) -> None:
    with Orchestrator(str(database)) as orc:
        run = orc.create_flow_run(flow_name="[bold]f", name="[red]n[/red]",
                                  state=Running(message="[blue]m[/blue]"))
        task = orc.create_task_run(flow_run_id=run.id, name="[i]t", task_key="[u]k")
    for args, texts in ((("runs", "ls"), ["[bold]f/[red]n[/red]"]),
                        (("tasks", "ls"), ["[i]t", "[u]k"]),
                        (("runs", "show", str(run.id)), ["[red]n[/red]", "[blue]m[/blue]"]),
                        (("runs", "show", str(task.id)), ["[i]t", "[u]k"])):
        result = CliRunner().invoke(main, ["--database", str(database), *args],
                                    env={"COLUMNS": "250"})
        assert_ok(result)
        for text in texts:
            assert text in result.output, (args, result.output)


def test_the_runs_group_help_names_what_its_commands_do() -> None:
    listed = CliRunner().invoke(main, ["--help"]).output.split("\n  runs", 1)[1].split("\n")[0]
    shown = CliRunner().invoke(main, ["runs", "--help"]).output
    assert all(said in listed for said in ("Create", "list", "show")), listed
    assert all(said in shown for said in ("Create", "list", "show", "input")), shown

"""`flowstate demo`: the scenario itself, its table and JSON output, and its error handling."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import flowstate
from flowstate.cli import main
from flowstate.demo import run_demo

# schedule, submit, start, pause, resume (invalid), resume (valid), 2 tasks x 3, complete
EXPECTED_STATUSES = ["ACCEPT"] * 4 + ["REJECT"] + ["ACCEPT"] * 8


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "x.db"


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env)


def assert_clean_exit(result: Result) -> None:
    """Exit code 0, and no exception escaped the command."""
    assert result.exit_code == 0, result.output
    assert result.exception is None, result.exception


# -- the scenario, without the CLI ----------------------------------------------------------------


def test_the_demo_is_rejected_once_for_invalid_input_and_otherwise_accepted() -> None:
    with flowstate.Orchestrator(":memory:") as orc:
        demo = run_demo(orc)
        statuses = [step.result.status.value for step in demo.steps]
        run = orc.read_flow_run(demo.flow_run_id)

    assert statuses == EXPECTED_STATUSES
    rejected = demo.steps[4].result
    assert rejected.state is not None and rejected.state.type.value == "PAUSED"
    assert "approved" in (rejected.reason or "")
    assert run.state_type.value == "COMPLETED"
    assert demo.pause_key in run.empirical_policy.pause_keys


def test_the_demo_stores_the_schema_and_the_accepted_input_under_the_keyset() -> None:
    with flowstate.Orchestrator(":memory:") as orc:
        demo = run_demo(orc)
        keyset = demo.run_input_keyset
        schema = orc.read_flow_run_input(demo.flow_run_id, keyset["schema"])
        response = orc.read_flow_run_input(demo.flow_run_id, keyset["response"])

    assert keyset["schema"] == f"paused-{demo.pause_key}-schema"
    assert json.loads(schema)["required"] == ["approved"]
    assert json.loads(response) == {"approved": True, "reviewer": "ada"}


def test_each_demo_uses_a_fresh_run_and_pause_key() -> None:
    with flowstate.Orchestrator(":memory:") as orc:
        first, second = run_demo(orc), run_demo(orc)
    assert first.flow_run_id != second.flow_run_id
    assert first.pause_key != second.pause_key


# -- the command ----------------------------------------------------------------------------------


def test_demo_prints_reject_for_the_invalid_resume_and_completed_at_the_end(database: Path) -> None:
    result = invoke("--database", str(database), "demo")

    assert_clean_exit(result)
    out = result.stdout
    assert "REJECT" in out and "ACCEPT" in out
    assert out.count("REJECT") == 1  # only the invalid resume
    assert "COMPLETED" in out
    assert out.rindex("COMPLETED") > out.index("REJECT")
    assert "paused-approval-" in out  # the run input read back
    assert str(database) in out.replace("\n", "")


def test_demo_json_prints_one_orchestration_result_per_line(database: Path) -> None:
    result = invoke("--database", str(database), "demo", "--json")

    assert_clean_exit(result)
    lines = result.stdout.splitlines()
    results = [flowstate.OrchestrationResult.model_validate(json.loads(line)) for line in lines]
    assert [r.status.value for r in results] == EXPECTED_STATUSES
    assert results[-1].state is not None and results[-1].state.type.value == "COMPLETED"
    assert json.loads(lines[4])["details"]["type"] in {"abort_details", "reject_details"}


def test_demo_twice_on_the_same_database_makes_two_runs(database: Path) -> None:
    assert_clean_exit(invoke("--database", str(database), "demo"))
    assert_clean_exit(invoke("--database", str(database), "demo", "--json"))

    with flowstate.Orchestrator(str(database)) as orc:
        runs = orc.read_flow_runs()
    assert len(runs) == 2
    assert {run.state_type.value for run in runs} == {"COMPLETED"}


def test_demo_uses_the_database_named_by_the_environment(database: Path) -> None:
    result = invoke("demo", "--json", env={"FLOWSTATE_DATABASE": str(database)})

    assert_clean_exit(result)
    assert database.exists()
    with flowstate.Orchestrator(str(database)) as orc:
        assert len(orc.read_flow_runs()) == 1


def test_the_database_option_wins_over_the_environment(tmp_path: Path) -> None:
    chosen, ignored = tmp_path / "chosen.db", tmp_path / "ignored.db"
    env = {"FLOWSTATE_DATABASE": str(ignored)}
    result = invoke("--database", str(chosen), "demo", "--json", env=env)

    assert_clean_exit(result)
    assert chosen.exists() and not ignored.exists()


def test_demo_accepts_the_database_option_after_the_command_name(database: Path) -> None:
    result = invoke("demo", "--database", str(database), "--json")

    assert_clean_exit(result)
    with flowstate.Orchestrator(str(database)) as orc:
        assert len(orc.read_flow_runs()) == 1


def test_without_an_option_or_environment_the_demo_uses_the_home_database(tmp_path: Path) -> None:
    env: dict[str, str | None] = {"FLOWSTATE_DATABASE": None, "HOME": str(tmp_path)}
    result = CliRunner().invoke(main, ["demo"], env=env)

    assert_clean_exit(result)
    default = tmp_path / ".flowstate" / "flowstate.db"
    assert default.exists()
    assert str(default) in result.stdout.replace("\n", "")


@pytest.fixture(params=["directory", "garbage-file"])
def unreadable_database(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    if request.param == "directory":
        path = tmp_path / "a-directory.db"
        path.mkdir()
    else:
        path = tmp_path / "garbage.db"
        path.write_bytes(b"this is certainly not an SQLite file\x00\xff" * 200)
    return path


def test_an_unreadable_database_is_one_line_on_stderr(unreadable_database: Path) -> None:
    result = invoke("--database", str(unreadable_database), "demo")

    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # not a crash
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.output
    assert result.stdout == ""


# -- the real process -----------------------------------------------------------------------------


def run_module(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flowstate", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_python_dash_m_flowstate_demo_exits_zero(database: Path) -> None:
    process = run_module("--database", str(database), "demo")

    assert process.returncode == 0, process.stderr
    assert "REJECT" in process.stdout and "COMPLETED" in process.stdout


def test_python_dash_m_flowstate_reports_a_garbage_database_in_one_line(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"\xde\xad\xbe\xef" * 1024)

    process = run_module("--database", str(garbage), "demo")

    assert process.returncode != 0
    assert "Traceback" not in process.stderr
    assert len(process.stderr.strip().splitlines()) == 1, process.stderr


def test_importing_the_cli_does_not_load_rich() -> None:
    code = "import sys, flowstate.cli, flowstate.demo; print('rich' in sys.modules)"
    process = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert process.stdout.strip() == "False"

"""`flowstate set-state | pause | resume | cancel`: results, exit codes, JSON and errors."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from flowstate import OrchestrationResult, Orchestrator
from flowstate._time import utcnow
from flowstate.cli import EXIT_CODES, main
from flowstate.states import Completed, Paused, Pending, Running, Scheduled, State


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "steer.db"


def make_flow_run(database: Path, state: State | None = None, **fields: object) -> str:
    with Orchestrator(str(database)) as orc:
        return str(orc.create_flow_run(state=state, **fields).id)  # type: ignore[arg-type]


def invoke(database: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--database", str(database), *args])


def json_result(result: Result) -> OrchestrationResult:
    """The command's stdout validated as Prefect's OrchestrationResult, dumped back identically."""
    data = json.loads(result.stdout)
    parsed = OrchestrationResult.model_validate(data)
    assert parsed.model_dump(mode="json") == data
    return parsed


def assert_one_line_error(result: Result, *words: str) -> None:
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in result.stderr


def test_exit_codes_are_distinct_per_status() -> None:
    assert EXIT_CODES == {"ACCEPT": 0, "REJECT": 3, "WAIT": 4, "ABORT": 5}


# -- set-state ------------------------------------------------------------------------------------


def test_set_state_accept_prints_the_change_and_exits_zero(database: Path) -> None:
    run_id = make_flow_run(database)
    result = invoke(database, "set-state", run_id, "scheduled")

    assert result.exit_code == 0, result.output
    assert "ACCEPT" in result.stdout
    assert "— → SCHEDULED (Scheduled)" in result.stdout


def test_set_state_reject_exits_three_with_the_reason(database: Path) -> None:
    run_id = make_flow_run(database, Scheduled())
    result = invoke(database, "set-state", run_id, "PAUSED")

    assert result.exit_code == 3
    assert "REJECT" in result.stdout
    assert "Cannot pause flows that are not currently running." in result.stdout
    assert "SCHEDULED (Scheduled) (unchanged)" in result.stdout


def test_set_state_abort_exits_five_and_force_accepts(database: Path) -> None:
    run_id = make_flow_run(database, Pending())

    aborted = invoke(database, "set-state", run_id, "PENDING", "--json")
    forced = invoke(database, "set-state", run_id, "PENDING", "--force", "--json")

    assert aborted.exit_code == 5
    assert json_result(aborted).reason == (
        "This run is in a PENDING state and cannot transition to a PENDING state."
    )
    assert forced.exit_code == 0
    assert json_result(forced).status.value == "ACCEPT"


def test_set_state_wait_exits_four_with_the_delay(database: Path) -> None:
    run_id = make_flow_run(database, Scheduled(scheduled_time=utcnow() + timedelta(hours=1)))

    table = invoke(database, "set-state", run_id, "RUNNING")
    as_json = json_result(invoke(database, "set-state", run_id, "RUNNING", "--json"))

    assert table.exit_code == 4
    assert "WAIT" in table.stdout and "retry in" in table.stdout
    assert as_json.status.value == "WAIT"
    assert 3500 < as_json.details.delay_seconds <= 3600  # type: ignore[union-attr]


def test_set_state_passes_name_and_message(database: Path) -> None:
    run_id = make_flow_run(database, Scheduled())
    result = invoke(database, "set-state", run_id, "RUNNING", "--name", "Warming",
                    "--message", "up", "--json")

    state = json_result(result).state
    assert state is not None and (state.name, state.message) == ("Warming", "up")


def test_set_state_works_on_a_task_run(database: Path) -> None:
    with Orchestrator(str(database)) as orc:
        task_id = str(orc.create_task_run(task_key="t").id)
    result = invoke(database, "set-state", task_id, "PENDING")

    assert result.exit_code == 0, result.output
    assert f"task run {task_id}" in result.stdout


def test_set_state_rejects_an_unknown_type_as_a_usage_error(database: Path) -> None:
    result = invoke(database, "set-state", make_flow_run(database), "DONE")
    assert result.exit_code == 2
    assert "Traceback" not in result.output


# -- pause, resume, cancel ------------------------------------------------------------------------


def test_pause_with_key_and_timeout_then_the_same_key_again_is_rejected(database: Path) -> None:
    run_id = make_flow_run(database, Running())

    first = invoke(database, "pause", run_id, "--key", "approval", "--timeout", "60", "--json")
    assert first.exit_code == 0, first.output
    state = json_result(first).state
    assert state is not None and state.type.value == "PAUSED"
    assert state.state_details.pause_key == "approval"
    assert state.state_details.pause_timeout is not None

    assert invoke(database, "resume", run_id).exit_code == 0
    again = invoke(database, "pause", run_id, "--key", "approval")
    assert again.exit_code == 3
    assert "REJECT" in again.stdout


def test_pause_reschedule_without_a_deployment_aborts(database: Path) -> None:
    result = invoke(database, "pause", make_flow_run(database, Running()), "--reschedule",
                    "--key", "k")
    assert result.exit_code == 5
    assert "Cannot suspend flows without a deployment." in result.stdout


def test_pause_reschedule_with_a_deployment_suspends(database: Path) -> None:
    run_id = make_flow_run(database, Running(), deployment_id=uuid.uuid4())
    result = invoke(database, "pause", run_id, "--reschedule", "--key", "k", "--json")
    assert result.exit_code == 0, result.output
    state = json_result(result).state
    assert state is not None and state.state_details.pause_reschedule is True


def _paused_for_input(database: Path) -> str:
    keyset = {p: f"paused-k-{p}" for p in ("description", "response", "schema")}
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    with Orchestrator(str(database)) as orc:
        run = orc.create_flow_run(state=Running())
        orc.set_flow_run_state(run.id, Paused(pause_key="k", run_input_keyset=keyset))
        orc.create_flow_run_input(run.id, keyset["schema"], json.dumps(schema))
    return str(run.id)


def test_resume_with_invalid_input_is_rejected_and_valid_input_accepted(database: Path) -> None:
    run_id = _paused_for_input(database)

    rejected = invoke(database, "resume", run_id, "--input", '{"ok": "yes"}', "--json")
    accepted = invoke(database, "resume", run_id, "--input", '{"ok": true}', "--json")

    assert rejected.exit_code == 3
    assert json_result(rejected).details.type == "abort_details"  # Prefect's shape for this REJECT
    assert accepted.exit_code == 0, accepted.output
    with Orchestrator(str(database)) as orc:
        assert json.loads(orc.read_flow_run_input(run_id, "paused-k-response")) == {"ok": True}


def test_resume_reads_input_from_a_file(database: Path, tmp_path: Path) -> None:
    run_id = _paused_for_input(database)
    path = tmp_path / "input.json"
    path.write_text('{"ok": true}')

    result = invoke(database, "resume", run_id, "--input", f"@{path}")

    assert result.exit_code == 0, result.output
    assert "PAUSED (Paused) → RUNNING (Running)" in result.stdout


def test_resume_of_a_run_that_is_not_paused_aborts_without_a_state(database: Path) -> None:
    result = invoke(database, "resume", make_flow_run(database, Running()), "--json")
    assert result.exit_code == 5
    parsed = json_result(result)
    assert parsed.state is None and parsed.reason == "Cannot resume a flow run that is not paused."


@pytest.mark.parametrize(
    ("given", "words"),
    [
        ("{not json", ["--input is not valid JSON"]),
        ("[1, 2]", ["must be a JSON object, not an array"]),
        ("null", ["must be a JSON object, not null"]),
        ('"yes"', ["must be a JSON object, not a string"]),
        ("true", ["must be a JSON object, not a boolean"]),
        ("3.5", ["must be a JSON object, not a number"]),
        ("@/no/such/input.json", ["cannot read run input file"]),
    ],
)
def test_invalid_resume_input_is_one_line(database: Path, given: str, words: list[str]) -> None:
    result = invoke(database, "resume", _paused_for_input(database), "--input", given)
    assert_one_line_error(result, *words)


def test_cancel_a_running_run_accepts_cancelling(database: Path) -> None:
    result = invoke(database, "cancel", make_flow_run(database, Running()), "--json")
    assert result.exit_code == 0
    state = json_result(result).state
    assert state is not None and state.type.value == "CANCELLING"


def test_cancel_a_scheduled_run_is_rejected_with_a_cancelled_state(database: Path) -> None:
    result = invoke(database, "cancel", make_flow_run(database, Scheduled()))
    assert result.exit_code == 3
    assert "SCHEDULED (Scheduled) → CANCELLED (Cancelled)" in result.stdout
    assert "no infrastructure to terminate" in result.stdout


def test_cancel_a_completed_run_aborts(database: Path) -> None:
    result = invoke(database, "cancel", make_flow_run(database, Completed()))
    assert result.exit_code == 5
    assert "Run is already in terminal state COMPLETED." in result.stdout


# -- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["set-state", "pause", "resume", "cancel"])
def test_an_unknown_id_is_one_line(database: Path, command: str) -> None:
    args = [command, str(uuid.uuid4())] + (["RUNNING"] if command == "set-state" else [])
    assert_one_line_error(invoke(database, *args), "ObjectNotFound")


def test_a_malformed_id_is_one_line(database: Path) -> None:
    assert_one_line_error(invoke(database, "cancel", "not-a-uuid"), "not a UUID")


def test_pausing_a_task_run_is_one_line(database: Path) -> None:
    with Orchestrator(str(database)) as orc:
        task_id = str(orc.create_task_run(task_key="t").id)
    assert_one_line_error(invoke(database, "pause", task_id), "is a task run")


def test_an_unreadable_database_is_one_line(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"\xde\xad\xbe\xef" * 1024)
    assert_one_line_error(invoke(garbage, "cancel", str(uuid.uuid4())), "DatabaseError")


# -- the real process -----------------------------------------------------------------------------


def test_python_dash_m_flowstate_pause_exits_with_the_status_code(database: Path) -> None:
    run_id = make_flow_run(database, Scheduled())
    command = [sys.executable, "-m", "flowstate", "--database", str(database), "pause", run_id]

    process = subprocess.run([*command, "--json"], capture_output=True, text=True, timeout=60)

    assert process.returncode == 3, process.stderr
    assert OrchestrationResult.model_validate_json(process.stdout).status.value == "REJECT"


@pytest.mark.parametrize("timeout", ["inf", "1e300", "1e13", "nan"])
def test_a_pause_timeout_out_of_range_is_one_line(database: Path, timeout: str) -> None:
    run_id = make_flow_run(database, Running())
    result = invoke(database, "pause", run_id, "--timeout", timeout)
    assert_one_line_error(result, "InvalidState", "timeout")
    with Orchestrator(str(database)) as orc:
        assert orc.read_flow_run(run_id).state.type.value == "RUNNING"

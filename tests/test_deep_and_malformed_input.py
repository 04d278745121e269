"""Input nested deeper than Python's recursion limit, and state arguments of the wrong type.

Each is ``InvalidState`` naming the field (or, from the CLI, one line naming the option and exit
code 1), never a ``RecursionError`` or a pydantic ``ValidationError``; nothing is written.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from flowstate import InvalidState, Orchestrator
from flowstate.cli import main
from flowstate.states import Paused, Running, Scheduled, StateType

DEPTH = 100_000


def deep_object() -> dict:
    outer: dict = {}
    inner = outer
    for _ in range(DEPTH):
        inner["a"] = {}
        inner = inner["a"]
    return outer


def deep_object_text() -> str:
    return '{"a":' * DEPTH + "1" + "}" * DEPTH


def deep_list_text() -> str:
    return "[" * DEPTH + "]" * DEPTH


@pytest.fixture
def paused(tmp_path: Path) -> tuple[Path, str]:
    """A database holding one flow run paused for input, and the run's id."""
    path = tmp_path / "runs.db"
    with Orchestrator(path) as orc:
        run = orc.create_flow_run(state=Running())
        orc.pause_flow_run(run.id, key="approval", wait_for_input={"type": "object"})
    return path, str(run.id)


def history(path: Path, run_id: str) -> list[str]:
    with Orchestrator(path) as orc:
        return [state.type.value for state in orc.read_flow_run_states(run_id)]


# -- the command line -----------------------------------------------------------------------------


@pytest.mark.parametrize("text", [deep_object_text(), deep_list_text()], ids=["object", "list"])
def test_resume_with_an_input_file_nested_too_deeply_is_one_line_and_exit_1(paused, tmp_path, text):
    path, run_id = paused
    deep = tmp_path / "deep.json"
    deep.write_text(text)
    result = CliRunner().invoke(main, ["--database", str(path), "resume", run_id, "--input", f"@{deep}"])
    assert result.exit_code == 1, result.output
    assert not isinstance(result.exception, RecursionError)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and str(deep) in lines[0] and "nested too deeply" in lines[0]
    assert history(path, run_id) == ["RUNNING", "PAUSED"]


def test_resume_with_inline_input_nested_too_deeply_names_the_option(paused):
    path, run_id = paused
    result = CliRunner().invoke(
        main, ["--database", str(path), "resume", run_id, "--input", deep_object_text()]
    )
    assert result.exit_code == 1, result.output
    assert result.output.strip().splitlines() == [
        "Error: --input is nested too deeply to read (more than Python's recursion limit)"
    ]


def test_pause_with_a_schema_file_nested_too_deeply_is_one_line_and_exit_1(tmp_path):
    path = tmp_path / "runs.db"
    with Orchestrator(path) as orc:
        run = orc.create_flow_run(state=Running())
    deep = tmp_path / "schema.json"
    deep.write_text(deep_object_text())
    result = CliRunner().invoke(
        main, ["--database", str(path), "pause", str(run.id), "--schema", f"@{deep}"]
    )
    assert result.exit_code == 1, result.output
    assert len(result.output.strip().splitlines()) == 1 and "nested too deeply" in result.output
    assert history(path, str(run.id)) == ["RUNNING"]


# -- Python ---------------------------------------------------------------------------------------


def test_resume_flow_run_with_input_nested_too_deeply_is_invalid_state(paused):
    path, run_id = paused
    with Orchestrator(path) as orc:
        with pytest.raises(InvalidState, match="run_input"):
            orc.resume_flow_run(run_id, deep_object())
    assert history(path, run_id) == ["RUNNING", "PAUSED"]


def test_a_json_placeholder_nested_too_deeply_refuses_the_resume_with_a_reason(paused):
    path, run_id = paused
    placeholder = {"__prefect_kind": "json", "value": deep_list_text()}
    with Orchestrator(path) as orc:
        result = orc.resume_flow_run(run_id, {"answer": placeholder})
    assert result.status.value == "REJECT"
    assert "nested too deeply" in (result.details.reason or "")
    assert history(path, run_id) == ["RUNNING", "PAUSED"]


@pytest.mark.parametrize(
    ("proposal", "field"),
    [
        (lambda: {"type": "COMPLETED", "data": deep_object()}, "state.data"),
        (lambda: '{"type": "COMPLETED", "data": ' + deep_list_text() + "}", "recursion limit"),
        (lambda: {"type": "PAUSED", "state_details": {"run_input_keyset": deep_object()}}, "run_input_keyset"),
        (lambda: {"type": "RUNNING", "name": deep_object()}, "name"),
    ],
    ids=["data", "json-text", "details", "name"],
)
def test_set_state_with_data_nested_too_deeply_is_invalid_state_naming_the_field(proposal, field):
    with Orchestrator(":memory:") as orc:
        run = orc.create_flow_run(state=Running())
        task = orc.create_task_run(flow_run_id=run.id, state=Running())
        with pytest.raises(InvalidState, match=field):
            orc.set_flow_run_state(run.id, proposal())
        with pytest.raises(InvalidState, match=field):
            orc.set_task_run_state(task.id, proposal())
        assert [s.type for s in orc.read_flow_run_states(run.id)] == [StateType.RUNNING]


# -- state constructors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: Scheduled("tomorrow"), "scheduled_time"),
        (lambda: Scheduled(scheduled_time=[2030, 1, 1]), "scheduled_time"),
        (lambda: Running(no_such_detail=1), "no_such_detail"),
        (lambda: Running(name=3), "name"),
        (lambda: Paused(timeout_seconds=1e13), "timeout_seconds"),
        (lambda: Paused(timeout_seconds=float("inf")), "timeout_seconds"),
        (lambda: Paused(timeout_seconds="60"), "timeout_seconds"),
    ],
)
def test_a_state_constructor_with_a_bad_argument_is_invalid_state_naming_it(build, field):
    with pytest.raises(InvalidState, match=field):
        build()


def test_a_valid_scheduled_time_still_builds_the_state():
    when = datetime(2030, 1, 1, tzinfo=timezone.utc)
    assert Scheduled(when).state_details.scheduled_time == when
    assert Scheduled("2030-01-01T00:00:00Z").state_details.scheduled_time == when


# -- values deeper than Prefect-shaped JSON can carry ---------------------------------------------
#
# Python's json module writes values nested ~990 levels deep, but pydantic stops serialising at
# about 250 levels and reading JSON text at about 200: a value nested 300 deep, once written,
# could be read back only through a ValueError (``model_dump(mode="json")``, every ``--json``
# listing of the database). Such values are refused before anything is written.

TOO_DEEP = 300


def nested(depth: int, leaf: object = 1) -> object:
    """``leaf`` inside ``depth`` lists: ``nested(2) == [[1]]``."""
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    "kind", ["parameters", "flow data", "task data", "run input", "placeholder"]
)
def test_a_value_nested_deeper_than_prefect_json_carries_is_refused_and_nothing_written(kind):
    deep = {"a": nested(TOO_DEEP)}
    with Orchestrator(":memory:") as orc:
        run = orc.create_flow_run(state=Running())
        task = orc.create_task_run(flow_run_id=run.id, state=Running())
        if kind == "parameters":
            with pytest.raises(InvalidState, match="parameters.*nested more than"):
                orc.create_flow_run(parameters=deep)
            assert len(orc.read_flow_runs()) == 1
        elif kind in ("flow data", "task data"):
            run_id, propose, read = (
                (run.id, orc.set_flow_run_state, orc.read_flow_run_states) if kind == "flow data"
                else (task.id, orc.set_task_run_state, orc.read_task_run_states)
            )
            with pytest.raises(InvalidState, match="state.data.*nested more than"):
                propose(run_id, {"type": "COMPLETED", "data": deep})
            assert [s.type for s in read(run_id)] == [StateType.RUNNING]
        else:
            orc.pause_flow_run(run.id, key="k", wait_for_input={"type": "object"})
            if kind == "run input":
                with pytest.raises(InvalidState, match="run_input.*nested more than"):
                    orc.resume_flow_run(run.id, deep)
            else:  # JSON text in a placeholder, nested too deeply once hydrated
                text = '{"a": ' + "[" * TOO_DEEP + "]" * TOO_DEEP + "}"
                placeholder = {"__prefect_kind": "json", "value": text}
                result = orc.resume_flow_run(run.id, {"p": placeholder})
                assert result.status.value == "REJECT"
                assert "nested more than" in (result.details.reason or "")
            assert orc.read_flow_run(run.id).state_type is StateType.PAUSED
            assert orc.read_pause_input(run.id, key="k") is None
        assert [r.model_dump_json() for r in orc.read_flow_runs()]


def test_values_as_deep_as_accepted_round_trip_through_prefect_json():
    from flowstate import FlowRun, OrchestrationResult

    deep = {"a": nested(120)}
    with Orchestrator(":memory:") as orc:
        run = orc.create_flow_run(parameters=deep, state=Running())
        assert FlowRun.model_validate_json(run.model_dump_json()).parameters == deep
        orc.pause_flow_run(run.id, key="k", wait_for_input={"type": "object"})
        assert orc.resume_flow_run(run.id, deep).status.value == "ACCEPT"
        assert orc.read_pause_input(run.id, key="k") == deep
        result = orc.set_flow_run_state(run.id, {"type": "COMPLETED", "data": deep})
        again = OrchestrationResult.model_validate_json(result.model_dump_json())
        assert again.state.data == deep


def test_the_json_listings_of_the_cli_read_a_database_holding_values_as_deep_as_accepted(tmp_path):
    path = tmp_path / "runs.db"
    deep = {"a": nested(120)}
    with Orchestrator(path) as orc:
        run = orc.create_flow_run(parameters=deep, state=Running())
        orc.pause_flow_run(run.id, key="k", wait_for_input={"type": "object"})
        orc.resume_flow_run(run.id, deep)
        orc.set_flow_run_state(run.id, {"type": "COMPLETED", "data": deep})
    for command in (["runs", "ls"], ["runs", "show", str(run.id)], ["runs", "input", str(run.id)]):
        result = CliRunner().invoke(main, ["--database", str(path), *command, "--json"])
        assert result.exit_code == 0, (command, result.output)
        assert "nested" not in result.output and json.loads(result.output)


def test_resume_from_the_cli_with_input_nested_deeper_than_prefect_json_is_one_line(
    paused, tmp_path
):
    path, run_id = paused
    given = tmp_path / "in.json"
    given.write_text(json.dumps({"a": nested(TOO_DEEP)}))
    result = CliRunner().invoke(
        main, ["--database", str(path), "resume", run_id, "--input", f"@{given}"]
    )
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    [line] = result.output.strip().splitlines()
    assert line.startswith("Error: InvalidState: run_input") and "nested more than" in line
    assert history(path, run_id) == ["RUNNING", "PAUSED"]


def test_a_pause_schema_nested_deeper_than_prefect_json_carries_is_refused_and_nothing_written():
    # JSON Schema checks no keyword's value under "default", so only the depth refuses it
    schema = {"type": "object", "default": {"a": nested(TOO_DEEP)}}
    with Orchestrator(":memory:") as orc:
        run = orc.create_flow_run(state=Running())
        with pytest.raises(InvalidState, match="wait_for_input.*nested more than"):
            orc.pause_flow_run(run.id, key="k", wait_for_input=schema)
        assert [s.type for s in orc.read_flow_run_states(run.id)] == [StateType.RUNNING]
        shallow = {"type": "object", "default": {"a": nested(100)}}
        accepted = orc.pause_flow_run(run.id, key="k", wait_for_input=shallow)
        assert accepted.status.value == "ACCEPT"


def test_json_output_of_a_value_stored_too_deep_is_one_line_and_exit_1(paused):
    # a response stored as raw text (or by an older flowstate) can be deeper than JSON output goes
    path, run_id = paused
    with Orchestrator(path) as orc:
        text = json.dumps({"a": nested(TOO_DEEP)})
        orc.create_flow_run_input(run_id, "paused-approval-response", text)
    result = CliRunner().invoke(main, ["--database", str(path), "runs", "input", run_id, "--json"])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    [line] = result.output.strip().splitlines()
    assert line == "Error: cannot print as JSON: Maximum serialization depth exceeded"
    shown = CliRunner().invoke(main, ["--database", str(path), "runs", "input", run_id])
    assert shown.exit_code == 0 and "response" in shown.output

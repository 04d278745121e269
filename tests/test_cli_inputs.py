"""`flowstate runs create`, `flowstate pause --schema`, `flowstate runs input`, and `flowstate
resume` asking for the input on a terminal (driven through a pseudo-terminal)."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from flowstate import Orchestrator, StateType
from flowstate.cli import main
from flowstate.states import Running
from tests.backends import REPO

APPROVAL = {
    "title": "Approval",
    "type": "object",
    "properties": {
        "approved": {"title": "Approved", "type": "boolean", "description": "ship it?"},
        "count": {"title": "Count", "type": "integer", "minimum": 1},
        "color": {"$ref": "#/definitions/Color"},
        "comment": {"title": "Comment", "type": "string", "default": "none"},
    },
    "required": ["approved", "count", "color"],
    "additionalProperties": False,
    "definitions": {"Color": {"title": "Color", "enum": ["red", "blue"], "type": "string"}},
}


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "inputs.db"


def invoke(database: Path | str, *args: str) -> Result:
    return CliRunner().invoke(main, ["--database", str(database), *args])


def running_run(database: Path | str) -> str:
    result = invoke(database, "runs", "create", "nightly", "--state", "RUNNING")
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def test_runs_create_prints_the_new_runs_id(database: Path) -> None:
    result = invoke(database, "runs", "create", "etl", "--name", "first")
    assert result.exit_code == 0, result.output
    run_id = uuid.UUID(result.stdout.strip())
    with Orchestrator(str(database)) as orc:
        run = orc.read_flow_run(run_id)
        assert (run.flow_name, run.name, run.state) == ("etl", "first", None)
    as_json = invoke(database, "runs", "create", "etl", "--state", "running", "--json")
    data = json.loads(as_json.stdout)
    assert data["flow_name"] == "etl" and data["state"]["type"] == "RUNNING"
    assert invoke(database, "runs", "create", "etl", "--state", "NOPE").exit_code == 2


def test_pause_with_a_schema_then_runs_input_shows_it_and_the_answer(database: Path) -> None:
    run_id = running_run(database)
    paused = invoke(database, "pause", run_id, "--key", "approval", "--schema", json.dumps(APPROVAL),
                    "--description", "Approve the nightly load?")
    assert paused.exit_code == 0, paused.output
    shown = invoke(database, "runs", "input", run_id)
    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.splitlines()
    assert lines[0] == "pause approval (Paused, waiting)"
    assert lines[1].split(None, 1) == ["description", "Approve the nightly load?"]
    assert lines[2].split(None, 1) == [
        "schema", 'approved: boolean (required), count: integer (required), '
        'color: one of red, blue (required), comment: string = "none"']
    assert lines[3].split() == ["response", "—"]
    answer = '{"approved": true, "count": 2, "color": "red"}'
    assert invoke(database, "resume", run_id, "--input", answer).exit_code == 0
    data = json.loads(invoke(database, "runs", "input", run_id, "--json").stdout)
    assert [(p["pause_key"], p["status"], p["response"]) for p in data] == [
        ("approval", "resumed", {"approved": True, "count": 2, "color": "red"})]
    assert data[0]["schema"] == APPROVAL and data[0]["description"] == "Approve the nightly load?"


def test_runs_input_of_a_run_that_never_waited_for_input(database: Path) -> None:
    run_id = running_run(database)
    shown = invoke(database, "runs", "input", run_id)
    assert shown.exit_code == 0 and "has not paused for input" in shown.stdout
    assert json.loads(invoke(database, "runs", "input", run_id, "--json").stdout) == []


def test_pause_reads_the_schema_from_a_file(database: Path, tmp_path: Path) -> None:
    run_id = running_run(database)
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(APPROVAL))
    assert invoke(database, "pause", run_id, "--schema", f"@{path}").exit_code == 0
    with Orchestrator(str(database)) as orc:
        assert json.loads(orc.read_flow_run_input(run_id, "paused-1-schema")) == APPROVAL


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["--schema", "[1, 2]"], 1, "must be a JSON object"),
        (["--schema", "{nope"], 1, "--schema is not valid JSON"),
        (["--schema", '{"type": "nonsense"}'], 1, "not a usable JSON schema"),
        (["--schema", "@/no/such/schema.json"], 1, "cannot read schema file"),
        (["--description", "alone"], 2, "--description goes with --schema"),
        (["--reschedule"], 2, "--reschedule needs --key"),
        (["--key", "not a key"], 1, "letters, digits and dashes"),
    ],
)
def test_bad_pause_options_write_nothing(database: Path, args: list[str], code: int,
                                         words: str) -> None:
    run_id = running_run(database)
    result = invoke(database, "pause", run_id, *args)
    assert result.exit_code == code, result.output
    assert words in result.stderr and "Traceback" not in result.stderr
    with Orchestrator(str(database)) as orc:
        assert orc.read_flow_run(run_id).state.type is StateType.RUNNING


def test_resume_without_input_and_without_a_terminal_behaves_as_before(database: Path) -> None:
    run_id = running_run(database)
    invoke(database, "pause", run_id, "--schema", json.dumps(APPROVAL))
    result = invoke(database, "resume", run_id)  # CliRunner's stdin is no terminal
    assert result.exit_code == 3
    assert "'approved' is a required property" in result.stdout



@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity"])
def test_resume_input_with_a_number_json_has_not_is_refused(database: Path, text: str) -> None:
    run_id = running_run(database)
    invoke(database, "pause", run_id, "--schema",
           '{"type": "object", "properties": {"x": {"type": "number", "maximum": 10}}}')
    result = invoke(database, "resume", run_id, "--input", f'{{"x": {text}}}')
    assert result.exit_code == 1, result.output
    assert "--input is not valid JSON" in result.stderr and "Traceback" not in result.stderr
    with Orchestrator(str(database)) as orc:
        assert orc.read_flow_run(run_id).state.type is StateType.PAUSED
    listed = invoke(database, "runs", "input", run_id, "--json")
    assert json.loads(listed.stdout, parse_constant=pytest.fail)[0]["response"] is None

# -- prompting on a pseudo-terminal -------------------------------------------------------------------


_NO_COLOURS = re.compile(r"\x1b\[[0-9;]*m")


class Terminal:
    """A child process on a pseudo-terminal: wait for text, type lines."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child
            os.execve(sys.executable, [sys.executable, *argv], env)
        self.seen = ""

    def expect(self, text: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"never saw {text!r}; the terminal shows:\n{self.seen}")
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:  # the child closed the terminal
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"ended before {text!r}; the terminal shows:\n{self.seen}")
                self.seen += chunk.decode("utf-8", "replace").replace("\r\n", "\n")
        before, _, after = self.seen.partition(text)
        self.seen = after
        return before + text

    def type(self, line: str) -> None:
        os.write(self.fd, line.encode() + b"\r")

    def finish(self) -> tuple[int, str]:
        rest = ""
        while True:
            try:
                chunk = os.read(self.fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            rest += chunk.decode("utf-8", "replace").replace("\r\n", "\n")
        _, status = os.waitpid(self.pid, 0)
        os.close(self.fd)
        return os.waitstatus_to_exitcode(status), _NO_COLOURS.sub("", self.seen + rest)


@pytest.fixture
def any_database(backend) -> Iterator[str]:
    """A fresh database of each backend: a SQLite file, a PostgreSQL schema."""
    made = backend.new_database()
    yield made
    backend.drop(made)


def test_resume_on_a_terminal_asks_for_each_field_and_again_when_refused(any_database: str) -> None:
    database = any_database
    run_id = running_run(database)
    invoke(database, "pause", run_id, "--key", "approval", "--schema", json.dumps(APPROVAL),
           "--description", "Approve the nightly load?")
    env = {**os.environ, "PYTHONPATH": str(REPO), "TERM": "dumb", "NO_COLOR": "1"}
    terminal = Terminal(["-m", "flowstate", "--database", str(database), "resume", run_id], env)
    shown = terminal.expect("Approve the nightly load?")
    shown += terminal.expect("Approved (approved: boolean) — ship it?: ")
    terminal.type("perhaps")
    shown += terminal.expect("not accepted: 'perhaps' is not of type 'boolean'")
    shown += terminal.expect("Approved (approved: boolean) — ship it?: ")
    terminal.type("yes")
    shown += terminal.expect("Count (count: integer): ")
    terminal.type("0")
    shown += terminal.expect("not accepted: 0 is less than the minimum of 1")
    shown += terminal.expect("Count (count: integer): ")
    terminal.type("3")
    shown += terminal.expect("Color (color: one of red, blue): ")
    terminal.type("green")
    shown += terminal.expect("not accepted: 'green' is not one of ['red', 'blue']")
    shown += terminal.expect("Color (color: one of red, blue): ")
    terminal.type("blue")
    shown += terminal.expect("Comment (comment: string) [none]: ")
    terminal.type("")  # the default
    code, rest = terminal.finish()
    shown += rest
    print(shown)
    assert code == 0, shown
    assert "status    ACCEPT" in shown and "PAUSED (Paused) → RUNNING (Running)" in shown
    with Orchestrator(str(database)) as orc:
        stored = orc.read_flow_run_input(run_id, "paused-approval-response")
    assert json.loads(stored) == {"approved": True, "count": 3, "color": "blue", "comment": "none"}


def test_on_a_terminal_input_given_with_the_option_is_not_asked_for(any_database: str) -> None:
    database = any_database
    run_id = running_run(database)
    invoke(database, "pause", run_id, "--schema", json.dumps(APPROVAL))
    env = {**os.environ, "PYTHONPATH": str(REPO), "TERM": "dumb", "NO_COLOR": "1"}
    terminal = Terminal(["-m", "flowstate", "--database", str(database), "resume", run_id,
                         "--input", '{"approved": false, "count": 1, "color": "red"}'], env)
    code, shown = terminal.finish()
    assert code == 0, shown
    assert "Approved" not in shown and "status    ACCEPT" in shown


def test_on_a_terminal_a_field_whose_schema_is_true_is_asked_for_as_json(any_database: str) -> None:
    # "a": true (any value) is valid JSON Schema; the prompt failed with a TypeError traceback
    database = any_database
    run_id = running_run(database)
    schema = {"type": "object", "properties": {"a": True, "b": {"type": "integer"}},
              "required": ["a"]}
    invoke(database, "pause", run_id, "--key", "k", "--schema", json.dumps(schema))
    env = {**os.environ, "PYTHONPATH": str(REPO), "TERM": "dumb", "NO_COLOR": "1"}
    terminal = Terminal(["-m", "flowstate", "--database", str(database), "resume", run_id], env)
    shown = terminal.expect("a (a: JSON): ")
    terminal.type('{"any": [1]}')
    shown += terminal.expect("b (b: integer) (Enter: leave out): ")
    terminal.type("7")
    code, rest = terminal.finish()
    shown += rest
    assert code == 0 and "Traceback" not in shown, shown
    with Orchestrator(str(database)) as orc:
        stored = orc.read_flow_run_input(run_id, "paused-k-response")
    assert json.loads(stored) == {"a": {"any": [1]}, "b": 7}


def test_on_a_terminal_a_stored_schema_that_is_not_valid_is_not_asked_for(any_database: str) -> None:
    # a schema stored by hand whose field is not a schema: the resume says what is wrong
    # (REJECT, exit code 3) instead of the prompt failing with a TypeError traceback
    from flowstate.states import Paused

    database = any_database
    run_id = running_run(database)
    keyset = {part: f"paused-k-{part}" for part in ("description", "response", "schema")}
    with Orchestrator(str(database)) as orc:
        orc.set_flow_run_state(run_id, Paused(pause_key="k", run_input_keyset=keyset))
        orc.create_flow_run_input(run_id, keyset["schema"], '{"properties": {"a": 5}}')
    env = {**os.environ, "PYTHONPATH": str(REPO), "TERM": "dumb", "NO_COLOR": "1"}
    terminal = Terminal(["-m", "flowstate", "--database", str(database), "resume", run_id], env)
    shown = terminal.expect("status    ", timeout=30)  # (not a prompt waiting for an answer)
    code, rest = terminal.finish()
    shown += rest
    assert code == 3 and "Traceback" not in shown, shown
    assert "status    REJECT" in shown and "Invalid schema: 5 is not of type" in shown
    with Orchestrator(str(database)) as orc:
        assert orc.read_flow_run(run_id).state.type is StateType.PAUSED

"""`flowstate diagram`: the declared graph, the policy's refusals and a run's path."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from flowstate import Orchestrator, SetStateStatus, State
from flowstate.cli import main
from flowstate.demo import run_demo
from flowstate.diagram import diagram_edges, policy_verdicts
from flowstate.graph import INITIAL, TRIGGERS


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "diagram.db"


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def assert_ok(result: Result) -> None:
    assert result.exit_code == 0, result.output
    assert result.exception is None, result.exception


EDGE = re.compile(r"^\s*(\w+) --> (\w+): (.*)$")


def mermaid_edges(text: str) -> dict[tuple[str, str], str]:
    return {(m[1], m[2]): m[3] for line in text.splitlines() if (m := EDGE.match(line))}


def test_the_mermaid_diagram_has_every_trigger_and_the_refused_transitions() -> None:
    result = invoke("diagram")

    assert_ok(result)
    text = result.stdout
    assert "stateDiagram-v2" in text and "[*] --> NONE" in text
    edges = mermaid_edges(text)
    for trigger in TRIGGERS:
        for source in trigger.sources:
            assert trigger.trigger in edges[(source, trigger.dest.value)].split(" | ")
    assert edges[("SCHEDULED", "PAUSED")] == "REJECT"
    assert edges[("PENDING", "PENDING")] == "ABORT"
    assert edges[("SCHEDULED", "CANCELLING")] == "REJECT (CANCELLED instead)"
    assert "%% REJECT SCHEDULED --> PAUSED: Cannot pause flows that are not currently running." in text


def test_refused_edges_are_what_the_core_policy_answers() -> None:
    verdicts = {(v.source, v.dest): v for v in policy_verdicts()}
    refused = [e for e in diagram_edges() if e.kind == "refused"]

    assert refused
    for edge in refused:
        verdict = verdicts[(edge.source, edge.dest)]
        assert edge.label.split()[0] == verdict.status != "ACCEPT"
        assert edge.reason == verdict.reason
    # a declared trigger is never drawn as refused, even when it needs a deployment
    declared = {(s, t.dest.value) for t in TRIGGERS for s in t.sources}
    assert not declared & {(e.source, e.dest) for e in refused}


def test_a_refused_edge_really_is_refused_on_a_real_database(database: Path) -> None:
    edge = next(e for e in diagram_edges() if e.kind == "refused" and e.source != INITIAL)
    with Orchestrator(str(database)) as orc:
        run = orc.create_flow_run()
        orc.set_flow_run_state(run.id, State(type=edge.source), force=True)
        result = orc.set_flow_run_state(run.id, State(type=edge.dest))
    assert result.status is not SetStateStatus.ACCEPT
    assert result.reason == edge.reason


def test_no_policy_draws_only_the_declared_triggers() -> None:
    result = invoke("diagram", "--no-policy")
    assert_ok(result)
    assert "REJECT" not in result.stdout and "ABORT" not in result.stdout
    assert len(mermaid_edges(result.stdout)) == len({(s, t.dest) for t in TRIGGERS for s in t.sources})


def test_the_dot_diagram_draws_refusals_dashed_with_the_reason(tmp_path: Path) -> None:
    result = invoke("diagram", "--format", "dot")

    assert_ok(result)
    text = result.stdout
    assert text.startswith('digraph "flowstate flow run" {') and text.rstrip().endswith("}")
    assert text.count("{") == text.count("}")
    assert re.search(r'RUNNING -> PAUSED \[label="pause \| suspend"\]', text)
    line = next(line for line in text.splitlines() if line.strip().startswith("SCHEDULED -> PAUSED"))
    assert "style=dashed" in line and "Cannot pause flows that are not currently running." in line


def test_the_diagram_without_a_run_does_not_open_the_database(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"\x00" * 4096)
    assert_ok(invoke("--database", str(garbage), "diagram"))


def test_diagram_of_a_run_marks_its_path(database: Path) -> None:
    with Orchestrator(str(database)) as orc:
        demo = run_demo(orc)
    result = invoke("--database", str(database), "diagram", "--run", str(demo.flow_run_id))

    assert_ok(result)
    text = result.stdout
    edges = mermaid_edges(text)
    assert edges[("NONE", "SCHEDULED")] == "schedule | #1"
    assert edges[("RUNNING", "PAUSED")].endswith("| #4")
    assert edges[("PAUSED", "RUNNING")] == "resume | #5"
    assert edges[("RUNNING", "COMPLETED")] == "complete | #6"
    assert "Class COMPLETED s_active" in text
    assert "Class PAUSED s_previous" in text and "Class FAILED s_default" in text
    assert str(demo.flow_run_id) in text.splitlines()[1]  # the title


def test_dot_diagram_of_a_run_marks_its_path(database: Path) -> None:
    with Orchestrator(str(database)) as orc:
        demo = run_demo(orc)
    result = invoke("--database", str(database), "diagram", "--format", "dot",
                    "--run", str(demo.flow_run_id))

    assert_ok(result)
    assert 'PAUSED -> RUNNING [label="#5", color="blue"' in result.stdout
    assert "COMPLETED [color=red" in result.stdout


def test_diagram_json_has_the_edges_and_the_runs_states(database: Path) -> None:
    with Orchestrator(str(database)) as orc:
        demo = run_demo(orc)
    data = json.loads(invoke("--database", str(database), "diagram", "--run",
                             str(demo.flow_run_id), "--json").stdout)

    kinds = {edge["kind"] for edge in data["edges"]}
    assert kinds == {"trigger", "refused", "path"}
    assert [State.model_validate(s).type.value for s in data["states"]][-1] == "COMPLETED"


def test_diagram_of_an_unknown_run_is_one_line(database: Path) -> None:
    result = invoke("--database", str(database), "diagram", "--run", str(uuid.uuid4()))
    assert result.exit_code == 1
    assert result.stdout == "" and len(result.stderr.strip().splitlines()) == 1


def test_python_dash_m_flowstate_diagram() -> None:
    process = subprocess.run(
        [sys.executable, "-m", "flowstate", "diagram"], capture_output=True, text=True, timeout=60
    )
    assert process.returncode == 0, process.stderr
    assert "stateDiagram-v2" in process.stdout and "RUNNING --> PAUSED: pause | suspend" in process.stdout


def test_importing_the_cli_loads_neither_rich_nor_transitions() -> None:
    code = "import sys, flowstate.cli; print(sorted(m for m in ('rich', 'transitions') if m in sys.modules))"
    process = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert process.stdout.strip() == "[]"


def test_the_diagram_module_examples_run() -> None:
    import doctest

    import flowstate.diagram

    failures, tried = doctest.testmod(flowstate.diagram)
    assert tried > 0 and failures == 0

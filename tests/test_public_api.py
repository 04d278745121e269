"""The public surface matches docs/api.md and README, and importing stays light."""

from __future__ import annotations

import inspect
import json
import re
import subprocess
import sys
from pathlib import Path

import flowstate

REPO = Path(__file__).resolve().parents[1]

API_NAMES = [
    "StateType", "StateDetails", "State", "SetStateStatus", "AcceptDetails", "RejectDetails",
    "AbortDetails", "WaitDetails", "OrchestrationResult", "FlowRunPolicy", "TaskRunPolicy",
    "FlowRun", "TaskRun", "Orchestrator", "FlowstateError", "ObjectNotFound",
    "ObjectAlreadyExists", "InvalidState", "DatabaseError", "RunInput", "RunInputMetadata",
    "RunNotResumed", "WaitTimeout", "AsyncOrchestrator", "Deployment", "ConcurrencyOptions",
]
ORCHESTRATOR_METHODS = {
    "create_flow_run", "read_flow_run", "read_flow_runs", "delete_flow_run", "set_flow_run_state",
    "resume_flow_run", "read_flow_run_states", "create_flow_run_input", "read_flow_run_input",
    "delete_flow_run_input", "create_task_run", "read_task_run", "read_task_runs",
    "set_task_run_state", "read_task_run_states", "transaction", "close",
    "pause_flow_run", "read_pause_input", "wait_for_resume", "send_input", "receive_input",
    "create_deployment", "read_deployment", "read_deployments", "update_deployment",
}
STATE_CONSTRUCTORS = ["Scheduled", "Pending", "Running", "Completed", "Failed", "Crashed",
                      "Cancelled", "Cancelling", "Paused", "Suspended", "AwaitingRetry",
                      "Retrying", "Late", "Cached"]


def test_every_api_name_is_exported_and_all_is_sorted():
    assert set(API_NAMES) <= set(flowstate.__all__)
    assert flowstate.__all__ == sorted(flowstate.__all__)
    for name in flowstate.__all__:
        assert hasattr(flowstate, name)


def test_public_classes_present_themselves_as_flowstate():
    assert flowstate.Orchestrator.__module__ == "flowstate"
    assert flowstate.AsyncOrchestrator.__module__ == "flowstate"
    assert repr(flowstate.StateType.RUNNING).startswith("<StateType.")


def test_orchestrator_has_the_contracts_methods_with_keyword_only_options():
    assert ORCHESTRATOR_METHODS <= set(dir(flowstate.Orchestrator))
    signature = inspect.signature(flowstate.Orchestrator.set_flow_run_state)
    assert signature.parameters["force"].kind is inspect.Parameter.KEYWORD_ONLY
    assert inspect.signature(flowstate.Orchestrator).parameters["clock"].kind is (
        inspect.Parameter.KEYWORD_ONLY)


def test_state_constructors_exist():
    for name in STATE_CONSTRUCTORS:
        assert callable(getattr(flowstate.states, name))


def test_errors_are_also_builtin_kinds():
    assert issubclass(flowstate.InvalidState, ValueError)
    assert issubclass(flowstate.ObjectNotFound, KeyError)
    assert issubclass(flowstate.WaitTimeout, TimeoutError)
    assert issubclass(flowstate.RunNotResumed, RuntimeError)
    for name in ("ObjectNotFound", "ObjectAlreadyExists", "InvalidState", "DatabaseError",
                 "RunNotResumed", "WaitTimeout"):
        assert issubclass(getattr(flowstate, name), flowstate.FlowstateError)


def _api_doc_section(title: str) -> str:
    text = (REPO / "docs" / "api.md").read_text(encoding="utf-8")
    return text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_every_model_and_error_of_the_api_doc_is_exported():
    for title in ("Models (pydantic v2)", "Errors"):
        named = re.findall(r"^- `([A-Z]\w+)`", _api_doc_section(title), flags=re.MULTILINE)
        named += re.findall(r"`([A-Z]\w+)` is the", _api_doc_section(title))
        assert len(named) >= 5
        assert set(named) <= set(flowstate.__all__), title


def test_every_call_of_the_api_doc_exists_with_the_documented_parameters():
    engine = _api_doc_section("The engine")
    calls = re.findall(r"`(\w+)\(([^`]*?)\)", engine)
    assert len(calls) >= 15
    for name, params in calls:
        orchestrator = flowstate.Orchestrator
        signature = inspect.signature(
            orchestrator if name == "Orchestrator" else getattr(orchestrator, name))
        for part in params.replace("\n", " ").split(","):
            param = re.split(r"[=:]", part)[0].strip()
            if param and param != "*":
                assert param in signature.parameters, f"{name}({param}=...)"
    for method in re.findall(r"`(\w+)`", engine.split("Workers", 1)[1]):
        if not method.endswith("_policy"):
            assert callable(getattr(flowstate.Orchestrator, method)), method
        else:
            assert method in inspect.signature(flowstate.Orchestrator).parameters
    states_paragraph = _api_doc_section("Models (pydantic v2)").split("`flowstate.states`", 1)[1]
    constructors = re.findall(r"`(\w+)\(", states_paragraph)
    assert sorted(set(constructors)) == sorted(STATE_CONSTRUCTORS)


def test_the_api_docs_prefect_json_round_trips():
    block = _api_doc_section("Prefect's JSON").split("```json\n", 1)[1].split("```", 1)[0]
    prefect_json = json.loads(block)
    result = flowstate.OrchestrationResult.model_validate(prefect_json)
    assert result.model_dump(mode="json").keys() == prefect_json.keys()
    assert result.model_dump(mode="json")["state"].keys() == prefect_json["state"].keys()


def test_readme_names_the_two_commands_and_the_public_api():
    readme = (REPO / "README.md").read_text()
    assert "flowstate demo" in readme
    assert "pytest" in readme
    for name in ("Orchestrator", "set_flow_run_state", "resume_flow_run", "DatabaseError",
                 "AsyncOrchestrator"):
        assert name in readme


def test_importing_flowstate_loads_no_heavy_extras():
    # pydantic's plugin loader comes with the first model validation, and scans every installed
    # distribution's metadata: importing must validate nothing
    code = (
        "import sys, flowstate; heavy = ['sqlite_utils', 'transitions', 'jsonschema', 'rich', "
        "'hypothesis', 'click', 'psycopg', 'flowstate.store.postgres.store', "
        "'pydantic.plugin._loader', 'asyncio', 'flowstate.aio']; "
        "print([m for m in heavy if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_run_input_is_loaded_on_first_use_and_the_new_methods_are_typed_and_documented():
    code = (
        "import sys, flowstate; before = 'flowstate.run_input' in sys.modules; "
        "flowstate.RunInput; print(before, 'flowstate.run_input' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]
    assert issubclass(flowstate.RunInput, __import__("pydantic").BaseModel)
    for name in ("pause_flow_run", "read_pause_input", "wait_for_resume", "send_input",
                 "receive_input"):
        method = getattr(flowstate.Orchestrator, name)
        assert method.__doc__, name
        signature = inspect.signature(method)
        assert signature.return_annotation is not inspect.Signature.empty, name
        for parameter in signature.parameters.values():
            if parameter.name in ("self", "id", "run_id", "value", "type_"):
                continue
            assert parameter.kind is inspect.Parameter.KEYWORD_ONLY, (name, parameter.name)

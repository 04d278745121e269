"""What a user reads from ``help()`` and from a refused resume speaks to them plainly."""

from __future__ import annotations

import inspect
import pydoc

from flowstate import AsyncOrchestrator, Orchestrator
from flowstate.states import Running


def test_help_shows_resume_flow_runs_signature_readably():
    for owner in (Orchestrator, AsyncOrchestrator):
        method = owner.resume_flow_run
        signature = str(inspect.signature(method))
        assert "object at 0x" not in signature
        assert "run_input: 'dict[str, Any] | None' = None" in signature
        assert "object at 0x" not in pydoc.render_doc(method, renderer=pydoc.plaintext)


def test_no_public_method_shows_a_bare_object_as_a_default():
    for owner in (Orchestrator, AsyncOrchestrator):
        for name, method in inspect.getmembers(owner, callable):
            if not name.startswith("_"):
                assert "object at 0x" not in str(inspect.signature(method)), name
    signature = str(inspect.signature(Orchestrator.update_global_concurrency_limit))
    assert "limit: 'int' = <unchanged>" in signature


def test_a_workspace_variable_in_run_input_says_flowstate_has_none():
    with Orchestrator(":memory:") as orc:
        run = orc.create_flow_run(state=Running())
        orc.pause_flow_run(run.id, key="approval", wait_for_input={"type": "object"})
        placeholder = {"__prefect_kind": "workspace_variable", "variable_name": "api_token"}
        result = orc.resume_flow_run(run.id, {"token": placeholder})
    assert result.status.value == "REJECT"
    reason = result.details.reason or ""
    assert "'api_token'" in reason and "flowstate has no workspace variables" in reason

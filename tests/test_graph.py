"""The declared state graph agrees with the core flow policy."""

from __future__ import annotations

import uuid

import pytest

from flowstate import Orchestrator, SetStateStatus, State, StateType
from flowstate.graph import INITIAL, TRIGGERS, to_machine, to_mermaid

EDGES = [(t, source) for t in TRIGGERS for source in t.sources]


@pytest.mark.parametrize(("trigger", "source"), EDGES,
                         ids=[f"{t.trigger}:{s}->{t.dest.value}" for t, s in EDGES])
def test_every_graph_edge_is_accepted_by_the_core_flow_policy(trigger, source):
    with Orchestrator(":memory:") as orc:
        deployment = uuid.uuid4() if "deployment" in trigger.needs else None
        run = orc.create_flow_run(deployment_id=deployment)
        if source != INITIAL:
            orc.set_flow_run_state(run.id, State(type=source), force=True)
        proposal = State(type=trigger.dest, name=trigger.name, state_details=trigger.details)
        result = orc.set_flow_run_state(run.id, proposal)
        assert result.status is SetStateStatus.ACCEPT, result.details
        assert result.state.type is trigger.dest


def test_the_graph_draws_as_mermaid_through_transitions():
    text = to_mermaid()
    assert "stateDiagram-v2" in text
    assert "RUNNING --> PAUSED: pause" in text
    assert to_machine().get_model_state(to_machine().models[0]).name == INITIAL


def test_every_state_type_is_reachable_in_the_graph():
    reached = {t.dest for t in TRIGGERS}
    assert reached == set(StateType)

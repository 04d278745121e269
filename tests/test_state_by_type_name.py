"""A state given by its type alone, as the CLI's ``set-state`` takes it: ``"RUNNING"``,
``"running"`` or ``StateType.RUNNING`` is a state of that type with its default name."""

from __future__ import annotations

import asyncio

import pytest

from flowstate import AsyncOrchestrator, InvalidState, Orchestrator, StateType

SPELLINGS = ["RUNNING", "running", " Running ", StateType.RUNNING]


@pytest.mark.parametrize("given", SPELLINGS, ids=repr)
def test_a_flow_run_state_by_type_name(given):
    with Orchestrator(":memory:") as orc:
        run = orc.create_flow_run()
        assert orc.set_flow_run_state(run.id, "PENDING").status.value == "ACCEPT"
        result = orc.set_flow_run_state(run.id, given)
        assert result.status.value == "ACCEPT"
        assert (result.state.type, result.state.name) == (StateType.RUNNING, "Running")
        assert orc.read_flow_run(run.id).run_count == 1


@pytest.mark.parametrize("given", SPELLINGS, ids=repr)
def test_a_task_run_state_by_type_name(given):
    with Orchestrator(":memory:") as orc:
        task = orc.create_task_run(state="pending")
        result = orc.set_task_run_state(task.id, given)
        assert result.status.value == "ACCEPT"
        assert (result.state.type, result.state.name) == (StateType.RUNNING, "Running")


def test_every_type_by_name_has_its_default_name():
    with Orchestrator(":memory:") as orc:
        for state_type in StateType:
            run = orc.create_flow_run(state=state_type.value.lower())
            assert run.state is not None
            assert (run.state.type, run.state.name) == (state_type, state_type.default_name)


def test_the_async_orchestrator_takes_a_type_name_too():
    async def walk() -> tuple[str, str]:
        async with AsyncOrchestrator(":memory:") as orc:
            run = await orc.create_flow_run(state=StateType.PENDING)
            result = await orc.set_flow_run_state(run.id, "running")
            task = await orc.create_task_run(flow_run_id=run.id, state="PENDING")
            task_result = await orc.set_task_run_state(task.id, StateType.RUNNING)
            return result.state.name, task_result.state.name

    assert asyncio.run(walk()) == ("Running", "Running")


@pytest.mark.parametrize("name", ["BOGUS", "run", "", "Late"])
def test_an_unknown_type_name_lists_the_valid_ones(name):
    with Orchestrator(":memory:") as orc:
        run = orc.create_flow_run()
        with pytest.raises(InvalidState) as caught:
            orc.set_flow_run_state(run.id, name)
        message = str(caught.value)
        assert "Invalid JSON" not in message
        assert all(t.value in message for t in StateType)
        assert orc.read_flow_run_states(run.id) == []


def test_json_text_is_still_read_as_a_state():
    with Orchestrator(":memory:") as orc:
        run = orc.create_flow_run()
        result = orc.set_flow_run_state(run.id, '{"type": "SCHEDULED", "name": "Later"}')
        assert result.state.name == "Later"
        with pytest.raises(InvalidState, match="Invalid JSON"):
            orc.set_flow_run_state(run.id, '{"type": ')

"""Text SQLite cannot store (lone surrogates) is refused at the API boundary, with the field named."""

from __future__ import annotations


import pytest

from flowstate import InvalidState, Orchestrator
from flowstate.states import Paused, Running, Scheduled

from tests.reliability._checks import assert_database_consistent

LONE = "x\ud800"


@pytest.fixture
def orc(database: str):
    """On each backend (a SQLite file, a fresh PostgreSQL schema)."""
    with Orchestrator(database) as orc:
        yield orc


@pytest.mark.parametrize(
    ("field", "state"),
    [
        ("state.name", Scheduled(name=LONE)),
        ("state.message", Running(message=LONE)),
        ("state.state_details.pause_key", Paused(pause_key=LONE)),
        ("state.state_details.run_input_keyset", Paused(run_input_keyset={"schema": LONE})),
        ("state.state_details.cache_key", Running(cache_key=LONE)),
    ],
)
def test_a_state_with_a_lone_surrogate_is_invalid_and_nothing_is_written(orc, field, state):
    run = orc.create_flow_run()
    with pytest.raises(InvalidState, match=field.replace(".", r"\.")):
        orc.set_flow_run_state(run.id, state, force=True)
    assert orc.read_flow_run_states(run.id) == []
    assert_database_consistent(orc.database)


@pytest.mark.parametrize("field", ["name", "flow_name", "infrastructure_pid"])
def test_a_flow_run_with_a_lone_surrogate_is_invalid(orc, field):
    with pytest.raises(InvalidState, match=field):
        orc.create_flow_run(**{field: LONE})
    assert orc.read_flow_runs() == []


def test_a_pause_key_policy_with_a_lone_surrogate_is_invalid(orc):
    with pytest.raises(InvalidState, match="pause_keys"):
        orc.create_flow_run(empirical_policy={"pause_keys": [LONE]})
    assert orc.read_flow_runs() == []


@pytest.mark.parametrize("field", ["name", "task_key", "dynamic_key"])
def test_a_task_run_with_a_lone_surrogate_is_invalid(orc, field):
    with pytest.raises(InvalidState, match=field):
        orc.create_task_run(**{field: LONE})
    assert orc.read_task_runs() == []


def test_run_input_with_a_lone_surrogate_is_invalid(orc):
    run = orc.create_flow_run()
    with pytest.raises(InvalidState, match="value"):
        orc.create_flow_run_input(run.id, "key", LONE)
    with pytest.raises(InvalidState, match="sender"):
        orc.create_flow_run_input(run.id, "key", "v", sender=LONE)
    with pytest.raises(InvalidState, match="sender"):
        orc.create_flow_run_input(run.id, "key", "v", sender=7)  # type: ignore[arg-type]


def test_resuming_with_a_lone_surrogate_in_run_input_is_invalid_and_the_pause_holds(orc):
    run = orc.create_flow_run(state=Running())
    orc.create_flow_run_input(run.id, "schema", '{"type": "object"}')
    keyset = {"schema": "schema", "response": "response"}
    orc.set_flow_run_state(run.id, Paused(run_input_keyset=keyset))
    with pytest.raises(InvalidState, match="run_input"):
        orc.resume_flow_run(run.id, {"answer": LONE})
    assert orc.read_flow_run(run.id).state_type.value == "PAUSED"
    assert_database_consistent(orc.database)


def test_well_formed_odd_unicode_and_nul_bytes_round_trip(orc):
    odd = "\x00 \u202e\U0001f642 \ufeff\u0301 \U0010ffff"
    run = orc.create_flow_run(name=odd, flow_name=odd, parameters={odd: odd})
    result = orc.set_flow_run_state(run.id, Running(name=odd, message=odd, data={odd: odd}), force=True)
    again = orc.read_flow_run(run.id)
    assert (again.name, again.flow_name, again.parameters) == (odd, odd, {odd: odd})
    assert again.state == result.state
    assert again.state.message == odd and again.state.data == {odd: odd}

"""A run-input schema stored by hand that flowstate cannot use refuses every resume, changing nothing.

Prefect's server fails on all of these (HTTP 500) and writes nothing; flowstate answers REJECT with
abort details ``Invalid schema: ...``, checked before the pause's expiry as Prefect's order does.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from flowstate import Orchestrator, SetStateStatus
from flowstate.states import Paused, Running
from flowstate.testing import FrozenClock

START = datetime(2024, 1, 1, tzinfo=timezone.utc)
KEYSET = {
    "description": "paused-k-description",
    "response": "paused-k-response",
    "schema": "paused-k-schema",
}
UNUSABLE = ["[1, 2]", '"text"', '{"type": "nonsense"}', "null", "42", "true", "false"]


@pytest.mark.parametrize("expired", [False, True], ids=["pending", "expired"])
@pytest.mark.parametrize("schema_text", UNUSABLE)
def test_an_unusable_stored_schema_rejects_the_resume_and_changes_nothing(
    backend, schema_text: str, expired: bool
) -> None:
    database = backend.new_database(memory=True)
    clock = FrozenClock(START)
    try:
        with Orchestrator(database, clock=clock) as orc:
            run = orc.create_flow_run(state=Running())
            pause = Paused(
                pause_expiration_time=START + timedelta(seconds=60),
                pause_key="k",
                run_input_keyset=KEYSET,
            )
            assert orc.set_flow_run_state(run.id, pause).status is SetStateStatus.ACCEPT
            orc.create_flow_run_input(run.id, KEYSET["schema"], schema_text)
            if expired:
                clock.advance(120)
            before = orc.read_flow_run(run.id)
            for given in ({"approved": True}, {}, None):
                result = orc.resume_flow_run(run.id, run_input=given)
                assert result.status is SetStateStatus.REJECT
                assert result.details.type == "abort_details"
                assert result.details.reason.startswith("Invalid schema: "), result.details.reason
                assert result.state.id == before.state.id
            after = orc.read_flow_run(run.id)
            assert after.state.id == before.state.id
            assert after.run_count == before.run_count
            assert after.empirical_policy == before.empirical_policy
            assert len(orc.read_flow_run_states(run.id)) == 2
            with pytest.raises(KeyError):
                orc.read_flow_run_input(run.id, KEYSET["response"])
    finally:
        backend.drop(database)


def test_the_reason_names_a_stored_schema_that_is_not_an_object() -> None:
    with Orchestrator(":memory:") as orc:
        run = orc.create_flow_run(state=Running())
        orc.set_flow_run_state(run.id, Paused(pause_key="k", run_input_keyset=KEYSET))
        orc.create_flow_run_input(run.id, KEYSET["schema"], "null")
        reason = orc.resume_flow_run(run.id, run_input={}).details.reason
        assert reason == "Invalid schema: null is not of type 'object'"

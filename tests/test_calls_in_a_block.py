"""A call inside ``with orc.transaction():`` is all or nothing without a savepoint of its own.

Every call checks its input before its first write, so a call that refuses (unknown run, taken
run-input key, bad state) leaves the block as it was and the block goes on. Only a database
error can stop a call halfway; then the enclosing block cannot commit: later calls in it raise,
and it rolls back when it ends (SQLite; on PostgreSQL each call still has a savepoint).
"""

from __future__ import annotations

import sqlite3
import uuid
from typing import Any

import pytest

from flowstate import DatabaseError, ObjectAlreadyExists, ObjectNotFound, Orchestrator
from flowstate.states import Paused, Pending, Running, StateType

_FAIL_RUNNING = (
    "CREATE TRIGGER fail_running BEFORE UPDATE ON flow_run WHEN NEW.state_type = 'RUNNING' "
    "BEGIN SELECT RAISE(ABORT, 'simulated disk failure'); END"
)


def _add_failing_trigger(path: str) -> None:
    """Make every UPDATE that moves a flow run to RUNNING fail: after the state row's INSERT."""
    conn = sqlite3.connect(path)
    conn.execute(_FAIL_RUNNING)
    conn.commit()
    conn.close()


def _history(path: str, run_id: Any) -> list[StateType]:
    with Orchestrator(path) as fresh:
        return [s.type for s in fresh.read_flow_run_states(run_id)]


def test_a_call_that_refuses_leaves_the_block_usable_and_it_commits(tmp_path: Any) -> None:
    path = str(tmp_path / "block.db")
    with Orchestrator(path) as orc:
        with orc.transaction():
            run = orc.create_flow_run()
            orc.set_flow_run_state(run.id, Pending())
            with pytest.raises(ObjectNotFound):
                orc.set_flow_run_state(uuid.uuid4(), Running())
            with pytest.raises(ObjectAlreadyExists):
                orc.create_flow_run(id=run.id)
            orc.set_flow_run_state(run.id, Running())
        assert _history(path, run.id) == [StateType.PENDING, StateType.RUNNING]


def test_a_resume_whose_input_key_is_taken_writes_nothing_and_the_block_goes_on(
    tmp_path: Any,
) -> None:
    path = str(tmp_path / "block.db")
    keyset = {"response": "k-response", "schema": "k-schema", "description": "k-description"}
    with Orchestrator(path) as orc:
        run = orc.create_flow_run(state=Running())
        orc.set_flow_run_state(run.id, Paused(pause_key="k", run_input_keyset=keyset))
        orc.create_flow_run_input(run.id, "k-schema", '{"type": "object"}')
        orc.create_flow_run_input(run.id, "k-response", '{"taken": true}')
        with orc.transaction():
            with pytest.raises(ObjectAlreadyExists):
                orc.resume_flow_run(run.id, {"answer": 1})
            assert orc.read_flow_run(run.id).state_type is StateType.PAUSED
            other = orc.create_flow_run(state=Pending())
        assert _history(path, run.id) == [StateType.RUNNING, StateType.PAUSED]
        assert orc.read_flow_run_input(run.id, "k-response") == '{"taken": true}'
        assert orc.read_flow_run(other.id).state_type is StateType.PENDING


def test_a_call_stopped_halfway_by_the_database_dooms_its_block(tmp_path: Any) -> None:
    path = str(tmp_path / "block.db")
    with Orchestrator(path) as orc:
        run = orc.create_flow_run(state=Pending())
        _add_failing_trigger(path)
        with pytest.raises(DatabaseError, match="rolled back"):
            with orc.transaction():
                orc.create_flow_run(state=Pending())
                with pytest.raises(DatabaseError, match="simulated disk failure"):
                    orc.set_flow_run_state(run.id, Running())  # its state row was inserted
                with pytest.raises(DatabaseError, match="cannot commit"):
                    orc.create_flow_run()
        # nothing of the block was kept: no half-written transition, no new run
        assert _history(path, run.id) == [StateType.PENDING]
        assert [r.id for r in orc.read_flow_runs()] == [run.id]
        assert orc.read_flow_run(run.id).state_type is StateType.PENDING
        # and the orchestrator works on
        assert orc.set_flow_run_state(run.id, Pending()).status.value == "ABORT"


def test_a_block_that_raises_after_a_halfway_call_rolls_back_with_its_own_error(
    tmp_path: Any,
) -> None:
    path = str(tmp_path / "block.db")
    with Orchestrator(path) as orc:
        run = orc.create_flow_run(state=Pending())
        _add_failing_trigger(path)
        with pytest.raises(DatabaseError, match="simulated disk failure"):
            with orc.transaction():
                orc.set_flow_run_state(run.id, Running())
        assert _history(path, run.id) == [StateType.PENDING]


def test_a_halfway_call_in_a_nested_block_undoes_only_that_block(tmp_path: Any) -> None:
    path = str(tmp_path / "block.db")
    with Orchestrator(path) as orc:
        run = orc.create_flow_run(state=Pending())
        _add_failing_trigger(path)
        with orc.transaction():
            kept = orc.create_flow_run(state=Pending())
            with pytest.raises(DatabaseError, match="rolled back"):
                with orc.transaction():
                    orc.create_flow_run()
                    with pytest.raises(DatabaseError):
                        orc.set_flow_run_state(run.id, Running())
            orc.set_flow_run_state(kept.id, Pending(name="Submitted"))
        assert _history(path, run.id) == [StateType.PENDING]
        assert {r.id for r in orc.read_flow_runs()} == {run.id, kept.id}
        assert [s.name for s in orc.read_flow_run_states(kept.id)] == ["Pending", "Submitted"]

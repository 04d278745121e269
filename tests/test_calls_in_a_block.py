"""A call inside ``with orc.transaction():`` is all or nothing without a savepoint of its own.

Every call checks its input before its first write, so a call that refuses (unknown run, taken
run-input key, bad state) leaves the block as it was and the block goes on. Only a database
error can stop a call halfway; then the enclosing block cannot commit: later calls in it raise,
and it rolls back when it ends (SQLite; on PostgreSQL each call still has a savepoint).
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from flowstate import (
    DatabaseError,
    InvalidState,
    ObjectAlreadyExists,
    ObjectNotFound,
    Orchestrator,
    RuleError,
)
from flowstate.rules import ANY_STATE, CORE_FLOW, CORE_TASK, rule
from flowstate.states import Completed, Paused, Pending, Running, Scheduled, StateType

_FAIL_RUNNING_STATE = (
    "CREATE TRIGGER fail_running BEFORE INSERT ON flow_run_state WHEN NEW.type = 'RUNNING' "
    "BEGIN SELECT RAISE(ABORT, 'simulated disk failure'); END"
)
_FAIL_RUNNING_RUN = (
    "CREATE TRIGGER fail_running_run BEFORE UPDATE ON flow_run WHEN NEW.state_type = 'RUNNING' "
    "BEGIN SELECT RAISE(ABORT, 'simulated disk failure'); END"
)


def _add_trigger(path: str, statement: str = _FAIL_RUNNING_STATE) -> None:
    """Make writing a RUNNING state fail: ``create_flow_run(state=Running())`` then fails
    after it inserted its run, i.e. halfway."""
    conn = sqlite3.connect(path)
    conn.execute(statement)
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


@pytest.fixture
def failing(tmp_path: Any) -> Iterator[tuple[str, Orchestrator, Any]]:
    """A file with one PENDING run, where writing a RUNNING state fails; its orchestrator."""
    path = str(tmp_path / "block.db")
    with Orchestrator(path) as orc:
        run = orc.create_flow_run(state=Pending())
        _add_trigger(path)
        yield path, orc, run
        # whatever happened in the block: no half-written transition, no new run
        assert _history(path, run.id) == [StateType.PENDING]
        assert [r.id for r in orc.read_flow_runs()] == [run.id]


def test_a_call_stopped_halfway_by_the_database_dooms_its_block(
    failing: tuple[str, Orchestrator, Any],
) -> None:
    _, orc, run = failing
    with pytest.raises(DatabaseError, match="rolled back"):
        with orc.transaction():
            orc.create_flow_run(state=Pending())
            with pytest.raises(DatabaseError, match="simulated disk failure"):
                orc.create_flow_run(state=Running())  # its run row was inserted
            with pytest.raises(DatabaseError, match="cannot commit"):
                orc.create_flow_run()
    assert orc.read_flow_run(run.id).state_type is StateType.PENDING
    # and the orchestrator works on
    assert orc.set_flow_run_state(run.id, Pending()).status.value == "ABORT"


def test_a_block_that_raises_after_a_halfway_call_rolls_back_with_its_own_error(
    failing: tuple[str, Orchestrator, Any],
) -> None:
    _, orc, _ = failing
    with pytest.raises(DatabaseError, match="simulated disk failure"):
        with orc.transaction():
            orc.create_flow_run(state=Running())


def test_a_halfway_call_in_a_nested_block_undoes_only_that_block(tmp_path: Any) -> None:
    path = str(tmp_path / "block.db")
    with Orchestrator(path) as orc:
        run = orc.create_flow_run(state=Pending())
        _add_trigger(path)
        with orc.transaction():
            kept = orc.create_flow_run(state=Pending())
            with pytest.raises(DatabaseError, match="rolled back"):
                with orc.transaction():
                    orc.create_flow_run()
                    with pytest.raises(DatabaseError):
                        orc.create_flow_run(state=Running())
            orc.set_flow_run_state(kept.id, Pending(name="Submitted"))
        assert _history(path, run.id) == [StateType.PENDING]
        assert {r.id for r in orc.read_flow_runs()} == {run.id, kept.id}
        assert [s.name for s in orc.read_flow_run_states(kept.id)] == ["Pending", "Submitted"]


# -- a run's row is written once per block ------------------------------------------------------


def _run_rows(path: str) -> dict[str, tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return {row[0]: row[1:] for row in conn.execute(
            "SELECT r.id, r.state_id, r.state_type, r.state_name, r.run_count, r.start_time, "
            "r.end_time, r.total_run_time, q.empirical_policy, s.type FROM flow_run r "
            "JOIN flow_run_policy q ON q.flow_run_id = r.id "
            "LEFT JOIN flow_run_state s ON s.id = r.state_id"
        )}
    finally:
        conn.close()


def _drive(orc: Orchestrator, runs: int) -> list[Any]:
    made = []
    for _ in range(runs):
        run = orc.create_flow_run()
        orc.set_flow_run_state(run.id, Pending())
        orc.set_flow_run_state(run.id, Running())
        orc.set_flow_run_state(run.id, Paused(pause_key="k"))
        orc.resume_flow_run(run.id)
        made.append(run.id)
    return made


def test_a_block_writes_the_same_run_rows_as_the_same_calls_one_by_one(tmp_path: Any) -> None:
    """25 runs: more than the run cache holds (16), so some waiting updates are written when
    their run leaves the cache, the others at the commit."""
    one_by_one, in_a_block = str(tmp_path / "a.db"), str(tmp_path / "b.db")
    with Orchestrator(one_by_one) as orc:
        first = _drive(orc, 25)
    with Orchestrator(in_a_block) as orc, orc.transaction():
        second = _drive(orc, 25)
    a, b = _run_rows(one_by_one), _run_rows(in_a_block)
    assert len(a) == len(b) == 25
    for one, other in zip(first, second):
        row_a, row_b = a[str(one)], b[str(other)]
        # state type and name, run count, policy (resuming after the resume), state row's type
        assert (row_a[1], row_a[2], row_a[3], row_a[7]) == (row_b[1], row_b[2], row_b[3], row_b[7])
        assert row_b[1] == "RUNNING" and row_b[-1] == "RUNNING"
        assert '"resuming":true' in row_b[7]


def test_reads_of_run_rows_inside_a_block_see_its_transitions(tmp_path: Any) -> None:
    path = str(tmp_path / "block.db")
    with Orchestrator(path) as orc, orc.transaction():
        run = orc.create_flow_run()
        orc.set_flow_run_state(run.id, Pending())
        orc.set_flow_run_state(run.id, Running())
        assert [r.id for r in orc.read_flow_runs(state_type="RUNNING")] == [run.id]
        assert orc.read_flow_runs(state_type="PENDING") == []
        orc.set_flow_run_state(run.id, Completed())
        assert [r.id for r in orc.read_flow_runs(state_type="COMPLETED")] == [run.id]


def test_a_run_scheduled_in_a_block_can_be_claimed_in_it(tmp_path: Any) -> None:
    path = str(tmp_path / "block.db")
    with Orchestrator(path) as orc, orc.transaction():
        run = orc.create_flow_run()
        orc.set_flow_run_state(run.id, Scheduled())
        claimed = orc.claim_due_flow_runs(limit=5)
        assert [r.id for r in claimed] == [run.id]
    assert _run_rows(path)[str(run.id)][1] == "PENDING"


def test_a_nested_block_rolled_back_keeps_the_outer_blocks_transitions(tmp_path: Any) -> None:
    path = str(tmp_path / "block.db")
    with Orchestrator(path) as orc:
        with orc.transaction():
            run = orc.create_flow_run()
            orc.set_flow_run_state(run.id, Pending())  # its run row waits for the commit
            with pytest.raises(RuntimeError), orc.transaction():
                orc.set_flow_run_state(run.id, Running())
                raise RuntimeError("undo the inner block")
            assert orc.read_flow_run(run.id).state_type is StateType.PENDING
        row = _run_rows(path)[str(run.id)]
        assert row[1] == "PENDING" and row[-1] == "PENDING"
        assert orc.set_flow_run_state(run.id, Running()).status.value == "ACCEPT"


def test_a_run_update_failing_at_commit_rolls_the_block_back(tmp_path: Any) -> None:
    path = str(tmp_path / "block.db")
    with Orchestrator(path) as orc:
        run = orc.create_flow_run(state=Pending())
        _add_trigger(path, _FAIL_RUNNING_RUN)
        with pytest.raises(DatabaseError, match="simulated disk failure"):
            with orc.transaction():
                other = orc.create_flow_run(state=Pending())
                orc.set_flow_run_state(run.id, Running())
        assert _history(path, run.id) == [StateType.PENDING]
        assert [r.id for r in orc.read_flow_runs()] == [run.id]
        assert other.id not in {r.id for r in orc.read_flow_runs()}


def test_a_run_read_again_after_leaving_the_cache_shows_its_waiting_update(tmp_path: Any) -> None:
    path = str(tmp_path / "block.db")
    with Orchestrator(path) as orc, orc.transaction():
        run = orc.create_flow_run()
        orc.set_flow_run_state(run.id, Pending())
        for _ in range(20):  # more runs than the cache holds: ``run`` leaves it
            orc.create_flow_run()
        assert orc.read_flow_run(run.id).state_type is StateType.PENDING  # read from its row
        assert orc.set_flow_run_state(run.id, Running()).status.value == "ACCEPT"
    assert _run_rows(path)[str(run.id)][1] == "RUNNING"


def test_one_block_object_entered_again_inside_itself_nests_as_a_new_block_would(
    open_orchestrator: Callable[..., Orchestrator],
) -> None:
    with open_orchestrator() as orc:
        block = orc.transaction()
        with block:
            run = orc.create_flow_run()
            orc.set_flow_run_state(run.id, Pending())
            with pytest.raises(RuntimeError, match="undo"), block:
                orc.set_flow_run_state(run.id, Running())
                raise RuntimeError("undo the inner entry only")
            with block:
                other = orc.create_flow_run(state=Pending())
            assert orc.read_flow_run(run.id).state_type is StateType.PENDING
        assert [s.type for s in orc.read_flow_run_states(run.id)] == [StateType.PENDING]
        assert orc.read_flow_run(other.id).state_type is StateType.PENDING
        with block:  # and it can be used again once closed
            assert orc.set_flow_run_state(run.id, Running()).status.value == "ACCEPT"
        assert orc.read_flow_run(run.id).state_type is StateType.RUNNING


def test_a_block_entered_again_inside_itself_leaves_no_lock_behind(database: str) -> None:
    with Orchestrator(database) as orc:
        block = orc.transaction()
        with block:
            orc.create_flow_run(flow_name="outer")
            with block:
                orc.create_flow_run(flow_name="inner")
        with Orchestrator(database, busy_timeout=1) as other:
            other.create_flow_run(flow_name="other")
            assert sorted(r.flow_name for r in other.read_flow_runs()) == [
                "inner", "other", "outer"
            ]


def test_leaving_a_block_in_a_thread_that_did_not_enter_it_is_refused(
    open_orchestrator: Callable[..., Orchestrator],
) -> None:
    with open_orchestrator() as orc:
        block = orc.transaction()
        with pytest.raises(InvalidState, match="not open in this thread"):
            block.__exit__(None, None, None)
        errors: list[BaseException] = []

        def leave() -> None:
            try:
                block.__exit__(None, None, None)
            except BaseException as exc:  # noqa: BLE001 (checked below)
                errors.append(exc)

        with block:
            run = orc.create_flow_run(state=Pending())
            thread = threading.Thread(target=leave)
            thread.start()
            thread.join(10)
            assert [type(e) for e in errors] == [InvalidState]
        with pytest.raises(InvalidState, match="not open in this thread"):
            block.__exit__(None, None, None)  # already left
        assert orc.read_flow_run(run.id).state_type is StateType.PENDING
        assert orc.create_flow_run(state=Pending()).state_type is StateType.PENDING


def test_a_refused_call_in_a_block_keeps_the_transitions_made_before_it(
    open_orchestrator: Callable[..., Orchestrator],
) -> None:
    with open_orchestrator() as orc:
        run = orc.create_flow_run()
        with orc.transaction():
            orc.set_flow_run_state(run.id, Pending())  # its run row's update waits (SQLite)
            with pytest.raises(ObjectAlreadyExists):
                orc.create_flow_run(id=run.id)
            with pytest.raises(ObjectNotFound):
                orc.set_flow_run_state(uuid.uuid4(), Running())
            assert orc.read_flow_run(run.id).state_type is StateType.PENDING
            again = orc.set_flow_run_state(run.id, Pending())
            assert again.status.value == "ABORT"  # PENDING -> PENDING: the run is PENDING
        assert orc.read_flow_run(run.id).state_type is StateType.PENDING
        assert [s.type for s in orc.read_flow_run_states(run.id)] == [StateType.PENDING]
        assert orc.set_flow_run_state(run.id, Running()).status.value == "ACCEPT"
        assert orc.read_flow_run(run.id).run_count == 1


def test_a_refused_call_that_reads_runs_does_not_doom_its_block(
    open_orchestrator: Callable[..., Orchestrator],
) -> None:
    with open_orchestrator() as orc:
        runs = [orc.create_flow_run() for _ in range(20)]  # more than the run cache keeps
        parent = orc.create_flow_run()
        task = orc.create_task_run(flow_run_id=parent.id)
        with orc.transaction():
            for run in runs:
                orc.set_flow_run_state(run.id, Pending())
            # reads the parent (SQLite: a kept run with a waiting update makes room), refuses
            with pytest.raises(ObjectAlreadyExists):
                orc.create_task_run(flow_run_id=parent.id, id=task.id)
            other = orc.create_flow_run(state=Pending())
        assert {orc.read_flow_run(run.id).state_type for run in runs} == {StateType.PENDING}
        assert orc.read_flow_run(other.id).state_type is StateType.PENDING


# -- a rule that raises after a built-in rule took a concurrency slot ----------------------------


@rule(from_=ANY_STATE, to=StateType.RUNNING, name="fails-for-fragile")
def _fails_for_fragile(ctx: Any) -> None:
    if ctx.run.name == "fragile":
        raise ValueError("the rule broke")


def _tagged_tasks(orc: Orchestrator, limit: int, *names: str) -> list[Any]:
    """Pending task runs of a running flow, named ``names``, tagged "db" (a limit of ``limit``)."""
    orc.create_concurrency_limit("db", limit)
    flow = orc.create_flow_run(state=Running())
    return [
        orc.create_task_run(flow_run_id=flow.id, name=name, tags=["db"], state=Pending())
        for name in names
    ]


@rule(from_=ANY_STATE, to=StateType.PENDING, name="fails-on-pending")
def _fails_on_pending(ctx: Any) -> None:
    raise ValueError("the rule broke")


def test_a_rule_raising_after_a_tag_slot_was_taken_undoes_only_its_call_in_a_block(
    open_orchestrator: Callable[..., Orchestrator],
) -> None:
    policy = CORE_TASK.append(_fails_for_fragile, name="breaks-for-fragile")
    with open_orchestrator(task_policy=policy) as orc:
        (task,) = _tagged_tasks(orc, 1, "fragile")
        with orc.transaction():
            before = orc.create_flow_run(state=Pending())
            with pytest.raises(RuleError, match="fails-for-fragile"):
                orc.set_task_run_state(task.id, Running())  # the tag rule took the slot first
            assert orc.read_concurrency_limit("db").active_slots == []
            after = orc.create_flow_run(state=Pending())
        assert orc.read_flow_run(before.id).state_type is StateType.PENDING
        assert orc.read_flow_run(after.id).state_type is StateType.PENDING
        assert orc.read_task_run(task.id).state_type is StateType.PENDING
        assert orc.read_concurrency_limit("db").active_slots == []


def test_a_rule_raising_after_a_deployment_slot_was_taken_in_a_nested_block_keeps_both_blocks(
    open_orchestrator: Callable[..., Orchestrator],
) -> None:
    policy = CORE_FLOW.append(_fails_on_pending, name="breaks-at-pending")
    with open_orchestrator(flow_policy=policy) as orc:
        deployment = orc.create_deployment("nightly", concurrency_limit=1)
        run = orc.create_flow_run(deployment_id=deployment.id, state=Scheduled())
        with orc.transaction():
            outer = orc.create_flow_run(state=Pending())
            with orc.transaction():
                inner = orc.create_flow_run(state=Pending())
                with pytest.raises(RuleError, match="fails-on-pending"):
                    orc.set_flow_run_state(run.id, Pending())  # after the slot was taken
                slots = orc.read_deployment(deployment.id).global_concurrency_limit
                assert slots is not None and slots.active_slots == 0
                orc.set_flow_run_state(inner.id, Running())
            orc.set_flow_run_state(outer.id, Running())
        assert orc.read_flow_run(run.id).state_type is StateType.SCHEDULED
        assert [s.type for s in orc.read_flow_run_states(run.id)] == [StateType.SCHEDULED]
        assert orc.read_flow_run(inner.id).state_type is StateType.RUNNING
        assert orc.read_flow_run(outer.id).state_type is StateType.RUNNING
        slots = orc.read_deployment(deployment.id).global_concurrency_limit
        assert slots is not None and slots.active_slots == 0


def test_the_calls_before_a_rule_raising_in_a_block_keep_the_slots_they_took(
    open_orchestrator: Callable[..., Orchestrator],
) -> None:
    policy = CORE_TASK.append(_fails_for_fragile, name="breaks-for-fragile")
    with open_orchestrator(task_policy=policy) as orc:
        first, second, fragile = _tagged_tasks(orc, 3, "first", "second", "fragile")
        with orc.transaction():
            assert orc.set_task_run_state(first.id, Running()).status.value == "ACCEPT"
            with pytest.raises(ValueError, match="inner block"):
                with orc.transaction():
                    orc.set_task_run_state(second.id, Running())
                    raise ValueError("inner block")
            with pytest.raises(RuleError, match="fails-for-fragile"):
                orc.set_task_run_state(fragile.id, Running())
        states = {run.id: orc.read_task_run(run.id).state_type for run in (first, second, fragile)}
        assert states == {
            first.id: StateType.RUNNING, second.id: StateType.PENDING, fragile.id: StateType.PENDING,
        }
        assert orc.read_concurrency_limit("db").active_slots == [first.id]


def test_a_read_that_fails_after_a_call_took_a_slot_in_a_block_undoes_nothing(
    open_orchestrator: Callable[..., Orchestrator],
) -> None:
    with open_orchestrator() as orc:
        (task,) = _tagged_tasks(orc, 1, "sturdy")
        with orc.transaction():
            assert orc.set_task_run_state(task.id, Running()).status.value == "ACCEPT"
            with pytest.raises(ObjectNotFound):
                orc.read_flow_run(uuid.uuid4())
            with pytest.raises(ObjectNotFound):
                orc.read_task_run(uuid.uuid4())
        assert orc.read_task_run(task.id).state_type is StateType.RUNNING
        assert orc.read_concurrency_limit("db").active_slots == [task.id]


def test_a_waiting_run_update_that_fails_inside_a_block_is_not_dropped(tmp_path: Any) -> None:
    """A read of run rows writes the block's waiting run updates first; when one fails, the
    read fails, and the update still waits: the block cannot commit a state without its run."""
    path = str(tmp_path / "block.db")
    with Orchestrator(path) as orc:
        run = orc.create_flow_run(state=Pending())
        _add_trigger(path, _FAIL_RUNNING_RUN)
        with pytest.raises(DatabaseError, match="simulated disk failure"):
            with orc.transaction():
                assert orc.set_flow_run_state(run.id, Running()).status.value == "ACCEPT"
                with pytest.raises(DatabaseError, match="simulated disk failure"):
                    orc.read_flow_runs()  # writes the waiting update of the run first
        assert _history(path, run.id) == [StateType.PENDING]
        assert _run_rows(path)[str(run.id)][1] == "PENDING"

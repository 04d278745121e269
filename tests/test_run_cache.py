"""The store's cache of decoded flow runs must be invisible: every read equals a fresh read.

The tests that take ``database`` run on both backends (PostgreSQL keeps no cache: there they
check the same behaviour through a plain store)."""

from __future__ import annotations

import contextlib
import itertools
import json
import random
import sqlite3
import tempfile
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowstate import FlowstateError, ObjectNotFound, Orchestrator, StateType
from flowstate.states import Completed, Failed, Paused, Pending, Running, Scheduled
from flowstate.store import rows
from flowstate.store.run_cache import Store
from flowstate.store.store import SqliteStore
from flowstate.testing import FrozenClock, transition_sequences


def _exact(run: Any) -> Any:
    """A run's values with their types, and which fields pydantic counts as set."""

    def typed(value: Any) -> Any:
        if hasattr(value, "__pydantic_fields_set__"):
            return (type(value), sorted(value.__pydantic_fields_set__), {k: typed(v) for k, v in value.__dict__.items()})
        if isinstance(value, datetime):
            return (type(value), value, value.tzinfo)
        if isinstance(value, set):
            return (type(value), sorted(value))
        return (type(value), value)

    return typed(run)


def _fresh(path: str, run_id: Any) -> Any:
    with Orchestrator(path) as other:  # a new connection: nothing cached
        return other.read_flow_run(run_id)


def test_reads_after_each_transition_equal_a_fresh_read(tmp_path: Any) -> None:
    path = str(tmp_path / "cache.db")
    with Orchestrator(path) as orc:
        run = orc.create_flow_run(flow_name="f", parameters={"a": [1, 2]}, tags=["t"])
        assert _exact(run) == _exact(_fresh(path, run.id))
        later = datetime.now(timezone.utc) + timedelta(hours=1)
        steps = [Scheduled(), Pending(), Running(), Paused(pause_key="k"), None, Completed(),
                 Scheduled(later, name="AwaitingRetry")]
        for state in steps:
            if state is None:
                orc.resume_flow_run(run.id)
            else:
                orc.set_flow_run_state(run.id, state, force=state.name == "AwaitingRetry")
            mine = orc.read_flow_run(run.id)
            fresh = _fresh(path, run.id)
            mine.estimated_run_time = fresh.estimated_run_time = timedelta(0)  # "now"-dependent
            assert _exact(mine) == _exact(fresh)


def test_a_returned_run_can_be_changed_without_affecting_later_reads(tmp_path: Any) -> None:
    with Orchestrator(str(tmp_path / "cache.db")) as orc:
        run = orc.create_flow_run(parameters={"a": 1}, tags=["t"])
        orc.set_flow_run_state(run.id, Running())
        orc.set_flow_run_state(run.id, Paused(pause_key="k"))
        got = orc.read_flow_run(run.id)
        got.parameters["b"] = 2
        got.tags.append("x")
        got.empirical_policy.pause_keys.add("other")
        got.empirical_policy.retries = 9
        again = orc.read_flow_run(run.id)
        assert again.parameters == {"a": 1} and again.tags == ["t"]
        assert again.empirical_policy.pause_keys == {"k"} and again.empirical_policy.retries is None


def test_writes_by_another_connection_are_seen(tmp_path: Any) -> None:
    path = str(tmp_path / "cache.db")
    with Orchestrator(path) as orc, Orchestrator(path) as other:
        run = orc.create_flow_run()
        orc.set_flow_run_state(run.id, Pending())
        other.set_flow_run_state(run.id, Running())
        assert orc.read_flow_run(run.id).state.type.value == "RUNNING"
        # and the next transition starts from the other connection's state
        assert orc.set_flow_run_state(run.id, Completed()).status.value == "ACCEPT"
        assert orc.read_flow_run(run.id).run_count == _fresh(path, run.id).run_count == 1


def test_a_rolled_back_transition_leaves_no_trace_in_later_reads(tmp_path: Any) -> None:
    with Orchestrator(str(tmp_path / "cache.db")) as orc:
        run = orc.create_flow_run()
        orc.set_flow_run_state(run.id, Pending())
        with pytest.raises(RuntimeError):
            with orc.transaction():
                orc.set_flow_run_state(run.id, Running())
                assert orc.read_flow_run(run.id).state.type.value == "RUNNING"
                raise RuntimeError("undo")
        assert orc.read_flow_run(run.id).state.type.value == "PENDING"
        assert orc.set_flow_run_state(run.id, Running()).status.value == "ACCEPT"
        assert orc.read_flow_run(run.id).run_count == 1


@pytest.mark.parametrize(("years", "microseconds"), [(1, 123_457), (200, 123_457), (285, 1)])
def test_a_long_run_time_reads_back_from_the_cache_as_from_the_file(
    tmp_path: Any, years: int, microseconds: int
) -> None:
    """The file keeps a run time as float seconds, which lose microseconds past ~285 years:
    the cached run must hold what reading gives back, not the exact sum."""
    path = str(tmp_path / "cache.db")
    start = datetime(2000, 1, 1, tzinfo=timezone.utc)
    later = start + timedelta(days=365.25 * years, microseconds=microseconds)
    times = iter([start])
    with Orchestrator(path, clock=lambda: next(times, later)) as orc:
        run = orc.create_flow_run(state=Running())
        orc.set_flow_run_state(run.id, Completed())  # at ``later``: the run time is the gap
        with orc.transaction():  # inside a transaction, so the cached run is the one read
            mine = orc.read_flow_run(run.id)
        assert abs(mine.total_run_time - (later - start)) <= timedelta(microseconds=1)
        assert _exact(mine) == _exact(_fresh(path, run.id))


def _gone(orc: Orchestrator, run_id: Any) -> None:
    """Every way of reaching a flow run says it is not there."""
    with pytest.raises(ObjectNotFound):
        orc.read_flow_run(run_id)
    with pytest.raises(ObjectNotFound):
        orc.read_flow_run_states(run_id)
    with pytest.raises(ObjectNotFound):
        orc.set_flow_run_state(run_id, Running())
    with pytest.raises(ObjectNotFound):
        orc.set_flow_run_state(run_id, Completed(), force=True)
    with pytest.raises(ObjectNotFound):
        orc.resume_flow_run(run_id)
    with pytest.raises(ObjectNotFound):
        orc.heartbeat(run_id)
    with pytest.raises(ObjectNotFound):
        orc.create_task_run(flow_run_id=run_id)
    assert run_id not in {r.id for r in orc.read_flow_runs()}


def test_a_deleted_run_is_gone_for_the_orchestrator_that_deleted_it(database: str) -> None:
    with Orchestrator(database) as orc:
        run = orc.create_flow_run(state=Pending())
        orc.set_flow_run_state(run.id, Running())  # read and written: the run is cached
        assert orc.read_flow_run(run.id).state_type is StateType.RUNNING
        orc.delete_flow_run(run.id)
        _gone(orc, run.id)
        with pytest.raises(ObjectNotFound):
            orc.delete_flow_run(run.id)
    with Orchestrator(database) as fresh:
        _gone(fresh, run.id)


def test_a_run_deleted_inside_a_block_is_gone_in_the_block_and_after(database: str) -> None:
    with Orchestrator(database) as orc:
        kept = orc.create_flow_run(state=Pending())
        run = orc.create_flow_run(state=Pending())
        with orc.transaction():
            orc.set_flow_run_state(run.id, Running())  # its run row's update waits (SQLite)
            orc.set_flow_run_state(kept.id, Running())
            orc.delete_flow_run(run.id)
            _gone(orc, run.id)
            assert orc.read_flow_run(kept.id).state_type is StateType.RUNNING
        _gone(orc, run.id)
        assert orc.read_flow_run(kept.id).state_type is StateType.RUNNING


def test_a_run_change_without_a_new_state_is_saved(database: str) -> None:
    """A refused PAUSED -> PENDING writes no state, but leaving the pause flags the run as
    resuming (Prefect's HandleResumingPausedFlows): that change is saved like any other."""
    clock = FrozenClock(datetime(2026, 1, 1, tzinfo=timezone.utc))
    with Orchestrator(database, clock=clock) as orc:
        run = orc.create_flow_run(state=Running())
        orc.set_flow_run_state(run.id, Paused(pause_key="k"))
        assert orc.read_flow_run(run.id).empirical_policy.resuming is False
        clock.advance(1)
        refused = orc.set_flow_run_state(run.id, Pending())
        assert (refused.status.value, refused.state.type) == ("REJECT", StateType.PAUSED)
        mine = orc.read_flow_run(run.id)
        assert mine.empirical_policy.resuming is True and mine.updated == clock.now
    with Orchestrator(database) as reopened:
        again = reopened.read_flow_run(run.id)
        assert again.empirical_policy.resuming is True and again.updated == clock.now
        assert len(reopened.read_flow_run_states(run.id)) == 2  # Running, Paused


def test_a_run_change_without_a_new_state_inside_a_block_is_saved(database: str) -> None:
    with Orchestrator(database) as orc:
        run = orc.create_flow_run(state=Running())
        with orc.transaction():
            orc.set_flow_run_state(run.id, Paused(pause_key="k"))
            assert orc.set_flow_run_state(run.id, Pending()).status.value == "REJECT"
            assert orc.read_flow_run(run.id).empirical_policy.resuming is True
    with Orchestrator(database) as reopened:
        assert reopened.read_flow_run(run.id).empirical_policy.resuming is True


# -- the cache against the same store without it -------------------------------------------------


def _engine(store: Any, clock: FrozenClock) -> Orchestrator:
    """The Orchestrator over ``store``, its state ids 1, 2, 3, ... (alike on both sides)."""
    numbers = itertools.count(1)
    orc = Orchestrator.__new__(Orchestrator)
    orc._start_engine(
        store, clock, random.Random(0).uniform, None, None, None, lambda: uuid.UUID(int=next(numbers))
    )
    return orc


def _answer(call: Any) -> Any:
    try:
        return call().model_dump()
    except FlowstateError as exc:
        return type(exc), str(exc)


def _kind_calls(kind: str) -> tuple[str, str, str]:
    return f"set_{kind}_run_state", f"read_{kind}_run", f"read_{kind}_run_states"


@settings(max_examples=40, deadline=None)
@given(
    steps=transition_sequences("flow", max_size=14, mode="pauses") | transition_sequences("flow", max_size=14),
    plan=st.lists(st.tuples(*[st.booleans()] * 4), min_size=14, max_size=14),
)
def test_the_run_cache_answers_as_the_same_store_without_it(
    steps: list[Any], plan: list[tuple[bool, bool, bool, bool]]
) -> None:
    """The cached store (run_cache.Store) and the plain one (SqliteStore: every run read
    from its row) give the same answers and reads, call by call, inside blocks and out, with
    another connection committing in between or not. A transition works on the cached run as
    the last one left it, not as read: this is where a difference would show."""
    _compare("flow", steps, plan)


@settings(max_examples=30, deadline=None)
@given(
    steps=transition_sequences("task", max_size=10),
    plan=st.lists(st.tuples(st.just(False), *[st.booleans()] * 3), min_size=10, max_size=10),
)
def test_the_task_run_cache_answers_as_the_same_store_without_it(
    steps: list[Any], plan: list[tuple[bool, bool, bool, bool]]
) -> None:
    """As above, for task runs in a flow run (``working_task_run``)."""
    _compare("task", steps, plan)


def _compare(kind: str, steps: list[Any], plan: list[tuple[bool, bool, bool, bool]]) -> None:
    transition, read, history = _kind_calls(kind)
    with tempfile.TemporaryDirectory() as folder:
        clock = FrozenClock(datetime(2026, 1, 1, tzinfo=timezone.utc))
        cached = _engine(Store(f"{folder}/cached.db"), clock)
        other = Orchestrator(f"{folder}/cached.db")  # another connection to the cached file
        plain = _engine(SqliteStore(f"{folder}/plain.db"), clock)
        engines = (cached, plain)
        run_id, flow_id = uuid.uuid4(), uuid.uuid4()
        for orc in engines:
            if kind == "flow":
                orc.create_flow_run(id=run_id, name="r", parameters={"p": [1]}, tags=["t"])
            else:
                orc.create_flow_run(id=flow_id, name="f", state=Running())
                orc.create_task_run(id=run_id, flow_run_id=flow_id, tags=["t"])
        blocks = (contextlib.ExitStack(), contextlib.ExitStack())
        inside = False
        for (state, force), (resume, reading, commit, elsewhere) in zip(steps, plan):
            clock.advance(1)
            if elsewhere and not inside:  # (inside a block this connection holds the lock)
                other.create_flow_run()  # a commit to another run: kept runs are checked
            if resume:
                answers = [_answer(lambda: orc.resume_flow_run(run_id)) for orc in engines]
            else:
                answers = [
                    _answer(lambda: getattr(orc, transition)(run_id, state, force=force))
                    for orc in engines
                ]
            assert answers[0] == answers[1]
            if reading:
                assert _exact(getattr(cached, read)(run_id)) == _exact(getattr(plain, read)(run_id))
            if commit:
                for block in blocks:
                    block.close()
            elif not inside:
                for block, orc in zip(blocks, engines):
                    block.enter_context(orc.transaction())
            inside = not commit
        for block in blocks:
            block.close()
        assert _exact(getattr(cached, read)(run_id)) == _exact(getattr(plain, read)(run_id))
        histories = [[s.model_dump() for s in getattr(orc, history)(run_id)] for orc in engines]
        assert histories[0] == histories[1]
        for orc in (*engines, other):
            orc.close()


def test_a_commit_by_another_connection_to_other_runs_keeps_a_run_decoded(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While other connections write other runs, a transition reads its run's row, finds it
    as this connection left it, and goes on with the run it keeps instead of decoding the row
    again (under contention every BEGIN follows another connection's commit)."""
    path = str(tmp_path / "cache.db")
    with Orchestrator(path) as orc, Orchestrator(path) as other:
        run = orc.create_flow_run(state=Scheduled())
        decoded: list[str] = []
        decode = rows.flow_run_from_row

        def counted(row: Any) -> Any:
            decoded.append(row[0])
            return decode(row)

        monkeypatch.setattr(rows, "flow_run_from_row", counted)
        for state in (Pending(), Running(), Completed()):
            other.create_flow_run()  # a commit by another connection, to another run
            assert orc.set_flow_run_state(run.id, state).status.value == "ACCEPT"
        assert str(run.id) not in decoded
        assert _exact(orc.read_flow_run(run.id)) == _exact(_fresh(path, run.id))


def test_a_change_to_a_kept_runs_policy_by_another_program_is_seen(tmp_path: Any) -> None:
    """Only the run's row as a whole tells that a kept run is unchanged: another program
    that changes nothing but the run's policy (a retry) is heard by the next transition."""
    path = str(tmp_path / "cache.db")
    with Orchestrator(path) as orc:
        run = orc.create_flow_run(state=Pending())
        orc.set_flow_run_state(run.id, Running())  # the run is kept, as this transition left it
        with contextlib.closing(sqlite3.connect(path)) as raw, raw:
            select = "SELECT empirical_policy FROM flow_run_policy WHERE flow_run_id = ?"
            policy = json.loads(raw.execute(select, (str(run.id),)).fetchone()[0])
            raw.execute(
                "UPDATE flow_run_policy SET empirical_policy = ? WHERE flow_run_id = ?",
                (json.dumps({**policy, "retries": 1, "retry_delay": 0}), str(run.id)),
            )
        result = orc.set_flow_run_state(run.id, Failed())
        assert (result.status.value, result.state.name) == ("REJECT", "AwaitingRetry")


def test_a_created_run_is_built_for_its_answer_after_the_commit(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """create_flow_run with a state decodes the new run inside its transaction once (the run
    its forced transition works on); its answer is decoded from the row read there, once the
    transaction has committed, and equals a fresh read."""
    path = str(tmp_path / "cache.db")
    with Orchestrator(path) as orc:
        decoded: list[tuple[str, bool]] = []
        decode = rows.flow_run_from_row

        def counted(row: Any) -> Any:
            decoded.append((row[0], orc._store.in_transaction))
            return decode(row)

        monkeypatch.setattr(rows, "flow_run_from_row", counted)
        run = orc.create_flow_run(flow_name="f", parameters={"a": [1]}, tags=["t"], state=Scheduled())
        assert [inside for run_id, inside in decoded if run_id == str(run.id)] == [True, False]
        monkeypatch.undo()
        assert _exact(run) == _exact(_fresh(path, run.id))
        assert orc.set_flow_run_state(run.id, Pending()).status.value == "ACCEPT"

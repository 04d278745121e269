"""The Orchestrator through its public API, on a real database of each backend (SQLite in
memory or in a file, a fresh PostgreSQL schema), and on the in-memory store
(``ReferenceOrchestrator``)."""

from __future__ import annotations

import enum
import json
import random
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest

import flowstate
from flowstate import (
    InvalidState,
    ObjectAlreadyExists,
    ObjectNotFound,
    Orchestrator,
    SetStateStatus,
    StateType,
)
from flowstate.runs import TaskRunPolicy
from flowstate.states import (
    Completed,
    Failed,
    Paused,
    Pending,
    Running,
    Scheduled,
    Suspended,
)
from flowstate.testing import FrozenClock



class _Letter(str, enum.Enum):
    A = "a"
    B = "b"


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime(2026, 1, 1, tzinfo=timezone.utc))


@pytest.fixture
def orc(clock, open_orchestrator):
    with open_orchestrator(clock=clock) as orchestrator:
        yield orchestrator


def test_a_run_walks_scheduled_pending_running_completed(orc, clock):
    run = orc.create_flow_run(flow_name="etl", parameters={"n": 1}, tags=["a"])
    assert run.state is None and run.run_count == 0
    for state in (Scheduled(), Pending(), Running()):
        assert orc.set_flow_run_state(run.id, state).status is SetStateStatus.ACCEPT
    clock.advance(5)
    orc.set_flow_run_state(run.id, Completed(data={"storage_key": "s3://x"}))
    run = orc.read_flow_run(run.id)
    assert (run.state_type, run.run_count) == (StateType.COMPLETED, 1)
    # the frozen clock did not move between Scheduled, Pending and Running: each was bumped 1 µs
    assert run.total_run_time == timedelta(seconds=5, microseconds=-2)
    history = orc.read_flow_run_states(run.id)
    assert [s.type.value for s in history] == ["SCHEDULED", "PENDING", "RUNNING", "COMPLETED"]
    assert history[-1].id == run.state.id and history[-1].data == {"storage_key": "s3://x"}
    assert [s.timestamp for s in history] == sorted({s.timestamp for s in history})


def test_a_run_created_with_a_state_is_forced_into_it(orc):
    run = orc.create_flow_run(state=Running())
    assert run.state_type is StateType.RUNNING and run.run_count == 1


def test_unpersisted_results_are_returned_but_not_stored(orc):
    run = orc.create_flow_run(state=Running())
    result = orc.set_flow_run_state(run.id, Completed(data={"type": "unpersisted"}))
    assert result.state.data == {"type": "unpersisted"}
    assert orc.read_flow_run(run.id).state.data is None


def test_a_wait_follows_the_injected_clock(orc, clock):
    run = orc.create_flow_run()
    orc.set_flow_run_state(run.id, Scheduled(clock.now + timedelta(seconds=90)))
    result = orc.set_flow_run_state(run.id, Running())
    assert result.status is SetStateStatus.WAIT and result.details.delay_seconds == 90
    clock.advance(90)
    assert orc.set_flow_run_state(run.id, Running()).status is SetStateStatus.ACCEPT


def test_a_scheduled_state_without_a_time_is_scheduled_now_by_the_clock(orc, clock):
    run = orc.create_flow_run()
    result = orc.set_flow_run_state(run.id, Scheduled())
    assert result.state.state_details.scheduled_time == clock.now


def test_states_may_be_given_as_dicts_or_json(orc):
    run = orc.create_flow_run()
    assert orc.set_flow_run_state(run.id, {"type": "PENDING"}).status is SetStateStatus.ACCEPT
    assert orc.set_flow_run_state(run.id, '{"type": "RUNNING"}').status is SetStateStatus.ACCEPT


@pytest.mark.parametrize("bad", [
    {"type": "DONE"}, '{"type": "RUNNING"', {"type": "RUNNING", "name": 5},
    {"type": "RUNNING", "bogus": 1}, 42, {"type": "RUNNING", "data": object()},
])
def test_malformed_states_raise_invalid_state_and_write_nothing(orc, bad):
    run = orc.create_flow_run()
    with pytest.raises(InvalidState):
        orc.set_flow_run_state(run.id, bad)
    assert orc.read_flow_run_states(run.id) == []


def test_unknown_and_malformed_ids(orc):
    missing = uuid.uuid4()
    with pytest.raises(ObjectNotFound, match=f"Flow run with id {missing} not found"):
        orc.set_flow_run_state(missing, Running())
    with pytest.raises(ObjectNotFound):
        orc.read_task_run(missing)
    with pytest.raises(ObjectNotFound):
        orc.resume_flow_run(missing)
    with pytest.raises(InvalidState, match="is not a UUID"):
        orc.read_flow_run("not-a-uuid")


def test_an_existing_run_id_is_refused(orc):
    run = orc.create_flow_run(flow_name="first")
    with pytest.raises(ObjectAlreadyExists):
        orc.create_flow_run(id=run.id, flow_name="second")
    assert orc.read_flow_run(run.id).flow_name == "first"


def test_a_transaction_commits_together_or_not_at_all(orc):
    with orc.transaction():
        kept = orc.create_flow_run()
        orc.set_flow_run_state(kept.id, Pending())
    with pytest.raises(RuntimeError):
        with orc.transaction():
            lost = orc.create_flow_run()
            orc.set_flow_run_state(kept.id, Running())
            raise RuntimeError("boom")
    with pytest.raises(ObjectNotFound):
        orc.read_flow_run(lost.id)
    assert orc.read_flow_run(kept.id).state_type is StateType.PENDING


def test_run_input_crud(orc):
    run = orc.create_flow_run()
    orc.create_flow_run_input(run.id, "my-key", '{"a": 1}')
    with pytest.raises(ObjectAlreadyExists):
        orc.create_flow_run_input(run.id, "my-key", '{"a": 2}')
    assert orc.read_flow_run_input(run.id, "my-key") == '{"a": 1}'
    orc.delete_flow_run_input(run.id, "my-key")
    with pytest.raises(ObjectNotFound):
        orc.read_flow_run_input(run.id, "my-key")
    with pytest.raises(InvalidState):
        orc.create_flow_run_input(run.id, "bad key!", "x")


def paused_for_input(orc, clock, *, reschedule=False, deployment=False):
    run = orc.create_flow_run(state=Running(), deployment_id=uuid.uuid4() if deployment else None)
    keyset = {"description": "paused-k-description", "response": "paused-k-response",
              "schema": "paused-k-schema"}
    make = Suspended if reschedule else Paused
    pause = make(pause_expiration_time=clock.now + timedelta(hours=1), pause_key="k")
    pause = pause.model_copy(update={"state_details": pause.state_details.model_copy(
        update={"run_input_keyset": keyset})})
    assert orc.set_flow_run_state(run.id, pause).status is SetStateStatus.ACCEPT
    schema = {"type": "object", "properties": {"approved": {"type": "boolean"}},
              "required": ["approved"]}
    orc.create_flow_run_input(run.id, "paused-k-schema", json.dumps(schema))
    return run


def test_resume_validates_input_then_stores_it_compactly(orc, clock):
    run = paused_for_input(orc, clock)
    bad = orc.resume_flow_run(run.id, run_input={"approved": "yes"})
    assert bad.status is SetStateStatus.REJECT and bad.details.type == "abort_details"
    assert bad.details.reason == (
        "Reason: Validation failed for field 'approved'. Failure reason: 'yes' is not of type 'boolean'")
    good = orc.resume_flow_run(run.id, run_input={"approved": True})
    assert good.status is SetStateStatus.ACCEPT and good.state.type is StateType.RUNNING
    assert orc.read_flow_run_input(run.id, "paused-k-response") == '{"approved":true}'
    after = orc.read_flow_run(run.id)
    assert after.run_count == 2 and after.empirical_policy.resuming is True


def test_resuming_a_suspension_reschedules_the_run(orc, clock):
    run = paused_for_input(orc, clock, reschedule=True, deployment=True)
    result = orc.resume_flow_run(run.id, run_input={"approved": False})
    assert (result.state.type, result.state.name) == (StateType.SCHEDULED, "Resuming")
    assert orc.read_flow_run(run.id).run_count == 1


def test_resume_of_a_run_that_is_not_paused_aborts_without_a_state(orc):
    run = orc.create_flow_run(state=Running())
    result = orc.resume_flow_run(run.id)
    assert (result.status, result.state) == (SetStateStatus.ABORT, None)
    with pytest.raises(InvalidState):
        orc.resume_flow_run(run.id, run_input=["not", "an", "object"])


def _no_input_stored(orc, run_id):
    with pytest.raises(ObjectNotFound):
        orc.read_flow_run_input(run_id, "paused-k-response")


def test_a_resume_refused_for_an_expired_pause_stores_no_input(orc, clock):
    run = paused_for_input(orc, clock)
    clock.advance(hours=1, seconds=1)
    result = orc.resume_flow_run(run.id, run_input={"approved": True})
    assert (result.status, result.state.type) == (SetStateStatus.REJECT, StateType.FAILED)
    assert result.details.reason == "The flow run pause has timed out and can no longer resume."
    _no_input_stored(orc, run.id)


def test_a_resume_refused_for_invalid_input_stores_nothing_and_a_valid_one_still_can(orc, clock):
    run = paused_for_input(orc, clock)
    for bad in ({"approved": "yes"}, {"approved": {"__prefect_kind": "jinja", "template": "x"}}):
        result = orc.resume_flow_run(run.id, run_input=bad)
        assert (result.status, result.state.type) == (SetStateStatus.REJECT, StateType.PAUSED)
        _no_input_stored(orc, run.id)
    assert [s.type for s in orc.read_flow_run_states(run.id)] == [StateType.RUNNING, StateType.PAUSED]
    assert orc.resume_flow_run(run.id, run_input={"approved": True}).status is SetStateStatus.ACCEPT
    assert orc.read_flow_run_input(run.id, "paused-k-response") == '{"approved":true}'


def _paused_for_optional_input(orc, clock):
    run = paused_for_input(orc, clock)
    orc.delete_flow_run_input(run.id, "paused-k-schema")
    orc.create_flow_run_input(run.id, "paused-k-schema", json.dumps({"type": "object"}))
    return run


@pytest.mark.parametrize("given", [None, {}, {"note": {"__prefect_kind": "json"}}],
                         ids=["no-input", "empty", "emptied-by-hydration"])
def test_a_resume_with_no_input_stores_nothing(orc, clock, given):
    run = _paused_for_optional_input(orc, clock)
    result = orc.resume_flow_run(run.id) if given is None else orc.resume_flow_run(run.id, given)
    assert (result.status, result.state.type) == (SetStateStatus.ACCEPT, StateType.RUNNING)
    _no_input_stored(orc, run.id)


def test_a_json_placeholder_without_a_value_is_dropped_not_made_null(orc, clock):
    run = paused_for_input(orc, clock)
    given = {
        "approved": True,
        "note": {"__prefect_kind": "json"},
        "items": [1, {"__prefect_kind": "json"}, {"__prefect_kind": "json", "value": "[2]"}],
        "nested": {"a": {"__prefect_kind": "json"}, "b": {"__prefect_kind": "json", "value": 3}},
    }
    assert orc.resume_flow_run(run.id, run_input=given).status is SetStateStatus.ACCEPT
    stored = orc.read_flow_run_input(run.id, "paused-k-response")
    assert json.loads(stored) == {"approved": True, "items": [1, [2]], "nested": {"b": 3}}


def test_tasks_cache_their_results_across_runs(orc):
    flow = orc.create_flow_run(state=Running())
    first = orc.create_task_run(flow_run_id=flow.id, task_key="t", state=Running())
    orc.set_task_run_state(first.id, Completed(data={"storage_key": "r"}, cache_key="key"))
    second = orc.create_task_run(flow_run_id=flow.id, task_key="t", dynamic_key="1")
    result = orc.set_task_run_state(second.id, Running(cache_key="key"))
    assert (result.status, result.state.name) == (SetStateStatus.REJECT, "Cached")
    assert result.state.data == {"storage_key": "r"}
    assert orc.read_task_run(second.id).state_type is StateType.COMPLETED


@pytest.mark.parametrize(
    "given",
    [
        {},
        {"tags": ["etl", "größe"], "name": "named"},
        {"empirical_policy": {"retries": 2, "retry_delay": [1, 2.5], "retry_jitter_factor": 0.5}},
        {"empirical_policy": {"max_retries": 3, "retry_delay_seconds": 7}},
        {"empirical_policy": TaskRunPolicy(retry_delay=4)},
        {"standalone": True, "dynamic_key": "7", "task_key": "k"},
    ],
)
def test_a_created_task_run_is_what_reading_it_gives(orc, clock, given):
    # create_task_run answers without reading the row back: its run must be the read's, down
    # to the fields each model counts as set (the policy's too) and the times' microseconds
    flow = orc.create_flow_run(state=Running())
    for advance in (0, 0.000001, 1.5):  # a whole second, then microseconds
        clock.advance(advance)
        options = {k: v for k, v in given.items() if k != "standalone"}
        if not given.get("standalone"):
            options["flow_run_id"] = str(flow.id)  # (ids given as text)
        options["id"] = str(uuid.uuid4())
        created = orc.create_task_run(**options)
        read = orc.read_task_run(created.id)
        assert created == read
        assert created.model_dump_json() == read.model_dump_json()
        assert created.__pydantic_fields_set__ == read.__pydantic_fields_set__
        policies = created.empirical_policy, read.empirical_policy
        assert policies[0].__pydantic_fields_set__ == policies[1].__pydantic_fields_set__
        assert [type(v) for v in policies[0].__dict__.values()] == [
            type(v) for v in policies[1].__dict__.values()
        ]
        assert created.created == created.updated == clock.now
        assert created.created.utcoffset() == timedelta(0)
        # the run answered is the caller's own: changing it changes nothing stored or kept
        created.tags.append("mine")
        created.empirical_policy.retries = 9
        created.run_count = 5
        orc.set_task_run_state(created.id, Pending())
        after = orc.read_task_run(created.id)
        assert (after.tags, after.empirical_policy, after.run_count) == (
            read.tags, read.empirical_policy, 0
        )


def test_an_expired_cache_entry_is_ignored(orc, clock):
    flow = orc.create_flow_run(state=Running())
    first = orc.create_task_run(flow_run_id=flow.id, state=Running())
    orc.set_task_run_state(first.id, Completed(cache_key="k", cache_expiration=clock.now + timedelta(seconds=10)))
    clock.advance(11)
    second = orc.create_task_run(flow_run_id=flow.id, dynamic_key="1")
    assert orc.set_task_run_state(second.id, Running(cache_key="k")).status is SetStateStatus.ACCEPT


def test_task_retries_follow_the_seeded_jitter(clock):
    def delay_with(seed):
        with Orchestrator(":memory:", clock=clock, uniform=random.Random(seed).uniform) as orc:
            flow = orc.create_flow_run(state=Running())
            task = orc.create_task_run(flow_run_id=flow.id, state=Running(),
                                       empirical_policy={"retries": 2, "retry_delay": 10,
                                                         "retry_jitter_factor": 1.0})
            result = orc.set_task_run_state(task.id, Failed())
            return (result.state.state_details.scheduled_time - clock.now).total_seconds()
    assert delay_with(1) == delay_with(1)
    assert delay_with(1) != delay_with(2)


def test_read_filters(orc):
    a = orc.create_flow_run(state=Running())
    b = orc.create_flow_run(state=Completed())
    assert [r.id for r in orc.read_flow_runs()] == [a.id, b.id]
    assert [r.id for r in orc.read_flow_runs(state_type="COMPLETED")] == [b.id]
    assert [r.id for r in orc.read_flow_runs(limit=1, offset=1)] == [b.id]
    t1 = orc.create_task_run(flow_run_id=a.id, state=Running())
    orc.create_task_run(flow_run_id=b.id)
    assert [t.id for t in orc.read_task_runs(flow_run_id=a.id)] == [t1.id]
    assert [t.id for t in orc.read_task_runs(state_type=StateType.RUNNING)] == [t1.id]
    with pytest.raises(InvalidState):
        orc.read_flow_runs(state_type="DONE")


def test_deleting_a_flow_run_deletes_its_tasks_and_history(orc):
    flow = orc.create_flow_run(state=Running())
    task = orc.create_task_run(flow_run_id=flow.id, state=Running())
    orc.delete_flow_run(flow.id)
    with pytest.raises(ObjectNotFound):
        orc.read_task_run(task.id)
    with pytest.raises(ObjectNotFound):
        orc.delete_flow_run(flow.id)


def test_a_subflows_parent_task_follows_its_states(orc):
    parent = orc.create_flow_run(state=Running())
    tracker = orc.create_task_run(flow_run_id=parent.id, task_key="subflow")
    child = orc.create_flow_run(parent_task_run_id=tracker.id)
    orc.set_flow_run_state(child.id, Running())
    orc.set_flow_run_state(child.id, Completed())
    task = orc.read_task_run(tracker.id)
    assert task.state_type is StateType.COMPLETED and task.run_count == 1
    assert task.state.state_details.child_flow_run_id == child.id
    assert orc.read_flow_run(child.id).state.state_details.task_run_id == tracker.id


def test_threads_racing_for_the_same_run_have_exactly_one_winner(database):
    path = database
    with Orchestrator(path) as orc:
        runs = [orc.create_flow_run(state=Scheduled()).id for _ in range(20)]
    results: list[tuple[uuid.UUID, SetStateStatus]] = []
    lock = threading.Lock()

    def worker():
        with Orchestrator(path) as own:
            for run_id in runs:
                status = own.set_flow_run_state(run_id, Pending()).status
                with lock:
                    results.append((run_id, status))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with Orchestrator(path) as orc:
        for run_id in runs:
            accepted = [s for r, s in results if r == run_id and s is SetStateStatus.ACCEPT]
            assert len(accepted) == 1
            history = [s.type for s in orc.read_flow_run_states(run_id)]
            assert history.count(StateType.PENDING) == 1


def test_version_is_exposed():
    assert flowstate.__version__


def test_a_created_task_runs_transitions_follow_what_was_stored_not_the_callers_copy(orc, clock):
    # the run cache keeps a run of its own for the transitions: changing the answered run,
    # its policy's list of delays in place included, changes none of its retries
    flow = orc.create_flow_run(state=Running())
    created = orc.create_task_run(
        flow_run_id=flow.id, tags=["t"], empirical_policy={"retries": 1, "retry_delay": [10]}
    )
    created.empirical_policy.retries = 0
    created.empirical_policy.retry_delay[0] = 99  # type: ignore[index]
    created.tags.append("mine")
    for proposed in (Pending(), Running()):
        orc.set_task_run_state(created.id, proposed)
    result = orc.set_task_run_state(created.id, Failed())
    assert (result.status, result.state.name) == (SetStateStatus.REJECT, "AwaitingRetry")
    assert result.state.state_details.scheduled_time == clock.now + timedelta(seconds=10)
    assert orc.read_task_run(created.id).tags == ["t"]


class _ShoutingUUID(uuid.UUID):
    """An id that writes itself in capitals."""

    def __str__(self) -> str:
        return super().__str__().upper()


def test_a_task_run_created_with_an_id_of_a_uuid_subclass_is_stored_under_its_value(orc):
    flow = orc.create_flow_run(state=Running())
    given = _ShoutingUUID(int=uuid.uuid4().int)
    created = orc.create_task_run(id=given, flow_run_id=_ShoutingUUID(int=flow.id.int))
    assert type(created.id) is uuid.UUID and created.id == given
    assert type(created.flow_run_id) is uuid.UUID and created.flow_run_id == flow.id
    # stored under its value's text, as every id is (not the text the subclass writes)
    assert orc.read_task_run(created.id) == created == orc.read_task_runs(flow_run_id=flow.id)[0]
    assert orc.set_task_run_state(created.id, Pending()).status is SetStateStatus.ACCEPT
    # and found by the very id it was created with, whatever text that id writes
    assert orc.read_task_run(given).id == given
    assert orc.set_task_run_state(given, Running()).status is SetStateStatus.ACCEPT
    assert [s.type for s in orc.read_task_run_states(given)] == [StateType.PENDING, StateType.RUNNING]


def test_a_flow_run_is_found_by_an_id_of_a_uuid_subclass(orc):
    given = _ShoutingUUID(int=uuid.uuid4().int)
    created = orc.create_flow_run(id=given)
    assert type(created.id) is uuid.UUID and created.id == given
    assert orc.read_flow_run(given).id == given
    assert orc.set_flow_run_state(given, Pending()).status is SetStateStatus.ACCEPT
    assert orc.read_flow_run(str(given).lower()).state.type is StateType.PENDING


@pytest.mark.parametrize(
    "texts",
    [
        {"task_key": b"raw", "dynamic_key": "1"},
        {"task_key": _Letter.A, "name": _Letter.B},
        {"tags": [_Letter.A, "b"]},
        {"task_key": 5},
        {"task_key": 5, "dynamic_key": None, "name": ["x"]},
    ],
    ids=repr,
)
def test_a_task_runs_texts_are_taken_as_pydantic_takes_text(orc, texts):
    """Bytes, enums and str subclasses become str; anything else is refused, each field
    named, as validating a TaskRun does."""
    from pydantic import ValidationError

    from flowstate import _validation
    from flowstate.runs import TaskRun

    fields = {"task_key": "task", "dynamic_key": "0", "name": None, "tags": [], **texts}
    fields["name"] = fields["name"] or f"{fields['task_key']}-{fields['dynamic_key']}"
    try:
        expected = TaskRun(id=uuid.uuid4(), **fields)
    except ValidationError as exc:
        message = f"invalid task run: {_validation.validation_message(exc)}"
        with pytest.raises(InvalidState) as raised:
            orc.create_task_run(**texts)
        assert str(raised.value) == message
        assert orc.read_task_runs() == []
        return
    created = orc.create_task_run(**texts)
    got = (created.task_key, created.dynamic_key, created.name, created.tags)
    assert got == (expected.task_key, expected.dynamic_key, expected.name, expected.tags)
    assert {type(text) for text in (*got[:3], *got[3])} == {str}
    assert orc.read_task_run(created.id) == created


@pytest.mark.parametrize("policy", [{"retry_delay_seconds": float("inf")}, {"max_retries": "many"}])
def test_an_invalid_flow_run_policy_is_named_as_such_and_creates_no_run(orc, policy):
    with pytest.raises(InvalidState, match=r"^invalid empirical_policy: "):
        orc.create_flow_run(empirical_policy=policy)
    assert orc.read_flow_runs() == []


@pytest.mark.parametrize("option", ["clock", "uniform"])
def test_a_clock_or_random_source_that_cannot_be_called_is_refused_when_opening(option):
    with pytest.raises(InvalidState, match=f"{option} must be callable"):
        Orchestrator(":memory:", **{option: 5})
    with pytest.raises(InvalidState, match=f"{option} must be callable"):
        flowstate.testing.ReferenceOrchestrator(**{option: datetime(2026, 1, 1)})


def test_reads_never_wait_for_another_connections_open_transition(database):
    with Orchestrator(database) as writer, Orchestrator(database, busy_timeout=0.5) as reader:
        run = writer.create_flow_run(state=Pending())
        task = writer.create_task_run(flow_run_id=run.id, state=Pending())
        with writer.transaction():  # holds the runs' rows (PostgreSQL) or the file (SQLite)
            writer.set_flow_run_state(run.id, Running())
            writer.set_task_run_state(task.id, Running())
            started = time.monotonic()
            assert reader.read_flow_run(run.id).state_type is StateType.PENDING
            assert [s.type for s in reader.read_flow_run_states(run.id)] == [StateType.PENDING]
            assert reader.read_task_run(task.id).state_type is StateType.PENDING
            assert [s.type for s in reader.read_task_run_states(task.id)] == [StateType.PENDING]
            assert [r.id for r in reader.read_flow_runs()] == [run.id]
            assert [t.id for t in reader.read_task_runs(flow_run_id=run.id)] == [task.id]
            assert time.monotonic() - started < 0.5  # none waited for the writer
        assert reader.read_flow_run(run.id).state_type is StateType.RUNNING
        assert reader.set_flow_run_state(run.id, Completed()).status is SetStateStatus.ACCEPT

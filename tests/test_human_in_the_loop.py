"""Human in the loop: pause for typed input, wait for the resume, read the input back; and
send/receive input between runs. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pydantic
import pytest

from flowstate import (
    InvalidState,
    ObjectNotFound,
    Orchestrator,
    RunInput,
    RunInputMetadata,
    RunNotResumed,
    SetStateStatus,
    StateType,
    WaitTimeout,
)
from flowstate.states import Cancelled, Completed, Pending, Running
from flowstate.testing import FrozenClock

START = datetime(2024, 1, 1, tzinfo=timezone.utc)


class Approval(RunInput):
    approved: bool
    comment: str = ""


class PlainModel(pydantic.BaseModel):
    count: int


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


@pytest.fixture
def orc(backend, clock: FrozenClock) -> Iterator[Orchestrator]:
    database = backend.new_database(memory=True)
    with Orchestrator(database, clock=clock) as made:
        yield made
    backend.drop(database)


def _no_real_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(seconds: float) -> None:
        raise AssertionError(f"slept {seconds} s for real")

    monkeypatch.setattr(time, "sleep", refuse)


def _inputs(orc: Orchestrator, run_id: uuid.UUID) -> dict[str, str]:
    found = {}
    for key in ("paused-1-schema", "paused-1-description", "paused-1-response"):
        try:
            found[key] = orc.read_flow_run_input(run_id, key)
        except ObjectNotFound:
            pass
    return found


# -- pause_flow_run -----------------------------------------------------------------------------


def test_the_pause_stores_its_schema_after_the_accept_so_a_resume_is_checked_against_it(orc) -> None:
    run = orc.create_flow_run(state=Running())
    result = orc.pause_flow_run(run.id, wait_for_input=Approval, timeout=60)
    assert result.status is SetStateStatus.ACCEPT
    details = result.state.state_details
    assert (result.state.name, details.pause_key) == ("Paused", "1")
    assert details.pause_timeout == START + timedelta(seconds=60)
    assert details.run_input_keyset == {
        "description": "paused-1-description",
        "response": "paused-1-response",
        "schema": "paused-1-schema",
    }
    assert json.loads(orc.read_flow_run_input(run.id, "paused-1-schema"))["title"] == "Approval"
    bad = orc.resume_flow_run(run.id, run_input={"approved": "yes"})
    assert bad.status is SetStateStatus.REJECT
    assert "Validation failed for field 'approved'" in bad.details.reason
    assert orc.read_pause_input(run.id, key="1") is None
    good = orc.resume_flow_run(run.id, run_input={"approved": True, "comment": "ship it"})
    assert good.status is SetStateStatus.ACCEPT
    assert orc.read_pause_input(run.id, key="1") == {"approved": True, "comment": "ship it"}
    approval = orc.read_pause_input(run.id, key="1", model=Approval)
    assert isinstance(approval, Approval) and approval.approved and approval.comment == "ship it"
    assert approval.metadata == RunInputMetadata(
        key="paused-1-response", sender=None, receiver=run.id
    )


@pytest.mark.parametrize(
    ("state", "status", "reason"),
    [
        (Pending(), SetStateStatus.REJECT, "Cannot pause flows that are not currently running."),
        (Completed(), SetStateStatus.ABORT, "Run is already in terminal state COMPLETED."),
    ],
)
def test_a_refused_pause_writes_nothing(orc, state, status, reason) -> None:
    run = orc.create_flow_run(state=state)
    result = orc.pause_flow_run(run.id, wait_for_input=Approval, description="Approve?")
    assert (result.status, result.details.reason) == (status, reason)
    assert _inputs(orc, run.id) == {}
    assert [s.type for s in orc.read_flow_run_states(run.id)] == [state.type]
    with pytest.raises(ObjectNotFound):
        orc.read_pause_input(run.id, key="1")


def test_the_same_key_twice_is_refused_and_the_first_pauses_input_stays(orc) -> None:
    run = orc.create_flow_run(state=Running())
    orc.pause_flow_run(run.id, key="approval", wait_for_input=bool)
    orc.resume_flow_run(run.id, run_input={"value": True})
    again = orc.pause_flow_run(run.id, key="approval", wait_for_input=bool)
    assert (again.status, again.details.reason) == (
        SetStateStatus.REJECT, "This pause has already fired.")
    assert orc.read_pause_input(run.id, key="approval", model=bool) is True


def test_default_keys_count_the_runs_pauses_from_one(orc) -> None:
    run = orc.create_flow_run(state=Running())
    keys = []
    for _ in range(3):
        keys.append(orc.pause_flow_run(run.id).state.state_details.pause_key)
        orc.resume_flow_run(run.id)
    assert keys == ["1", "2", "3"]


def test_a_suspension_needs_a_key_and_uses_the_suspended_keyset(orc) -> None:
    run = orc.create_flow_run(state=Running(), deployment_id=uuid.uuid4())
    with pytest.raises(InvalidState, match="needs a key"):
        orc.pause_flow_run(run.id, reschedule=True, wait_for_input=int)
    result = orc.pause_flow_run(run.id, key="review", reschedule=True, wait_for_input=int)
    assert (result.status, result.state.name) == (SetStateStatus.ACCEPT, "Suspended")
    assert result.state.state_details.pause_reschedule
    assert result.state.state_details.run_input_keyset["schema"] == "suspended-review-schema"
    resumed = orc.resume_flow_run(run.id, run_input={"value": 7})
    assert (resumed.state.type, resumed.state.name) == (StateType.SCHEDULED, "Resuming")
    assert orc.wait_for_resume(run.id, key="review", model=int) == 7


@pytest.mark.parametrize(
    ("given", "answer", "value"),
    [(str, {"value": "ada"}, "ada"), (int, {"value": 42}, 42), (list[int], {"value": [1, 2]}, [1, 2])],
    ids=["str", "int", "list-int"],
)
def test_automatic_inputs_read_back_as_plain_values(orc, given, answer, value) -> None:
    run = orc.create_flow_run(state=Running())
    orc.pause_flow_run(run.id, wait_for_input=given)
    wrong = orc.resume_flow_run(run.id, run_input={"value": {"not": "it"}})
    assert wrong.status is SetStateStatus.REJECT
    assert orc.resume_flow_run(run.id, run_input=answer).status is SetStateStatus.ACCEPT
    assert orc.read_pause_input(run.id, key="1", model=given) == value
    assert orc.wait_for_resume(run.id, key="1", model=given) == value
    assert orc.read_pause_input(run.id, key="1") == answer


def test_a_plain_pydantic_model_is_upgraded_to_run_input(orc) -> None:
    run = orc.create_flow_run(state=Running())
    orc.pause_flow_run(run.id, wait_for_input=PlainModel)
    schema = json.loads(orc.read_flow_run_input(run.id, "paused-1-schema"))
    assert schema["title"] == "PlainModelRunInput" and schema["additionalProperties"] is False
    orc.resume_flow_run(run.id, run_input={"count": 3})
    got = orc.read_pause_input(run.id, key="1", model=PlainModel)
    assert isinstance(got, PlainModel) and got.count == 3


def test_a_description_is_stored_as_json_text(orc) -> None:
    run = orc.create_flow_run(state=Running())
    orc.pause_flow_run(run.id, wait_for_input=Approval, description="Approve the **load**?")
    assert orc.read_flow_run_input(run.id, "paused-1-description") == '"Approve the **load**?"'
    described = Approval.with_initial_data(description="From the model", approved=True)
    run = orc.create_flow_run(state=Running())
    orc.pause_flow_run(run.id, wait_for_input=described)
    assert orc.read_flow_run_input(run.id, "paused-1-description") == '"From the model"'


def test_a_json_schema_dict_is_accepted(orc) -> None:
    run = orc.create_flow_run(state=Running())
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    orc.pause_flow_run(run.id, wait_for_input=schema)
    assert json.loads(orc.read_flow_run_input(run.id, "paused-1-schema")) == schema
    assert orc.resume_flow_run(run.id, run_input={"n": "x"}).status is SetStateStatus.REJECT
    assert orc.resume_flow_run(run.id, run_input={"n": 1}).status is SetStateStatus.ACCEPT



@pytest.mark.parametrize(
    ("schema", "words"),
    [
        ({"$ref": "#/definitions/Missing"}, "PointerToNowhere: '/definitions/Missing'"),
        ({"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}}}, "PointerToNowhere"),
        ({"properties": {"a": {"items": {"$ref": "other.json"}}}}, "Unresolvable: other.json"),
        ({"$ref": "#"}, "circular references"),
        ({"$ref": "#/$defs/a", "$defs": {"a": {"allOf": [{"$ref": "#/$defs/a"}]}}},
         "circular references"),
    ],
)
def test_a_schema_no_resume_could_pass_is_refused_by_the_pause(open_orchestrator, schema,
                                                                words) -> None:
    # a $ref that leads nowhere, or back to itself without going into the input, fails every
    # resume ("Invalid schema: ..."): accepting the pause left a run no one could resume
    orc = open_orchestrator(clock=FrozenClock(START))
    run = orc.create_flow_run(state=Running())
    with pytest.raises(InvalidState, match="not a usable JSON schema: Invalid schema: ") as caught:
        orc.pause_flow_run(run.id, key="k", wait_for_input=schema)
    assert words in str(caught.value)
    assert [s.type for s in orc.read_flow_run_states(run.id)] == [StateType.RUNNING]


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"a": {"$ref": "#/definitions/A"}},
         "definitions": {"A": {"type": "integer"}}},
        {"type": "object", "properties": {"child": {"$ref": "#"}}},  # a tree: goes into the input
        {"$id": "https://example.com/s", "properties": {"a": {"$ref": "s#/$defs/A"}},
         "$defs": {"A": {"type": "integer"}}},
        {"$defs": {"unused": {"$ref": "#/$defs/nowhere"}}, "type": "object"},  # never reached
        {"properties": {"a": {"$ref": "#/definitions/a%20b"}}, "definitions": {"a b": {}}},
    ],
)
def test_schemas_whose_references_resolve_are_accepted(open_orchestrator, schema) -> None:
    orc = open_orchestrator(clock=FrozenClock(START))
    run = orc.create_flow_run(state=Running())
    assert orc.pause_flow_run(run.id, key="k", wait_for_input=schema).status is SetStateStatus.ACCEPT
    assert orc.resume_flow_run(run.id, run_input={"a": 1}).status is SetStateStatus.ACCEPT

@pytest.mark.parametrize(
    ("arguments", "words"),
    [
        ({"wait_for_input": {"type": "nonsense"}}, "not a usable JSON schema"),
        ({"wait_for_input": {"properties": {"a": {"type": 5}}}}, "not a usable JSON schema"),
        ({"wait_for_input": {"bad": object()}}, "not JSON"),
        ({"wait_for_input": 5}, "must be a type"),
        ({"wait_for_input": "str"}, "must be a type"),
        ({"wait_for_input": Approval(approved=True)}, "must be a type"),
        ({"timeout": -1}, "timeout=-1"),
        ({"timeout": float("inf")}, "timeout=inf"),
        ({"timeout": float("nan")}, "timeout=nan"),
        ({"timeout": "60"}, "timeout='60'"),
        ({"timeout": 1e300}, "year 9999"),
        ({"key": "has space"}, "letters, digits and dashes"),
        ({"key": ""}, "letters, digits and dashes"),
        ({"key": 1}, "letters, digits and dashes"),
        ({"description": "no input"}, "pass wait_for_input too"),
        ({"description": 5, "wait_for_input": int}, "description must be a str"),
        ({"reschedule": "yes", "key": "k"}, "reschedule must be True or False"),
    ],
)
def test_bad_pause_arguments_are_invalid_state_and_write_nothing(orc, arguments, words) -> None:
    run = orc.create_flow_run(state=Running())
    with pytest.raises(InvalidState) as caught:
        orc.pause_flow_run(run.id, **arguments)
    assert words in str(caught.value)
    assert [s.type for s in orc.read_flow_run_states(run.id)] == [StateType.RUNNING]
    assert _inputs(orc, run.id) == {}


def test_unknown_runs_and_keys_and_models_that_are_not_types(orc) -> None:
    missing = uuid.uuid4()
    with pytest.raises(ObjectNotFound):
        orc.pause_flow_run(missing)
    with pytest.raises(ObjectNotFound):
        orc.read_pause_input(missing, key="1")
    with pytest.raises(ObjectNotFound):
        orc.send_input(missing, "hello")
    with pytest.raises(ObjectNotFound):
        orc.receive_input(missing, str)
    run = orc.create_flow_run(state=Running())
    orc.pause_flow_run(run.id, wait_for_input=int)
    with pytest.raises(ObjectNotFound, match="never paused with key 'other'"):
        orc.read_pause_input(run.id, key="other")
    with pytest.raises(ObjectNotFound):
        orc.wait_for_resume(run.id, key="other")
    with pytest.raises(InvalidState, match="must be a type"):
        orc.read_pause_input(run.id, key="1", model=42)
    with pytest.raises(InvalidState, match="must be a type"):
        orc.receive_input(run.id, "str")



class Level(RunInput):
    level: float = float("inf")


@pytest.mark.parametrize(
    "model", [Level, Approval.with_initial_data(weight=float("nan")), dict[str, float]])
def test_a_model_whose_schema_is_not_json_is_refused_by_the_pause(open_orchestrator,
                                                                   model) -> None:
    # a NaN or infinite default was stored in the schema as the non-JSON text "default":NaN
    # (printed as such by `flowstate runs input --json`); no resume can be checked against it
    orc = open_orchestrator(clock=FrozenClock(START))
    run = orc.create_flow_run(state=Running())
    if model == dict[str, float]:  # (its schema is JSON: the control)
        assert orc.pause_flow_run(run.id, key="k", wait_for_input=model).status.value == "ACCEPT"
        return
    with pytest.raises(InvalidState, match="NaN or an infinite number"):
        orc.pause_flow_run(run.id, key="k", wait_for_input=model)
    assert [s.type for s in orc.read_flow_run_states(run.id)] == [StateType.RUNNING]
    assert _inputs(orc, run.id) == {}


@pytest.mark.parametrize(
    ("arguments", "words"),
    [({"description": 5}, "description must be a str"), ({"model_config": 1}, "model_config"),
     ({"model_dump": 1}, "model_dump")])
def test_bad_initial_data_is_invalid_state(arguments, words) -> None:
    with pytest.raises(InvalidState, match=words):
        Approval.with_initial_data(**arguments)

def test_a_stored_response_that_does_not_fit_the_model_is_invalid_state(orc) -> None:
    run = orc.create_flow_run(state=Running())
    orc.pause_flow_run(run.id, wait_for_input=int)
    orc.resume_flow_run(run.id, run_input={"value": 3})
    with pytest.raises(InvalidState, match="does not validate as strAutomaticRunInput"):
        orc.read_pause_input(run.id, key="1", model=str)



BOUNDED = {"type": "object", "properties": {"x": {"type": "number", "minimum": 0, "maximum": 10}}}


@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf")])
def test_a_number_json_has_not_is_refused_and_the_run_stays_paused(open_orchestrator,
                                                                    number) -> None:
    # NaN passes every minimum and maximum of a JSON schema: it must not get through as an
    # answer (stored as the non-JSON text {"x":NaN}, read back by no model)
    orc = open_orchestrator(clock=FrozenClock(START))
    run = orc.create_flow_run(state=Running())
    orc.pause_flow_run(run.id, key="k", wait_for_input=BOUNDED)
    with pytest.raises(InvalidState, match="JSON"):
        orc.resume_flow_run(run.id, run_input={"x": number})
    placeholder = {"__prefect_kind": "json", "value": json.dumps(number)}  # 'NaN', 'Infinity'
    refused = orc.resume_flow_run(run.id, run_input={"x": placeholder})
    assert refused.status is SetStateStatus.REJECT
    assert refused.details.reason.startswith("Error hydrating run input: Invalid JSON")
    assert orc.read_flow_run(run.id).state.type is StateType.PAUSED
    assert orc.read_pause_input(run.id, key="k") is None
    with pytest.raises(InvalidState, match="JSON"):
        orc.pause_flow_run(run.id, key="s", wait_for_input={"type": "number", "maximum": number})
    assert orc.resume_flow_run(run.id, run_input={"x": 5}).status is SetStateStatus.ACCEPT
    assert orc.read_pause_input(run.id, key="k") == {"x": 5}


def test_a_stored_schema_holding_nan_is_not_json(open_orchestrator) -> None:
    orc = open_orchestrator(clock=FrozenClock(START))
    run = orc.create_flow_run(state=Running())
    orc.pause_flow_run(run.id, key="k", wait_for_input=BOUNDED)
    orc.delete_flow_run_input(run.id, "paused-k-schema")
    orc.create_flow_run_input(run.id, "paused-k-schema", '{"type": "number", "maximum": NaN}')
    refused = orc.resume_flow_run(run.id, run_input={"x": 5})
    assert (refused.status, refused.details.reason) == (
        SetStateStatus.REJECT, "Run input schema is not valid JSON.")
    assert orc.read_flow_run(run.id).state.type is StateType.PAUSED


@pytest.mark.parametrize("stored", ["not json {", "[" * 100_000 + "]" * 100_000, '{"ok": NaN}'])
def test_a_stored_response_that_is_not_json_is_invalid_state_read_without_a_model(
    open_orchestrator, stored
) -> None:
    # a response written by hand (create_flow_run_input takes any text) raised json's
    # JSONDecodeError or a RecursionError from read_pause_input and wait_for_resume
    orc = open_orchestrator(clock=FrozenClock(START))
    run = orc.create_flow_run(state=Running())
    orc.pause_flow_run(run.id, key="k", wait_for_input=Approval.with_initial_data(approved=True))
    orc.create_flow_run_input(run.id, "paused-k-response", stored)
    assert orc.resume_flow_run(run.id).status is SetStateStatus.ACCEPT  # ({}: nothing stored)
    with pytest.raises(InvalidState, match="run input 'paused-k-response' .* is not JSON"):
        orc.read_pause_input(run.id, key="k")
    with pytest.raises(InvalidState, match="is not JSON"):
        orc.wait_for_resume(run.id, key="k")
    with pytest.raises(InvalidState, match="does not validate as Approval"):
        orc.read_pause_input(run.id, key="k", model=Approval)
    assert orc.read_flow_run_input(run.id, "paused-k-response") == stored

# -- wait_for_resume ----------------------------------------------------------------------------


def test_waiting_returns_the_input_once_someone_resumes(orc, clock) -> None:
    run = orc.create_flow_run(state=Running())
    orc.pause_flow_run(run.id, key="approval", wait_for_input=Approval)
    naps = []

    def a_person_answers(seconds: float) -> None:  # the wait's sleep: someone acts meanwhile
        naps.append(seconds)
        clock.advance(seconds)
        if len(naps) == 3:
            orc.resume_flow_run(run.id, run_input={"approved": True})

    orc._sleep = a_person_answers
    got = orc.wait_for_resume(run.id, key="approval", model=Approval, poll_interval=5)
    assert got.approved is True and naps == [5, 5, 5]


def test_a_wait_times_out_on_the_frozen_clock_without_sleeping(orc, clock, monkeypatch) -> None:
    _no_real_sleep(monkeypatch)
    run = orc.create_flow_run(state=Running())
    orc.pause_flow_run(run.id, key="k", timeout=None, wait_for_input=int)
    with pytest.raises(WaitTimeout, match="within 30"):
        orc.wait_for_resume(run.id, key="k", timeout=30, poll_interval=7)
    assert clock() == START + timedelta(seconds=30)
    assert orc.read_flow_run(run.id).state.type is StateType.PAUSED


def test_a_wait_ends_when_the_pause_expires_on_the_frozen_clock(orc, clock, monkeypatch) -> None:
    _no_real_sleep(monkeypatch)
    run = orc.create_flow_run(state=Running())
    orc.pause_flow_run(run.id, key="k", timeout=60, wait_for_input=int)
    with pytest.raises(WaitTimeout, match="expired"):
        orc.wait_for_resume(run.id, key="k", poll_interval=25)
    assert START + timedelta(seconds=60) < clock() < START + timedelta(seconds=61)
    late = orc.resume_flow_run(run.id, run_input={"value": 1})
    assert late.state.type is StateType.FAILED  # the pause has timed out


def test_a_cancelled_run_ends_the_wait_with_run_not_resumed(orc, clock) -> None:
    run = orc.create_flow_run(state=Running())
    orc.pause_flow_run(run.id, key="k", wait_for_input=int)
    orc.set_flow_run_state(run.id, Cancelled(message="nobody answered"))
    with pytest.raises(RunNotResumed, match="CANCELLED") as caught:
        orc.wait_for_resume(run.id, key="k")
    assert "nobody answered" in str(caught.value)
    assert caught.value.state.type is StateType.CANCELLED


def test_a_resumed_run_that_went_on_to_finish_still_gives_its_input(orc) -> None:
    run = orc.create_flow_run(state=Running())
    orc.pause_flow_run(run.id, key="k", wait_for_input=str)
    orc.resume_flow_run(run.id, run_input={"value": "yes"})
    orc.set_flow_run_state(run.id, Completed())
    assert orc.wait_for_resume(run.id, key="k", model=str) == "yes"


def test_a_pause_without_input_gives_none_once_resumed(orc) -> None:
    run = orc.create_flow_run(state=Running())
    orc.pause_flow_run(run.id, key="go")
    orc.resume_flow_run(run.id)
    assert orc.wait_for_resume(run.id, key="go") is None


@pytest.mark.parametrize(
    "arguments", [{"timeout": -1}, {"timeout": float("nan")}, {"poll_interval": 0},
                  {"poll_interval": float("inf")}, {"model": "int"}])
def test_bad_wait_arguments_are_invalid_state(orc, arguments) -> None:
    run = orc.create_flow_run(state=Running())
    orc.pause_flow_run(run.id, key="k")
    with pytest.raises(InvalidState):
        orc.wait_for_resume(run.id, key="k", **arguments)


def test_ctrl_c_interrupts_a_wait_at_once() -> None:
    # Python's own Ctrl-C handler, also when the suite was started with SIGINT ignored (a
    # background job of a non-interactive shell), where the signal would otherwise do nothing
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _interrupt_a_wait()
    finally:
        signal.signal(signal.SIGINT, previous)


def _interrupt_a_wait() -> None:
    with Orchestrator(":memory:") as orc:  # the real clock and time.sleep
        run = orc.create_flow_run(state=Running())
        orc.pause_flow_run(run.id, key="k")
        main = threading.main_thread().ident
        assert main is not None
        timer = threading.Timer(0.2, signal.pthread_kill, (main, signal.SIGINT))  # a Ctrl-C
        started = time.monotonic()
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            orc.wait_for_resume(run.id, key="k", poll_interval=120)
        assert time.monotonic() - started < 60  # not the 120 s poll interval
        assert orc.read_flow_run(run.id).state.type is StateType.PAUSED


# -- send_input / receive_input -----------------------------------------------------------------


def test_inputs_are_received_in_the_order_sent_each_once_per_exclude_keys(orc) -> None:
    run = orc.create_flow_run(state=Running())
    sent = [orc.send_input(run.id, word) for word in ("one", "two", "three")]
    orc.send_input(run.id, 4)  # another type: another prefix
    seen: set[str] = set()
    assert list(orc.receive_input(run.id, str, timeout=0, exclude_keys=seen)) == [
        "one", "two", "three"]
    assert seen == set(sent)
    assert list(orc.receive_input(run.id, str, timeout=0, exclude_keys=seen)) == []
    orc.send_input(run.id, "four")
    assert list(orc.receive_input(run.id, str, timeout=0, exclude_keys=seen)) == ["four"]
    assert list(orc.receive_input(run.id, str, timeout=0)) == ["one", "two", "three", "four"]
    assert list(orc.receive_input(run.id, int, timeout=0)) == [4]


def test_metadata_names_key_sender_and_receiver(orc) -> None:
    sender_run = orc.create_flow_run(state=Running())
    run = orc.create_flow_run(state=Running())
    key = orc.send_input(run.id, Approval(approved=True), sender=sender_run.id)
    orc.send_input(run.id, "plain", sender="a person")
    (approval,) = orc.receive_input(run.id, Approval, timeout=0)
    assert approval.metadata == RunInputMetadata(
        key=key, sender=f"prefect.flow-run.{sender_run.id}", receiver=run.id)
    (text,) = orc.receive_input(run.id, str, timeout=0, with_metadata=True)
    assert (text.value, text.metadata.sender) == ("plain", "a person")


def test_a_key_prefix_keeps_conversations_apart(orc) -> None:
    run = orc.create_flow_run(state=Running())
    orc.send_input(run.id, "for a", key_prefix="a")
    orc.send_input(run.id, "for b", key_prefix="b")
    assert list(orc.receive_input(run.id, str, key_prefix="b", timeout=0)) == ["for b"]
    assert list(orc.receive_input(run.id, str, timeout=0)) == []


def test_receiving_waits_for_each_input_up_to_the_timeout(orc, clock, monkeypatch) -> None:
    _no_real_sleep(monkeypatch)
    run = orc.create_flow_run(state=Running())
    received = orc.receive_input(run.id, int, timeout=30, poll_interval=10)
    orc.send_input(run.id, 1)
    assert next(received) == 1
    assert list(received) == []
    assert clock() == START + timedelta(seconds=30)
    with pytest.raises(WaitTimeout, match="within 5"):
        next(orc.receive_input(run.id, int, key_prefix="quiet", timeout=5, raise_timeout_error=True))


@pytest.mark.parametrize(
    ("arguments", "words"),
    [({"key_prefix": "a_b"}, "letters, digits and dashes"), ({"exclude_keys": ["k"]}, "must be a set"),
     ({"timeout": -5}, "timeout=-5"), ({"poll_interval": -1}, "poll_interval")])
def test_bad_receive_arguments_are_invalid_state(orc, arguments, words) -> None:
    run = orc.create_flow_run(state=Running())
    with pytest.raises(InvalidState, match=words):
        orc.receive_input(run.id, str, **arguments)


def test_values_that_cannot_be_sent_are_invalid_state(orc) -> None:
    run = orc.create_flow_run(state=Running())
    with pytest.raises(InvalidState):
        orc.send_input(run.id, object())
    with pytest.raises(InvalidState):
        orc.send_input(run.id, "x", key_prefix="bad prefix")
    with pytest.raises(InvalidState):
        orc.send_input(run.id, "x", sender=5)
    with pytest.raises(InvalidState):
        orc.send_input(run.id, "\ud800")



class Reading(RunInput):
    level: float | None = None


@pytest.mark.parametrize(
    "value", [float("nan"), float("-inf"), [1.5, float("inf")], {"a": float("nan")},
              Reading(level=float("nan"))])
def test_a_number_json_has_not_is_not_sent_as_null(open_orchestrator, value) -> None:
    # pydantic writes NaN and infinities as null: the receiver would get None, or a value that
    # does not validate, instead of what was sent
    orc = open_orchestrator(clock=FrozenClock(START))
    run = orc.create_flow_run(state=Running())
    with pytest.raises(InvalidState, match="NaN or an infinite number"):
        orc.send_input(run.id, value)
    assert list(orc.receive_input(run.id, type(value), timeout=0)) == []

def test_input_larger_than_the_database_accepts_is_a_clear_error(tmp_path) -> None:
    import sqlite3

    from flowstate import DatabaseError

    with Orchestrator(str(tmp_path / "small.db")) as orc:
        run = orc.create_flow_run(state=Running())
        orc._store.conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 1000)  # instead of 1 GB of input
        with pytest.raises(DatabaseError, match="larger than .* accepts .* nothing was written"):
            orc.send_input(run.id, "x" * 2000)
        big_schema = {"type": "object", "description": "y" * 2000}
        with pytest.raises(DatabaseError, match="larger than"):
            orc.pause_flow_run(run.id, wait_for_input=big_schema)
        assert orc.read_flow_run(run.id).state.type is StateType.RUNNING
        assert list(orc.receive_input(run.id, str, timeout=0)) == []


def test_waiting_inside_a_transaction_block_is_refused(orc) -> None:
    run = orc.create_flow_run(state=Running())
    orc.pause_flow_run(run.id, key="k")
    with orc.transaction():
        with pytest.raises(InvalidState, match="inside a transaction"):
            orc.wait_for_resume(run.id, key="k")
        with pytest.raises(InvalidState, match="inside a transaction"):
            orc.receive_input(run.id, str)


@pytest.mark.parametrize("seconds", [1e300, 1e11, 4e9], ids=repr)
def test_waits_longer_than_a_century_are_invalid_state_before_waiting(orc, seconds) -> None:
    run = orc.create_flow_run(state=Running())
    orc.pause_flow_run(run.id, key="k")
    with pytest.raises(InvalidState, match="timeout=.*century"):
        orc.wait_for_resume(run.id, key="k", timeout=seconds)
    with pytest.raises(InvalidState, match="timeout=.*century"):
        list(orc.receive_input(run.id, str, timeout=seconds))
    with pytest.raises(InvalidState, match="poll_interval=.*century"):
        orc.wait_for_resume(run.id, key="k", timeout=1, poll_interval=seconds)
    with pytest.raises(InvalidState, match="poll_interval=.*century"):
        list(orc.receive_input(run.id, str, timeout=1, poll_interval=seconds))
    assert orc.read_flow_run(run.id).state_type is StateType.PAUSED


def test_a_wait_of_a_century_times_out_as_any_other(orc, clock) -> None:
    run = orc.create_flow_run(state=Running())
    orc.pause_flow_run(run.id, key="k", timeout=None)
    century = 100 * 365.25 * 86400
    with pytest.raises(WaitTimeout):  # the frozen clock passes the century at once
        orc.wait_for_resume(run.id, key="k", timeout=century, poll_interval=century)

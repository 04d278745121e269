"""Row codec shortcuts give exactly what the general encoding and decoding give."""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Callable
from typing import Any
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowstate import _validation as validate
from flowstate.runs import FlowRun, FlowRunPolicy, TaskRun, TaskRunPolicy
from flowstate.states import State, StateDetails, StateType
from flowstate.store import rows, sql
from flowstate.store.postgres import sql as postgres_sql
from flowstate.testing import states

_UTC = timezone.utc
_times = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(_UTC)
) | st.datetimes(timezones=st.just(timezone(timedelta(hours=2)))).filter(
    lambda d: datetime(1, 1, 2, tzinfo=_UTC) < d < datetime(9999, 12, 30, tzinfo=_UTC)
)
_details = st.fixed_dictionaries(
    {},
    optional={
        "flow_run_id": st.none() | st.uuids(),
        "scheduled_time": st.none() | _times,
        "cache_key": st.none() | st.text(max_size=5),
        "cache_expiration": st.none() | _times,
        "deferred": st.none() | st.booleans(),
        "untrackable_result": st.booleans(),
        "pause_reschedule": st.booleans(),
        "pause_key": st.none() | st.text(max_size=5),
        "run_input_keyset": st.none() | st.dictionaries(st.text(max_size=3), st.text(max_size=3)),
        "refresh_cache": st.none() | st.booleans(),
        "transition_id": st.none() | st.uuids(),
    },
).map(lambda values: StateDetails(**values))


def test_encoding_the_same_time_twice_gives_the_same_text() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, 5, tzinfo=_UTC)
    other = datetime(2026, 1, 1, 14, 0, 0, 5, tzinfo=timezone(timedelta(hours=2)))
    assert now == other
    for _ in range(2):
        assert rows.encode_time(now) == "2026-01-01T12:00:00.000005+00:00"
        assert rows.encode_time(other) == "2026-01-01T14:00:00.000005+02:00"
    for index in range(100):  # more times than the memo keeps
        moment = now + timedelta(seconds=index)
        assert rows.encode_time(moment) == moment.isoformat(timespec="microseconds")



class _OwnDatetime(datetime):
    """A datetime subclass that formats itself otherwise: never given the UTC shortcut."""

    def isoformat(self, sep: str = "T", timespec: str = "auto") -> str:
        return super().isoformat(sep, timespec) + " (own)"


_any_zone = st.sampled_from(
    [None, _UTC, timezone(timedelta(hours=2)), timezone(-timedelta(hours=9, minutes=30)),
     timezone(timedelta(0), "UTC"), timezone(timedelta(seconds=1, microseconds=5))]
)


@settings(max_examples=500, deadline=None)
@given(
    st.datetimes(timezones=st.just(_UTC)) | st.datetimes(timezones=_any_zone),
    st.lists(st.integers(-3_000_000, 3_000_000), max_size=6),
)
def test_encode_time_gives_the_fixed_width_isoformat(start: datetime, steps: list[int]) -> None:
    """Times near each other (the same second, the next, the one before ...) and far apart."""
    moments = [start]
    for step in steps:
        try:
            moments.append(moments[-1] + timedelta(microseconds=step))
        except OverflowError:
            pass
    for moment in moments:
        assert rows.encode_time(moment) == moment.isoformat(timespec="microseconds")


@pytest.mark.parametrize(
    "moment",
    [
        datetime(1, 1, 1, tzinfo=_UTC),
        datetime(1, 1, 1, 0, 0, 0, 1, tzinfo=_UTC),
        datetime(999, 12, 31, 23, 59, 59, 999_999, tzinfo=_UTC),
        datetime(2026, 5, 9, 7, 35, 25, tzinfo=_UTC),  # microsecond 0
        datetime(2026, 5, 9, 7, 35, 25, 10, tzinfo=_UTC),
        datetime(2026, 5, 9, 7, 35, 26, 0, fold=1, tzinfo=_UTC),
        datetime(9999, 12, 31, 23, 59, 58, 999_999, tzinfo=_UTC),
        datetime(9999, 12, 31, 23, 59, 59, tzinfo=_UTC),  # its next second does not exist
        datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=_UTC),
        datetime(2026, 5, 9, 9, 35, 25, 10, tzinfo=timezone(timedelta(hours=2))),
        datetime(2026, 5, 9, 7, 35, 25, 10, tzinfo=timezone(timedelta(0), "UTC")),
        datetime(2026, 5, 9, 7, 35, 25, 10),  # naive
        _OwnDatetime(2026, 5, 9, 7, 35, 25, 10, tzinfo=_UTC),
    ],
)
def test_encode_time_edge_cases(moment: datetime) -> None:
    for neighbour in (moment.replace(microsecond=0), moment.replace(microsecond=999_999), moment):
        assert rows.encode_time(neighbour) == neighbour.isoformat(timespec="microseconds")
    assert rows.encode_time(moment) == moment.isoformat(timespec="microseconds")


_policies = st.builds(
    FlowRunPolicy,
    max_retries=st.integers(0, 3),
    retry_delay_seconds=st.integers(0, 2) | st.floats(0, 10),
    retries=st.none() | st.integers(0, 3),
    retry_delay=st.none() | st.integers(0, 3),
    pause_keys=st.sets(st.text(max_size=3), max_size=3),
    resuming=st.booleans(),
    retry_type=st.sampled_from([None, "in_process", "reschedule"]),
) | st.builds(FlowRunPolicy, retries=st.none() | st.integers(0, 3)) | st.builds(
    FlowRunPolicy  # nothing given: the defaults, an int 0 delay, no field counted as set
)


def _exact_policy(policy: FlowRunPolicy) -> tuple:
    return (
        policy.model_fields_set,
        list(policy.__dict__),
        {k: (type(v), v) for k, v in policy.__dict__.items()},
        policy.__pydantic_extra__,
        policy.__pydantic_private__,
    )


@settings(max_examples=200, deadline=None)
@given(
    name=st.text(max_size=4),
    parameters=st.dictionaries(st.text(max_size=3), st.integers() | st.none(), max_size=2),
    tags=st.lists(st.text(max_size=3), max_size=2),
    deployment_id=st.none() | st.uuids(),
    infrastructure_pid=st.none() | st.text(max_size=3),
)
def test_a_plain_flow_run_is_what_validation_builds(**given: Any) -> None:
    from flowstate import _validation as validate

    fields = {"id": uuid.uuid4(), "flow_name": "f", "empirical_policy": None,
              "parent_task_run_id": None, **given}
    mine = validate.plain_flow_run(dict(fields))
    assert mine is not None
    expected = FlowRun(**{k: v for k, v in fields.items() if k != "empirical_policy"},
                       empirical_policy=FlowRunPolicy())
    assert list(mine.__dict__) == list(expected.__dict__)
    assert mine.__dict__ == expected.__dict__
    assert mine.model_fields_set == expected.model_fields_set | {"empirical_policy"}
    assert _exact_policy(mine.empirical_policy) == _exact_policy(expected.empirical_policy)
    assert mine.parameters is not fields["parameters"] and mine.tags is not fields["tags"]


# Strings as users may write them: any code point, lone surrogates included (which pydantic
# refuses to encode), JSON's special characters and non-ASCII often
_texts = st.text(
    st.characters(exclude_categories=()) | st.sampled_from('"\\/\b\f\n\r\t\x00\x1f\x7f\u2028é€😀'),
    max_size=8,
)
_finite = st.floats(allow_nan=False, allow_infinity=False)
_floats = st.floats() | st.floats(-1e-3, 1e-3) | st.floats(1e15, 1e17) | st.integers(-(2**60), 2**60)
_ints = st.integers(-3, 3) | st.integers() | st.integers(-(2**70), 2**70)
_odd = st.none() | st.booleans() | _ints | _floats | _texts | st.sets(_texts, max_size=2) | st.just(
    frozenset({"a"})
)
_validated_policies = st.builds(
    FlowRunPolicy,
    max_retries=_ints,
    retry_delay_seconds=_finite | st.floats(-1e-3, 1e-3) | st.integers(-(2**60), 2**60),
    retries=st.none() | _ints,
    retry_delay=st.none() | _ints,
    pause_keys=st.sets(_texts, max_size=4),
    resuming=st.booleans(),
    retry_type=st.sampled_from([None, "in_process", "reschedule"]),
)
_constructed_policies = st.builds(
    lambda fields: FlowRunPolicy.model_construct(**fields),
    st.fixed_dictionaries(
        {},
        optional={
            name: _odd | st.sampled_from(["in_process", "reschedule"])
            for name in FlowRunPolicy.model_fields
        },
    ),
)


def _outcome(encode: Callable[[], object]) -> object:
    """What ``encode()`` returns, or the type and text of the error it raises."""
    try:
        return encode()
    except Exception as error:  # noqa: BLE001 - the fallback must fail the same way
        return type(error), str(error)


@settings(max_examples=1000, deadline=None)
@given(_validated_policies | _constructed_policies)
def test_flow_policy_json_is_model_dump_json(policy: FlowRunPolicy) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydantic warns of values not of the declared type
        assert _outcome(lambda: rows.flow_policy_json(policy)) == _outcome(policy.model_dump_json)


class _OwnPolicy(FlowRunPolicy):
    def model_dump_json(self, **kwargs: Any) -> str:
        return super().model_dump_json(**kwargs) + " (own)"


class _OwnStr(str):
    pass


@pytest.mark.parametrize(
    "policy",
    [
        FlowRunPolicy(),
        FlowRunPolicy(max_retries=2, retry_delay_seconds=0.25),  # deprecated fields back-filled
        FlowRunPolicy(retry_delay_seconds=-0.0, max_retries=-(2**63)),
        FlowRunPolicy(retry_delay_seconds=1e-5),  # repr "1e-05", pydantic "1e-5"
        FlowRunPolicy(retry_delay_seconds=1e16),
        FlowRunPolicy.model_construct(retry_delay_seconds=float("inf")),  # (validation fails)
        FlowRunPolicy.model_construct(retry_delay_seconds=float("nan")),
        FlowRunPolicy(retries=10**40, retry_delay=-1),
        FlowRunPolicy(pause_keys=set()),
        FlowRunPolicy(pause_keys={"", '"', "\\", "\x00\x1f\x7f", "é ü", "\u2028😀", "a\nb\tc"}),
        FlowRunPolicy(pause_keys={"k"}, resuming=True, retry_type="in_process"),
        FlowRunPolicy.model_construct(pause_keys={"a\ud800"}),  # pydantic refuses it
        FlowRunPolicy.model_construct(pause_keys={"a", _OwnStr("b")}),
        FlowRunPolicy.model_construct(pause_keys=frozenset({"a"})),
        FlowRunPolicy.model_construct(pause_keys=["a", "a"]),
        FlowRunPolicy.model_construct(pause_keys={1, 2}),
        FlowRunPolicy.model_construct(retry_delay_seconds=2**60),
        FlowRunPolicy.model_construct(retry_delay_seconds=True, resuming=1),
        FlowRunPolicy.model_construct(max_retries=1.0, retry_type="other"),
        FlowRunPolicy.model_construct(retry_type=_OwnStr("reschedule")),
        FlowRunPolicy.model_construct(retry_type=["unhashable"]),
        FlowRunPolicy.model_construct(extra_key=1),
        _OwnPolicy(pause_keys={"k"}),
    ],
    ids=repr,
)
def test_flow_policy_json_edge_cases(policy: FlowRunPolicy) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert _outcome(lambda: rows.flow_policy_json(policy)) == _outcome(policy.model_dump_json)


def _unset(values: dict[str, Any]) -> FlowRunPolicy:
    """A policy holding ``values`` with no field counted as given (as a default one)."""
    policy = FlowRunPolicy()
    policy.__dict__.update(values)
    return policy


@pytest.mark.parametrize(
    "policy",
    [
        FlowRunPolicy(),
        FlowRunPolicy.model_construct(),
        _unset({"retry_delay_seconds": 0.0, "pause_keys": frozenset()}),
        _unset({"resuming": True}),  # changed behind pydantic's back: not the defaults
        _unset({"pause_keys": {"k"}}),
        _unset({"retry_delay_seconds": 1.5}),
        FlowRunPolicy(retries=0),  # given: encoded, not taken for the defaults
    ],
    ids=repr,
)
def test_the_default_policy_shortcut_gives_model_dump_json(policy: FlowRunPolicy) -> None:
    rows.flow_policy_json(FlowRunPolicy())  # the defaults' text is known from here on
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (a frozenset where pydantic expects a set)
        assert rows.flow_policy_json(policy) == policy.model_dump_json()


@pytest.mark.parametrize(
    "policy", [None, {"retries": 2, "retry_delay": [1, 2.5]}, {"retry_delay": 4}], ids=repr
)
def test_a_task_run_copy_is_the_run_again_sharing_nothing_changeable(policy: Any) -> None:
    """The run cache keeps a copy of a created task run instead of decoding its row again:
    equal, down to the fields counted as given, with tags and a policy of its own."""
    new = TaskRun(
        id=uuid.uuid4(), task_key="k", name="k-0", tags=["a"],
        empirical_policy=validate.coerce_policy(policy, TaskRunPolicy),
        created=datetime(2026, 1, 1, tzinfo=_UTC), updated=datetime(2026, 1, 1, tzinfo=_UTC),
    )
    run = rows.task_run_from_insert_row(new, rows.task_run_insert_row(new))
    copy = rows.task_run_copy(run)
    assert copy == run and copy.model_dump_json() == run.model_dump_json()
    assert copy.__pydantic_fields_set__ == run.__pydantic_fields_set__
    policies = copy.empirical_policy, run.empirical_policy
    assert policies[0].__pydantic_fields_set__ == policies[1].__pydantic_fields_set__
    copy.tags.append("b")
    copy.empirical_policy.retries = 7
    if isinstance(copy.empirical_policy.retry_delay, list):
        copy.empirical_policy.retry_delay.append(9.0)
    assert run == rows.task_run_from_insert_row(new, rows.task_run_insert_row(new))


def test_a_task_runs_changes_are_its_changed_columns_as_stored() -> None:
    """A task run's transition writes the columns it changed, in the order first changed,
    each value encoded as the run's row holds it; a field its row does not hold is left out."""
    moment = datetime(2026, 1, 1, 12, 0, 0, 5, tzinfo=_UTC)
    updates = {
        "state_type": StateType.RUNNING,
        "state_name": "Running",
        "start_time": moment,
        "end_time": None,
        "total_run_time": timedelta(seconds=1.5),
        "run_count": 2,
        "flow_name": "not a task run's",
        "cache_key": None,
        "cache_expiration": moment,
    }
    columns, values = rows.task_run_changes(updates)
    assert columns == (
        "state_type", "state_name", "start_time", "end_time", "total_run_time", "run_count",
        "cache_key", "cache_expiration",
    )
    text = rows.encode_time(moment)
    assert values == ["RUNNING", "Running", text, None, 1.5, 2, None, text]
    assert rows.task_run_changes({}) == ((), [])
    statement = sql.update_task_run(("state_id", *columns))
    assert statement == (
        "UPDATE task_run SET state_id = ?, state_type = ?, state_name = ?, start_time = ?, "
        "end_time = ?, total_run_time = ?, run_count = ?, cache_key = ?, cache_expiration = ?, "
        "updated = ? WHERE id = ?"
    )
    assert postgres_sql.update_task_run(columns) == sql.update_task_run(columns).replace("?", "%s")


def test_a_new_run_row_holds_its_policy_json() -> None:
    run = FlowRun(id=uuid.uuid4(), name="r", empirical_policy={"pause_keys": ["a", "\u00e9"]})
    assert rows.flow_run_insert_row(run)[14] == run.empirical_policy.model_dump_json()


class _OwnUUID(uuid.UUID):
    """A UUID subclass that writes itself otherwise."""

    def __str__(self) -> str:
        return super().__str__().upper()


@pytest.mark.parametrize(
    "value",
    [uuid.UUID(int=0), uuid.uuid4(), _OwnUUID(int=2**128 - 1), "not-a-uuid-text", None],
    ids=repr,
)
def test_id_texts_are_str(value: object) -> None:
    assert rows._str(value) == (None if value is None else str(value))  # type: ignore[arg-type]
    state = State(type=StateType.RUNNING)
    if value is not None:
        assert rows.state_insert_row(value, state)[:2] == (str(value), str(state.id))  # type: ignore[arg-type]


_odd_detail_values = st.fixed_dictionaries(
    {},
    optional={
        "flow_run_id": st.none() | st.uuids() | st.uuids().map(str),
        "scheduled_time": st.none() | _times | st.datetimes(),
        "pause_timeout": st.none() | _times,
        "pause_reschedule": st.booleans() | st.sampled_from([0, 1]),
        "pause_key": st.none() | st.text(max_size=6) | st.sampled_from(['a"b', "a\\b", "é", "\x01", "\x7f"]),
        "deferred": st.sampled_from([False, None, 0, True]),
        "cache_key": st.none() | st.text(max_size=3),
        "untrackable_result": st.booleans(),
    },
)


@settings(max_examples=500, deadline=None)
@given(_details | _odd_detail_values.map(lambda values: StateDetails.model_construct(**values)))
def test_stored_details_are_model_dump_json_without_defaults(details: StateDetails) -> None:
    """The details JSON written by hand is pydantic's, byte for byte (odd values built with
    ``model_construct`` included: those fall back on pydantic)."""
    with warnings.catch_warnings():  # (pydantic warns of the odd values as it encodes them)
        warnings.simplefilter("ignore")
        try:
            expected = details.model_dump_json(exclude_defaults=True)
        except Exception:  # (a value pydantic cannot encode: the shortcut must not hide it)
            with pytest.raises(Exception):
                rows._stored_details(details)
            return
        assert rows._stored_details(details) == expected


def test_stored_details_write_run_ids_times_and_pause_keys_by_hand() -> None:
    """The shapes a flow run's states hold come out of the hand-written encoder, not pydantic."""
    run_id = uuid.uuid4()
    moment = datetime(2026, 1, 1, 12, 0, 0, 5, tzinfo=_UTC)
    for details in (
        StateDetails(flow_run_id=run_id),
        StateDetails(flow_run_id=run_id, scheduled_time=moment),
        StateDetails(flow_run_id=run_id, pause_key="approval", pause_timeout=moment.replace(microsecond=0)),
        StateDetails(pause_reschedule=True, pause_key="k", deferred=False),
    ):
        assert rows._details_json(details.__dict__) == details.model_dump_json(exclude_defaults=True)


@pytest.mark.parametrize("key", ['a"b', "a\\b", "é", "\x01", "\x7f", "tab\t", ""])
def test_stored_details_escape_pause_keys_as_pydantic_does(key: str) -> None:
    details = StateDetails(flow_run_id=uuid.uuid4(), pause_key=key)
    assert rows._stored_details(details) == details.model_dump_json(exclude_defaults=True)

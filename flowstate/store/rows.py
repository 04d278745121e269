"""Rows <-> models: the one place that knows column order and how values are encoded.

Times are stored as fixed-width ISO-8601 UTC text (so they sort as text), ids as UUID text,
nested values as JSON text. Rows the store wrote itself are trusted: models are built with
``flowstate._models.construct`` (no re-validation, and none of ``model_construct``'s default
resolution, which ``benchmarks/`` showed to cost more than the SQL of a read).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from operator import itemgetter
from typing import Any, overload
from uuid import UUID

from flowstate._models import construct, copy_with
from flowstate._time import UTC
from flowstate.errors import DatabaseError
from flowstate.result_data import is_unpersisted
from flowstate.runs import (
    SAVED_FIELDS,
    _FLOW_POLICY_DEFAULTS,
    FlowRun,
    FlowRunPolicy,
    TaskRun,
    TaskRunPolicy,
)
from flowstate.states import _DETAIL_DEFAULTS, State, StateDetails, StateType

__all__ = [
    "STATE_WIDTH",
    "encode_time",
    "flow_run_from_row",
    "flow_policy_json",
    "flow_run_insert_row",
    "flow_run_update_row",
    "parse_time",
    "state_from_row",
    "state_insert_row",
    "task_run_copy",
    "task_run_from_insert_row",
    "task_run_from_row",
    "task_run_insert_row",
    "task_run_changes",
]

STATE_WIDTH = 7
_parse_iso = datetime.fromisoformat
_state_types = {t.value: t for t in StateType}
_validate_details = StateDetails.model_validate_json
_validate_flow_policy = FlowRunPolicy.model_validate_json
_validate_task_policy = TaskRunPolicy.model_validate_json


_WRITTEN_BY_HAND = ("flow_run_id", "scheduled_time", "pause_timeout", "pause_reschedule", "pause_key")
"""The details a flow run's states usually hold, in field order: their JSON is written out."""
_OTHER_DETAILS = itemgetter(*(name for name in _DETAIL_DEFAULTS if name not in _WRITTEN_BY_HAND))
_OTHER_DEFAULTS = _OTHER_DETAILS(_DETAIL_DEFAULTS)
_plain_key = re.compile(r"[ !#-\[\]-~]*").fullmatch
"""Printable ASCII but the quote and the backslash: text JSON writes as it is."""


def _stored_details(details: StateDetails) -> str:
    """The stored JSON of ``details``: ``model_dump_json(exclude_defaults=True)``, its
    non-default fields. A flow run's states mostly hold a run id, a scheduled time, a pause
    key or timeout and nothing else: their JSON is written out directly (:func:`_details_json`);
    pydantic encodes the others."""
    if type(details) is not StateDetails:  # (a subclass may encode itself otherwise)
        return _pydantic_details_json(details)
    values = details.__dict__
    text = None
    if _OTHER_DETAILS(values) == _OTHER_DEFAULTS:  # (exclude_defaults compares with ==)
        text = _details_json(values)
    return _pydantic_details_json(details) if text is None else text


def _pydantic_details_json(details: StateDetails) -> str:
    # model_dump_json(exclude_defaults=True) is this call plus keyword handling (looked up
    # here: the model builds its serializer on first use, which import should not pay for)
    return StateDetails.__pydantic_serializer__.to_json(details, exclude_defaults=True).decode()


def _details_json(values: dict[str, Any]) -> str | None:
    """The JSON pydantic writes for details whose only non-default values are among
    ``_WRITTEN_BY_HAND``, or None when one of those is not in its plain form."""
    parts = []
    run_id = values["flow_run_id"]
    if run_id is not None:
        if type(run_id) is not UUID:
            return None
        parts.append(f'"flow_run_id":"{run_id}"')
    for name in ("scheduled_time", "pause_timeout"):
        moment = values[name]
        if moment is not None:
            if type(moment) is not datetime or moment.tzinfo is not UTC:
                return None
            parts.append(f'"{name}":"{_utc_text(moment)}"')
    if values["pause_reschedule"] is not False or values["pause_key"] is not None:
        return _with_pause_json(parts, values["pause_reschedule"], values["pause_key"])
    return "{" + ",".join(parts) + "}"


def _utc_text(moment: datetime) -> str:
    """A UTC time as pydantic writes it: ISO 8601 ending in "Z", without ".000000"."""
    text = encode_time(moment)  # fixed width, ending in "+00:00"
    return (text[:19] if moment.microsecond == 0 else text[:26]) + "Z"


def _with_pause_json(parts: list[str], reschedule: Any, key: Any) -> str | None:
    """:func:`_details_json`'s JSON with ``pause_reschedule`` and ``pause_key`` added to
    ``parts``, or None when one of them is not in its plain form."""
    if reschedule is not False:
        if reschedule is not True:
            return None
        parts.append('"pause_reschedule":true')
    if key is not None:
        if type(key) is not str or _plain_key(key) is None:
            return None
        parts.append(f'"pause_key":"{key}"')
    return "{" + ",".join(parts) + "}"


_default_policy_json: str | None = None
"""The JSON of a default policy, once encoded (not at import: the serializer is built on use)."""


def _default_policy(policy: FlowRunPolicy) -> bool:
    """Whether ``policy`` is a FlowRunPolicy with nothing given (as most new runs have) and
    nothing changed since: it holds the defaults."""
    return (
        type(policy) is FlowRunPolicy
        and not policy.__pydantic_fields_set__
        and policy.__dict__ == _FLOW_POLICY_DEFAULTS
    )


def flow_policy_json(policy: FlowRunPolicy) -> str:
    """A flow run policy's stored JSON: ``policy.model_dump_json()``."""
    global _default_policy_json
    if type(policy) is not FlowRunPolicy:  # (a subclass might override model_dump_json)
        return policy.model_dump_json()
    default = _default_policy(policy)
    if default and _default_policy_json is not None:
        return _default_policy_json
    # model_dump_json() is this call plus its keyword handling, which costs two thirds as much
    text = FlowRunPolicy.__pydantic_serializer__.to_json(policy).decode()
    if default:
        _default_policy_json = text
    return text


_ONE_SECOND = timedelta(seconds=1)
_second: tuple[datetime, datetime, str] | None = None
"""The whole second last encoded: its start, the next second's start and the text before the
microseconds (``YYYY-MM-DDTHH:MM:SS``). Times written close together share it."""


@overload
def encode_time(value: datetime) -> str: ...


@overload
def encode_time(value: None) -> None: ...


def encode_time(value: datetime | None) -> str | None:
    """Fixed-width ISO text of an aware UTC datetime, or None."""
    if value is None:
        return None
    if type(value) is datetime and value.tzinfo is UTC:
        # the text of the whole second is kept for the next time: mostly only the
        # microseconds are formatted (datetimes with one tzinfo object compare in C)
        second = _second
        if second is None or not second[0] <= value < second[1]:
            second = _whole_second(value)
        if second is not None:  # (None: the last second of year 9999)
            micro = value.microsecond
            return f"{second[2]}.{_DIGITS[micro // 1000]}{_DIGITS[micro % 1000]}+00:00"
    # (another offset, or a subclass that may format itself otherwise)
    return _iso_text(value)


_DIGITS = tuple(f"{number:03d}" for number in range(1000))
"""Three digits of a microsecond count (a table: cheaper than a format spec)."""


def _whole_second(value: datetime) -> tuple[datetime, datetime, str] | None:
    """Keep (in ``_second``) and return the whole second ``value`` falls in."""
    global _second
    start = value.replace(microsecond=0)
    try:
        end = start + _ONE_SECOND
    except OverflowError:
        return None
    second = _second = (start, end, start.isoformat(timespec="seconds")[:-6])
    return second


def _iso_text(value: datetime) -> str:
    """``value.isoformat(timespec="microseconds")``."""
    # isoformat() omits a zero microsecond, and is cheaper than asking for the fixed width
    return value.isoformat() if value.microsecond else value.isoformat(timespec="microseconds")


def parse_time(text: str | None) -> datetime | None:
    """The datetime ``encode_time`` wrote, or None."""
    return None if text is None else _parse_iso(text)


def _uuid(text: str | None) -> UUID | None:
    return None if text is None else UUID(text)


def _str(value: UUID | str | None) -> str | None:
    """``str(value)``, or None."""
    return None if value is None else str(value)


def encode_data(data: Any) -> str | None:
    """A state's result data as stored: unpersisted results are not kept."""
    if data is None or is_unpersisted(data):
        return None
    return json.dumps(data, separators=(",", ":"))


def state_insert_row(run_id: UUID | str, state: State) -> tuple[Any, ...]:
    """Values for INSERT_*_RUN_STATE (``run_id`` may be given as its text already)."""
    values = state.__dict__  # (one dict, instead of pydantic's attribute hook per field)
    data = values["data"]
    return (
        run_id if type(run_id) is str else str(run_id),
        str(values["id"]),
        values["type"]._value_,  # .value is a Python-level property of Enum; _value_ the same
        values["name"],
        encode_time(values["timestamp"]),
        values["message"],
        None if data is None else encode_data(data),
        # Only the details that differ from their defaults: a third of the bytes of a state
        # row, and less JSON to encode and parse (reading fills the defaults back in).
        _stored_details(values["state_details"]),
    )


def unreadable(what: str, row_id: Any, exc: BaseException) -> DatabaseError:
    """The error for a stored row flowstate cannot decode (another program changed it, or the
    file is damaged below what SQLite checks)."""
    return DatabaseError(
        f"a stored {what} (id {row_id!r:.60}) cannot be read: {type(exc).__name__}: {exc!s:.200}; "
        "the database was changed by another program or is corrupt: restore it from a backup, "
        "or correct the row"
    )


def state_from_row(row: Sequence[Any], start: int = 0) -> State | None:
    """The state in ``row[start:start + STATE_WIDTH]``, or None if the columns are empty."""
    state_id = row[start]
    if state_id is None:
        return None
    data = row[start + 5]
    try:
        return construct(
            State,
            {
                "id": UUID(state_id),
                "type": _state_types[row[start + 1]],
                "name": row[start + 2],
                "timestamp": _parse_iso(row[start + 3]),
                "message": row[start + 4],
                "data": None if data is None else json.loads(data),
                "state_details": _validate_details(row[start + 6]),
            },
        )
    except (ValueError, KeyError, TypeError) as exc:  # (no cost unless raised)
        raise unreadable("state", state_id, exc) from exc


def flow_run_insert_row(run: FlowRun) -> tuple[Any, ...]:
    """Values for INSERT_FLOW_RUN (a new run has no state yet)."""
    values = run.__dict__  # (one dict, instead of pydantic's attribute hook per field)
    return (
        str(values["id"]),
        values["name"],
        values["flow_name"],
        json.dumps(values["parameters"]),
        json.dumps(values["tags"]),
        None,
        None,
        None,
        values["run_count"],
        encode_time(values["start_time"]),
        encode_time(values["end_time"]),
        values["total_run_time"].total_seconds(),
        encode_time(values["expected_start_time"]),
        encode_time(values["next_scheduled_start_time"]),
        flow_policy_json(values["empirical_policy"]),
        _str(values["deployment_id"]),
        values["infrastructure_pid"],
        _str(values["parent_task_run_id"]),
        encode_time(values["created"]),
        encode_time(values["updated"]),
    )


def flow_run_update_row(
    run: FlowRun,
    state_id: UUID | str | None,
    updated: datetime,
    policy_text: str | None = None,
    run_id: str | None = None,
) -> tuple[Any, ...]:
    """Values for UPDATE_FLOW_RUN (``policy_text``: the run's policy, if already encoded;
    ``state_id`` may be text already; ``run_id``: ``str(run.id)``, if known)."""
    values = run.__dict__  # (one dict, instead of pydantic's attribute hook per field)
    state_type = values["state_type"]
    # (times are often None: no call for those)
    start, end = values["start_time"], values["end_time"]
    expected, following = values["expected_start_time"], values["next_scheduled_start_time"]
    return (
        state_id if type(state_id) is str else _str(state_id),
        None if state_type is None else state_type._value_,
        values["state_name"],
        values["run_count"],
        None if start is None else encode_time(start),
        None if end is None else encode_time(end),
        values["total_run_time"].total_seconds(),
        None if expected is None else encode_time(expected),
        None if following is None else encode_time(following),
        flow_policy_json(values["empirical_policy"]) if policy_text is None else policy_text,
        encode_time(updated),
        str(run.id) if run_id is None else run_id,
    )


def flow_run_from_row(row: Sequence[Any]) -> FlowRun:
    """A FlowRun (with its current state) from a SELECT_FLOW_RUN* row."""
    state_type, parameters, tags = row[6], row[3], row[4]
    start, end, expected, following = row[9], row[10], row[12], row[13]
    try:
        run_time = timedelta(seconds=row[11])
        return construct(
            FlowRun,
            {
                "id": UUID(row[0]),
                "name": row[1],
                "flow_name": row[2],
                # (parameters None: not read; no parameters and no tags are the usual texts)
                "parameters": (
                    {} if parameters is None or parameters == "{}" else json.loads(parameters)
                ),
                "tags": [] if tags == "[]" else json.loads(tags),
                "state": state_from_row(row, 20),
                "state_type": None if state_type is None else _state_types[state_type],
                "state_name": row[7],
                "run_count": row[8],
                "start_time": None if start is None else _parse_iso(start),
                "end_time": None if end is None else _parse_iso(end),
                "total_run_time": run_time,
                "expected_start_time": None if expected is None else _parse_iso(expected),
                "next_scheduled_start_time": (
                    None if following is None else _parse_iso(following)
                ),
                "estimated_run_time": run_time,
                "empirical_policy": _validate_flow_policy(row[14]),
                "deployment_id": _uuid(row[15]),
                "infrastructure_pid": row[16],
                "parent_task_run_id": _uuid(row[17]),
                "created": _parse_iso(row[18]),
                "updated": _parse_iso(row[19]),
            },
        )
    except (ValueError, KeyError, TypeError) as exc:  # (no cost unless raised)
        raise unreadable("flow run", row[0], exc) from exc


def task_run_insert_row(run: TaskRun) -> tuple[Any, ...]:
    """Values for INSERT_TASK_RUN, for a new task run as ``create_task_run`` builds it: no state
    yet, its counts 0, no run times and no cache key (the statement writes those)."""
    values = run.__dict__  # (one dict, instead of pydantic's attribute hook per field)
    return (
        str(values["id"]),
        _str(values["flow_run_id"]),
        values["task_key"],
        values["dynamic_key"],
        values["name"],
        values["empirical_policy"].model_dump_json(),
        encode_time(values["created"]),
        encode_time(values["updated"]),
        json.dumps(values["tags"]),
    )


_TASK_RUN_TIMES = frozenset(
    ("start_time", "end_time", "expected_start_time", "next_scheduled_start_time", "cache_expiration")
)
_TASK_RUN_SAVED = SAVED_FIELDS["task"]


def task_run_changes(updates: dict[str, Any]) -> tuple[tuple[str, ...], list[Any]]:
    """The columns of a task run's row that a transition's ``updates`` change (the fields a
    transition saves, in the order first changed), and their values as stored."""
    columns, values = [], []
    for name, value in updates.items():
        if name in _TASK_RUN_TIMES:
            value = encode_time(value)
        elif name == "state_type":
            value = None if value is None else value._value_
        elif name == "total_run_time":
            value = value.total_seconds()
        elif name not in _TASK_RUN_SAVED:
            continue  # (not in the row)
        columns.append(name)
        values.append(value)
    return tuple(columns), values


def task_run_from_insert_row(run: TaskRun, row: tuple[Any, ...]) -> TaskRun:
    """The TaskRun reading back the row that INSERT_TASK_RUN wrote with ``row`` (the
    ``task_run_insert_row`` of ``run``) gives, without the read, for a new run whose ids, texts
    and tags are in their stored form already (plain UUIDs and str: ``create_task_run`` builds
    it so): its policy and times decoded from the row, the rest taken from ``run``."""
    return construct(
        TaskRun,
        {
            **run.__dict__,
            "tags": list(run.tags),
            "empirical_policy": _validate_task_policy(row[5]),
            "created": parse_time(row[6]),
            "updated": parse_time(row[7]),
        },
    )


def task_run_copy(run: TaskRun) -> TaskRun:
    """A copy of a new run ``task_run_from_insert_row`` built that shares nothing a caller could
    change (its tags and policy are its own): what the same read gives, without decoding it
    again."""
    policy = run.empirical_policy
    delay = policy.__dict__["retry_delay"]  # (the policy's one field that may hold a list)
    return construct(
        TaskRun,
        {
            **run.__dict__,
            "tags": list(run.tags),
            "empirical_policy": copy_with(
                policy, {"retry_delay": list(delay)} if type(delay) is list else {}
            ),
        },
    )


def task_run_from_row(row: Sequence[Any]) -> TaskRun:
    """A TaskRun (with its current state) from a SELECT_TASK_RUN* row."""
    state_type = row[6]
    try:
        return construct(
            TaskRun,
            {
                "id": UUID(row[0]),
                "flow_run_id": _uuid(row[1]),
                "task_key": row[2],
                "dynamic_key": row[3],
                "name": row[4],
                "tags": json.loads(row[27]),
                "state": state_from_row(row, 20),
                "state_type": None if state_type is None else _state_types[state_type],
                "state_name": row[7],
                "run_count": row[8],
                "flow_run_run_count": row[9],
                "start_time": parse_time(row[10]),
                "end_time": parse_time(row[11]),
                "total_run_time": timedelta(seconds=row[12]),
                "expected_start_time": parse_time(row[13]),
                "next_scheduled_start_time": parse_time(row[14]),
                "empirical_policy": _validate_task_policy(row[15]),
                "cache_key": row[16],
                "cache_expiration": parse_time(row[17]),
                "created": parse_time(row[18]),
                "updated": parse_time(row[19]),
            },
        )
    except (ValueError, KeyError, TypeError) as exc:  # (no cost unless raised)
        raise unreadable("task run", row[0], exc) from exc

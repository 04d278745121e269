"""Checks of user input at the API boundary: each turns bad input into ``InvalidState``.

Everything the :class:`~flowstate.Orchestrator` accepts from a caller passes through here
before anything is written; past this point the engine trusts its data.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, Literal, TypeVar
from uuid import UUID

from pydantic import TypeAdapter, ValidationError

from flowstate._text import all_ascii, check_state_text, check_text
from flowstate._seconds import CENTURY
from flowstate.errors import InvalidState, ObjectNotFound
from flowstate._json_depth import deeper_than_allowed, too_deep_message
from flowstate.orchestration.policy import Policy
from flowstate._models import construct
from flowstate.runs import _FLOW_POLICY_DEFAULTS, FlowRun, FlowRunPolicy, TaskRun, TaskRunPolicy
from flowstate.states import State, StateType, plain_state

__all__ = [
    "check_policy",
    "check_retry_delays",
    "check_run_input_key",
    "check_state_text",
    "check_text",
    "coerce_policy",
    "coerce_state",
    "found",
    "plain_flow_run",
    "optional_text",
    "run_id",
    "whole_number",
    "new_task_run",
    "page",
    "validation_message",
]


RUN_INPUT_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")


def validation_message(exc: ValidationError, field: str | None = None) -> str:
    """Each of pydantic's errors as ``field: what is wrong (got value)``, the value cut short
    (``field``: the name of the field the value validated was given for)."""
    return "; ".join(
        f"{field or '.'.join(map(str, error['loc'])) or 'value'}: {error['msg']} "
        f"(got {short_repr(error.get('input'))})"
        for error in exc.errors()
    )


def short_repr(value: Any, width: int = 80) -> str:
    """``repr(value)`` cut to ``width`` characters; a value nested too deeply to show is named
    by its type."""
    try:
        return f"{value!r:.{width}}"
    except RecursionError:
        return f"a {type(value).__name__} nested too deeply to show"


def run_id(value: Any, what: str = "run id") -> UUID:
    """An id as the engine keeps it: a plain UUID (of a UUID subclass: its value, whatever text
    the subclass writes), or parsed from its text; InvalidState if it is neither."""
    if isinstance(value, UUID):
        return value if type(value) is UUID else UUID(int=value.int)
    if isinstance(value, str):
        try:
            return UUID(value)
        except ValueError:
            pass
    raise InvalidState(f"{what} {value!r} is not a UUID")


_R = TypeVar("_R")


def found(run: _R | None, kind: Literal["flow", "task"], run_id: UUID) -> _R:
    """``run``, read for the run ``run_id``: ObjectNotFound if it is None (no such run)."""
    if run is None:
        raise ObjectNotFound(f"{kind.capitalize()} run with id {run_id} not found")
    return run


def optional_run_id(value: Any, what: str) -> UUID | None:
    """:func:`run_id` of ``value``, or None when it is None."""
    return None if value is None else run_id(value, what)


def coerce_state(value: Any) -> State:
    """Validate a user's proposal: a State, a dict or JSON text in Prefect's shape, or a state
    type (``StateType.RUNNING``, ``"RUNNING"``, ``"running"``: that type's default state)."""
    if isinstance(value, State):
        state = value
    elif isinstance(value, StateType):
        return plain_state(value)
    elif isinstance(value, str) and not value.lstrip().startswith(("{", "[", '"')):
        return _state_of_type_named(value)
    else:
        state = _parsed_state(value)
    if not all_ascii(state):
        check_state_text(state)
    if state.__dict__["data"] is not None:
        try:
            json.dumps(state.data)
        except (TypeError, ValueError, RecursionError) as exc:
            raise InvalidState(f"state.data must be JSON-serialisable: {exc}") from None
        if deeper_than_allowed(state.data):
            raise InvalidState(too_deep_message("state.data"))
    return state


def _parsed_state(value: Any) -> State:
    """A state given as a dict or as JSON text in Prefect's shape, validated."""
    try:
        if isinstance(value, str | bytes):
            return State.model_validate_json(value)
        if isinstance(value, Mapping):
            return State.model_validate(value)
    except ValidationError as exc:
        raise InvalidState(f"invalid state: {validation_message(exc)}") from None
    raise InvalidState(
        f"a state must be a flowstate.State, a dict or JSON text, not {type(value).__name__}"
    )


_TYPE_NAMES = ", ".join(t.value for t in StateType)


def _state_of_type_named(name: str) -> State:
    """``"RUNNING"`` (any case) as a RUNNING state with its default name, as the CLI reads it."""
    member = StateType.__members__.get(name.strip().upper())
    if member is None:
        raise InvalidState(
            f"state {short_repr(name)} is not a state type; pass one of {_TYPE_NAMES} (in any "
            "case), a StateType, a flowstate.State, a dict or JSON text"
        )
    return plain_state(member)


def _field_template(model: type[FlowRun] | type[TaskRun]) -> dict[str, Any]:
    """Every field of ``model`` in order, with its default (None for those the caller always
    gives: the required ones and those with a default factory). Read off the fields, without
    building a model: a model builds its validator at first use, which importing flowstate
    should not pay for."""
    return {
        name: None if field.is_required() or field.default_factory is not None else field.default
        for name, field in model.model_fields.items()
    }


_FLOW_RUN_TEMPLATE = _field_template(FlowRun)
_TASK_RUN_TEMPLATE = _field_template(TaskRun)
_TASK_RUN_TEXTS = ("task_key", "dynamic_key", "name")


def new_task_run(fields: dict[str, Any]) -> TaskRun:
    """The task run of the fields ``create_task_run`` gathers (its ids, plain UUIDs from
    :func:`run_id`, its tags and policy checked already), without validating the whole run:
    its texts taken as pydantic takes text, or refused (InvalidState naming each). Its ids and texts are in the form reading its row gives
    them: plain UUIDs and str."""
    errors = []
    for name in _TASK_RUN_TEXTS:
        try:
            fields[name] = _text(fields[name])
        except ValidationError as exc:
            errors.append(validation_message(exc, name))
    fields["tags"] = [_text(tag) for tag in fields["tags"]]  # (each a str already)
    if errors:
        raise InvalidState(f"invalid task run: {'; '.join(errors)}")
    return construct(TaskRun, {**_TASK_RUN_TEMPLATE, **fields}, set(fields))


def _text(value: Any) -> str:
    """``value`` as a pydantic ``str`` field takes it (bytes, enums and str subclasses holding
    text become str); ValidationError if it is not text."""
    return value if type(value) is str else TypeAdapter(str).validate_python(value)


def plain_flow_run(fields: dict[str, Any]) -> FlowRun | None:
    """What ``FlowRun(**fields)`` builds (``fields`` as ``create_flow_run`` gathers them, with
    no policy given), built without pydantic; None when validation might change a value, or
    with a policy given."""
    if fields["empirical_policy"] is not None or not _plain_values(fields):
        return None
    values = {  # every field, in field order; validation copies the containers
        **_FLOW_RUN_TEMPLATE,
        **fields,
        "parameters": dict(fields["parameters"]),
        "tags": list(fields["tags"]),
        "empirical_policy": construct(
            FlowRunPolicy, {**_FLOW_POLICY_DEFAULTS, "pause_keys": set()}, set()
        ),
    }
    return construct(FlowRun, values, set(fields))


def _plain_values(fields: dict[str, Any]) -> bool:
    """Whether validation keeps the values ``create_flow_run`` gathers as they are: text
    names, a dict of parameters with text keys, a list of text tags."""
    pid = fields["infrastructure_pid"]
    parameters, tags = fields["parameters"], fields["tags"]
    return (
        type(fields["name"]) is str
        and type(fields["flow_name"]) is str
        and (pid is None or type(pid) is str)
        and type(parameters) is dict
        and type(tags) is list
        and _all_text(parameters)
        and _all_text(tags)
    )


def _all_text(items: dict[Any, Any] | list[Any]) -> bool:
    """Whether every key of a dict, or every item of a list, is exactly a str."""
    return not items or all(type(item) is str for item in items)


def coerce_policy(value: Any, model: type[FlowRunPolicy] | type[TaskRunPolicy]) -> Any:
    if value is None:
        return model()
    if isinstance(value, model):
        policy = value.model_copy(deep=True)
    else:
        try:
            policy = model.model_validate(value)
        except ValidationError as exc:
            raise InvalidState(f"invalid empirical_policy: {validation_message(exc)}") from None
        except OverflowError as exc:  # int(inf) while back-filling retry_delay_seconds
            raise InvalidState(f"invalid empirical_policy: {exc}") from None
    for key in getattr(policy, "pause_keys", ()):
        check_text(key, "a key of empirical_policy.pause_keys")
    check_retry_delays(policy)
    return policy


def check_retry_delays(policy: FlowRunPolicy | TaskRunPolicy) -> None:
    """A delay that cannot be added to "now" would make every later failure raise."""
    delay = policy.retry_delay
    delays = delay if isinstance(delay, list) else [delay or 0]
    spread = 1 + (getattr(policy, "retry_jitter_factor", None) or 0)
    for seconds in delays:
        reach = abs(seconds) * spread
        if not math.isfinite(reach) or reach > CENTURY:
            raise InvalidState(
                f"empirical_policy.retry_delay={delay!r} (jitter spread {spread!r}) is out of range; "
                "a retry delay must be finite and at most 100 years, jitter included"
            )


def optional_text(value: Any, what: str) -> str | None:
    """None, or text: a str without lone surrogates (which are not Unicode text)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidState(f"{what} must be a str or None, not {type(value).__name__}")
    check_text(value, what)
    return value


def whole_number(value: Any, what: str, minimum: int) -> int:
    """A whole number (never a bool) from ``minimum`` to 2**63-1, what a database column holds."""
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= MAX_SQL_INT:
        raise InvalidState(f"{what}={value!r:.40}; expected a whole number from {minimum} to 2**63-1")
    return value


def check_policy(policy: Any, kind: str) -> Policy:
    if not isinstance(policy, Policy):
        raise InvalidState(f"{kind}_policy must be a flowstate Policy, not {type(policy).__name__}")
    if policy.kind != kind:
        raise InvalidState(
            f"{kind}_policy {policy.name!r} is a {policy.kind} policy; build it from CORE_{kind.upper()}"
        )
    return policy


def check_run_input_key(key: Any, what: str | None = None) -> None:
    """A run-input key, or (``what``) a pause key or key prefix, part of one: letters, digits
    and dashes."""
    if not isinstance(key, str) or not key or not set(key) <= RUN_INPUT_KEY_CHARS:
        named = f"run input key {key!r}" if what is None else f"{what}={key!r:.80}"
        raise InvalidState(f"{named} is invalid; use letters, digits and dashes only")


MAX_SQL_INT = 2**63 - 1


def is_whole_number(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_SQL_INT


def page(
    state_type: Any, limit: Any, offset: Any, flow_name: Any, newest_first: Any
) -> dict[str, Any]:
    """A listing's filters and page, checked in this order, as the store's reads take them:
    a StateType (or its name, in any case), whole numbers, text."""
    if state_type is not None and not isinstance(state_type, StateType):
        try:
            state_type = StateType(str(state_type).upper())
        except ValueError:
            raise InvalidState(
                f"state_type={state_type!r} is not a StateType; expected one of {_TYPE_NAMES}"
            ) from None
    if limit is not None and not is_whole_number(limit):
        raise InvalidState(f"limit={limit!r}; expected a whole number from 0 to 2**63-1, or None")
    if not is_whole_number(offset):
        raise InvalidState(f"offset={offset!r}; expected a whole number from 0 to 2**63-1")
    if flow_name is not None and not isinstance(flow_name, str):
        raise InvalidState(f"flow_name={flow_name!r}; expected a str or None")
    check_text(flow_name, "flow_name")
    return {
        "state_type": state_type,
        "limit": limit,
        "offset": offset,
        "flow_name": flow_name,
        "newest_first": bool(newest_first),
    }

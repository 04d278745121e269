"""States: the nine state types, their details, and Prefect-style constructors.

>>> from flowstate.states import Running, Paused
>>> Running().type.value, Running().name
('RUNNING', 'Running')
>>> Paused(pause_key="approval").state_details.pause_key
'approval'
"""

from __future__ import annotations

import enum
import math
from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from flowstate._ids import uuid7
from flowstate._models import construct
from flowstate._time import FromNow, UtcDateTime, from_now, utcnow
from flowstate.errors import InvalidState

__all__ = [
    "TERMINAL_TYPES",
    "AwaitingRetry",
    "Cached",
    "Cancelled",
    "Cancelling",
    "Completed",
    "Crashed",
    "Failed",
    "Late",
    "Paused",
    "Pending",
    "Retrying",
    "Running",
    "Scheduled",
    "State",
    "StateDetails",
    "StateType",
    "Suspended",
]


class StateType(str, enum.Enum):
    """The type of a state; its JSON value is the member name."""

    SCHEDULED = "SCHEDULED"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    CRASHED = "CRASHED"
    PAUSED = "PAUSED"
    CANCELLING = "CANCELLING"

    @property
    def default_name(self) -> str:
        """The name a state of this type gets when none is given: ``Running`` for RUNNING."""
        return _DEFAULT_NAMES[self]

    @property
    def is_final(self) -> bool:
        """Whether the type is terminal: COMPLETED, FAILED, CANCELLED or CRASHED."""
        return self in TERMINAL_TYPES


_DEFAULT_NAMES = {t: " ".join(part.capitalize() for part in t.value.split("_")) for t in StateType}

TERMINAL_TYPES: frozenset[StateType] = frozenset(
    {StateType.COMPLETED, StateType.FAILED, StateType.CANCELLED, StateType.CRASHED}
)


class StateDetails(BaseModel):
    """Every field of Prefect's state details, in Prefect's JSON key order."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    flow_run_id: UUID | None = None
    task_run_id: UUID | None = None
    child_flow_run_id: UUID | None = None
    scheduled_time: UtcDateTime | None = None
    cache_key: str | None = None
    cache_expiration: UtcDateTime | None = None
    deferred: bool | None = False
    untrackable_result: bool = False
    pause_timeout: UtcDateTime | None = None
    pause_reschedule: bool = False
    pause_key: str | None = None
    run_input_keyset: dict[str, str] | None = None
    refresh_cache: bool | None = None
    retriable: bool | None = None
    transition_id: UUID | None = None
    task_parameters_id: UUID | None = None
    traceparent: str | None = None
    deployment_concurrency_lease_id: UUID | None = None


_DETAIL_DEFAULTS: dict[str, Any] = {
    name: field.default for name, field in StateDetails.model_fields.items()
}


class State(BaseModel):
    """A state of a flow or task run, shaped exactly as Prefect's API returns it.

    ``name`` defaults to the capitalised type. When a state is proposed to the orchestrator its
    ``id`` and ``timestamp`` are replaced (every written state is "now"), as Prefect's API does.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    id: UUID = Field(default_factory=uuid7)
    type: StateType
    name: str | None = None
    timestamp: UtcDateTime = Field(default_factory=utcnow)
    message: str | None = None
    data: Any = None
    state_details: StateDetails = Field(default_factory=StateDetails)

    @model_validator(mode="after")
    def _default_name(self) -> State:
        if self.name is None:
            object.__setattr__(self, "name", self.type.default_name)
        return self

    @property
    def is_final(self) -> bool:
        """Whether this state is terminal (COMPLETED, FAILED, CANCELLED, CRASHED)."""
        return self.type in TERMINAL_TYPES

    def __repr__(self) -> str:
        """The constructor call that builds this state, with the details that decide
        orchestration: ``Paused(pause_key='approval')``, ``Scheduled(scheduled_time='...')``."""
        from flowstate._repr import state_repr

        return state_repr(self)


def _validated_state(
    type_: StateType,
    name: str | None,
    message: str | None,
    data: Any,
    **details: Any,
) -> State:
    """The state a constructor builds, validated; bad arguments are InvalidState naming them."""
    try:
        return State(
            type=type_,
            name=name,
            message=message,
            data=data,
            state_details=StateDetails(**details),
        )
    except ValidationError as exc:
        from flowstate._validation import validation_message

        raise InvalidState(
            f"invalid {type_.value} state: {validation_message(exc)}"
        ) from None


_OPTIONAL_TEXT = (str, type(None))
_OPTIONAL_FLAG = (bool, type(None))
_PLAIN_DETAILS: dict[str, tuple[type, ...]] = {
    "cache_key": _OPTIONAL_TEXT,
    "pause_key": _OPTIONAL_TEXT,
    "traceparent": _OPTIONAL_TEXT,
    "deferred": _OPTIONAL_FLAG,
    "refresh_cache": _OPTIONAL_FLAG,
    "retriable": _OPTIONAL_FLAG,
    "untrackable_result": (bool,),
    "pause_reschedule": (bool,),
    # fields that no constructor argument needs validating when left at None
    "flow_run_id": (type(None),),
    "task_run_id": (type(None),),
    "child_flow_run_id": (type(None),),
    "scheduled_time": (type(None),),
    "cache_expiration": (type(None),),
    "pause_timeout": (type(None),),
    "run_input_keyset": (type(None),),
    "transition_id": (type(None),),
    "task_parameters_id": (type(None),),
    "deployment_concurrency_lease_id": (type(None),),
}
"""Detail arguments whose validation returns them unchanged: these exact types only."""
_STATE_FIELDS_SET = frozenset({"type", "name", "message", "data", "state_details"})


def _state(
    type_: StateType,
    name: str | None,
    message: str | None,
    data: Any,
    details: dict[str, Any],
) -> State:
    """What ``_validated_state`` builds from the detail arguments ``details``, without pydantic
    when validation would change nothing: text or None for name and message, no data, and
    plain detail values (``_PLAIN_DETAILS``)."""
    if (
        data is None
        and (name is None or type(name) is str)
        and (message is None or type(message) is str)
    ):
        # (no details: the usual call, Running(), Completed(), ...)
        plain = _plain_details(details) if details else _NO_DETAILS
        if plain is not None:
            return _build(type_, name, message, plain, _STATE_FIELDS_SET)
    return _validated_state(type_, name, message, data, **details)


def _plain_details(given: dict[str, Any]) -> StateDetails | None:
    """``StateDetails(**given)`` built without pydantic, or None when validation might change
    a value (a value not of its field's plain types, ``_PLAIN_DETAILS``)."""
    for key, value in given.items():
        kinds = _PLAIN_DETAILS.get(key)
        if kinds is None or type(value) not in kinds:
            return None
    return construct(StateDetails, {**_DETAIL_DEFAULTS, **given}, set(given))


def plain_state(type_: StateType) -> State:
    """``State(type=type_)``, built without validation (``type_`` must be a StateType)."""
    return _build(type_, None, None, _NO_DETAILS, _TYPE_ONLY)


_TYPE_ONLY = frozenset({"type"})
_NO_DETAILS = construct(StateDetails, _DETAIL_DEFAULTS.copy(), set())


def _build(
    type_: StateType,
    name: str | None,
    message: str | None,
    details: StateDetails,
    fields_set: frozenset[str],
) -> State:
    """The state validation builds from already-valid arguments (``fields_set``: those given)."""
    return construct(
        State,
        {
            "id": uuid7(),  # the default factories, in field order
            "type": type_,
            "name": _DEFAULT_NAMES[type_] if name is None else name,
            "timestamp": utcnow(),
            "message": message,
            "data": None,
            "state_details": details,
        },
        set(fields_set),
    )


def Scheduled(
    scheduled_time: datetime | str | None = None,
    *,
    name: str | None = None,
    message: str | None = None,
    data: Any = None,
    **details: Any,
) -> State:
    """A SCHEDULED state. Without ``scheduled_time`` the orchestrator schedules it for "now"."""
    if scheduled_time is not None and "scheduled_time" in details:
        raise InvalidState("pass scheduled_time once, not also inside the details")
    return _state(
        StateType.SCHEDULED, name, message, data, {"scheduled_time": scheduled_time, **details}
    )


def Late(scheduled_time: datetime | str | None = None, **kwargs: Any) -> State:
    """A SCHEDULED state named ``Late``: a scheduled run that missed its start."""
    return Scheduled(scheduled_time, name="Late", **kwargs)


def AwaitingRetry(scheduled_time: datetime | str | None = None, **kwargs: Any) -> State:
    """A SCHEDULED state named ``AwaitingRetry``: a retry planned after a failure."""
    return Scheduled(scheduled_time, name="AwaitingRetry", **kwargs)


def Pending(*, name: str | None = None, message: str | None = None, data: Any = None, **details: Any) -> State:
    """A PENDING state (``name`` may be ``Submitting``, ``InfrastructurePending``, ...)."""
    return _state(StateType.PENDING, name, message, data, details)


def Running(*, name: str | None = None, message: str | None = None, data: Any = None, **details: Any) -> State:
    """A RUNNING state."""
    return _state(StateType.RUNNING, name, message, data, details)


def Retrying(*, message: str | None = None, data: Any = None, **details: Any) -> State:
    """A RUNNING state named ``Retrying``."""
    return _state(StateType.RUNNING, "Retrying", message, data, details)


def Completed(*, name: str | None = None, message: str | None = None, data: Any = None, **details: Any) -> State:
    """A COMPLETED state; ``data`` is the result reference (a dict counts as persisted)."""
    return _state(StateType.COMPLETED, name, message, data, details)


def Cached(
    *,
    cache_key: str | None = None,
    cache_expiration: datetime | str | None = None,
    message: str | None = None,
    data: Any = None,
    **details: Any,
) -> State:
    """A COMPLETED state named ``Cached``."""
    return _state(
        StateType.COMPLETED,
        "Cached",
        message,
        data,
        {"cache_key": cache_key, "cache_expiration": cache_expiration, **details},
    )


def Failed(*, name: str | None = None, message: str | None = None, data: Any = None, **details: Any) -> State:
    """A FAILED state."""
    return _state(StateType.FAILED, name, message, data, details)


def Crashed(*, name: str | None = None, message: str | None = None, data: Any = None, **details: Any) -> State:
    """A CRASHED state."""
    return _state(StateType.CRASHED, name, message, data, details)


def Cancelled(*, name: str | None = None, message: str | None = None, data: Any = None, **details: Any) -> State:
    """A CANCELLED state."""
    return _state(StateType.CANCELLED, name, message, data, details)


def Cancelling(*, name: str | None = None, message: str | None = None, data: Any = None, **details: Any) -> State:
    """A CANCELLING state."""
    return _state(StateType.CANCELLING, name, message, data, details)


def Paused(
    timeout_seconds: float | None = None,
    pause_expiration_time: datetime | str | None = None,
    reschedule: bool = False,
    pause_key: str | None = None,
    *,
    name: str | None = None,
    message: str | None = None,
    data: Any = None,
    **details: Any,
) -> State:
    """A PAUSED state: blocking by default, a suspension with ``reschedule=True``.

    ``timeout_seconds`` counts from the moment the orchestrator takes the proposal, on its own
    clock (an injected ``FrozenClock`` too); ``pause_expiration_time`` is an absolute deadline.
    A timeout that is not a finite number of seconds, or ends after the year 9999, is
    :class:`~flowstate.InvalidState`.
    """
    if timeout_seconds is not None and pause_expiration_time is not None:
        raise InvalidState("pass timeout_seconds or pause_expiration_time, not both")
    if "pause_timeout" in details:
        raise InvalidState("set the pause timeout with timeout_seconds or pause_expiration_time")
    deadline: datetime | str | None = pause_expiration_time
    if timeout_seconds is not None:
        deadline = _relative_timeout(timeout_seconds)  # (validation keeps it a FromNow)
    return _state(
        StateType.PAUSED,
        name,
        message,
        data,
        {
            "pause_timeout": deadline,
            "pause_reschedule": reschedule,
            "pause_key": pause_key,
            **details,
        },
    )


def _relative_timeout(seconds: Any) -> FromNow:
    """``timeout_seconds`` checked: a finite real number whose deadline is representable."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise InvalidState(
            f"timeout_seconds must be a number of seconds, not {type(seconds).__name__}: "
            f"{seconds!r}"
        )
    if isinstance(seconds, float) and not math.isfinite(seconds):  # (an int is finite)
        raise InvalidState(f"timeout_seconds={seconds!r}: expected a finite number of seconds")
    try:
        return from_now(seconds)
    except OverflowError:
        raise InvalidState(
            f"timeout_seconds={seconds!r} is too large: the pause would end after the year 9999"
        ) from None


def Suspended(
    timeout_seconds: float | None = None,
    pause_expiration_time: datetime | str | None = None,
    pause_key: str | None = None,
    **kwargs: Any,
) -> State:
    """A PAUSED state named ``Suspended`` that reschedules the run when resumed."""
    return Paused(
        timeout_seconds,
        pause_expiration_time,
        reschedule=True,
        pause_key=pause_key,
        name="Suspended",
        **kwargs,
    )

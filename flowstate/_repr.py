"""Readable reprs for states and runs: the constructor call a user would write, with the
details that decide orchestration (pause key and timeout, scheduled time, run input keyset,
cache key and expiry, retry settings) and without what does not (ids, timestamps, messages).

Only used when a repr is asked for (failure printouts, the REPL): nothing here runs on the
hot path, and nothing changes ``model_dump`` or JSON output.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

if TYPE_CHECKING:
    from flowstate.runs import FlowRun, TaskRun
    from flowstate.states import State

_NAMED = {  # the names that have a constructor of their own (one that gives that name)
    "SCHEDULED": ("Late", "AwaitingRetry"),
    "RUNNING": ("Retrying",),
    "COMPLETED": ("Cached",),
    "PAUSED": ("Suspended",),
}
_DETAILS = (  # the details shown when they differ from the default, in this order
    "scheduled_time", "pause_key", "pause_timeout", "pause_reschedule", "run_input_keyset",
    "cache_key", "cache_expiration", "refresh_cache", "retriable", "untrackable_result",
    "deferred",
)
_ARGUMENT = {"pause_timeout": "pause_expiration_time"}  # the constructors' names for details


def value_repr(value: Any, limit: int = 60) -> str:
    """A short repr: times as ISO text in UTC (``'2024-01-01T09:00:00Z'``, which the
    constructors accept), ids as text, long values cut."""
    if isinstance(value, datetime):
        return repr(value.isoformat().replace("+00:00", "Z"))
    if isinstance(value, UUID):
        return repr(str(value))
    if isinstance(value, set | frozenset):
        text = "{" + ", ".join(repr(v) for v in sorted(value, key=str)) + "}" if value else "set()"
    else:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def state_repr(state: State) -> str:
    """``Paused(pause_key='approval', pause_expiration_time='2024-01-01T01:00:00Z')``."""
    constructor = state.type.default_name  # each type's constructor, named as its states
    arguments: list[str] = []
    if state.name in _NAMED.get(state.type.value, ()):
        constructor = state.name
    elif state.name != constructor:
        arguments.append(f"name={state.name!r}")
    arguments.extend(_detail_arguments(state, constructor))
    if state.data is not None:
        arguments.append(f"data={value_repr(state.data)}")
    return f"{constructor}({', '.join(arguments)})"


def _detail_arguments(state: State, constructor: str) -> list[str]:
    """The ``name=value`` arguments for the state's non-default details, as ``constructor`` takes
    them (``Paused`` spells a reschedule ``reschedule=True``, ``Suspended`` reschedules by
    default)."""
    details = state.state_details
    arguments: list[str] = []
    for name in _DETAILS:
        value = getattr(details, name)
        if value == _default(details, name):
            continue
        if name == "pause_reschedule":
            if constructor == "Paused":
                arguments.append("reschedule=True")
            if constructor in ("Paused", "Suspended"):
                continue
        arguments.append(f"{_ARGUMENT.get(name, name)}={value_repr(value)}")
    if constructor == "Suspended" and not details.pause_reschedule:
        arguments.append("pause_reschedule=False")
    return arguments


def _default(model: Any, name: str) -> Any:
    """The value the model's field ``name`` has when it is not given."""
    return type(model).model_fields[name].get_default(call_default_factory=True)


def _fields(model: Any, names: tuple[str, ...]) -> list[str]:
    """``name=value`` for each of ``names`` whose value is not the field's default."""
    return [f"{name}={value_repr(getattr(model, name))}" for name in names
            if getattr(model, name) != _default(model, name)]


# (the run's fields, its policy's fields) a run's repr shows when they are not their defaults
_FLOW_RUN_SHOWN = (
    ("run_count", "expected_start_time", "next_scheduled_start_time", "deployment_id",
     "infrastructure_pid", "parent_task_run_id"),
    ("retries", "retry_delay", "pause_keys", "resuming", "retry_type"),
)
_TASK_RUN_SHOWN = (
    ("flow_run_id", "run_count", "flow_run_run_count", "expected_start_time",
     "next_scheduled_start_time", "cache_key", "cache_expiration"),
    ("retries", "retry_delay", "retry_jitter_factor"),
)


def run_repr(run: FlowRun | TaskRun) -> str:
    """``FlowRun(id='…', name='…', state=Running(), run_count=1, retries=1, pause_keys={'a'})``:
    the run's current state, counters, scheduling times, retry settings and pause keys."""
    from flowstate.runs import FlowRun  # (loaded already: a run is being printed)

    fields, policy = _FLOW_RUN_SHOWN if isinstance(run, FlowRun) else _TASK_RUN_SHOWN
    parts = [
        f"id={value_repr(run.id)}",
        f"name={run.name!r}",
        f"state={'None' if run.state is None else state_repr(run.state)}",
        *_fields(run, fields),
        *_fields(run.empirical_policy, policy),
    ]
    return f"{type(run).__name__}({', '.join(parts)})"

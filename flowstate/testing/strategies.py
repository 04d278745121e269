"""Hypothesis strategies for flowstate: state types, coherent states, proposals, run input and
plausible transition sequences.

Every strategy is deterministic given hypothesis' draws, and every time it produces is relative
to ``now`` (default: :data:`~flowstate.testing.clock.DEFAULT_START`, where a fresh
:class:`~flowstate.testing.clock.FrozenClock` starts), so states line up with an injected clock.
Keys (pause keys, cache keys) come from small pools so that collisions — a pause key used twice,
a cache hit — happen often.
"""

from __future__ import annotations

import json
from functools import lru_cache
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, Literal

from flowstate.testing._require import require_hypothesis

require_hypothesis()

from hypothesis import strategies as st  # noqa: E402

from flowstate.graph import INITIAL, TRIGGERS, Trigger  # noqa: E402
from flowstate.states import State, StateDetails, StateType  # noqa: E402
from flowstate.testing.clock import DEFAULT_START  # noqa: E402

__all__ = [
    "CACHE_KEYS",
    "PAUSE_KEYS",
    "Kind",
    "Proposal",
    "plausible_proposals",
    "proposals",
    "run_inputs",
    "state_types",
    "states",
    "transition_sequences",
]

Kind = Literal["flow", "task"]
Proposal = tuple[State, bool]
"""A proposed state and whether it is forced: ``set_flow_run_state(id, state, force=force)``."""

PAUSE_KEYS: tuple[str, ...] = ("approval", "review", "retry-gate")
"""The pause keys states are drawn with (a small pool, so a key is often used twice)."""
CACHE_KEYS: tuple[str, ...] = ("cache-a", "cache-b")
"""The cache keys completed and running task states are drawn with."""

S = StateType
_NAMES: dict[StateType, tuple[str, ...]] = {
    S.SCHEDULED: ("Scheduled", "Late", "AwaitingRetry"),
    S.PENDING: ("Pending",),
    S.RUNNING: ("Running", "Retrying"),
    S.COMPLETED: ("Completed", "Cached"),
    S.FAILED: ("Failed",),
    S.CANCELLED: ("Cancelled",),
    S.CRASHED: ("Crashed",),
    S.PAUSED: ("Paused", "Suspended"),
    S.CANCELLING: ("Cancelling",),
}
_MESSAGES = st.none() | st.sampled_from(["", "worker says so", "attempt done"])
_RESULTS = st.sampled_from(
    [
        None,
        {"type": "reference", "storage_key": "results/1"},
        {"type": "unpersisted"},
        {},
        "a plain value",
    ]
)


def _types(value: StateType | str | Iterable[StateType | str] | None) -> list[StateType]:
    if value is None:
        return list(StateType)
    if isinstance(value, StateType | str):
        value = [value]
    types = [t if isinstance(t, StateType) else StateType(str(t).upper()) for t in value]
    if not types:
        raise ValueError("states(type=...) needs at least one state type")
    return types


def state_types(*, exclude: Iterable[StateType | str] = ()) -> st.SearchStrategy[StateType]:
    """One of the nine :class:`~flowstate.StateType` members (less ``exclude``)."""
    left = [t for t in StateType if t not in set(_types(exclude) if exclude else [])]
    return st.sampled_from(left)


def _seconds(low: int, high: int) -> st.SearchStrategy[timedelta]:
    return st.integers(low, high).map(lambda s: timedelta(seconds=s))


@st.composite
def _state_of(draw: st.DrawFn, type_: StateType, kind: Kind | None, now: datetime) -> State:
    name = draw(st.sampled_from(_NAMES[type_]))
    details: dict[str, Any] = {}
    data: Any = None
    if type_ is S.SCHEDULED:
        details["scheduled_time"] = draw(st.none() | _seconds(-3600, 3600).map(lambda d: now + d))
    elif type_ is S.PAUSED:
        suspended = name == "Suspended"
        details["pause_reschedule"] = suspended
        details["pause_key"] = draw(st.none() | st.sampled_from(PAUSE_KEYS))
        details["pause_timeout"] = draw(st.none() | _seconds(1, 3600).map(lambda d: now + d))
    elif type_ is S.COMPLETED:
        data = draw(_RESULTS)
        if kind != "flow" and draw(st.booleans()):
            details["cache_key"] = draw(st.sampled_from(CACHE_KEYS))
            details["cache_expiration"] = draw(
                st.none() | _seconds(1, 3600).map(lambda d: now + d)
            )
    elif type_ is S.RUNNING and kind != "flow" and draw(st.booleans()):
        details["cache_key"] = draw(st.sampled_from(CACHE_KEYS))
        details["refresh_cache"] = draw(st.none() | st.booleans())
    elif type_ is S.FAILED and kind != "flow":
        details["retriable"] = draw(st.none() | st.booleans())
    return State(
        type=type_,
        name=name,
        message=draw(_MESSAGES),
        data=data,
        timestamp=now,
        state_details=StateDetails(**details),
    )


def states(
    type: StateType | str | Iterable[StateType | str] | None = None,
    *,
    kind: Kind | None = None,
    now: datetime | None = None,
) -> st.SearchStrategy[State]:
    """Valid states with coherent details, of ``type`` (a type, a name, or several; default any).

    * SCHEDULED states are named Scheduled, Late or AwaitingRetry, with a scheduled time within
      an hour of ``now`` (or none: the orchestrator then schedules them for its "now");
    * PAUSED states are Paused or Suspended (``pause_reschedule``), with a pause key from
      :data:`PAUSE_KEYS` or none, and a pause timeout up to an hour after ``now`` or none;
    * COMPLETED states carry result data (none, a persisted reference, an unpersisted marker,
      ``{}`` or a plain value); for task runs (``kind`` not ``"flow"``) they may have a cache key
      from :data:`CACHE_KEYS` and an expiration; RUNNING task states may ask for a cache key;
    * FAILED task states may say whether they are ``retriable``.

    >>> from flowstate.testing import states
    >>> states("PAUSED").example().type.value
    'PAUSED'
    """
    return _states(tuple(_types(type)), kind, DEFAULT_START if now is None else now)


@lru_cache(maxsize=512)  # strategies are immutable; building them anew each step is slow
def _states(types: tuple[StateType, ...], kind: Kind | None, base: datetime) -> st.SearchStrategy[State]:
    if len(types) == 1:
        return _state_of(types[0], kind, base)
    # a type first, uniformly: one_of() would favour the types with more distinct states
    return st.sampled_from(types).flatmap(lambda t: _state_of(t, kind, base))


def proposals(
    kind: Kind = "flow",
    *,
    type: StateType | str | Iterable[StateType | str] | None = None,
    now: datetime | None = None,
    force: bool | None = None,
) -> st.SearchStrategy[Proposal]:
    """``(state, force)`` pairs to propose; ``force`` is drawn (True one time in eight) unless
    given."""
    forces = st.just(force) if force is not None else st.integers(0, 7).map(lambda n: n == 0)
    return st.tuples(states(type, kind=kind, now=now), forces)


def _has_placeholder(value: Any) -> bool:
    if isinstance(value, dict):
        return "__prefect_kind" in value or any(_has_placeholder(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_placeholder(v) for v in value)
    return False


def run_inputs(schema: Mapping[str, Any] | str) -> st.SearchStrategy[dict[str, Any]]:
    """Run input (JSON objects) valid against ``schema``, a JSON Schema as a dict or JSON text.

    Values are generated by :mod:`flowstate.testing.jsonschema_strategy` (the subset of JSON
    Schema that run-input models use; an unsupported keyword is a ``ValueError``). Values that
    contain a ``__prefect_kind`` key are left out: the resume endpoint would hydrate them.

    >>> from flowstate.testing import run_inputs
    >>> schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    >>> isinstance(run_inputs(schema).example()["ok"], bool)
    True
    """
    from flowstate.testing.jsonschema_strategy import from_schema

    parsed = json.loads(schema) if isinstance(schema, str) else dict(schema)
    if parsed.get("type", "object") != "object":
        raise ValueError(f"run input is a JSON object; the schema's type is {parsed['type']!r}")
    objects = from_schema({**parsed, "type": "object"}).filter(lambda v: not _has_placeholder(v))
    return objects  # type: ignore[return-value]  # "type": "object" makes every value a dict


def _triggers_for(kind: Kind) -> tuple[Trigger, ...]:
    if kind == "flow":
        return TRIGGERS
    return tuple(t for t in TRIGGERS if t.dest is not S.PAUSED and "PAUSED" not in t.sources)


@st.composite
def _trigger_state(draw: st.DrawFn, trigger: Trigger, kind: Kind, now: datetime) -> State:
    state = draw(states(trigger.dest, kind=kind, now=now))
    details = dict(trigger.details)
    if "pause_key" in details:
        details["pause_key"] = draw(st.sampled_from(PAUSE_KEYS))
    update: dict[str, Any] = {"state_details": state.state_details.model_copy(update=details)}
    update["name"] = trigger.name or trigger.dest.default_name
    return state.model_copy(update=update)


def plausible_proposals(
    current: StateType | str | None,
    kind: Kind = "flow",
    *,
    now: datetime | None = None,
) -> st.SearchStrategy[Proposal]:
    """A proposal for a run now in ``current`` (None: no state yet), plausible or probing.

    Three times in five it follows an edge of the declared state graph
    (:data:`flowstate.graph.TRIGGERS`) out of ``current``; one time in five it probes a guard
    with an unforced state of a type no edge leads to; otherwise it is any :func:`proposals`
    draw. Task runs do not follow the pause edges.
    """
    return _plausible(
        None if current is None else StateType(current), kind, DEFAULT_START if now is None else now
    )


@lru_cache(maxsize=512)
def _plausible(current: StateType | None, kind: Kind, base: datetime) -> st.SearchStrategy[Proposal]:
    source = INITIAL if current is None else current.value
    possible = [t for t in _triggers_for(kind) if source in t.sources]
    anything = proposals(kind, now=base)
    if not possible:
        return anything
    along = st.sampled_from(possible).flatmap(lambda t: _trigger_state(t, kind, base))
    off_types = [t for t in StateType if t not in {p.dest for p in possible}]
    off = states(off_types, kind=kind, now=base) if off_types else along
    choices = [along, along, along, off]
    return st.integers(0, 4).flatmap(
        lambda n: anything if n == 4 else choices[n].map(lambda s: (s, False))
    )


@st.composite
def _walk(
    draw: st.DrawFn, kind: Kind, min_size: int, max_size: int, now: datetime
) -> list[Proposal]:
    current: StateType | None = None
    steps: list[Proposal] = []
    for _ in range(draw(st.integers(min_size, max_size))):
        step = draw(plausible_proposals(current, kind, now=now))
        steps.append(step)
        current = step[0].type
    return steps


def transition_sequences(
    kind: Kind = "flow",
    *,
    min_size: int = 1,
    max_size: int = 20,
    now: datetime | None = None,
) -> st.SearchStrategy[list[Proposal]]:
    """Plausible sequences of ``(state, force)`` proposals for one run.

    Most steps follow the declared state graph (:data:`flowstate.graph.TRIGGERS`: schedule,
    submit, start, pause, cancel, retry, ...) from where the previous proposal would have left
    the run; the others are arbitrary proposals, sometimes forced. Task sequences leave out
    pausing. Whether each step is accepted is for the orchestrator to say.
    """
    if not 0 <= min_size <= max_size:
        raise ValueError(f"need 0 <= min_size <= max_size, got {min_size} and {max_size}")
    return _walk(kind, min_size, max_size, DEFAULT_START if now is None else now)

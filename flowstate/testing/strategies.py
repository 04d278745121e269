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
from itertools import product
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, Literal, NamedTuple
from uuid import UUID

from flowstate.testing._require import require_hypothesis

require_hypothesis()

from hypothesis import strategies as st  # noqa: E402

from flowstate.graph import INITIAL, TRIGGERS, Trigger  # noqa: E402
from flowstate.runs import FlowRun, FlowRunPolicy, TaskRun, TaskRunPolicy  # noqa: E402
from flowstate.states import State, StateDetails, StateType  # noqa: E402
from flowstate.testing.clock import DEFAULT_START  # noqa: E402

__all__ = [
    "CACHE_KEYS",
    "PAUSE_KEYS",
    "Kind",
    "MODES",
    "Proposal",
    "plausible_proposals",
    "proposals",
    "run_inputs",
    "runs_in",
    "state_types",
    "states",
    "transition_sequences",
]

Kind = Literal["flow", "task"]


class Proposal(NamedTuple):
    """A proposed state and whether it is forced: ``set_flow_run_state(id, state, force=force)``.

    A tuple, so ``for state, force in steps`` works."""

    state: State
    force: bool = False


MODES: dict[str, dict[str, int]] = {
    "plain": {},
    "pauses": {"pause": 8, "suspend": 2, "resume": 8, "start": 3},
    "retries": {"fail": 6, "crash": 3, "retry": 6, "start": 3},
    "cancels": {"cancel": 6, "cancelled": 4},
}
"""Trigger weights (:data:`flowstate.graph.TRIGGERS` names; 1 when not named) for the ``mode``
of :func:`plausible_proposals` and :func:`transition_sequences`: ``"pauses"`` pauses and
resumes runs again and again, ``"retries"`` fails, crashes and retries them, ``"cancels"``
cancels them."""

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
_RESULT_DATA: tuple[Any, ...] = (
    None,
    {"type": "reference", "storage_key": "results/1"},
    {"type": "unpersisted"},
    {},
    "a plain value",
)
"""The data COMPLETED states are drawn with: none, a persisted reference, an unpersisted
marker, an empty dict or a plain value."""


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
    excluded = set(_types(exclude)) if exclude else set()
    return st.sampled_from([t for t in StateType if t not in excluded])


OFFSETS: tuple[int | None, ...] = (None, 0, -1, 1, 60, -60, 3600, -3600)
"""Seconds from ``now`` for a time in a drawn state: none, exactly now, a second either side, a
minute either side, an hour either side (simplest first)."""

_Details = tuple[tuple[str, Any], ...]
# A variant is (name, data, details) with every time as an offset in seconds (or None).
Variant = tuple[str, Any, _Details]
_TIMES = frozenset({"scheduled_time", "pause_timeout", "cache_expiration"})
_TASK_DETAILS: dict[StateType, list[_Details]] = {  # the details only task states are drawn with
    S.RUNNING: [(), *((("cache_key", k), ("refresh_cache", r))
                      for k, r in product(CACHE_KEYS, (None, True, False)))],
    S.COMPLETED: [(), *((("cache_key", k), ("cache_expiration", t))
                        for k, t in product(CACHE_KEYS, OFFSETS))],
    S.FAILED: [(("retriable", r),) for r in (None, True, False)],
}


def _details(type_: StateType, task: bool, keys: tuple[str, ...]) -> list[_Details]:
    """The details a state of ``type_`` is drawn with, the plainest first."""
    if type_ is S.PAUSED:
        return [(("pause_key", k), ("pause_timeout", t)) for k, t in product((None, *keys), OFFSETS)]
    if type_ is S.SCHEDULED:
        return [(("scheduled_time", t),) for t in OFFSETS]
    return _TASK_DETAILS.get(type_, [()]) if task else [()]


def _variants(type_: StateType, task: bool, keys: tuple[str, ...]) -> tuple[Variant, ...]:
    """Every state of ``type_`` the strategies draw, the plainest first."""
    data = _RESULT_DATA if type_ is S.COMPLETED else (None,)
    return tuple(
        (n, d, (*c, ("pause_reschedule", n == "Suspended")) if type_ is S.PAUSED else c)
        for n, d, c in product(_NAMES[type_], data, _details(type_, task, keys))
    )


class StateTable:
    """States of several types: one choice picks the type (each as likely as the others) and
    the variant together, so lowering it moves to an earlier type and a plainer variant."""

    def __init__(
        self, types: tuple[StateType, ...], kind: Kind | None, keys: tuple[str, ...] = PAUSE_KEYS
    ) -> None:
        self.types = types
        self.variants = [_variants(t, kind != "flow", keys) for t in types]
        self.width = max(len(v) for v in self.variants)
        self.choice = st.integers(0, len(types) * self.width - 1)

    def state(self, index: int, now: datetime, message: str | None = None) -> State:
        """The state at ``index``, its times counted from ``now``."""
        slot, within = divmod(index, self.width)
        variants = self.variants[slot]
        name, data, given = variants[within % len(variants)]
        details: dict[str, Any] = {
            key: (now + timedelta(seconds=value) if key in _TIMES and value is not None else value)
            for key, value in given
        }
        return State(type=self.types[slot], name=name, message=message, data=data, timestamp=now,
                     state_details=StateDetails(**details))


def states(
    type: StateType | str | Iterable[StateType | str] | None = None,
    *,
    kind: Kind | None = None,
    now: datetime | None = None,
    pause_keys: Iterable[str] = PAUSE_KEYS,
) -> st.SearchStrategy[State]:
    """Valid states with coherent details, of ``type`` (a type, a name, or several; default any).

    Every time is none, exactly ``now``, or a second, a minute or an hour before or after it:

    * SCHEDULED states are named Scheduled, Late or AwaitingRetry, with a scheduled time (or
      none: the orchestrator then schedules them for its "now");
    * PAUSED states are Paused or Suspended (``pause_reschedule``), with a pause key from
      ``pause_keys`` (default :data:`PAUSE_KEYS`; pass a run's used keys to propose one again)
      or none, and a pause timeout (one in the past has already expired);
    * COMPLETED states carry result data (none, a persisted reference, an unpersisted marker,
      ``{}`` or a plain value); for task runs (``kind`` not ``"flow"``) they may have a cache key
      from :data:`CACHE_KEYS` and an expiration (maybe already past); RUNNING task states may
      ask for a cache key;
    * FAILED task states may say whether they are ``retriable``.

    >>> from flowstate.testing import states
    >>> states("PAUSED").example().type.value
    'PAUSED'
    """
    keys = tuple(pause_keys)
    if any(not isinstance(key, str) or not key for key in keys):
        raise ValueError(f"pause_keys are non-empty strings, got {keys!r}")
    return _states(tuple(_types(type)), kind, DEFAULT_START if now is None else now, keys)


@lru_cache(maxsize=512)  # strategies are immutable; building them anew each step is slow
def _states(
    types: tuple[StateType, ...], kind: Kind | None, now: datetime, keys: tuple[str, ...]
) -> st.SearchStrategy[State]:
    table = StateTable(types, kind, keys)
    return st.tuples(table.choice, st.just(now), _MESSAGES).map(lambda drawn: table.state(*drawn))


def proposals(
    kind: Kind = "flow",
    *,
    type: StateType | str | Iterable[StateType | str] | None = None,
    now: datetime | None = None,
    force: bool | None = None,
    pause_keys: Iterable[str] = PAUSE_KEYS,
) -> st.SearchStrategy[Proposal]:
    """:class:`Proposal` ``(state, force)`` pairs of :func:`states`; ``force`` is drawn (True
    one time in eight) unless given."""
    forces = st.just(force) if force is not None else st.sampled_from([False] * 7 + [True])
    return st.builds(
        Proposal, states(type, kind=kind, now=now, pause_keys=pause_keys), force=forces
    )


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
    # ("type": "object" makes every value a dict)
    return from_schema({**parsed, "type": "object"}).filter(lambda v: not _has_placeholder(v))


def _triggers_for(kind: Kind) -> tuple[Trigger, ...]:
    if kind == "flow":
        return TRIGGERS
    return tuple(t for t in TRIGGERS if t.dest is not S.PAUSED and "PAUSED" not in t.sources)


@st.composite
def _trigger_state(draw: st.DrawFn, trigger: Trigger, kind: Kind, now: datetime) -> State:
    state = draw(states(trigger.dest, kind=kind, now=now))
    details = dict(trigger.details)
    if "pause_key" in details:  # none: the orchestrator makes a fresh key
        details["pause_key"] = draw(st.none() | st.sampled_from(PAUSE_KEYS))
    update: dict[str, Any] = {"state_details": state.state_details.model_copy(update=details)}
    update["name"] = trigger.name or trigger.dest.default_name
    return state.model_copy(update=update)


def _weights(mode: str, weights: Mapping[str, int] | None) -> tuple[tuple[str, int], ...]:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {sorted(MODES)}, got {mode!r}")
    chosen = {**MODES[mode], **(weights or {})}
    names = {t.trigger for t in TRIGGERS}
    for name, weight in chosen.items():
        if name not in names:
            raise ValueError(f"no trigger named {name!r}; triggers: {sorted(names)}")
        if not isinstance(weight, int) or isinstance(weight, bool) or weight < 0:
            raise ValueError(f"the weight of {name!r} must be an int >= 0, got {weight!r}")
    return tuple(sorted(chosen.items()))


def plausible_proposals(
    current: StateType | str | None,
    kind: Kind = "flow",
    *,
    now: datetime | None = None,
    mode: str = "plain",
    weights: Mapping[str, int] | None = None,
) -> st.SearchStrategy[Proposal]:
    """A proposal for a run now in ``current`` (None: no state yet), plausible or probing.

    Three times in five it follows an edge of the declared state graph
    (:data:`flowstate.graph.TRIGGERS`) out of ``current``; one time in five it probes a guard
    with an unforced state of a type no edge leads to; otherwise it is any :func:`proposals`
    draw. Task runs do not follow the pause edges. ``mode`` (see :data:`MODES`) and
    ``weights`` (trigger name to a weight, 1 when not named, 0 to leave a trigger out) favour
    some edges; with either, eight draws in ten follow the graph. A pause along the graph has
    a key from :data:`PAUSE_KEYS` (so keys get used twice) or none (a fresh key).
    """
    return _plausible(
        None if current is None else StateType(current),
        kind,
        DEFAULT_START if now is None else now,
        _weights(mode, weights),
    )


def _off_graph(
    possible: list[Trigger], kind: Kind, base: datetime, along: st.SearchStrategy[State]
) -> st.SearchStrategy[State]:
    """States of the types no ``possible`` trigger leads to (``along`` when there are none)."""
    off_types = [t for t in StateType if t not in {p.dest for p in possible}]
    return states(off_types, kind=kind, now=base) if off_types else along


@lru_cache(maxsize=512)
def _plausible(
    current: StateType | None, kind: Kind, base: datetime, weights: tuple[tuple[str, int], ...]
) -> st.SearchStrategy[Proposal]:
    source = INITIAL if current is None else current.value
    weight = dict(weights)
    possible = [t for t in _triggers_for(kind) if source in t.sources]
    followed = [t for t in possible for _ in range(weight.get(t.trigger, 1))]
    anything = proposals(kind, now=base)
    if not followed:
        return anything
    along = st.sampled_from(followed).flatmap(lambda t: _trigger_state(t, kind, base))
    off = _off_graph(possible, kind, base, along)
    # plain: 3 in 5 along the graph; a mode keeps to the graph 8 times in 10 (one_of() would
    # weigh its branches equally, whatever the repeats)
    share = 3 if not weights else 8
    branches = [
        *[st.builds(Proposal, along, force=st.just(False))] * share,
        st.builds(Proposal, off, force=st.just(False)),
        anything,
    ]
    return st.integers(0, len(branches) - 1).flatmap(branches.__getitem__)


@st.composite
def _walk(
    draw: st.DrawFn,
    kind: Kind,
    min_size: int,
    max_size: int,
    now: datetime,
    weights: tuple[tuple[str, int], ...],
) -> list[Proposal]:
    current: StateType | None = None
    steps: list[Proposal] = []
    for _ in range(draw(st.integers(min_size, max_size))):
        step = draw(_plausible(current, kind, now, weights))
        steps.append(step)
        current = step[0].type
    return steps


def transition_sequences(
    kind: Kind = "flow",
    *,
    min_size: int = 1,
    max_size: int = 20,
    now: datetime | None = None,
    mode: str = "plain",
    weights: Mapping[str, int] | None = None,
) -> st.SearchStrategy[list[Proposal]]:
    """Plausible sequences of ``(state, force)`` proposals for one run.

    Most steps follow the declared state graph (:data:`flowstate.graph.TRIGGERS`: schedule,
    submit, start, pause, cancel, retry, ...) from where the previous proposal would have left
    the run; the others are arbitrary proposals, sometimes forced. Task sequences leave out
    pausing. Whether each step is accepted is for the orchestrator to say. ``mode`` and
    ``weights`` favour some edges, as for :func:`plausible_proposals`::

        transition_sequences("flow", mode="pauses")       # pause, resume, pause again, ...
        transition_sequences("flow", weights={"cancel": 4, "pause": 0})
    """
    if not 0 <= min_size <= max_size:
        raise ValueError(f"need 0 <= min_size <= max_size, got {min_size} and {max_size}")
    return _walk(
        kind, min_size, max_size, DEFAULT_START if now is None else now, _weights(mode, weights)
    )


_HAS_RUN = frozenset({S.RUNNING, S.COMPLETED, S.FAILED, S.CRASHED, S.PAUSED, S.CANCELLING})


def runs_in(
    state: StateType | str | None,
    *,
    kind: Kind = "flow",
    pauses: int | None = None,
    run_count: int | None = None,
    retries: int | None | Literal["any"] = "any",
    now: datetime | None = None,
) -> st.SearchStrategy[FlowRun | TaskRun]:
    """Runs already in a state of type ``state`` (None: no state yet), with a history to match.

    A flow run has paused ``pauses`` times (its ``empirical_policy.pause_keys``; default 0 to
    3, and at least once when PAUSED, its state carrying one of the keys); ``run_count`` is
    drawn to fit the state unless given (at least 1 once the run has run), ``retries`` too
    (``None``: no retries). The runs are models, as ``read_flow_run`` returns them: give one to
    :func:`flowstate.rules.decide_transition` as ``run=run, initial=run.state``::

        @given(runs_in(StateType.RUNNING, pauses=2), proposals(type="PAUSED"))
        def test_a_third_pause_is_refused(run, proposal):
            outcome = decide_transition(MY_POLICY, run=run, initial=run.state,
                                        proposed=proposal.state, now=DEFAULT_START)
            ...
    """
    type_ = None if state is None else _types(state)[0]
    if kind not in ("flow", "task"):
        raise ValueError(f"kind is 'flow' or 'task', got {kind!r}")
    if pauses is not None:
        _check_pauses(pauses, kind, type_)
    _check_counts(run_count, retries)
    return _run_in(type_, kind, pauses, run_count, retries, DEFAULT_START if now is None else now)


def _check_pauses(pauses: int, kind: Kind, type_: StateType | None) -> None:
    if kind == "task" and pauses:
        raise ValueError("task runs do not pause")
    if not isinstance(pauses, int) or pauses < 0:
        raise ValueError(f"pauses must be an int >= 0, got {pauses!r}")
    if pauses == 0 and type_ is S.PAUSED:
        raise ValueError("a PAUSED run has paused at least once (pauses >= 1)")


def _check_counts(run_count: int | None, retries: int | None | Literal["any"]) -> None:
    if run_count is not None and (not isinstance(run_count, int) or run_count < 0):
        raise ValueError(f"run_count must be an int >= 0, got {run_count!r}")
    if retries != "any" and retries is not None and (not isinstance(retries, int) or retries < 0):
        raise ValueError(f"retries must be None, an int >= 0 or 'any', got {retries!r}")


@st.composite
def _run_in(
    draw: st.DrawFn,
    type_: StateType | None,
    kind: Kind,
    pauses: int | None,
    run_count: int | None,
    retries: int | None | str,
    now: datetime,
) -> FlowRun | TaskRun:
    current = None if type_ is None else draw(states(type_, kind=kind, now=now))
    if run_count is None:
        low = 1 if type_ in _HAS_RUN else 0
        run_count = draw(st.integers(low, low + 2)) if type_ is not None else 0
    retry_count: int | None = (
        draw(st.none() | st.integers(0, 3)) if retries == "any" else retries  # type: ignore[assignment]
    )
    name = f"{kind}-{'new' if type_ is None else type_.value.lower()}"
    if kind == "task":
        return TaskRun(
            id=draw(st.uuids()), name=name, state=current, run_count=run_count,
            state_type=None if current is None else current.type,
            state_name=None if current is None else current.name,
            empirical_policy=TaskRunPolicy(retries=retry_count, retry_delay=draw(st.sampled_from([0, 10]))),
        )
    return _flow_run(draw, name, current, run_count, retry_count, pauses, type_)


def _flow_run(
    draw: st.DrawFn,
    name: str,
    current: State | None,
    run_count: int,
    retry_count: int | None,
    pauses: int | None,
    type_: StateType | None,
) -> FlowRun:
    """The flow run of :func:`_run_in`: its pause keys drawn, the last one its pause's."""
    if pauses is None:
        pauses = draw(st.integers(1 if type_ is S.PAUSED else 0, 3))
    pool = [*PAUSE_KEYS, *(f"pause-{n}" for n in range(len(PAUSE_KEYS), pauses))]
    keys = draw(st.permutations(pool))[:pauses]
    deployment = draw(st.none() | st.just(UUID(int=1)))
    if current is not None and current.type is S.PAUSED:
        details = {"pause_key": keys[-1]}
        if current.state_details.pause_reschedule:
            deployment = UUID(int=1)  # only a run with a deployment can be suspended
        current = current.model_copy(
            update={"state_details": current.state_details.model_copy(update=details)}
        )
    return FlowRun(
        id=draw(st.uuids()), name=name, state=current, run_count=run_count,
        state_type=None if current is None else current.type,
        state_name=None if current is None else current.name,
        empirical_policy=FlowRunPolicy(
            retries=retry_count, retry_delay=draw(st.sampled_from([0, 10])), pause_keys=set(keys)
        ),
        deployment_id=deployment,
    )

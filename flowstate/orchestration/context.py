"""The transition context: everything a rule may read, and the few things it may change.

A context is built per proposed transition by the orchestrator, from data it read inside the
transaction. Deciding is pure: nothing here touches the database, the real clock or randomness
except through what the orchestrator passes in (``new_id``, ``uniform``, and ``slots`` for the
rules that hold concurrency slots).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal, TypeVar
from uuid import UUID

from flowstate._models import construct, copy_with, own_copy
from flowstate._text import check_text
from flowstate._time import FromNow, resolve_from_now
from flowstate.concurrency.run_slots import NO_SLOTS, RunSlots
from flowstate.errors import InvalidState
from flowstate.orchestration.decisions import Effect
from flowstate.results import SetStateStatus
from flowstate.runs import SAVED_FIELDS, FlowRun, TaskRun
from flowstate.states import State, StateDetails, StateType

__all__ = ["RunKind", "TransitionContext", "pause_deadline"]

RunKind = Literal["flow", "task"]
RunT = TypeVar("RunT", bound=FlowRun | TaskRun)


def _no_randomness(low: float, high: float) -> float:
    return (low + high) / 2


class TransitionContext:
    """One proposed transition as the rules see it.

    The run a context is built for is never changed: :meth:`update_run` records a rule's
    changes, ``run`` is that run with the changes made so far, and the changes of a rule whose
    transition later fizzles are dropped (the fields it set take back their earlier values).
    ``proposed`` is None once a rule has decided that nothing is written. ``validated`` is set
    before after-steps run: the state that was written, or the unchanged current state.
    """

    __slots__ = (
        "kind", "_base", "_run", "_log", "updates", "initial", "proposed", "now", "new_id",
        "_flow_run", "cached_state", "uniform", "slots", "parameters", "status", "reason",
        "delay_seconds", "validated", "effects", "_read_parameters",
    )

    def __init__(
        self,
        kind: RunKind,
        run: FlowRun | TaskRun,
        initial: State | None,
        proposed: State | None,
        now: datetime,
        new_id: Callable[[], UUID],
        flow_run: FlowRun | None = None,
        cached_state: State | None = None,
        uniform: Callable[[float, float], float] | None = None,
        slots: RunSlots | None = None,
        read_parameters: Callable[[UUID], dict[str, Any]] | None = None,
    ) -> None:
        self.kind = kind
        self._base = run
        self._run: FlowRun | TaskRun | None = None  # (the copy ``run`` gives, once made)
        self._log: list[dict[str, Any]] = []  # the changes as recorded, in order
        self.updates: dict[str, Any] = {}
        """The run's changed fields and their values now, in the order first changed (read
        only: :meth:`update_run` changes the run)."""
        self.initial = initial
        self.proposed = proposed
        self.now = now
        self.new_id = new_id
        self._flow_run = flow_run
        self.cached_state = cached_state
        """For task RUNNING proposals with a cache key: the newest unexpired cached state."""
        self.uniform = _no_randomness if uniform is None else uniform
        """A uniform draw in [low, high]: the only source of chance (retry jitter)."""
        self.slots = NO_SLOTS if slots is None else slots
        """The concurrency limits, inside the transition's transaction: the only way a rule
        reaches them (slots taken, leases renewed or released)."""
        self.parameters: dict[str, Any] = {}
        self.status = SetStateStatus.ACCEPT
        self.reason: str | None = None
        self.delay_seconds: int | None = None
        self.validated: State | None = None
        self.effects: list[Effect] = []
        self._read_parameters = read_parameters
        """Reads a flow run's parameters, for a rule's copy of a run given without them (a
        transition reads none); None: the runs given hold theirs."""

    @property
    def run(self) -> FlowRun | TaskRun:
        """The run with the changes recorded so far: a copy of your own (changing it changes
        nothing; :meth:`update_run` does), the same one until the next change."""
        run = self._run
        if run is None:
            run = self._run = self._own_copy(self._base, self.updates)
        return run

    @property
    def flow_run(self) -> FlowRun | None:
        """For task runs: the enclosing flow run as read in the same transaction (None:
        standalone), a copy of your own."""
        flow_run = self._flow_run
        return None if flow_run is None else self._own_copy(flow_run, {})

    def _own_copy(self, run: RunT, changes: dict[str, Any]) -> RunT:
        """A rule's own copy of ``run`` with ``changes``, a flow run's parameters read if the
        run was given without them."""
        read = self._read_parameters
        if read is not None and isinstance(run, FlowRun) and "parameters" not in changes:
            changes = {**changes, "parameters": read(run.id)}
        return own_copy(run, changes)

    def _value(self, name: str) -> Any:
        """The run's field ``name`` with the changes so far (what ``run`` holds, no copy made:
        flowstate's own rules read the run this way)."""
        updates = self.updates
        return updates[name] if name in updates else self._base.__dict__[name]

    def _values(self) -> dict[str, Any]:
        """The run's fields with the changes so far (the run's own ``__dict__`` while there are
        none: read only)."""
        values = self._base.__dict__
        return {**values, **self.updates} if self.updates else values

    def _record_bookkeeping(self, fields: dict[str, Any]) -> None:
        """Record the bookkeeping's changes of the run: after every rule's, outside the record a
        fizzled rule's changes are dropped from."""
        self.updates.update(fields)
        self._run = None

    @property
    def run_changed(self) -> bool:
        """Whether the run's fields were changed (even to values they had: the row is saved)."""
        return bool(self.updates)

    @property
    def initial_type(self) -> StateType | None:
        """The current state's type, or None when the run has no state."""
        return None if self.initial is None else self.initial.type

    @property
    def proposed_type(self) -> StateType | None:
        """The proposal's type, or None once a rule has decided nothing is written."""
        return None if self.proposed is None else self.proposed.type

    def update_run(self, **fields: Any) -> None:
        """Change fields of the run that a transition saves (:data:`flowstate.runs.SAVED_FIELDS`:
        its run count, times, policy, ...); dropped if the rule's transition fizzles.

        Each value is checked and converted as the run's model converts it (a naive datetime
        is taken as UTC, a dict becomes the policy it describes); a field that is not saved, or
        a value the model or the database refuses, is a ValueError (the rule's error)."""
        self._record(_checked_updates(self._base, self.kind, fields))

    def _update_unchecked(self, **fields: Any) -> None:
        """:meth:`update_run` without its checks: for flowstate's own rules, whose fields are
        saved ones and whose values are the model's own types already."""
        self._record(fields)

    def _record(self, fields: dict[str, Any]) -> None:
        """Record engine-made changes of the run (field names known good)."""
        self._log.append(fields)
        self.updates.update(fields)
        self._run = None  # (a new copy when read again)

    def _drop_updates(self, start: int, end: int) -> None:
        """Drop the changes recorded between ``start`` and ``end`` (a fizzled rule's): each
        field they set takes back the value it had before them."""
        log = self._log
        earlier: dict[str, Any] = {}
        for fields in log[:start]:
            earlier.update(fields)
        base = self._base.__dict__
        self._record(
            {name: earlier.get(name, base[name]) for fields in log[start:end] for name in fields}
        )

    def fresh_state(
        self,
        type: StateType,
        *,
        name: str | None = None,
        message: str | None = None,
        data: Any = None,
        **details: Any,
    ) -> State:
        """A new state stamped with this transition's id source and clock."""
        return construct(
            State,
            {
                "id": self.new_id(),
                "type": type,
                "name": name if name is not None else type.default_name,
                "timestamp": self.now,
                "message": message,
                "data": data,
                "state_details": StateDetails(**details),
            },
        )

    def fresh_copy(self, state: State, **changes: Any) -> State:
        """A copy of ``state`` with a new id, timestamp now, and ``changes`` applied."""
        return copy_with(state, {"id": self.new_id(), "timestamp": self.now, **changes})

    def with_details(self, state: State, **details: Any) -> State:
        """``state`` with some of its details replaced (same id and timestamp)."""
        return copy_with(state, {"state_details": copy_with(state.state_details, details)})


def _checked_updates(
    run: FlowRun | TaskRun, kind: RunKind, fields: dict[str, Any]
) -> dict[str, Any]:
    """``fields`` as the run's model validates them, each one a transition saves and the
    database can hold."""
    saved = SAVED_FIELDS[kind]
    unsaved = [name for name in fields if name not in saved]
    if unsaved:
        raise ValueError(
            f"update_run({', '.join(unsaved)}=...): a transition saves only these fields of a "
            f"{kind} run: {', '.join(sorted(saved))}"
        )
    copy = copy_with(run, {})
    for name, value in fields.items():
        type(run).__pydantic_validator__.validate_assignment(copy, name, value)
    checked = {name: getattr(copy, name) for name in fields}
    for name, value in checked.items():
        _check_storable(name, value)
    return checked


def _check_storable(name: str, value: Any) -> None:
    """A whole number must fit a database's 64-bit integer, text must be Unicode text."""
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        raise ValueError(f"update_run({name}={value!r:.40}): out of the range -2**63 to 2**63-1")
    if isinstance(value, str):
        check_text(value, f"update_run({name}=...)")


def pause_deadline(timeout: FromNow, now: datetime) -> datetime:
    """A pause timeout given in seconds (``Paused(timeout_seconds=60)``), counted from ``now``."""
    try:
        return resolve_from_now(timeout, now)
    except OverflowError:
        raise InvalidState(
            f"timeout_seconds={timeout.seconds!r} from {now.isoformat()} is after the year 9999"
        ) from None

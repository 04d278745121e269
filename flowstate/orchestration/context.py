"""The transition context: everything a rule may read, and the few things it may change.

A context is built per proposed transition by the orchestrator, from data it read inside the
transaction. Deciding is pure: nothing here touches the database, the real clock or randomness
except through what the orchestrator passes in (``new_id``, ``uniform``, and ``slots`` for the
rules that hold concurrency slots).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from flowstate._models import construct, copy_with, set_fields
from flowstate._time import FromNow, resolve_from_now
from flowstate.concurrency.run_slots import NO_SLOTS, RunSlots
from flowstate.errors import InvalidState
from flowstate.orchestration.decisions import Effect
from flowstate.results import SetStateStatus
from flowstate.runs import FlowRun, TaskRun
from flowstate.states import State, StateDetails, StateType

__all__ = ["RunKind", "TransitionContext", "stamp_proposal"]

RunKind = Literal["flow", "task"]


def _no_randomness(low: float, high: float) -> float:
    return (low + high) / 2


@dataclass(eq=False, slots=True)
class TransitionContext:
    """One proposed transition as the rules see it.

    ``run`` is a working copy of the run: rules change it only through :meth:`update_run`, so
    that the changes of a rule whose transition later fizzles can be undone. ``proposed`` is None
    once a rule has decided that nothing is written. ``validated`` is set before after-steps run:
    the state that was written, or the unchanged current state.
    """

    kind: RunKind
    run: FlowRun | TaskRun
    initial: State | None
    proposed: State | None
    now: datetime
    new_id: Callable[[], UUID]
    flow_run: FlowRun | None = None
    """For task runs: the enclosing flow run as read in the same transaction (None: standalone)."""
    cached_state: State | None = None
    """For task RUNNING proposals with a cache key: the newest unexpired cached state, if any."""
    uniform: Callable[[float, float], float] = _no_randomness
    """A uniform draw in [low, high]: the only source of chance (retry jitter)."""
    slots: RunSlots = NO_SLOTS
    """The concurrency limits, inside the transition's transaction: the only way a rule
    reaches them (slots taken, leases renewed or released)."""
    parameters: dict[str, Any] = field(default_factory=dict)
    status: SetStateStatus = SetStateStatus.ACCEPT
    reason: str | None = None
    delay_seconds: int | None = None
    validated: State | None = None
    effects: list[Effect] = field(default_factory=list)
    _changes: list[tuple[str, Any]] | None = None
    run_changed: bool = False

    @property
    def initial_type(self) -> StateType | None:
        """The current state's type, or None when the run has no state."""
        return None if self.initial is None else self.initial.type

    @property
    def proposed_type(self) -> StateType | None:
        """The proposal's type, or None once a rule has decided nothing is written."""
        return None if self.proposed is None else self.proposed.type

    def update_run(self, **fields: Any) -> None:
        """Change fields of the working copy of the run (undone if the rule's transition fizzles)."""
        run = self.run
        values = run.__dict__  # (read: one lookup instead of pydantic's hook per field)
        changes = self._changes
        for name, value in fields.items():
            if name not in values:
                setattr(run, name, value)  # not a field: let pydantic raise its error
            if changes is not None:
                changes.append((name, values[name]))
        set_fields(run, fields)  # engine-made values: as pydantic's __setattr__ would, faster
        self.run_changed = True

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


def stamp_proposal(
    proposed: State,
    now: datetime,
    new_id: Callable[[], UUID],
    details: dict[str, Any] | None = None,
) -> State:
    """A proposal as it is written: a new id, timestamp ``now``, for a SCHEDULED state without
    one the scheduled time ``now`` (Prefect's default, on the engine's clock), and a pause
    timeout given in seconds (``Paused(timeout_seconds=60)``) counted from ``now``.

    ``details``: detail values to set as well (in the same copy), or None."""
    update: dict[str, Any] = {"id": new_id(), "timestamp": now}
    if proposed.type is StateType.SCHEDULED and proposed.state_details.scheduled_time is None:
        details = {**details, "scheduled_time": now} if details else {"scheduled_time": now}
    timeout = proposed.state_details.pause_timeout
    if type(timeout) is FromNow:  # a relative pause timeout counts from the engine's "now"
        try:
            deadline = resolve_from_now(timeout, now)
        except OverflowError:
            raise InvalidState(
                f"timeout_seconds={timeout.seconds!r} from {now.isoformat()} is after the year 9999"
            ) from None
        details = {**details, "pause_timeout": deadline} if details else {"pause_timeout": deadline}
    if details:
        update["state_details"] = copy_with(proposed.state_details, details)
    return copy_with(proposed, update)

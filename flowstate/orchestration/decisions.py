"""What a rule's before-step answers, and the side effects an outcome carries.

A rule returns one of :class:`Proceed`, :class:`Reject`, :class:`Wait` or :class:`Abort` (or
None, meaning "no opinion"). These are values, never exceptions: the policy applies them in order.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from uuid import UUID

from flowstate._models import copy_with
from flowstate._text import check_text
from flowstate.states import State

__all__ = [
    "Abort",
    "Decision",
    "DeleteRunInputs",
    "Effect",
    "EffectTarget",
    "InsertCacheEntry",
    "MirrorToParentTask",
    "Proceed",
    "Reject",
    "Wait",
]


@dataclass(frozen=True, slots=True)
class Proceed:
    """Let the transition go on, optionally with a changed proposal (a rename, filled details)."""

    state: State | None = None

    def __post_init__(self) -> None:
        _check_state(self.state)


@dataclass(frozen=True, slots=True)
class Reject:
    """Refuse the proposal: keep the current state (``state=None``) or write ``state`` instead."""

    reason: str
    state: State | None = None

    def __post_init__(self) -> None:
        _check_reason(self.reason)
        _check_state(self.state)


@dataclass(frozen=True, slots=True)
class Wait:
    """Ask the caller to propose again in ``delay_seconds`` (whole seconds); nothing is
    written."""

    delay_seconds: int
    reason: str

    def __post_init__(self) -> None:
        delay: object = self.delay_seconds
        if isinstance(delay, float) and delay.is_integer():
            object.__setattr__(self, "delay_seconds", int(delay))  # (a frozen dataclass's own field)
        elif isinstance(delay, bool) or not isinstance(delay, int):
            raise TypeError(f"Wait: delay_seconds={delay!r:.40} is not a whole number of seconds")
        if not -(2**63) <= self.delay_seconds < 2**63:
            raise ValueError(f"Wait: delay_seconds={delay!r:.40} is out of range")
        _check_reason(self.reason)


@dataclass(frozen=True, slots=True)
class Abort:
    """The transition cannot happen; nothing is written."""

    reason: str

    def __post_init__(self) -> None:
        _check_reason(self.reason)


def _check_state(state: object) -> None:
    if state is not None and not isinstance(state, State):
        raise TypeError(f"a decision's state must be a State or None, not {type(state).__name__}")


def _check_reason(reason: object) -> None:
    if reason is not None and not isinstance(reason, str):
        raise TypeError(f"a decision's reason must be a str or None, not {type(reason).__name__}")
    check_text(reason, "a decision's reason")


Decision = Proceed | Reject | Wait | Abort


class EffectTarget(Protocol):
    """Where an outcome's effects land: the engine that saves the outcome (one method per kind
    of effect, so applying them needs no dispatch on their type)."""

    def insert_cache_entry(self, cache_key: str, expiration: datetime | None, state_id: UUID) -> None:
        """Remember ``state_id`` as the cached result for ``cache_key``."""

    def delete_run_input(self, flow_run_id: UUID, key: str) -> bool:
        """Delete one key of a flow run's run input (False: there was none)."""

    def mirror_to_parent_task(self, task_run_id: UUID, state: State) -> None:
        """Force the task run (if it still exists) into ``state``."""


@dataclass(frozen=True, slots=True)
class InsertCacheEntry:
    """Remember ``state_id`` as the cached result for ``cache_key`` until ``expiration``."""

    cache_key: str
    expiration: datetime | None
    state_id: UUID

    def apply_to(self, target: EffectTarget) -> None:
        """Make this effect happen in ``target``."""
        target.insert_cache_entry(self.cache_key, self.expiration, self.state_id)


@dataclass(frozen=True, slots=True)
class DeleteRunInputs:
    """Delete the flow run's stored run input under these keys (missing keys are fine)."""

    flow_run_id: UUID
    keys: tuple[str, ...]

    def apply_to(self, target: EffectTarget) -> None:
        """Make this effect happen in ``target``."""
        for key in self.keys:
            target.delete_run_input(self.flow_run_id, key)


@dataclass(frozen=True, slots=True)
class MirrorToParentTask:
    """Force the subflow's parent task run into a copy of the subflow's new state."""

    task_run_id: UUID
    child_flow_run_id: UUID
    state: State

    def apply_to(self, target: EffectTarget) -> None:
        """Make this effect happen in ``target``: the parent task gets the subflow's state,
        its details naming the subflow."""
        details = copy_with(
            self.state.state_details, {"child_flow_run_id": self.child_flow_run_id}
        )
        target.mirror_to_parent_task(
            self.task_run_id, copy_with(self.state, {"state_details": details})
        )


Effect = InsertCacheEntry | DeleteRunInputs | MirrorToParentTask

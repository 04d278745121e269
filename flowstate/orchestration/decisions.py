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


@dataclass(frozen=True, slots=True)
class Reject:
    """Refuse the proposal: keep the current state (``state=None``) or write ``state`` instead."""

    reason: str
    state: State | None = None


@dataclass(frozen=True, slots=True)
class Wait:
    """Ask the caller to propose again in ``delay_seconds``; nothing is written."""

    delay_seconds: int
    reason: str


@dataclass(frozen=True, slots=True)
class Abort:
    """The transition cannot happen; nothing is written."""

    reason: str


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

"""What a rule's before-step answers, and the side effects an outcome carries.

A rule returns one of :class:`Proceed`, :class:`Reject`, :class:`Wait` or :class:`Abort` (or
None, meaning "no opinion"). These are values, never exceptions: the policy applies them in order.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from flowstate.states import State

__all__ = [
    "Abort",
    "Decision",
    "DeleteRunInputs",
    "Effect",
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


@dataclass(frozen=True, slots=True)
class InsertCacheEntry:
    """Remember ``state_id`` as the cached result for ``cache_key`` until ``expiration``."""

    cache_key: str
    expiration: datetime | None
    state_id: UUID


@dataclass(frozen=True, slots=True)
class DeleteRunInputs:
    """Delete the flow run's stored run input under these keys (missing keys are fine)."""

    flow_run_id: UUID
    keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class MirrorToParentTask:
    """Force the subflow's parent task run into a copy of the subflow's new state."""

    task_run_id: UUID
    child_flow_run_id: UUID
    state: State


Effect = InsertCacheEntry | DeleteRunInputs | MirrorToParentTask

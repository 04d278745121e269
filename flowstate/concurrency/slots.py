"""The arithmetic of slots, decay and occupancy: pure functions over limit rows, no I/O.

A limit row holds ``active_slots`` as last written and ``updated``, the moment decay counts
from. Slots decay by whole slots: ``floor(slot_decay_per_second * seconds since updated)``. When
a write keeps some slots, ``updated`` moves forward only by the time the decayed slots took, so
the fraction of a slot already decayed is not lost (a rate limit asked every 0.5 s with a decay
of 1/s still frees one slot a second).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

from flowstate._ids import uuid7
from flowstate.concurrency.models import (
    ConcurrencyLease,
    ConcurrencyLeaseHolder,
    GlobalConcurrencyLimit,
)
from flowstate.errors import InvalidState

__all__ = [
    "DEFAULT_OCCUPANCY_SECONDS",
    "DeploymentRow",
    "LeaseRow",
    "LimitRow",
    "MIN_RETRY_AFTER",
    "after_decay",
    "check_request",
    "hold",
    "let_go",
    "retry_after",
]

DEFAULT_OCCUPANCY_SECONDS = 2.0
"""A new limit's average slot occupancy (Prefect's default)."""

MIN_RETRY_AFTER = 0.01
"""The shortest ``retry_after`` given: a fast rate limit is still not asked in a busy loop."""

SLOTS_OVER_LIMIT = "Slots requested is greater than the limit"
"""Prefect's answer (HTTP 422) to more slots than an active limit has."""


@dataclass
class LimitRow:
    """One limit as stored (``active_slots`` before decay; ``updated``: decay's anchor)."""

    id: str
    name: str
    limit: int
    active: bool
    active_slots: int
    slot_decay_per_second: float
    avg_slot_occupancy_seconds: float
    created: datetime
    updated: datetime

    @classmethod
    def new(
        cls,
        name: str,
        limit: int,
        now: datetime,
        *,
        active: bool = True,
        active_slots: int = 0,
        slot_decay_per_second: float = 0.0,
    ) -> LimitRow:
        """A new limit (a new id) created at ``now``, with the default average occupancy."""
        return cls(
            id=str(uuid7()),
            name=name,
            limit=limit,
            active=active,
            active_slots=active_slots,
            slot_decay_per_second=slot_decay_per_second,
            avg_slot_occupancy_seconds=DEFAULT_OCCUPANCY_SECONDS,
            created=now,
            updated=now,
        )

    def model(self, now: datetime) -> GlobalConcurrencyLimit:
        """The limit as the API shows it at ``now`` (slots after decay)."""
        slots, _anchor = after_decay(self, now)
        return GlobalConcurrencyLimit(
            id=UUID(self.id),
            name=self.name,
            limit=self.limit,
            active=self.active,
            active_slots=slots,
            slot_decay_per_second=self.slot_decay_per_second,
            avg_slot_occupancy_seconds=self.avg_slot_occupancy_seconds,
            created=self.created,
            updated=self.updated,
        )


@dataclass
class LeaseRow:
    """One lease as stored, with the slots it took on each limit (0 on a limit that was
    inactive when it was taken) and those limits' names (a deleted limit is not there)."""

    id: str
    slots: int
    holder_type: str | None
    holder_id: str | None
    created: datetime
    expiration: datetime
    taken: dict[str, int] = field(default_factory=dict)
    """limit id -> slots taken on it."""
    names: list[str] = field(default_factory=list)

    @classmethod
    def new(
        cls,
        holder: tuple[str, str] | None,
        slots: int,
        now: datetime,
        seconds: float,
        taken: list[tuple[LimitRow, int]],
    ) -> LeaseRow:
        """A lease of ``holder`` (type, id), taken at ``now`` for ``seconds``, of ``slots``
        slots: ``taken`` says how many it took on each limit."""
        holder_type, holder_id = holder or (None, None)
        return cls(
            id=str(uuid7()),
            slots=slots,
            holder_type=holder_type,
            holder_id=holder_id,
            created=now,
            expiration=now + timedelta(seconds=seconds),
            taken={row.id: count for row, count in taken},
            names=sorted(row.name for row, _ in taken),
        )

    def model(self) -> ConcurrencyLease:
        holder = None
        if self.holder_type is not None and self.holder_id is not None:
            holder = ConcurrencyLeaseHolder(type=self.holder_type, id=UUID(self.holder_id))  # type: ignore[arg-type]
        return ConcurrencyLease(
            lease_id=UUID(self.id),
            limits=list(self.names),
            slots=self.slots,
            holder=holder,
            created=self.created,
            expiration=self.expiration,
        )


@dataclass
class DeploymentRow:
    """One deployment as stored: the limit its flow runs share (``concurrency_limit_id``, None:
    none) and what a run does when it is full."""

    id: str
    name: str
    concurrency_limit_id: str | None
    collision_strategy: str | None
    grace_period_seconds: int | None
    created: datetime
    updated: datetime


def after_decay(row: LimitRow, now: datetime) -> tuple[int, datetime]:
    """(slots held at ``now``, the anchor decay counts from afterwards)."""
    rate = row.slot_decay_per_second
    held = row.active_slots
    if rate <= 0 or held <= 0:
        return max(held, 0), now
    elapsed = (now - row.updated).total_seconds()
    if elapsed <= 0:
        return held, row.updated
    freed = rate * elapsed
    if not freed < held:  # (also when a huge rate times the seconds overflows to inf)
        return 0, now
    decayed = math.floor(freed)
    return held - decayed, row.updated + timedelta(seconds=decayed / rate)


def check_request(active: list[LimitRow], slots: int, mode: str) -> None:
    """Refuse a request no wait could ever grant, or one in the wrong mode (InvalidState)."""
    if any(row.limit < slots for row in active):
        raise InvalidState(SLOTS_OVER_LIMIT)
    if mode == "rate_limit":
        plain = [row.name for row in active if row.slot_decay_per_second <= 0]
        if plain:
            raise InvalidState(
                "mode='rate_limit' takes slots that free themselves: every active limit needs "
                f"slot_decay_per_second > 0, and these have none: {', '.join(plain)}"
            )
    else:
        decaying = [row.name for row in active if row.slot_decay_per_second > 0]
        if decaying:
            raise InvalidState(
                "mode='concurrency' takes slots that are given back, but these limits free "
                "their slots by themselves (slot_decay_per_second > 0): "
                f"{', '.join(decaying)}; use mode='rate_limit' (orc.rate_limit)"
            )


def retry_after(blocking: list[tuple[LimitRow, int]], slots: int) -> float:
    """Seconds until ``slots`` more may fit, estimated from the fullest of the ``blocking``
    limits (each with the slots it holds now): a rate limit frees ``slot_decay_per_second``
    slots a second; a concurrency limit about ``limit`` slots per average occupancy."""
    longest = MIN_RETRY_AFTER
    for row, held in blocking:
        missing = held + slots - row.limit
        if row.slot_decay_per_second > 0:
            wait = missing / row.slot_decay_per_second
        else:
            wait = row.avg_slot_occupancy_seconds * missing / max(row.limit, 1)
        longest = max(longest, wait)
    return longest


def let_go(row: LimitRow, slots: int, now: datetime, occupied: float | None) -> None:
    """Give back ``slots`` (>= 1) slots of a limit at ``now``, never going below 0.
    ``occupied``: how long they were held in all (None: not counted), which moves the limit's
    average occupancy toward the seconds per slot by a step of ``1 / (2 * limit)``."""
    held, anchor = after_decay(row, now)
    hold(row, max(held - slots, 0), anchor, now)
    if occupied is not None and row.limit > 0:
        average = row.avg_slot_occupancy_seconds
        per_slot = max(occupied / slots, 0.0)
        row.avg_slot_occupancy_seconds = average + (per_slot - average) / (row.limit * 2)


def hold(row: LimitRow, held: int, anchor: datetime, now: datetime) -> None:
    """Set the slots a limit holds; decay counts from ``anchor`` (from now once none is held)."""
    row.active_slots = held
    row.updated = anchor if held > 0 else now

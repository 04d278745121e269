"""Taking and giving back slots: :func:`take_slots` and :func:`give_back`, inside the caller's
transaction, for every kind of limit; and :class:`RunSlots`, what orchestration rules may do
with concurrency limits while deciding.

A transition's rules reach the limits only through the :class:`RunSlots` their context carries
(``ctx.slots``), which works inside the transition's own transaction: a slot taken by a
transition that is then rolled back was never taken. A run holds its slots through a lease whose
holder is the run, and gives back only those: a lease that is gone (released, or expired and
released by ``expire_leases``) or that another run holds frees nothing.

:data:`NO_SLOTS` is the context's default: no deployment has a limit and nothing can be taken
(``decide_transition``, and runs that belong to no deployment).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from uuid import UUID

from flowstate.concurrency.slots import (
    DeploymentRow,
    LeaseRow,
    LimitRow,
    after_decay,
    hold,
    let_go,
)
from flowstate.concurrency.tags import tag_limit_name

if TYPE_CHECKING:
    from flowstate.store.limits import LimitStore

__all__ = [
    "DEFAULT_GRACE_SECONDS", "NO_SLOTS", "DeploymentLimit", "RunSlots", "give_back", "take_slots",
]

Holder = tuple[str, str]
"""(``"flow_run"`` or ``"task_run"``, the run's id), as a lease stores its holder."""


DEFAULT_GRACE_SECONDS = 300
"""How long a run's slot lasts unrenewed when its deployment sets no grace period."""


@dataclass(frozen=True, slots=True)
class DeploymentLimit:
    """A deployment's limit as its runs' rules see it, with what a run does when it is full."""

    limit: LimitRow
    collision_strategy: str | None
    grace_period_seconds: int | None

    @property
    def grace(self) -> int:
        """How long a run's slot lasts unrenewed: the grace period, or the default."""
        return self.grace_period_seconds or DEFAULT_GRACE_SECONDS


class RunSlots:
    """Concurrency limits as the rules of one transition see them (inside its transaction).

    ``limits`` are the store's rows; ``clock`` gives the time leases are
    stamped with (asked once, when first needed); ``protect``, called before the first write,
    lets the store make the transition's writes undoable on their own (a rule after them may
    still raise: see ``StoreBackend.protect_call``).
    """

    def __init__(
        self,
        limits: LimitStore | None,
        clock: Callable[[], datetime],
        protect: Callable[[], None] | None = None,
    ) -> None:
        self._limits = limits
        self._clock = clock
        self._protect = protect
        self._at: datetime | None = None

    def _writing(self) -> LimitStore:
        """The limits, about to be written (the store protects the call first, once)."""
        assert self._limits is not None
        if self._protect is not None:
            self._protect()
            self._protect = None
        return self._limits

    @property
    def now(self) -> datetime:
        """The time of this transition's lease changes."""
        if self._at is None:
            self._at = self._clock()
        return self._at

    def deployment_limit(self, deployment_id: UUID | None) -> DeploymentLimit | None:
        """The limit the runs of a deployment share, locked for this transaction; None when the
        run has no deployment, ``create_deployment`` did not make it, or it has no limit."""
        if deployment_id is None or self._limits is None:
            return None
        row = self._limits.one(DeploymentRow, "id", str(deployment_id))
        if row is None or row.concurrency_limit_id is None:
            return None
        found = self._limits.lock_limits_by_id([row.concurrency_limit_id])
        if not found:
            return None
        return DeploymentLimit(found[0], row.collision_strategy, row.grace_period_seconds)

    def tag_limits(self, tags: list[str]) -> list[LimitRow]:
        """The limits of these tags (``tag:<tag>``), locked for this transaction, in the order
        of ``tags``; tags without a limit are left out."""
        if not tags or self._limits is None:
            return []
        return self._limits.lock_limits_by_name([tag_limit_name(tag) for tag in tags])

    def release_held(self, holder: Holder, limits: list[LimitRow]) -> None:
        """Give back every lease of ``holder`` that holds one of ``limits`` (each lease all it
        took, on every limit)."""
        if self._limits is None or not limits:
            return
        wanted = {row.id for row in limits}
        mine = [
            lease
            for lease in self._limits.lock_leases_of_holder(*holder)
            if wanted & set(lease.taken)
        ]
        if mine:
            give_back(self._writing(), mine, self.now, count_occupancy=False)

    def take(
        self, limits: list[LimitRow], holder: Holder, duration: float
    ) -> tuple[UUID | None, list[tuple[LimitRow, int]]]:
        """One slot of each limit (locked rows, all active), held by a new lease of ``holder``
        for ``duration`` seconds: (its id, []); or, when some are full, (None, those limits
        with the slots they hold), nothing written."""
        limit_store = self._writing()
        now = self.now
        full = take_slots(limit_store, limits, 1, now)
        if full:
            return None, full
        lease = LeaseRow.new(holder, 1, now, duration, [(row, 1) for row in limits])
        limit_store.insert(lease)
        return UUID(lease.id), []

    def held(self, lease_id: UUID | None, holder: Holder) -> LeaseRow | None:
        """The lease (locked) if it exists and ``holder`` holds it, else None."""
        if lease_id is None or self._limits is None:
            return None
        lease = self._limits.lock_lease(str(lease_id))
        if lease is None or (lease.holder_type, lease.holder_id) != holder:
            return None
        return lease

    def renew(self, lease_id: UUID | None, holder: Holder, duration: float) -> bool:
        """Make ``holder``'s lease last ``duration`` more seconds; False if it holds none such."""
        lease = self.held(lease_id, holder)
        if lease is None:
            return False
        self._writing().renew_lease(lease, self.now + timedelta(seconds=duration))
        return True

    def release(
        self, lease_id: UUID | None, holder: Holder, *, count_occupancy: bool = True
    ) -> None:
        """Give back the slots of ``holder``'s lease and end it (nothing changes if it holds no
        such lease). ``count_occupancy`` as in :func:`give_back`."""
        lease = self.held(lease_id, holder)
        if lease is not None:
            give_back(self._writing(), [lease], self.now, count_occupancy=count_occupancy)


NO_SLOTS = RunSlots(None, lambda: datetime.min)
"""No limits at all: no deployment has one, nothing is taken or held."""


def take_slots(
    limits: LimitStore, rows: list[LimitRow], count: int, now: datetime
) -> list[tuple[LimitRow, int]]:
    """Inside a transaction: take ``count`` more slots on each of ``rows`` (locked), all or
    none. Returns the rows too full to take them, each with the slots it holds (then nothing is
    written), or [] once they are taken."""
    held = {row.id: after_decay(row, now) for row in rows}
    blocking = [(row, held[row.id][0]) for row in rows if held[row.id][0] + count > row.limit]
    if blocking:
        return blocking
    for row in rows:
        slots, anchor = held[row.id]
        hold(row, slots + count, anchor, now)
        limits.update(row)
    return []


def give_back(
    limits: LimitStore, leases: list[LeaseRow], now: datetime, *, count_occupancy: bool = True
) -> None:
    """Inside a transaction: return the slots each lease took (on each limit, active or not
    now, but a rate limit: slots that decay free themselves, and given back as well they
    would free a slot another holder took since) and delete the leases. ``count_occupancy``:
    how long the leases were held moves the limits' average occupancy (a task run's tag slots
    do not, as in Prefect)."""
    rows = {row.id: row for row in limits.lock_limits_by_id(
        limit_id for lease in leases for limit_id in lease.taken
    )}
    changed: dict[str, LimitRow] = {}
    for lease in leases:
        until = min(now, lease.expiration)  # an expired lease held nothing after it expired
        occupied = max((until - lease.created).total_seconds(), 0.0)
        for row, taken in _held_slots(lease, rows):
            let_go(row, taken, now, occupied * taken if count_occupancy else None)
            changed[row.id] = row
        limits.delete(lease)
    for row in changed.values():
        limits.update(row)


def _held_slots(lease: LeaseRow, rows: dict[str, LimitRow]) -> Iterator[tuple[LimitRow, int]]:
    """The limits ``lease`` holds slots of that are given back (not a rate limit's: those
    decay), each with the slots it holds."""
    for limit_id, taken in lease.taken.items():
        row = rows.get(limit_id)
        if row is not None and taken > 0 and row.slot_decay_per_second <= 0:
            yield row, taken

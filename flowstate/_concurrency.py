"""The Orchestrator's global concurrency limits: Prefect's V2 limits, slots, rate limits and
leases, and the blocking helpers ``concurrency()`` and ``rate_limit()``.

A mixin of :class:`flowstate.Orchestrator`. Each call is one transaction of the orchestrator's
store; the limit rows it changes are locked for it (SQLite: the write lock; PostgreSQL: the
rows, in id order), so two processes never both take the last slot. Times are those of the
heartbeats: the injected ``clock=`` if given, else the PostgreSQL server's clock, else this
host's. A refused request writes nothing and raises
:class:`~flowstate.ConcurrencyLimitReached` once its transaction has ended.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any
from uuid import UUID

from flowstate._engine_parts import EngineParts
from flowstate._interaction import Nap, run_steps
from flowstate._seconds import optional_span
from flowstate.concurrency import checks
from flowstate.concurrency.holding import Acquired, HeldSlots, RateLimited
from flowstate.concurrency.models import ConcurrencyLease, GlobalConcurrencyLimit
from flowstate.concurrency.run_slots import give_back, take_slots
from flowstate.concurrency.slots import (
    LeaseRow,
    LimitRow,
    after_decay,
    check_request,
    hold,
    let_go,
    retry_after,
)
from flowstate.errors import (
    ConcurrencyLimitReached,
    InvalidState,
    ObjectAlreadyExists,
    ObjectNotFound,
    WaitTimeout,
)
from flowstate.store.limits import LimitStore

__all__ = ["ConcurrencyMethods"]



class _Unchanged:
    """The default of an update's argument that was not given: the field keeps its value
    (shown as ``<unchanged>`` in ``help()``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<unchanged>"


_UNSET: Any = _Unchanged()

LeaseFor = tuple[float, "tuple[str, str] | None"]
"""The lease an attempt takes its slots with: (its seconds, its holder's type and id)."""

MAX_NAP_SECONDS = 60.0
"""A waiting ``concurrency()`` or ``rate_limit()`` asks again at least once a minute, however
long the ``retry_after`` estimate (a limit changed meanwhile is noticed)."""


_LIMIT_FIELDS: dict[str, Callable[[Any], Any]] = {
    "limit": lambda value: checks.count(value, "limit", 0),
    "active": checks.active,
    "active_slots": lambda value: checks.count(value, "active_slots", 0),
    "slot_decay_per_second": checks.decay,
}


def _limit_fields(**given: Any) -> dict[str, Any]:
    """The fields of a limit given (not ``_UNSET``), checked in turn."""
    return {name: _LIMIT_FIELDS[name](value) for name, value in given.items() if value is not _UNSET}


class ConcurrencyMethods(EngineParts):
    """Global concurrency limits, their slots and leases (mixed into Orchestrator)."""

    @cached_property
    def _limits(self) -> LimitStore:
        return LimitStore.of(self._store)

    # -- the limits ---------------------------------------------------------------------------

    def create_global_concurrency_limit(
        self,
        name: str,
        limit: int,
        *,
        active: bool = True,
        active_slots: int = 0,
        slot_decay_per_second: float = 0.0,
    ) -> GlobalConcurrencyLimit:
        """Create a limit of ``limit`` slots named ``name`` (ObjectAlreadyExists if the name is
        taken). ``slot_decay_per_second > 0`` makes it a rate limit (see :meth:`rate_limit`);
        an inactive limit restricts nothing. A name is at most 2000 bytes long in UTF-8."""
        checked_name = checks.new_name(name)
        fields = _limit_fields(
            limit=limit, active=active, active_slots=active_slots,
            slot_decay_per_second=slot_decay_per_second,
        )
        with self._transaction():
            now = self._liveness_time(None)
            row = LimitRow.new(checked_name, fields.pop("limit"), now, **fields)
            if not self._limits.insert(row):
                raise ObjectAlreadyExists(
                    f"a global concurrency limit named {checked_name!r} already exists"
                )
            return row.model(now)

    def read_global_concurrency_limit(self, name: str) -> GlobalConcurrencyLimit:
        """The limit named ``name``, its ``active_slots`` counted after decay."""
        checked_name = checks.limit_name(name)
        with self._read_transaction():
            now = self._liveness_time(None)
            return self._limit_named(checked_name).model(now)

    def read_global_concurrency_limits(self) -> list[GlobalConcurrencyLimit]:
        """Every limit, by name."""
        with self._read_transaction():
            now = self._liveness_time(None)
            return [row.model(now) for row in self._limits.every(LimitRow)]

    def update_global_concurrency_limit(
        self,
        name: str,
        *,
        limit: int = _UNSET,
        active: bool = _UNSET,
        active_slots: int = _UNSET,
        slot_decay_per_second: float = _UNSET,
    ) -> GlobalConcurrencyLimit:
        """Change the given fields of a limit; the slots held stay held unless
        ``active_slots`` is given. Returns the limit as changed."""
        checked_name = checks.limit_name(name)
        changes = _limit_fields(
            limit=limit, active=active, active_slots=active_slots,
            slot_decay_per_second=slot_decay_per_second,
        )
        with self._transaction():
            now = self._liveness_time(None)
            row = self._limit_named(checked_name, for_update=True)
            hold(row, *after_decay(row, now), now)
            for field, value in changes.items():
                setattr(row, field, value)
            if "active_slots" in changes or "slot_decay_per_second" in changes:
                row.updated = now
            self._limits.update(row)
            return row.model(now)

    def delete_global_concurrency_limit(self, name: str) -> None:
        """Delete a limit. Leases on it stay (they still renew) but no longer hold it."""
        checked_name = checks.limit_name(name)
        with self._transaction():
            row = self._limit_named(checked_name, for_update=True)
            self._limits.delete(row)

    def reset_global_concurrency_limit(self, name: str) -> GlobalConcurrencyLimit:
        """Empty a limit: no slot held, and no lease holds it any more (a lease that held only
        this limit is gone; releasing it later does nothing)."""
        checked_name = checks.limit_name(name)
        with self._transaction():
            now = self._liveness_time(None)
            row = self._limit_named(checked_name, for_update=True)
            self._limits.let_holders_go(row.id)
            hold(row, 0, now, now)
            self._limits.update(row)
            return row.model(now)

    def _limit_named(
        self, name: str, *, for_update: bool = False, missing: str | None = None
    ) -> LimitRow:
        """The limit named ``name``; ObjectNotFound (saying ``missing``) if there is none."""
        row = self._limits.one(LimitRow, "name", name, for_update=for_update)
        if row is None:
            raise ObjectNotFound(missing or f"Global concurrency limit {name!r} not found")
        return row

    # -- slots ---------------------------------------------------------------------------------

    def increment_concurrency_slots(
        self, names: str | list[str], slots: int, *, mode: str = "concurrency"
    ) -> list[str]:
        """Take ``slots`` slots on every active limit named, all or none; returns the names of
        the limits found (names without a limit are ignored, inactive limits take nothing).

        Raises :class:`~flowstate.ConcurrencyLimitReached` (with ``retry_after``) when one is
        full, InvalidState when ``slots`` exceeds an active limit (no wait could grant it), and
        InvalidState when ``mode`` does not fit a limit: ``"rate_limit"`` needs limits with
        ``slot_decay_per_second > 0``, ``"concurrency"`` (the default) limits without.
        """
        wanted = checks.names(names)
        count = checks.count(slots, "slots", 1)
        found, _lease = self._increment(wanted, count, checks.mode(mode))
        return found

    def decrement_concurrency_slots(
        self, names: str | list[str], slots: int, *, occupancy_seconds: float | None = None
    ) -> list[str]:
        """Give back ``slots`` slots of every active limit named (never below 0); returns the
        names of the limits found. ``occupancy_seconds``: how long the slots were held, which
        moves the limits' average occupancy (and so the ``retry_after`` of later refusals)."""
        wanted = checks.names(names)
        count = checks.count(slots, "slots", 1)
        occupied = checks.occupancy(occupancy_seconds)
        with self._transaction():
            now = self._liveness_time(None)
            found = self._limits.lock_limits_by_name(wanted)
            for row in found:
                if row.active:
                    let_go(row, count, now, occupied)
                    self._limits.update(row)
            return [row.name for row in found]

    def _increment(
        self, wanted: list[str], count: int, mode: str, lease_for: LeaseFor | None = None
    ) -> tuple[list[str], ConcurrencyLease | None]:
        """One attempt, one transaction: take ``count`` slots of each active limit named (the
        arguments checked), all or none, held by a lease if ``lease_for`` is given. Returns
        the names of the limits found and the lease; when one is full, nothing is written and
        ConcurrencyLimitReached is raised once the transaction has ended."""
        with self._transaction():
            now = self._liveness_time(None)
            found = self._limits.lock_limits_by_name(wanted)
            active = [row for row in found if row.active]
            check_request(active, count, mode)
            full = take_slots(self._limits, active, count, now)
            lease = None
            if not full and lease_for is not None:
                seconds, holder = lease_for
                taken = [(row, count if row.active else 0) for row in found]
                lease = LeaseRow.new(holder, count, now, seconds, taken)
                self._limits.insert(lease)
        if full:
            raise _no_room(full, count)
        return [row.name for row in found], None if lease is None else lease.model()

    # -- leases --------------------------------------------------------------------------------

    def increment_concurrency_slots_with_lease(
        self,
        names: str | list[str],
        slots: int,
        *,
        mode: str = "concurrency",
        lease_duration: float = 300,
        holder: Any = None,
    ) -> ConcurrencyLease:
        """:meth:`increment_concurrency_slots`, held by a lease that lasts ``lease_duration``
        seconds (60 to 86400) unless renewed (:meth:`renew_concurrency_lease`). Release it with
        :meth:`release_concurrency_lease`; if nobody does, :meth:`expire_leases` gives its
        slots back after it expires. ``holder``: ``{"type": "task_run", "id": run_id}`` (or
        ``"flow_run"``, ``"deployment"``), shown with the lease."""
        wanted = checks.names(names)
        count = checks.count(slots, "slots", 1)
        how = checks.mode(mode)
        lease_for = (checks.lease_duration(lease_duration), checks.holder(holder))
        _found, lease = self._increment(wanted, count, how, lease_for)
        assert lease is not None  # (given lease_for)
        return lease

    def renew_concurrency_lease(
        self, lease_id: UUID | str, lease_duration: float = 300
    ) -> ConcurrencyLease:
        """Make a lease last ``lease_duration`` more seconds from now (60 to 86400); an expired
        lease not yet released renews too. ObjectNotFound when the lease is gone (released, or
        expired and released by :meth:`expire_leases`)."""
        lease_key = checks.lease_id(lease_id)
        duration = checks.lease_duration(lease_duration)
        with self._transaction():
            now = self._liveness_time(None)
            lease = self._limits.one(LeaseRow, "id", lease_key, for_update=True)
            if lease is None:
                raise ObjectNotFound(
                    f"Lease {lease_key} not found: it was released, or it expired and its slots "
                    "were given back"
                )
            return self._limits.renew_lease(lease, now + timedelta(seconds=duration)).model()

    def release_concurrency_lease(self, lease_id: UUID | str) -> None:
        """Give back the slots of a lease and end it (none of a limit with decay: its slots
        free themselves); a lease that is gone is a quiet no-op."""
        lease_key = checks.lease_id(lease_id)
        with self._transaction():
            now = self._liveness_time(None)
            lease = self._limits.lock_lease(lease_key)
            if lease is not None:
                give_back(self._limits, [lease], now)

    def read_concurrency_leases(self, name: str | None = None) -> list[ConcurrencyLease]:
        """The leases (oldest first) holding slots of the limit ``name``, or every lease."""
        checked_name = None if name is None else checks.limit_name(name)
        with self._read_transaction():
            limit_id = None if checked_name is None else self._limit_named(checked_name).id
            return [lease.model() for lease in self._limits.read_leases(limit_id)]

    def expire_leases(self, *, now: datetime | None = None) -> list[ConcurrencyLease]:
        """Release every lease that was not renewed before its expiration, giving its slots
        back: a holder that crashed keeps its slots no longer than its lease. Returns the
        leases released. Safe from several processes at once; ``flowstate reap`` and
        ``flowstate worker`` call it."""
        with self._transaction():
            at = self._liveness_time(now)
            leases = self._limits.lock_expired_leases(at)
            give_back(self._limits, leases, at)
        return [lease.model() for lease in leases]

    # -- blocking helpers ------------------------------------------------------------------------

    def concurrency(
        self,
        names: str | list[str],
        occupy: int = 1,
        timeout: float | None = None,
        *,
        lease_duration: float = 300,
        strict: bool = False,
        holder: Any = None,
    ) -> HeldSlots:
        """``with orc.concurrency("warehouse", occupy=1, timeout=30):`` -- hold ``occupy``
        slots of each limit named for the block (Prefect's ``concurrency()``).

        Entering waits until the slots are free (sleeping through the orchestrator's ``sleep``,
        ``retry_after`` seconds at a time) and raises :class:`~flowstate.WaitTimeout` after
        ``timeout`` seconds on the orchestrator's clock (None: no timeout). A lease holds the
        slots; a background thread renews it every third of ``lease_duration`` (real seconds,
        whatever the orchestrator's clock: with a FrozenClock, renew by hand with
        :meth:`renew_concurrency_lease` before moving the clock past the lease) while the block
        runs, and leaving the block releases it, also on an exception or Ctrl-C. If the
        process dies, the slots come back once the lease expires (:meth:`expire_leases`; a
        waiting ``concurrency()`` calls it too). Names without a limit are ignored unless
        ``strict`` (ObjectNotFound). ``occupy`` larger than a limit: InvalidState at once.
        """
        wanted, count, options = checks.block_arguments(
            names, occupy, wait=timeout, duration=lease_duration, strict=strict, held_by=holder
        )
        return HeldSlots(self, wanted, count, options)  # type: ignore[arg-type]

    def rate_limit(
        self,
        names: str | list[str],
        occupy: int = 1,
        timeout: float | None = None,
        *,
        strict: bool = False,
    ) -> RateLimited:
        """Wait until ``occupy`` slots of each rate limit named are free and take them (they
        free themselves at the limit's ``slot_decay_per_second``): Prefect's ``rate_limit()``.
        Returns the names of the limits found, a list that may also open a block (``with
        orc.rate_limit("api"):``, nothing given back on leaving it). WaitTimeout after
        ``timeout`` seconds on the orchestrator's clock; the other arguments as in
        :meth:`concurrency`."""
        steps = self._rate_limit_steps(names, occupy, timeout=timeout, strict=strict)
        return run_steps(steps, self._sleep)  # type: ignore[no-any-return]

    def _rate_limit_steps(
        self,
        names: str | list[str],
        occupy: int = 1,
        timeout: float | None = None,
        *,
        strict: bool = False,
    ) -> Generator[Nap, None, RateLimited]:
        """:meth:`rate_limit` as steps: each attempt a transaction, a Nap between two."""
        wanted = checks.names(names)
        count = checks.count(occupy, "occupy", 1)
        wait = optional_span(timeout, "timeout")
        return RateLimited((yield from self._acquire_steps(
            wanted, count, mode="rate_limit", timeout=wait, lease_duration=None,
            strict=checks.active(strict, "strict"), holder=None, box=Acquired(),
        )))

    def _acquire_steps(
        self,
        wanted: list[str],
        count: int,
        *,
        mode: str,
        timeout: float | None,
        lease_duration: float | None,
        strict: bool,
        holder: tuple[str, str] | None,
        box: Acquired,
    ) -> Generator[Nap, None, list[str]]:
        """Attempt after attempt until the slots are taken (put in ``box``, so that a caller
        interrupted right after can still give them back; the names of the limits found are
        returned too); a Nap of ``retry_after`` seconds between two (at most
        :data:`MAX_NAP_SECONDS`). A refused ``concurrency`` attempt first releases expired
        leases."""
        if self._store.in_transaction:
            raise InvalidState(
                "concurrency() and rate_limit() wait for other holders, who cannot release "
                "their slots while this transaction() block is open; call them outside it"
            )
        if strict:
            self._require_limits(wanted)
        deadline = None if timeout is None else self._now() + timedelta(seconds=timeout)
        lease_for = None if lease_duration is None else (lease_duration, holder)
        while True:
            try:
                box.names, box.lease = self._increment(wanted, count, mode, lease_for)
                return box.names
            except ConcurrencyLimitReached as refused:
                if mode == "concurrency" and self.expire_leases():
                    continue  # a crashed holder's slots came back: try again at once
                nap = self._nap_after(refused, deadline, timeout)
            yield Nap(nap)

    def _require_limits(self, wanted: list[str]) -> None:
        """ObjectNotFound unless a limit exists under each name (``strict``)."""
        with self._read_transaction():
            missing = [name for name in wanted if self._limits.one(LimitRow, "name", name) is None]
        if missing:
            raise ObjectNotFound(
                f"no global concurrency limit named {', '.join(map(repr, missing))}"
            )

    def _nap_after(
        self, refused: ConcurrencyLimitReached, deadline: datetime | None, timeout: float | None
    ) -> float:
        """How long to wait after a refused attempt: its ``retry_after``, at most
        :data:`MAX_NAP_SECONDS` and not past ``deadline``; WaitTimeout once that has passed."""
        now = self._now()
        nap = min(refused.retry_after, MAX_NAP_SECONDS)
        if deadline is None:
            return nap
        if now >= deadline:
            raise WaitTimeout(
                f"no free slots on {', '.join(map(repr, refused.limits))} within {timeout:g} s"
            ) from None
        return min(nap, (deadline - now).total_seconds())


def _no_room(blocking: list[tuple[LimitRow, int]], count: int) -> ConcurrencyLimitReached:
    """The refusal of ``count`` slots by the limits ``blocking`` (each with the slots it holds)."""
    full = ", ".join(
        f"{row.name!r} has {now_held} of {row.limit} slots taken" for row, now_held in blocking
    )
    return ConcurrencyLimitReached(
        f"no room for {count} more slot{'s' if count > 1 else ''}: {full}",
        retry_after(blocking, count),
        tuple(row.name for row, _ in blocking),
    )

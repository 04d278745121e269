"""Holding slots for the length of a ``with`` block: ``orc.concurrency(...)``.

Entering takes the slots with a lease (waiting while they are taken); while the block runs, a
:class:`LeaseKeeper` thread renews the lease every third of its duration, so a block may run
for as long as it needs; leaving stops the keeper and releases the lease, whatever ends the
block (an exception, Ctrl-C). A process that dies cannot release: its lease simply stops being
renewed, and :meth:`~flowstate.Orchestrator.expire_leases` gives the slots back once it expires.

Why a thread and not renewal on demand: the block is the user's code, which may run for hours
without calling back; a renewal that depends on it would let the lease expire under a holder
that is still working. The keeper shares the orchestrator (its calls wait for each other).
It waits real seconds, not the orchestrator's clock: a FrozenClock moved past the lease's
expiration lets the lease expire (a test renews by hand with ``renew_concurrency_lease``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from flowstate._interaction import run_steps
from flowstate.concurrency.models import ConcurrencyLease
from flowstate.errors import FlowstateError, InvalidState, ObjectNotFound

if TYPE_CHECKING:
    from flowstate.orchestrator import Orchestrator

__all__ = [
    "RENEWALS_PER_LEASE",
    "Acquired",
    "Block",
    "HeldSlots",
    "LeaseKeeper",
    "RateLimited",
    "lease_label",
    "warn_lost",
    "warn_renewal_failed",
]

_log = logging.getLogger("flowstate.concurrency")

O = TypeVar("O")
"""The orchestrator a block holds its slots through (sync or async)."""

RENEWALS_PER_LEASE = 3
"""How often a held lease is renewed within its duration: two renewals may fail (a database
briefly unreachable) before it expires."""


@dataclass(slots=True)
class Acquired:
    """What an acquisition took, filled in as soon as it is taken."""

    lease: ConcurrencyLease | None = None
    names: list[str] = field(default_factory=list)


class LeaseKeeper:
    """Calls ``renew()`` every ``interval`` seconds in a daemon thread until :meth:`stop`.

    A renewal that finds the lease gone sets ``lost`` and ends the thread (logged as a warning
    on ``flowstate.concurrency``); other errors are logged and the next renewal tries again.
    """

    def __init__(self, renew: Callable[[], object], interval: float, what: str) -> None:
        self._renew = renew
        self.interval = interval
        self._what = what
        self._stopped = threading.Event()
        self.lost = False
        self.renewals = 0
        self._thread = threading.Thread(target=self._run, name=f"flowstate-lease {what}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop renewing; returns once a renewal in progress has ended."""
        self._stopped.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    def _run(self) -> None:
        while not self._stopped.wait(self.interval):
            try:
                self._renew()
                self.renewals += 1
            except ObjectNotFound:
                self.lost = True
                warn_lost(self._what)
                return
            except FlowstateError as exc:
                warn_renewal_failed(self._what, exc)


class Block(Generic[O]):
    """What the sync and async blocks share: the request, the lease held, and a guard against
    entering a block again before it was left (its second lease would replace the first, which
    then nobody releases or stops renewing)."""

    def __init__(self, orc: O, names: list[str], occupy: int, options: dict[str, Any]) -> None:
        self._orc = orc
        self.names = names
        self.occupy = occupy
        self._options = options
        self.lease: ConcurrencyLease | None = None
        self._entered = False

    @contextmanager
    def _entering(self) -> Iterator[None]:
        if self._entered:
            raise InvalidState(
                "this concurrency() block is already entered; call orc.concurrency() again for "
                "a nested block"
            )
        self._entered = True
        try:
            yield
        except BaseException:
            self._entered = False
            raise


class RateLimited(list[str]):
    """What ``orc.rate_limit(...)`` returns: the names of the rate limits it took slots of.
    It may also open a block, ``with orc.rate_limit("api"):``: the call has waited and taken
    the slots before the block starts, and leaving the block gives nothing back (a rate
    limit's slots free themselves as they decay)."""

    __slots__ = ()

    def __enter__(self) -> RateLimited:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None


class HeldSlots(Block["Orchestrator"]):
    """``with orc.concurrency(names, occupy):`` -- the context manager; inside, ``lease`` is
    the :class:`~flowstate.concurrency.ConcurrencyLease` held (its ``limits`` empty when no
    limit named exists) and ``lost`` tells whether it was lost to expiry while the block ran."""

    _keeper: LeaseKeeper | None = None

    @property
    def lost(self) -> bool:
        return self._keeper is not None and self._keeper.lost

    def __enter__(self) -> HeldSlots:
        with self._entering():
            return self._enter()

    def _enter(self) -> HeldSlots:
        orc = self._orc
        box = Acquired()
        try:
            steps = orc._acquire_steps(self.names, self.occupy, box=box, **self._options)
            run_steps(steps, orc._sleep)
            if box.lease is not None and box.lease.limits:
                duration = self._options["lease_duration"]
                renew = partial(orc.renew_concurrency_lease, box.lease.lease_id, duration)
                keeper = LeaseKeeper(renew, duration / RENEWALS_PER_LEASE, lease_label(box.lease))
                keeper.start()
                self._keeper = keeper
        except BaseException:
            if box.lease is not None:  # taken, then interrupted before the block began
                orc.release_concurrency_lease(box.lease.lease_id)
            raise
        self.lease = box.lease
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._entered = False
        keeper, self._keeper = self._keeper, None
        lease, self.lease = self.lease, None
        try:
            if keeper is not None:
                keeper.stop()
        finally:
            if lease is not None:
                self._orc.release_concurrency_lease(lease.lease_id)


def warn_lost(what: str) -> None:
    """Log (a warning on ``flowstate.concurrency``) that the lease of a running block is gone."""
    _log.warning(
        "the lease of %s is gone (it expired and its slots were given back, or the limit was "
        "reset): the block no longer holds its slots",
        what,
    )


def warn_renewal_failed(what: str, error: FlowstateError) -> None:
    """Log that a renewal failed; the next one tries again."""
    _log.warning("renewing the lease of %s failed (retrying): %s", what, error)


def lease_label(lease: ConcurrencyLease) -> str:
    """How the warnings name a lease: its limits and its id."""
    return f"{', '.join(lease.limits)} ({lease.lease_id})"

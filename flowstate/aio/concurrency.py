"""``async with orc.concurrency(...)``: :class:`~flowstate.concurrency.HeldSlots` for an
:class:`~flowstate.AsyncOrchestrator`.

The same steps as the sync form run in the engine's thread, one transaction each; the waits
between two attempts pass on the event loop (or through the clock's own ``sleep``). While the
block runs, a task renews the lease every third of its duration; leaving the block (also by an
exception or a cancellation) cancels that task and releases the lease, which is not undone by a
second cancellation.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from flowstate.concurrency.holding import (
    RENEWALS_PER_LEASE,
    Acquired,
    Block,
    lease_label,
    warn_lost,
    warn_renewal_failed,
)
from flowstate.concurrency.models import ConcurrencyLease
from flowstate.errors import FlowstateError, ObjectNotFound
from flowstate.orchestrator import Orchestrator

if TYPE_CHECKING:
    from flowstate.aio.orchestrator import AsyncOrchestrator

__all__ = ["AsyncHeldSlots"]


class AsyncHeldSlots(Block["AsyncOrchestrator"]):
    """``async with orc.concurrency(names, occupy):`` -- inside, ``lease`` is the
    :class:`~flowstate.concurrency.ConcurrencyLease` held and ``lost`` tells whether it was
    lost to expiry while the block ran."""

    lost = False
    _renewal: asyncio.Task[None] | None = None

    async def __aenter__(self) -> AsyncHeldSlots:
        with self._entering():
            return await self._enter()

    async def _enter(self) -> AsyncHeldSlots:
        orc = self._orc
        box = Acquired()
        options = {"box": box, **self._options}
        try:
            await orc._run_steps(Orchestrator._acquire_steps, (self.names, self.occupy), options)
        except BaseException:
            if box.lease is not None:  # taken, then cancelled before the block began
                await self._release(box.lease)
            raise
        self.lease = box.lease
        if box.lease is not None and box.lease.limits:
            self._renewal = asyncio.ensure_future(self._keep(box.lease))
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._entered = False
        renewal, self._renewal = self._renewal, None
        lease, self.lease = self.lease, None
        try:
            if renewal is not None:
                renewal.cancel()
                await asyncio.wait([renewal])
        finally:
            if lease is not None:
                await self._release(lease)

    async def _release(self, lease: ConcurrencyLease) -> None:
        await self._orc._call_to_the_end(
            Orchestrator.release_concurrency_lease, (lease.lease_id,), {}
        )

    async def _keep(self, lease: ConcurrencyLease) -> None:
        duration = self._options["lease_duration"]
        while True:
            await asyncio.sleep(duration / RENEWALS_PER_LEASE)
            try:
                await self._orc.renew_concurrency_lease(lease.lease_id, duration)
            except ObjectNotFound:
                self.lost = True
                warn_lost(lease_label(lease))
                return
            except FlowstateError as exc:
                warn_renewal_failed(lease_label(lease), exc)

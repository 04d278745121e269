"""Global concurrency limits and their leases, as the API returns them (data only, no I/O)."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from flowstate._time import UtcDateTime

__all__ = [
    "ConcurrencyLease",
    "ConcurrencyLeaseHolder",
    "ConcurrencyOptions",
    "Deployment",
    "GlobalConcurrencyLimit",
]

_CONFIG = ConfigDict(frozen=True, defer_build=True)


class GlobalConcurrencyLimit(BaseModel):
    """A named limit (Prefect's V2 concurrency limit): at most ``limit`` slots held at once.

    ``active_slots`` is the number held now, after slot decay. A limit with
    ``slot_decay_per_second > 0`` is a rate limit: its slots free themselves at that rate, and
    are taken with ``mode="rate_limit"``. An inactive limit restricts nothing.
    ``avg_slot_occupancy_seconds`` is a moving average of how long slots were held (2.0 until
    the first release), which sets the ``retry_after`` of a refusal.
    """

    model_config = _CONFIG

    id: UUID
    name: str
    limit: int
    active: bool = True
    active_slots: int = 0
    slot_decay_per_second: float = 0.0
    avg_slot_occupancy_seconds: float = 2.0
    created: UtcDateTime
    updated: UtcDateTime


class ConcurrencyLeaseHolder(BaseModel):
    """Who holds a lease: a flow run, a task run or a deployment, by id."""

    model_config = _CONFIG

    type: Literal["flow_run", "task_run", "deployment"]
    id: UUID


class ConcurrencyLease(BaseModel):
    """Slots taken on one or more limits, held until released or until ``expiration``.

    ``limits`` are the names of the limits the lease was taken on (a limit deleted since is no
    longer listed); ``slots`` how many slots it holds on each active one. A lease not renewed
    before ``expiration`` is released by :meth:`~flowstate.Orchestrator.expire_leases`.
    """

    model_config = _CONFIG

    lease_id: UUID
    limits: list[str]
    slots: int
    holder: ConcurrencyLeaseHolder | None = None
    created: UtcDateTime
    expiration: UtcDateTime


class ConcurrencyOptions(BaseModel):
    """What a deployment's flow runs do when its limit is full as one is submitted (proposes
    PENDING): ``"ENQUEUE"`` waits (the run is rescheduled as ``AwaitingConcurrencySlot``, 30 s
    ahead), ``"CANCEL_NEW"`` gives up (the run is cancelled). ``grace_period_seconds``: how
    long a run's slot is kept without being renewed (60 to 86400; None: 300)."""

    model_config = _CONFIG

    collision_strategy: Literal["ENQUEUE", "CANCEL_NEW"] = "ENQUEUE"
    grace_period_seconds: int | None = None


class Deployment(BaseModel):
    """A deployment: a name its flow runs are created under (``deployment_id``), and the
    concurrency they share.

    ``global_concurrency_limit`` is the limit its runs hold a slot of from PENDING until they
    finish (None: no limit): its own limit, named ``deployment:<id>`` (``concurrency_limit``
    is then its size), or a global limit it shares with other deployments.
    ``concurrency_options`` say what a run does when that limit is full (None: it waits, as
    with ``"ENQUEUE"``).
    """

    model_config = _CONFIG

    id: UUID
    name: str
    concurrency_limit: int | None = None
    concurrency_options: ConcurrencyOptions | None = None
    global_concurrency_limit: GlobalConcurrencyLimit | None = None
    created: UtcDateTime
    updated: UtcDateTime

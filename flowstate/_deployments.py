"""The Orchestrator's deployments: the concurrency their flow runs share (Prefect's deployment
concurrency limits).

A mixin of :class:`flowstate.Orchestrator`. A deployment's own limit *is* the global
concurrency limit named ``deployment:<deployment id>``; a deployment may instead share an
existing global limit (``global_concurrency_limit_id``). The flow policies take a slot of it when
a run is submitted (PENDING) and give it back when the run leaves PENDING, RUNNING and
CANCELLING. Each call is one transaction; bad input is an InvalidState naming the field, raised
before anything is written.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import UUID

from flowstate import _validation as validate
from flowstate._concurrency import _UNSET, ConcurrencyMethods
from flowstate._ids import uuid7
from flowstate.concurrency import checks
from flowstate.concurrency.models import ConcurrencyOptions, Deployment
from flowstate.concurrency.run_slots import DEFAULT_GRACE_SECONDS, RunSlots
from flowstate.concurrency.slots import DeploymentRow, LimitRow
from flowstate.errors import InvalidState, ObjectAlreadyExists, ObjectNotFound
from flowstate.runs import FlowRun

__all__ = ["COLLISION_STRATEGIES", "DeploymentMethods", "own_limit_name"]

COLLISION_STRATEGIES = ("ENQUEUE", "CANCEL_NEW")
MIN_GRACE_SECONDS = 60
MAX_GRACE_SECONDS = 86400
"""A deployment's grace period: from a minute to a day (Prefect's bounds)."""


def own_limit_name(deployment_id: UUID | str) -> str:
    """The name of a deployment's own limit: ``deployment:<id>``."""
    return f"deployment:{deployment_id}"


class DeploymentMethods(ConcurrencyMethods):
    """Deployments and their concurrency, built on the global limits (mixed into
    Orchestrator)."""

    def _run_slots(self) -> RunSlots:
        """What the rules of one transition may do with limits (inside its transaction)."""
        return RunSlots(self._limits, lambda: self._liveness_time(None), self._store.protect_call)

    def _renew_deployment_slot(self, run: FlowRun, now: datetime) -> None:
        """Inside a transaction: make the lease of the deployment slot ``run`` holds last its
        deployment's grace period from ``now`` (a heartbeat: a run alive keeps its slot however
        long it runs); nothing when it holds none."""
        state = run.state
        lease_id = None if state is None else state.state_details.deployment_concurrency_lease_id
        if lease_id is None or run.deployment_id is None:
            return
        slots = RunSlots(self._limits, lambda: now)
        deployment = slots.deployment_limit(run.deployment_id)
        grace = DEFAULT_GRACE_SECONDS if deployment is None else deployment.grace
        slots.renew(lease_id, ("flow_run", str(run.id)), grace)

    def create_deployment(
        self,
        name: str,
        *,
        concurrency_limit: int | None = None,
        collision_strategy: str | None = None,
        grace_period_seconds: int | None = None,
        global_concurrency_limit_id: UUID | str | None = None,
    ) -> Deployment:
        """Create a deployment named ``name`` (ObjectAlreadyExists if the name is taken); create
        its flow runs with ``create_flow_run(deployment_id=deployment.id)``.

        ``concurrency_limit`` (>= 1): at most that many of its runs in PENDING, RUNNING or
        CANCELLING at once, counted by its own limit ``deployment:<id>``; or
        ``global_concurrency_limit_id``: the id of an existing global limit its runs share with
        whatever else uses it. ``collision_strategy``: what a run submitted while the limit is
        full does, ``"ENQUEUE"`` (the default: rescheduled 30 s later as
        ``AwaitingConcurrencySlot``) or ``"CANCEL_NEW"`` (cancelled).
        ``grace_period_seconds`` (60 to 86400, default 300): how long a run keeps its slot
        without renewing it (going to RUNNING and each :meth:`heartbeat` renew it); after that
        ``expire_leases`` gives it back. A name is at most 2000 bytes long in UTF-8."""
        checked_name = checks.new_name(name)
        fields = _fields(
            concurrency_limit, collision_strategy, grace_period_seconds,
            global_concurrency_limit_id, unset=None,
        )
        with self._transaction():
            now = self._liveness_time(None)
            row = DeploymentRow(str(uuid7()), checked_name, None, None, None, now, now)
            self._change(row, fields, now)
            if not self._limits.insert(row):
                raise ObjectAlreadyExists(f"a deployment named {checked_name!r} already exists")
            return self._deployment_model(row, now)

    def read_deployment(self, deployment_id: UUID | str) -> Deployment:
        """The deployment with this id, with its limit; ObjectNotFound if there is none."""
        key = str(validate.run_id(deployment_id, "deployment_id"))
        with self._read_transaction():
            now = self._liveness_time(None)
            return self._deployment_model(self._deployment_row(key), now)

    def read_deployments(self) -> list[Deployment]:
        """Every deployment, by name."""
        with self._read_transaction():
            now = self._liveness_time(None)
            return [self._deployment_model(row, now) for row in self._limits.every(DeploymentRow)]

    def update_deployment(
        self,
        deployment_id: UUID | str,
        *,
        concurrency_limit: int | None = _UNSET,
        collision_strategy: str | None = _UNSET,
        grace_period_seconds: int | None = _UNSET,
        global_concurrency_limit_id: UUID | str | None = _UNSET,
    ) -> Deployment:
        """Change the given fields of a deployment (those not given keep their value).

        ``concurrency_limit=N`` sizes the deployment's own limit (created if it has none; the
        slots its runs hold stay held, so lowering it below them makes new runs wait until
        enough finish); ``None`` deletes its own limit, or stops sharing one.
        ``global_concurrency_limit_id`` makes it share an existing limit instead (None: none).
        ``collision_strategy`` and ``grace_period_seconds`` as in :meth:`create_deployment`
        (None: the defaults)."""
        key = str(validate.run_id(deployment_id, "deployment_id"))
        fields = _fields(
            concurrency_limit, collision_strategy, grace_period_seconds,
            global_concurrency_limit_id, unset=_UNSET,
        )
        with self._transaction():
            now = self._liveness_time(None)
            row = self._deployment_row(key, for_update=True)
            self._change(row, fields, now)
            row.updated = now
            self._limits.update(row)
            return self._deployment_model(row, now)

    # -- inside a transaction ------------------------------------------------------------------

    def _change(self, row: DeploymentRow, fields: list[Any], now: datetime) -> None:
        """Point ``row`` at the ``shared`` limit, or size (None: drop) its own, and set its
        options (``fields`` as :func:`_fields` gives them); what is ``_UNSET`` stays as it is."""
        size, strategy, grace, shared = fields
        if shared is not _UNSET:
            if shared is not None and not self._limits.lock_limits_by_id([shared]):
                raise ObjectNotFound(
                    f"global_concurrency_limit_id {shared}: no global concurrency limit has this id"
                )
            self._drop_own_limit(row, keep=shared)
            row.concurrency_limit_id = shared
        if size is None:
            self._drop_own_limit(row)
            row.concurrency_limit_id = None
        elif size is not _UNSET:
            row.concurrency_limit_id = self._limits.size_limit(own_limit_name(row.id), size, now).id
        if strategy is not _UNSET:
            row.collision_strategy = strategy
        if grace is not _UNSET:
            row.grace_period_seconds = grace

    def _deployment_row(self, key: str, *, for_update: bool = False) -> DeploymentRow:
        row = self._limits.one(DeploymentRow, "id", key, for_update=for_update)
        if row is None:
            raise ObjectNotFound(f"Deployment with id {key} not found")
        return row

    def _drop_own_limit(self, row: DeploymentRow, *, keep: str | None = None) -> None:
        """Delete the deployment's own limit, if it has one (a shared limit stays), unless its
        id is ``keep``: a deployment pointed at the limit it owns goes on with it."""
        own = self._limits.one(LimitRow, "name", own_limit_name(row.id), for_update=True)
        if own is not None and own.id != keep:
            self._limits.delete(own)

    def _deployment_model(self, row: DeploymentRow, now: datetime) -> Deployment:
        limit = None
        if row.concurrency_limit_id is not None:
            limit = self._limits.one(LimitRow, "id", row.concurrency_limit_id)
        options = None
        if row.collision_strategy is not None or row.grace_period_seconds is not None:
            options = ConcurrencyOptions(
                collision_strategy=row.collision_strategy or "ENQUEUE",  # type: ignore[arg-type]
                grace_period_seconds=row.grace_period_seconds,
            )
        return Deployment(
            id=UUID(row.id),
            name=row.name,
            concurrency_limit=None if limit is None else limit.limit,
            concurrency_options=options,
            global_concurrency_limit=None if limit is None else limit.model(now),
            created=row.created,
            updated=row.updated,
        )


def _fields(size: Any, strategy: Any, grace: Any, shared: Any, *, unset: Any) -> list[Any]:
    """A deployment's concurrency_limit, collision_strategy, grace_period_seconds and
    global_concurrency_limit_id, checked (None: no value); those that are ``unset`` (not
    given) become ``_UNSET``."""
    found = [
        _UNSET if value is unset else value if value is None else check(value)
        for value, check in zip((size, strategy, grace, shared), _CHECKS)
    ]
    if found[0] is not _UNSET and found[3] is not _UNSET:
        raise InvalidState(
            "give concurrency_limit (a limit of the deployment's own) or "
            "global_concurrency_limit_id (a limit it shares), not both"
        )
    return found


def _strategy(value: Any) -> str:
    checks.expect(
        value in COLLISION_STRATEGIES, "collision_strategy", value,
        "'ENQUEUE', 'CANCEL_NEW' or None",
    )
    return str(value)


def _grace(value: Any) -> int:
    ok = checks.is_number(value, whole=True) and (
        MIN_GRACE_SECONDS <= value <= MAX_GRACE_SECONDS
    )
    checks.expect(
        ok, "grace_period_seconds", value,
        f"whole seconds from {MIN_GRACE_SECONDS} to {MAX_GRACE_SECONDS}, or None (300)",
    )
    return value


_CHECKS: tuple[Callable[[Any], Any], ...] = (
    lambda value: checks.count(value, "concurrency_limit", 1),  # (>= 1: Prefect answers 422 to 0)
    _strategy,
    _grace,
    lambda value: str(validate.run_id(value, "global_concurrency_limit_id")),
)

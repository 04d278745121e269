"""The Orchestrator's tag limits: Prefect's V1 calls (``/concurrency_limits/``) over the global
limits named ``tag:<tag>``.

A mixin of :class:`flowstate.Orchestrator`, beside the global limits'
(``flowstate/_concurrency.py``): each call is one transaction, on limit rows locked for it.
"""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

from flowstate import _validation as validate
from flowstate._concurrency import ConcurrencyMethods
from flowstate.concurrency import checks
from flowstate.concurrency.models import ConcurrencyLease
from flowstate.concurrency.slots import LeaseRow, LimitRow, hold
from flowstate.concurrency.tags import (
    TAG_PREFIX,
    TASK_SLOT_LEASE_SECONDS,
    ConcurrencyLimit,
    slot_override as checked_override,
    tag_limit,
    tag_limit_name,
    tag_limit_value,
)
from flowstate.errors import ObjectNotFound

__all__ = ["TagLimitMethods"]


def _limit_name(tag: str) -> str:
    """The name of ``tag``'s limit (``tag:<tag>``), the tag checked."""
    return tag_limit_name(checks.limit_name(tag, "tag"))


class TagLimitMethods(ConcurrencyMethods):
    """Tag limits, built on the global limits (mixed into Orchestrator)."""

    def create_concurrency_limit(self, tag: str, limit: int) -> ConcurrencyLimit:
        """Limit the task runs tagged ``tag`` to ``limit`` RUNNING at once: creates the global
        limit ``tag:<tag>``, or changes the limit of an existing one (its holders keep their
        slots). 0 makes a task run with the tag abort when it tries to run; a negative limit
        restricts nothing. The name ``tag:<tag>`` is at most 2000 bytes long in UTF-8."""
        name = checks.new_name(_limit_name(tag), "tag limit name")
        value = tag_limit_value(limit)
        with self._transaction():
            return self._tag_view(self._limits.size_limit(name, value, self._liveness_time(None)))

    def read_concurrency_limit(self, tag: str) -> ConcurrencyLimit:
        """The limit of the task runs tagged ``tag``, with the task runs holding its slots;
        ObjectNotFound if the tag has none."""
        name = _limit_name(tag)
        with self._read_transaction():
            row = self._limit_named(name, missing=f"no concurrency limit for tag {tag!r}")
            return self._tag_view(row)

    def read_concurrency_limits(self) -> list[ConcurrencyLimit]:
        """Every tag limit, by tag."""
        with self._read_transaction():
            rows = self._limits.every(LimitRow)
            return [self._tag_view(row) for row in rows if row.name.startswith(TAG_PREFIX)]

    def reset_concurrency_limit(
        self, tag: str, slot_override: list[UUID | str] | None = None
    ) -> ConcurrencyLimit:
        """Let every holder of the tag's limit go: no slot is held afterwards, and a holder
        leaving RUNNING later gives nothing back. ``slot_override``: task run ids that hold a
        slot each afterwards instead, as far as the limit has room (each is listed as a
        holder; those beyond the limit hold none). ObjectNotFound for a tag without a limit or
        an id that is no task run."""
        name = _limit_name(tag)
        override = checked_override(slot_override)
        with self._transaction():
            now = self._liveness_time(None)
            store, limits = self._store, self._limits
            for run_id in override or []:
                if store.read_task_run(run_id) is None:
                    raise ObjectNotFound(f"slot_override: no task run with id {run_id}")
            row = self._limit_named(
                name, for_update=True, missing=f"no concurrency limit for tag {tag!r}"
            )
            limits.let_holders_go(row.id)
            held = 0
            for run_id in override or []:
                taken = 1 if row.active and held + 1 <= row.limit else 0
                held += taken
                holder = ("task_run", str(run_id))
                limits.insert(LeaseRow.new(holder, 1, now, TASK_SLOT_LEASE_SECONDS, [(row, taken)]))
            hold(row, held, now, now)
            limits.update(row)
            return self._tag_view(row)

    def delete_concurrency_limit(self, tag: str) -> None:
        """Delete the tag's limit; its holders let go of it (ObjectNotFound if it has none)."""
        name = _limit_name(tag)
        with self._transaction():
            row = self._limit_named(
                name, for_update=True, missing=f"no concurrency limit for tag {tag!r}"
            )
            self._limits.let_holders_go(row.id)
            self._limits.delete(row)

    def renew_task_run_slots(
        self, id: UUID | str, lease_duration: float = TASK_SLOT_LEASE_SECONDS
    ) -> list[ConcurrencyLease]:
        """Keep the tag slots of a task run that runs long: its leases (taken when it entered
        RUNNING) last ``lease_duration`` seconds (60 to 86400) from now. Without renewals they
        expire :data:`~flowstate.concurrency.tags.TASK_SLOT_LEASE_SECONDS` after they were
        taken, and :meth:`expire_leases` gives the slots to other task runs. Returns the leases
        renewed (none once the run has left RUNNING); ObjectNotFound for an unknown task run."""
        run_id = validate.run_id(id)
        duration = checks.lease_duration(lease_duration)
        with self._transaction():
            now = self._liveness_time(None)
            validate.found(self._store.read_task_run(run_id), "task", run_id)
            limits = self._limits
            return [
                limits.renew_lease(lease, now + timedelta(seconds=duration)).model()
                for lease in limits.lock_leases_of_holder("task_run", str(run_id))
            ]

    def _tag_view(self, row: LimitRow) -> ConcurrencyLimit:
        """The tag limit ``row`` is, with the task runs holding it."""
        return tag_limit(row, self._limits.read_leases(row.id))

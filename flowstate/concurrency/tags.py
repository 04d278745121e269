"""Tag limits: Prefect's V1 view of a global limit named ``tag:<tag>``, which limits how many
task runs carrying the tag are RUNNING at once.

A tag limit **is** the global limit ``tag:<tag>``: the tag calls and the global calls see the
same limit. What the tag view adds is its holders: the task runs holding a lease on it.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from flowstate import _validation as validate
from flowstate._time import UtcDateTime
from flowstate.concurrency import checks
from flowstate.concurrency.slots import LeaseRow, LimitRow
from flowstate.errors import InvalidState

__all__ = [
    "TAG_PREFIX",
    "TASK_SLOT_LEASE_SECONDS",
    "ConcurrencyLimit",
    "check_tags",
    "slot_override",
    "tag_limit",
    "tag_limit_name",
    "tag_limit_value",
]

TAG_PREFIX = "tag:"
"""The name of a tag's limit is this prefix and the tag."""

TASK_SLOT_LEASE_SECONDS = 300.0
"""How long a task run's tag slot is held without renewal: the lease of a slot taken when a
task run enters RUNNING (and of one granted by ``reset_concurrency_limit(slot_override=...)``)
expires this long after it was taken or last renewed, and :meth:`~flowstate.Orchestrator.
expire_leases` then gives the slot back, so a task run whose process died keeps it no longer."""


class ConcurrencyLimit(BaseModel):
    """A tag limit (Prefect's V1 concurrency limit): at most ``concurrency_limit`` task runs
    tagged ``tag`` are RUNNING at once.

    ``active_slots`` lists the task runs holding a slot, one entry per lease (a task run that
    entered RUNNING twice without leaving it holds two). ``id`` is the id of the global limit
    ``tag:<tag>`` it is a view of. A negative limit restricts nothing; 0 makes every task run
    with the tag abort when it tries to run.
    """

    model_config = ConfigDict(frozen=True, defer_build=True)

    id: UUID
    tag: str
    concurrency_limit: int
    active_slots: list[UUID]
    created: UtcDateTime
    updated: UtcDateTime


def tag_limit_name(tag: str) -> str:
    """The name of the global limit that is ``tag``'s limit."""
    return TAG_PREFIX + tag


def tag_limit_value(value: Any) -> int:
    """A tag limit's value: any whole number a database column holds (Prefect's V1 route
    takes negative ones, which restrict nothing)."""
    ok = checks.is_number(value, whole=True) and (
        -validate.MAX_SQL_INT - 1 <= value <= validate.MAX_SQL_INT
    )
    checks.expect(
        ok, "limit", value,
        "a whole number (0 stops every task run with the tag, a negative number restricts "
        "nothing)",
    )
    return value


def check_tags(value: Any) -> list[str]:
    """A run's tags: None (no tags) or a list of str, each non-empty; duplicates dropped."""
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        raise InvalidState(f"tags must be a list of str, not {type(value).__name__}")
    return list(dict.fromkeys(checks.limit_name(tag, "tags") for tag in value))


def slot_override(value: Any) -> list[UUID] | None:
    """``reset_concurrency_limit``'s ``slot_override``: None or a list of task run ids."""
    if value is None:
        return None
    if not isinstance(value, list | tuple):
        raise InvalidState(
            f"slot_override must be a list of task run ids, not {type(value).__name__}"
        )
    return [validate.run_id(item, "slot_override") for item in value]


def tag_limit(row: LimitRow, leases: list[LeaseRow]) -> ConcurrencyLimit:
    """The tag view of the limit ``row`` held by ``leases`` (those of task runs are listed)."""
    holders = [
        UUID(lease.holder_id)
        for lease in leases
        if lease.holder_type == "task_run" and lease.holder_id is not None
    ]
    return ConcurrencyLimit(
        id=UUID(row.id),
        tag=row.name[len(TAG_PREFIX) :],
        concurrency_limit=row.limit,
        active_slots=holders,
        created=row.created,
        updated=row.updated,
    )

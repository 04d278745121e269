"""Reading and writing deployments, on either database (inside the caller's transaction).

A deployment row names the concurrency limit its flow runs share (``concurrency_limit_id``,
NULL: none) and what a run does when it is full. The statements are written with ``?``
placeholders; PostgreSQL's store converts them (``form``) and locks a row read for a change.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Self

from flowstate.store.limits import SqlRows
from flowstate.store.rows import encode_time, parse_time

__all__ = ["DeploymentRow", "DeploymentStore"]

COLUMNS = (
    "id, name, concurrency_limit_id, collision_strategy, grace_period_seconds, created, updated"
)
INSERT = f"INSERT INTO deployment ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING"
SELECT_BY_ID = f"SELECT {COLUMNS} FROM deployment WHERE id = ?"
SELECT_ALL = f"SELECT {COLUMNS} FROM deployment ORDER BY name"
UPDATE = (
    "UPDATE deployment SET concurrency_limit_id = ?, collision_strategy = ?, "
    "grace_period_seconds = ?, updated = ? WHERE id = ?"
)


@dataclass
class DeploymentRow:
    """One deployment as stored."""

    id: str
    name: str
    concurrency_limit_id: str | None
    collision_strategy: str | None
    grace_period_seconds: int | None
    created: datetime
    updated: datetime


class DeploymentStore(SqlRows):
    """The deployment rows of one store."""

    @classmethod
    def _in_memory(cls, store: Any) -> Self:
        from flowstate.store.memory_limits import MemoryDeploymentStore

        return MemoryDeploymentStore(store)  # type: ignore[return-value]

    def insert(self, row: DeploymentRow) -> bool:
        """Insert a new deployment; False if its name is taken (nothing written)."""
        return bool(self._execute(INSERT, _params(row)).rowcount > 0)

    def read(self, deployment_id: str, *, for_update: bool = False) -> DeploymentRow | None:
        statement = SELECT_BY_ID + (self._lock if for_update else "")
        row = self._execute(statement, (deployment_id,)).fetchone()
        return None if row is None else _deployment(row)

    def read_all(self) -> list[DeploymentRow]:
        return [_deployment(row) for row in self._execute(SELECT_ALL).fetchall()]

    def update(self, row: DeploymentRow) -> None:
        """Write the deployment's fields but its id, name and creation time."""
        _id, _name, *changed, _created, updated = _params(row)
        self._execute(UPDATE, (*changed, updated, row.id))


def _params(row: DeploymentRow) -> tuple[Any, ...]:
    return (
        row.id,
        row.name,
        row.concurrency_limit_id,
        row.collision_strategy,
        row.grace_period_seconds,
        encode_time(row.created),
        encode_time(row.updated),
    )


def _deployment(row: Any) -> DeploymentRow:
    id, name, limit_id, strategy, grace, created, updated = row
    return DeploymentRow(
        id, name, limit_id, strategy, grace, parse_time(created), parse_time(updated)  # type: ignore[arg-type]
    )

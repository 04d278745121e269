"""Reading and writing deployments, on either database (inside the caller's transaction).

A deployment row names the concurrency limit its flow runs share (``concurrency_limit_id``,
NULL: none) and what a run does when it is full. The statements are written with ``?``
placeholders; PostgreSQL's store converts them (``form``) and locks a row read for a change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flowstate.store.rows import encode_time, parse_time

__all__ = ["DeploymentRow", "DeploymentStore", "deployment_store"]

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


class DeploymentStore:
    """The deployment rows of one store (see :class:`flowstate.store.limits.LimitStore` for
    ``execute``, ``form`` and ``lock``)."""

    def __init__(
        self,
        execute: Callable[[str, Any], Any],
        *,
        form: Callable[[str], str] = str,
        lock: str = "",
    ) -> None:
        self._run = execute
        self._form = form
        self._lock = lock

    def _execute(self, statement: str, params: Any = ()) -> Any:
        return self._run(self._form(statement), params)

    def insert(self, row: DeploymentRow) -> bool:
        """Insert a new deployment; False if its name is taken (nothing written)."""
        cursor = self._execute(
            INSERT,
            (
                row.id,
                row.name,
                row.concurrency_limit_id,
                row.collision_strategy,
                row.grace_period_seconds,
                encode_time(row.created),
                encode_time(row.updated),
            ),
        )
        return bool(cursor.rowcount > 0)

    def read(self, deployment_id: str, *, for_update: bool = False) -> DeploymentRow | None:
        statement = SELECT_BY_ID + (self._lock if for_update else "")
        row = self._execute(statement, (deployment_id,)).fetchone()
        return None if row is None else _deployment(row)

    def read_all(self) -> list[DeploymentRow]:
        return [_deployment(row) for row in self._execute(SELECT_ALL).fetchall()]

    def update(self, row: DeploymentRow) -> None:
        self._execute(
            UPDATE,
            (
                row.concurrency_limit_id,
                row.collision_strategy,
                row.grace_period_seconds,
                encode_time(row.updated),
                row.id,
            ),
        )


def deployment_store(store: Any) -> DeploymentStore:
    """The :class:`DeploymentStore` of an orchestrator's store (SQLite, PostgreSQL or memory)."""
    from flowstate.store.memory import MemoryStore
    from flowstate.store.store import SqliteStore

    if isinstance(store, SqliteStore):
        return DeploymentStore(lambda statement, params: store.conn.execute(statement, params))
    if isinstance(store, MemoryStore):
        from flowstate.store.memory_limits import MemoryDeploymentStore

        return MemoryDeploymentStore(store)
    from flowstate.store.postgres.limits_sql import FOR_UPDATE, psycopg_form

    return DeploymentStore(store._execute, form=psycopg_form, lock=FOR_UPDATE)


def _deployment(row: Any) -> DeploymentRow:
    return DeploymentRow(
        id=row[0],
        name=row[1],
        concurrency_limit_id=row[2],
        collision_strategy=row[3],
        grace_period_seconds=row[4],
        created=parse_time(row[5]),  # type: ignore[arg-type]
        updated=parse_time(row[6]),  # type: ignore[arg-type]
    )

"""Whole-database checks shared by the reliability tests: nothing lost, nothing half-written."""

from __future__ import annotations

import multiprocessing
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

from tests.backends import (
    MISMATCHED_RUNS,
    is_postgres_url,
    postgres_assert_consistent,
    postgres_history_ids,
)


def mismatched_runs(conn: sqlite3.Connection) -> list[tuple[str, str | None, str | None]]:
    """Runs whose current state is not the newest entry of their history (should be none)."""
    found: list[tuple[str, str | None, str | None]] = []
    for table, fk in (("flow_run", "flow_run_id"), ("task_run", "task_run_id")):
        found += conn.execute(MISMATCHED_RUNS.format(table=table, fk=fk)).fetchall()
    return found


def assert_database_consistent(path: Path | str) -> None:
    """Integrity ok, no dangling rows, and every run row agrees with its history.

    ``path`` may be a PostgreSQL URL (``tests.backends``: the same checks, in its SQL)."""
    if isinstance(path, str) and is_postgres_url(path):
        postgres_assert_consistent(path)
        return
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        assert mismatched_runs(conn) == []
        shared = conn.execute(
            "SELECT id FROM flow_run_state INTERSECT SELECT id FROM task_run_state"
        ).fetchall()
        assert shared == []


def history_ids(path: Path | str) -> set[str]:
    """The ids of every state in every history."""
    if isinstance(path, str) and is_postgres_url(path):
        return postgres_history_ids(path)
    with closing(sqlite3.connect(path)) as conn:
        rows = conn.execute("SELECT id FROM flow_run_state UNION ALL SELECT id FROM task_run_state")
        return {row[0] for row in rows}


def race(drive: Callable[..., None], database: str, target_id: str, processes: int) -> tuple[set[str], int]:
    """Start ``processes`` forked ``drive(database, target_id, seed, start, results)`` at once
    (``start``: a barrier); each puts one report ``(kind, ids made, times refused)`` on
    ``results``. Checks that none failed; returns the ids made and the refusals counted."""
    fork = multiprocessing.get_context("fork")
    start, results = fork.Barrier(processes), fork.Queue()
    workers = [
        fork.Process(target=drive, args=(database, target_id, seed, start, results))
        for seed in range(processes)
    ]
    for worker in workers:
        worker.start()
    reports: list[Any] = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    assert [detail for kind, detail, _ in reports if kind == "error"] == []
    made = {run_id for _, ids, _ in reports for run_id in ids}
    return made, sum(refused for _, _, refused in reports)

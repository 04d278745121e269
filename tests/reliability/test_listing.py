"""Listing runs: filters, order, limit and offset are done by the database (both backends), and
on SQLite each filter is an equality an index serves."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from flowstate import InvalidState, Orchestrator
from flowstate.states import Completed, Pending, Running, Scheduled
from flowstate.store import sql


def _runs(orc: Orchestrator) -> list[tuple[str, str]]:
    """Six flow runs, oldest first: (id, state type), flows "a" and "b" taking turns."""
    made = []
    for index, state in enumerate((Scheduled(), Running(), Completed()) * 2):
        run = orc.create_flow_run(flow_name="ab"[index % 2], state=state)
        made.append((str(run.id), run.state_type.value))  # type: ignore[union-attr]
    return made


def test_flow_runs_filtered_ordered_and_paged(database: str) -> None:
    with Orchestrator(database) as orc:
        made = _runs(orc)
        ids = [run_id for run_id, _ in made]

        def listed(**kwargs: object) -> list[str]:
            return [str(run.id) for run in orc.read_flow_runs(**kwargs)]  # type: ignore[arg-type]

        assert listed() == ids
        assert listed(newest_first=True) == ids[::-1]
        assert listed(newest_first=True, limit=2, offset=1) == ids[::-1][1:3]
        assert listed(flow_name="a") == ids[0::2]
        assert listed(flow_name="b", newest_first=True) == ids[1::2][::-1]
        assert listed(state_type="COMPLETED", newest_first=True) == [ids[5], ids[2]]
        assert listed(state_type="RUNNING", flow_name="a") == [ids[4]]
        assert listed(flow_name="nobody") == []
        with pytest.raises(InvalidState, match="flow_name"):
            orc.read_flow_runs(flow_name=3)  # type: ignore[arg-type]


def test_task_runs_filtered_by_flow_name_and_newest_first(database: str) -> None:
    with Orchestrator(database) as orc:
        first = orc.create_flow_run(flow_name="a")
        second = orc.create_flow_run(flow_name="b")
        tasks = [
            orc.create_task_run(flow_run_id=parent.id, task_key=f"t{index}", state=Pending())
            for index, parent in enumerate((first, second, first))
        ]
        standalone = orc.create_task_run(state=Running())

        def listed(**kwargs: object) -> list[str]:
            return [run.task_key for run in orc.read_task_runs(**kwargs)]  # type: ignore[arg-type]

        assert listed(newest_first=True) == ["task", "t2", "t1", "t0"]
        assert listed(flow_name="a") == ["t0", "t2"]
        assert listed(flow_name="a", newest_first=True, limit=1) == ["t2"]
        assert listed(flow_name="b", state_type="PENDING") == ["t1"]
        assert listed(flow_run_id=first.id, newest_first=True, offset=1) == ["t0"]
        assert listed(state_type="RUNNING") == [standalone.task_key]
        assert tasks[0].task_key == "t0"


@pytest.mark.parametrize(
    "statement, index",
    [
        (sql.select_runs("flow", newest_first=True), "ix_flow_run_created"),
        (sql.select_runs("flow", state_type=True, newest_first=True), "ix_flow_run_type_created"),
        (sql.select_runs("flow", flow_name=True, newest_first=True), "ix_flow_run_flow_name"),
        (sql.select_runs("task", flow_run_id=True), "ix_task_run_flow_run"),
        (sql.select_runs("task", newest_first=True), "ix_task_run_created"),
    ],
)
def test_each_listing_is_served_by_an_index(tmp_path: Path, statement: str, index: str) -> None:
    """No listing scans the whole table (``(? IS NULL OR state_type = ?)`` did)."""
    path = tmp_path / "plan.db"
    Orchestrator(path).close()
    with closing(sqlite3.connect(path)) as conn:
        arguments = [None] * statement.count("?")
        steps = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {statement}", arguments)]
    assert any(f"USING INDEX {index}" in step for step in steps), steps
    assert "SCAN r" not in steps, steps  # a scan of the whole table, in no index's order
    assert "USE TEMP B-TREE FOR ORDER BY" not in steps, steps  # the index gives the order

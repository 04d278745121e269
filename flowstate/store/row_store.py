"""What the SQLite and PostgreSQL stores do alike: read and write rows through one connection.

Each backend gives this base its dialect (``_sql``: its module of SQL constants, with the same
names in both) and ``_execute`` (run one statement, give the cursor); it keeps for itself only
what truly differs: connecting, transactions and locking, and the statements whose shape differs
(a flow run's insert and update, the read of one run).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import partial
from json import loads
from types import ModuleType
from typing import Any, TypeVar
from uuid import UUID

from flowstate._models import set_fields
from flowstate.runs import FlowRun, TaskRun
from flowstate.states import State, StateType
from flowstate.store import rows
from flowstate.store.base import RunKind
from flowstate.store.lifecycle import ConnectionLifecycle

__all__ = ["RowStore"]

C = TypeVar("C")


class RowStore(ConnectionLifecycle[C]):
    """The reads and writes of rows both backends run alike, in their own SQL dialect."""

    _sql: ModuleType
    """The backend's SQL constants (``flowstate.store.sql`` or ``flowstate.store.postgres.sql``)."""
    _execute: Callable[..., Any]
    """Run one statement with its parameters; returns the cursor."""
    _write: Callable[..., Any]
    """``_execute`` for a write whose cursor is done with once it returns (its rowcount read
    at once, if at all): a backend may run these through one cursor of its own."""

    def _execute_on_runs(self, statement: str, params: Any = ()) -> Any:
        """``_execute`` for a statement that reads or deletes flow_run rows beyond one run's
        read: a layer that keeps runs (the run cache) writes what it holds back first."""
        return self._execute(statement, params)

    def _update_flow_run(self, row: tuple[Any, ...]) -> None:  # pragma: no cover - per backend
        """Execute UPDATE_FLOW_RUN for ``rows.flow_run_update_row``'s ``row``."""
        raise NotImplementedError

    # -- runs ------------------------------------------------------------------------------

    def _run_row(self, kind: RunKind, run_id: UUID) -> Any:  # pragma: no cover - per backend
        """The row of a run with its current state (``SELECT_FLOW_RUN``, ``SELECT_TASK_RUN``),
        or None."""
        raise NotImplementedError

    def read_flow_run(self, run_id: UUID) -> FlowRun | None:
        """The flow run with its current state, or None."""
        row = self._run_row("flow", run_id)
        return None if row is None else rows.flow_run_from_row(row)

    def read_flow_run_later(self, run_id: UUID) -> Callable[[], FlowRun] | None:
        """``read_flow_run``, its row read now and decoded by the function returned (after the
        commit, holding no lock)."""
        row = self._run_row("flow", run_id)
        return None if row is None else partial(rows.flow_run_from_row, row)

    def read_flow_run_parameters(self, run_id: UUID) -> dict[str, Any] | None:
        """A flow run's parameters alone (their column decoded), or None: no such run."""
        row = self._execute(self._sql.SELECT_FLOW_RUN_PARAMETERS, (str(run_id),)).fetchone()
        return None if row is None else loads(row[0])

    def working_flow_run(self, run_id: UUID) -> FlowRun | None:
        """``read_flow_run``: a plain store keeps no runs between reads, so every run it gives
        is the caller's own."""
        return self.read_flow_run(run_id)

    def insert_task_run(self, run: TaskRun) -> TaskRun | None:
        """Insert a new task run: what reading its row gives (``rows.task_run_from_insert_row``),
        or None if its id is taken (nothing written)."""
        row = self._insert_task_run_row(run)
        return None if row is None else rows.task_run_from_insert_row(run, row)

    def _insert_task_run_row(self, run: TaskRun) -> tuple[Any, ...] | None:
        """Insert a new task run; returns the row written, None if the id is taken."""
        row = rows.task_run_insert_row(run)
        written = self._write(self._sql.INSERT_TASK_RUN_IF_NEW, row).rowcount > 0
        return row if written else None

    def read_task_run(self, run_id: UUID) -> TaskRun | None:
        """The task run with its current state, or None."""
        row = self._run_row("task", run_id)
        return None if row is None else rows.task_run_from_row(row)

    def working_task_run(self, run_id: UUID) -> TaskRun | None:
        """``read_task_run`` (see ``working_flow_run``)."""
        return self.read_task_run(run_id)

    def read_flow_runs(
        self,
        *,
        state_type: StateType | None,
        limit: int | None,
        offset: int,
        flow_name: str | None = None,
        newest_first: bool = False,
    ) -> list[FlowRun]:
        """Flow runs in creation order (or newest first), optionally of one state type and/or
        one flow."""
        return self._read_runs("flow", None, state_type, flow_name, limit, offset, newest_first)

    def read_task_runs(
        self,
        *,
        flow_run_id: UUID | None,
        state_type: StateType | None,
        limit: int | None,
        offset: int,
        flow_name: str | None = None,
        newest_first: bool = False,
    ) -> list[TaskRun]:
        """Task runs in creation order (or newest first), optionally of one flow run, of the
        runs of one flow and/or of one state type."""
        return self._read_runs(
            "task", flow_run_id, state_type, flow_name, limit, offset, newest_first
        )

    def _read_runs(
        self,
        kind: RunKind,
        flow_run_id: UUID | None,
        state_type: StateType | None,
        flow_name: str | None,
        limit: int | None,
        offset: int,
        newest_first: bool,
    ) -> list[Any]:
        """``read_flow_runs`` or ``read_task_runs``: each filter given is a parameter, in the
        order ``select_runs`` takes them."""
        values = {
            "flow_run_id": None if flow_run_id is None else str(flow_run_id),
            "state_type": None if state_type is None else state_type.value,
            "flow_name": flow_name,
        }
        given = {name: value for name, value in values.items() if value is not None}
        statement = self._sql.select_runs(
            kind, **dict.fromkeys(given, True), newest_first=newest_first
        )
        limit_value = self._sql.NO_LIMIT if limit is None else limit
        cursor = self._execute_on_runs(statement, (*given.values(), limit_value, offset))
        decode = rows.flow_run_from_row if kind == "flow" else rows.task_run_from_row
        return [decode(row) for row in cursor]

    def delete_run(self, kind: RunKind, run_id: UUID) -> bool:
        """Delete a run with its history (and a flow run's task runs); False if there was none."""
        statement = self._sql.DELETE_FLOW_RUN if kind == "flow" else self._sql.DELETE_TASK_RUN
        return self._execute_on_runs(statement, (str(run_id),)).rowcount > 0  # type: ignore[no-any-return]

    def read_states(self, kind: RunKind, run_id: UUID) -> list[State]:
        """A run's state history, oldest first."""
        sql = self._sql
        statement = sql.SELECT_FLOW_RUN_STATES if kind == "flow" else sql.SELECT_TASK_RUN_STATES
        cursor = self._execute(statement, (str(run_id),))
        return [rows.state_from_row(row) for row in cursor]  # type: ignore[misc]

    def save_transition(
        self,
        kind: RunKind,
        run: FlowRun | TaskRun,
        updates: dict[str, Any],
        written: State | None,
        current_state_id: UUID | None,
        now: datetime,
    ) -> None:
        """Write a new state (if any) to the run's history and save the run with ``updates``
        applied (the run read for this transition, which no one else holds; each id encoded
        once: the state's row and the run's share their texts)."""
        set_fields(run, updates)
        if kind == "task":
            self._write_task_transition(str(run.id), updates, written, now)
            return
        run_id: str | None = None
        state_id: UUID | str | None = current_state_id
        if written is not None:
            state_row = rows.state_insert_row(run.id, written)
            self._execute(self._sql.INSERT_FLOW_RUN_STATE, state_row)
            run_id, state_id = state_row[0], state_row[1]  # (both ids, as text)
        self._update_flow_run(rows.flow_run_update_row(run, state_id, now, run_id=run_id))  # type: ignore[arg-type]

    def _write_task_transition(
        self, run_id: str, updates: dict[str, Any], written: State | None, now: datetime
    ) -> None:
        """Write a task run's transition under the text of its id, ``run_id``: its new state
        (if any), and in its row the columns the transition changed (``updates``), the new
        state's id and the time."""
        columns, values = rows.task_run_changes(updates)
        if written is not None:
            state_row = rows.state_insert_row(run_id, written)
            self._write(self._sql.INSERT_TASK_RUN_STATE, state_row)
            columns = ("state_id", *columns)
            values.insert(0, state_row[1])
        values += (rows.encode_time(now), run_id)
        self._write(self._sql.update_task_run(columns), values)

    # -- task cache ------------------------------------------------------------------------

    def insert_cache_entry(self, cache_key: str, expiration: datetime | None, state_id: UUID) -> None:
        """Remember a COMPLETED task state as the result for ``cache_key``."""
        params = (cache_key, rows.encode_time(expiration), str(state_id))
        self._write(self._sql.INSERT_CACHE_ENTRY, params)

    def read_cached_state(self, cache_key: str, now: datetime) -> State | None:
        """The newest cached state for ``cache_key`` that has not expired at ``now``."""
        params = (cache_key, rows.encode_time(now))
        row = self._execute(self._sql.SELECT_CACHED_STATE, params).fetchone()
        return None if row is None else rows.state_from_row(row)

    # -- run input -------------------------------------------------------------------------

    def insert_run_input(
        self, flow_run_id: UUID, key: str, value: str, sender: str | None, now: datetime
    ) -> bool:
        """Store run input; False if the key is taken (the old value is kept)."""
        params = (str(flow_run_id), key, value, sender, rows.encode_time(now))
        return self._execute(self._sql.INSERT_RUN_INPUT_IF_NEW, params).rowcount > 0  # type: ignore[no-any-return]

    def read_run_input(self, flow_run_id: UUID, key: str) -> str | None:
        """The stored value, or None."""
        row = self._execute(self._sql.SELECT_RUN_INPUT, (str(flow_run_id), key)).fetchone()
        return None if row is None else row[0]  # type: ignore[no-any-return]

    def read_run_inputs(self, flow_run_id: UUID, prefix: str) -> list[tuple[str, str, str | None]]:
        """(key, value, sender) of the inputs whose key starts with ``prefix``, oldest first."""
        params = (str(flow_run_id), len(prefix), prefix)
        found = self._execute(self._sql.SELECT_RUN_INPUTS_BY_PREFIX, params).fetchall()
        return [(key, value, sender) for key, value, sender in found]

    def delete_run_input(self, flow_run_id: UUID, key: str) -> bool:
        """Delete one key; False if there was none."""
        return self._execute(self._sql.DELETE_RUN_INPUT, (str(flow_run_id), key)).rowcount > 0  # type: ignore[no-any-return]

    # -- workers: due runs, lateness, heartbeats ------------------------------------------

    def due_flow_run_ids(self, now: datetime, limit: int) -> list[UUID]:
        """SCHEDULED flow runs whose scheduled time has come, oldest first (PostgreSQL: locked
        inside a transaction, skipping runs another transaction holds)."""
        params = (rows.encode_time(now), limit)
        return [UUID(row[0]) for row in self._execute_on_runs(self._sql.DUE_FLOW_RUN_IDS, params)]

    def late_candidate_ids(self, cutoff: datetime) -> list[UUID]:
        """Flow runs still named ``Scheduled`` whose scheduled time is at or before ``cutoff``
        (PostgreSQL: locked until the transaction ends)."""
        params = (rows.encode_time(cutoff),)
        return [UUID(row[0]) for row in self._execute_on_runs(self._sql.LATE_CANDIDATE_IDS, params)]

    def active_flow_run_liveness(self) -> list[tuple[UUID, datetime, float | None]]:
        """PENDING/RUNNING flow runs with their last sign of life (heartbeat, else state time)
        and their own heartbeat timeout, the longest silent first (PostgreSQL: locked until
        the transaction ends, then read)."""
        lock = self._sql.LOCK_ACTIVE_FLOW_RUNS
        if lock is not None and self.in_transaction:
            self._execute(lock, ())
        cursor = self._execute_on_runs(self._sql.SELECT_SILENT_FLOW_RUNS)
        return [(UUID(r[0]), rows.parse_time(r[1]), r[2]) for r in cursor]  # type: ignore[misc]

    def record_heartbeat(
        self,
        flow_run_id: UUID,
        *,
        worker: str | None = None,
        at: datetime | None = None,
        timeout_seconds: float | None = None,
    ) -> None:
        """Record liveness (and optionally the worker and the run's own heartbeat timeout)."""
        params = (str(flow_run_id), worker, rows.encode_time(at), timeout_seconds)
        self._execute(self._sql.UPSERT_HEARTBEAT, params)

    def read_heartbeat(
        self, flow_run_id: UUID
    ) -> tuple[str | None, datetime | None, float | None] | None:
        """(worker, last heartbeat, timeout seconds) of a flow run, or None."""
        row = self._execute(self._sql.SELECT_HEARTBEAT, (str(flow_run_id),)).fetchone()
        return None if row is None else (row[0], rows.parse_time(row[1]), row[2])

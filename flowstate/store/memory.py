"""The in-memory store: the store interface over plain dictionaries, no database.

It keeps models, not encoded rows: a run, a state or a policy is copied on the way in and on
the way out, so every reader gets its own objects and nothing a caller changes afterwards
reaches the store. It encodes nothing, so comparing an orchestrator on it with one on SQLite
or PostgreSQL (see :class:`flowstate.testing.ReferenceOrchestrator`) shows whatever those
databases' encoding changes.

Transactions are real: each write records how to undo itself in a journal, and leaving a
block (or a nested one) with an exception undoes what the block wrote. One lock, held by the
thread inside a transaction for the whole of it, serialises threads as the database stores'
connection lock does. The relations of the SQL schema hold as there: deleting a flow run
deletes its history, run input, heartbeat and task runs; a cache entry goes with its state.
"""

from __future__ import annotations

import threading
from copy import deepcopy
from collections.abc import Callable, Iterable
from datetime import datetime
from itertools import count
from typing import Any, TypeVar
from uuid import UUID

from flowstate.errors import DatabaseError
from flowstate.result_data import is_unpersisted
from flowstate.runs import FlowRun, TaskRun
from flowstate.states import State, StateType
from flowstate.store.base import SAVED_FIELDS, RunKind
from flowstate.store.lifecycle import ConnectionLifecycle

__all__ = ["MemoryStore", "Tables"]

K = TypeVar("K")
V = TypeVar("V")
M = TypeVar("M", FlowRun, TaskRun, State)

_ABSENT: Any = object()


def _copy(model: M) -> M:
    return model.model_copy(deep=True)


class Tables:
    """The store's rows: a dictionary per table, and the journal that undoes writes.

    Every write goes through :meth:`put` or :meth:`drop`, which record the old value while a
    transaction is open (``marks``: where each open block's part of the journal starts)."""

    def __init__(self) -> None:
        self.runs: dict[RunKind, dict[UUID, tuple[FlowRun | TaskRun, UUID | None]]] = {
            "flow": {}, "task": {}
        }
        """run id -> (the run without its state, its current state's id)."""
        self.states: dict[RunKind, dict[UUID, tuple[UUID, State]]] = {"flow": {}, "task": {}}
        """state id -> (its run's id, the state)."""
        self.cache: dict[int, tuple[str, datetime | None, UUID]] = {}
        """entry number (the newest: the highest) -> (cache key, expiration, task state id)."""
        self.inputs: dict[tuple[UUID, str], tuple[str, str | None, datetime]] = {}
        """(flow run id, key) -> (value, sender, created)."""
        self.heartbeats: dict[UUID, tuple[str | None, datetime | None, float | None]] = {}
        self.rows: dict[str, dict[str, Any]] = {
            "concurrency_limit": {}, "concurrency_lease": {}, "deployment": {}
        }
        """The rows of ``flowstate.store.limits``' tables, by table and id."""
        self.numbers = count(1)
        self.journal: list[tuple[dict[Any, Any], Any, Any]] = []
        self.marks: list[int] = []

    def put(self, table: dict[K, V], key: K, value: V) -> None:
        if self.marks:
            self.journal.append((table, key, table.get(key, _ABSENT)))
        table[key] = value

    def drop(self, table: dict[K, Any], key: K) -> bool:
        if key not in table:
            return False
        if self.marks:
            self.journal.append((table, key, table[key]))
        del table[key]
        return True

    def drop_where(self, table: dict[K, V], doomed: Callable[[K, V], bool]) -> None:
        for key in [key for key, value in table.items() if doomed(key, value)]:
            self.drop(table, key)

    def undo_to(self, mark: int) -> None:
        journal = self.journal
        while len(journal) > mark:
            table, key, old = journal.pop()
            if old is _ABSENT:
                del table[key]
            else:
                table[key] = old

    def close(self) -> None:
        self.journal.clear()


class MemoryStore(ConnectionLifecycle[Tables]):
    """The :class:`~flowstate.store.base.StoreBackend` interface over :class:`Tables`."""

    def __init__(self, path: str = "(in memory)") -> None:
        self._init_lifecycle(path)
        self._conn: Tables | None = Tables()

    # -- transactions ------------------------------------------------------------------------

    def begin(self) -> int:
        """Open a block (nested: a savepoint); returns the depth to hand to :meth:`end`."""
        lock = self._lock
        lock.acquire()
        try:
            tables = self.conn  # raises once the store is closed
        except BaseException:
            lock.release()
            raise
        depth = self._depth
        del tables.marks[depth:]
        tables.marks.append(len(tables.journal))
        self._owner = threading.get_ident()  # (first: see SqliteStore._open)
        self._depth = depth + 1
        return depth

    def end(self, depth: int, exc: BaseException | None) -> None:
        """Keep the block's writes (``exc`` None), else undo them."""
        try:
            self._depth = depth
            tables = self._conn
            if tables is None:
                return
            mark = tables.marks[depth]
            del tables.marks[depth:]
            if exc is not None:
                tables.undo_to(mark)
            if depth == 0:
                tables.journal.clear()
        finally:
            self._lock.release()

    def server_time(self) -> datetime | None:
        """None: the process's clock is the store's."""
        return None

    # -- runs ------------------------------------------------------------------------------

    def insert_flow_run(self, run: FlowRun) -> bool:
        """Insert a new flow run; False if its id is taken (nothing written)."""
        return self._insert("flow", run)

    def insert_task_run(self, run: TaskRun) -> TaskRun | None:
        """Insert a new task run: the run as a read gives it, or None if its id is taken
        (nothing written)."""
        if run.flow_run_id is not None and run.flow_run_id not in self.conn.runs["flow"]:
            raise DatabaseError(f"{self.path}: the task run's flow run does not exist")
        return self.read_task_run(run.id) if self._insert("task", run) else None

    def _insert(self, kind: RunKind, run: FlowRun | TaskRun) -> bool:
        tables = self.conn
        if run.id in tables.runs[kind]:
            return False
        stored = run.model_copy(deep=True, update={"state": None})
        tables.put(tables.runs[kind], run.id, (stored, None))
        return True

    def _read(self, kind: RunKind, run_id: UUID) -> FlowRun | TaskRun | None:
        tables = self.conn
        found = tables.runs[kind].get(run_id)
        if found is None:
            return None
        stored, state_id = found
        state = None if state_id is None else _copy(tables.states[kind][state_id][1])
        update: dict[str, Any] = {"state": state}
        if kind == "flow":
            update["estimated_run_time"] = stored.total_run_time
        return stored.model_copy(deep=True, update=update)

    def read_flow_run(self, run_id: UUID) -> FlowRun | None:
        """The flow run with its current state (a copy of its own), or None."""
        return self._read("flow", run_id)  # type: ignore[return-value]

    def read_flow_run_later(self, run_id: UUID) -> Callable[[], FlowRun] | None:
        """``read_flow_run`` now; the function returned gives the run."""
        run = self.read_flow_run(run_id)
        return None if run is None else (lambda: run)

    def read_flow_run_parameters(self, run_id: UUID) -> dict[str, Any] | None:
        """A flow run's parameters alone (a copy of their own), or None: no such run."""
        found = self.conn.runs["flow"].get(run_id)
        run = None if found is None else found[0]
        return deepcopy(run.parameters) if isinstance(run, FlowRun) else None

    def working_flow_run(self, run_id: UUID) -> FlowRun | None:
        """``read_flow_run``: every run handed out is the caller's own."""
        return self.read_flow_run(run_id)

    def read_task_run(self, run_id: UUID) -> TaskRun | None:
        """The task run with its current state (a copy of its own), or None."""
        return self._read("task", run_id)  # type: ignore[return-value]

    def working_task_run(self, run_id: UUID) -> TaskRun | None:
        """``read_task_run``: every run handed out is the caller's own."""
        return self.read_task_run(run_id)

    def _listed(
        self,
        kind: RunKind,
        keep: Callable[[Any], bool],
        limit: int | None,
        offset: int,
        newest_first: bool,
    ) -> list[Any]:
        found = [run for run, _ in self.conn.runs[kind].values() if keep(run)]
        found.sort(key=lambda run: (run.created, str(run.id)), reverse=newest_first)
        end = None if limit is None or limit < 0 else offset + limit
        return [self._read(kind, run.id) for run in found[offset:end]]

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

        def keep(run: FlowRun) -> bool:
            return (state_type is None or run.state_type is state_type) and (
                flow_name is None or run.flow_name == flow_name
            )

        return self._listed("flow", keep, limit, offset, newest_first)

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
        flows = self.conn.runs["flow"]

        def keep(run: TaskRun) -> bool:
            if flow_run_id is not None and run.flow_run_id != flow_run_id:
                return False
            if state_type is not None and run.state_type is not state_type:
                return False
            if flow_name is None:
                return True
            parent = flows.get(run.flow_run_id) if run.flow_run_id is not None else None
            return parent is not None and parent[0].flow_name == flow_name  # type: ignore[union-attr]

        return self._listed("task", keep, limit, offset, newest_first)

    def delete_run(self, kind: RunKind, run_id: UUID) -> bool:
        """Delete a run with its history (a flow run: its task runs, run input and heartbeat
        too); False if there was none."""
        tables = self.conn
        if not tables.drop(tables.runs[kind], run_id):
            return False
        tables.drop_where(tables.states[kind], lambda _, value: value[0] == run_id)
        if kind == "flow":
            tables.drop_where(tables.inputs, lambda key, _: key[0] == run_id)
            tables.drop(tables.heartbeats, run_id)
            tasks = [task_id for task_id, (task, _) in tables.runs["task"].items()
                     if task.flow_run_id == run_id]  # type: ignore[union-attr]
            for task_id in tasks:
                self.delete_run("task", task_id)
        return True

    def read_states(self, kind: RunKind, run_id: UUID) -> list[State]:
        """A run's state history, oldest first."""
        history = [s for owner, s in self.conn.states[kind].values() if owner == run_id]
        history.sort(key=lambda s: (s.timestamp, str(s.id)))
        return [_copy(state) for state in history]

    def save_transition(
        self,
        kind: RunKind,
        run: FlowRun | TaskRun,
        updates: dict[str, Any],
        written: State | None,
        current_state_id: UUID | None,
        now: datetime,
    ) -> None:
        """Write a new state (if any) to the run's history and save the run's fields changed
        by ``updates`` (those the databases' UPDATE statements write)."""
        tables = self.conn
        stored, _ = tables.runs[kind][run.id]
        if written is not None:
            self._insert_state(kind, run.id, written)
        saved_fields = SAVED_FIELDS[kind] & updates.keys()
        changes = deepcopy({name: updates[name] for name in saved_fields})
        changes["updated"] = now
        saved = stored.model_copy(update=changes)
        state_id = written.id if written is not None else current_state_id
        tables.put(tables.runs[kind], run.id, (saved, state_id))

    def _insert_state(self, kind: RunKind, run_id: UUID, written: State) -> None:
        """Add ``written`` to a run's history (refused as the databases' unique keys refuse)."""
        states = self.conn.states[kind]
        if written.id in states or any(
            owner == run_id and s.timestamp == written.timestamp for owner, s in states.values()
        ):
            raise DatabaseError(f"{self.path}: the run already has a state with that id or time")
        kept = _copy(written)
        if kept.data is not None and is_unpersisted(kept.data):
            kept = kept.model_copy(update={"data": None})
        self.conn.put(states, written.id, (run_id, kept))

    # -- task cache, run input -------------------------------------------------------------

    def insert_cache_entry(
        self, cache_key: str, expiration: datetime | None, state_id: UUID
    ) -> None:
        """Remember a COMPLETED task state as the result for ``cache_key``."""
        tables = self.conn
        if state_id not in tables.states["task"]:
            raise DatabaseError(f"{self.path}: the cached state does not exist")
        tables.put(tables.cache, next(tables.numbers), (cache_key, expiration, state_id))

    def read_cached_state(self, cache_key: str, now: datetime) -> State | None:
        """The newest cached state for ``cache_key`` that has not expired at ``now``."""
        tables = self.conn
        states = tables.states["task"]
        for number in sorted(tables.cache, reverse=True):
            key, expiration, state_id = tables.cache[number]
            if key == cache_key and (expiration is None or expiration > now):
                found = states.get(state_id)
                if found is not None:  # (an entry goes with its state)
                    return _copy(found[1])
        return None

    def insert_run_input(
        self, flow_run_id: UUID, key: str, value: str, sender: str | None, now: datetime
    ) -> bool:
        """Store run input; False if the key is taken (the old value is kept)."""
        tables = self.conn
        if flow_run_id not in tables.runs["flow"]:
            raise DatabaseError(f"{self.path}: the run input's flow run does not exist")
        if (flow_run_id, key) in tables.inputs:
            return False
        tables.put(tables.inputs, (flow_run_id, key), (value, sender, now))
        return True

    def read_run_input(self, flow_run_id: UUID, key: str) -> str | None:
        """The stored value, or None."""
        found = self.conn.inputs.get((flow_run_id, key))
        return None if found is None else found[0]

    def read_run_inputs(self, flow_run_id: UUID, prefix: str) -> list[tuple[str, str, str | None]]:
        """(key, value, sender) of the inputs whose key starts with ``prefix``, oldest first
        (ties in order of key)."""
        found = [
            (created, key, value, sender)
            for (run_id, key), (value, sender, created) in self.conn.inputs.items()
            if run_id == flow_run_id and key.startswith(prefix)
        ]
        found.sort(key=lambda entry: (entry[0], entry[1]))
        return [(key, value, sender) for _, key, value, sender in found]

    def delete_run_input(self, flow_run_id: UUID, key: str) -> bool:
        """Delete one key; False if there was none."""
        tables = self.conn
        return tables.drop(tables.inputs, (flow_run_id, key))

    # -- workers -----------------------------------------------------------------------------

    def _flow_runs(self) -> Iterable[tuple[FlowRun, UUID | None]]:
        return self.conn.runs["flow"].values()  # type: ignore[return-value]

    def _scheduled(self, until: datetime, name: str | None) -> list[UUID]:
        found = [
            (run.next_scheduled_start_time, str(run.id), run.id)
            for run, _ in self._flow_runs()
            if run.state_type is StateType.SCHEDULED
            and (name is None or run.state_name == name)
            and run.next_scheduled_start_time is not None
            and run.next_scheduled_start_time <= until
        ]
        found.sort()
        return [run_id for _, _, run_id in found]

    def due_flow_run_ids(self, now: datetime, limit: int) -> list[UUID]:
        """SCHEDULED flow runs whose time has come, oldest first."""
        return self._scheduled(now, None)[:limit]

    def late_candidate_ids(self, cutoff: datetime) -> list[UUID]:
        """Flow runs still named ``Scheduled`` whose scheduled time is at or before ``cutoff``."""
        return self._scheduled(cutoff, "Scheduled")

    def active_flow_run_liveness(self) -> list[tuple[UUID, datetime, float | None]]:
        """PENDING/RUNNING flow runs with their last sign of life and own heartbeat timeout."""
        tables = self.conn
        found = []
        for run, state_id in self._flow_runs():
            if run.state_type not in (StateType.PENDING, StateType.RUNNING) or state_id is None:
                continue
            _, last, timeout = tables.heartbeats.get(run.id, (None, None, None))
            if last is None:
                last = tables.states["flow"][state_id][1].timestamp
            found.append((last, str(run.id), run.id, timeout))
        found.sort(key=lambda entry: (entry[0], entry[1]))
        return [(run_id, last, timeout) for last, _, run_id, timeout in found]

    def record_heartbeat(
        self,
        flow_run_id: UUID,
        *,
        worker: str | None = None,
        at: datetime | None = None,
        timeout_seconds: float | None = None,
    ) -> None:
        """Record liveness (and optionally the worker and the run's own heartbeat timeout)."""
        tables = self.conn
        if flow_run_id not in tables.runs["flow"]:
            raise DatabaseError(f"{self.path}: the heartbeat's flow run does not exist")
        old_worker, old_at, old_timeout = tables.heartbeats.get(flow_run_id, (None, None, None))
        tables.put(tables.heartbeats, flow_run_id, (
            old_worker if worker is None else worker,
            old_at if at is None else at,
            old_timeout if timeout_seconds is None else timeout_seconds,
        ))

    def read_heartbeat(
        self, flow_run_id: UUID
    ) -> tuple[str | None, datetime | None, float | None] | None:
        """(worker, last heartbeat, timeout seconds) of a flow run, or None."""
        return self.conn.heartbeats.get(flow_run_id)

"""The store interface every backend implements (SQLite: :class:`~flowstate.store.Store`,
PostgreSQL: :class:`~flowstate.store.postgres.PostgresStore`, and dictionaries in memory:
:class:`~flowstate.store.memory.MemoryStore`, which ``ReferenceOrchestrator`` runs on).

A :class:`typing.Protocol`: the backends do not inherit from it, so the SQLite hot path pays
nothing for it; the orchestrator is typed against it and a type checker (and one test) verifies
that every backend satisfies it.

Contract, whatever the backend:

- Every read and write runs inside a transaction opened with :meth:`StoreBackend.transaction`
  (or the ``begin``/``end`` pair the orchestrator's own context manager uses). Transactions
  nest as savepoints; an exception rolls the innermost block back and leaves translated. One
  API call inside a block uses ``begin_call``/``end_call``, which may skip its savepoint.
- Inside a transaction, reading a run (``read_flow_run``/``read_task_run``) guarantees that no
  other connection can change that run until the transaction ends: the read-decide-write of one
  transition cannot race. (SQLite takes the database's write lock at BEGIN; PostgreSQL locks the
  run's row.)
- Database errors leave as :class:`~flowstate.DatabaseError` (``DatabaseBusy`` when a lock was
  not granted within ``busy_timeout``), with the driver's exception chained.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Literal, Protocol
from uuid import UUID

from flowstate.runs import SAVED_FIELDS, FlowRun, TaskRun
from flowstate.states import State, StateType

__all__ = ["SAVED_FIELDS", "RunKind", "StoreBackend"]

RunKind = Literal["flow", "task"]


class StoreBackend(Protocol):
    """What the orchestrator needs from a database."""

    path: str
    """The database as shown to users (a file path, or a URL with its password masked)."""

    # -- lifecycle and transactions ------------------------------------------------------------

    def close(self) -> None:
        """Release the connection; further use raises DatabaseError."""

    @property
    def in_transaction(self) -> bool:
        """Whether the calling thread is inside a transaction of this store."""

    def transaction(self) -> AbstractContextManager[Any]:
        """BEGIN ... COMMIT (a savepoint when nested); rolled back on error."""

    def begin(self) -> int:
        """Open a transaction or savepoint; returns the depth to hand to :meth:`end`."""

    def end(self, depth: int, exc: BaseException | None) -> None:
        """Commit or release (``exc`` None), else roll back and re-raise ``exc`` translated."""

    def begin_call(self) -> int:
        """``begin`` for one API call that checks its input before its first write. Nested,
        a store may open no savepoint for it; then a database error after the call's first
        write dooms the enclosing block, which raises ``DatabaseError`` and rolls back when it
        ends (SQLite does this; PostgreSQL keeps a savepoint per call). Writes made while
        deciding come after ``protect_call``, so a rule's error or a refusal after them
        undoes just the call."""

    def begin_read(self) -> int:
        """``begin_call`` for a call that only reads: it need not lock anything a writer
        waits for (SQLite: a read transaction, beside the writer in WAL mode)."""

    def end_call(self, token: int, exc: BaseException | None) -> None:
        """End a ``begin_call`` or ``begin_read`` (``token`` is what it returned)."""

    def protect_call(self) -> None:
        """Before a call's first write while it decides (concurrency slots): from here on, the
        call failing undoes only what it wrote, and its block goes on."""

    # -- runs ------------------------------------------------------------------------------------

    def insert_flow_run(self, run: FlowRun) -> bool:
        """Insert a new flow run; False if its id is taken (nothing written)."""

    def insert_task_run(self, run: TaskRun) -> TaskRun | None:
        """Insert a new task run (as ``create_task_run`` builds it: no state yet, its counts 0,
        no run times and no cache key): the run as reading it back gives it (equal, field by
        field and in the fields it counts as set), or None if its id is taken (nothing
        written)."""

    def read_flow_run(self, run_id: UUID) -> FlowRun | None:
        """The flow run with its current state (locked until the transaction ends), or None."""

    def read_flow_run_later(self, run_id: UUID) -> Callable[[], FlowRun] | None:
        """``read_flow_run`` for an answer: the run is read now, inside the transaction, and
        built by the function returned, which may be called after the commit, so building it
        holds no lock (None: no such run)."""

    def read_flow_run_parameters(self, run_id: UUID) -> dict[str, Any] | None:
        """A flow run's parameters alone, the caller's own, or None: no such run. What a
        rule's copy of a run read without them (``working_flow_run``) reads."""

    def working_flow_run(self, run_id: UUID) -> FlowRun | None:
        """``read_flow_run`` for a transition: the run may be the store's own cached object,
        which the caller only reads (a rule gets a copy of its own: ``ctx.run``) and passes to
        ``save_transition`` in the same transaction; it must not keep it afterwards. Its
        parameters may be left out (empty): a transition does not read them."""

    def read_task_run(self, run_id: UUID) -> TaskRun | None:
        """The task run with its current state (locked until the transaction ends), or None."""

    def working_task_run(self, run_id: UUID) -> TaskRun | None:
        """``read_task_run`` for a transition, on the terms of ``working_flow_run``."""

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
        one flow; filters, order, limit and offset are applied in SQL."""

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
        runs of one flow and/or of one state type; all in SQL."""

    def delete_run(self, kind: RunKind, run_id: UUID) -> bool:
        """Delete a run with its history; False if there was none."""

    def read_states(self, kind: RunKind, run_id: UUID) -> list[State]:
        """A run's state history, oldest first."""

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
        (its fields a transition changed) applied: ``run`` is the one ``working_flow_run`` or
        ``working_task_run`` gave for this transition, and the store's from now on."""

    # -- task cache, run input ---------------------------------------------------------------------

    def insert_cache_entry(
        self, cache_key: str, expiration: datetime | None, state_id: UUID
    ) -> None:
        """Remember a COMPLETED task state as the result for ``cache_key``."""

    def read_cached_state(self, cache_key: str, now: datetime) -> State | None:
        """The newest cached state for ``cache_key`` that has not expired at ``now``."""

    def insert_run_input(
        self, flow_run_id: UUID, key: str, value: str, sender: str | None, now: datetime
    ) -> bool:
        """Store run input; False if the key is taken (the old value is kept)."""

    def read_run_input(self, flow_run_id: UUID, key: str) -> str | None:
        """The stored value, or None."""

    def read_run_inputs(self, flow_run_id: UUID, prefix: str) -> list[tuple[str, str, str | None]]:
        """(key, value, sender) of the inputs whose key starts with ``prefix``, oldest first
        (ties in order of key)."""

    def delete_run_input(self, flow_run_id: UUID, key: str) -> bool:
        """Delete one key; False if there was none."""

    # -- workers -----------------------------------------------------------------------------------

    def due_flow_run_ids(self, now: datetime, limit: int) -> list[UUID]:
        """SCHEDULED flow runs whose time has come, oldest first, none claimed by another."""

    def late_candidate_ids(self, cutoff: datetime) -> list[UUID]:
        """Flow runs still named ``Scheduled`` whose scheduled time is at or before ``cutoff``."""

    def active_flow_run_liveness(self) -> list[tuple[UUID, datetime, float | None]]:
        """PENDING/RUNNING flow runs with their last sign of life and own heartbeat timeout."""

    def record_heartbeat(
        self,
        flow_run_id: UUID,
        *,
        worker: str | None = None,
        at: datetime | None = None,
        timeout_seconds: float | None = None,
    ) -> None:
        """Record liveness (and optionally the worker and the run's own heartbeat timeout)."""

    def read_heartbeat(
        self, flow_run_id: UUID
    ) -> tuple[str | None, datetime | None, float | None] | None:
        """(worker, last heartbeat, timeout seconds) of a flow run, or None."""

    def server_time(self) -> datetime | None:
        """The database server's clock (UTC), inside a transaction; None when the database has
        no clock of its own (SQLite: the process's clock is the database's)."""

"""The run cache: the SQLite store with the flow runs it last read or wrote kept decoded, and
the task runs transitions work on.

:class:`Store` is :class:`~flowstate.store.store.SqliteStore` with this layer over it, and the
store the orchestrator opens for a SQLite database. The layer alone knows that runs are kept:

- it checks ``PRAGMA data_version`` at each BEGIN; when another connection has committed since,
  a kept flow run is used again only once its row, read anew, is found to be the very row the
  run was decoded from or last saved as (:meth:`Store._verified`): a commit to other runs
  costs a run's read, not its decoding. It forgets every run after a rollback, a failed call
  inside a block, or a delete;
- inside a block of several calls a cached run's UPDATE waits (a run that moves through
  several states in one block has its row written once); ``_flushed`` is the one point the
  waiting UPDATEs are written: before a statement that reads or deletes flow_run rows beyond
  one run's read, before a savepoint, and at the commit;
- a transition reads the cached run itself (``working_flow_run``: rules get copies of their
  own) and saving it applies the transition's changes to it in place; a reader gets the run's
  row decoded, as a fresh read decodes it: the row this connection last read or wrote
  (:meth:`_CachedFlowRun.stored_row`, its waiting UPDATE written first), so a read equals a
  fresh read by construction.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from functools import partial
from json import loads
from typing import Any
from uuid import UUID

from flowstate._models import set_fields
from flowstate.runs import FlowRun, TaskRun
from flowstate.states import State
from flowstate.store import rows, sql
from flowstate.store.base import SAVED_FIELDS, RunKind
from flowstate.store.connection import Synchronous
from flowstate.store.store import SqliteStore

__all__ = ["RUN_CACHE_SIZE", "Store"]

_get_ident = threading.get_ident

_SAVED_FLOW, _SAVED_TASK = SAVED_FIELDS["flow"], SAVED_FIELDS["task"]

RUN_CACHE_SIZE = 16
"""Flow runs kept decoded between calls (the most recently read or written ones)."""


class _CachedFlowRun:
    """A flow run decoded from its row, with the row it came from.

    A transition reads ``run`` itself (:meth:`Store.working_flow_run`) and saving applies its
    changes to it in place. Readers never get ``run``: they get the row decoded
    (:meth:`Store.read_flow_run`). Only runs whose current state is deeply immutable (no
    result data, no run input keyset) are kept, so a rule's copy of ``run`` can share it.
    """

    __slots__ = (
        "run", "parameters", "policy", "id_text", "policy_object", "pending",
        "policy_dirty", "row", "update", "state_row", "seen",
    )

    def __init__(
        self,
        run: FlowRun,
        parameters: str | None,
        policy: str,
        id_text: str,
        row: tuple[Any, ...],
        seen: int | None,
    ) -> None:
        self.run = run
        self.parameters: str | None = parameters
        """The parameters' JSON (None: not read, see Store._fetch_flow_run and _verified)."""
        self.policy: str | None = policy
        """The policy's JSON (None: not encoded yet, after a deferred update)."""
        self.id_text = id_text
        self.policy_object = run.empirical_policy
        """The policy ``policy`` encodes: a transition that replaced it must encode the new one."""
        self.pending: tuple[str | None, datetime] | None = None
        """The run's UPDATE not executed yet (its state id and time), see Store._flushed."""
        self.policy_dirty = False
        """Whether that update must write the policy too (a transition replaced it)."""
        self.row = row
        """The run's SELECT_FLOW_RUN_LEAN row as this connection read or inserted it."""
        self.update: tuple[Any, ...] | None = None
        """The last UPDATE of the run's row this connection wrote since (a
        ``flow_run_update_row``: every column a transition sets), or None."""
        self.state_row: tuple[Any, ...] | None = None
        """The last state this connection wrote for the run since (a ``state_insert_row``:
        its current state once ``update`` is written), or None."""
        self.seen = seen
        """The ``PRAGMA data_version`` at which the run's row was known to be ``stored_row()``:
        while the connection's data_version is still that, no other connection changed it."""

    def stored_row(self) -> tuple[Any, ...]:
        """The run's SELECT_FLOW_RUN_LEAN row as this connection last read or wrote it (with
        no UPDATE waiting: ``pending`` None)."""
        row, update, state = self.row, self.update, self.state_row
        if update is not None:  # state id .. policy: its first ten values; updated: its 11th
            row = (*row[:5], *update[:10], *row[15:19], update[10], *row[20:])
        if state is not None:
            row = (*row[:20], *state[1:])
        return row


_NO_STATE = (None,) * rows.STATE_WIDTH


def _immutable(state: State | None) -> bool:
    return state is None or (state.data is None and state.state_details.run_input_keyset is None)


class Store(SqliteStore):
    """One SQLite database with the run cache over it (see the module's documentation)."""

    def __init__(
        self, path: str, *, busy_timeout: float = 30.0, synchronous: Synchronous = "NORMAL"
    ) -> None:
        # Flow runs as last read or written by this connection; valid while no other
        # connection has committed (PRAGMA data_version, checked at each BEGIN).
        self._runs: dict[int, _CachedFlowRun] = {}  # by UUID.int: hashing an int is cheaper
        self._data_version: int | None = None
        # Task runs a transition works on (see working_task_run), as the last one left them,
        # each with its id's text (what its rows are written under).
        self._tasks: dict[int, tuple[TaskRun, str]] = {}
        # Entries holding a run's UPDATE that waits for the block's commit (see _flushed).
        self._dirty: list[_CachedFlowRun] = []
        self._defer = False  # inside a block of several calls: updates wait
        # Rows changed by writing waiting updates, and transitions saved into kept runs: a
        # call inside a block that fails changed something only if rows changed other than
        # by the waiting updates it wrote (earlier calls' changes), or a kept run was saved
        # (see _changes)
        self._waiting_written = 0
        self._saves = 0
        super().__init__(path, busy_timeout=busy_timeout, synchronous=synchronous)

    # -- transactions: where the cache is checked, flushed and forgotten -----------------------

    def _start(self, begin: str) -> None:
        SqliteStore._start(self, begin)
        # If another connection committed since this one last began, forget the task runs;
        # flow runs stay, each checked against its row before its next use (see _verified).
        # (fetchall: the statement runs to its end, so the cursor holds none in progress.)
        version = self._control.execute(sql.DATA_VERSION).fetchall()[0][0]
        if version != self._data_version:
            self._tasks.clear()
            self._data_version = version

    def _abandon(self) -> None:
        self._forget_runs()
        SqliteStore._abandon(self)

    def begin(self) -> int:
        depth = SqliteStore.begin(self)
        if depth == 0:
            self._defer = True  # a block (begin_call says when it is one call)
        return depth

    def _before_savepoint(self) -> None:
        self._flushed()  # a rollback to the savepoint must not lose the waiting updates

    def begin_call(self) -> int:
        token = SqliteStore.begin_call(self)
        if token >= 0:
            self._defer = False  # one call: its commit follows at once
        return token

    def begin_read(self) -> int:
        token = SqliteStore.begin_read(self)
        if token >= 0:
            self._defer = False
        return token

    def end_call(self, token: int, exc: BaseException | None) -> None:
        if exc is not None and token < 0 and self._halfway(token):
            self._forget_all()  # the call changed runs halfway: its block will roll back
        SqliteStore.end_call(self, token, exc)

    def _changes(self) -> int:
        """The rows this connection changed, but by writing waiting updates (those are the
        changes of earlier calls), and the transitions saved into kept runs."""
        return self.conn.total_changes - self._waiting_written + self._saves

    def end(self, depth: int, exc: BaseException | None) -> None:
        failed = None
        if exc is None and depth == 0 and not self._doomed:
            try:
                self._flushed()
            except BaseException as error:  # (rolled back below, and raised translated)
                exc = failed = error
        try:
            SqliteStore.end(self, depth, exc)
        except BaseException:
            self._forget_all()
            raise
        if exc is not None:
            self._forget_all()
            if failed is not None:
                raise failed

    # -- deferred run updates ----------------------------------------------------------------

    def _flushed(self) -> None:
        """Execute the run UPDATEs still waiting (see ``_dirty``): the one point they are
        written, before a statement that reads or deletes flow_run rows beyond the cache, a
        savepoint, or the commit."""
        if self._dirty:
            dirty, self._dirty = self._dirty, []
            try:
                for cached in dirty:  # each holds a waiting update (see _forget)
                    self._write_waiting(cached)
            except BaseException:  # those not written wait still: the commit tries again
                self._dirty = [cached for cached in dirty if cached.pending is not None]
                raise

    def _execute_on_runs(self, statement: str, params: Any = ()) -> Any:
        self._flushed()
        return self._execute(statement, params)

    def _write_waiting(self, cached: _CachedFlowRun) -> None:
        """Write the update that waits for the block's commit (counted: see _changes)."""
        conn = self.conn
        before = conn.total_changes
        self._write_pending(cached)
        self._waiting_written += conn.total_changes - before

    def _write_pending(self, cached: _CachedFlowRun) -> None:
        """Execute one run's waiting UPDATE (``cached.pending``)."""
        state_id, updated = cached.pending  # type: ignore[misc]
        row = rows.flow_run_update_row(cached.run, state_id, updated, cached.policy, cached.id_text)
        self._update_flow_run(row, cached.policy_dirty)
        cached.policy_dirty = False
        cached.pending = None
        cached.policy = row[9]
        cached.update = row

    # -- keeping and forgetting runs ---------------------------------------------------------

    def _forget_all(self) -> None:
        """Drop the cache after a rollback, waiting updates included (they were rolled back)."""
        self._forget_runs()
        self._dirty.clear()

    def _forget_runs(self) -> None:
        """Drop every kept flow and task run (not the waiting updates: see ``_forget_all``)."""
        self._runs.clear()
        self._tasks.clear()

    def _forget(self, key: int) -> None:
        """Drop one run from the cache, writing its waiting update first."""
        self._write_now(self._runs.pop(key))

    def _write_now(self, cached: _CachedFlowRun) -> None:
        """Write the run's waiting update, if it has one, before the block's commit."""
        if cached.pending is not None:
            self._write_waiting(cached)
            self._dirty.remove(cached)  # (holding it there would keep the run alive till commit)

    def _caching(self) -> bool:
        """Whether the cache may be used: inside this thread's transaction (data_version checked)."""
        if self._depth > 0 and self._owner == _get_ident():
            return True
        self._forget_runs()  # a write outside a transaction: forget everything
        return False

    def _remember(self, run: FlowRun, row: Any) -> None:
        """Cache ``run``, decoded from ``row`` (a SELECT_FLOW_RUN(_LEAN) row: its parameters
        None if not read; or an insert row, with its state's columns None)."""
        runs = self._runs
        key = run.id.int
        if key in runs:
            self._forget(key)
        if _immutable(run.state):
            lean = (*row[:3], None, *row[4:])  # (as SELECT_FLOW_RUN_LEAN reads it)
            runs[key] = _CachedFlowRun(run, row[3], row[14], row[0], lean, self._data_version)
            while len(runs) > RUN_CACHE_SIZE:  # the least recently used go
                self._forget(next(iter(runs)))

    # -- runs --------------------------------------------------------------------------------

    def insert_flow_run(self, run: FlowRun) -> bool:
        row = self._insert_flow_run_row(run)
        if row is None:
            return False
        if self._caching():
            # what reading the row back builds, decoded as a read decodes it (no state yet)
            read = (*row, *_NO_STATE)
            self._remember(rows.flow_run_from_row(read), read)
        return True

    def read_flow_run(self, run_id: UUID) -> FlowRun | None:
        """The flow run with its current state, or None: its row decoded (a kept run's row as
        this connection last read or wrote it). The caller may change the run."""
        caching = self._caching()
        row = self._kept_row(run_id) if caching else None
        if row is None:
            row = self._execute(sql.SELECT_FLOW_RUN, (str(run_id),)).fetchone()
            if row is None:
                return None
            run = rows.flow_run_from_row(row)
            if not (caching and _immutable(run.state)):
                return run
            self._remember(run, row)  # kept for transitions: the reader gets a run of its own
        return rows.flow_run_from_row(row)

    def read_flow_run_later(self, run_id: UUID) -> Callable[[], FlowRun] | None:
        """``read_flow_run`` for an answer: the run's row (a kept run's as this connection last
        read or wrote it), decoded by the function returned, after the commit."""
        row = self._kept_row(run_id) if self._caching() else None
        if row is None:
            return SqliteStore.read_flow_run_later(self, run_id)
        return partial(rows.flow_run_from_row, row)

    def read_flow_run_parameters(self, run_id: UUID) -> dict[str, Any] | None:
        """A flow run's parameters alone: from the JSON a kept run keeps, when it has it, else
        read."""
        if self._caching():
            cached = self._runs.get(run_id.int)
            if cached is not None and cached.parameters is not None:
                if cached.seen == self._data_version:
                    return loads(cached.parameters)
        return SqliteStore.read_flow_run_parameters(self, run_id)

    def _kept_row(self, run_id: UUID) -> tuple[Any, ...] | None:
        """The SELECT_FLOW_RUN row of a kept run as this connection last read or wrote it (its
        waiting UPDATE written first), or None: the run is not kept, or another connection may
        have changed it (then it is forgotten)."""
        cached = self._runs.get(run_id.int)
        if cached is None:
            return None
        if cached.seen != self._data_version:
            self._forget(run_id.int)
            return None
        self._write_now(cached)
        if cached.parameters is None:  # (not read with the run: see _verified)
            row = self._execute(sql.SELECT_FLOW_RUN_PARAMETERS, (cached.id_text,)).fetchone()
            cached.parameters = row[0]
        row = cached.stored_row()
        return (*row[:3], cached.parameters, *row[4:])

    def working_flow_run(self, run_id: UUID) -> FlowRun | None:
        """The flow run for a transition: the cached run itself, when there is one (see
        :meth:`StoreBackend.working_flow_run`), else a fresh read."""
        if self._depth > 0 and self._owner == _get_ident():  # (_caching(), written out)
            cached = self._runs.get(run_id.int)
            if cached is not None:
                if cached.seen == self._data_version:
                    return cached.run
                return self._verified(cached)
            return self._fetch_flow_run(run_id, True)
        return self._fetch_flow_run(run_id, self._caching())

    def _verified(self, cached: _CachedFlowRun) -> FlowRun | None:
        """``working_flow_run`` of a kept run that another connection may have changed: the
        kept run if its row, read now, is the very row it stands for (every column a
        transition reads: the run's, its policy, tags and current state), else the row
        decoded (None: the run is gone)."""
        row = self._execute(sql.SELECT_FLOW_RUN_LEAN, (cached.id_text,)).fetchone()
        if row == cached.stored_row():
            cached.row, cached.update, cached.state_row = row, None, None
            cached.seen = self._data_version
            cached.parameters = None  # (not in that row: read again when a reader needs them)
            return cached.run
        self._forget(cached.run.id.int)
        return None if row is None else self._decoded(row, True)

    def _fetch_flow_run(self, run_id: UUID, caching: bool) -> FlowRun | None:
        """Read a flow run for a transition from its row, and cache it when ``caching`` and its
        state allow. A transition reads no parameters (the run has none; a rule's copy of the
        run and a reader read them when needed), so its cost does not grow with them."""
        row = self._execute(sql.SELECT_FLOW_RUN_LEAN, (str(run_id),)).fetchone()
        return None if row is None else self._decoded(row, caching)

    def _decoded(self, row: Any, caching: bool) -> FlowRun:
        """The flow run of a SELECT_FLOW_RUN(_LEAN) ``row``, cached when ``caching`` and its
        state allow."""
        run = rows.flow_run_from_row(row)
        if caching and _immutable(run.state):
            self._remember(run, row)
        return run

    def insert_task_run(self, run: TaskRun) -> TaskRun | None:
        row = self._insert_task_run_row(run)
        if row is None:
            return None
        inserted = rows.task_run_from_insert_row(run, row)  # what reading it gives
        if self._caching():  # (the caller gets a run of its own)
            self._keep_task(rows.task_run_copy(inserted), row[0])
        return inserted

    def working_task_run(self, run_id: UUID) -> TaskRun | None:
        """The task run for a transition: the one the last transition left,
        when there is one (see :meth:`StoreBackend.working_task_run`), else a fresh read.
        Readers (``read_task_run``) always get the row decoded."""
        if self._caching():
            kept = self._tasks.get(run_id.int)
            if kept is not None:
                return kept[0]
            run = SqliteStore.read_task_run(self, run_id)
            if run is not None and _immutable(run.state):
                self._keep_task(run, str(run_id))
            return run
        return SqliteStore.read_task_run(self, run_id)

    def _keep_task(self, run: TaskRun, id_text: str) -> None:
        tasks = self._tasks
        tasks[run.id.int] = (run, id_text)
        if len(tasks) > RUN_CACHE_SIZE:
            del tasks[next(iter(tasks))]  # the least recently kept

    def delete_run(self, kind: RunKind, run_id: UUID) -> bool:
        self._forget_runs()
        return SqliteStore.delete_run(self, kind, run_id)

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
        applied: a run the cache keeps through the cache."""
        if self._depth > 0 and self._owner == _get_ident():  # (_caching(), written out)
            key = run.id.int
            if kind == "flow":
                cached = self._runs.get(key)
                if cached is not None:
                    if cached.run is run:
                        self._save_cached_flow_run(cached, updates, written, current_state_id, now)
                        return
                    self._forget(key)  # (not the run it keeps: the next read decodes the row)
            else:
                kept = self._tasks.get(key)
                if kept is not None and kept[0] is run:
                    self._save_kept_task_run(key, kept[1], updates, written, now)
                    return
                self._tasks.pop(key, None)
        else:
            self._forget_runs()
        SqliteStore.save_transition(self, kind, run, updates, written, current_state_id, now)

    def _save_kept_task_run(
        self,
        key: int,
        id_text: str,
        updates: dict[str, Any],
        written: State | None,
        now: datetime,
    ) -> None:
        """Save a transition of the task run kept under ``key``: ``updates`` applied to it, and
        its new state, its rows written under its id's text."""
        run = self._tasks[key][0]
        set_fields(run, updates)
        self._write_task_transition(id_text, updates, written, now)
        if _immutable(written) and updates.keys() <= _SAVED_TASK:
            if written is not None:
                set_fields(run, {"state": written})
        else:
            del self._tasks[key]  # result data, or fields its row does not hold

    def _save_cached_flow_run(
        self,
        cached: _CachedFlowRun,
        updates: dict[str, Any],
        written: State | None,
        current_state_id: UUID | None,
        now: datetime,
    ) -> None:
        """Save a transition of the cached run: ``updates`` applied to it, the new state's row
        now; the run's row now, or, inside a block, when the block commits (``_dirty``). The
        run keeps the values the transition gave it, and its new state; a reader gets the row
        written decoded (``_kept_row``)."""
        run = cached.run
        self._saves += 1  # (a kept run changed: see _changes)
        if written is None:
            state_id = None if current_state_id is None else str(current_state_id)
            set_fields(run, updates)
        else:
            cached.state_row = state_row = rows.state_insert_row(cached.id_text, written)
            self._execute(sql.INSERT_FLOW_RUN_STATE, state_row)
            state_id = state_row[1]
            set_fields(run, {**updates, "state": written})
        policy = run.__dict__["empirical_policy"]
        waiting = cached.pending is not None
        cached.pending = (state_id, now)
        if policy is not cached.policy_object:  # replaced: encoded when the row is written
            cached.policy, cached.policy_object, cached.policy_dirty = None, policy, True
        if not self._defer:
            self._write_pending(cached)
        elif not waiting:
            self._dirty.append(cached)
        key, runs = run.id.int, self._runs
        if _immutable(written) and updates.keys() <= _SAVED_FLOW:
            runs[key] = runs.pop(key)  # the most recently used
        else:  # result data (see _immutable), or fields its row does not hold
            self._forget(key)

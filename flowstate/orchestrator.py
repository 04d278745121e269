"""The Orchestrator: flowstate's public engine.

Each call validates its input, then in one SQLite transaction reads the run, lets the policy
decide, and writes the outcome::

    Orchestrator.set_flow_run_state(id, proposed)
      └─ store.transaction()            BEGIN IMMEDIATE
           ├─ store.working_flow_run(id) run + current state
           ├─ policy.decide(context)     pure: rules, then bookkeeping -> Outcome
           └─ store.save_transition(...) the outcome's state and run updates; COMMIT
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from functools import partial
from typing import Any
from uuid import UUID

from pydantic import ValidationError

from flowstate._ids import uuid7
from flowstate._models import set_fields
from flowstate._names import generate_run_name
from flowstate._seconds import span
from flowstate import _validation as validate
from flowstate._time import as_utc, utcnow
from flowstate._deployments import DeploymentMethods
from flowstate._interaction import InteractionMethods
from flowstate._tag_limits import TagLimitMethods
from flowstate._workers import WorkerMethods
from flowstate.listeners import Listener, Listeners, Subscription, TransitionEvent
from flowstate.concurrency.run_slots import give_back
from flowstate.concurrency.tags import check_tags
from flowstate.errors import InvalidState, ObjectAlreadyExists, ObjectNotFound
from flowstate._json_depth import deeper_than_allowed, too_deep_message
from flowstate.orchestration.policies import (
    CORE_FLOW,
    CORE_TASK,
    MINIMAL_FLOW,
    MINIMAL_TASK,
)
from flowstate.orchestration.policy import Outcome, Policy
from flowstate.orchestration.resume import ResumePlan, plan_resume
from flowstate.results import OrchestrationResult, SetStateStatus
from flowstate.runs import FlowRun, FlowRunPolicy, TaskRun, TaskRunPolicy
from flowstate.states import State, StateType
from flowstate.store.base import RunKind, StoreBackend
from flowstate.store.location import database_location, default_database_path
from flowstate.store.opening import open_store
from flowstate.store.postgres.timeouts import check_call_timeout
from flowstate.store.connection import Synchronous

__all__ = ["Orchestrator", "default_database_path"]

class _Transaction:
    """One context manager for a block's transaction (a class: cheaper than nested generators).

    The store's transaction (BEGIN IMMEDIATE, or a SAVEPOINT when nested; sqlite3 errors leave
    as DatabaseError with the cause chained; rollback on any exception), plus the listener
    events: dropped with a rollback, told after the outermost commit.
    """

    __slots__ = ("_store", "_listeners", "_mark", "_depth")

    def __init__(self, store: StoreBackend, listeners: Listeners) -> None:
        self._store = store
        self._listeners = listeners

    def __enter__(self) -> None:
        self._mark = self._listeners.mark()
        self._depth = self._store.begin()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        token = self._depth
        if exc is None and token < 0:
            return  # a call that succeeded inside its thread's block: nothing to end (end_call)
        self._end(self._mark, token, exc)

    def _end(self, mark: int, token: int, exc: Any) -> None:
        """End the transaction ``token`` opened (its listener events: those after ``mark``)."""
        try:
            self._store.end_call(token, exc)  # (a block's depth, never negative: end)
        except BaseException:
            self._listeners.rollback_to(mark)
            raise
        if exc is not None:
            self._listeners.rollback_to(mark)
        elif token == 0:
            self._listeners.flush()


class _Block(_Transaction):
    """What :meth:`Orchestrator.transaction` returns. Each entry is a block of its own thread:
    entered again while open, in the same thread, it nests (a savepoint) as a second
    ``transaction()`` would; each exit ends the thread's innermost entry. Leaving it in a
    thread where it is not open is InvalidState, with nothing ended."""

    __slots__ = ("_open",)

    def __init__(self, store: StoreBackend, listeners: Listeners) -> None:
        super().__init__(store, listeners)
        self._open = threading.local()

    def _entries(self) -> list[tuple[int, int]]:
        """This thread's open entries, oldest first: (listener mark, depth) of each."""
        entries: list[tuple[int, int]] | None = getattr(self._open, "entries", None)
        if entries is None:
            entries = self._open.entries = []
        return entries

    def __enter__(self) -> None:
        mark = self._listeners.mark()
        self._entries().append((mark, self._store.begin()))

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        entries = self._entries()
        if not entries:
            raise InvalidState(
                "this transaction block is not open in this thread: leave a block in the "
                "thread that entered it, once per entry"
            )
        mark, depth = entries.pop()
        self._end(mark, depth, exc)


class _CallTransaction(_Transaction):
    """The transaction of one API call (the store's ``begin_call``: no savepoint of its own
    inside a block). A call that succeeds inside a block has nothing to do on leaving but let
    the store go; its listener events wait for the block's commit."""

    __slots__ = ()

    def __enter__(self) -> None:
        listeners = self._listeners
        self._mark = listeners.mark() if listeners.recorded else 0
        self._depth = self._store.begin_call()


class _ReadTransaction(_Transaction):
    """The transaction of one API call that only reads (the store's ``begin_read``: on
    SQLite a read transaction, which neither waits for nor blocks a writer)."""

    __slots__ = ()

    def __enter__(self) -> None:
        self._mark = 0
        self._depth = self._store.begin_read()


class Orchestrator(WorkerMethods, InteractionMethods, DeploymentMethods, TagLimitMethods):
    """Orchestrates flow and task runs exactly as Prefect's server does, stored in SQLite.

    >>> from flowstate import Orchestrator
    >>> from flowstate.states import Pending, Running
    >>> with Orchestrator(":memory:") as orc:
    ...     run = orc.create_flow_run(flow_name="etl")
    ...     orc.set_flow_run_state(run.id, Pending()).status.value
    ...     orc.set_flow_run_state(run.id, Pending()).details.reason
    'ACCEPT'
    'This run is in a PENDING state and cannot transition to a PENDING state.'

    ``database`` is a path (``sqlite:///path`` too), ``":memory:"``, or None for the embedded
    default (``$FLOWSTATE_DATABASE``, else ``~/.flowstate/flowstate.db``); an empty string is
    InvalidState. A ``postgresql://user@host/db`` URL uses a PostgreSQL server instead (``pip install
    'flowstate[postgres]'``), where ``busy_timeout`` is the ``lock_timeout`` and ``synchronous``
    maps onto ``synchronous_commit`` (``flowstate.store.postgres.connection``). ``clock`` returns the current
    time as an aware UTC datetime (default: the real clock). ``uniform`` draws retry jitter
    (default: a ``random.Random``; pass ``random.Random(seed).uniform`` for reproducible runs).
    ``busy_timeout`` bounds how long a call waits for another connection's write lock, in
    seconds. ``synchronous="FULL"`` survives power loss at some cost; the default ``"NORMAL"``
    (with WAL) loses no committed transition when the process crashes. ``sleep(seconds)`` is
    how waits (:meth:`wait_for_resume`, :meth:`receive_input`) pass time between checks:
    default the clock's own ``sleep`` if it has one (a ``FrozenClock`` advances itself, so a
    test never really sleeps), else :func:`time.sleep`.

    On PostgreSQL, ``call_timeout`` (seconds; default: the URL's ``call_timeout`` parameter,
    else 30) bounds every wait for the server: a call that waits longer (a stopped server, a
    network partition) fails with DatabaseError, and a later call reconnects. SQLite ignores it.
    Heartbeats and :meth:`mark_lost_runs` use the PostgreSQL server's clock unless ``clock`` is
    given.
    """

    def __init__(
        self,
        database: str | os.PathLike[str] | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
        uniform: Callable[[float, float], float] | None = None,
        busy_timeout: float = 30.0,
        synchronous: Synchronous = "NORMAL",
        flow_policy: Policy | None = None,
        task_policy: Policy | None = None,
        sleep: Callable[[float], object] | None = None,
        call_timeout: float | None = None,
    ) -> None:
        path = database_location(database)
        if synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise InvalidState(f"synchronous={synchronous!r}; expected NORMAL, FULL, EXTRA or OFF")
        if call_timeout is not None:
            check_call_timeout(call_timeout)
        store = open_store(
            path, busy_timeout=busy_timeout, synchronous=synchronous, call_timeout=call_timeout
        )
        self._start_engine(store, clock, uniform, flow_policy, task_policy, sleep)

    def _start_engine(
        self,
        store: StoreBackend,
        clock: Callable[[], datetime] | None,
        uniform: Callable[[float, float], float] | None,
        flow_policy: Policy | None,
        task_policy: Policy | None,
        sleep: Callable[[float], object] | None,
        new_id: Callable[[], UUID] = uuid7,
    ) -> None:
        """The engine over an open ``store`` (``new_id`` makes the ids of new states)."""
        _check_callable(clock, "clock", "() -> datetime")
        _check_callable(uniform, "uniform", "(low, high) -> float")
        self._store = store
        self._new_id = new_id
        self._clock = clock or utcnow
        self._clock_given = clock is not None
        # the engine's "now": the real clock gives UTC datetimes already, with nothing to check
        self._now: Callable[[], datetime] = self._checked_clock if clock else utcnow
        self._uniform = uniform or random.Random().uniform
        self._sleep = _sleep_for(clock, sleep)
        self.flow_policy = validate.check_policy(flow_policy or CORE_FLOW, "flow")
        self.task_policy = validate.check_policy(task_policy or CORE_TASK, "task")
        self._listeners = Listeners()
        # The transaction of one API call that makes at most one decision and checks all its
        # input before it writes: inside a ``transaction()`` block it takes no savepoint, and a
        # database error halfway through dooms the block (``Store.begin_call``). Calls that
        # decide for several runs use ``transaction()``, which undoes just the call. (A
        # partial: one Python call fewer per API call than a method.)
        self._transaction: Callable[[], _Transaction] = partial(
            _CallTransaction, self._store, self._listeners
        )
        self._read_transaction: Callable[[], _Transaction] = partial(
            _ReadTransaction, self._store, self._listeners
        )

    @property
    def database(self) -> str:
        """The database path this orchestrator uses (a PostgreSQL URL with its password masked)."""
        return self._store.path

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Release the database; the orchestrator cannot be used afterwards. Its subscriptions
        end (an iteration stops after the events already queued)."""
        try:
            self._store.close()
        finally:
            self._listeners.end_subscriptions()

    def __enter__(self) -> Orchestrator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def transaction(self) -> _Block:
        """Group calls: everything inside commits together, or nothing does.

        Listeners hear of the transitions made inside once the whole block has committed.
        The block may be entered again while it is open: that entry nests, as another
        ``transaction()`` would.
        """
        return _Block(self._store, self._listeners)

    # -- listeners -------------------------------------------------------------------------

    def add_listener(self, callback: Listener) -> Callable[[], None]:
        """Call ``callback(event)`` after each committed transition that wrote a state.

        Returns a function that removes the listener. Listeners run after the commit, in the
        calling thread; their exceptions are logged and kept in ``listener_errors``.
        """
        return self._listeners.add(callback)

    def subscribe(self, maxsize: int = 0) -> Subscription:
        """A queue of :class:`~flowstate.listeners.TransitionEvent` for committed transitions.

        ``maxsize`` bounds the queue (0, the default: no bound). A full subscription never
        makes a transition wait: its oldest event is dropped and counted in its ``dropped``.
        """
        return self._listeners.subscribe(maxsize)

    @property
    def listener_errors(self) -> list[tuple[Listener, TransitionEvent, BaseException]]:
        """Exceptions raised by listeners (which never undo a committed transition)."""
        return self._listeners.errors

    def _checked_clock(self) -> datetime:
        """The injected clock's time, checked and in UTC (``_now`` when a clock is given)."""
        now = self._clock()
        if not isinstance(now, datetime):
            raise InvalidState(f"the clock returned {now!r}, not a datetime")
        return as_utc(now)

    # -- flow runs -------------------------------------------------------------------------

    def create_flow_run(
        self,
        *,
        flow_name: str = "flow",
        name: str | None = None,
        parameters: dict[str, Any] | None = None,
        tags: list[str] | None = None,
        empirical_policy: FlowRunPolicy | Mapping[str, Any] | None = None,
        deployment_id: UUID | str | None = None,
        infrastructure_pid: str | None = None,
        parent_task_run_id: UUID | str | None = None,
        state: State | Mapping[str, Any] | str | None = None,
        id: UUID | str | None = None,
        heartbeat_timeout: float | None = None,
    ) -> FlowRun:
        """Create a flow run; with ``state`` it is set with force, else the run has no state.

        ``heartbeat_timeout`` (seconds) is how long the run may stay silent while PENDING or
        RUNNING before :meth:`mark_lost_runs` declares it crashed.
        """
        proposed = None if state is None else validate.coerce_state(state)
        validate.check_text(flow_name, "flow_name")
        validate.check_text(name, "name")
        validate.check_text(infrastructure_pid, "infrastructure_pid")
        timeout = (
            None
            if heartbeat_timeout is None
            else span(heartbeat_timeout, "heartbeat_timeout", zero=False)
        )
        fields: dict[str, Any] = {
            "id": uuid7() if id is None else validate.run_id(id),
            "name": name or generate_run_name(),
            "flow_name": flow_name,
            "parameters": parameters or {},
            "tags": tags or [],
            "empirical_policy": empirical_policy,
            "deployment_id": validate.optional_run_id(deployment_id, "deployment_id"),
            "infrastructure_pid": infrastructure_pid,
            "parent_task_run_id": validate.optional_run_id(
                parent_task_run_id, "parent_task_run_id"
            ),
        }
        run = _new_flow_run(fields)
        with self._transaction():
            now = self._now()
            # (run.created = run.updated = now, without pydantic's __setattr__: FlowRun does
            # not validate assignments)
            set_fields(run, {"created": now, "updated": now})
            if not self._store.insert_flow_run(run):
                raise ObjectAlreadyExists(f"Flow run with id {run.id} already exists")
            if timeout is not None:
                self._store.record_heartbeat(run.id, timeout_seconds=timeout)
            if proposed is not None:
                self._orchestrate_flow(run.id, proposed, force=True, now=now)
            # (the row read now; the run built from it after the commit)
            created = validate.found(self._store.read_flow_run_later(run.id), "flow", run.id)
        return _with_estimated_run_time(created(), now)

    def read_flow_run(self, id: UUID | str) -> FlowRun:
        """The flow run with its current state; ObjectNotFound if there is none."""
        run_id = validate.run_id(id)
        with self._read_transaction():
            return self._read_flow_run(run_id, self._now())

    def _read_flow_run(self, run_id: UUID, now: datetime) -> FlowRun:
        run = validate.found(self._store.read_flow_run(run_id), "flow", run_id)
        return _with_estimated_run_time(run, now)

    def read_flow_runs(
        self,
        *,
        state_type: StateType | str | None = None,
        limit: int | None = None,
        offset: int = 0,
        flow_name: str | None = None,
        newest_first: bool = False,
    ) -> list[FlowRun]:
        """Flow runs in creation order (``newest_first``: the newest first), optionally only
        those in one state type and/or of one flow. Filters, order, ``limit`` and ``offset``
        are applied by the database, so a page costs the same whatever the number of runs."""
        page = validate.page(state_type, limit, offset, flow_name, newest_first)
        with self._read_transaction():
            now = self._now()
            runs = self._store.read_flow_runs(**page)
            return [_with_estimated_run_time(run, now) for run in runs]

    def delete_flow_run(self, id: UUID | str) -> None:
        """Delete a flow run with its history, run input and task runs; a deployment slot
        the run holds, and the tag slots its task runs hold, are given back."""
        run_id = validate.run_id(id)
        with self._transaction():
            self._delete_run("flow", run_id, self._limits.lock_task_leases_of_flow_run(str(run_id)))

    def set_flow_run_state(
        self, id: UUID | str, state: State | Mapping[str, Any] | str, *, force: bool = False
    ) -> OrchestrationResult:
        """Propose ``state`` for a flow run; the core flow policy answers (minimal if forced)."""
        run_id = validate.run_id(id)
        proposed = validate.coerce_state(state)
        with self._transaction():
            return self._orchestrate_flow(run_id, proposed, force=force, now=None)

    def read_flow_run_states(self, id: UUID | str) -> list[State]:
        """A flow run's state history, oldest first."""
        return self._read_states("flow", id)

    def resume_flow_run(
        self, id: UUID | str, run_input: dict[str, Any] | None = None
    ) -> OrchestrationResult:
        """Resume a paused flow run, as Prefect's ``/resume`` endpoint does.

        Not paused: ABORT with no state. With a ``run_input_keyset`` on the pause, the input is
        hydrated and validated against the stored schema (problems: REJECT with abort details
        and the current state), and stored under the keyset's response key on ACCEPT. A
        suspension (``pause_reschedule``) resumes to Scheduled "Resuming", a pause to Running.
        """
        run_id = validate.run_id(id)
        given = _checked_run_input(run_input)
        with self._transaction():
            now = self._now()
            run = validate.found(self._store.working_flow_run(run_id), "flow", run_id)
            plan = plan_resume(
                run.state, given, lambda key: self._store.read_run_input(run_id, key), now
            )
            if plan.answer is not None:
                return plan.answer
            assert plan.proposal is not None
            decided = self._decide_flow(run_id, plan.proposal, False, now, run)
            self._save_resumed(run_id, decided, plan, now)
            return decided.result

    def _save_resumed(
        self, run_id: UUID, decided: Outcome, plan: ResumePlan, now: datetime
    ) -> None:
        """Save a resume's outcome and, when it was accepted, the run input it answers with;
        an input already stored under the key refuses it before anything is written (a block
        around the call goes on)."""
        store = self._store
        response, key = plan.response, plan.response_key or ""
        store_input = response is not None and decided.result.status is SetStateStatus.ACCEPT
        if store_input and store.read_run_input(run_id, key) is not None:
            raise ObjectAlreadyExists(f"run input {key!r} of flow run {run_id} already exists")
        self._save(decided, now, False)
        if store_input:
            store.insert_run_input(run_id, key, response, None, now)  # type: ignore[arg-type]

    # -- run input -------------------------------------------------------------------------

    def create_flow_run_input(
        self, id: UUID | str, key: str, value: str, *, sender: str | None = None
    ) -> None:
        """Store ``value`` under ``key`` for a flow run; ObjectAlreadyExists keeps the old one."""
        run_id = validate.run_id(id)
        validate.check_run_input_key(key)
        if not isinstance(value, str):
            raise InvalidState(f"run input value must be a str, not {type(value).__name__}")
        if sender is not None and not isinstance(sender, str):
            raise InvalidState(
                f"run input sender must be a str or None, not {type(sender).__name__}"
            )
        validate.check_text(value, "run input value")
        validate.check_text(sender, "run input sender")
        with self._transaction():
            now = self._now()
            validate.found(self._store.read_flow_run(run_id), "flow", run_id)
            if not self._store.insert_run_input(run_id, key, value, sender, now):
                raise ObjectAlreadyExists(f"run input {key!r} of flow run {run_id} already exists")

    def read_flow_run_input(self, id: UUID | str, key: str) -> str:
        """The value stored under ``key``; ObjectNotFound if there is none."""
        run_id = validate.run_id(id)
        validate.check_run_input_key(key)
        with self._read_transaction():
            value = self._store.read_run_input(run_id, key)
        if value is None:
            raise ObjectNotFound(f"run input {key!r} of flow run {run_id} not found")
        return value

    def delete_flow_run_input(self, id: UUID | str, key: str) -> None:
        """Delete the value stored under ``key``; ObjectNotFound if there is none."""
        run_id = validate.run_id(id)
        validate.check_run_input_key(key)
        with self._transaction():
            if not self._store.delete_run_input(run_id, key):
                raise ObjectNotFound(f"run input {key!r} of flow run {run_id} not found")

    # -- task runs -------------------------------------------------------------------------

    def create_task_run(
        self,
        *,
        flow_run_id: UUID | str | None = None,
        task_key: str = "task",
        dynamic_key: str = "0",
        name: str | None = None,
        empirical_policy: TaskRunPolicy | Mapping[str, Any] | None = None,
        state: State | Mapping[str, Any] | str | None = None,
        id: UUID | str | None = None,
        tags: list[str] | None = None,
    ) -> TaskRun:
        """Create a task run (in a flow run, or standalone); ``state`` is set with force.

        ``tags``: a list of str; a tag with a limit (:meth:`create_concurrency_limit`) limits
        how many task runs carrying it are RUNNING at once."""
        proposed = None if state is None else validate.coerce_state(state)
        checked_tags = check_tags(tags)
        validate.check_text(task_key, "task_key")
        validate.check_text(dynamic_key, "dynamic_key")
        validate.check_text(name, "name")
        run = validate.new_task_run(
            {
                "id": uuid7() if id is None else validate.run_id(id),
                "flow_run_id": validate.optional_run_id(flow_run_id, "flow_run_id"),
                "task_key": task_key,
                "dynamic_key": dynamic_key,
                "name": name or f"{task_key}-{dynamic_key}",
                "tags": checked_tags,
                "empirical_policy": validate.coerce_policy(empirical_policy, TaskRunPolicy),
            }
        )
        with self._transaction():
            now = self._now()
            parent_id = run.flow_run_id
            if parent_id is not None:  # (only whether it exists: the store's own run will do)
                validate.found(self._store.working_flow_run(parent_id), "flow", parent_id)
            set_fields(run, {"created": now, "updated": now})
            inserted = self._store.insert_task_run(run)
            if inserted is None:
                raise ObjectAlreadyExists(f"Task run with id {run.id} already exists")
            if proposed is None:
                return inserted
            self._orchestrate_task(run.id, proposed, force=True, now=now)
            return validate.found(self._store.read_task_run(run.id), "task", run.id)

    def read_task_run(self, id: UUID | str) -> TaskRun:
        """The task run with its current state; ObjectNotFound if there is none."""
        run_id = validate.run_id(id)
        with self._read_transaction():
            return validate.found(self._store.read_task_run(run_id), "task", run_id)

    def read_task_runs(
        self,
        *,
        flow_run_id: UUID | str | None = None,
        state_type: StateType | str | None = None,
        limit: int | None = None,
        offset: int = 0,
        flow_name: str | None = None,
        newest_first: bool = False,
    ) -> list[TaskRun]:
        """Task runs in creation order (``newest_first``: the newest first), optionally of one
        flow run, of the flow runs of one flow (``flow_name``) and/or in one state type; done
        by the database, as in :meth:`read_flow_runs`."""
        flow_id = validate.optional_run_id(flow_run_id, "flow_run_id")
        page = validate.page(state_type, limit, offset, flow_name, newest_first)
        with self._read_transaction():
            return self._store.read_task_runs(flow_run_id=flow_id, **page)

    def delete_task_run(self, id: UUID | str) -> None:
        """Delete a task run with its history; the tag slots it holds are given back."""
        run_id = validate.run_id(id)
        with self._transaction():
            self._delete_run("task", run_id, [])

    def _delete_run(self, kind: RunKind, run_id: UUID, held: list[Any]) -> None:
        """Delete a run (ObjectNotFound if there is none) and give back the slots it holds,
        with those in ``held``."""
        if not self._store.delete_run(kind, run_id):
            raise ObjectNotFound(f"{kind.capitalize()} run with id {run_id} not found")
        held = held + self._limits.lock_leases_of_holder(f"{kind}_run", str(run_id))
        if held:
            give_back(self._limits, held, self._liveness_time(None))

    def set_task_run_state(
        self, id: UUID | str, state: State | Mapping[str, Any] | str, *, force: bool = False
    ) -> OrchestrationResult:
        """Propose ``state`` for a task run; the core task policy answers (minimal if forced)."""
        run_id = validate.run_id(id)
        proposed = validate.coerce_state(state)
        with self._transaction():
            outcome = self._orchestrate_task(run_id, proposed, force=force, now=None)
        return outcome.result

    def read_task_run_states(self, id: UUID | str) -> list[State]:
        """A task run's state history, oldest first."""
        return self._read_states("task", id)

    def _read_states(self, kind: RunKind, id: UUID | str) -> list[State]:
        run_id = validate.run_id(id)
        with self._read_transaction():
            read = self._store.read_flow_run if kind == "flow" else self._store.read_task_run
            validate.found(read(run_id), kind, run_id)
            return self._store.read_states(kind, run_id)

    # -- the transition itself (inside a transaction) ---------------------------------------

    def _orchestrate_flow(
        self,
        run_id: UUID,
        proposed: State,
        *,
        force: bool,
        now: datetime | None,
        run: FlowRun | None = None,
        policy: Policy | None = None,
    ) -> OrchestrationResult:
        """Decide on ``proposed`` for a flow run and save the outcome (``now`` None: the
        orchestrator's clock, read once the run and its deployment's limit are locked)."""
        decided = self._decide_flow(run_id, proposed, force, now, run, policy)
        self._save(decided, decided.context.now, force)
        return decided.result

    def _decide_flow(
        self,
        run_id: UUID,
        proposed: State,
        force: bool,
        now: datetime | None,
        run: FlowRun | None = None,
        policy: Policy | None = None,
    ) -> Outcome:
        """The policy's decision on ``proposed`` for a flow run, nothing written yet (the time
        it was decided at: its ``context.now``).

        A run of a deployment with a limit locks that limit before the clock is read (when
        ``now`` is None): a run submitted just after another one gave the slot back is stamped
        after it, on PostgreSQL too, where transactions wait for each other's rows only."""
        if policy is None:
            policy = MINIMAL_FLOW if force else self.flow_policy
        if run is None:  # (deciding does not change the store's run)
            run = validate.found(self._store.working_flow_run(run_id), "flow", run_id)
        slots = None
        if run.deployment_id is not None:
            slots = self._run_slots()
            slots.deployment_limit(run.deployment_id)  # (locks it)
        return policy.decide(
            policy.context(
                run, proposed, self._now() if now is None else now, self._new_id,
                uniform=self._uniform, slots=slots, read_parameters=self._flow_run_parameters,
            )
        )

    def _flow_run_parameters(self, run_id: UUID) -> dict[str, Any]:
        """A flow run's parameters, for a rule's copy of a run a transition read without them."""
        parameters = self._store.read_flow_run_parameters(run_id)
        return {} if parameters is None else parameters

    def _orchestrate_task(
        self, run_id: UUID, proposed: State, *, force: bool, now: datetime | None
    ) -> Outcome:
        """Decide on ``proposed`` for a task run and save the outcome; ``now`` None: the time
        is read once the run, and the limits of its tags, are locked for this transaction (so
        the times of tagged runs' states follow the order in which they took their slots)."""
        policy = MINIMAL_TASK if force else self.task_policy
        run = validate.found(self._store.working_task_run(run_id), "task", run_id)
        slots = self._run_slots() if run.tags else None
        if now is None:
            if slots is not None:
                slots.tag_limits(run.tags)
            now = self._now()
        flow_run = None
        cached_state = None
        if proposed.type is StateType.RUNNING:
            flow_run = self._flow_run_of(run)
            if not force:
                cached_state = self._cached_state_for(proposed, now)
        ctx = policy.context(
            run, proposed, now, self._new_id, flow_run=flow_run, cached_state=cached_state,
            uniform=self._uniform, slots=slots, read_parameters=self._flow_run_parameters,
        )
        outcome = policy.decide(ctx)
        self._save(outcome, now, force)
        return outcome

    def _flow_run_of(self, run: TaskRun) -> FlowRun | None:
        """The flow run a task run entering RUNNING belongs to (None for a task run of none)."""
        if run.flow_run_id is None:
            return None
        flow_run = self._store.working_flow_run(run.flow_run_id)  # (a rule gets a copy)
        if flow_run is None:
            raise ObjectNotFound(
                f"Unable to read flow run associated with task run: {run.id}, this flow "
                "run might have been deleted"
            )
        return flow_run

    def _cached_state_for(self, proposed: State, now: datetime) -> State | None:
        """The state cached under a RUNNING proposal's ``cache_key`` (unless it asks to
        refresh the cache), if one is still valid at ``now``."""
        details = proposed.state_details
        if not details.cache_key or details.refresh_cache:
            return None
        return self._store.read_cached_state(details.cache_key, now)

    def _save(self, outcome: Outcome, now: datetime, force: bool) -> None:
        result, written, ctx = outcome
        run, updates, initial = ctx._base, ctx.updates, ctx.initial
        if written is not None or updates:
            initial_id = None if initial is None else initial.id
            self._store.save_transition(ctx.kind, run, updates, written, initial_id, now)
        if written is not None and self._listeners.callbacks:
            self._listeners.record(
                TransitionEvent(ctx.kind, run.id, initial, written, result, force)
            )
        if ctx.effects:
            target = _EffectTarget(self, now)
            for effect in ctx.effects:
                effect.apply_to(target)


class _EffectTarget:
    """Where a transition's effects land (an ``EffectTarget``): the store, and for a subflow's
    parent task run a forced transition at the same time, in the same transaction."""

    __slots__ = ("_orchestrator", "_now", "insert_cache_entry", "delete_run_input")

    def __init__(self, orchestrator: Orchestrator, now: datetime) -> None:
        store = orchestrator._store
        self._orchestrator, self._now = orchestrator, now
        self.insert_cache_entry = store.insert_cache_entry
        self.delete_run_input = store.delete_run_input

    def mirror_to_parent_task(self, task_run_id: UUID, state: State) -> None:
        orchestrator = self._orchestrator
        if orchestrator._store.read_task_run(task_run_id) is not None:
            orchestrator._orchestrate_task(task_run_id, state, force=True, now=self._now)


def _new_flow_run(fields: dict[str, Any]) -> FlowRun:
    """The flow run ``create_flow_run`` gathered the ``fields`` of, validated; not stored yet,
    its times not stamped."""
    try:
        run = validate.plain_flow_run(fields)
        if run is None:
            fields["empirical_policy"] = validate.coerce_policy(
                fields["empirical_policy"], FlowRunPolicy
            )
            run = FlowRun(**fields)
    except ValidationError as exc:
        raise InvalidState(f"invalid flow run: {validate.validation_message(exc)}") from None
    if run.parameters:  # an empty dict is always JSON
        try:
            json.dumps(run.parameters)
        except (TypeError, ValueError, RecursionError) as exc:
            raise InvalidState(f"parameters must be JSON-serialisable: {exc}") from None
        if deeper_than_allowed(run.parameters):
            raise InvalidState(too_deep_message("parameters"))
    return run


def _checked_run_input(run_input: Any) -> dict[str, Any] | None:
    """``resume_flow_run``'s ``run_input``: None, or a dict that is JSON text-serialisable
    (no NaN or infinite number: they would pass every minimum and maximum of the schema, and
    the text stored would not be JSON)."""
    if run_input is None:
        return None
    if not isinstance(run_input, dict):
        raise InvalidState(
            f"run_input must be a dict (a JSON object), not {type(run_input).__name__}"
        )
    try:
        json.dumps(run_input, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError, RecursionError) as exc:  # incl. UnicodeEncodeError
        raise InvalidState(f"run_input must be JSON text-serialisable: {exc}") from None
    if deeper_than_allowed(run_input):
        raise InvalidState(too_deep_message("run_input"))
    return run_input


def _with_estimated_run_time(run: FlowRun, now: datetime) -> FlowRun:
    """``estimated_run_time`` of a RUNNING run includes its current stint (computed on read)."""
    if run.state is not None and run.state.type is StateType.RUNNING:
        running_for = max(now - run.state.timestamp, timedelta(0))
        run.estimated_run_time = run.total_run_time + running_for
    return run


def _check_callable(value: object, what: str, shape: str) -> None:
    """InvalidState unless ``value`` is None or callable (found when given, not at first use)."""
    if value is not None and not callable(value):
        raise InvalidState(f"{what} must be callable {shape}, not {type(value).__name__}")


def _sleep_for(
    clock: Callable[[], datetime] | None, sleep: Callable[[float], object] | None
) -> Callable[[float], object]:
    """The sleep waits use: ``sleep``, else the clock's own, else :func:`time.sleep`."""
    if sleep is None:
        sleep = getattr(clock, "sleep", None)
        if sleep is None:
            return time.sleep
    if not callable(sleep):
        raise InvalidState(f"sleep must be callable (seconds -> None), not {type(sleep).__name__}")
    return sleep

"""``ReferenceOrchestrator``: the decision core over plain dicts — a model of the engine.

It runs the very same policies (:mod:`flowstate.orchestration.policies`) and bookkeeping as
:class:`~flowstate.Orchestrator`, but keeps runs, histories, the task cache and run input in
dictionaries: no SQL, no transactions, no row encoding. Driving both with the same calls and
comparing the answers step by step (a *differential* test) checks everything the SQLite engine
adds around the decision: reading and writing rows, time and JSON encoding, the cache lookup,
run input, effects and subflow mirroring, and reopening a database.

It takes trusted input (valid :class:`~flowstate.State` objects) and covers the calls of the
model: create, read and propose for flow and task runs, resume, and run input. It is a test
oracle, not a second engine: it does not validate input, lock, or notify listeners.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from flowstate._ids import uuid7
from flowstate._names import generate_run_name
from flowstate.errors import ObjectAlreadyExists, ObjectNotFound
from flowstate.orchestration.policies import CORE_FLOW, CORE_TASK, MINIMAL_FLOW, MINIMAL_TASK
from flowstate.orchestration.policy import Outcome, Policy
from flowstate.orchestration.resume import plan_resume
from flowstate.result_data import is_unpersisted
from flowstate.results import OrchestrationResult, SetStateStatus
from flowstate.runs import FlowRun, FlowRunPolicy, TaskRun, TaskRunPolicy
from flowstate.states import State, StateType
from flowstate.testing.clock import FrozenClock

__all__ = ["ReferenceOrchestrator"]

_MISSING: Any = object()
_SAVED = {  # the run fields a transition saves (the rest are fixed at creation)
    "flow": ("state_type", "state_name", "run_count", "start_time", "end_time",
             "total_run_time", "expected_start_time", "next_scheduled_start_time",
             "empirical_policy"),
    "task": ("state_type", "state_name", "run_count", "flow_run_run_count", "start_time",
             "end_time", "total_run_time", "expected_start_time", "next_scheduled_start_time",
             "cache_key", "cache_expiration"),
}


def _as_written(state: State) -> State:
    """A state as history keeps it: an unpersisted result is not kept."""
    if state.data is not None and is_unpersisted(state.data):
        return state.model_copy(update={"data": None})
    return state


class ReferenceOrchestrator:
    """An in-memory model of :class:`~flowstate.Orchestrator` with the same policies.

    ``clock`` and ``uniform`` are as for the orchestrator (default: a fresh
    :class:`~flowstate.testing.clock.FrozenClock` and ``random.Random(0).uniform``);
    ``new_id`` makes the ids of states.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], datetime] | None = None,
        uniform: Callable[[float, float], float] | None = None,
        flow_policy: Policy | None = None,
        task_policy: Policy | None = None,
        new_id: Callable[[], UUID] = uuid7,
    ) -> None:
        self._clock = clock or FrozenClock()
        self._uniform = uniform or random.Random(0).uniform
        self._new_id = new_id
        self.flow_policy = flow_policy or CORE_FLOW
        self.task_policy = task_policy or CORE_TASK
        self._runs: dict[UUID, FlowRun | TaskRun] = {}
        self._state_ids: dict[UUID, UUID | None] = {}  # run id -> current state id
        self._histories: dict[UUID, list[State]] = {}
        self._cache: list[tuple[str, datetime | None, State]] = []
        self._inputs: dict[tuple[UUID, str], str] = {}

    def _now(self) -> datetime:
        return self._clock()

    # -- runs -------------------------------------------------------------------------------

    def create_flow_run(
        self,
        *,
        flow_name: str = "flow",
        name: str | None = None,
        parameters: dict[str, Any] | None = None,
        tags: list[str] | None = None,
        empirical_policy: FlowRunPolicy | Mapping[str, Any] | None = None,
        deployment_id: UUID | None = None,
        infrastructure_pid: str | None = None,
        parent_task_run_id: UUID | None = None,
        state: State | None = None,
        id: UUID | None = None,
    ) -> FlowRun:
        """Create a flow run; with ``state`` it is set with force."""
        now = self._now()
        run = FlowRun(
            id=id or uuid7(),
            name=name or generate_run_name(),
            flow_name=flow_name,
            parameters=parameters or {},
            tags=tags or [],
            empirical_policy=FlowRunPolicy.model_validate(
                empirical_policy if empirical_policy is not None else {}
            ),
            deployment_id=deployment_id,
            infrastructure_pid=infrastructure_pid,
            parent_task_run_id=parent_task_run_id,
            created=now,
            updated=now,
        )
        self._insert(run)
        if state is not None:
            self._orchestrate("flow", run.id, state, force=True, now=now)
        return self.read_flow_run(run.id)

    def create_task_run(
        self,
        *,
        flow_run_id: UUID | None = None,
        task_key: str = "task",
        dynamic_key: str = "0",
        name: str | None = None,
        empirical_policy: TaskRunPolicy | Mapping[str, Any] | None = None,
        state: State | None = None,
        id: UUID | None = None,
    ) -> TaskRun:
        """Create a task run (in a flow run, or standalone); ``state`` is set with force."""
        now = self._now()
        if flow_run_id is not None:
            self._get("flow", flow_run_id)
        run = TaskRun(
            id=id or uuid7(),
            flow_run_id=flow_run_id,
            task_key=task_key,
            dynamic_key=dynamic_key,
            name=name or f"{task_key}-{dynamic_key}",
            empirical_policy=TaskRunPolicy.model_validate(
                empirical_policy if empirical_policy is not None else {}
            ),
            created=now,
            updated=now,
        )
        self._insert(run)
        if state is not None:
            self._orchestrate("task", run.id, state, force=True, now=now)
        return self.read_task_run(run.id)

    def _insert(self, run: FlowRun | TaskRun) -> None:
        if run.id in self._runs:
            raise ObjectAlreadyExists(f"Run with id {run.id} already exists")
        self._runs[run.id] = run
        self._state_ids[run.id] = None
        self._histories[run.id] = []

    def _get(self, kind: str, run_id: UUID) -> FlowRun | TaskRun:
        """A fresh copy of the stored run, with its current state."""
        run = self._runs.get(run_id)
        model = FlowRun if kind == "flow" else TaskRun
        if not isinstance(run, model):
            raise ObjectNotFound(f"{kind.capitalize()} run with id {run_id} not found")
        state_id = self._state_ids[run_id]
        state = next(s for s in self._histories[run_id] if s.id == state_id) if state_id else None
        copy = run.model_copy(deep=True, update={"state": state})
        if isinstance(copy, FlowRun):
            copy.estimated_run_time = copy.total_run_time
        return copy

    def read_flow_run(self, id: UUID) -> FlowRun:
        """The flow run with its current state."""
        run = self._get("flow", id)
        assert isinstance(run, FlowRun)
        if run.state is not None and run.state.type is StateType.RUNNING:
            run.estimated_run_time = run.total_run_time + max(
                self._now() - run.state.timestamp, timedelta(0)
            )
        return run

    def read_task_run(self, id: UUID) -> TaskRun:
        """The task run with its current state."""
        run = self._get("task", id)
        assert isinstance(run, TaskRun)
        return run

    def _listed(self, model: type) -> list[Any]:
        runs = [r for r in self._runs.values() if isinstance(r, model)]
        runs.sort(key=lambda r: (r.created, str(r.id)))
        kind = "flow" if model is FlowRun else "task"
        return [self.read_flow_run(r.id) if kind == "flow" else self.read_task_run(r.id) for r in runs]

    def read_flow_runs(self) -> list[FlowRun]:
        """Every flow run, in creation order."""
        return self._listed(FlowRun)

    def read_task_runs(self) -> list[TaskRun]:
        """Every task run, in creation order."""
        return self._listed(TaskRun)

    def read_flow_run_states(self, id: UUID) -> list[State]:
        """A flow run's history, oldest first."""
        self._get("flow", id)
        return self._history(id)

    def read_task_run_states(self, id: UUID) -> list[State]:
        """A task run's history, oldest first."""
        self._get("task", id)
        return self._history(id)

    def _history(self, run_id: UUID) -> list[State]:
        return sorted(self._histories[run_id], key=lambda s: (s.timestamp, str(s.id)))

    # -- transitions ------------------------------------------------------------------------

    def set_flow_run_state(self, id: UUID, state: State, *, force: bool = False) -> OrchestrationResult:
        """Propose ``state`` for a flow run."""
        return self._orchestrate("flow", id, state, force=force, now=self._now()).result

    def set_task_run_state(self, id: UUID, state: State, *, force: bool = False) -> OrchestrationResult:
        """Propose ``state`` for a task run."""
        return self._orchestrate("task", id, state, force=force, now=self._now()).result

    def _orchestrate(
        self,
        kind: str,
        run_id: UUID,
        proposed: State,
        *,
        force: bool,
        now: datetime,
        run: FlowRun | TaskRun | None = None,
    ) -> Outcome:
        run = run if run is not None else self._get(kind, run_id)
        flow_run = cached = None
        if kind == "task" and proposed.type is StateType.RUNNING:
            flow_id = run.flow_run_id  # type: ignore[union-attr]
            if flow_id is not None:
                flow_run = self._get("flow", flow_id)
            details = proposed.state_details
            if not force and details.cache_key and not details.refresh_cache:
                cached = self._cached_state(details.cache_key, now)
        if kind == "flow":
            policy = MINIMAL_FLOW if force else self.flow_policy
        else:
            policy = MINIMAL_TASK if force else self.task_policy
        ctx = policy.context(
            run, proposed, now, self._new_id, flow_run=flow_run,  # type: ignore[arg-type]
            cached_state=cached, uniform=self._uniform,
        )
        outcome = policy.decide(ctx)
        self._save(kind, outcome, now)
        return outcome

    def _save(self, kind: str, outcome: Outcome, now: datetime) -> None:
        ctx = outcome.context
        stored = self._runs[ctx.run.id]
        if outcome.written is not None or ctx.run_changed:
            if outcome.written is not None:
                self._histories[stored.id].append(_as_written(outcome.written))
                self._state_ids[stored.id] = outcome.written.id
            for name in _SAVED[kind]:
                setattr(stored, name, getattr(ctx.run, name))
            stored.updated = now
        for effect in ctx.effects:
            effect.apply_to(_EffectTarget(self, stored.id, now))

    def _cached_state(self, key: str, now: datetime) -> State | None:
        for cache_key, expiration, state in reversed(self._cache):
            if cache_key == key and (expiration is None or expiration > now):
                return state
        return None

    # -- resume and run input ---------------------------------------------------------------

    def resume_flow_run(self, id: UUID, run_input: Any = _MISSING) -> OrchestrationResult:
        """Resume a paused flow run, as :meth:`Orchestrator.resume_flow_run` does."""
        now = self._now()
        run = self.read_flow_run(id)
        given = run_input if isinstance(run_input, dict) else None
        plan = plan_resume(run.state, given, lambda key: self._inputs.get((id, key)), now)
        if plan.answer is not None:
            return plan.answer
        assert plan.proposal is not None
        result = self._orchestrate("flow", id, plan.proposal, force=False, now=now, run=run).result
        if plan.response is not None and result.status is SetStateStatus.ACCEPT:
            key = (id, plan.response_key or "")
            if key in self._inputs:
                raise ObjectAlreadyExists(f"run input {key[1]!r} of flow run {id} already exists")
            self._inputs[key] = plan.response
        return result

    def create_flow_run_input(self, id: UUID, key: str, value: str) -> None:
        """Store ``value`` under ``key``; ObjectAlreadyExists keeps the old one."""
        self._get("flow", id)
        if (id, key) in self._inputs:
            raise ObjectAlreadyExists(f"run input {key!r} of flow run {id} already exists")
        self._inputs[(id, key)] = value

    def read_flow_run_input(self, id: UUID, key: str) -> str:
        """The value stored under ``key``."""
        try:
            return self._inputs[(id, key)]
        except KeyError:
            raise ObjectNotFound(f"run input {key!r} of flow run {id} not found") from None


class _EffectTarget:
    """Where a transition's effects land in the reference engine's dicts (an ``EffectTarget``)."""

    def __init__(self, engine: ReferenceOrchestrator, run_id: UUID, now: datetime) -> None:
        self._engine, self._run_id, self._now = engine, run_id, now

    def insert_cache_entry(self, cache_key: str, expiration: datetime | None, state_id: UUID) -> None:
        engine = self._engine
        state = next(s for s in engine._histories[self._run_id] if s.id == state_id)
        engine._cache.append((cache_key, expiration, state))

    def delete_run_input(self, flow_run_id: UUID, key: str) -> bool:
        return self._engine._inputs.pop((flow_run_id, key), None) is not None

    def mirror_to_parent_task(self, task_run_id: UUID, state: State) -> None:
        engine = self._engine
        if isinstance(engine._runs.get(task_run_id), TaskRun):
            engine._orchestrate("task", task_run_id, state, force=True, now=self._now)

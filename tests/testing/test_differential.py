"""Model-based differential tests: the engine on a database against the engine in memory.

``ReferenceOrchestrator`` is the same Orchestrator over the in-memory store, which keeps models
and encodes nothing. Both are driven with the same random calls on the same clock and jitter
source; after every step their answers, runs and histories must be identical (state ids, which
each engine makes itself, are compared by position: "the 3rd state of run 2"). What can differ
is what the database adds: rows and their encoding (times, JSON, result data, details), SQL
filters and orders, the SQLite run cache, and reopening — the database engine works on a SQLite
file, and again on a PostgreSQL schema, and is closed and reopened now and then, in the middle
of the sequences. (Its attribute keeps the name ``sqlite`` on both backends.) The engine's own
code runs on both sides, so its mistakes are for the conformance vectors and the other tests.
"""

from __future__ import annotations

import json
import random
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from flowstate import FlowstateError, Orchestrator, OrchestrationResult, State
from flowstate.testing import (
    FrozenClock,
    ReferenceOrchestrator,
    plausible_proposals,
    proposals,
    run_inputs,
    transition_sequences,
)
from flowstate.testing.machine import INPUT_SCHEMA
from flowstate.testing.strategies import PAUSE_KEYS

from tests.backends import Backend

Engine = Orchestrator | ReferenceOrchestrator


def _sort_sets(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: (sorted(v) if k == "pause_keys" else _sort_sets(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_sort_sets(v) for v in value]
    return value


def _same(where: str, sqlite_value: Any, model_value: Any) -> None:
    """Assert equality, naming the first place where SQLite and the model differ."""
    if sqlite_value == model_value:
        return
    if isinstance(sqlite_value, dict) and isinstance(model_value, dict):
        for key in sorted(set(sqlite_value) | set(model_value), key=str):
            _same(f"{where}.{key}", sqlite_value.get(key), model_value.get(key))
    elif isinstance(sqlite_value, list) and isinstance(model_value, list) and len(sqlite_value) == len(model_value):
        for i, (a, b) in enumerate(zip(sqlite_value, model_value)):
            _same(f"{where}[{i}]", a, b)
    raise AssertionError(f"{where}: SQLite has {sqlite_value!r}, the reference {model_value!r}")


class Picture:
    """One engine's runs and histories in comparable form: state ids become positions."""

    def __init__(self, engine: Engine, flows: list[UUID], tasks: list[UUID]) -> None:
        self.labels: dict[str, str] = {}
        self.histories: dict[str, list[dict[str, Any]]] = {}
        for kind, ids in (("flow", flows), ("task", tasks)):
            read = engine.read_flow_run_states if kind == "flow" else engine.read_task_run_states
            for n, run_id in enumerate(ids):
                history = read(run_id)
                for i, state in enumerate(history):
                    self.labels[str(state.id)] = f"{kind}{n}/{i}"
                self.histories[f"{kind}{n}"] = [self.state(s) for s in history]
        self.runs = [self.run(r) for r in engine.read_flow_runs()]
        self.runs += [self.run(r) for r in engine.read_task_runs()]

    def label(self, state_id: Any) -> str:
        assert str(state_id) in self.labels, f"state {state_id} is in no history"
        return self.labels[str(state_id)]

    def state(self, state: State | None) -> dict[str, Any] | None:
        if state is None:
            return None
        dump = state.model_dump(mode="json")
        dump["id"] = self.label(state.id)
        return dump

    def run(self, run: Any) -> dict[str, Any]:
        dump = _sort_sets(run.model_dump(mode="json"))
        dump["state"] = self.state(run.state)
        policy = dump["empirical_policy"]
        if "pause_keys" in policy:  # a pause without a key gets a fresh id as its key
            policy["pause_keys"] = sorted(k if k in PAUSE_KEYS else "<made>" for k in policy["pause_keys"])
        return dump

    def result(self, result: OrchestrationResult) -> dict[str, Any]:
        dump = result.model_dump(mode="json")
        dump["state"] = self.state(result.state)
        return dump


class EnginesAgree(RuleBasedStateMachine):
    """The same calls to both engines; every answer and every stored row must agree."""

    flows = Bundle("flows")
    tasks = Bundle("tasks")
    steps = 0
    reopens = 0
    backend: Backend  # set by the test, for each backend

    def __init__(self) -> None:
        super().__init__()
        self.path = self.backend.new_database()
        self.clock = FrozenClock()
        self.draws = random.Random(7), random.Random(7)
        self.sqlite = self._open()
        self.model = ReferenceOrchestrator(clock=self.clock, uniform=self.draws[1].uniform)
        self.flow_ids: list[UUID] = []
        self.task_ids: list[UUID] = []

    def _open(self) -> Orchestrator:
        return Orchestrator(self.path, clock=self.clock, uniform=self.draws[0].uniform)

    def teardown(self) -> None:
        self.sqlite.close()
        self.backend.drop(self.path)

    def both(self, call: str, *args: Any, **kwargs: Any) -> None:
        """Make the call on both engines and compare answers (or errors)."""
        answers = []
        for engine in (self.sqlite, self.model):
            try:
                answer: Any = getattr(engine, call)(*args, **kwargs)
            except FlowstateError as exc:
                answer = exc
            answers.append(answer)
        self.compare(*answers)

    def compare(self, sqlite_answer: Any, model_answer: Any) -> None:
        EnginesAgree.steps += 1
        real = Picture(self.sqlite, self.flow_ids, self.task_ids)
        model = Picture(self.model, self.flow_ids, self.task_ids)
        if isinstance(sqlite_answer, OrchestrationResult):
            assert isinstance(model_answer, OrchestrationResult), model_answer
            _same("result", real.result(sqlite_answer), model.result(model_answer))
        elif isinstance(sqlite_answer, BaseException) or isinstance(model_answer, BaseException):
            assert type(sqlite_answer) is type(model_answer), (sqlite_answer, model_answer)
        _same("runs", real.runs, model.runs)
        _same("histories", real.histories, model.histories)

    # -- rules ------------------------------------------------------------------------------

    def _new_id(self) -> UUID:
        return UUID(int=len(self.flow_ids) + len(self.task_ids) + 1)

    @initialize(target=flows)
    def first_flow_run(self) -> UUID:
        return self._create_flow(1, True, False, None)

    def _create_flow(self, retries: int | None, deployment: bool, infra: bool, parent: UUID | None) -> UUID:
        run_id = self._new_id()
        self.flow_ids.append(run_id)
        self.both(
            "create_flow_run",
            id=run_id,
            name=f"run-{run_id.int}",
            empirical_policy={"retries": retries, "retry_delay": 10},
            deployment_id=UUID(int=999) if deployment else None,
            infrastructure_pid="pid" if infra else None,
            parent_task_run_id=parent,
        )
        return run_id

    @precondition(lambda self: len(self.flow_ids) < 3)
    @rule(target=flows, retries=st.none() | st.integers(0, 2), deployment=st.booleans(),
          infra=st.booleans(), parent=st.none() | tasks)
    def create_flow_run(self, retries: int | None, deployment: bool, infra: bool,
                        parent: UUID | None) -> UUID:
        return self._create_flow(retries, deployment, infra, parent)

    @precondition(lambda self: len(self.task_ids) < 3)
    @rule(target=tasks, flow=st.none() | flows, retries=st.none() | st.integers(0, 2),
          delay=st.sampled_from([0, 5, [1, 30]]), jitter=st.sampled_from([None, 0.5]))
    def create_task_run(self, flow: UUID | None, retries: int | None, delay: Any,
                        jitter: float | None) -> UUID:
        run_id = self._new_id()
        self.task_ids.append(run_id)
        self.both(
            "create_task_run",
            id=run_id,
            flow_run_id=flow,
            empirical_policy={"retries": retries, "retry_delay": delay, "retry_jitter_factor": jitter},
        )
        return run_id

    @rule(run=flows, data=st.data())
    def propose_flow_state(self, run: UUID, data: st.DataObject) -> None:
        current = self.sqlite.read_flow_run(run).state_type
        strategy = plausible_proposals(current, "flow", now=self.clock()) | proposals(
            "flow", now=self.clock()
        )
        state, force = data.draw(strategy, label="proposal")
        self.both("set_flow_run_state", run, state, force=force)

    @rule(run=tasks, data=st.data())
    def propose_task_state(self, run: UUID, data: st.DataObject) -> None:
        current = self.sqlite.read_task_run(run).state_type
        strategy = plausible_proposals(current, "task", now=self.clock()) | proposals(
            "task", now=self.clock()
        )
        state, force = data.draw(strategy, label="proposal")
        self.both("set_task_run_state", run, state, force=force)

    @rule(run=flows, key=st.sampled_from(PAUSE_KEYS), reschedule=st.booleans())
    def pause_for_input(self, run: UUID, key: str, reschedule: bool) -> None:
        keyset = {"description": f"{key}-d", "response": f"{key}-r", "schema": f"{key}-s"}
        paused = State.model_validate({"type": "PAUSED", "name": "Paused", "state_details": {
            "pause_key": key, "pause_reschedule": reschedule, "run_input_keyset": keyset}})
        self.both("set_flow_run_state", run, paused)
        if self.sqlite.read_flow_run(run).state_type == "PAUSED":
            self.both("create_flow_run_input", run, keyset["schema"], json.dumps(INPUT_SCHEMA))

    @rule(run=flows, data=st.data())
    def resume(self, run: UUID, data: st.DataObject) -> None:
        run_input = data.draw(st.none() | run_inputs(INPUT_SCHEMA) | st.just({"approved": 1}),
                              label="run_input")
        self.both("resume_flow_run", run, run_input)

    @rule(seconds=st.one_of(st.integers(1, 120), st.integers(121, 7200), st.integers(-60, 0)))
    def advance_clock(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @rule()
    def reopen(self) -> None:
        """Close the real engine and open its database again: nothing may change."""
        EnginesAgree.reopens += 1
        self.sqlite.close()
        self.sqlite = self._open()
        self.compare(None, None)

    @invariant()
    def cache_and_run_input_agree(self) -> None:
        for run_id in self.flow_ids:
            for key in PAUSE_KEYS:
                for suffix in ("-s", "-r"):
                    answers = []
                    for engine in (self.sqlite, self.model):
                        try:
                            answers.append(engine.read_flow_run_input(run_id, key + suffix))
                        except FlowstateError as exc:
                            answers.append(type(exc))
                    assert answers[0] == answers[1], (key + suffix, answers)


DIFFERENTIAL = settings(
    max_examples=150,
    stateful_step_count=30,
    deadline=None,
    derandomize=True,
    database=None,
)
EXAMPLES = {"sqlite": 150, "postgres": 50}


def test_the_engine_agrees_with_the_reference(backend: Backend) -> None:
    EnginesAgree.steps = EnginesAgree.reopens = 0
    machine = type(f"EnginesAgree_{backend.name}", (EnginesAgree,), {"backend": backend})
    run_state_machine_as_test(
        machine, settings=settings(DIFFERENTIAL, max_examples=EXAMPLES[backend.name])
    )
    print(
        f"\ndifferential ({backend.name}): {EnginesAgree.steps} steps compared, "
        f"{EnginesAgree.reopens} reopens"
    )


@pytest.mark.parametrize("kind", ["flow", "task"])
@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(data=st.data())
def test_a_reopen_in_the_middle_of_a_sequence_changes_nothing(kind: str, data: st.DataObject,
                                                              tmp_path_factory: pytest.TempPathFactory) -> None:
    steps = data.draw(transition_sequences(kind, min_size=2, max_size=25), label="steps")  # type: ignore[arg-type]
    cut = data.draw(st.integers(0, len(steps)), label="reopen after step")
    path = tmp_path_factory.mktemp("seq") / "seq.db"
    clock = FrozenClock()
    answers: dict[str, list[Any]] = {}
    for label, reopen_at in (("straight", None), ("reopened", cut)):
        orc = Orchestrator(path.with_suffix(f".{label}.db"), clock=clock, uniform=random.Random(3).uniform)
        clock.set(FrozenClock().now)
        run = orc.create_flow_run(id=UUID(int=1)) if kind == "flow" else orc.create_task_run(id=UUID(int=1))
        setter = orc.set_flow_run_state if kind == "flow" else orc.set_task_run_state
        reader = orc.read_flow_run_states if kind == "flow" else orc.read_task_run_states
        seen = []
        for i, (state, force) in enumerate(steps):
            if i == reopen_at:
                orc.close()
                orc = Orchestrator(path.with_suffix(f".{label}.db"), clock=clock,
                                   uniform=random.Random(3).uniform)
                setter = orc.set_flow_run_state if kind == "flow" else orc.set_task_run_state
                reader = orc.read_flow_run_states if kind == "flow" else orc.read_task_run_states
            result = setter(run.id, state, force=force)
            seen.append((result.status, result.reason, [(s.type, s.name, s.timestamp) for s in reader(run.id)]))
            clock.advance(timedelta(seconds=37).total_seconds())
        orc.close()
        answers[label] = seen
    assert answers["straight"] == answers["reopened"]


def test_listing_flow_runs_estimates_run_time_as_reading_one_does(orchestrator, frozen_clock):
    """Found by the differential test: read_flow_runs() left the current RUNNING stint out."""
    from flowstate.states import Running

    run = orchestrator.create_flow_run()
    orchestrator.set_flow_run_state(run.id, Running())
    frozen_clock.advance(30)
    assert orchestrator.read_flow_run(run.id).estimated_run_time == timedelta(seconds=30)
    assert orchestrator.read_flow_runs()[0].estimated_run_time == timedelta(seconds=30)

"""Random call sequences (hypothesis stateful), with the engine's invariants checked after every step.

On both backends: 100 examples on SQLite, fewer on PostgreSQL (each example is a new schema, and
each check a few queries over the network), so the suite stays quick."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import UUID

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from flowstate import FlowstateError, Orchestrator, StateType
from flowstate.states import (
    AwaitingRetry, Cancelled, Cancelling, Completed, Crashed, Failed, Paused, Pending, Running,
    Scheduled, Suspended,
)

from tests.backends import Backend
from tests.reliability._checks import assert_database_consistent

START = datetime(2024, 1, 1, tzinfo=timezone.utc)
PROPOSALS = {
    "Scheduled": lambda: Scheduled(), "AwaitingRetry": lambda: AwaitingRetry(), "Pending": lambda: Pending(),
    "Running": lambda: Running(), "Completed": lambda: Completed(), "Failed": lambda: Failed(),
    "Crashed": lambda: Crashed(), "Cancelling": lambda: Cancelling(), "Cancelled": lambda: Cancelled(),
    "Paused": lambda: Paused(pause_key="k"), "Suspended": lambda: Suspended(),
}


def _left_a_final_state(history: list[Any]) -> bool:
    return any(a.is_final and not b.is_final for a, b in zip(history, history[1:]))


class Clock:
    """An injected clock that tests move forwards and, hostile, backwards."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


class RunSequences(RuleBasedStateMachine):
    flows = Bundle("flows")
    tasks = Bundle("tasks")
    checks = 0  # invariant checks made, over all examples (one after every step)
    backend: Backend  # set by the test, for each backend

    @initialize()
    def open_database(self) -> None:
        self.path = self.backend.new_database()
        self.clock = Clock()
        self.orc = Orchestrator(self.path, clock=self.clock)
        self.run_counts: dict[UUID, int] = {}
        self.forced: set[UUID] = set()  # ids of states written by forced proposals

    def teardown(self) -> None:
        if hasattr(self, "orc"):
            self.orc.close()
            self.backend.drop(self.path)

    def _states(self, kind: str, run_id: UUID) -> list:
        read = self.orc.read_flow_run_states if kind == "flow" else self.orc.read_task_run_states
        return read(run_id)

    def _propose(self, kind: str, run_id: UUID, name: str, force: bool) -> None:
        before = {state.id for state in self._states(kind, run_id)}
        setter = self.orc.set_flow_run_state if kind == "flow" else self.orc.set_task_run_state
        try:
            setter(run_id, PROPOSALS[name](), force=force)
        except FlowstateError:
            pass  # e.g. RuleError is not expected, but a FlowstateError leaves nothing behind
        if force:
            self.forced |= {state.id for state in self._states(kind, run_id)} - before

    @rule(target=flows, retries=st.integers(0, 2))
    def create_flow_run(self, retries: int) -> UUID:
        run = self.orc.create_flow_run(empirical_policy={"retries": retries, "retry_delay": 5})
        self.run_counts[run.id] = 0
        return run.id

    @rule(target=tasks, flow=st.one_of(st.none(), flows), retries=st.integers(0, 2))
    def create_task_run(self, flow: UUID | None, retries: int) -> UUID:
        run = self.orc.create_task_run(flow_run_id=flow, empirical_policy={"retries": retries})
        self.run_counts[run.id] = 0
        return run.id

    @rule(run=flows, name=st.sampled_from(sorted(PROPOSALS)), force=st.booleans())
    def propose_flow_state(self, run: UUID, name: str, force: bool) -> None:
        self._propose("flow", run, name, force)

    @rule(run=tasks, name=st.sampled_from(sorted(PROPOSALS)), force=st.booleans())
    def propose_task_state(self, run: UUID, name: str, force: bool) -> None:
        self._propose("task", run, name, force)

    @rule(run=flows)
    def resume(self, run: UUID) -> None:
        self.orc.resume_flow_run(run)

    @rule(seconds=st.integers(-120, 3600))
    def move_clock(self, seconds: int) -> None:
        self.clock.now += timedelta(seconds=seconds)

    @rule(run=flows, name=st.sampled_from(sorted(PROPOSALS)))
    def fail_inside_a_transaction(self, run: UUID, name: str) -> None:
        before = self._states("flow", run)
        try:
            with self.orc.transaction():
                self.orc.set_flow_run_state(run, PROPOSALS[name]())
                self.orc.create_flow_run()
                raise LookupError("undo")
        except LookupError:
            pass
        assert self._states("flow", run) == before

    @invariant()
    def each_run_agrees_with_its_history(self) -> None:
        if not hasattr(self, "orc"):
            return
        RunSequences.checks += 1
        seen: set[UUID] = set()
        for kind, runs in (("flow", self.orc.read_flow_runs()), ("task", self.orc.read_task_runs())):
            for run in runs:
                history = self._states(kind, run.id)
                assert (run.state.id if run.state else None) == (history[-1].id if history else None)
                stamps = [state.timestamp for state in history]
                assert stamps == sorted(stamps), "history timestamps went backwards"
                if run.run_count < self.run_counts[run.id]:
                    # Prefect's task policy starts a task's count over when it leaves a final
                    # state for a new attempt; nothing else may lower a run_count.
                    assert kind == "task" and _left_a_final_state(history), "run_count decreased"
                self.run_counts[run.id] = run.run_count
                ids = {state.id for state in history}
                assert not ids & seen, "two histories share a state id"
                seen |= ids
                if kind == "flow":
                    for earlier, later in zip(history, history[1:]):
                        if earlier.type is StateType.CANCELLING and later.type is not StateType.CANCELLED:
                            assert later.id in self.forced, "left CANCELLING without force"
        assert_database_consistent(self.path)


SETTINGS = settings(
    stateful_step_count=30,
    deadline=None,
    derandomize=True,
)
EXAMPLES = {"sqlite": 100, "postgres": 50}


def test_random_call_sequences_keep_the_invariants(backend: Backend) -> None:
    RunSequences.checks = 0
    machine = type(f"RunSequences_{backend.name}", (RunSequences,), {"backend": backend})
    run_state_machine_as_test(
        machine, settings=settings(SETTINGS, max_examples=EXAMPLES[backend.name])
    )
    print(f"\nstateful ({backend.name}): {RunSequences.checks} steps checked")

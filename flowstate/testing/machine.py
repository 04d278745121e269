"""``OrchestrationMachine``: a hypothesis state machine over an :class:`~flowstate.Orchestrator`.

It creates flow and task runs (subflows too), proposes states (arbitrary ones and plausible
ones along the state graph, sometimes forced), pauses for run input and resumes, and moves a
:class:`~flowstate.testing.clock.FrozenClock`. After every step it checks flowstate's
invariants over every run:

* a run's current state is the last entry of its history;
* history timestamps strictly increase;
* ``run_count`` never decreases (a task run leaving a final state for a new attempt starts over);
* a flow run leaves CANCELLING only for CANCELLED, unless the move was forced;
* no state id appears in two histories, and a run's ``state_type``/``state_name`` match its state;

and after every call it checks the answer: results round-trip through JSON, ABORT and WAIT
write nothing, ACCEPT writes exactly the state it returns.

Subclass it to use your own policy (override :meth:`OrchestrationMachine.make_orchestrator`) and
to add rules (call :meth:`~OrchestrationMachine.propose` so the checks apply) and invariants::

    class MyMachine(OrchestrationMachine):
        def make_orchestrator(self, clock):
            return Orchestrator(":memory:", clock=clock, flow_policy=MY_POLICY)

        @invariant()
        def never_more_than_three_attempts(self):
            for run in self.orc.read_flow_runs():
                assert run.run_count <= 3

    TestMyMachine = MyMachine.TestCase
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any, Literal
from uuid import UUID

from flowstate.testing._require import require_hypothesis

require_hypothesis()

from hypothesis import strategies as st  # noqa: E402
from hypothesis.stateful import (  # noqa: E402
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from flowstate import FlowRun, Orchestrator, OrchestrationResult, State, StateType, TaskRun  # noqa: E402
from flowstate.results import SetStateStatus  # noqa: E402
from flowstate.testing.clock import FrozenClock  # noqa: E402
from flowstate.testing.strategies import (  # noqa: E402
    PAUSE_KEYS,
    plausible_proposals,
    proposals,
    run_inputs,
)

__all__ = ["INPUT_SCHEMA", "OrchestrationMachine", "Snapshot"]

Kind = Literal["flow", "task"]

INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "approved": {"type": "boolean"},
        "note": {"type": "string", "maxLength": 12},
    },
    "required": ["approved"],
}
"""The JSON schema the machine's pauses for input ask their run input to satisfy."""

_CLOCK_STEPS = st.one_of(st.integers(1, 120), st.integers(121, 7200), st.integers(-60, 0))


class _Undo(Exception):
    """Raised inside a transaction to roll it back."""


@dataclass
class Snapshot:
    """Every run and its history, read once: what the invariants look at."""

    runs: dict[UUID, FlowRun | TaskRun] = field(default_factory=dict)
    histories: dict[UUID, list[State]] = field(default_factory=dict)
    kinds: dict[UUID, Kind] = field(default_factory=dict)


class OrchestrationMachine(RuleBasedStateMachine):
    """Random sequences of orchestrator calls, with flowstate's invariants after every step.

    Attributes for subclasses: ``orc`` (the orchestrator), ``clock`` (its
    :class:`~flowstate.testing.clock.FrozenClock`), ``flow_run_ids`` and ``task_run_ids``
    (every run created, in order), ``forced_state_ids`` (states written by forced proposals).
    """

    flow_runs = Bundle("flow_runs")
    task_runs = Bundle("task_runs")
    max_flow_runs: int = 3
    """At most this many flow runs per example (few runs: each gets more steps)."""
    max_task_runs: int = 3
    """At most this many task runs per example."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = FrozenClock()
        self.orc = self.make_orchestrator(self.clock)
        self.flow_run_ids: list[UUID] = []
        self.task_run_ids: list[UUID] = []
        self.forced_state_ids: set[UUID] = set()
        self._run_counts: dict[UUID, int] = {}
        self._seen: dict[UUID, int] = {}

    # -- hooks ------------------------------------------------------------------------------

    def make_orchestrator(self, clock: FrozenClock) -> Orchestrator:
        """The orchestrator under test; override to pass your own policies or database."""
        return Orchestrator(":memory:", clock=clock, uniform=random.Random(0).uniform)

    def teardown(self) -> None:
        """Close the orchestrator after each example."""
        self.orc.close()

    # -- helpers for rules ------------------------------------------------------------------

    def history(self, kind: Kind, run_id: UUID) -> list[State]:
        """The run's state history, oldest first."""
        if kind == "flow":
            return self.orc.read_flow_run_states(run_id)
        return self.orc.read_task_run_states(run_id)

    def current_type(self, kind: Kind, run_id: UUID) -> StateType | None:
        """The type of the run's current state (None: no state yet)."""
        run = self.orc.read_flow_run(run_id) if kind == "flow" else self.orc.read_task_run(run_id)
        return run.state_type

    def propose(
        self, kind: Kind, run_id: UUID, state: State, *, force: bool = False
    ) -> OrchestrationResult:
        """Propose ``state`` to a run, then check the answer against the run's history."""
        before = self.history(kind, run_id)
        if kind == "flow":
            result = self.orc.set_flow_run_state(run_id, state, force=force)
        else:
            result = self.orc.set_task_run_state(run_id, state, force=force)
        after = self.history(kind, run_id)
        if force:
            self.forced_state_ids |= {s.id for s in after} - {s.id for s in before}
        self.check_result(result, before, after)
        return result

    def check_result(
        self, result: OrchestrationResult, before: list[State], after: list[State]
    ) -> None:
        """The answer survives JSON, and says what happened to the history."""
        again = OrchestrationResult.model_validate(json.loads(result.model_dump_json()))
        assert again.model_dump(mode="json") == result.model_dump(mode="json"), (
            "the result does not round-trip through JSON"
        )
        written = [s.id for s in after[len(before) :]]
        assert [s.id for s in after[: len(before)]] == [s.id for s in before], (
            "a call rewrote a run's past history"
        )
        if result.status in (SetStateStatus.ABORT, SetStateStatus.WAIT):
            assert not written, f"{result.status.value} wrote {len(written)} state(s)"
        elif result.status is SetStateStatus.ACCEPT:
            assert result.state is not None and written == [result.state.id], (
                f"ACCEPT wrote {len(written)} state(s), not the one it returned"
            )
        else:  # REJECT: the current state is kept, or one substitute is written
            assert len(written) <= 1, f"REJECT wrote {len(written)} states"
            if after:
                assert result.state is not None and result.state.id == after[-1].id, (
                    "REJECT did not return the run's current state"
                )

    def snapshot(self, *, only: UUID | None = None) -> Snapshot:
        """Every run the machine created (or ``only`` one), with its history."""
        snap = Snapshot()
        for kind, ids in (("flow", self.flow_run_ids), ("task", self.task_run_ids)):
            for run_id in ids:
                if only is not None and run_id != only:
                    continue
                run = (
                    self.orc.read_flow_run(run_id)
                    if kind == "flow"
                    else self.orc.read_task_run(run_id)
                )
                snap.runs[run_id] = run
                snap.histories[run_id] = self.history(kind, run_id)  # type: ignore[arg-type]
                snap.kinds[run_id] = kind  # type: ignore[assignment]
        return snap

    # -- rules ------------------------------------------------------------------------------

    def _create_flow_run(
        self, retries: int | None, deployment: bool, infra: bool, parent: UUID | None
    ) -> UUID:
        run = self.orc.create_flow_run(
            empirical_policy={"retries": retries, "retry_delay": 10},
            deployment_id=UUID(int=1) if deployment else None,
            infrastructure_pid="pid-1" if infra else None,
            parent_task_run_id=parent,
        )
        self.flow_run_ids.append(run.id)
        return run.id

    @initialize(target=flow_runs)
    def first_flow_run(self) -> UUID:
        """Every example starts with one flow run, retried once, with a deployment."""
        return self._create_flow_run(1, True, False, None)

    def _room_for_flow_runs(self) -> bool:
        return len(self.flow_run_ids) < self.max_flow_runs

    def _room_for_task_runs(self) -> bool:
        return len(self.task_run_ids) < self.max_task_runs

    @precondition(_room_for_flow_runs)
    @rule(
        target=flow_runs,
        retries=st.none() | st.integers(0, 2),
        deployment=st.booleans(),
        infra=st.booleans(),
    )
    def create_flow_run(self, retries: int | None, deployment: bool, infra: bool) -> UUID:
        """A flow run with or without retries, deployment and infrastructure."""
        return self._create_flow_run(retries, deployment, infra, None)

    @precondition(_room_for_flow_runs)
    @rule(target=flow_runs, parent=task_runs)
    def create_subflow_run(self, parent: UUID) -> UUID:
        """A subflow: its parent task run mirrors its states."""
        return self._create_flow_run(None, False, False, parent)

    @precondition(_room_for_task_runs)
    @rule(
        target=task_runs,
        flow=st.none() | flow_runs,
        retries=st.none() | st.integers(0, 2),
        delay=st.sampled_from([0, 5, [1, 30], 20]),
        jitter=st.sampled_from([None, 0.5]),
    )
    def create_task_run(
        self, flow: UUID | None, retries: int | None, delay: Any, jitter: float | None
    ) -> UUID:
        """A task run in a flow run or standalone, with or without retries and jitter."""
        run = self.orc.create_task_run(
            flow_run_id=flow,
            empirical_policy={"retries": retries, "retry_delay": delay, "retry_jitter_factor": jitter},
        )
        self.task_run_ids.append(run.id)
        return run.id

    @rule(run=flow_runs, data=st.data())
    def propose_flow_state(self, run: UUID, data: st.DataObject) -> None:
        """Any state, sometimes forced."""
        state, force = data.draw(proposals("flow", now=self.clock()), label="proposal")
        self.propose("flow", run, state, force=force)

    @rule(run=flow_runs, data=st.data())
    def follow_flow_graph(self, run: UUID, data: st.DataObject) -> None:
        """A plausible next state (submit, start, pause, cancel, retry, ...)."""
        current = self.current_type("flow", run)
        state, force = data.draw(
            plausible_proposals(current, "flow", now=self.clock()), label="proposal"
        )
        self.propose("flow", run, state, force=force)

    @rule(run=task_runs, data=st.data())
    def task_step(self, run: UUID, data: st.DataObject) -> None:
        """A plausible next task state, a probe of a guard, or any state (one rule for tasks,
        so that flow runs, which have more to explore, get most of the steps)."""
        current = self.current_type("task", run)
        state, force = data.draw(
            plausible_proposals(current, "task", now=self.clock()), label="proposal"
        )
        self.propose("task", run, state, force=force)

    @rule(run=flow_runs)
    def probe_flow_guards(self, run: UUID) -> None:
        """Propose every state type, unforced, each undone afterwards (see :meth:`probe`)."""
        self.probe("flow", run)

    @rule(run=task_runs)
    def probe_task_guards(self, run: UUID) -> None:
        """Propose every state type to a task run, unforced, each undone afterwards."""
        self.probe("task", run)

    def probe(self, kind: Kind, run_id: UUID) -> None:
        """Propose each of the nine state types to the run, unforced, inside a transaction
        that is rolled back: whatever the policy lets through from the run's current state
        must keep the invariants. The run is left as it was."""
        for type_ in StateType:
            try:
                with self.orc.transaction():
                    self.propose(kind, run_id, State(type=type_))
                    snap = self.snapshot(only=run_id)
                    self.check_current_state_is_last_in_history(snap)
                    self.check_history_timestamps_increase(snap)
                    self.check_cancelling_only_becomes_cancelled(snap)
                    self.check_run_fields_follow_state(snap)
                    raise _Undo
            except _Undo:
                pass

    @rule(run=flow_runs, key=st.sampled_from(PAUSE_KEYS), reschedule=st.booleans())
    def pause_for_input(self, run: UUID, key: str, reschedule: bool) -> None:
        """Pause (or suspend) waiting for run input; on ACCEPT the input schema is stored."""
        keyset = {"description": f"{key}-description", "response": f"{key}-response",
                  "schema": f"{key}-schema"}
        paused = State.model_validate(
            {
                "type": "PAUSED",
                "name": "Suspended" if reschedule else "Paused",
                "state_details": {
                    "pause_key": key,
                    "pause_reschedule": reschedule,
                    "run_input_keyset": keyset,
                },
            }
        )
        result = self.propose("flow", run, paused)
        if result.status is SetStateStatus.ACCEPT:
            self.orc.create_flow_run_input(run, keyset["schema"], json.dumps(INPUT_SCHEMA))

    @rule(run=flow_runs, data=st.data())
    def resume_flow_run(self, run: UUID, data: st.DataObject) -> None:
        """Resume, with valid input, arbitrary input or none."""
        run_input = data.draw(
            st.none() | run_inputs(INPUT_SCHEMA) | st.just({"approved": "yes"}), label="run_input"
        )
        before = self.history("flow", run)
        result = self.orc.resume_flow_run(run, run_input)
        self.check_result(result, before, self.history("flow", run))

    @rule(seconds=_CLOCK_STEPS)
    def advance_clock(self, seconds: int) -> None:
        """Time passes (and now and then goes back a little)."""
        self.clock.advance(seconds)

    # -- invariants -------------------------------------------------------------------------

    @invariant()
    def flowstate_invariants(self) -> None:
        """Every invariant over every run, from one snapshot."""
        snap = self.snapshot()
        self.check_current_state_is_last_in_history(snap)
        self.check_history_timestamps_increase(snap)
        self.check_run_counts_never_decrease(snap)
        self.check_cancelling_only_becomes_cancelled(snap)
        self.check_state_ids_are_unique(snap)
        self.check_run_fields_follow_state(snap)
        for run_id, history in snap.histories.items():
            self._seen[run_id] = len(history)

    def check_current_state_is_last_in_history(self, snap: Snapshot) -> None:
        """A run's state is the last entry of its history (none for a run with no history)."""
        for run_id, run in snap.runs.items():
            history = snap.histories[run_id]
            current = None if run.state is None else run.state.id
            assert current == (history[-1].id if history else None), (
                f"{snap.kinds[run_id]} run {run_id}: current state {current} is not the last "
                "history entry"
            )

    def check_history_timestamps_increase(self, snap: Snapshot) -> None:
        """History timestamps strictly increase."""
        for run_id, history in snap.histories.items():
            for earlier, later in zip(history, history[1:]):
                assert earlier.timestamp < later.timestamp, (
                    f"run {run_id}: {later!r} at {later.timestamp} is not after {earlier!r} "
                    f"at {earlier.timestamp}"
                )

    def check_run_counts_never_decrease(self, snap: Snapshot) -> None:
        """run_count never decreases, except that a task run re-entering from a final state
        starts over (Prefect's HandleTaskTerminalStateTransitions)."""
        for run_id, run in snap.runs.items():
            previous = self._run_counts.get(run_id, 0)
            if run.run_count < previous:
                history = snap.histories[run_id]
                start = max(self._seen.get(run_id, 0), 1)
                restarted = any(
                    history[i - 1].is_final and not history[i].is_final
                    for i in range(start, len(history))
                )
                assert snap.kinds[run_id] == "task" and restarted, (
                    f"{snap.kinds[run_id]} run {run_id}: run_count went from {previous} to "
                    f"{run.run_count}"
                )
            self._run_counts[run_id] = run.run_count

    def check_cancelling_only_becomes_cancelled(self, snap: Snapshot) -> None:
        """A flow run leaves CANCELLING only for CANCELLED, unless forced."""
        for run_id, history in snap.histories.items():
            if snap.kinds[run_id] != "flow":
                continue
            for earlier, later in zip(history, history[1:]):
                if (
                    earlier.type is StateType.CANCELLING
                    and later.type is not StateType.CANCELLED
                    and later.id not in self.forced_state_ids
                ):
                    raise AssertionError(
                        f"flow run {run_id} went from CANCELLING to {later.type.value} "
                        f"({later.name}) without force"
                    )

    def check_state_ids_are_unique(self, snap: Snapshot) -> None:
        """No state id appears twice, in one history or across two."""
        seen: dict[UUID, UUID] = {}
        for run_id, history in snap.histories.items():
            for state in history:
                assert state.id not in seen, (
                    f"state {state.id} is in the histories of {seen[state.id]} and {run_id}"
                )
                seen[state.id] = run_id

    def check_run_fields_follow_state(self, snap: Snapshot) -> None:
        """``state_type`` and ``state_name`` are those of the current state."""
        for run_id, run in snap.runs.items():
            state = run.state
            expected = (None, None) if state is None else (state.type, state.name)
            assert (run.state_type, run.state_name) == expected, (
                f"run {run_id}: state_type/state_name {run.state_type}/{run.state_name} do not "
                f"match its state {state!r}"
            )

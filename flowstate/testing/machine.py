"""``OrchestrationMachine``: a hypothesis state machine over an :class:`~flowstate.Orchestrator`.

It creates flow and task runs (subflows too) and moves them along their lives (schedule,
start, pause, resume, finish, cancel, retry: each step for a run in a state it applies to),
proposes arbitrary states (sometimes forced), probes guards, and moves a
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
from datetime import datetime, timedelta
from collections.abc import Iterable, Mapping
from typing import Any, Literal
from uuid import UUID

from flowstate.testing._require import require_hypothesis

require_hypothesis()

from hypothesis import settings  # noqa: E402
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
from flowstate.testing.clock import DEFAULT_START, FrozenClock  # noqa: E402
from flowstate.states import Paused  # noqa: E402
from flowstate.testing.strategies import PAUSE_KEYS, draw_state, run_inputs, type_choice  # noqa: E402

__all__ = ["CLOCK_STEPS", "INPUT_SCHEMA", "OrchestrationMachine", "Snapshot"]

Kind = Literal["flow", "task"]
S = StateType

INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "approved": {"type": "boolean"},
        "note": {"type": "string", "maxLength": 12},
    },
    "required": ["approved"],
}
"""The JSON schema the machine's pauses for input ask their run input to satisfy."""

CLOCK_STEPS: st.SearchStrategy[int] = st.one_of(
    st.integers(1, 120),
    st.sampled_from([3600 * hours for hours in range(1, 25)]),
    st.integers(121, 7200),
    st.integers(-60, -1),
)
"""The default :attr:`OrchestrationMachine.clock_steps`, in seconds: a few seconds to two
minutes (WAIT delays, timeouts), whole hours up to a day (any hour of the day is one step
away), up to two hours, or back up to a minute."""

MACHINE_MODES: dict[str, dict[str, int]] = {
    "plain": {},
    "pauses": {"pause_flow_run": 4, "resume_flow_run": 3, "start_flow_run": 3},
    "retries": {"end_flow_run": 3, "start_flow_run": 3, "finish_task_run": 3,
                "start_task_run": 3},
    "time": {"advance_clock": 4, "start_flow_run": 2, "queue_flow_run": 2},
}
"""Rule weights for :attr:`OrchestrationMachine.mode`, over the default weights
(:attr:`OrchestrationMachine.rule_weights`): ``"pauses"`` pauses and resumes runs again and
again, ``"retries"`` ends and restarts runs, ``"time"`` moves the clock more."""
_MAX_WEIGHT = 8



_FINAL = (S.COMPLETED, S.FAILED, S.CANCELLED, S.CRASHED)
_RUNNER: st.SearchStrategy[Any] = st.runner()
"""The machine running the step (one strategy object: a new one per draw is slow)."""


class RunRef:
    """A run a step acts on, printed as the steps name it: ``flow_runs_0``, ``task_runs_1``."""

    __slots__ = ("id", "index", "kind")

    def __init__(self, kind: Kind, index: int, id: UUID) -> None:
        self.kind, self.index, self.id = kind, index, id

    def __repr__(self) -> str:
        return f"{self.kind}_runs_{self.index}"


_WHICH = st.integers(0, 7)


@st.composite
def _runs_in(
    draw: st.DrawFn, kind: Kind, types: tuple[StateType | None, ...]
) -> RunRef | None:
    """One of the machine's runs of ``kind`` in a state of one of ``types``, when the step is
    taken (None when there is none: the step does nothing). The choice is a small number, the
    same whatever the runs' states, so that removing an earlier step never turns this one
    into a different kind of step: it acts on another run, or does nothing."""
    machine = draw(_RUNNER)
    return machine.pick(kind, frozenset(types), draw(_WHICH))


class _Undo(Exception):
    """Raised inside a transaction to roll it back."""


@st.composite
def _at_machine_time(
    draw: st.DrawFn, types: tuple[StateType, ...], kind: Kind | None
) -> State:
    machine = draw(_RUNNER)
    return draw_state(draw, draw(type_choice(types)), kind, machine.clock(), PAUSE_KEYS)


def _now_states(
    types: StateType | tuple[StateType, ...] | None, kind: Kind | None
) -> st.SearchStrategy[State]:
    """:func:`~flowstate.testing.states` with times relative to the machine's clock when the
    step is drawn (one strategy, built once: building one per step is slow)."""
    chosen = tuple(StateType) if types is None else (types if isinstance(types, tuple) else (types,))
    return _at_machine_time(chosen, kind)


_FORCE = st.sampled_from([False, False, False, True])


_TIMEOUT = st.sampled_from([None, None, "ahead", "expired"])
_AHEAD = st.integers(1, 3600)
_EXPIRED = st.integers(-600, 0)
_RESCHEDULE = st.sampled_from([False, False, True])
_POOL_KEY = st.none() | st.sampled_from(PAUSE_KEYS)


@st.composite
def _pause(draw: st.DrawFn) -> State:
    """A pause a run could take: mostly with no timeout or one ahead, one time in four already
    expired; a pause key from the pool or none (a fresh key); suspended one time in three."""
    now = draw(_RUNNER).clock()
    timeout = draw(_TIMEOUT)
    seconds = None
    if timeout == "ahead":
        seconds = draw(_AHEAD)
    elif timeout == "expired":
        seconds = draw(_EXPIRED)
    return Paused(
        pause_expiration_time=None if seconds is None else now + timedelta(seconds=seconds),
        reschedule=draw(_RESCHEDULE),
        pause_key=draw(_POOL_KEY),
    )


@dataclass
class Snapshot:
    """Every run and its history, read once: what the invariants look at."""

    runs: dict[UUID, FlowRun | TaskRun] = field(default_factory=dict)
    histories: dict[UUID, list[State]] = field(default_factory=dict)
    kinds: dict[UUID, Kind] = field(default_factory=dict)


class _TestCaseSettings:
    """``Machine.TestCase`` with settings that keep every health check on.

    Hypothesis' own ``TestCase`` suppresses all health checks; the machine draws every step
    valid by construction and needs none suppressed, so a subclass sees the warnings its own
    rules would cause. ``deadline`` is off: an example is a whole sequence of calls.
    """

    def __get__(self, instance: Any, owner: type[RuleBasedStateMachine]) -> Any:
        case = RuleBasedStateMachine.__dict__["TestCase"].__get__(instance, owner)
        if "_flowstate_settings" not in case.__dict__:
            case.settings = settings(deadline=None)
            case._flowstate_settings = True
        return case


class OrchestrationMachine(RuleBasedStateMachine):
    """Random sequences of orchestrator calls, with flowstate's invariants after every step.

    Attributes for subclasses: ``orc`` (the orchestrator), ``clock`` (its
    :class:`~flowstate.testing.clock.FrozenClock`), ``flow_run_ids`` and ``task_run_ids``
    (every run created, in order), ``forced_state_ids`` (states written by forced proposals).

    Every built-in step acts on a run that is in a state the step applies to (a pause on a
    RUNNING flow run, a resume on a PAUSED one, ...): steps are chosen by the runs' current
    states, so none is wasted and shrinking removes steps instead of redrawing them.
    """

    flow_runs = Bundle("flow_runs")
    task_runs = Bundle("task_runs")
    max_flow_runs: int = 3
    """At most this many flow runs per example (few runs: each gets more steps)."""
    max_task_runs: int = 3
    """At most this many task runs per example."""
    start: datetime = DEFAULT_START
    """Where the clock starts in every example (default 2024-01-01T00:00Z, a Monday)."""
    clock_steps: st.SearchStrategy[int] = CLOCK_STEPS
    """How many seconds one ``advance_clock`` step moves the clock (see :data:`CLOCK_STEPS`)."""
    mode: str = "plain"
    """A preset of rule weights (:data:`MACHINE_MODES`): ``"pauses"``, ``"retries"``,
    ``"time"``."""
    rule_weights: Mapping[str, int] = {
        "start_flow_run": 2, "pause_flow_run": 2, "resume_flow_run": 2,
    }
    """How often each rule is chosen, by rule name, relative to 1 for a rule not named (an int
    from 1 to 8; your own rules may be named too). A mode's weights win over these. Steps
    along a run's life are favoured a little by default, so runs get deep."""

    TestCase = _TestCaseSettings()  # type: ignore[assignment]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _weigh_rules(cls)

    def __init__(self) -> None:
        super().__init__()
        self.clock = FrozenClock(self.start)
        self.orc = self.make_orchestrator(self.clock)
        self.flow_run_ids: list[UUID] = []
        self.task_run_ids: list[UUID] = []
        self.forced_state_ids: set[UUID] = set()
        self._types: dict[UUID, StateType | None] = {}
        self._histories: dict[UUID, tuple[UUID | None, list[State]]] = {}
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
        self._types[run_id] = run.state_type
        return run.state_type

    def runs_in(self, kind: Kind, types: Iterable[StateType | None]) -> list[UUID]:
        """The ids of the machine's runs of ``kind`` whose current state type is in ``types``
        (None in it: no state yet), as of the last step: for your own rules' preconditions."""
        wanted = set(types)
        ids = self.flow_run_ids if kind == "flow" else self.task_run_ids
        return [run_id for run_id in ids if self._types.get(run_id) in wanted]

    def pick(self, kind: Kind, types: frozenset[StateType | None], n: int) -> RunRef | None:
        """The ``n``-th (modulo their number) of the runs of ``kind`` whose state type is in
        ``types``; None if there is none."""
        ids = self.flow_run_ids if kind == "flow" else self.task_run_ids
        found = [(i, run_id) for i, run_id in enumerate(ids) if self._types.get(run_id) in types]
        if not found:
            return None
        index, run_id = found[n % len(found)]
        return RunRef(kind, index, run_id)

    def _kind(self, run_id: UUID) -> Kind:
        return "flow" if run_id in self.flow_run_ids else "task"

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
        self._types[run_id] = after[-1].type if after else None
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
                # a history only grows by a write, which changes the current state: read it
                # again only then
                current = None if run.state is None else run.state.id
                cached = self._histories.get(run_id)
                if cached is None or cached[0] != current:
                    cached = (current, self.history(kind, run_id))  # type: ignore[arg-type]
                    self._histories[run_id] = cached
                snap.histories[run_id] = cached[1]
                snap.kinds[run_id] = kind  # type: ignore[assignment]
        return snap

    def _created(self, kind: Kind, run: FlowRun | TaskRun) -> UUID:
        ids = self.flow_run_ids if kind == "flow" else self.task_run_ids
        ids.append(run.id)
        self._types[run.id] = run.state_type
        return run.id

    # -- rules: runs ------------------------------------------------------------------------

    def _create_flow_run(
        self, retries: int | None, deployment: bool, infra: bool, parent: UUID | None
    ) -> UUID:
        run = self.orc.create_flow_run(
            empirical_policy={"retries": retries, "retry_delay": 10},
            deployment_id=UUID(int=1) if deployment else None,
            infrastructure_pid="pid-1" if infra else None,
            parent_task_run_id=parent,
        )
        return self._created("flow", run)

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
        parent=st.none() | task_runs,
    )
    def create_flow_run(
        self, retries: int | None, deployment: bool, infra: bool, parent: UUID | None
    ) -> UUID:
        """A flow run with or without retries, deployment and infrastructure; or a subflow of
        a task run (``parent``), which then mirrors its states."""
        if parent is not None:
            return self._create_flow_run(None, False, False, parent)
        return self._create_flow_run(retries, deployment, infra, None)

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
        return self._created("task", run)

    # -- rules: flow runs along the state graph ---------------------------------------------

    @rule(run=_runs_in("flow", (None, S.SCHEDULED, *_FINAL)), state=_now_states((S.SCHEDULED, S.PENDING), "flow"))
    def queue_flow_run(self, run: RunRef | None, state: State) -> None:
        """Schedule (or reschedule, or mark late) or submit a new, scheduled or finished flow
        run."""
        if run is None:  # no run is in a state this step applies to
            return
        self.propose("flow", run.id, state)

    @rule(
        run=_runs_in("flow", (None, S.SCHEDULED, S.PENDING, S.PAUSED, S.CANCELLING, *_FINAL)),
        state=_now_states(S.RUNNING, "flow"),
    )
    def start_flow_run(self, run: RunRef | None, state: State) -> None:
        """Start a flow run: a first start, a resume from a pause, a retry, or a run being
        cancelled (which the policy should refuse)."""
        if run is None:  # no run is in a state this step applies to
            return
        self.propose("flow", run.id, state)

    @rule(run=_runs_in("flow", (S.RUNNING,)), state=_pause(),
           for_input=st.sampled_from([False, False, True]))
    def pause_flow_run(self, run: RunRef | None, state: State, for_input: bool) -> None:
        """Pause or suspend a running flow run; ``for_input``: waiting for run input, whose
        schema is stored on ACCEPT."""
        if run is None:  # no run is in a state this step applies to
            return
        if for_input:
            key = state.state_details.pause_key or "input"
            keyset = {"description": f"{key}-description", "response": f"{key}-response",
                      "schema": f"{key}-schema"}
            details = state.state_details.model_copy(update={"run_input_keyset": keyset})
            state = state.model_copy(update={"state_details": details})
        result = self.propose("flow", run.id, state)
        keyset_given = state.state_details.run_input_keyset
        if keyset_given and result.status is SetStateStatus.ACCEPT:
            self.orc.create_flow_run_input(run.id, keyset_given["schema"], json.dumps(INPUT_SCHEMA))

    @rule(run=_runs_in("flow", (S.PAUSED,)), run_input=st.none() | run_inputs(INPUT_SCHEMA) | st.just({"approved": "yes"}))
    def resume_flow_run(self, run: RunRef | None, run_input: dict[str, Any] | None) -> None:
        """Resume a paused flow run, with valid input, invalid input or none."""
        if run is None:  # no run is in a state this step applies to
            return
        before = self.history("flow", run.id)
        result = self.orc.resume_flow_run(run.id, run_input)
        after = self.history("flow", run.id)
        self._types[run.id] = after[-1].type if after else None
        self.check_result(result, before, after)

    @rule(run=_runs_in("flow", (S.SCHEDULED, S.PENDING, S.RUNNING, S.CANCELLING)), state=_now_states((S.COMPLETED, S.FAILED, S.CRASHED, S.CANCELLING, S.CANCELLED),
                             "flow"))
    def end_flow_run(self, run: RunRef | None, state: State) -> None:
        """Complete, fail or crash a flow run (a failure may be retried), cancel it, or
        finish cancelling it."""
        if run is None:  # no run is in a state this step applies to
            return
        self.propose("flow", run.id, state)

    # -- rules: task runs -------------------------------------------------------------------

    @rule(run=_runs_in("task", (None, S.SCHEDULED, S.PENDING, *_FINAL)), state=_now_states((S.RUNNING, S.SCHEDULED, S.PENDING), "task"))
    def start_task_run(self, run: RunRef | None, state: State) -> None:
        """Start a task run (maybe with a cache key), retry a finished one, or schedule or
        submit it."""
        if run is None:  # no run is in a state this step applies to
            return
        self.propose("task", run.id, state)

    @rule(run=_runs_in("task", (S.RUNNING,)), state=_now_states((S.COMPLETED, S.FAILED, S.CRASHED, S.CANCELLED), "task"))
    def finish_task_run(self, run: RunRef | None, state: State) -> None:
        """Finish a running task run (a completion may be cached, a failure retried)."""
        if run is None:  # no run is in a state this step applies to
            return
        self.propose("task", run.id, state)

    # -- rules: anything --------------------------------------------------------------------

    @rule(run=flow_runs | task_runs, state=_now_states(None, None), force=_FORCE)
    def propose_state(self, run: UUID, state: State, force: bool) -> None:
        """Any state to any run, forced one time in four."""
        self.propose(self._kind(run), run, state, force=force)

    # -- rules: probes and time -------------------------------------------------------------

    @rule(run=flow_runs | task_runs)
    def probe_guards(self, run: UUID) -> None:
        """Propose every state type to a run, unforced, each undone afterwards (see
        :meth:`probe`)."""
        self.probe(self._kind(run), run)

    def probe(self, kind: Kind, run_id: UUID) -> None:
        """Propose each of the nine state types to the run, unforced, each inside a
        transaction that is rolled back (``orc.transaction()``): whatever the policy lets
        through from the run's current state must keep the invariants. The run is left as it
        was, and listeners hear nothing."""
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
        self.current_type(kind, run_id)

    @rule(seconds=_RUNNER.flatmap(lambda machine: machine.clock_steps))
    def advance_clock(self, seconds: int) -> None:
        """Time passes (and now and then goes back a little): see :attr:`clock_steps`."""
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
            self._types[run_id] = snap.runs[run_id].state_type

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


def _weigh_rules(cls: type[OrchestrationMachine]) -> None:
    """Give each rule of ``cls`` its weight: a rule reachable under ``w`` attribute names is
    listed ``w`` times among the rules hypothesis chooses from (and prints under its own
    name)."""
    if cls.mode not in MACHINE_MODES:
        raise ValueError(f"mode must be one of {sorted(MACHINE_MODES)}, got {cls.mode!r}")
    weights = {**cls.rule_weights, **MACHINE_MODES[cls.mode]}
    for name, weight in weights.items():
        function = getattr(cls, name, None)
        if function is None or not callable(function):
            raise ValueError(f"rule_weights names {name!r}, which is not a rule of {cls.__name__}")
        if not isinstance(weight, int) or isinstance(weight, bool) or not 1 <= weight <= _MAX_WEIGHT:
            raise ValueError(f"the weight of {name!r} must be an int from 1 to {_MAX_WEIGHT}")
    for name in dir(cls):
        if name.startswith("_weighted_"):
            setattr(cls, name, None)
    for name, weight in weights.items():
        for copy in range(2, weight + 1):
            setattr(cls, f"_weighted_{name}_{copy}", getattr(cls, name))


_weigh_rules(OrchestrationMachine)

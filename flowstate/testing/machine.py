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
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from uuid import UUID

from flowstate.testing._require import require_hypothesis

require_hypothesis()

from hypothesis import Phase, settings  # noqa: E402
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
from flowstate.run_input import keyset_from_base_key  # noqa: E402
from flowstate.testing._steps import (  # noqa: E402
    ANY_RUN,
    PAUSES,
    RUN_INPUTS,
    RunRef,
    now_states,
    one_choice_rules,
    a_run_in,
    run_or_none,
)
from flowstate.testing.clock import DEFAULT_START, FrozenClock  # noqa: E402
from flowstate.testing.strategies import Kind, run_inputs  # noqa: E402

__all__ = ["CLOCK_STEPS", "INPUT_SCHEMA", "OrchestrationMachine", "Snapshot"]

S = StateType
_KINDS: tuple[Kind, ...] = ("flow", "task")

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
minutes (WAIT delays, timeouts), whole hours up to a day, up to two hours, or back up to a
minute. With it, the machine's ``advance_clock_to`` step also moves the clock to the next
whole hour of the day."""

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


class _Undo(Exception):
    """Raised inside a transaction to roll it back."""


def _step(kind: Kind, types: tuple[StateType | None, ...], **arguments: Any) -> Any:
    """A rule acting on ``run``, one of the runs of ``kind`` in a state of one of ``types``
    (:func:`~flowstate.testing._steps.a_run_in`), chosen only when there is such a run."""

    def some_run_in(machine: OrchestrationMachine) -> bool:
        return bool(machine.runs_in(kind, types))

    some_run_in.__name__ = f"some_{kind}_run_in_{'_'.join(str(t and t.value) for t in types)}"
    return lambda function: precondition(some_run_in)(
        rule(run=a_run_in(kind, types), **arguments)(function)
    )


_FORCE = st.sampled_from([False, False, False, True])
_QUEUE_FROM = (None, S.SCHEDULED, *_FINAL)
_START_FROM = (None, S.SCHEDULED, S.PENDING, S.PAUSED, S.CANCELLING, *_FINAL)
_END_FROM = (S.SCHEDULED, S.PENDING, S.RUNNING, S.CANCELLING)
_TASK_START_FROM = (None, S.SCHEDULED, S.PENDING, *_FINAL)
_CLOCK_STEP = st.runner().flatmap(lambda machine: machine.clock_steps)


_RESUME_INPUT: st.SearchStrategy[dict[str, Any] | None] = st.one_of(
    *map(st.just, RUN_INPUTS), run_inputs(INPUT_SCHEMA)
)
"""A resume's input: one of :data:`RUN_INPUTS`, or (the last choice) input drawn from the
schema, each as likely as the others (one choice)."""
_FLOW_RETRIES = st.sampled_from([None, 0, 1, 2])
_TASK_POLICIES = st.sampled_from([
    {"retries": retries, "retry_delay": delay, "retry_jitter_factor": jitter}
    for retries in (None, 0, 1, 2)
    for delay, jitter in ((0, None), (5, None), ([1, 30], None), (20, 0.5))
])


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
    rules would cause. ``deadline`` is off: an example is a whole sequence of calls. The
    ``explain`` phase is left out: it traces every line run while shrinking (with
    ``sys.settrace`` before Python 3.12, which makes each step several times slower) only to
    list the lines failing examples ran, which say little about a sequence of calls.
    """

    def __get__(self, instance: Any, owner: type[RuleBasedStateMachine]) -> Any:
        case = RuleBasedStateMachine.__dict__["TestCase"].__get__(instance, owner)
        if "_flowstate_settings" not in case.__dict__:
            phases = [phase for phase in settings().phases if phase is not Phase.explain]
            case.settings = settings(deadline=None, phases=phases)
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
    """How many seconds one ``advance_clock`` step moves the clock (see :data:`CLOCK_STEPS`;
    with a strategy of your own the clock moves by it only: ``advance_clock_to`` is off)."""
    mode: str = "plain"
    """A preset of rule weights (:data:`MACHINE_MODES`): ``"pauses"``, ``"retries"``,
    ``"time"``."""
    rule_weights: Mapping[str, int] = {
        "start_flow_run": 2, "pause_flow_run": 2, "resume_flow_run": 2, "advance_clock": 2,
    }
    """How often each rule is chosen, by rule name, relative to 1 for a rule not named (an int
    from 1 to 8; your own rules may be named too). A mode's weights win over these. Steps
    along a run's life are favoured a little by default, so runs get deep."""

    TestCase = _TestCaseSettings()  # type: ignore[assignment]

    step_order: tuple[str, ...] = (
        "advance_clock", "advance_clock_to", "start_flow_run", "pause_flow_run", "resume_flow_run",
        "queue_flow_run", "end_flow_run", "start_task_run", "finish_task_run",
        "create_flow_run", "create_task_run", "create_subflow_run", "propose_state",
        "probe_guards",
    )
    """The order the machine lists its rules in; rules not named (your own) come after.
    Shrinking prefers earlier rules, so a counterexample is made of the plainest steps that
    still fail."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _weigh_rules(cls)

    def __init__(self) -> None:
        super().__init__()
        rules = one_choice_rules(self)
        if rules is not None:  # each step's rule is one choice (see _steps.OneChoiceRules)
            self._rules_strategy = rules
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

    def _ids(self, kind: Kind) -> list[UUID]:
        return self.flow_run_ids if kind == "flow" else self.task_run_ids

    def _read(self, kind: Kind, run_id: UUID) -> FlowRun | TaskRun:
        return self.orc.read_flow_run(run_id) if kind == "flow" else self.orc.read_task_run(run_id)

    def current_type(self, kind: Kind, run_id: UUID) -> StateType | None:
        """The type of the run's current state (None: no state yet)."""
        run = self._read(kind, run_id)
        self._types[run_id] = run.state_type
        return run.state_type

    def runs_in(self, kind: Kind, types: Iterable[StateType | None]) -> list[UUID]:
        """The ids of the machine's runs of ``kind`` whose current state type is in ``types``
        (None in it: no state yet), as of the last step: for your own rules' preconditions."""
        wanted = set(types)
        return [run_id for run_id in self._ids(kind) if self._types.get(run_id) in wanted]

    def pick(
        self, kind: Kind, types: frozenset[StateType | None] | None, n: int
    ) -> RunRef | None:
        """The ``n``-th (modulo their number) of the runs of ``kind`` whose state type is in
        ``types`` (None: any run of ``kind``); None if there is none."""
        ids = self._ids(kind)
        found = [
            i for i, run_id in enumerate(ids) if types is None or self._types.get(run_id) in types
        ]
        if not found:
            return None
        index = found[n % len(found)]
        return RunRef(kind, index, ids[index])

    def pick_any(self, n: int) -> RunRef:
        """The ``n``-th (modulo their number) of all the machine's runs, flow runs first."""
        runs = [
            RunRef(kind, index, run_id)
            for kind in _KINDS
            for index, run_id in enumerate(self._ids(kind))
        ]
        return runs[n % len(runs)]

    def history_now(self, kind: Kind, run_id: UUID) -> list[State]:
        """The run's state history, read again only if its current state changed since the
        machine last read it (a history grows only by a write, which changes the current
        state)."""
        return self._history_of(kind, self._read(kind, run_id))

    def _history_of(self, kind: Kind, run: FlowRun | TaskRun) -> list[State]:
        current = None if run.state is None else run.state.id
        cached = self._histories.get(run.id)
        if cached is None or cached[0] != current:
            cached = (current, self.history(kind, run.id))
            self._histories[run.id] = cached
        self._types[run.id] = run.state_type
        return cached[1]

    def propose(
        self, kind: Kind, run_id: UUID, state: State, *, force: bool = False
    ) -> OrchestrationResult:
        """Propose ``state`` to a run, then check the answer against the run's history."""
        set_state = self.orc.set_flow_run_state if kind == "flow" else self.orc.set_task_run_state
        return self._checked(kind, run_id, lambda: set_state(run_id, state, force=force), force)

    def _checked(
        self, kind: Kind, run_id: UUID, call: Callable[[], OrchestrationResult], forced: bool
    ) -> OrchestrationResult:
        """``call()``'s answer, checked against the run's history before and after it."""
        before = self.history_now(kind, run_id)
        result = call()
        after = self.history_now(kind, run_id)
        if forced:
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
        _check_written(result, written, after)

    def snapshot(self, *, only: UUID | None = None) -> Snapshot:
        """Every run the machine created (or ``only`` one), with its history."""
        snap = Snapshot()
        for kind in _KINDS:
            for run_id in self._ids(kind):
                if only is None or run_id == only:
                    run = self._read(kind, run_id)
                    snap.runs[run_id] = run
                    snap.histories[run_id] = self._history_of(kind, run)
                    snap.kinds[run_id] = kind
        return snap

    def _created(self, kind: Kind, run: FlowRun | TaskRun) -> UUID:
        self._ids(kind).append(run.id)
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

    def _room_for_a_subflow(self) -> bool:
        return bool(self.task_run_ids) and self._room_for_flow_runs()

    @precondition(_room_for_flow_runs)
    @rule(target=flow_runs, retries=_FLOW_RETRIES, deployment=st.booleans(), infra=st.booleans())
    def create_flow_run(self, retries: int | None, deployment: bool, infra: bool) -> UUID:
        """A flow run with or without retries, deployment and infrastructure."""
        return self._create_flow_run(retries, deployment, infra, None)

    @precondition(_room_for_a_subflow)
    @rule(target=flow_runs, parent=a_run_in("task", None))
    def create_subflow_run(self, parent: RunRef) -> UUID:
        """A subflow of a task run: the task run then mirrors its states."""
        return self._create_flow_run(None, False, False, parent.id)

    @precondition(_room_for_task_runs)
    @rule(target=task_runs, flow=run_or_none("flow"), policy=_TASK_POLICIES)
    def create_task_run(self, flow: RunRef | None, policy: dict[str, Any]) -> UUID:
        """A task run in a flow run or standalone (``flow`` None), with or without retries,
        retry delays and jitter (``policy``: its ``empirical_policy``)."""
        run = self.orc.create_task_run(
            flow_run_id=None if flow is None else flow.id, empirical_policy=policy
        )
        return self._created("task", run)

    # -- rules: flow runs along the state graph ---------------------------------------------
    # each applies to runs in some states, and is chosen only when a run is in one of them

    @_step("flow", _QUEUE_FROM, state=now_states((S.SCHEDULED, S.PENDING), "flow"))
    def queue_flow_run(self, run: RunRef, state: State) -> None:
        """Schedule (or reschedule, or mark late) or submit a new, scheduled or finished flow
        run."""
        self.propose("flow", run.id, state)

    @_step("flow", _START_FROM, state=now_states((S.RUNNING,), "flow"))
    def start_flow_run(self, run: RunRef, state: State) -> None:
        """Start a flow run: a first start, a resume from a pause, a retry, or a run being
        cancelled (which the policy should refuse)."""
        self.propose("flow", run.id, state)

    @_step("flow", (S.RUNNING,), state=PAUSES, for_input=st.booleans())
    def pause_flow_run(self, run: RunRef, state: State, for_input: bool) -> None:
        """Pause or suspend a running flow run; ``for_input``: waiting for run input, whose
        schema is stored on ACCEPT."""
        if for_input:
            keyset = keyset_from_base_key(state.state_details.pause_key or "input")
            details = state.state_details.model_copy(update={"run_input_keyset": keyset})
            state = state.model_copy(update={"state_details": details})
        result = self.propose("flow", run.id, state)
        keyset_given = state.state_details.run_input_keyset
        if keyset_given and result.status is SetStateStatus.ACCEPT:
            self.orc.create_flow_run_input(run.id, keyset_given["schema"], json.dumps(INPUT_SCHEMA))

    @_step("flow", (S.PAUSED,), run_input=_RESUME_INPUT)
    def resume_flow_run(self, run: RunRef, run_input: dict[str, Any] | None) -> None:
        """Resume a paused flow run, with valid input, invalid input or none."""
        self._checked("flow", run.id, lambda: self.orc.resume_flow_run(run.id, run_input), False)

    @_step("flow", _END_FROM,
           state=now_states((S.COMPLETED, S.FAILED, S.CRASHED, S.CANCELLING, S.CANCELLED), "flow"))
    def end_flow_run(self, run: RunRef, state: State) -> None:
        """Complete, fail or crash a flow run (a failure may be retried), cancel it, or
        finish cancelling it."""
        self.propose("flow", run.id, state)

    # -- rules: task runs -------------------------------------------------------------------

    @_step("task", _TASK_START_FROM, state=now_states((S.RUNNING, S.SCHEDULED, S.PENDING), "task"))
    def start_task_run(self, run: RunRef, state: State) -> None:
        """Start a task run (maybe with a cache key), retry a finished one, or schedule or
        submit it."""
        self.propose("task", run.id, state)

    @_step("task", (S.RUNNING,),
           state=now_states((S.COMPLETED, S.FAILED, S.CRASHED, S.CANCELLED), "task"))
    def finish_task_run(self, run: RunRef, state: State) -> None:
        """Finish a running task run (a completion may be cached, a failure retried)."""
        self.propose("task", run.id, state)

    # -- rules: anything --------------------------------------------------------------------

    @rule(run=ANY_RUN, state=now_states(None, None), force=_FORCE)
    def propose_state(self, run: RunRef, state: State, force: bool) -> None:
        """Any state to any run, forced one time in four."""
        self.propose(run.kind, run.id, state, force=force)

    # -- rules: probes and time -------------------------------------------------------------

    @rule(run=ANY_RUN)
    def probe_guards(self, run: RunRef) -> None:
        """Propose every state type to a run, unforced, each undone afterwards (see
        :meth:`probe`)."""
        self.probe(run.kind, run.id)

    def probe(self, kind: Kind, run_id: UUID) -> None:
        """Propose each of the nine state types to the run, unforced, each inside a
        transaction that is rolled back (``orc.transaction()``): whatever the policy lets
        through from the run's current state must keep the invariants. The run is left as it
        was, and listeners hear nothing."""
        for type_ in StateType:
            with suppress(_Undo), self.orc.transaction():
                self.propose(kind, run_id, State(type=type_))
                self._check_histories(self.snapshot(only=run_id))
                raise _Undo
        self.current_type(kind, run_id)

    def _default_clock(self) -> bool:
        return self.clock_steps is CLOCK_STEPS

    @precondition(_default_clock)
    @rule(hour=st.integers(0, 23))
    def advance_clock_to(self, hour: int) -> None:
        """Time passes to the next ``hour``:00:00 (only with the default :attr:`clock_steps`):
        the hour boundaries time-of-day rules turn on are one step away, whatever the
        clock read before."""
        now = self.clock.now
        target = now.replace(hour=hour, minute=0, second=0, microsecond=0)
        if target <= now:
            target += timedelta(days=1)
        self.clock.set(target)

    @rule(seconds=_CLOCK_STEP)
    def advance_clock(self, seconds: int) -> None:
        """Time passes (and now and then goes back a little): see :attr:`clock_steps`."""
        self.clock.advance(seconds)

    # -- invariants -------------------------------------------------------------------------

    @invariant()
    def flowstate_invariants(self) -> None:
        """Every invariant over every run, from one snapshot."""
        snap = self.snapshot()
        self._check_histories(snap)
        self.check_run_counts_never_decrease(snap)
        self.check_state_ids_are_unique(snap)
        for run_id, history in snap.histories.items():
            self._seen[run_id] = len(history)
            self._types[run_id] = snap.runs[run_id].state_type

    def _check_histories(self, snap: Snapshot) -> None:
        """The invariants each history keeps by itself (those a probe checks too)."""
        self.check_current_state_is_last_in_history(snap)
        self.check_history_timestamps_increase(snap)
        self.check_cancelling_only_becomes_cancelled(snap)
        self.check_run_fields_follow_state(snap)

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


def _check_written(result: OrchestrationResult, written: list[UUID], after: list[State]) -> None:
    """The states a call ``written`` (its history now ``after``) are what its status says."""
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


def _check_rules(cls: type[OrchestrationMachine], named: list[tuple[str, str, Any]]) -> None:
    """Each ``(name, setting, weight)`` names a rule of ``cls``, with a weight from 1 to 8."""
    for name, setting, weight in named:
        if not callable(getattr(cls, name, None)):
            raise ValueError(f"{setting} names {name!r}, which is not a rule of {cls.__name__}")
        if not isinstance(weight, int) or isinstance(weight, bool) or not 1 <= weight <= _MAX_WEIGHT:
            raise ValueError(f"the weight of {name!r} must be an int from 1 to {_MAX_WEIGHT}")


def _weigh_rules(cls: type[OrchestrationMachine]) -> None:
    """Give each rule of ``cls`` its weight: a rule reachable under ``w`` attribute names is
    listed ``w`` times among the rules hypothesis chooses from (and prints under its own
    name)."""
    if cls.mode not in MACHINE_MODES:
        raise ValueError(f"mode must be one of {sorted(MACHINE_MODES)}, got {cls.mode!r}")
    weights = {**cls.rule_weights, **MACHINE_MODES[cls.mode]}
    _check_rules(cls, [*((n, "rule_weights", w) for n, w in weights.items()),
                       *((n, "step_order", 1) for n in cls.step_order)])
    for name in dir(cls):
        if name.startswith("_weighted_"):
            setattr(cls, name, None)
    for name, weight in weights.items():
        for copy in range(2, weight + 1):
            setattr(cls, f"_weighted_{name}_{copy}", getattr(cls, name))


_weigh_rules(OrchestrationMachine)

"""OrchestrationMachine on the real engine, and the proof that it can fail."""

from __future__ import annotations

import random
import re
import time
from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import invariant, rule, run_state_machine_as_test

from flowstate import Orchestrator, StateType
from flowstate.rules import CORE_FLOW, Reject
from flowstate.rules import rule as flow_rule
from flowstate.states import Paused, Running
from flowstate.testing import FrozenClock, OrchestrationMachine, ReferenceOrchestrator

from tests.backends import PostgresBackend

MACHINE = settings(
    max_examples=100,
    stateful_step_count=40,
    deadline=None,
    derandomize=True,
    database=None,
)


class CoreMachine(OrchestrationMachine):
    """The machine as shipped, on the core policies (a subclass, so settings stay ours)."""

    steps = 0

    @invariant()
    def count_steps(self) -> None:
        CoreMachine.steps += 1


CoreMachine.TestCase.settings = MACHINE


class TestTheCorePoliciesKeepTheInvariants(CoreMachine.TestCase):
    @classmethod
    def tearDownClass(cls) -> None:
        print(f"\norchestration machine: {CoreMachine.steps} steps checked")


class PostgresCoreMachine(CoreMachine):
    """The same machine on a fresh PostgreSQL schema per example."""

    backend: PostgresBackend

    def make_orchestrator(self, clock: FrozenClock) -> Orchestrator:
        self.database = self.backend.new_database()
        return Orchestrator(self.database, clock=clock, uniform=random.Random(0).uniform)

    def teardown(self) -> None:
        super().teardown()
        self.backend.drop(self.database)


def test_the_core_policies_keep_the_invariants_on_postgres(postgres_backend: PostgresBackend) -> None:
    CoreMachine.steps = 0
    machine = type("PostgresCoreMachineBound", (PostgresCoreMachine,), {"backend": postgres_backend})
    run_state_machine_as_test(machine, settings=settings(MACHINE, max_examples=20))
    print(f"\norchestration machine (postgres): {CoreMachine.steps} steps checked")
    assert CoreMachine.steps > 0


class MemoryCoreMachine(CoreMachine):
    """The same machine on the in-memory store (``ReferenceOrchestrator``)."""

    def make_orchestrator(self, clock: FrozenClock) -> Orchestrator:
        return ReferenceOrchestrator(clock=clock, uniform=random.Random(0).uniform)


def test_the_core_policies_keep_the_invariants_in_memory() -> None:
    CoreMachine.steps = 0
    run_state_machine_as_test(MemoryCoreMachine, settings=settings(MACHINE, max_examples=30))
    print(f"\norchestration machine (memory): {CoreMachine.steps} steps checked")
    assert CoreMachine.steps > 0


# -- the harness can fail ------------------------------------------------------------------

@flow_rule(
    from_={StateType.CANCELLING},
    to=set(StateType) - {StateType.CANCELLED},
    name="enforce_cancelling_to_cancelled_transition",
)
def leaky_cancelling_guard(ctx):  # type: ignore[no-untyped-def]
    """Broken on purpose: lets a CANCELLING flow run go back to RUNNING."""
    if ctx.proposed.type is StateType.RUNNING:
        return None
    return Reject("Cannot transition flows that are cancelling to a state other than Cancelled.")


LEAKY_FLOW = CORE_FLOW.replace(
    "enforce_cancelling_to_cancelled_transition", leaky_cancelling_guard, name="leaky-flow"
)


class LeakyMachine(OrchestrationMachine):
    examples = 0

    def make_orchestrator(self, clock: FrozenClock) -> Orchestrator:
        LeakyMachine.examples += 1
        return Orchestrator(
            ":memory:", clock=clock, uniform=random.Random(0).uniform, flow_policy=LEAKY_FLOW
        )


def test_a_rule_letting_cancelling_runs_start_again_is_caught() -> None:
    LeakyMachine.examples = 0
    started = time.perf_counter()
    with pytest.raises(AssertionError, match="went from CANCELLING to RUNNING") as caught:
        run_state_machine_as_test(
            LeakyMachine,
            settings=settings(
                MACHINE, max_examples=1000, phases=[Phase.generate], print_blob=False
            ),
        )
    elapsed = time.perf_counter() - started
    print(f"\nbroken rule caught after {LeakyMachine.examples} examples, {elapsed:.1f} s")
    assert LeakyMachine.examples < 1000
    # the steps print as code a user can read: runs by name, states as constructor calls
    printed = "\n".join(getattr(caught.value, "__notes__", [])).splitlines()
    steps = [line for line in printed if line.startswith("state.")]
    assert steps and not any("UUID(" in line or "lambda" in line for line in steps), printed
    # every step acts on a run it applies to: none is wasted on no run
    assert not any("run=None" in line for line in steps), printed
    assert any(re.search(r"run=flow_runs_\d, state=(Cancelling|Running)\(", s) for s in steps)


# -- subclassing: users add rules and invariants ---------------------------------------------

@flow_rule(from_={StateType.RUNNING}, to={StateType.PAUSED}, name="at-most-two-pauses")
def at_most_two_pauses(ctx):  # type: ignore[no-untyped-def]
    if len(ctx.run.empirical_policy.pause_keys) >= 2:
        return Reject("This run has paused twice already.")
    return None


class TwoPausesMachine(OrchestrationMachine):
    """A user's machine: a custom policy, one more rule and one more invariant."""

    def make_orchestrator(self, clock: FrozenClock) -> Orchestrator:
        return Orchestrator(":memory:", clock=clock, flow_policy=CORE_FLOW.append(at_most_two_pauses))

    @rule(run=OrchestrationMachine.flow_runs, key=st.text("abcdef", min_size=1, max_size=3))
    def pause_with_a_new_key(self, run, key):  # type: ignore[no-untyped-def]
        self.propose("flow", run, Paused(pause_key=key))

    @invariant()
    def never_more_than_two_pauses(self) -> None:
        for run in self.orc.read_flow_runs():
            assert len(run.empirical_policy.pause_keys) <= 2


TwoPausesMachine.TestCase.settings = settings(MACHINE, max_examples=30)
TestAUsersSubclassRunsItsOwnRulesAndInvariants = TwoPausesMachine.TestCase


# -- settings, steering and weights ------------------------------------------------------------

def test_the_test_case_keeps_every_health_check_on() -> None:
    for machine in (OrchestrationMachine, TwoPausesMachine, type("Fresh", (OrchestrationMachine,), {})):
        if machine is TwoPausesMachine:  # its settings were set above, and are kept
            assert machine.TestCase.settings.max_examples == 30
        # nothing beyond what the active settings profile itself suppresses (hypothesis' own
        # TestCase default suppresses every health check)
        profile = set(settings().suppress_health_check)
        assert set(machine.TestCase.settings.suppress_health_check) <= profile
        assert len(profile) < len(list(HealthCheck))
        assert machine.TestCase.settings.deadline is None
        if machine is not TwoPausesMachine:
            # the explain phase traces every line while shrinking, for little use with steps
            assert Phase.explain not in machine.TestCase.settings.phases
            assert Phase.shrink in machine.TestCase.settings.phases


class SteeredMachine(OrchestrationMachine):
    """Starts on a Friday afternoon and moves the clock by whole hours only."""

    start = datetime(2024, 1, 5, 16, 30, tzinfo=timezone.utc)
    clock_steps = st.sampled_from([3600, 7200])
    rule_weights = {"advance_clock": 4}
    mode = "time"
    seen: set = set()

    @invariant()
    def the_clock_keeps_its_minutes(self) -> None:
        now = self.clock.now
        assert now >= self.start and now.minute == 30
        SteeredMachine.seen.add(now)


def test_start_and_clock_steps_are_honoured() -> None:
    SteeredMachine.seen = set()
    run_state_machine_as_test(SteeredMachine, settings=settings(MACHINE, max_examples=8))
    assert len(SteeredMachine.seen) > 3


def test_weights_list_a_rule_more_often_and_bad_weights_are_refused() -> None:
    names = [r.function.__name__ for r in SteeredMachine.setup_state().rules]
    assert names.count("advance_clock") == 4  # the "time" mode's weight wins over the class's
    assert names.count("pause_flow_run") == 1  # the class's weights replace the default ones
    plain = [r.function.__name__ for r in OrchestrationMachine.setup_state().rules]
    assert plain.count("advance_clock") == 2 and plain.count("pause_flow_run") == 2
    assert plain.count("propose_state") == 1
    for bad in ({"no_such_rule": 2}, {"advance_clock": 0}, {"advance_clock": 9}):
        with pytest.raises(ValueError):
            type("Bad", (OrchestrationMachine,), {"rule_weights": bad})
    with pytest.raises(ValueError, match="mode"):
        type("Bad", (OrchestrationMachine,), {"mode": "sleepy"})
    with pytest.raises(ValueError, match="step_order"):
        type("Bad", (OrchestrationMachine,), {"step_order": ("advance_clock", "nap")})


def test_the_clock_moves_to_the_next_whole_hour_unless_clock_steps_are_your_own() -> None:
    machine = OrchestrationMachine()
    try:
        machine.clock.set(datetime(2024, 1, 1, 16, 59, 59, tzinfo=timezone.utc))
        machine.advance_clock_to(17)
        assert machine.clock.now == datetime(2024, 1, 1, 17, tzinfo=timezone.utc)
        machine.advance_clock_to(17)  # already there: the next day's
        assert machine.clock.now == datetime(2024, 1, 2, 17, tzinfo=timezone.utc)
        machine.advance_clock_to(3)
        assert machine.clock.now == datetime(2024, 1, 3, 3, tzinfo=timezone.utc)
        assert machine._default_clock()
    finally:
        machine.teardown()
    steered = SteeredMachine()
    try:
        assert not steered._default_clock()  # the rule's precondition: never chosen
    finally:
        steered.teardown()


def test_steps_pick_runs_by_their_current_state() -> None:
    machine = OrchestrationMachine()
    try:
        first = machine.first_flow_run()
        second = machine._create_flow_run(None, False, False, None)
        new = frozenset({None})
        assert [machine.pick("flow", new, n).id for n in range(3)] == [first, second, first]
        assert repr(machine.pick("flow", new, 1)) == "flow_runs_1"
        machine.propose("flow", second, Running())
        running = frozenset({StateType.RUNNING})
        assert machine.pick("flow", running, 5).id == second
        assert machine.runs_in("flow", [StateType.RUNNING]) == [second]
        assert machine.pick("flow", frozenset({StateType.PAUSED}), 0) is None
        assert machine.pick("task", new, 0) is None
    finally:
        machine.teardown()


# -- shrinking: a planted off-by-one shrinks to the few steps that show it ---------------------

@flow_rule(from_={StateType.RUNNING}, to={StateType.PAUSED}, name="one-pause-only")
def one_pause_off_by_one(ctx):  # type: ignore[no-untyped-def]
    """Broken on purpose: meant to allow one pause, it allows two (``>= 2`` for ``>= 1``)."""
    if len(ctx.run.empirical_policy.pause_keys) >= 2:
        return Reject("This run has paused once already.")
    return None


class OnePauseOffByOne(OrchestrationMachine):
    def make_orchestrator(self, clock: FrozenClock) -> Orchestrator:
        policy = CORE_FLOW.append(one_pause_off_by_one)
        return Orchestrator(":memory:", clock=clock, uniform=random.Random(0).uniform, flow_policy=policy)

    @invariant()
    def at_most_one_pause(self) -> None:
        for run in self.orc.read_flow_runs():
            assert len(run.empirical_policy.pause_keys) <= 1, "paused twice"


def test_a_planted_off_by_one_shrinks_to_the_steps_that_show_it() -> None:
    # the TestCase's own settings (shrinking on), seeded and without the example database
    chosen = settings(OnePauseOffByOne.TestCase.settings, derandomize=True, database=None,
                      print_blob=False)
    with pytest.raises(AssertionError, match="paused twice") as caught:
        run_state_machine_as_test(OnePauseOffByOne, settings=chosen)
    printed = "\n".join(getattr(caught.value, "__notes__", [])).splitlines()
    steps = [line for line in printed if re.match(r"(\w+ = )?state\.(?!at_most_one_pause|flowstate_invariants|teardown)", line)]
    # the first run, started, paused, started (or resumed) and paused again: nothing else
    assert len(steps) == 5, printed
    assert [re.search(r"state\.(\w+)", s).group(1) for s in steps[2::2]] == ["pause_flow_run"] * 2

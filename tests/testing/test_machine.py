"""OrchestrationMachine on the real engine, and the proof that it can fail."""

from __future__ import annotations

import random
import time

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import invariant, rule, run_state_machine_as_test

from flowstate import Orchestrator, StateType
from flowstate.rules import CORE_FLOW, Reject
from flowstate.rules import rule as flow_rule
from flowstate.states import Paused
from flowstate.testing import FrozenClock, OrchestrationMachine

from tests.backends import PostgresBackend

MACHINE = settings(
    max_examples=100,
    stateful_step_count=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
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
    with pytest.raises(AssertionError, match="went from CANCELLING to RUNNING"):
        run_state_machine_as_test(
            LeakyMachine,
            settings=settings(
                MACHINE, max_examples=1000, phases=[Phase.generate], print_blob=False
            ),
        )
    elapsed = time.perf_counter() - started
    print(f"\nbroken rule caught after {LeakyMachine.examples} examples, {elapsed:.1f} s")
    assert LeakyMachine.examples < 1000


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

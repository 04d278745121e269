"""flowstate.testing: property-based testing tools for code that uses flowstate.

* strategies — :func:`state_types`, :func:`states`, :func:`proposals`,
  :func:`plausible_proposals`, :func:`transition_sequences`, :func:`run_inputs`,
  :func:`runs_in` (runs already in a state, with a history);
* :func:`orchestrators` — a fresh in-memory orchestrator and clock for every example;
* :class:`FrozenClock` — a clock you move by hand, for ``Orchestrator(clock=...)``;
* :func:`normalise`, :func:`assert_same_answers`, :func:`assert_matches_core` — comparing
  answers without the ids and keys engines generate;
* :class:`OrchestrationMachine` — a hypothesis state machine over an orchestrator that checks
  flowstate's invariants after every step; subclass it to add your own rules and invariants;
* :class:`ReferenceOrchestrator` — the orchestrator with its storage in dictionaries instead of
  a database, for differential tests;
* a pytest plugin (installed with the package) with the fixtures ``orchestrator`` and
  ``frozen_clock``.

A property test in ten lines::

    from hypothesis import given
    from flowstate import Orchestrator
    from flowstate.testing import FrozenClock, transition_sequences

    @given(transition_sequences("flow"))
    def test_a_finished_run_has_an_end_time(steps):
        with Orchestrator(":memory:", clock=FrozenClock()) as orc:
            run = orc.create_flow_run()
            for state, force in steps:
                orc.set_flow_run_state(run.id, state, force=force)
            run = orc.read_flow_run(run.id)
            assert run.state is None or not run.state.is_final or run.end_time is not None

Everything but :class:`FrozenClock` needs hypothesis (``pip install 'flowstate[testing]'``);
names are loaded on first use, so ``flowstate.testing.clock`` and the pytest plugin work
without it, and ``import flowstate`` never loads any of this.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowstate.testing.clock import FrozenClock
    from flowstate.testing.compare import assert_matches_core, assert_same_answers, normalise
    from flowstate.testing.factory import OrchestratorOnClock, orchestrators
    from flowstate.testing.machine import OrchestrationMachine
    from flowstate.testing.reference import ReferenceOrchestrator
    from flowstate.testing.strategies import (
        Proposal,
        plausible_proposals,
        proposals,
        run_inputs,
        runs_in,
        state_types,
        states,
        transition_sequences,
    )

__all__ = [
    "FrozenClock",
    "OrchestrationMachine",
    "OrchestratorOnClock",
    "Proposal",
    "ReferenceOrchestrator",
    "assert_matches_core",
    "assert_same_answers",
    "normalise",
    "orchestrators",
    "plausible_proposals",
    "proposals",
    "run_inputs",
    "runs_in",
    "state_types",
    "states",
    "transition_sequences",
]

_HOMES = {
    "FrozenClock": "flowstate.testing.clock",
    "OrchestrationMachine": "flowstate.testing.machine",
    "OrchestratorOnClock": "flowstate.testing.factory",
    "Proposal": "flowstate.testing.strategies",
    "ReferenceOrchestrator": "flowstate.testing.reference",
    "assert_matches_core": "flowstate.testing.compare",
    "assert_same_answers": "flowstate.testing.compare",
    "normalise": "flowstate.testing.compare",
    "orchestrators": "flowstate.testing.factory",
    "plausible_proposals": "flowstate.testing.strategies",
    "proposals": "flowstate.testing.strategies",
    "run_inputs": "flowstate.testing.strategies",
    "runs_in": "flowstate.testing.strategies",
    "state_types": "flowstate.testing.strategies",
    "states": "flowstate.testing.strategies",
    "transition_sequences": "flowstate.testing.strategies",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'flowstate.testing' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

"""Scenario 4: decisions only — the pure core flow policy on in-memory objects, no SQLite.

Each decision is what the engine does between its read and its write: stamp the proposal,
build the transition context, run the rules and the bookkeeping. A run is carried through
Scheduled → Pending → Running → Paused → Running → Completed on a clock that advances 1 ms
per decision.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from flowstate._ids import uuid7
from flowstate._models import set_fields
from flowstate.orchestration.policies import CORE_FLOW
from flowstate.orchestration.policy import Policy
from flowstate.runs import FlowRun
from flowstate.states import Completed, Paused, Pending, Running, Scheduled

from benchmarks.config import Config
from benchmarks.harness import Figure, rate

__all__ = ["DECISIONS_PER_RUN", "decide_runs", "run"]

_PROPOSALS = (Scheduled(), Pending(), Running(), Paused(pause_key="approval"), Running(), Completed())
DECISIONS_PER_RUN = len(_PROPOSALS)
_STEP = timedelta(milliseconds=1)


def decide_runs(count: int, policy: Policy = CORE_FLOW) -> int:
    """Drive ``count`` in-memory runs through the cycle; returns how many were accepted."""
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    accepted = 0
    template = FlowRun(id=uuid7(), name="bench-run")
    for _ in range(count):
        run = template.model_copy(update={"id": uuid7()})  # a fresh run, as a read would give
        current = None
        for proposal in _PROPOSALS:
            now += _STEP
            ctx = policy.context(run, proposal, now, uuid7, initial=current)
            outcome = policy.decide(ctx)
            set_fields(run, outcome.updates)  # (as the store applies them)
            if outcome.written is not None:
                current = outcome.written
                accepted += 1
    return accepted


def run(config: Config) -> list[Figure]:
    """Decisions per second over ``config.rounds`` rounds."""
    runs = max(1, config.decisions // DECISIONS_PER_RUN)
    decisions = runs * DECISIONS_PER_RUN
    assert decide_runs(1) == DECISIONS_PER_RUN, "every decision of the cycle should be ACCEPT"
    figures = [rate(decisions, lambda: decide_runs(runs)) for _ in range(config.rounds)]
    return [
        Figure("4", "decision only (pure policy, no SQLite)", "decisions/s", figures,
               ratio_kind="none", extra={"decisions_per_round": decisions}),
    ]

"""Scenario 8: what custom rules cost transitions they do not apply to.

Scenario 4's decision loop, run with the core flow policy and with the same policy plus 20
custom rules that apply only from CRASHED to CANCELLING (a pair the cycle never proposes),
interleaved. The dispatch table is compiled per (from, to) pair, so the ratio should be ~1.
"""

from __future__ import annotations

from flowstate import StateType
from flowstate.rules import CORE_FLOW, Policy, rule

from benchmarks.config import Config
from benchmarks.decide import DECISIONS_PER_RUN, decide_runs
from benchmarks.harness import Figure, interleave, rate

__all__ = ["run", "with_unrelated_rules"]


def with_unrelated_rules(count: int = 20) -> Policy:
    """The core flow policy plus ``count`` rules for a transition the benchmark never makes."""
    extra = [
        rule(from_=StateType.CRASHED, to=StateType.CANCELLING, name=f"unrelated-{i}")(lambda ctx: None)
        for i in range(count)
    ]
    return CORE_FLOW.append(*extra, name="core-flow+20")


def run(config: Config) -> list[Figure]:
    """Decisions per second with 20 non-matching rules, against the core policy alone."""
    runs = max(1, config.decisions // DECISIONS_PER_RUN)
    decisions = runs * DECISIONS_PER_RUN
    crowded = with_unrelated_rules()
    with_rules, core = interleave(
        config.rounds,
        lambda: rate(decisions, lambda: decide_runs(runs, crowded)),
        lambda: rate(decisions, lambda: decide_runs(runs, CORE_FLOW)),
    )
    return [
        Figure("8", "decision only + 20 non-matching rules (raw column: core policy alone)",
               "decisions/s", with_rules, core,
               notes="ratio = with 20 unrelated rules / without; 1.0 means they cost nothing")
    ]

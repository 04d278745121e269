"""A policy: an ordered list of rules compiled once into a (from, to) dispatch table.

``Policy.decide`` reproduces Prefect's rule lifecycle without context managers:

* rules compiled for the original (from, to) pair are entered in order; a rule whose pair no
  longer holds when its turn comes (an earlier rule changed or nulled the proposal) is skipped;
* a rule's before-step may answer a decision; the last decision made wins;
* the bookkeeping runs, the new state is known (``ctx.validated``), then rules are exited in
  reverse: a rule whose pair still holds gets its after-step, a rule whose pair was changed by a
  later rule has "fizzled" and the run changes it made are undone.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from flowstate.errors import RuleError
from flowstate.orchestration.bookkeeping import Bookkeeping
from flowstate.orchestration.context import TransitionContext
from flowstate.orchestration.decisions import Abort, Decision, Proceed, Reject, Wait
from flowstate.orchestration.rules import Rule
from flowstate.results import (
    AbortDetails,
    AcceptDetails,
    OrchestrationResult,
    RejectDetails,
    SetStateStatus,
    WaitDetails,
)
from flowstate.states import State, StateType

__all__ = ["Outcome", "Policy"]

Pair = tuple[StateType | None, StateType | None]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What deciding produced: the answer, the state to write (if any) and the run to save."""

    result: OrchestrationResult
    written: State | None
    context: TransitionContext


@dataclass(slots=True)
class _Entered:
    rule: Rule
    to_type: StateType | None
    changes: list[tuple[str, object]]


class Policy:
    """An ordered pipeline of rules plus the universal bookkeeping of its kind of run."""

    def __init__(self, name: str, rules: Iterable[Rule], bookkeeping: Bookkeeping) -> None:
        self.name = name
        self.rules: tuple[Rule, ...] = tuple(rules)
        self.bookkeeping = bookkeeping
        names = [r.name for r in self.rules]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"policy {name!r} has duplicate rule names: {', '.join(duplicates)}")
        self._table: dict[Pair, tuple[Rule, ...]] = {}
        states: list[StateType | None] = [None, *StateType]
        for from_type in states:
            for to_type in states:
                matching = tuple(r for r in self.rules if r.applies_to(from_type, to_type))
                if matching:
                    self._table[(from_type, to_type)] = matching

    def __repr__(self) -> str:
        return f"Policy({self.name!r}, {len(self.rules)} rules)"

    def rules_for(self, from_type: StateType | None, to_type: StateType | None) -> Sequence[Rule]:
        """The rules compiled for a transition, in policy order."""
        return self._table.get((from_type, to_type), ())

    def decide(self, ctx: TransitionContext) -> Outcome:
        """Run the rules and bookkeeping over ``ctx``; pure apart from the context's callables."""
        intended_to = ctx.proposed_type
        entered: list[_Entered] = []
        for rule in self._table.get((ctx.initial_type, intended_to), ()):
            if ctx.proposed_type is not intended_to:
                continue  # an earlier rule changed the proposal: this rule no longer applies
            changes: list[tuple[str, object]] = []
            ctx._changes = changes
            try:
                decision = rule.before(ctx)
            except Exception as exc:
                raise RuleError(
                    f"Aborting orchestration due to an error in rule {rule.name!r}: {exc!r}"
                ) from exc
            finally:
                ctx._changes = None
            if decision is not None:
                _apply(ctx, decision, rule)
            entered.append(_Entered(rule, ctx.proposed_type, changes))

        self.bookkeeping.apply_before(ctx)
        written = ctx.proposed
        ctx.validated = written if written is not None else ctx.initial
        self.bookkeeping.apply_after(ctx)

        for step in reversed(entered):
            if step.to_type not in step.rule.to_states:
                continue
            if ctx.proposed_type is not step.to_type:
                for field, old in reversed(step.changes):  # fizzled: undo its run changes
                    setattr(ctx.run, field, old)
                continue
            if step.rule.after is not None:
                try:
                    step.rule.after(ctx)
                except Exception as exc:
                    raise RuleError(
                        f"Aborting orchestration due to an error in rule {step.rule.name!r}: {exc!r}"
                    ) from exc

        return Outcome(result=_result(ctx), written=written, context=ctx)


def _apply(ctx: TransitionContext, decision: Decision, rule: Rule) -> None:
    if isinstance(decision, Proceed):
        if decision.state is not None:
            ctx.proposed = decision.state
    elif isinstance(decision, Reject):
        if decision.state is None and ctx.initial is None:
            raise RuleError(
                f"rule {rule.name!r}: the current run has no state; this transition cannot be "
                "rejected without providing a new state."
            )
        ctx.proposed = decision.state
        ctx.status, ctx.reason, ctx.delay_seconds = SetStateStatus.REJECT, decision.reason, None
    elif isinstance(decision, Wait):
        ctx.proposed = None
        ctx.status, ctx.reason = SetStateStatus.WAIT, decision.reason
        ctx.delay_seconds = decision.delay_seconds
    elif isinstance(decision, Abort):
        ctx.proposed = None
        ctx.status, ctx.reason, ctx.delay_seconds = SetStateStatus.ABORT, decision.reason, None
    else:
        raise RuleError(f"rule {rule.name!r} returned {decision!r}, which is not a decision")


_ACCEPT_DETAILS = AcceptDetails()


def _result(ctx: TransitionContext) -> OrchestrationResult:
    status = ctx.status
    if status is SetStateStatus.ACCEPT:
        details: AcceptDetails | RejectDetails | WaitDetails | AbortDetails = _ACCEPT_DETAILS
    elif status is SetStateStatus.REJECT:
        details = RejectDetails(reason=ctx.reason)
    elif status is SetStateStatus.WAIT:
        details = WaitDetails(delay_seconds=ctx.delay_seconds or 0, reason=ctx.reason)
    else:
        details = AbortDetails(reason=ctx.reason)
    return OrchestrationResult.model_construct(state=ctx.validated, status=status, details=details)

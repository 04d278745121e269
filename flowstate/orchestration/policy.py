"""A policy: an ordered list of rules compiled once into a (from, to) dispatch table.

``Policy.decide`` reproduces Prefect's rule lifecycle without context managers:

* rules compiled for the original (from, to) pair are entered in order; a rule whose pair no
  longer holds when its turn comes (an earlier rule changed or nulled the proposal) is skipped;
* a rule's before-step may answer a decision; the last decision made wins;
* the bookkeeping runs, the new state is known (``ctx.validated``), then rules are exited in
  reverse: a rule whose pair still holds gets its after-step, a rule whose pair was changed by a
  later rule has "fizzled" and the run changes it recorded are dropped.

Deciding changes no run: the :class:`Outcome` carries the run's changes (``updates``), which
the store applies when it saves the transition.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID

from flowstate._models import construct, copy_with
from flowstate._text import all_ascii, check_state_text
from flowstate._time import FromNow
from flowstate.concurrency.run_slots import RunSlots
from flowstate.errors import DatabaseError, InvalidState, RuleError
from flowstate.orchestration.bookkeeping import (
    FLOW_BOOKKEEPING,
    TASK_BOOKKEEPING,
    Bookkeeping,
)
from flowstate.orchestration.context import RunKind, TransitionContext, pause_deadline
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
from flowstate.runs import FlowRun, TaskRun
from flowstate.states import State, StateType

__all__ = ["Outcome", "Policy"]

Pair = tuple[StateType | None, StateType | None]
_BOOKKEEPING: dict[str, Bookkeeping] = {"flow": FLOW_BOOKKEEPING, "task": TASK_BOOKKEEPING}
_RUN_STATE = object()
"""``Policy.context``'s default ``initial``: the run's own current state."""


class Outcome(NamedTuple):
    """What deciding produced: the answer, the state to write (if any) and the run's changes."""

    result: OrchestrationResult
    written: State | None
    context: TransitionContext

    @property
    def run(self) -> FlowRun | TaskRun:
        """The run as it is saved after this transition (bookkeeping and rule changes applied)."""
        return self.context.run

    @property
    def updates(self) -> dict[str, object]:
        """The run's changed fields and their new values (empty: the run is not saved)."""
        return self.context.updates


_Entered = tuple[Rule, "StateType | None", int, int]
"""A rule entered: the proposal's type it left, and where its run changes start and end in
the context's record."""

_Compiled = tuple[Rule, Callable[[TransitionContext], "Decision | None"], bool]
"""A rule as the dispatch table holds it: the rule, its before-step, whether exiting it may do
something (it has an after-step or a cleanup)."""


class Policy:
    """An ordered pipeline of rules plus the universal bookkeeping of its kind of run.

    ``kind`` is ``"flow"`` or ``"task"``: it picks the bookkeeping (run counts, start and end
    times, ...) that every transition of that kind of run gets, whatever the rules decide.
    Policies are immutable: :meth:`append`, :meth:`insert_before`, :meth:`insert_after`,
    :meth:`replace` and :meth:`remove` return new policies.
    """

    def __init__(
        self,
        name: str,
        rules: Iterable[Rule],
        *,
        kind: RunKind,
    ) -> None:
        if kind not in _BOOKKEEPING:
            raise ValueError(f"policy {name!r}: kind={kind!r}; expected 'flow' or 'task'")
        self.name = name
        self.kind: RunKind = kind
        self.rules: tuple[Rule, ...] = tuple(rules)
        self.bookkeeping: Bookkeeping = _BOOKKEEPING[kind]
        _check_rules(name, self.rules)
        self._table = _compiled(self.rules)

    def __repr__(self) -> str:
        return f"Policy({self.name!r}, {len(self.rules)} rules, kind={self.kind!r})"

    @property
    def names(self) -> tuple[str, ...]:
        """The rule names, in order."""
        return tuple(r.name for r in self.rules)

    def __getitem__(self, name: str) -> Rule:
        return self.rules[self._index(name)]

    def _index(self, name: str) -> int:
        for index, item in enumerate(self.rules):
            if item.name == name:
                return index
        raise KeyError(
            f"policy {self.name!r} has no rule named {name!r}; its rules are: "
            + ", ".join(self.names)
        )

    def _derive(self, rules: Iterable[Rule], name: str | None) -> Policy:
        return Policy(name or self.name, rules, kind=self.kind)

    def append(self, *rules: Rule, name: str | None = None) -> Policy:
        """A policy with ``rules`` added at the end."""
        return self._derive((*self.rules, *rules), name)

    def insert_before(self, anchor: str, *rules: Rule, name: str | None = None) -> Policy:
        """A policy with ``rules`` inserted just before the rule named ``anchor``."""
        index = self._index(anchor)
        return self._derive((*self.rules[:index], *rules, *self.rules[index:]), name)

    def insert_after(self, anchor: str, *rules: Rule, name: str | None = None) -> Policy:
        """A policy with ``rules`` inserted just after the rule named ``anchor``."""
        index = self._index(anchor) + 1
        return self._derive((*self.rules[:index], *rules, *self.rules[index:]), name)

    def replace(self, target: str, rule: Rule, *, name: str | None = None) -> Policy:
        """A policy with the rule named ``target`` replaced by ``rule``."""
        index = self._index(target)
        return self._derive((*self.rules[:index], rule, *self.rules[index + 1 :]), name)

    def remove(self, *targets: str, name: str | None = None) -> Policy:
        """A policy without the rules named ``targets``."""
        drop = {self._index(t) for t in targets}
        return self._derive((r for i, r in enumerate(self.rules) if i not in drop), name)

    def context(
        self,
        run: FlowRun | TaskRun,
        proposed: State,
        now: datetime,
        new_id: Callable[[], UUID],
        *,
        initial: State | None | object = _RUN_STATE,
        flow_run: FlowRun | None = None,
        cached_state: State | None = None,
        uniform: Callable[[float, float], float] | None = None,
        slots: RunSlots | None = None,
        read_parameters: Callable[[UUID], dict[str, Any]] | None = None,
    ) -> TransitionContext:
        """The one way a transition's context is built: ``proposed`` stamped as it is written
        (a new id, timestamp ``now``; a SCHEDULED state without a scheduled time scheduled for
        ``now``; a pause timeout given in seconds counted from ``now``), for ``run`` whose
        current state is ``initial`` (default: the run's own).
        ``slots``: the concurrency limits the rules may take slots of (default: none).
        ``read_parameters``: reads a flow run's parameters, when ``run`` (or ``flow_run``) was
        read without them, for a rule that looks at ``ctx.run``.

        A proposal names its run (a flow run's, a subflow's parent task run; a task run's, its
        flow run) from the start: the bookkeeping would set those ids after the rules, in two
        more copies."""
        details = proposed.state_details
        changes = self.bookkeeping.details_update(run.__dict__, details)  # (a dict of its own, or None)
        if proposed.type is StateType.SCHEDULED and details.scheduled_time is None:
            # Prefect's default: scheduled for "now", on the engine's clock
            changes = {**(changes or {}), "scheduled_time": now}
        timeout = details.pause_timeout
        if type(timeout) is FromNow:  # a relative pause timeout counts from the engine's "now"
            changes = {**(changes or {}), "pause_timeout": pause_deadline(timeout, now)}
        stamp: dict[str, Any] = {"id": new_id(), "timestamp": now}
        if changes:
            stamp["state_details"] = copy_with(details, changes)
        return TransitionContext(
            self.kind,
            run,
            run.state if initial is _RUN_STATE else initial,  # type: ignore[arg-type]
            copy_with(proposed, stamp),
            now,
            new_id,
            flow_run,
            cached_state,
            uniform,
            slots,
            read_parameters,
        )

    def rules_for(self, from_type: StateType | None, to_type: StateType | None) -> Sequence[Rule]:
        """The rules compiled for a transition, in policy order."""
        return tuple(compiled[0] for compiled in self._table.get((from_type, to_type), ()))

    def decide(self, ctx: TransitionContext) -> Outcome:
        """Run the rules and bookkeeping over ``ctx``; pure apart from the context's callables
        (the run is not changed: the outcome carries its changes)."""
        entered = self._enter_rules(ctx)
        written = ctx.proposed
        if written is not None:  # the proposal as it is written
            written = ctx.proposed = self.bookkeeping.before(ctx, written)
        ctx.validated = written if written is not None else ctx.initial
        if entered:
            _exit_rules(ctx, entered)
        return Outcome(_result(ctx), written, ctx)

    def _enter_rules(self, ctx: TransitionContext) -> list[_Entered]:
        """Run the before-steps of the rules compiled for the transition and apply their
        decisions; returns the rules whose exit may do something (an after-step or cleanup to
        run, run changes to keep or drop)."""
        proposal, intended_to = ctx.proposed, ctx.proposed_type
        log = ctx._log
        logged = len(log)  # (the changes recorded before the rule's turn)
        entered: list[_Entered] = []
        moved = False  # whether a decision changed the proposal's type (or nulled it)
        for rule, before, exits in self._table.get((ctx.initial_type, intended_to), ()):
            if ctx.proposed is not proposal:
                proposal = ctx.proposed
                moved = ctx.proposed_type is not intended_to
            if moved and not rule.universal:
                continue  # an earlier rule changed the proposal: this rule no longer applies
            try:
                decision = before(ctx)
            except DatabaseError:
                raise  # the database failed, not the rule (DatabaseBusy: retry)
            except Exception as exc:
                raise _rule_error(rule, exc) from exc
            if decision is not None:
                _apply(ctx, decision, rule)
            if exits or len(log) > logged:
                entered.append((rule, ctx.proposed_type, logged, len(log)))
                logged = len(log)
        return entered


def _check_rules(name: str, rules: tuple[Rule, ...]) -> None:
    """Refuse what is not a rule, and two rules of one name."""
    for item in rules:
        if not isinstance(item, Rule):
            raise TypeError(
                f"policy {name!r}: {item!r} is not a Rule; decorate its function with @rule"
            )
    names = [r.name for r in rules]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"policy {name!r} has duplicate rule names: {', '.join(duplicates)}")


def _compiled(rules: tuple[Rule, ...]) -> dict[Pair, tuple[_Compiled, ...]]:
    """The dispatch table: for each (from, to) pair, the rules that apply to it, in order."""
    table: dict[Pair, tuple[_Compiled, ...]] = {}
    states: list[StateType | None] = [None, *StateType]
    for from_type in states:
        for to_type in states:
            matching = tuple(
                (r, r.before, r.after is not None or r.cleanup is not None)
                for r in rules if r.applies_to(from_type, to_type)
            )
            if matching:
                table[(from_type, to_type)] = matching
    return table


def _exit_rules(ctx: TransitionContext, entered: list[_Entered]) -> None:
    """Exit the entered rules in reverse: a rule's after-step if its transition held (a
    universal rule's always); if a later rule changed the proposal, its run changes dropped
    and its cleanup."""
    for rule, left, start, end in reversed(entered):
        if rule.universal:
            step = rule.after
        elif left not in rule.to_states:
            continue  # (its own decision moved the proposal out of its pairs)
        elif ctx.proposed_type is left:
            step = rule.after
        else:  # fizzled
            ctx._drop_updates(start, end)
            step = rule.cleanup
        if step is not None:
            try:
                step(ctx)
            except DatabaseError:
                raise
            except Exception as exc:
                raise _rule_error(rule, exc) from exc


def _rule_error(rule: Rule, exc: Exception) -> RuleError:
    return RuleError(f"Aborting orchestration due to an error in rule {rule.name!r}: {exc!r}")


def _arriving(ctx: TransitionContext, state: State | None, rule: Rule) -> State | None:
    """A state a rule substitutes is written "now": a user rule may have built it with the
    real clock (``Failed(...)``), while the engine runs on the context's clock. Its text must
    be text a database stores."""
    if state is None:
        return None
    if not all_ascii(state):
        try:
            check_state_text(state)
        except InvalidState as exc:
            raise RuleError(f"rule {rule.name!r} gave a state that cannot be stored: {exc}") from None
    if state.timestamp == ctx.now:
        return state
    if ctx.proposed is not None and state.id == ctx.proposed.id:
        return state  # the proposal itself, possibly edited
    return copy_with(state, {"timestamp": ctx.now})


def _apply(ctx: TransitionContext, decision: Decision, rule: Rule) -> None:
    if isinstance(decision, Proceed):
        if decision.state is not None:
            ctx.proposed = _arriving(ctx, decision.state, rule)
    elif isinstance(decision, Reject):
        if decision.state is None and ctx.initial is None:
            raise RuleError(
                f"rule {rule.name!r}: the current run has no state; this transition cannot be "
                "rejected without providing a new state."
            )
        ctx.proposed = _arriving(ctx, decision.state, rule)
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


# built without validation: validating would build AcceptDetails' schema (and load pydantic's
# plugins, which scans every installed distribution) at import time
_ACCEPT_DETAILS = construct(AcceptDetails, {"type": "accept_details"}, set())


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
    return construct(
        OrchestrationResult, {"state": ctx.validated, "status": status, "details": details}
    )

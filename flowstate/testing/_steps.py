"""What :class:`~flowstate.testing.OrchestrationMachine`'s steps draw, each in as few choices as
possible.

Hypothesis shrinks a failing sequence of steps mostly by deleting a few consecutive choices at
a time (up to five), so a step that is made of five choices or fewer can be removed whole,
leaving every later step as it was. Every argument here is therefore one choice: a run is the
``n``-th of the runs in a state the step applies to, a state is one entry of a table of
coherent states (times as offsets from the machine's clock, edges such as "exactly now" and
"one second ago" included), a pause is one entry of a table of pauses. The rule itself is one
choice too (:class:`OneChoiceRules`), so that most steps take four or five choices in all.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any
from uuid import UUID

from hypothesis import assume
from hypothesis import strategies as st

from flowstate.states import State, StateType
from flowstate.testing.strategies import Kind, StateTable

_RUNNER: st.SearchStrategy[Any] = st.runner()
"""The machine running the step (one strategy object: a new one per draw is slow)."""

@st.composite
def _table_state(draw: st.DrawFn, table: StateTable) -> State:
    index = draw(table.choice)
    return table.state(index, draw(_RUNNER).clock())


@lru_cache(maxsize=128)
def now_states(types: tuple[StateType, ...] | None, kind: Kind | None) -> st.SearchStrategy[State]:
    """A state of one of ``types`` (None: any type) for a ``kind`` run, its times relative to
    the machine's clock when the step is drawn: one choice."""
    return _table_state(StateTable(tuple(StateType) if types is None else types, kind))


PAUSES: st.SearchStrategy[State] = now_states((StateType.PAUSED,), "flow")
"""A pause or suspension: a pause key from :data:`~flowstate.testing.strategies.PAUSE_KEYS` or
none (a fresh key), a timeout none, already expired, exactly now or ahead (one choice)."""


class RunRef:
    """A run a step acts on, printed as the steps name it: ``flow_runs_0``, ``task_runs_1``."""

    __slots__ = ("id", "index", "kind")

    def __init__(self, kind: Kind, index: int, id: UUID) -> None:
        self.kind, self.index, self.id = kind, index, id

    def __repr__(self) -> str:
        return f"{self.kind}_runs_{self.index}"


_WHICH = st.integers(0, 7)


@st.composite
def _runs_in(draw: st.DrawFn, kind: Kind, types: frozenset[StateType | None] | None) -> RunRef:
    found = draw(_RUNNER).pick(kind, types, draw(_WHICH))
    assume(found is not None)  # the rule's precondition makes sure there is one
    return found  # type: ignore[no-any-return]


@lru_cache(maxsize=64)
def a_run_in(kind: Kind, types: tuple[StateType | None, ...] | None) -> st.SearchStrategy[RunRef]:
    """One of the machine's runs of ``kind`` in a state of one of ``types`` when the step is
    drawn (``types`` None: in any state; the step's precondition makes sure there is one). The choice is a small number, the same whatever the runs' states,
    so removing an earlier step leaves it meaning "the n-th run in such a state"."""
    return _runs_in(kind, None if types is None else frozenset(types))


@st.composite
def _any_run(draw: st.DrawFn) -> RunRef:
    machine = draw(_RUNNER)
    return machine.pick_any(draw(_WHICH))


ANY_RUN: st.SearchStrategy[RunRef] = _any_run()
"""Any of the machine's runs, flow runs first (one choice)."""


_NONE_OR_WHICH = st.integers(0, 4)


@lru_cache(maxsize=4)
@st.composite
def run_or_none(draw: st.DrawFn, kind: Kind) -> RunRef | None:
    """None one time in five, else one of the machine's runs of ``kind`` (one choice)."""
    machine = draw(_RUNNER)
    which = draw(_NONE_OR_WHICH)
    return None if which == 0 else machine.pick(kind, None, which - 1)


RUN_INPUTS: tuple[dict[str, Any] | None, ...] = (
    None,
    {"approved": True},
    {"approved": False, "note": "looks fine"},
    {"approved": True, "note": ""},
    {"approved": "yes"},
    {},
    {"approved": True, "note": "far too long a note"},
)
"""What a resume sends: nothing, input valid against the machine's schema, or invalid input
(a wrong type, a missing field, a note over its length)."""


try:  # hypothesis' own rule strategy, which this one draws differently
    from hypothesis.stateful import RuleStrategy as _RuleStrategy
    from hypothesis.internal.observability import observability_enabled
except ImportError:  # pragma: no cover - a hypothesis without it: its own choice is used
    _RuleStrategy = None  # type: ignore[assignment,misc]


def one_choice_rules(machine: Any) -> Any:
    """The strategy that picks the machine's next rule with one choice (None if this version
    of hypothesis does not have what it needs: its own strategy is then kept)."""
    if _RuleStrategy is None or not hasattr(_RuleStrategy, "is_valid"):
        return None
    strategy = OneChoiceRules(machine)
    if not all(hasattr(r, "arguments_strategies") for r in strategy.rules):
        return None
    return strategy


if _RuleStrategy is not None:

    class OneChoiceRules(_RuleStrategy):  # type: ignore[misc,valid-type]
        """Picks a rule with a single choice, then draws its arguments.

        Hypothesis' own choice first decides at random which rules the whole example may use
        ("swarm testing") and then retries its draw until it hits a rule that is both allowed
        and valid (preconditions true, bundles not empty): each retry and each decision is a
        choice inside the step, so a step takes from 7 to 25 choices and can rarely be deleted
        whole when shrinking. Here the choice is an index into the machine's rules (a rule
        weighted ``w`` is listed ``w`` times, rules in the machine's ``step_order``); an index
        whose rule can run always means that rule, whatever earlier steps did, and one whose
        rule cannot run now stands for the nearest rule before it that can.
        """

        def __init__(self, machine: Any) -> None:
            super().__init__(machine)
            order = {name: rank for rank, name in enumerate(getattr(machine, "step_order", ()))}
            # plain steps first: the shrinker lowers a step's choice to turn it into an
            # earlier rule, so counterexamples end up made of the plainest steps that fail
            self.rules = sorted(
                self.rules, key=lambda rule: order.get(rule.function.__name__, len(order))
            )

        def do_draw(self, data: Any) -> tuple[Any, dict[Any, Any]]:
            rules = self.rules
            index = data.draw_integer(0, len(rules) - 1)
            if not self._can_run(rules[index]):
                runnable = [i for i, rule in enumerate(rules) if self._can_run(rule)]
                if not runnable:
                    return super().do_draw(data)  # type: ignore[no-any-return]  # says why
                # the nearest rule before it that can run (else the last one that can): a
                # rule's own place is then the smallest choice that means it, so shrinking
                # settles there rather than on a place whose meaning depends on earlier steps
                index = max((i for i in runnable if i < index), default=runnable[-1])
            rule = rules[index]
            arguments = {}
            for name, strategy in rule.arguments_strategies.items():
                try:
                    arguments[name] = data.draw(strategy)
                except Exception as err:
                    err.add_note(
                        f"while generating {name!r} from {strategy!r} for rule "
                        f"{rule.function.__name__}"
                    )
                    raise
            return rule, arguments

        def _can_run(self, rule: Any) -> bool:
            """Its bundles have values and its preconditions hold (hypothesis' own check,
            which also records each precondition for its observability reports, only when
            those are on: building their descriptions costs more than the check)."""
            if observability_enabled():
                return bool(self.is_valid(rule))
            machine = self.machine
            return all(machine.bundle(b.name) for b in rule.bundles) and all(
                condition(machine) for condition in rule.preconditions
            )

"""The rule record and the ``@rule`` decorator every rule, built-in or user-written, is made with.

A rule names the state types it applies from and to (None stands for "no state"), a before-step
that may answer a :mod:`decision <flowstate.orchestration.decisions>`, and optionally an
after-step that runs only when the rule's transition was kept::

    @rule(from_={StateType.RUNNING}, to={StateType.PAUSED}, name="max-three-pauses")
    def at_most_three_pauses(ctx):
        if len(ctx.run.empirical_policy.pause_keys) >= 3:
            return Reject("This run has paused three times already.")
        return None
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flowstate.states import TERMINAL_TYPES, StateType

if TYPE_CHECKING:
    from flowstate.orchestration.context import TransitionContext
    from flowstate.orchestration.decisions import Decision

__all__ = [
    "ALL_TYPES",
    "ANY_STATE",
    "NO_STATE",
    "TERMINAL",
    "Rule",
    "StateSet",
    "rule",
]

StateSet = frozenset[StateType | None]

ALL_TYPES: StateSet = frozenset(StateType)
"""Every one of the nine state types (a run that has no state is not included)."""
NO_STATE: StateSet = frozenset({None})
"""Only "no state": a run that never had one, or a proposal a rule has nulled."""
ANY_STATE: StateSet = ALL_TYPES | NO_STATE
"""Every state type and "no state"."""
TERMINAL: StateSet = frozenset(TERMINAL_TYPES)
"""COMPLETED, FAILED, CANCELLED and CRASHED."""

BeforeStep = Callable[["TransitionContext"], "Decision | None"]
AfterStep = Callable[["TransitionContext"], None]


@dataclass(frozen=True, slots=True)
class Rule:
    """One orchestration rule: where it applies, and its before and after steps."""

    name: str
    from_states: StateSet
    to_states: StateSet
    before: BeforeStep
    after: AfterStep | None = None
    prefect: str | None = None
    """The name of the Prefect rule this one reproduces, if any."""
    description: str = ""
    cleanup: AfterStep | None = None
    """Runs instead of the after-step when the rule's transition fizzled (a later rule
    changed the proposal's type): undoes what the before-step did outside the run, such as a
    slot it took."""
    universal: bool = False
    """A universal rule (Prefect's universal transform) is entered for every transition of
    the policy, whatever earlier rules made of the proposal, and its after-step always runs
    (it never fizzles); it decides nothing."""

    def applies_to(self, from_type: StateType | None, to_type: StateType | None) -> bool:
        """Whether the rule is compiled for a transition from ``from_type`` to ``to_type``."""
        return from_type in self.from_states and to_type in self.to_states


def _state_type(value: StateType | str | None) -> StateType | None:
    if value is None or isinstance(value, StateType):
        return value
    try:
        return StateType(value)
    except ValueError:
        expected = ", ".join(t.value for t in StateType)
        raise ValueError(
            f"{value!r} is not a StateType; expected None or one of {expected}"
        ) from None


def _state_set(values: Iterable[StateType | str | None] | StateType | str | None) -> StateSet:
    if values is None or isinstance(values, StateType | str):
        return frozenset({_state_type(values)})
    return frozenset(_state_type(v) for v in values)


def rule(
    *,
    from_: Iterable[StateType | str | None] | StateType | str | None,
    to: Iterable[StateType | str | None] | StateType | str | None,
    prefect: str | None = None,
    name: str | None = None,
    after: AfterStep | None = None,
    cleanup: AfterStep | None = None,
    universal: bool = False,
) -> Callable[[BeforeStep], Rule]:
    """Turn a before-step function into a :class:`Rule` applying from ``from_`` to ``to``.

    ``name`` defaults to the function's name; ``after`` is the optional after-step;
    ``cleanup`` runs instead of it if the transition fizzled; ``universal`` makes it a
    universal rule (see :class:`Rule`).
    """
    from_states, to_states = _state_set(from_), _state_set(to)

    def make(before: BeforeStep) -> Rule:
        return Rule(
            name=name or before.__name__,
            from_states=from_states,
            to_states=to_states,
            before=before,
            after=after,
            prefect=prefect,
            description=(before.__doc__ or "").strip(),
            cleanup=cleanup,
            universal=universal,
        )

    return make

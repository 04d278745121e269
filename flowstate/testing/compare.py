"""Comparing answers: :func:`normalise`, :func:`assert_same_answers`, :func:`assert_matches_core`.

Two engines driven with the same calls on the same clock (flowstate and
:class:`~flowstate.testing.ReferenceOrchestrator`, SQLite and PostgreSQL, your policy and the
core one) still differ in what each generates for itself: ids (of runs, states, transitions)
and the key a pause without a ``pause_key`` is recorded under. :func:`normalise` replaces
those, so what is left is what the engines decided.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any
from uuid import UUID

from flowstate.testing._require import require_hypothesis

require_hypothesis()

from hypothesis import given, settings  # noqa: E402
from pydantic_core import to_jsonable_python  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from flowstate.orchestration.policies import CORE_FLOW, CORE_TASK  # noqa: E402
from flowstate.orchestration.policy import Policy  # noqa: E402
from flowstate.rules import decide_transition  # noqa: E402
from flowstate.runs import FlowRun, TaskRun  # noqa: E402
from flowstate.states import State, StateType  # noqa: E402
from flowstate.testing.clock import DEFAULT_START  # noqa: E402
from flowstate.testing.strategies import Proposal, proposals, runs_in  # noqa: E402

__all__ = ["assert_matches_core", "assert_same_answers", "normalise"]

ID = "<id>"
GENERATED_KEY = "<generated pause key>"


def _is_uuid(value: Any) -> bool:
    if not isinstance(value, str) or len(value) != 36:
        return False
    try:
        UUID(value)
    except ValueError:
        return False
    return True


def _walk(value: Any, key: str | None, ignore: frozenset[str]) -> Any:
    if isinstance(value, dict):
        return {
            k: ("<ignored>" if k in ignore else _walk(v, k, ignore)) for k, v in value.items()
        }
    if isinstance(value, list):
        if key == "pause_keys":
            return sorted(GENERATED_KEY if _is_uuid(k) else k for k in value)
        return [_walk(v, None, ignore) for v in value]
    return _leaf(value, key)


def _leaf(value: Any, key: str | None) -> Any:
    """A scalar under ``key``: an id becomes ``ID``, a generated pause key ``GENERATED_KEY``."""
    if value is not None and key is not None and (key == "id" or key.endswith("_id")):
        return ID
    if key == "pause_key" and _is_uuid(value):
        return GENERATED_KEY
    return value


def normalise(value: Any, *, ignore: Iterable[str] = ()) -> Any:
    """``value`` (a result, state, run, or a list, tuple or dict of them) as JSON data with
    what an engine generates for itself replaced:

    * every id (``id`` and the ``*_id`` fields, of runs, states and details) becomes ``"<id>"``;
    * a pause key that is a generated id becomes ``"<generated pause key>"``, and
      ``pause_keys`` are sorted;
    * the fields named in ``ignore`` (at any depth: ``ignore={"name", "message"}``) become
      ``"<ignored>"``.

    Times are kept: engines on the same clock write the same times.

    >>> from flowstate.states import Running
    >>> normalise(Running())["id"], normalise(Running())["type"]
    ('<id>', 'RUNNING')
    """
    return _walk(to_jsonable_python(value, by_alias=False), None, frozenset(ignore))


def _first_difference(where: str, a: Any, b: Any) -> str | None:
    if a == b:
        return None
    for path, x, y in _children(where, a, b):
        found = _first_difference(path, x, y)
        if found:
            return found
    return f"{where}: {a!r} != {b!r}"


def _children(where: str, a: Any, b: Any) -> list[tuple[str, Any, Any]]:
    """The paired items of two dicts (by key) or two lists of one length, each with its path."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys = sorted(set(a) | set(b), key=str)
        return [(f"{where}.{key}", a.get(key), b.get(key)) for key in keys]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [(f"{where}[{i}]", x, y) for i, (x, y) in enumerate(zip(a, b))]
    return []


def assert_same_answers(first: Any, second: Any, *, ignore: Iterable[str] = ()) -> None:
    """Assert that ``first`` and ``second`` agree once :func:`normalise`\\ d; the
    ``AssertionError`` names the first place where they differ.

    >>> from flowstate import Orchestrator
    >>> from flowstate.states import Paused, Running
    >>> from flowstate.testing import FrozenClock
    >>> runs, answers = [], []
    >>> for _ in range(2):
    ...     orc = Orchestrator(":memory:", clock=FrozenClock())
    ...     run = orc.create_flow_run(name="same", state=Running())
    ...     answers.append(orc.set_flow_run_state(run.id, Paused()))  # a pause without a key
    ...     runs.append(orc.read_flow_run(run.id))
    >>> assert_same_answers(answers[0], answers[1])
    >>> assert_same_answers(runs[0], runs[1])
    >>> assert_same_answers(Paused(pause_key="a"), Paused(pause_key="b"), ignore={"timestamp"})
    Traceback (most recent call last):
    ...
    AssertionError: answer.state_details.pause_key: 'a' != 'b'
    """
    difference = _first_difference(
        "answer", normalise(first, ignore=ignore), normalise(second, ignore=ignore)
    )
    if difference:
        raise AssertionError(difference)


def _decide(policy: Policy, run: FlowRun | TaskRun, proposed: State) -> dict[str, Any]:
    outcome = decide_transition(
        policy,
        run=run.model_copy(deep=True),
        initial=run.state,
        proposed=proposed,
        now=DEFAULT_START,
        uniform=random.Random(0).uniform,
    )
    return {"result": outcome.result, "written": outcome.written, "run": outcome.run}


def _cases(policy: Policy, core: Policy) -> st.SearchStrategy[tuple[FlowRun | TaskRun, Proposal]]:
    """(run, proposal) pairs anywhere, and (for half the examples) where the rules that
    ``policy`` adds, replaces or leaves out of ``core`` apply."""
    kind = policy.kind
    anywhere = st.tuples(
        st.sampled_from([None, *StateType]).flatmap(lambda t: runs_in(t, kind=kind)),
        proposals(kind, force=False),
    )
    # half the examples go where the policy's own rules (or the core rules it left out) apply
    pairs = _changed_pairs(policy, core)
    if not pairs:
        return anywhere
    focused = st.sampled_from(pairs).flatmap(
        lambda pair: st.tuples(
            runs_in(pair[0], kind=kind), proposals(kind, type=pair[1], force=False)
        )
    )
    return st.one_of(focused, anywhere)


def _changed_pairs(policy: Policy, core: Policy) -> list[tuple[StateType | None, StateType]]:
    """The (from, to) pairs of the rules in only one of ``policy`` and ``core``, sorted."""
    changed = [r for r in policy.rules if r not in core.rules]
    changed += [r for r in core.rules if r not in policy.rules]
    return sorted(
        {(f, t) for r in changed for f in r.from_states for t in r.to_states if t is not None},
        key=lambda pair: ("" if pair[0] is None else pair[0].value, pair[1].value),
    )


def assert_matches_core(
    policy: Policy,
    *,
    except_when: Callable[[FlowRun | TaskRun, State], bool] | None = None,
    max_examples: int = 300,
    derandomize: bool = True,
) -> None:
    """Assert that ``policy`` decides every transition as the core policy of its kind
    (:data:`~flowstate.rules.CORE_FLOW` or ``CORE_TASK``) does, except where
    ``except_when(run, proposed_state)`` says your rules mean to differ.

    A hypothesis search (``max_examples`` examples, the same ones every time unless
    ``derandomize=False``) over runs in every state (:func:`~flowstate.testing.runs_in`) and
    unforced proposals (:func:`~flowstate.testing.proposals`), half of them where the rules
    that ``policy`` adds, replaces or leaves out apply, decided in memory with
    :func:`~flowstate.rules.decide_transition` at
    :data:`~flowstate.testing.clock.DEFAULT_START`. The answer, the written state and the run
    afterwards must agree (:func:`assert_same_answers`); a difference fails with the smallest
    example hypothesis finds.

    >>> from flowstate import StateType
    >>> from flowstate.rules import CORE_FLOW, Reject, rule
    >>> @rule(from_=StateType.RUNNING, to=StateType.PAUSED, name="no-pauses")
    ... def no_pauses(ctx):
    ...     return Reject("No pauses here.")
    >>> assert_matches_core(
    ...     CORE_FLOW.append(no_pauses),
    ...     except_when=lambda run, state: run.state_type is StateType.RUNNING
    ...     and state.type is StateType.PAUSED,
    ...     max_examples=50,
    ... )
    """
    if not isinstance(policy, Policy):
        raise TypeError(f"policy must be a flowstate Policy, got {type(policy).__name__}")
    kind = policy.kind
    core = CORE_FLOW if kind == "flow" else CORE_TASK
    cases = _cases(policy, core)

    @settings(max_examples=max_examples, derandomize=derandomize, database=None, deadline=None)
    @given(case=cases)
    def matches_core(case: tuple[FlowRun | TaskRun, Proposal]) -> None:
        run, proposal = case
        if except_when is not None and except_when(run, proposal.state):
            return
        assert_same_answers(
            _decide(core, run, proposal.state), _decide(policy, run, proposal.state)
        )

    matches_core()

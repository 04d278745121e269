"""Write your own orchestration rules and policies.

A rule names the state types it applies from and to, and a before-step that answers with a
decision — ``None`` (no objection), :class:`Proceed` (optionally with a changed proposal),
:class:`Reject` (keep the current state, or substitute ``state``), :class:`Wait` or
:class:`Abort`. An optional after-step runs only when the rule's transition was kept. The
built-in Prefect rules are written the same way (``CORE_FLOW.rules``).

>>> from datetime import datetime, timezone
>>> from flowstate import StateType
>>> from flowstate.rules import CORE_FLOW, Wait, decide_transition, rule
>>> from flowstate.states import Pending, Running
>>> @rule(from_=StateType.PENDING, to=StateType.RUNNING, name="not-on-sundays")
... def not_on_sundays(ctx):
...     if ctx.now.weekday() == 6:
...         return Wait(86_400, "No runs start on Sundays")
...     return None
>>> policy = CORE_FLOW.append(not_on_sundays, name="my-flows")
>>> sunday = datetime(2026, 11, 29, 10, tzinfo=timezone.utc)
>>> outcome = decide_transition(policy, initial=Pending(), proposed=Running(), now=sunday)
>>> outcome.result.status.value, outcome.result.details.reason
('WAIT', 'No runs start on Sundays')

Use it with ``Orchestrator(path, flow_policy=policy)``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime

from flowstate import _validation as validate
from flowstate._ids import uuid7
from flowstate._time import as_utc, utcnow
from flowstate.errors import InvalidState
from flowstate.orchestration.context import TransitionContext
from flowstate.orchestration.decisions import Abort, Decision, Proceed, Reject, Wait
from flowstate.orchestration.flow_rules import retry_crashed_flows
from flowstate.orchestration.policies import CORE_FLOW, CORE_TASK, MINIMAL_FLOW, MINIMAL_TASK
from flowstate.orchestration.policy import Outcome, Policy
from flowstate.orchestration.rules import ALL_TYPES, ANY_STATE, NO_STATE, TERMINAL, Rule, rule
from flowstate.runs import FlowRun, TaskRun
from flowstate.states import State

__all__ = [
    "ALL_TYPES",
    "ANY_STATE",
    "CORE_FLOW",
    "CORE_TASK",
    "MINIMAL_FLOW",
    "MINIMAL_TASK",
    "NO_STATE",
    "TERMINAL",
    "Abort",
    "Decision",
    "Outcome",
    "Policy",
    "Proceed",
    "Reject",
    "Rule",
    "TransitionContext",
    "Wait",
    "decide_transition",
    "retry_crashed_flows",
    "rule",
]


def decide_transition(
    policy: Policy,
    *,
    proposed: State,
    initial: State | None = None,
    run: FlowRun | TaskRun | None = None,
    now: datetime | None = None,
    flow_run: FlowRun | None = None,
    cached_state: State | None = None,
    uniform: Callable[[float, float], float] | None = None,
) -> Outcome:
    """Decide one transition with ``policy`` in memory — no database — to unit-test rules.

    ``run`` defaults to a fresh run of the policy's kind whose current state is ``initial``;
    ``flow_run`` is a task's enclosing flow run; ``cached_state`` what a cache lookup found.
    The returned :class:`Outcome` has the ``result``, the ``written`` state and the ``run``
    as it would be saved. States may be given in any form ``set_flow_run_state`` takes (a
    dict or JSON in Prefect's shape, a state type); an argument of the wrong kind is an
    :class:`~flowstate.InvalidState`.
    """
    if not isinstance(policy, Policy):
        raise InvalidState(f"policy must be a flowstate Policy, not {type(policy).__name__}")
    proposed = _state(proposed, "proposed")
    initial = _optional_state(initial, "initial")
    cached_state = _optional_state(cached_state, "cached_state")
    _expect(run, FlowRun if policy.kind == "flow" else TaskRun, "run")
    _expect(flow_run, FlowRun, "flow_run")
    _expect(now, datetime, "now")
    if uniform is not None and not callable(uniform):
        raise InvalidState(f"uniform must be a function of (low, high), not {uniform!r:.40}")
    now = as_utc(now) if now is not None else utcnow()
    if run is None:
        run = _fresh_run(policy, initial, flow_run)
    context = policy.context(
        run,
        proposed,
        now,
        uuid7,
        initial=initial,
        flow_run=flow_run,
        cached_state=cached_state,
        uniform=uniform,
    )
    return policy.decide(context)


def _fresh_run(policy: Policy, initial: State | None, flow_run: FlowRun | None) -> FlowRun | TaskRun:
    """A new run of the policy's kind in ``initial`` (a task run inside ``flow_run``)."""
    if policy.kind == "flow":
        return FlowRun(id=uuid.uuid4(), name="test-run", state=initial)
    flow_id = None if flow_run is None else flow_run.id
    return TaskRun(id=uuid.uuid4(), name="test-task", state=initial, flow_run_id=flow_id)


def _expect(value: object, kind: type, what: str) -> None:
    if value is not None and not isinstance(value, kind):
        raise InvalidState(f"{what} must be a {kind.__name__} or None, not {type(value).__name__}")


def _optional_state(value: object, what: str) -> State | None:
    return None if value is None else _state(value, what)


def _state(value: object, what: str) -> State:
    try:
        return validate.coerce_state(value)
    except InvalidState as exc:
        raise InvalidState(f"{what}: {exc}") from None

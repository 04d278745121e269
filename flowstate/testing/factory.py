"""``orchestrators()``: a fresh orchestrator and clock for every hypothesis example.

The pytest fixtures ``orchestrator`` and ``frozen_clock`` are function-scoped: under ``@given``
one orchestrator would serve every example of the test (hypothesis refuses that with its
``function_scoped_fixture`` health check). Draw one per example instead::

    @given(orchestrators(flow_policy=MY_POLICY), transition_sequences())
    def test_my_policy(env, steps):
        orc, clock = env
        ...
"""

from __future__ import annotations

import random
from datetime import datetime
from typing import NamedTuple

from flowstate.testing._require import require_hypothesis

require_hypothesis()

from hypothesis import strategies as st  # noqa: E402

from flowstate import Orchestrator  # noqa: E402
from flowstate.orchestration.policy import Policy  # noqa: E402
from flowstate.testing.clock import DEFAULT_START, FrozenClock  # noqa: E402

__all__ = ["OrchestratorOnClock", "orchestrators"]


class OrchestratorOnClock(NamedTuple):
    """An in-memory :class:`~flowstate.Orchestrator` and the
    :class:`~flowstate.testing.clock.FrozenClock` it runs on: ``orc, clock = env``.

    Also a context manager that closes the orchestrator (an in-memory database needs no
    cleaning up otherwise)."""

    orc: Orchestrator
    clock: FrozenClock

    def __enter__(self) -> OrchestratorOnClock:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.orc.close()

    def __repr__(self) -> str:
        return f"OrchestratorOnClock(clock={self.clock.now.isoformat().replace('+00:00', 'Z')!r})"


def orchestrators(
    *,
    flow_policy: Policy | None = None,
    task_policy: Policy | None = None,
    start: datetime | st.SearchStrategy[datetime] | None = None,
) -> st.SearchStrategy[OrchestratorOnClock]:
    """A new in-memory orchestrator for every example, on a new
    :class:`~flowstate.testing.clock.FrozenClock`, with reproducible retry jitter.

    ``flow_policy``/``task_policy`` as for :class:`~flowstate.Orchestrator` (default: the core
    policies). ``start`` is where the clock starts: a datetime (naive means UTC), a strategy of
    datetimes (to try many times of day), or None for
    :data:`~flowstate.testing.clock.DEFAULT_START`.

    >>> from hypothesis import given, settings
    >>> from flowstate.states import Pending
    >>> @settings(max_examples=5)
    ... @given(orchestrators())
    ... def test_a_run_is_submitted_once(env):
    ...     with env as (orc, clock):
    ...         run = orc.create_flow_run()
    ...         assert orc.set_flow_run_state(run.id, Pending()).status.value == "ACCEPT"
    ...         assert orc.set_flow_run_state(run.id, Pending()).status.value == "ABORT"
    >>> test_a_run_is_submitted_once()
    """
    for name, policy in (("flow_policy", flow_policy), ("task_policy", task_policy)):
        if policy is not None and not isinstance(policy, Policy):
            raise TypeError(f"{name} must be a flowstate Policy, got {type(policy).__name__}")
    if not isinstance(start, datetime | st.SearchStrategy | None):
        raise TypeError(f"start must be a datetime or a strategy of them, got {start!r}")
    starts = start if isinstance(start, st.SearchStrategy) else st.just(start or DEFAULT_START)
    return _orchestrators(starts, flow_policy, task_policy)


@st.composite
def _orchestrators(
    draw: st.DrawFn,
    starts: st.SearchStrategy[datetime],
    flow_policy: Policy | None,
    task_policy: Policy | None,
) -> OrchestratorOnClock:
    clock = FrozenClock(draw(starts))
    orc = Orchestrator(":memory:", clock=clock, uniform=random.Random(0).uniform,
                       flow_policy=flow_policy, task_policy=task_policy)
    return OrchestratorOnClock(orc, clock)

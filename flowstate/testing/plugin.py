"""flowstate's pytest plugin: the ``frozen_clock``, ``orchestrator`` and ``async_orchestrator``
fixtures.

Installed with flowstate (entry point ``pytest11``: ``flowstate = "flowstate.testing.plugin"``),
so the fixtures are there in every test session with no import::

    def test_a_pending_run_cannot_be_submitted_twice(orchestrator):
        run = orchestrator.create_flow_run()
        orchestrator.set_flow_run_state(run.id, Pending())
        assert orchestrator.set_flow_run_state(run.id, Pending()).status.value == "ABORT"

``async_orchestrator`` is the same for asyncio code; it belongs to no event loop, so a plain test
can drive it with ``asyncio.run`` (no async test plugin needed)::

    def test_submitting_from_async_code(async_orchestrator):
        async def main():
            run = await async_orchestrator.create_flow_run()
            return await async_orchestrator.set_flow_run_state(run.id, Pending())

        assert asyncio.run(main()).status.value == "ACCEPT"

Importing this module costs nothing and needs no hypothesis: flowstate itself is imported
inside the fixtures. Disable it with ``-p no:flowstate``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from flowstate import AsyncOrchestrator, Orchestrator
    from flowstate.testing.clock import FrozenClock

__all__ = ["async_orchestrator", "frozen_clock", "orchestrator"]


@pytest.fixture
def frozen_clock() -> FrozenClock:
    """A :class:`~flowstate.testing.clock.FrozenClock` at 2024-01-01T00:00Z; move it with
    ``advance(seconds)`` or ``set(datetime)``."""
    from flowstate.testing.clock import FrozenClock

    return FrozenClock()


@pytest.fixture
def orchestrator(frozen_clock: FrozenClock) -> Iterator[Orchestrator]:
    """An in-memory :class:`~flowstate.Orchestrator` on the ``frozen_clock``, with
    reproducible retry jitter; closed after the test."""
    from flowstate import Orchestrator

    with Orchestrator(":memory:", clock=frozen_clock, uniform=random.Random(0).uniform) as orc:
        yield orc


@pytest.fixture
def async_orchestrator(frozen_clock: FrozenClock) -> Iterator[AsyncOrchestrator]:
    """An in-memory :class:`~flowstate.AsyncOrchestrator` on the ``frozen_clock``, with
    reproducible retry jitter; closed after the test (no event loop needed for that)."""
    from flowstate import AsyncOrchestrator

    orc = AsyncOrchestrator(":memory:", clock=frozen_clock, uniform=random.Random(0).uniform)
    try:
        yield orc
    finally:
        orc._shutdown(timeout=30)

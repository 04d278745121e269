"""``ReferenceOrchestrator``: the :class:`~flowstate.Orchestrator` over plain dictionaries.

It is the very same engine — input checks, policies, bookkeeping, transactions, listeners,
run input, the task cache, workers, concurrency limits and deployments — with its runs,
histories and rows kept in memory instead of a database (``flowstate.store.memory``): no SQL,
no encoding, nothing on disk. Values are copied on the way in and out, as reading a row
builds a new object, and a block that fails leaves nothing behind, as a rolled-back
transaction does.

Driving it and an orchestrator on SQLite or PostgreSQL with the same calls on one clock and
comparing the answers step by step (a *differential* test) checks what the database adds:
reading and writing rows, time and JSON encoding, SQL filters and orders, and reopening a
database. It lives as long as the object: there is nothing to reopen.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime
from uuid import UUID

from flowstate._ids import uuid7
from flowstate.orchestration.policy import Policy
from flowstate.orchestrator import Orchestrator
from flowstate.store.memory import MemoryStore
from flowstate.testing.clock import FrozenClock

__all__ = ["ReferenceOrchestrator"]


class ReferenceOrchestrator(Orchestrator):
    """An :class:`~flowstate.Orchestrator` whose storage is dictionaries in memory.

    ``clock`` and ``uniform`` are as for the orchestrator (default: a fresh
    :class:`~flowstate.testing.clock.FrozenClock` and ``random.Random(0).uniform``, so two
    reference orchestrators made alike answer alike); ``new_id`` makes the ids of states.
    Every method of the orchestrator is there and answers as it does.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], datetime] | None = None,
        uniform: Callable[[float, float], float] | None = None,
        flow_policy: Policy | None = None,
        task_policy: Policy | None = None,
        new_id: Callable[[], UUID] = uuid7,
    ) -> None:
        self._start_engine(
            MemoryStore(),
            clock or FrozenClock(),
            uniform or random.Random(0).uniform,
            flow_policy,
            task_policy,
            None,
            new_id,
        )

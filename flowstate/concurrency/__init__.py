"""Global concurrency limits (Prefect's V2 limits), rate limits, deployments' limits and tag
limits: the models, and the arithmetic of slots. The calls are the Orchestrator's
(``flowstate/_concurrency.py``, ``flowstate/_tag_limits.py``)."""

from __future__ import annotations

from flowstate.concurrency.holding import HeldSlots
from flowstate.concurrency.models import (
    ConcurrencyLease,
    ConcurrencyLeaseHolder,
    ConcurrencyOptions,
    Deployment,
    GlobalConcurrencyLimit,
)
from flowstate.concurrency.tags import ConcurrencyLimit

__all__ = [
    "ConcurrencyLease",
    "ConcurrencyLeaseHolder",
    "ConcurrencyLimit",
    "ConcurrencyOptions",
    "Deployment",
    "GlobalConcurrencyLimit",
    "HeldSlots",
]

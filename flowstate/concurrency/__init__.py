"""Global concurrency limits (Prefect's V2 limits), rate limits and deployments' limits: the
models, and the arithmetic of slots. The calls are the Orchestrator's (``flowstate/_concurrency.py``)."""

from __future__ import annotations

from flowstate.concurrency.holding import HeldSlots
from flowstate.concurrency.models import (
    ConcurrencyLease,
    ConcurrencyLeaseHolder,
    ConcurrencyOptions,
    Deployment,
    GlobalConcurrencyLimit,
)

__all__ = [
    "ConcurrencyLease",
    "ConcurrencyLeaseHolder",
    "ConcurrencyOptions",
    "Deployment",
    "GlobalConcurrencyLimit",
    "HeldSlots",
]

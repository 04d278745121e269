"""Global concurrency limits (Prefect's V2 limits), rate limits, deployments' limits and tag
limits. Every kind is a global limit: a deployment's own limit is named ``deployment:<id>``, a
tag's ``tag:<tag>``, and slots are always taken and given back the same way.

- ``models.py``: what the API returns (limits, leases, deployments); ``tags.py``: the tag view.
- ``checks.py``: the checks of the calls' arguments.
- ``slots.py``: the stored rows and the arithmetic of slots (decay, occupancy, retry_after).
- ``run_slots.py``: taking and giving back slots with leases (``take_slots``, ``give_back``),
  and :class:`~flowstate.concurrency.run_slots.RunSlots`, all the rules reach limits through.
- ``holding.py``: the ``with orc.concurrency(...)`` block.

The calls are the Orchestrator's (``flowstate/_concurrency.py``, ``_tag_limits.py``,
``_deployments.py``); the rows are read and written by ``flowstate/store/limits.py``; the rules
are ``flowstate/orchestration/tag_rules.py`` and ``deployment_rules.py``."""

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

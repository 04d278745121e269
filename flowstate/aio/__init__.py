"""flowstate for asyncio programs: :class:`AsyncOrchestrator` (see docs/async.md).

Imported on first use of ``flowstate.AsyncOrchestrator``, so ``import flowstate`` does not load
asyncio.
"""

from __future__ import annotations

from flowstate.aio.orchestrator import AsyncOrchestrator, AsyncTransaction
from flowstate.aio.subscription import AsyncSubscription

__all__ = ["AsyncOrchestrator", "AsyncSubscription", "AsyncTransaction"]

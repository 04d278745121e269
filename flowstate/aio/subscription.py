"""``AsyncOrchestrator.subscribe()``: committed transitions as an async iterator."""

from __future__ import annotations

import asyncio
import queue
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from flowstate.listeners import TransitionEvent

__all__ = ["AsyncSubscription"]


class AsyncSubscription:
    """Events of committed transitions, in commit order: ``async for event in sub``, or
    ``await sub.get()``; ``close()`` (or leaving ``async with``) stops it.

    With ``maxsize`` > 0, a call whose events find the subscription holding more than
    ``maxsize`` waits, after its commit, until the subscriber has taken enough of them.
    """

    def __init__(self, maxsize: int, forget: Callable[[AsyncSubscription], None]) -> None:
        self.maxsize = maxsize
        self.closed = False
        self._forget = forget
        self._events: deque[TransitionEvent] = deque()
        self._arrived: asyncio.Future[None] | None = None  # a reader waiting for an event
        self._taken: asyncio.Future[None] | None = None  # callers waiting for room

    def _put(self, events: Iterable[TransitionEvent]) -> None:
        """On the loop, in commit order (from the call's delivery, before its caller resumes)."""
        self._events.extend(events)
        self._wake("_arrived")

    def _wake(self, name: str) -> None:
        future = getattr(self, name)
        if future is not None:
            setattr(self, name, None)
            if not future.done():
                future.set_result(None)

    @property
    def full(self) -> bool:
        """Whether callers must wait for the subscriber (only with a ``maxsize``)."""
        return 0 < self.maxsize < len(self._events) and not self.closed

    async def _room(self) -> None:
        """Wait until the subscription holds at most ``maxsize`` events (or is closed)."""
        while self.full:
            if self._taken is None or self._taken.done():
                self._taken = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._taken)

    async def get(self, timeout: float | None = None) -> TransitionEvent:
        """The next event; ``queue.Empty`` after ``timeout`` seconds without one, or when the
        subscription is closed and empty (as the sync ``Subscription.get``)."""
        try:
            async with asyncio.timeout(timeout):
                while not self._events:
                    if self.closed:
                        raise queue.Empty("the subscription is closed")
                    if self._arrived is None or self._arrived.done():
                        self._arrived = asyncio.get_running_loop().create_future()
                    await asyncio.shield(self._arrived)
        except TimeoutError:
            raise queue.Empty(f"no event within {timeout} s") from None
        event = self._events.popleft()
        if not self.full:
            self._wake("_taken")
        return event

    def pending(self) -> list[TransitionEvent]:
        """Every event already here, without waiting."""
        events = list(self._events)
        self._events.clear()
        self._wake("_taken")
        return events

    def __aiter__(self) -> AsyncSubscription:
        return self

    async def __anext__(self) -> TransitionEvent:
        """Events as they come; the iteration ends after the queued ones once closed."""
        try:
            return await self.get()
        except queue.Empty:
            raise StopAsyncIteration from None

    def close(self) -> None:
        """Stop receiving events; an iteration in progress ends after the queued ones."""
        if not self.closed:
            self.closed = True
            self._forget(self)
            self._wake("_arrived")
            self._wake("_taken")

    def __enter__(self) -> AsyncSubscription:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    async def __aenter__(self) -> AsyncSubscription:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self.close()

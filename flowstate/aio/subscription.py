"""``AsyncOrchestrator.subscribe()``: committed transitions as an async iterator."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable, Iterable
from typing import Any

from flowstate.aio._worker import wake
from flowstate.listeners import BufferedEvents, TransitionEvent

__all__ = ["AsyncSubscription"]


class AsyncSubscription(BufferedEvents):
    """Events of committed transitions, in commit order: ``async for event in sub``, or
    ``await sub.get()``; ``close()`` (or leaving ``async with``) stops it.

    With ``maxsize`` > 0 the subscription holds at most ``maxsize`` events. A full subscription
    never makes a call wait: the oldest event is dropped to make room for the new one and
    counted in :attr:`dropped`, as the sync ``Subscription`` does, so a subscriber that falls
    behind sees how many events it missed.
    """

    def __init__(self, maxsize: int, forget: Callable[[], None]) -> None:
        super().__init__(maxsize, forget)
        self._arrived: asyncio.Future[None] | None = None  # a reader waiting for an event
        self._lock = threading.Lock()  # (calls may come from another loop's thread)

    def _put(self, events: Iterable[TransitionEvent]) -> None:
        """On the loop that made the call, in commit order (from the call's delivery, before
        its caller resumes)."""
        with self._lock:
            for event in events:
                self._append(event)
        self._wake()

    def _wake(self) -> None:
        """Wake the reader waiting for an event, if any (in its own event loop)."""
        with self._lock:
            arrived, self._arrived = self._arrived, None
        if arrived is not None:
            wake(arrived)

    async def get(self, timeout: float | None = None) -> TransitionEvent:
        """The next event; ``queue.Empty`` after ``timeout`` seconds without one, or when the
        subscription is closed and empty (as the sync ``Subscription.get``)."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    with self._lock:
                        if self._events:
                            return self._events.popleft()
                        if self.closed:
                            raise queue.Empty("the subscription is closed")
                        if self._arrived is None or self._arrived.done():
                            self._arrived = asyncio.get_running_loop().create_future()
                        arrived = self._arrived
                    await asyncio.shield(arrived)
        except TimeoutError:
            raise queue.Empty(f"no event within {timeout} s") from None

    def pending(self) -> list[TransitionEvent]:
        """Every event already here, without waiting."""
        with self._lock:
            return self._take_all()

    def __aiter__(self) -> AsyncSubscription:
        return self

    async def __anext__(self) -> TransitionEvent:
        """Events as they come; the iteration ends after the queued ones once closed."""
        try:
            return await self.get()
        except queue.Empty:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> AsyncSubscription:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self.close()

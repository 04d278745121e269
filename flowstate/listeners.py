"""Transition listeners: callbacks and subscriptions told about committed transitions.

Listeners run after the commit, never inside the SQLite transaction, in the thread that made the
call. An exception raised by a listener is logged (logger ``flowstate.listeners``) and kept in
:attr:`Listeners.errors`; it never undoes the transition or stops the other listeners.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal, Self
from uuid import UUID

from flowstate._seconds import optional_span
from flowstate.errors import InvalidState
from flowstate.results import OrchestrationResult
from flowstate.states import State

__all__ = ["Listener", "Listeners", "Subscription", "TransitionEvent"]

_log = logging.getLogger("flowstate.listeners")


@dataclass(frozen=True, slots=True)
class TransitionEvent:
    """A committed transition that wrote a new state (accepted, or rejected with a substitute)."""

    kind: Literal["flow", "task"]
    run_id: UUID
    initial: State | None
    state: State
    result: OrchestrationResult
    forced: bool


Listener = Callable[[TransitionEvent], object]


class BufferedEvents:
    """The events a subscription (sync or async) holds until they are taken: at most
    ``maxsize`` of them (0: no bound). When it is full the oldest is dropped to make room for
    the new one, and counted in :attr:`dropped`."""

    def __init__(self, maxsize: int, forget: Callable[[], None]) -> None:
        self.maxsize = maxsize
        self.closed = False
        self.dropped = 0
        """How many events were dropped, oldest first, because the queue was full."""
        self._events: deque[TransitionEvent] = deque()
        self._forget = forget  # stops the events coming

    def _append(self, event: TransitionEvent) -> None:
        if self.maxsize and len(self._events) >= self.maxsize:
            self._events.popleft()
            self.dropped += 1
        self._events.append(event)

    def _take_all(self) -> list[TransitionEvent]:
        events = list(self._events)
        self._events.clear()
        return events

    def close(self) -> None:
        """Stop receiving events; an iteration in progress ends after the queued ones."""
        if not self.closed:
            self.closed = True
            self._forget()
            self._wake()

    def _wake(self) -> None:
        """Wake whoever waits for an event (to find the subscription closed)."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Subscription(BufferedEvents):
    """A queue of events: iterate it, or ``get(timeout=...)``; ``close()`` to stop listening.

    ``maxsize`` bounds the queue (0: no bound). A full subscription never makes a transition
    wait: the oldest queued event is dropped to make room for the new one, and counted in
    :attr:`dropped`, so a consumer that falls behind sees how many events it missed.
    """

    def __init__(self, maxsize: int, forget: Callable[[], None]) -> None:
        super().__init__(maxsize, forget)
        self._ready = threading.Condition(threading.Lock())

    def _put(self, event: TransitionEvent) -> None:
        with self._ready:
            if self.closed:
                return
            self._append(event)
            self._ready.notify()

    def _next(self, timeout: float | None) -> TransitionEvent | None:
        """The next event, or None once the subscription is closed and drained; queue.Empty
        after ``timeout`` seconds without one."""
        with self._ready:
            if not self._ready.wait_for(lambda: self._events or self.closed, timeout):
                raise queue.Empty(f"no event within {timeout} s")
            return self._events.popleft() if self._events else None

    def get(self, timeout: float | None = None) -> TransitionEvent:
        """The next event; ``queue.Empty`` after ``timeout`` seconds without one, or at once
        when the subscription is closed and its queued events are taken."""
        event = self._next(optional_span(timeout, "timeout"))
        if event is None:
            raise queue.Empty("the subscription is closed")
        return event

    def pending(self) -> list[TransitionEvent]:
        """Every event already queued, without waiting."""
        with self._ready:
            return self._take_all()

    def __iter__(self) -> Iterator[TransitionEvent]:
        """Events as they come, until :meth:`close` is called (and the queued ones are taken)."""
        while (event := self._next(None)) is not None:
            yield event

    def _wake(self) -> None:
        with self._ready:
            self._ready.notify_all()


class Listeners:
    """The registered callbacks, and the events of the current thread's open transaction."""

    def __init__(self) -> None:
        self.callbacks: list[Listener] = []
        """The registered callbacks: a new list on each change, so it may be read unlocked."""
        self._lock = threading.Lock()
        self._local = threading.local()
        self.recorded = False
        """False until the first event is recorded: till then every thread's pending list is
        empty, and marking, rolling back and flushing need not look it up."""
        self.errors: list[tuple[Listener, TransitionEvent, BaseException]] = []
        self._subscriptions: list[Subscription] = []
        self._ended = False  # (end_subscriptions was called)

    def add(self, callback: Listener) -> Callable[[], None]:
        """Register ``callback``; returns a function that unregisters it."""
        if not callable(callback):
            raise InvalidState(
                f"a listener must be callable (event -> None), not {type(callback).__name__}"
            )
        with self._lock:
            self.callbacks = [*self.callbacks, callback]
        return lambda: self.remove(callback)

    def remove(self, callback: Listener) -> None:
        """Unregister ``callback`` (no error if it is not registered)."""
        with self._lock:
            self.callbacks = [c for c in self.callbacks if c is not callback]

    def subscribe(self, maxsize: int = 0) -> Subscription:
        """A new :class:`Subscription` receiving every later event (``maxsize``: see there)."""
        subscription = Subscription(
            checked_maxsize(maxsize), lambda: self._unsubscribe(subscription, put)
        )
        put = subscription._put  # (one bound method: each access to _put makes a new one)
        with self._lock:
            ended = self._ended
            if not ended:
                self._subscriptions = [*self._subscriptions, subscription]
        if ended:  # the orchestrator is closed: no event will come
            subscription.close()
        else:
            self.add(put)
        return subscription

    def _unsubscribe(self, subscription: Subscription, put: Listener) -> None:
        with self._lock:
            self._subscriptions = [s for s in self._subscriptions if s is not subscription]
        self.remove(put)

    def end_subscriptions(self) -> None:
        """The orchestrator closed: close every subscription (an iteration ends after the
        events queued), and those made later at once."""
        with self._lock:
            self._ended = True
            subscriptions, self._subscriptions = self._subscriptions, []
        for subscription in subscriptions:
            subscription.close()

    def _pending(self) -> list[TransitionEvent]:
        pending = getattr(self._local, "pending", None)
        if pending is None:
            pending = self._local.pending = []
        return pending

    def record(self, event: TransitionEvent) -> None:
        """Hold ``event`` until the transaction that made it commits."""
        self.recorded = True
        self._pending().append(event)

    def mark(self) -> int:
        """Where the current thread's pending events stand (see :meth:`rollback_to`)."""
        return len(self._pending()) if self.recorded else 0

    def rollback_to(self, mark: int) -> None:
        """A (nested) transaction rolled back: forget the events it made."""
        if self.recorded:
            del self._pending()[mark:]

    def flush(self) -> None:
        """The transaction committed: tell every listener, in order, isolating failures."""
        if not self.recorded:
            return
        pending = self._pending()
        if not pending:
            return
        events = list(pending)
        pending.clear()
        self.tell(events)

    def tell(self, events: list[TransitionEvent]) -> None:
        """Call every listener with each event, in order, isolating failures."""
        callbacks = self.callbacks
        for event in events:
            for callback in callbacks:
                try:
                    callback(event)
                except Exception as exc:  # a listener's bug must not undo a committed transition
                    self.report(callback, event, exc)

    def report(self, callback: Listener, event: TransitionEvent, exc: BaseException) -> None:
        """A listener raised: log it and keep it in :attr:`errors` (the transition stays)."""
        self.errors.append((callback, event, exc))
        _log.error(
            "flowstate listener %r failed on %s", callback, event.state, exc_info=exc
        )


def checked_maxsize(maxsize: object) -> int:
    """A subscription's ``maxsize`` (a whole number >= 0), or :class:`InvalidState`."""
    if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 0:
        raise InvalidState(f"maxsize={maxsize!r}; expected a whole number >= 0 (0: no bound)")
    return maxsize

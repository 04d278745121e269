"""A controllable clock for tests: pass it as ``Orchestrator(clock=...)``. Needs no hypothesis.

>>> from datetime import datetime, timezone
>>> from flowstate.testing.clock import FrozenClock
>>> clock = FrozenClock(datetime(2024, 1, 1, tzinfo=timezone.utc))
>>> clock()
datetime.datetime(2024, 1, 1, 0, 0, tzinfo=datetime.timezone.utc)
>>> clock.advance(90).isoformat()
'2024-01-01T00:01:30+00:00'
>>> clock.set(datetime(2024, 6, 1)).isoformat()     # a naive time is taken as UTC
'2024-06-01T00:00:00+00:00'
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

from flowstate._time import as_utc

__all__ = ["DEFAULT_START", "FrozenClock"]

DEFAULT_START = datetime(2024, 1, 1, tzinfo=timezone.utc)
"""Where a :class:`FrozenClock` starts unless told otherwise."""


def _utc(when: datetime) -> datetime:
    if not isinstance(when, datetime):
        raise TypeError(f"expected a datetime, got {type(when).__name__}: {when!r}")
    return as_utc(when)


class FrozenClock:
    """A clock that stands still until told to move: ``advance(seconds)`` or ``set(datetime)``.

    Calling it returns the current (aware UTC) time, so it is a drop-in ``clock=`` for
    :class:`~flowstate.Orchestrator`: WAIT delays, pause timeouts, cache expiry and retry
    schedules can then be tested without sleeping. It may be moved backwards too (the engine
    copes: a run's state timestamps still never go back). Safe to share between threads.
    """

    def __init__(self, start: datetime = DEFAULT_START) -> None:
        self._now = _utc(start)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def __repr__(self) -> str:
        return f"FrozenClock({self().isoformat()})"

    @property
    def now(self) -> datetime:
        """The time the clock shows."""
        return self()

    def advance(self, seconds: float = 0.0, **delta: float) -> datetime:
        """Move the clock by ``seconds`` (and/or ``timedelta`` keywords: ``minutes=5``).

        Negative amounts move it back. Returns the new time.
        """
        step = timedelta(seconds=seconds, **delta)
        with self._lock:
            self._now = self._now + step
            return self._now

    def sleep(self, seconds: float) -> None:
        """Pass ``seconds`` at once, by advancing the clock: an orchestrator given this clock
        waits (``wait_for_resume``, ``receive_input``) without really sleeping."""
        self.advance(seconds)

    def set(self, when: datetime) -> datetime:
        """Show ``when`` from now on (a naive datetime is taken as UTC). Returns it, in UTC."""
        value = _utc(when)
        with self._lock:
            self._now = value
            return value

"""Time helpers shared by models, store and engine: aware UTC datetimes only."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from functools import partial
from typing import Annotated, Any

from pydantic import BeforeValidator

UTC = timezone.utc


utcnow: Callable[[], datetime] = partial(datetime.now, UTC)
"""The real clock, as an aware UTC datetime (a partial: no Python frame of its own)."""


def as_utc(value: datetime) -> datetime:
    """Return ``value`` in UTC; a naive datetime is taken to be UTC already."""
    if value.tzinfo is UTC:
        return value
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _coerce_utc(value: Any) -> Any:
    try:
        if isinstance(value, datetime):
            return as_utc(value)
        if isinstance(value, str):
            try:
                return as_utc(datetime.fromisoformat(value))
            except ValueError:
                return value  # let pydantic report the malformed value
    except OverflowError:  # e.g. 0001-01-01T00:00+01:00 is before year 1 in UTC
        raise ValueError(f"{value!s} is out of range once converted to UTC") from None
    return value


UtcDateTime = Annotated[datetime, BeforeValidator(_coerce_utc)]
"""A datetime field that always holds an aware UTC value (naive input is taken as UTC)."""


class FromNow(datetime):
    """A time given as ``seconds`` from "now" (``Paused(timeout_seconds=60)``).

    Until a proposal holding it is stamped it shows the real clock's now plus ``seconds``;
    stamping replaces it by the orchestrator's now plus ``seconds`` (:func:`resolve_from_now`),
    so that an injected clock decides when it comes.
    """

    __slots__ = ("seconds",)
    seconds: float


def from_now(seconds: float) -> FromNow:
    """A :class:`FromNow` ``seconds`` after the real clock's now (OverflowError past year 9999)."""
    at = utcnow() + timedelta(seconds=seconds)
    made = FromNow(
        at.year, at.month, at.day, at.hour, at.minute, at.second, at.microsecond, tzinfo=UTC
    )
    made.seconds = seconds
    return made


def resolve_from_now(value: FromNow, now: datetime) -> datetime:
    """``now`` plus the value's seconds, as a plain datetime (OverflowError past year 9999)."""
    seconds = getattr(value, "seconds", None)  # (datetime arithmetic makes FromNow without any)
    if seconds is None:
        return datetime.fromisoformat(value.isoformat())
    return now + timedelta(seconds=seconds)

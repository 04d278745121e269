"""Time helpers shared by models, store and engine: aware UTC datetimes only."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from functools import partial
from typing import Annotated, Any

from pydantic import BeforeValidator

UTC = timezone.utc


utcnow: Callable[[], datetime] = partial(datetime.now, UTC)
"""The real clock, as an aware UTC datetime (a partial: no Python frame of its own)."""


def as_utc(value: datetime) -> datetime:
    """Return ``value`` in UTC; a naive datetime is taken to be UTC already."""
    if value.tzinfo is UTC and type(value) is datetime:
        return value
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    if value.utcoffset() == UTC.utcoffset(None) and value.tzinfo is UTC:
        return value
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

"""Spans of seconds the API takes (timeouts, poll intervals, thresholds), checked one way.

A span is a number of seconds, never a bool, NaN or an infinity, and at most a century: longer
is no different from waiting forever, while ``now + span`` still fits a datetime and the
sleeps of ``time``, ``threading`` and ``asyncio`` all take it.
"""

from __future__ import annotations

from typing import Any

from flowstate.errors import InvalidState

__all__ = ["CENTURY", "optional_span", "span"]

CENTURY = 100 * 365.25 * 86400
"""The longest span taken, in seconds."""


def span(value: Any, name: str, *, zero: bool = True) -> float:
    """``value`` as a float if it is a span (0 too, unless not ``zero``); else
    :class:`~flowstate.InvalidState` naming ``name``."""
    if _is_span(value, zero):
        return float(value)
    raise InvalidState(_expected(value, name, zero))


def optional_span(value: Any, name: str, *, zero: bool = True) -> float | None:
    """None (no limit), or :func:`span`."""
    if value is None:
        return None
    if _is_span(value, zero):
        return float(value)
    raise InvalidState(_expected(value, name, zero) + ", or None")


def _is_span(value: Any, zero: bool) -> bool:
    return (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and 0 <= value <= CENTURY  # (False for NaN; exact for any int)
        and (zero or value != 0)
    )


def _expected(value: Any, name: str, zero: bool) -> str:
    low = ">= 0" if zero else "> 0"
    return f"{name}={value!r:.40}; expected a number of seconds {low}, at most a century"

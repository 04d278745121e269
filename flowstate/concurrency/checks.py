"""Checks of the arguments of the concurrency calls: each bad value is an InvalidState naming
the parameter, raised before anything is read or written."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any
from uuid import UUID

from flowstate import _validation as validate
from flowstate.errors import InvalidState

__all__ = [
    "BLOCK_MODE",
    "MAX_LEASE_SECONDS",
    "MAX_WAIT_SECONDS",
    "MIN_LEASE_SECONDS",
    "block_arguments",
    "count",
    "decay",
    "holder",
    "lease_duration",
    "lease_id",
    "limit_name",
    "mode",
    "names",
    "occupancy",
    "timeout",
]

MIN_LEASE_SECONDS = 60
MAX_LEASE_SECONDS = 86400
"""A lease lasts between a minute and a day (Prefect's bounds), renewed as long as needed."""

HOLDER_TYPES = ("flow_run", "task_run", "deployment")


def limit_name(value: Any, what: str = "name") -> str:
    if not isinstance(value, str):
        raise InvalidState(f"{what} must be a str, not {type(value).__name__}")
    if not value.strip():
        raise InvalidState(f"{what} must not be empty")
    if "\x00" in value:
        raise InvalidState(f"{what} {value!r:.80} holds a NUL character")
    validate.check_text(value, what)
    return value


def names(value: Any) -> list[str]:
    """One name or a list of names, each checked, duplicates dropped (first kept)."""
    if isinstance(value, str):
        return [limit_name(value, "names")]
    if not isinstance(value, list | tuple | set | frozenset):
        raise InvalidState(f"names must be a str or a list of str, not {type(value).__name__}")
    found = [limit_name(item, "names") for item in value]
    if not found:
        raise InvalidState("names must name at least one limit")
    return list(dict.fromkeys(found))


MAX_WAIT_SECONDS = 100 * 365.25 * 86400
"""The longest ``timeout`` (a century): longer is no different from None (no timeout)."""


def count(value: Any, what: str, minimum: int) -> int:
    """A whole number from ``minimum`` to 2**63-1 (what a database column holds)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not minimum <= value <= validate.MAX_SQL_INT
    ):
        raise InvalidState(
            f"{what}={value!r:.40}; expected a whole number from {minimum} to 2**63-1"
        )
    return value


def decay(value: Any) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise InvalidState(
            f"slot_decay_per_second={value!r:.40}; expected a number >= 0 (0: no decay)"
        )
    return float(value)


def active(value: Any, what: str = "active") -> bool:
    if not isinstance(value, bool):
        raise InvalidState(f"{what}={value!r:.40}; expected True or False")
    return value


def mode(value: Any) -> str:
    if value not in ("concurrency", "rate_limit"):
        raise InvalidState(f"mode={value!r:.40}; expected 'concurrency' or 'rate_limit'")
    return str(value)


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def lease_duration(value: Any) -> float:
    seconds = _seconds(value)
    if seconds is None or not MIN_LEASE_SECONDS <= seconds <= MAX_LEASE_SECONDS:
        raise InvalidState(
            f"lease_duration={value!r:.40}; expected seconds between {MIN_LEASE_SECONDS} and "
            f"{MAX_LEASE_SECONDS}"
        )
    return seconds


def occupancy(value: Any) -> float | None:
    if value is None:
        return None
    seconds = _seconds(value)
    if seconds is None or seconds <= 0:
        raise InvalidState(f"occupancy_seconds={value!r:.40}; expected seconds > 0, or None")
    return seconds


def timeout(value: Any) -> float | None:
    if value is None:
        return None
    seconds = _seconds(value)
    if seconds is None or not 0 <= seconds <= MAX_WAIT_SECONDS:
        raise InvalidState(
            f"timeout={value!r:.40}; expected seconds from 0 to {MAX_WAIT_SECONDS:.0f} (a "
            "century), or None (no timeout)"
        )
    return seconds


def lease_id(value: Any) -> str:
    return str(validate.run_id(value, "lease_id"))


def holder(value: Any) -> tuple[str, str] | None:
    """(type, id) of ``{"type": "task_run", "id": ...}`` or a ConcurrencyLeaseHolder."""
    if value is None:
        return None
    if hasattr(value, "model_dump"):
        value = value.model_dump()
    if not isinstance(value, Mapping) or set(value) != {"type", "id"}:
        raise InvalidState(
            f"holder={value!r:.80}; expected {{'type': 'flow_run' | 'task_run' | 'deployment', "
            "'id': UUID}"
        )
    kind = value["type"]
    if kind not in HOLDER_TYPES:
        raise InvalidState(f"holder type {kind!r:.40}; expected one of {', '.join(HOLDER_TYPES)}")
    ident = value["id"]
    return str(kind), str(ident if isinstance(ident, UUID) else validate.run_id(ident, "holder id"))


BLOCK_MODE = "concurrency"
"""The mode of the slots a ``concurrency()`` block holds: given back when it ends."""


def block_arguments(
    wanted: Any, occupy: Any, *, wait: Any, duration: Any, strict: Any, held_by: Any
) -> tuple[list[str], int, dict[str, Any]]:
    """``concurrency()``'s arguments, checked: the names, the slots to occupy on each, and the
    options its acquisition takes (``Orchestrator._acquire_steps``)."""
    checked_names = names(wanted)
    slots = count(occupy, "occupy", 1)
    options = {
        "mode": BLOCK_MODE,
        "timeout": timeout(wait),
        "lease_duration": lease_duration(duration),
        "strict": active(strict, "strict"),
        "holder": held_by,
    }
    holder(held_by)
    return checked_names, slots, options

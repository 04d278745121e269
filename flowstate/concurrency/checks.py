"""Checks of the arguments of the concurrency calls: each bad value is an InvalidState naming
the parameter, raised before anything is read or written."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any
from uuid import UUID

from flowstate import _validation as validate
from flowstate._seconds import optional_span
from flowstate.errors import InvalidState

__all__ = [
    "BLOCK_MODE",
    "MAX_LEASE_SECONDS",
    "MAX_NAME_BYTES",
    "MIN_LEASE_SECONDS",
    "block_arguments",
    "count",
    "decay",
    "expect",
    "holder",
    "is_number",
    "lease_duration",
    "lease_id",
    "limit_name",
    "mode",
    "names",
    "new_name",
    "occupancy",
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


MAX_NAME_BYTES = 2000
"""The longest name of a new limit or deployment, in bytes of UTF-8 (2000 ASCII characters, at
least 500 of any script): PostgreSQL's unique index on names holds no longer ones, and every
store takes the same names."""


def new_name(value: Any, what: str = "name") -> str:
    """:func:`limit_name` of something created under this name, at most
    :data:`MAX_NAME_BYTES` long."""
    name = limit_name(value, what)
    size = len(name.encode("utf-8"))
    if size > MAX_NAME_BYTES:
        raise InvalidState(
            f"{what} {name!r:.40} is {size} bytes long in UTF-8; a name is at most "
            f"{MAX_NAME_BYTES} bytes"
        )
    return name


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


def expect(ok: bool, what: str, value: Any, expected: str) -> None:
    """InvalidState ``<what>=<value>; expected <expected>`` unless ``ok``."""
    if not ok:
        raise InvalidState(f"{what}={value!r:.40}; expected {expected}")


def is_number(value: Any, *, whole: bool = False) -> bool:
    """A finite int or float (an int only if ``whole``) that a float holds; never a bool."""
    kinds = int if whole else int | float
    return (
        isinstance(value, kinds)
        and not isinstance(value, bool)
        and -sys.float_info.max <= value <= sys.float_info.max  # (False for NaN)
    )


def count(value: Any, what: str, minimum: int) -> int:
    """A whole number from ``minimum`` to 2**63-1 (what a database column holds)."""
    ok = is_number(value, whole=True) and minimum <= value <= validate.MAX_SQL_INT
    expect(ok, what, value, f"a whole number from {minimum} to 2**63-1")
    return value


def decay(value: Any) -> float:
    ok = is_number(value) and value >= 0
    expect(ok, "slot_decay_per_second", value, "a number >= 0 (0: no decay)")
    return float(value)


def active(value: Any, what: str = "active") -> bool:
    expect(isinstance(value, bool), what, value, "True or False")
    return value


def mode(value: Any) -> str:
    expect(value in ("concurrency", "rate_limit"), "mode", value, "'concurrency' or 'rate_limit'")
    return str(value)


def lease_duration(value: Any) -> float:
    ok = is_number(value) and MIN_LEASE_SECONDS <= value <= MAX_LEASE_SECONDS
    expect(
        ok, "lease_duration", value,
        f"seconds between {MIN_LEASE_SECONDS} and {MAX_LEASE_SECONDS}",
    )
    return float(value)


def occupancy(value: Any) -> float | None:
    if value is None:
        return None
    expect(is_number(value) and value > 0, "occupancy_seconds", value, "seconds > 0, or None")
    return float(value)


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
        "timeout": optional_span(wait, "timeout"),
        "lease_duration": lease_duration(duration),
        "strict": active(strict, "strict"),
        "holder": holder(held_by),
    }
    return checked_names, slots, options

"""What counts as a persisted result: the ``data`` a state carries as its result reference."""

from __future__ import annotations

from typing import Any

__all__ = ["has_persisted_result", "has_persisted_task_result", "is_unpersisted"]


def is_unpersisted(data: Any) -> bool:
    """A result that was never stored anywhere: ``{"type": "unpersisted", ...}``."""
    return isinstance(data, dict) and data.get("type") == "unpersisted"


def has_persisted_result(data: Any) -> bool:
    """Flow rules: a dict result reference that is not marked unpersisted."""
    return isinstance(data, dict) and data.get("type") != "unpersisted"


def has_persisted_task_result(data: Any) -> bool:
    """Task rules: as for flows, but an empty dict does not count.

    Prefect tests truthiness before the ``type`` key; it errors on non-dict data, which
    flowstate treats as "not persisted" instead.
    """
    return isinstance(data, dict) and bool(data) and data.get("type") != "unpersisted"

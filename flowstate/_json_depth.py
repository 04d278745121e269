"""How deeply a JSON value may be nested: what Prefect-shaped JSON can carry.

Python's ``json`` writes values nested about 990 levels deep, but pydantic serialises no deeper
than about 250 levels and reads JSON text no deeper than about 200. A value the engine accepted
must come back through ``model_dump(mode="json")`` and ``model_validate_json`` inside a run, a
state or a result, so run parameters, state data and run input are held to
:data:`MAX_JSON_DEPTH` levels, which leaves room for the objects around them.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MAX_JSON_DEPTH", "deeper_than_allowed", "too_deep_message"]

MAX_JSON_DEPTH = 128
"""The most levels of objects and arrays a value may hold (``[[1]]`` holds 2)."""


def deeper_than_allowed(value: Any) -> bool:
    """Whether ``value`` nests more than :data:`MAX_JSON_DEPTH` dicts, lists or tuples; walked
    with a stack of its own (depth first, so a cycle ends it too), never a RecursionError."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth > MAX_JSON_DEPTH:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def too_deep_message(what: str) -> str:
    return (
        f"{what} is nested more than {MAX_JSON_DEPTH} levels deep, more than Prefect-shaped "
        "JSON carries"
    )

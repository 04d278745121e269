"""Hypothesis strategies for JSON values valid against a JSON Schema (a documented subset).

Supported: ``type`` (one or a list of ``object``, ``array``, ``string``, ``integer``, ``number``,
``boolean``, ``null``), ``enum``, ``const``, ``properties`` / ``required`` /
``additionalProperties`` (false, or a schema), ``items``, ``minItems`` / ``maxItems``,
``minLength`` / ``maxLength`` / ``pattern``, ``minimum`` / ``maximum`` / ``exclusiveMinimum`` /
``exclusiveMaximum``, ``anyOf`` / ``oneOf`` (a draw from one branch), local ``$ref`` to
``#/$defs/...`` or ``#/definitions/...``, and ``allOf`` of object schemas (merged into one; a
part's ``additionalProperties`` may be true or false, not a schema). Anything else raises
``ValueError`` naming the keyword, rather than generating values the schema refuses. That
covers the schemas Prefect's pydantic run-input models produce.

Why not ``hypothesis-jsonschema``: its latest release (0.23.1) fails on every object schema with
Hypothesis 6.170 (it calls ``hypothesis.internal.conjecture.utils.many(...).more()``, which
Hypothesis no longer has), and run input is always an object.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

__all__ = ["from_schema"]

_KNOWN = frozenset(
    {
        "type", "enum", "const", "properties", "required", "additionalProperties", "items",
        "minItems", "maxItems", "minLength", "maxLength", "pattern", "minimum", "maximum",
        "exclusiveMinimum", "exclusiveMaximum", "anyOf", "oneOf", "allOf", "$ref", "$defs",
        "definitions", "title", "description", "default", "examples", "$schema", "$id",
    }
)
_SCALARS = st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(max_size=8)


def from_schema(schema: dict[str, Any], root: dict[str, Any] | None = None) -> st.SearchStrategy[Any]:
    """A strategy for values valid against ``schema`` (see the module docstring for the subset)."""
    root = schema if root is None else root
    unknown = set(schema) - _KNOWN
    if unknown:
        raise ValueError(f"run_inputs() does not support the JSON Schema keyword(s) {sorted(unknown)}")
    for keyword, build in _COMPOSITES:
        if keyword in schema:
            return build(schema, root)
    types = schema.get("type")
    if types is None and "properties" in schema:
        types = "object"
    if types is None:
        return _SCALARS
    if isinstance(types, list):
        return st.one_of([from_schema({**schema, "type": t}, root) for t in types])
    return _BY_TYPE[types](schema, root)


def _one_branch(branches: list[dict[str, Any]], root: dict[str, Any]) -> st.SearchStrategy[Any]:
    return st.one_of([from_schema(branch, root) for branch in branches])


_Builder = Callable[[dict[str, Any], dict[str, Any]], st.SearchStrategy[Any]]
_COMPOSITES: tuple[tuple[str, _Builder], ...] = (  # checked in this order, before ``type``
    ("$ref", lambda schema, root: from_schema(_resolve(schema["$ref"], root), root)),
    ("const", lambda schema, root: st.just(schema["const"])),
    ("enum", lambda schema, root: st.sampled_from(schema["enum"])),
    ("anyOf", lambda schema, root: _one_branch(schema["anyOf"], root)),
    ("oneOf", lambda schema, root: _one_branch(schema["oneOf"], root)),
    ("allOf", lambda schema, root: from_schema(_merge_all_of(schema, root), root)),
)


def _resolve(ref: str, root: dict[str, Any]) -> dict[str, Any]:
    for prefix in ("#/$defs/", "#/definitions/"):
        if ref.startswith(prefix):
            return root[prefix[2:-1]][ref[len(prefix):]]
    raise ValueError(f"run_inputs() resolves only local $refs to #/$defs/...; got {ref!r}")


def _merge_all_of(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """One object schema every value of which satisfies each part: the parts' properties and
    required names together, less what a part with ``additionalProperties: false`` refuses."""
    parts = [_resolve(part["$ref"], root) if "$ref" in part else part
             for part in [schema, *schema["allOf"]]]
    merged: dict[str, Any] = {"type": "object", "properties": {}, "required": []}
    for part in parts:
        merged["properties"].update(part.get("properties", {}))
        merged["required"] += part.get("required", [])
    for part in parts:
        _keep_out_what_it_refuses(merged, part)
    return merged


def _keep_out_what_it_refuses(merged: dict[str, Any], part: dict[str, Any]) -> None:
    """A part that allows no properties but its own keeps the others out of ``merged``
    (ValueError if one of them is required, or if the part gives its extras a schema)."""
    extras = part.get("additionalProperties", True)
    if extras is True or extras == {}:
        return
    if extras is not False:
        raise ValueError("run_inputs() does not support additionalProperties as a schema in allOf")
    declared = part.get("properties", {})
    refused = sorted(set(merged["required"]) - set(declared))
    if refused:
        raise ValueError(f"run_inputs(): allOf requires {refused}, which a part refuses")
    merged["properties"] = {k: v for k, v in merged["properties"].items() if k in declared}
    merged["additionalProperties"] = False


def _object(schema: dict[str, Any], root: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    properties = schema.get("properties", {})
    required = set(schema.get("required", []))
    missing = required - set(properties)
    if missing:
        raise ValueError(f"run_inputs(): required properties without a schema: {sorted(missing)}")
    fixed = st.fixed_dictionaries(
        {name: from_schema(sub, root) for name, sub in properties.items() if name in required},
        optional={name: from_schema(sub, root) for name, sub in properties.items() if name not in required},
    )
    extra = schema.get("additionalProperties", True)
    if extra is False:
        return fixed
    values = _SCALARS if extra is True else from_schema(extra, root)
    names = st.text("abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=6).filter(
        lambda name: name not in properties
    )
    extras = st.dictionaries(names, values, max_size=2)
    return st.builds(lambda base, more: {**more, **base}, fixed, extras)


def _array(schema: dict[str, Any], root: dict[str, Any]) -> st.SearchStrategy[list[Any]]:
    items = schema.get("items", {})
    return st.lists(
        from_schema(items, root) if items else _SCALARS,
        min_size=schema.get("minItems", 0),
        max_size=schema.get("maxItems", max(schema.get("minItems", 0), 4)),
    )


def _string(schema: dict[str, Any], root: dict[str, Any]) -> st.SearchStrategy[str]:
    low, high = schema.get("minLength", 0), schema.get("maxLength")
    if "pattern" in schema:
        strings = st.from_regex(schema["pattern"], fullmatch=False)
        return strings.filter(lambda s: len(s) >= low and (high is None or len(s) <= high))
    return st.text(min_size=low, max_size=high if high is not None else max(low, 12))


def _bounds(schema: dict[str, Any]) -> tuple[Any, Any, bool, bool]:
    """The lower and upper bounds and whether each is exclusive: the tighter of ``minimum`` and
    a numeric ``exclusiveMinimum`` (draft 6 on), or ``minimum`` made exclusive by a boolean one
    (draft 4); the same for the upper bound."""
    low, exclude_low = _bound(schema, "minimum", "exclusiveMinimum", max)
    high, exclude_high = _bound(schema, "maximum", "exclusiveMaximum", min)
    return low, high, exclude_low, exclude_high


def _bound(
    schema: dict[str, Any], inclusive: str, exclusive: str, tighter: Callable[..., Any]
) -> tuple[Any, bool]:
    value, strict = schema.get(inclusive), schema.get(exclusive)
    if isinstance(strict, bool):  # draft 4: a flag on the inclusive bound
        return value, strict and value is not None
    if not isinstance(strict, int | float):
        return value, False
    if value is None or tighter(value, strict) == strict:
        return strict, True
    return value, False


def _integer(schema: dict[str, Any], root: dict[str, Any]) -> st.SearchStrategy[int]:
    low, high, exclude_low, exclude_high = _bounds(schema)
    if low is not None:  # the least whole number the bound allows
        low = math.floor(low) + 1 if exclude_low else math.ceil(low)
    if high is not None:  # the greatest
        high = math.ceil(high) - 1 if exclude_high else math.floor(high)
    return st.integers(min_value=low, max_value=high)


def _number(schema: dict[str, Any], root: dict[str, Any]) -> st.SearchStrategy[float]:
    low, high, exclude_low, exclude_high = _bounds(schema)
    return st.floats(
        min_value=low, max_value=high, exclude_min=exclude_low, exclude_max=exclude_high,
        allow_nan=False, allow_infinity=False,
    )


_BY_TYPE: dict[str, Any] = {
    "object": _object,
    "array": _array,
    "string": _string,
    "integer": _integer,
    "number": _number,
    "boolean": lambda schema, root: st.booleans(),
    "null": lambda schema, root: st.none(),
}

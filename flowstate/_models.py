"""Building and copying pydantic models the engine made itself, without re-validating them.

``benchmarks/`` showed pydantic's own ``model_construct`` and ``model_copy`` to be a large part
of a transition (``model_construct`` resolves defaults through ``inspect`` on every call, and
``model_copy`` goes through ``copy.copy``): a full flow-run cycle spent about a third of its
Python time there. These helpers produce exactly what those calls produce — the same
``__dict__``, ``__pydantic_fields_set__``, extra and private values — for data that is already
valid: rows the store wrote, and states the engine stamped. User input is still validated at
the boundary (``State.model_validate`` and the constructors).
"""

from __future__ import annotations

from collections.abc import Mapping
from copy import deepcopy
from typing import Any, TypeVar

from pydantic import BaseModel

__all__ = ["construct", "copy_with", "own_copy", "set_fields"]

M = TypeVar("M", bound=BaseModel)
_set = object.__setattr__
_new = object.__new__
# BaseModel's slots, set through their descriptors: what object.__setattr__ ends up doing,
# without looking the name up along the class's MRO each time
set_fields_set = BaseModel.__dict__["__pydantic_fields_set__"].__set__
set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
set_private = BaseModel.__dict__["__pydantic_private__"].__set__


def construct(cls: type[M], values: dict[str, Any], fields_set: set[str] | None = None) -> M:
    """``cls.model_construct(**values)`` when ``values`` holds every field of ``cls``.

    ``fields_set``: the fields counted as given (default: all of ``values``), for a model that
    validation would build from only some of its fields, the rest being defaults.
    """
    model = _new(cls)
    _set(model, "__dict__", values)
    set_fields_set(model, set(values) if fields_set is None else fields_set)
    set_extra(model, None)
    set_private(model, None)
    return model


def copy_with(model: M, changes: Mapping[str, Any]) -> M:
    """``model.model_copy(update=changes)``: a shallow copy with ``changes`` applied."""
    copy = _new(type(model))  # (BaseModel has no __new__ of its own)
    _set(copy, "__dict__", {**model.__dict__, **changes})
    set_fields_set(copy, model.__pydantic_fields_set__ | changes.keys())
    set_extra(copy, model.__pydantic_extra__)
    set_private(copy, model.__pydantic_private__)
    return copy


def own_copy(model: M, changes: Mapping[str, Any]) -> M:
    """``copy_with(model, changes)`` that shares nothing a caller could change in place: its
    lists, dicts, sets and models (a state excepted) are copies too. It counts as set the
    fields ``model`` counts, and ``changes``."""
    copy = copy_with(model, changes)
    values = copy.__dict__  # (a dict of the copy's own)
    for name, value in values.items():
        kind = type(value)
        if kind is list or kind is dict or kind is set:
            values[name] = deepcopy(value) if value else kind()
        elif isinstance(value, BaseModel) and name != "state":
            values[name] = own_copy(value, {})
    return copy


def set_fields(model: BaseModel, changes: Mapping[str, Any]) -> None:
    """Set fields of an engine-made model in place, as pydantic's ``__setattr__`` does for a
    model that does not validate assignments: the values replaced, the fields counted as given.

    The one place outside construction where the engine writes into a model's internals."""
    model.__dict__.update(changes)
    model.__pydantic_fields_set__.update(changes)

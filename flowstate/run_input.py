"""Typed run input, shaped as Prefect's client shapes it (``prefect.input.run_input``).

A :class:`RunInput` is a pydantic model whose JSON schema a paused run stores, so that a resume is
checked against it; the same models travel between runs with
:meth:`~flowstate.Orchestrator.send_input` and :meth:`~flowstate.Orchestrator.receive_input`::

    >>> from flowstate import RunInput
    >>> class Approval(RunInput):
    ...     approved: bool
    ...     comment: str = ""
    >>> schema_text(Approval)[:60]
    '{"additionalProperties":false,"properties":{"approved":{"tit'
    >>> input_model(int).__name__          # a plain type becomes a one-field model, "value"
    'intAutomaticRunInput'
    >>> default_key_prefix(Approval)
    'approval-auto'

Schemas are stored as Prefect's client stores them (compact JSON, ``$ref`` pointing into a
``definitions`` copy of ``$defs``), and values as pydantic's compact JSON, so the same input is
accepted or refused for the same reason as in Prefect.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar, get_origin
from uuid import UUID

import pydantic
from pydantic import BaseModel, ConfigDict, PrivateAttr

from flowstate.errors import InvalidState
from flowstate.states import State, StateType

__all__ = [
    "AutomaticRunInput",
    "RunInput",
    "RunInputMetadata",
    "default_key_prefix",
    "input_model",
    "input_value",
    "keyset_from_base_key",
    "keyset_from_paused_state",
    "load_input",
    "schema_text",
]


class RunInputMetadata(BaseModel):
    """Where a received input came from: its key, its sender (or None) and the receiving run."""

    key: str
    sender: str | None
    receiver: UUID


class RunInput(BaseModel):
    """Base class of typed run input (Prefect's ``RunInput``): a pydantic model, extra fields
    forbidden. ``metadata`` tells where an input read back or received came from."""

    model_config = ConfigDict(extra="forbid")

    _description: ClassVar[str | None] = None
    _metadata: RunInputMetadata | None = PrivateAttr(default=None)

    @property
    def metadata(self) -> RunInputMetadata | None:
        """Key, sender and receiver of an input that was read back or received, else None."""
        return self._metadata

    @classmethod
    def with_initial_data(cls, description: str | None = None, **defaults: Any) -> type[RunInput]:
        """A subclass whose fields default to ``defaults``, shown with ``description``
        (Markdown) above the input form, as Prefect's method of the same name makes."""
        if description is not None and not isinstance(description, str):
            raise InvalidState(f"description must be a str, not {type(description).__name__}")
        fields: dict[str, Any] = {name: (type(value), value) for name, value in defaults.items()}
        try:
            model: type[RunInput] = pydantic.create_model(  # type: ignore[call-overload]
                cls.__name__, __base__=cls, **fields
            )
        except (pydantic.PydanticUserError, TypeError, ValueError) as exc:
            raise InvalidState(
                f"{cls.__name__}.with_initial_data({', '.join(defaults)}): {exc}"
            ) from None
        if description is not None:
            model._description = description
        return model


class AutomaticRunInput(RunInput):
    """The one-field model (``value``) a plain type such as ``int`` or ``list[str]`` becomes."""


def input_model(given: Any, what: str = "wait_for_input") -> type[RunInput]:
    """The :class:`RunInput` class for what Prefect's ``wait_for_input`` accepts: a RunInput
    subclass (itself), any pydantic model class (``<Name>RunInput``), or a plain type
    (``<type>AutomaticRunInput`` with one field, ``value``). InvalidState for anything else."""
    if isinstance(given, type) and issubclass(given, RunInput):
        return given
    if not isinstance(given, type) and get_origin(given) is None:
        raise InvalidState(
            f"{what} must be a type (a RunInput or pydantic model class, or a plain type such as "
            f"str or list[int]), not {type(given).__name__}: {given!r:.80}"
        )
    try:
        if isinstance(given, type) and issubclass(given, BaseModel):
            bases: tuple[type[BaseModel], ...] = (RunInput, given)
            made: type[RunInput] = pydantic.create_model(  # type: ignore[call-overload]
                f"{given.__name__}RunInput", __base__=bases  # type: ignore[arg-type]
            )
        else:
            name = getattr(given, "__name__", None) or "Value"
            made = pydantic.create_model(  # type: ignore[call-overload]
                f"{name}AutomaticRunInput", __base__=AutomaticRunInput, value=(given, ...)
            )
        made.model_json_schema()  # a type pydantic cannot describe fails here, not later
    except (pydantic.PydanticUserError, TypeError, ValueError) as exc:
        raise InvalidState(f"{what}={given!r:.80} cannot be used as run input: {exc}") from None
    return made


def schema_text(model: type[RunInput]) -> str:
    """The model's JSON schema as Prefect's client stores it: compact JSON, ``$ref`` into
    ``#/definitions/...``, and ``definitions`` a copy of ``$defs``."""
    schema = model.model_json_schema(by_alias=True, ref_template="#/definitions/{model}")
    if "$defs" in schema:
        schema["definitions"] = schema["$defs"]
    try:
        return json.dumps(schema, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError:  # (a default, bound or example that is NaN or infinite)
        raise InvalidState(
            f"{model.__name__}'s JSON schema holds NaN or an infinite number (a default, a "
            "bound or an example), which JSON has not: no resume could be checked against it"
        ) from None


def default_key_prefix(model: type[RunInput]) -> str:
    """The key prefix inputs of ``model`` are sent and received under by default."""
    return f"{model.__name__.lower()}-auto"


def input_value(value: Any) -> RunInput:
    """``value`` as the RunInput instance ``send_input`` stores: itself if it is one, a pydantic
    model wrapped as ``<Name>RunInput``, anything else as ``<type>AutomaticRunInput(value=...)``."""
    if isinstance(value, RunInput):
        return value
    data = value.model_dump() if isinstance(value, BaseModel) else {"value": value}
    try:
        return input_model(type(value), "value").model_validate(data)
    except pydantic.ValidationError as exc:
        raise InvalidState(f"value {value!r:.80} cannot be sent as run input: {exc}") from None


def stored_value_json(instance: RunInput) -> str:
    """The compact JSON text ``send_input`` stores for ``instance``. InvalidState if it cannot be
    stored as JSON, or holds NaN or an infinite number (pydantic would write them as null, so
    the receiver would not get what was sent)."""
    try:
        text = instance.model_dump_json()
        data = instance.model_dump()
    except ValueError as exc:  # (pydantic's serialisation errors are ValueErrors)
        raise InvalidState(f"value cannot be stored as JSON: {exc}") from None
    try:
        json.dumps(data, allow_nan=False, skipkeys=True, default=_anything)
    except ValueError:  # (only a float out of JSON's range can fail here)
        raise InvalidState(
            "value holds NaN or an infinite number, which JSON has not: cannot be sent"
        ) from None
    except RecursionError:  # (the text was made: too deep for this check only)
        pass
    return text


def _anything(value: Any) -> None:
    """json.dumps's ``default``: only numbers are looked at, so any other value will do."""


def load_input(
    model: type[RunInput], text: str, metadata: RunInputMetadata, *, with_metadata: bool = False
) -> Any:
    """The stored ``text`` read as ``model``, with ``metadata``; for an automatic input the
    plain value, unless ``with_metadata``. InvalidState if it does not validate."""
    try:
        instance = model.model_validate_json(text)
    except pydantic.ValidationError as exc:
        raise InvalidState(
            f"run input {metadata.key!r} does not validate as {model.__name__}: {exc}"
        ) from None
    instance._metadata = metadata
    if isinstance(instance, AutomaticRunInput) and not with_metadata:
        return instance.value  # type: ignore[attr-defined]
    return instance


def keyset_from_base_key(base_key: str) -> dict[str, str]:
    """The run-input keys of a pause: ``{base}-description``, ``-response`` and ``-schema``.

    >>> keyset_from_base_key("paused-1")["schema"]
    'paused-1-schema'
    """
    return {part: f"{base_key}-{part}" for part in ("description", "response", "schema")}


def keyset_from_paused_state(state: State) -> dict[str, str]:
    """The keyset of a PAUSED state: base key ``{state name, lower case}-{pause key}``."""
    if state.type is not StateType.PAUSED:
        raise InvalidState(f"a {state.type.value} state has no run-input keyset")
    name = state.name or StateType.PAUSED.default_name
    return keyset_from_base_key(f"{name.lower()}-{state.state_details.pause_key}")

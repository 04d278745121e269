"""The pure half of Prefect's resume endpoint: hydrating run input and checking it against a schema.

``jsonschema`` is imported inside :func:`validate_run_input`, so that importing flowstate stays cheap.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flowstate._json_depth import deeper_than_allowed, too_deep_message
from flowstate.results import AbortDetails, OrchestrationResult, SetStateStatus
from flowstate.states import State, StateDetails, StateType, plain_state

__all__ = [
    "NOT_PAUSED",
    "HydrationError",
    "ResumePlan",
    "check_run_input",
    "hydrate",
    "loads_json",
    "plan_resume",
    "schema_problem",
    "validate_run_input",
]

_KIND = "__prefect_kind"
_REMOVE = object()


class HydrationError(ValueError):
    """A ``__prefect_kind`` placeholder in run input could not be resolved."""


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (JSON has no NaN or infinite numbers)")


def loads_json(text: str | bytes) -> Any:
    """``json.loads`` that refuses ``NaN``, ``Infinity`` and ``-Infinity`` (Python's own reader
    takes them, JSON has no such numbers); a ValueError for anything that is not JSON."""
    return json.loads(text, parse_constant=_no_constant)


def _hydrate_placeholder(value: dict[str, Any]) -> Any:
    kind = value[_KIND]
    if kind == "json":
        if "value" not in value:
            return _REMOVE
        raw = value["value"]
        if not isinstance(raw, str):
            return raw
        try:
            return loads_json(raw)
        except ValueError as exc:  # (a JSONDecodeError, or NaN / Infinity)
            raise HydrationError(f"Invalid JSON: {exc}") from exc
        except RecursionError:
            raise HydrationError("Invalid JSON: nested too deeply to read") from None
    if kind == "workspace_variable":
        name = value.get("variable_name")
        raise HydrationError(
            f"Variable '{name}' not found in workspace: flowstate has no workspace variables "
            "(a Prefect server feature); put the value itself in the run input"
        )
    if kind == "jinja":
        raise HydrationError("Invalid jinja: flowstate does not render Jinja templates")
    if "value" not in value:
        raise HydrationError("Missing 'value' key in __prefect object")
    return hydrate(value["value"])


def hydrate(value: Any) -> Any:
    """Replace every ``{"__prefect_kind": ...}`` placeholder in ``value`` by what it stands for."""
    if isinstance(value, dict):
        if _KIND in value:
            return _hydrate_placeholder(value)
        return {
            key: hydrated
            for key, item in value.items()
            if (hydrated := hydrate(item)) is not _REMOVE
        }
    if isinstance(value, list):
        return [item for item in map(hydrate, value) if item is not _REMOVE]
    return value


def validate_run_input(instance: Any, schema: Any) -> str | None:
    """None if ``instance`` satisfies the JSON schema, else Prefect's description of the failure."""
    import jsonschema  # type: ignore[import-untyped]
    from jsonschema.exceptions import best_match  # type: ignore[import-untyped]

    try:
        validator_class = jsonschema.validators.validator_for(
            schema, default=jsonschema.Draft202012Validator
        )
        validator_class.check_schema(schema)
        error = best_match(validator_class(schema).iter_errors(instance))
    except RecursionError:
        return "Invalid schema: Unable to validate schema with circular references."
    except jsonschema.SchemaError as exc:
        return f"Invalid schema: {exc.message}"
    except jsonschema.exceptions.RefResolutionError as exc:  # pragma: no cover - old refs
        return f"Invalid schema: {exc}"
    if error is None:
        return None
    if error.path:
        field = ".".join(str(part) for part in error.path)
        return f"Reason: Validation failed for field '{field}'. Failure reason: {error.message}"
    return f"Reason: Validation failed. Failure reason: {error.message}"


def schema_problem(schema: Any) -> str | None:
    """None if ``schema`` is a JSON object that is valid JSON Schema, else what is wrong
    (``Invalid schema: ...``, as a resume against it reports)."""
    if not isinstance(schema, dict):
        return f"Invalid schema: {_json_text(schema)} is not of type 'object'"
    import jsonschema
    from jsonschema.exceptions import SchemaError  # type: ignore[import-untyped]

    try:
        validator_class = jsonschema.validators.validator_for(
            schema, default=jsonschema.Draft202012Validator
        )
        validator_class.check_schema(schema)
        return _reference_problem(schema, validator_class)
    except RecursionError:
        return _CIRCULAR
    except SchemaError as exc:
        return f"Invalid schema: {exc.message}"


_CIRCULAR = "Invalid schema: Unable to validate schema with circular references."
_PROBES: tuple[Any, ...] = (None, {}, [], "", 0)
"""Inputs a schema is tried on: one that refers back to itself without going into the input
loops on every one of them."""
_UNWALKED = frozenset({"$defs", "definitions"})
"""Where the walk of references does not go by itself: a definition counts once referred to."""


def _reference_problem(schema: dict[str, Any], validator_class: Any) -> str | None:
    """``Invalid schema: ...`` if a ``$ref`` reached from the root cannot be resolved, or the
    schema refers back to itself without going into the input: a resume would then fail on
    every input. None otherwise. (RecursionError: nested too deeply to check.)"""
    from referencing import Registry
    from referencing.exceptions import Unresolvable
    from referencing.jsonschema import DRAFT202012, specification_with

    dialect = schema.get("$schema")
    specification = (
        specification_with(dialect, default=DRAFT202012) if isinstance(dialect, str) else DRAFT202012
    )
    root = specification.create_resource(schema)
    resolver = Registry().with_resource(root.id() or "", root).resolver(base_uri=root.id() or "")
    try:
        _resolve_references(resolver, schema, specification, set())
    except Unresolvable as exc:
        return f"Invalid schema: {type(exc).__name__}: {exc}"
    validator = validator_class(schema)
    try:
        for probe in _PROBES:
            validator.is_valid(probe)  # (RecursionError: circular)
    except Unresolvable as exc:  # (a reference the walk did not meet; jsonschema's text)
        return f"Invalid schema: {exc}"
    return None


def _resolve_references(resolver: Any, contents: Any, specification: Any, seen: set[str]) -> None:
    """Look up every ``$ref`` in ``contents`` and in what they lead to (each reference text
    once); Unresolvable for the first that leads nowhere."""
    if not isinstance(contents, dict):
        return
    for keyword in ("$ref", "$dynamicRef"):
        reference = contents.get(keyword)
        if isinstance(reference, str) and reference not in seen:
            seen.add(reference)
            resolved = resolver.lookup(reference)
            _resolve_references(resolved.resolver, resolved.contents, specification, seen)
    walked = specification.create_resource(
        {key: value for key, value in contents.items() if key not in _UNWALKED}
    )
    for part in walked.subresources():
        _resolve_references(resolver.in_subresource(part), part.contents, specification, seen)


def check_run_input(run_input: dict[str, Any], schema_text: str | None) -> tuple[Any, str | None]:
    """Hydrate ``run_input`` and validate it against the stored schema text.

    A schema that is not a JSON object, or not valid JSON Schema, refuses every input with a
    reason that starts ``Invalid schema:``. Returns the hydrated input and None, or None and the reason the resume endpoint reports.
    """
    try:
        hydrated = hydrate(run_input)
    except HydrationError as exc:
        return None, f"Error hydrating run input: {exc}"
    if deeper_than_allowed(hydrated):
        return None, f"Error hydrating run input: {too_deep_message('the hydrated input')}"
    if schema_text is None:
        return None, "Run input schema not found."
    try:
        schema = loads_json(schema_text)
    except (ValueError, TypeError, RecursionError):
        return None, "Run input schema is not valid JSON."
    if not isinstance(schema, dict):  # (Prefect's server fails on these, changing nothing)
        return None, schema_problem(schema)
    problem = validate_run_input(hydrated, schema)
    if problem is not None:
        return None, problem
    return hydrated, None


def _json_text(value: Any) -> str:
    """``value`` as short JSON text, for a message."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."


NOT_PAUSED = "Cannot resume a flow run that is not paused."
_RESUME = plain_state(StateType.RUNNING)
"""A blocking pause's resume proposal, State(type=RUNNING): one for every resume, as the
context stamps a copy of it (an id and a time of its own) and nothing changes it."""


@dataclass(frozen=True, slots=True)
class ResumePlan:
    """What a resume does, decided before the flow policy sees the proposal.

    ``answer`` is set when the resume stops early (not paused: ABORT with no state; bad input:
    REJECT with abort details and the paused state). Otherwise ``proposal`` goes through the flow
    policy, and on ACCEPT ``response`` (compact JSON) is stored under ``response_key``.
    """

    answer: OrchestrationResult | None = None
    proposal: State | None = None
    response_key: str | None = None
    response: str | None = None


def plan_resume(
    paused: State | None,
    run_input: dict[str, Any] | None,
    read_input: Callable[[str], str | None],
    now: datetime,
) -> ResumePlan:
    """Plan Prefect's ``/resume`` for a run whose current state is ``paused``.

    ``read_input(key)`` returns the run's stored input under ``key`` (the schema), or None.
    """
    if paused is None or paused.type is not StateType.PAUSED:
        return ResumePlan(
            answer=OrchestrationResult(
                state=None, status=SetStateStatus.ABORT, details=AbortDetails(reason=NOT_PAUSED)
            )
        )
    details = paused.state_details
    keyset = details.run_input_keyset
    response_key = response = None
    if keyset:
        hydrated, problem = check_run_input(run_input or {}, read_input(keyset.get("schema", "")))
        if problem is not None:
            return ResumePlan(
                answer=OrchestrationResult(
                    state=paused, status=SetStateStatus.REJECT, details=AbortDetails(reason=problem)
                )
            )
        if hydrated:
            response_key = keyset.get("response", "")
            response = json.dumps(hydrated, separators=(",", ":"), ensure_ascii=False)
    if details.pause_reschedule:
        proposal = State(
            type=StateType.SCHEDULED, name="Resuming", state_details=StateDetails(scheduled_time=now)
        )
    else:
        proposal = _RESUME
    return ResumePlan(proposal=proposal, response_key=response_key, response=response)

"""``flowstate runs input``, and the prompts ``flowstate resume`` shows on a terminal when the
pause waits for input.

Prompts go to stderr, so ``--json`` output on stdout stays clean.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from flowstate.cli._common import (
    DASH,
    echo_json,
    fail,
    json_and_database,
    open_orchestrator,
    read_flow_run,
)

if TYPE_CHECKING:
    from uuid import UUID

    from flowstate import Orchestrator
    from flowstate.runs import FlowRun
    from flowstate.states import State

__all__ = ["pending_input", "prompt_for_input", "run_inputs"]

_YES = frozenset({"y", "yes", "true", "t", "1"})
_NO = frozenset({"n", "no", "false", "f", "0"})


@click.command("input")
@click.argument("run_id", metavar="ID")
@json_and_database
def run_inputs(run_id: str, as_json: bool) -> None:
    """The input of each pause of the flow run ID that waited for input: the schema it
    waits for, its description and the response it was resumed with."""
    with open_orchestrator() as orc:
        run = read_flow_run(orc, run_id)
        pauses = _pauses_with_input(orc, run)
    if as_json:
        echo_json(pauses)
        return
    if not pauses:
        click.echo(f"flow run {run.id} ({run.name}) has not paused for input")
        return
    for pause in pauses:
        click.echo(f"pause {pause['pause_key']} ({pause['state_name']}, {pause['status']})")
        rows = {
            "description": pause["description"],
            "schema": None if pause["schema"] is None else _fields_summary(pause["schema"]),
            "response": None if pause["response"] is None else _compact(pause["response"]),
        }
        for field, value in rows.items():
            click.echo(f"  {field:<11}  {DASH if value is None else value}")


def _pauses_with_input(orc: Orchestrator, run: FlowRun) -> list[dict[str, Any]]:
    """Each pause of the run with a run-input keyset, oldest first, with what is stored."""
    history = orc.read_flow_run_states(run.id)
    found = []
    for index, state in enumerate(history):
        keyset = state.state_details.run_input_keyset
        if state.type.value != "PAUSED" or not keyset:
            continue
        found.append(
            {
                "pause_key": state.state_details.pause_key,
                "state_name": state.name,
                "status": _pause_status(history, index),
                "keyset": keyset,
                **{part: _stored(orc, run.id, keyset.get(part))
                   for part in ("schema", "description", "response")},
            }
        )
    return found


def _pause_status(history: list[State], index: int) -> str:
    if index + 1 == len(history):
        return "waiting"
    after = history[index + 1]
    if after.type.value in ("RUNNING", "SCHEDULED", "PENDING"):
        return "resumed"
    return f"ended {after.type.value}"


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _fields_summary(schema: Any) -> str:
    """``approved: boolean (required), comment: string = ""`` for an object schema."""
    if not isinstance(schema, dict) or not isinstance(schema.get("properties"), dict):
        return _compact(schema)
    required = set(schema.get("required") or [])
    parts = []
    for name, field in schema["properties"].items():
        field = _resolved(field, schema)
        text = f"{name}: {_type_label(field)}"
        if name in required:
            text += " (required)"
        elif "default" in field:
            text += f" = {_compact(field['default'])}"
        parts.append(text)
    return ", ".join(parts) or "(no fields)"


# -- prompting --------------------------------------------------------------------------------------


def pending_input(orc: Orchestrator, run: FlowRun) -> tuple[dict[str, Any], str | None] | None:
    """The object schema (and description) the run's current pause waits for, else None."""
    state = run.state
    keyset = None if state is None else state.state_details.run_input_keyset
    if state is None or state.type.value != "PAUSED" or not keyset or "schema" not in keyset:
        return None
    from flowstate.orchestration.resume import schema_problem

    schema = _stored(orc, run.id, keyset["schema"])
    if not isinstance(schema, dict) or not isinstance(schema.get("properties"), dict):
        return None  # the resume reports what is wrong with it
    if schema_problem(schema) is not None:
        return None  # (same: a field that is not a schema cannot be asked for)
    description = _stored(orc, run.id, keyset.get("description"))
    return schema, description if isinstance(description, str) else None


def _stored(orc: Orchestrator, run_id: UUID, key: str | None) -> Any:
    """The JSON value stored under ``key`` (its text when it is not JSON); None when there is
    none."""
    from flowstate import ObjectNotFound
    from flowstate.orchestration.resume import loads_json

    if key is None:
        return None
    try:
        text = orc.read_flow_run_input(run_id, key)
    except ObjectNotFound:
        return None
    try:
        return loads_json(text)
    except (ValueError, RecursionError):  # (not JSON, or NaN / Infinity)
        return text


def prompt_for_input(schema: dict[str, Any], description: str | None) -> dict[str, Any]:
    """Ask for each field of an object schema on the terminal; a value the field's schema
    refuses is asked for again. Returns the input object."""
    from flowstate.orchestration.resume import validate_run_input

    if description:
        click.echo(description, err=True)
    required = set(schema.get("required") or [])
    shared = {key: schema[key] for key in ("$defs", "definitions") if key in schema}
    answers: dict[str, Any] = {}
    for name, given in schema["properties"].items():
        field = _resolved(given, schema)
        label = _field_label(name, field)
        while True:
            text = _ask(label, field, required=name in required)
            if text is None:
                break
            value = _parse(text, field)
            checked = {**shared, **given} if isinstance(given, dict) else given  # (or a bool)
            problem = validate_run_input(value, checked)
            if problem is None:
                answers[name] = value
                break
            click.echo(f"  not accepted: {problem.rsplit('Failure reason: ', 1)[-1]}", err=True)
    return answers


def _field_label(name: str, field: dict[str, Any]) -> str:
    """``Title (name: type) — description``, what the prompt shows for one field."""
    label = f"{field.get('title', name)} ({name}: {_type_label(field)})"
    if field.get("description"):
        label += f" — {field['description']}"
    return label


def _ask(label: str, field: dict[str, Any], *, required: bool) -> str | None:
    """One answer typed for a field; None when an optional field without default is left out."""
    if "default" in field:
        return str(click.prompt(label, default=_as_text(field["default"]), err=True))
    if required:
        return str(click.prompt(label, err=True))
    answer = click.prompt(f"{label} (Enter: leave out)", default="", show_default=False, err=True)
    return str(answer) or None


def _resolved(field: Any, schema: dict[str, Any]) -> dict[str, Any]:
    """The field's schema, following a local ``$ref`` (``#/definitions/X``, ``#/$defs/X``)."""
    if not isinstance(field, dict):
        return {}
    reference = field.get("$ref")
    if isinstance(reference, str) and reference.startswith("#/"):
        target: Any = schema
        for part in reference[2:].split("/"):
            target = target.get(part) if isinstance(target, dict) else None
        if isinstance(target, dict):
            return {**target, **{k: v for k, v in field.items() if k != "$ref"}}
    return field


def _types(field: dict[str, Any]) -> list[str]:
    kind = field.get("type")
    if isinstance(kind, str):
        return [kind]
    if isinstance(kind, list):
        return [k for k in kind if isinstance(k, str)]
    found: list[str] = []
    for option in field.get("anyOf") or field.get("oneOf") or []:
        if isinstance(option, dict):
            found += _types(option)
    return found


def _type_label(field: dict[str, Any]) -> str:
    if isinstance(field.get("enum"), list):
        return "one of " + ", ".join(_as_text(choice) for choice in field["enum"])
    kinds = _types(field)
    if kinds == ["array"] and isinstance(field.get("items"), dict):
        return f"array of {_type_label(field['items'])}"
    return " or ".join(kinds) or "JSON"


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else _compact(value)


def _parse(text: str, field: dict[str, Any]) -> Any:
    """The typed value: text as is for a string field, yes/no for a boolean, else JSON."""
    kinds = _types(field)
    if "string" in kinds and not (text == "null" and "null" in kinds):
        return text
    if kinds == ["boolean"] and text.strip().lower() in _YES | _NO:
        return text.strip().lower() in _YES
    from flowstate.orchestration.resume import loads_json

    try:
        return loads_json(text)
    except (ValueError, RecursionError):  # (not JSON, or NaN / Infinity)
        return text  # the schema check says what is wrong with it


def json_object(text: str, source: str, what: str) -> dict[str, Any]:
    """JSON text, or ``@path`` to a JSON file, that must hold an object (``--input``, ``--schema``)."""
    from pathlib import Path

    if text.startswith("@"):
        path = Path(text[1:])
        source = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else None
            raise fail(f"cannot read {what} file {path}: {reason or exc}") from None
    from flowstate.orchestration.resume import loads_json

    try:
        value = loads_json(text)
    except ValueError as exc:  # (a JSONDecodeError, or NaN / Infinity)
        raise fail(f"{source} is not valid JSON: {exc}") from None
    except RecursionError:
        raise fail(f"{source} is nested too deeply to read (more than Python's recursion limit)") from None
    if not isinstance(value, dict):
        raise fail(f"{source} must be a JSON object, not {_json_kind(value)}")
    return value


def _json_kind(value: Any) -> str:
    """What a parsed JSON value is, in JSON's words: ``an array``, ``null``, ``a string``..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "a string" if isinstance(value, str) else "an array"

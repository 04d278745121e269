"""Text a database stores: a lone surrogate (such as '\\ud800') is not Unicode text, and
neither SQLite nor PostgreSQL can hold it. Checked where text enters the engine: the calls'
arguments and the states a user rule substitutes."""

from __future__ import annotations

from typing import Any

from flowstate.errors import InvalidState
from flowstate.states import State

__all__ = ["all_ascii", "check_state_text", "check_text"]


def check_text(value: Any, what: str) -> None:
    """Refuse text SQLite cannot store: a lone surrogate such as '\\ud800' is not UTF-8."""
    if isinstance(value, str) and not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidState(
                f"{what} {value!r:.80} holds a lone surrogate at position {exc.start}, which is "
                "not valid Unicode text; pass well-formed text"
            ) from None


def all_ascii(state: State) -> bool:
    """Whether no text of ``state`` needs checking (the common case, decided in one pass)."""
    fields = state.__dict__  # (one dict, instead of pydantic's attribute hook per field)
    name, message = fields["name"], fields["message"]
    if (isinstance(name, str) and not name.isascii()) or (
        isinstance(message, str) and not message.isascii()
    ):
        return False
    details = fields["state_details"]
    values = details.__dict__
    for field in details.__pydantic_fields_set__:  # the others hold their defaults: no text
        value = values[field]
        if isinstance(value, str):
            if not value.isascii():
                return False
        elif isinstance(value, dict):
            return False
    return True


def check_state_text(state: State) -> None:
    """Refuse a state's text SQLite cannot store (for a state :func:`all_ascii` is not)."""
    check_text(state.name, "state.name")
    check_text(state.message, "state.message")
    for field, value in state.state_details.__dict__.items():  # its fields (extra="forbid")
        if isinstance(value, str):
            check_text(value, f"state.state_details.{field}")
        elif isinstance(value, dict):
            for key, item in value.items():
                check_text(key, f"a key of state.state_details.{field}")
                check_text(item, f"state.state_details.{field}[{key!r}]")

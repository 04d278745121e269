"""NUL-safe text: PostgreSQL's ``text`` cannot hold U+0000, SQLite's can, and flowstate stores
whatever text the user gives on both.

The store's connection dumps every ``str`` with :class:`NulSafeStrDumper` and loads every
``text`` value with :class:`NulSafeTextLoader`. The encoding is the identity for text with
neither U+0000 nor the escape character U+FFFE (a noncharacter) — that is, for nearly all text,
which SQL users therefore see as it is. Otherwise U+FFFE is written twice and U+0000 as U+FFFE
followed by ``0``. Equal texts stay equal once encoded, so lookups by key are unaffected
(flowstate never sorts by user text).
"""

from __future__ import annotations

import re
from typing import Any

from psycopg import adapt, pq

__all__ = ["ESCAPE", "decode", "encode", "register"]

ESCAPE = "\ufffe"
_ESCAPED = re.compile("\ufffe([\ufffe0])")


def encode(text: str) -> str:
    """``text`` as stored: U+FFFE doubled, then U+0000 as U+FFFE ``0``."""
    if "\x00" in text or ESCAPE in text:
        return text.replace(ESCAPE, ESCAPE + ESCAPE).replace("\x00", ESCAPE + "0")
    return text


def _unescape(match: re.Match[str]) -> str:
    return "\x00" if match.group(1) == "0" else ESCAPE


def decode(stored: str) -> str:
    """The text :func:`encode` was given."""
    if ESCAPE in stored:
        return _ESCAPED.sub(_unescape, stored)
    return stored


class NulSafeStrDumper(adapt.Dumper):
    """Dumps ``str`` as UTF-8 text of unknown type (as psycopg's default does), encoded."""

    oid = 0  # "unknown": the server infers the type from the context, as for psycopg's default

    def dump(self, obj: str) -> bytes:
        return encode(obj).encode("utf-8")


class NulSafeTextLoader(adapt.Loader):
    """Loads ``text`` columns (UTF-8, text format), decoded."""

    format = pq.Format.TEXT

    def load(self, data: Any) -> str:
        return decode(bytes(data).decode("utf-8"))


def register(conn: Any) -> None:
    """Use the NUL-safe adapters on ``conn`` (whose client encoding must be UTF8)."""
    conn.adapters.register_dumper(str, NulSafeStrDumper)
    conn.adapters.register_loader("text", NulSafeTextLoader)

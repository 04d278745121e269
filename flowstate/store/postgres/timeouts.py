"""The PostgreSQL call timeout: the ``call_timeout`` option, or the URL parameter of that name.

libpq knows no ``call_timeout`` parameter, so :func:`split_call_timeout` takes it out of the
URL before the URL reaches libpq. Imports nothing heavy (the orchestrator checks the option on
every open, whatever the backend).
"""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import unquote

from flowstate.errors import InvalidState

__all__ = [
    "DEFAULT_CALL_TIMEOUT",
    "MAX_CALL_TIMEOUT",
    "check_call_timeout",
    "longest_lock_wait",
    "split_call_timeout",
]

DEFAULT_CALL_TIMEOUT = 30.0
"""Seconds a call may wait for the server's answer when neither the option nor the URL say."""

MAX_CALL_TIMEOUT = 86_400.0
"""One day: the longest call timeout accepted."""

URL_PARAMETER = "call_timeout"


def check_call_timeout(value: Any, where: str = "call_timeout") -> float:
    """``value`` as seconds (> 0, at most a day), or InvalidState naming ``where``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 < value <= MAX_CALL_TIMEOUT
    ):
        raise InvalidState(
            f"{where}={value!r}; expected seconds > 0 and at most {MAX_CALL_TIMEOUT:g}"
        )
    return float(value)


def longest_lock_wait(call_timeout: float) -> float:
    """The longest ``lock_timeout`` under ``call_timeout``: a second less (a tenth less for
    short ones), so that a long wait for another connection's lock ends as ``DatabaseBusy``
    from the server before the call timeout cuts the connection.

    >>> longest_lock_wait(30.0), longest_lock_wait(2.0)
    (29.0, 1.8)
    """
    return call_timeout - min(1.0, call_timeout / 10)


def split_call_timeout(url: str) -> tuple[str, float | None]:
    """``url`` without its ``call_timeout`` query parameter, and that parameter's seconds
    (None if the URL has none).

    >>> split_call_timeout("postgresql://ann@db/flows?sslmode=require&call_timeout=5")
    ('postgresql://ann@db/flows?sslmode=require', 5.0)
    >>> split_call_timeout("postgresql://ann@db/flows")
    ('postgresql://ann@db/flows', None)
    """
    base, mark, query = url.partition("?")
    if not mark:
        return url, None
    query, hash_mark, fragment = query.partition("#")
    kept: list[str] = []
    found: float | None = None
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        if unquote(key) != URL_PARAMETER:
            kept.append(pair)
            continue
        text = unquote(value)
        try:
            seconds = float(text)
        except ValueError:
            raise InvalidState(
                f"the URL's {URL_PARAMETER}={text!r} is not a number of seconds"
            ) from None
        found = check_call_timeout(seconds, f"the URL's {URL_PARAMETER}")
    if found is None:
        return url, None
    rest = "&".join(pair for pair in kept if pair)
    return base + ("?" + rest if rest else "") + hash_mark + fragment, found

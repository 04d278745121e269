"""UUIDv7 generation (time-ordered ids), as Prefect gives states; Python 3.11 has no uuid.uuid7."""

from __future__ import annotations

import os
import struct
import time
import uuid
from collections.abc import Iterator

_last_ms = 0
_counter = 0
_high = 0
"""The id's upper 64 bits, shifted into place: ``_last_ms``, the version and ``_counter``."""
_random_words: Iterator[int] = iter(())
_time_ns = time.time_ns
_VARIANT = 0b10 << 62
_RANDOM_BITS = (1 << 62) - 1
_ONE_MORE = 1 << 64  # the counter's unit in the id's integer


def _refill() -> None:
    """Random bits for the next 512 ids, from the OS in one read, each already holding the
    variant bits. ``next()`` on the iterator is one step under the GIL, so two threads never
    take the same word; a forked child starts with fresh ones (the parent's would repeat)."""
    global _random_words
    words = struct.unpack(">512Q", os.urandom(8 * 512))
    _random_words = map(_VARIANT.__or__, map(_RANDOM_BITS.__and__, words))


os.register_at_fork(after_in_child=_refill)


def uuid7() -> uuid.UUID:
    """A version-7 UUID: 48 bits of Unix milliseconds, then a counter and random bits.

    Ids made in the same millisecond by this process still sort in creation order (a 12-bit
    counter fills ``rand_a``), which keeps state history ordering stable.
    """
    global _last_ms, _counter, _high
    ms = _time_ns() // 1_000_000
    if ms > _last_ms:
        _last_ms = ms
        _counter = 0
        _high = ((ms << 16) | 0x7000) << 64
    elif _counter < 0xFFF:
        _counter += 1
        _high += _ONE_MORE
    else:  # counter overflow: borrow the next millisecond
        _last_ms += 1
        _counter = 0
        _high = ((_last_ms << 16) | 0x7000) << 64
    try:
        low = next(_random_words)
    except StopIteration:
        _refill()
        low = next(_random_words)
    return uuid.UUID(int=_high | low)

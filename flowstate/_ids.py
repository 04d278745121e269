"""UUIDv7 generation (time-ordered ids), as Prefect gives states; Python 3.11 has no uuid.uuid7.
Also ``uuid_text``: the text of a UUID, as ``str()`` gives it, in less time."""

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
    # uuid.UUID(int=...) without its argument checks (the value is in range by construction):
    # the same two slots set, in a fifth of the time
    made = _new(_UUID)
    _set_int(made, _high | low)
    _set_safety(made, _UNKNOWN)
    return made


_UUID = uuid.UUID
_UNKNOWN = uuid.SafeUUID.unknown
_new = object.__new__
# UUID's slots, set through their descriptors (what object.__setattr__ ends up calling)
_set_int = _UUID.__dict__["int"].__set__
_set_safety = _UUID.__dict__["is_safe"].__set__


def uuid_text(value: uuid.UUID) -> str:
    """``str(value)`` of a plain ``uuid.UUID`` (``UUID.__str__`` is Python code in 3.11)."""
    hex_digits = value.int.to_bytes(16, "big").hex()
    return (
        f"{hex_digits[:8]}-{hex_digits[8:12]}-{hex_digits[12:16]}-"
        f"{hex_digits[16:20]}-{hex_digits[20:]}"
    )

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
_random_words: Iterator[tuple[int]] = iter(())


def _refill() -> None:
    """Random bits for the next 512 ids, from the OS in one read. ``next()`` on the iterator is
    one step under the GIL, so two threads never take the same word; a forked child starts
    with fresh ones (the parent's would repeat)."""
    global _random_words
    _random_words = struct.iter_unpack(">Q", os.urandom(8 * 512))


os.register_at_fork(after_in_child=_refill)


def uuid7() -> uuid.UUID:
    """A version-7 UUID: 48 bits of Unix milliseconds, then a counter and random bits.

    Ids made in the same millisecond by this process still sort in creation order (a 12-bit
    counter fills ``rand_a``), which keeps state history ordering stable.
    """
    global _last_ms, _counter
    ms = time.time_ns() // 1_000_000
    if ms <= _last_ms:
        _counter += 1
        if _counter > 0xFFF:  # counter overflow: borrow the next millisecond
            _last_ms += 1
            _counter = 0
        ms = _last_ms
    else:
        _last_ms = ms
        _counter = 0
    while True:
        try:
            rand_b = next(_random_words)[0] & 0x3FFF_FFFF_FFFF_FFFF
            break
        except StopIteration:
            _refill()
    value = (ms << 80) | (0x7 << 76) | (_counter << 64) | (0b10 << 62) | rand_b
    # uuid.UUID(int=value) without its argument checks (value is in range by construction):
    # the same two slots set, in a fifth of the time
    made = _new(_UUID)
    _set_int(made, value)
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

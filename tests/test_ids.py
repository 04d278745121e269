"""flowstate's UUIDv7 ids: real ``uuid.UUID`` values, version 7, time-ordered."""

from __future__ import annotations

import pickle
import uuid

import pytest

from flowstate._ids import uuid7


def test_ids_are_plain_version_7_uuids_equal_to_their_parsed_text() -> None:
    made = uuid7()
    assert type(made) is uuid.UUID
    assert made.version == 7 and made.variant == uuid.RFC_4122
    assert made.is_safe is uuid.SafeUUID.unknown
    again = uuid.UUID(str(made))
    assert again == made and hash(again) == hash(made) and again.int == made.int
    assert pickle.loads(pickle.dumps(made)) == made


def test_ids_made_in_a_row_sort_in_creation_order_and_are_unique() -> None:
    ids = [uuid7() for _ in range(5000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


_RANDOM_BITS = (1 << 62) - 1


def test_a_forked_child_draws_other_random_bits_than_its_parent() -> None:
    """The random bits come from a buffer read from the OS: a child must not reuse its
    parent's (same millisecond, same counter, same bits would be the same id)."""
    import os

    uuid7()  # the parent's buffer is filled and partly used
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next random bits, then leave at once
        os.write(write_end, str(uuid7().int & _RANDOM_BITS).encode())
        os._exit(0)
    os.close(write_end)
    mine = uuid7().int & _RANDOM_BITS
    os.waitpid(pid, 0)
    child = int(os.read(read_end, 64).decode())
    os.close(read_end)
    assert child != mine


def test_ids_stay_unique_across_many_buffer_refills() -> None:
    ids = {uuid7().int & _RANDOM_BITS for _ in range(20_000)}  # about 40 buffers of bits
    assert len(ids) == 20_000

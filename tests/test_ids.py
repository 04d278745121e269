"""flowstate's UUIDv7 ids: real ``uuid.UUID`` values, version 7, time-ordered."""

from __future__ import annotations

import pickle
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowstate._ids import uuid7, uuid_from_text, uuid_text


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


@settings(max_examples=1000)
@given(st.uuids() | st.integers(0, 2**128 - 1).map(lambda number: uuid.UUID(int=number)))
def test_uuid_text_is_str(value: uuid.UUID) -> None:
    assert uuid_text(value) == str(value)


@settings(max_examples=1000)
@given(st.uuids() | st.integers(0, 2**128 - 1).map(lambda number: uuid.UUID(int=number)))
def test_uuid_from_text_is_uuid(value: uuid.UUID) -> None:
    for text in (str(value), str(value).upper(), value.hex, value.urn, f"{{{value}}}"):
        made = uuid_from_text(text)
        assert type(made) is uuid.UUID and made == value and hash(made) == hash(value)
        assert (made.is_safe, pickle.loads(pickle.dumps(made))) == (uuid.SafeUUID.unknown, value)


@pytest.mark.parametrize("text", ["", "not-a-uuid", "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz"])
def test_uuid_from_text_refuses_what_uuid_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        uuid.UUID(text)
    with pytest.raises(ValueError):
        uuid_from_text(text)


@pytest.mark.parametrize(
    "value",
    [
        uuid.UUID(int=0),
        uuid.UUID(int=1),
        uuid.UUID(int=2**128 - 1),
        uuid.UUID(int=2**127),
        uuid.UUID("0123abcd-ef01-7abc-8def-0123456789ab"),
        uuid.UUID("{0123ABCD-EF01-7ABC-8DEF-0123456789AB}"),
        uuid7(),
    ],
    ids=str,
)
def test_uuid_text_edge_cases(value: uuid.UUID) -> None:
    assert uuid_text(value) == str(value)

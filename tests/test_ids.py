"""flowstate's UUIDv7 ids: real ``uuid.UUID`` values, version 7, time-ordered."""

from __future__ import annotations

import pickle
import uuid

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

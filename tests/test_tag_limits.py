"""Tag limits (Prefect's V1 view of the global limit ``tag:<tag>``) and task run tags: the calls
and their bad input, on both backends.

Where Prefect 3.9.1 was recorded (``prefect-3.9.1-concurrency.jsonl``, category
``task-tag-limit-api``), a test names the vector it follows.
"""

from __future__ import annotations

from uuid import uuid4

import pytest

from flowstate import (
    ConcurrencyLimit,
    FlowstateError,
    InvalidState,
    ObjectNotFound,
    Orchestrator,
)


@pytest.fixture
def orc(memory_database):
    with Orchestrator(memory_database) as made:
        yield made


def test_a_tag_limit_is_the_global_limit_named_after_the_tag(orc) -> None:
    made = orc.create_concurrency_limit("warehouse", 2)
    assert isinstance(made, ConcurrencyLimit)
    assert (made.tag, made.concurrency_limit, made.active_slots) == ("warehouse", 2, [])
    same = orc.read_global_concurrency_limit("tag:warehouse")
    assert (same.id, same.limit, same.active) == (made.id, 2, True)
    orc.update_global_concurrency_limit("tag:warehouse", limit=5)
    assert orc.read_concurrency_limit("warehouse").concurrency_limit == 5
    assert [limit.tag for limit in orc.read_concurrency_limits()] == ["warehouse"]


def test_creating_it_again_changes_the_limit_and_keeps_the_holders(orc) -> None:
    """Vector task-tag-api-upsert: an upsert keeps the holders."""
    orc.create_concurrency_limit("a", 1)
    holder = orc.create_task_run(tags=["a"])
    lease = orc.increment_concurrency_slots_with_lease(
        "tag:a", 1, holder={"type": "task_run", "id": holder.id}
    )
    again = orc.create_concurrency_limit("a", 3)
    assert (again.concurrency_limit, again.active_slots) == (3, [holder.id])
    assert orc.read_global_concurrency_limit("tag:a").active_slots == 1
    orc.release_concurrency_lease(lease.lease_id)
    assert orc.read_concurrency_limit("a").active_slots == []


def test_a_negative_limit_is_taken_as_prefect_takes_it(orc) -> None:
    """Vector task-tag-api-negative-limit: Prefect's V1 route accepts it (201)."""
    assert orc.create_concurrency_limit("a", -1).concurrency_limit == -1
    assert orc.read_concurrency_limit("a").concurrency_limit == -1


def test_a_tag_without_a_limit_is_not_found_and_nothing_is_written(orc) -> None:
    """Vector task-tag-api-read-missing (404 for read, reset and delete)."""
    with pytest.raises(ObjectNotFound, match="'a'"):
        orc.read_concurrency_limit("a")
    with pytest.raises(ObjectNotFound):
        orc.reset_concurrency_limit("a")
    with pytest.raises(ObjectNotFound):
        orc.delete_concurrency_limit("a")
    assert orc.read_global_concurrency_limits() == []


def test_deleting_a_tag_limit_deletes_the_global_limit(orc) -> None:
    orc.create_concurrency_limit("a", 1)
    orc.delete_concurrency_limit("a")
    with pytest.raises(ObjectNotFound):
        orc.read_global_concurrency_limit("tag:a")
    assert orc.read_concurrency_leases() == []


@pytest.mark.parametrize(
    ("tag", "limit", "field"),
    [
        (5, 1, "tag"),
        ("", 1, "tag"),
        ("a\x00b", 1, "tag"),
        (None, 1, "tag"),
        ("a", "2", "limit"),
        ("a", 1.5, "limit"),
        ("a", True, "limit"),
        ("a", None, "limit"),
        ("a", 2**63, "limit"),
    ],
)
def test_bad_input_to_create_names_the_field_and_writes_nothing(orc, tag, limit, field) -> None:
    with pytest.raises(InvalidState, match=field):
        orc.create_concurrency_limit(tag, limit)
    assert orc.read_global_concurrency_limits() == []


@pytest.mark.parametrize(
    ("tags", "message"),
    [
        ("db", "tags must be a list of str, not str"),
        ([1], "tags must be a str, not int"),
        ([""], "tags must not be empty"),
        ({"db": 1}, "tags must be a list of str, not dict"),
        (["db", None], "tags must be a str, not NoneType"),
    ],
)
def test_task_run_tags_must_be_a_list_of_str_and_nothing_is_written(orc, tags, message) -> None:
    with pytest.raises(InvalidState, match=message):
        orc.create_task_run(tags=tags)
    assert orc.read_task_runs() == []


def test_task_run_tags_are_stored_and_read_back(orc) -> None:
    flow = orc.create_flow_run()
    made = orc.create_task_run(flow_run_id=flow.id, tags=["db", "api", "db"])
    assert made.tags == ["db", "api"]
    assert orc.read_task_run(made.id).tags == ["db", "api"]
    assert [run.tags for run in orc.read_task_runs(flow_run_id=flow.id)] == [["db", "api"]]
    assert orc.create_task_run().tags == []


def test_slot_override_must_name_task_runs_and_nothing_changes_otherwise(orc) -> None:
    orc.create_concurrency_limit("a", 1)
    holder = orc.create_task_run(tags=["a"])
    orc.increment_concurrency_slots_with_lease(
        "tag:a", 1, holder={"type": "task_run", "id": holder.id}
    )
    with pytest.raises(ObjectNotFound, match="slot_override"):
        orc.reset_concurrency_limit("a", slot_override=[uuid4()])
    with pytest.raises(InvalidState, match="slot_override"):
        orc.reset_concurrency_limit("a", slot_override=str(holder.id))
    with pytest.raises(InvalidState, match="slot_override"):
        orc.reset_concurrency_limit("a", slot_override=["not-an-id"])
    after = orc.read_concurrency_limit("a")
    assert after.active_slots == [holder.id]
    assert orc.read_global_concurrency_limit("tag:a").active_slots == 1


def test_every_error_is_a_flowstate_error(orc) -> None:
    for call in (
        lambda: orc.create_concurrency_limit(["a"], 1),
        lambda: orc.read_concurrency_limit(""),
        lambda: orc.reset_concurrency_limit("nope"),
        lambda: orc.delete_concurrency_limit(3),
    ):
        with pytest.raises(FlowstateError):
            call()

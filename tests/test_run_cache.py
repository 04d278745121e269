"""The store's cache of decoded flow runs must be invisible: every read equals a fresh read."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from flowstate import Orchestrator
from flowstate.states import Completed, Paused, Pending, Running, Scheduled


def _exact(run: Any) -> Any:
    """A run's values with their types, and which fields pydantic counts as set."""

    def typed(value: Any) -> Any:
        if hasattr(value, "__pydantic_fields_set__"):
            return (type(value), sorted(value.__pydantic_fields_set__), {k: typed(v) for k, v in value.__dict__.items()})
        if isinstance(value, datetime):
            return (type(value), value, value.tzinfo)
        if isinstance(value, set):
            return (type(value), sorted(value))
        return (type(value), value)

    return typed(run)


def _fresh(path: str, run_id: Any) -> Any:
    with Orchestrator(path) as other:  # a new connection: nothing cached
        return other.read_flow_run(run_id)


def test_reads_after_each_transition_equal_a_fresh_read(tmp_path: Any) -> None:
    path = str(tmp_path / "cache.db")
    with Orchestrator(path) as orc:
        run = orc.create_flow_run(flow_name="f", parameters={"a": [1, 2]}, tags=["t"])
        assert _exact(run) == _exact(_fresh(path, run.id))
        later = datetime.now(timezone.utc) + timedelta(hours=1)
        steps = [Scheduled(), Pending(), Running(), Paused(pause_key="k"), None, Completed(),
                 Scheduled(later, name="AwaitingRetry")]
        for state in steps:
            if state is None:
                orc.resume_flow_run(run.id)
            else:
                orc.set_flow_run_state(run.id, state, force=state.name == "AwaitingRetry")
            mine = orc.read_flow_run(run.id)
            fresh = _fresh(path, run.id)
            mine.estimated_run_time = fresh.estimated_run_time = timedelta(0)  # "now"-dependent
            assert _exact(mine) == _exact(fresh)


def test_a_returned_run_can_be_changed_without_affecting_later_reads(tmp_path: Any) -> None:
    with Orchestrator(str(tmp_path / "cache.db")) as orc:
        run = orc.create_flow_run(parameters={"a": 1}, tags=["t"])
        orc.set_flow_run_state(run.id, Running())
        orc.set_flow_run_state(run.id, Paused(pause_key="k"))
        got = orc.read_flow_run(run.id)
        got.parameters["b"] = 2
        got.tags.append("x")
        got.empirical_policy.pause_keys.add("other")
        got.empirical_policy.retries = 9
        again = orc.read_flow_run(run.id)
        assert again.parameters == {"a": 1} and again.tags == ["t"]
        assert again.empirical_policy.pause_keys == {"k"} and again.empirical_policy.retries is None


def test_writes_by_another_connection_are_seen(tmp_path: Any) -> None:
    path = str(tmp_path / "cache.db")
    with Orchestrator(path) as orc, Orchestrator(path) as other:
        run = orc.create_flow_run()
        orc.set_flow_run_state(run.id, Pending())
        other.set_flow_run_state(run.id, Running())
        assert orc.read_flow_run(run.id).state.type.value == "RUNNING"
        # and the next transition starts from the other connection's state
        assert orc.set_flow_run_state(run.id, Completed()).status.value == "ACCEPT"
        assert orc.read_flow_run(run.id).run_count == _fresh(path, run.id).run_count == 1


def test_a_rolled_back_transition_leaves_no_trace_in_later_reads(tmp_path: Any) -> None:
    with Orchestrator(str(tmp_path / "cache.db")) as orc:
        run = orc.create_flow_run()
        orc.set_flow_run_state(run.id, Pending())
        with pytest.raises(RuntimeError):
            with orc.transaction():
                orc.set_flow_run_state(run.id, Running())
                assert orc.read_flow_run(run.id).state.type.value == "RUNNING"
                raise RuntimeError("undo")
        assert orc.read_flow_run(run.id).state.type.value == "PENDING"
        assert orc.set_flow_run_state(run.id, Running()).status.value == "ACCEPT"
        assert orc.read_flow_run(run.id).run_count == 1


@pytest.mark.parametrize(("years", "microseconds"), [(1, 123_457), (200, 123_457), (285, 1)])
def test_a_long_run_time_reads_back_from_the_cache_as_from_the_file(
    tmp_path: Any, years: int, microseconds: int
) -> None:
    """The file keeps a run time as float seconds, which lose microseconds past ~285 years:
    the cached run must hold what reading gives back, not the exact sum."""
    path = str(tmp_path / "cache.db")
    start = datetime(2000, 1, 1, tzinfo=timezone.utc)
    later = start + timedelta(days=365.25 * years, microseconds=microseconds)
    times = iter([start])
    with Orchestrator(path, clock=lambda: next(times, later)) as orc:
        run = orc.create_flow_run(state=Running())
        orc.set_flow_run_state(run.id, Completed())  # at ``later``: the run time is the gap
        with orc.transaction():  # inside a transaction, so the cached run is the one read
            mine = orc.read_flow_run(run.id)
        assert abs(mine.total_run_time - (later - start)) <= timedelta(microseconds=1)
        assert _exact(mine) == _exact(_fresh(path, run.id))

"""Values too large (or too far in time) for the engine are refused at the boundary, never later."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from flowstate import InvalidState, Orchestrator

from tests.reliability._checks import assert_database_consistent

EAST = timezone(timedelta(hours=1))
WEST = timezone(-timedelta(hours=1))


@pytest.fixture
def orc(database: str):
    """On each backend (a SQLite file, a fresh PostgreSQL schema)."""
    with Orchestrator(database) as orc:
        yield orc


@pytest.mark.parametrize(
    "when",
    [
        datetime.min.replace(tzinfo=EAST),
        datetime.max.replace(tzinfo=WEST),
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
    ],
    ids=["min-east", "max-west", "min-east-text", "max-west-text"],
)
def test_a_time_outside_the_utc_range_is_an_invalid_state(orc, when):
    run = orc.create_flow_run()
    state = {"type": "SCHEDULED", "state_details": {"scheduled_time": when}}
    with pytest.raises(InvalidState, match="scheduled_time"):
        orc.set_flow_run_state(run.id, state)
    assert orc.read_flow_run_states(run.id) == []
    assert_database_consistent(orc.database)


def nested_lists(depth: int) -> list:
    top: list = []
    inner = top
    for _ in range(depth):
        inner.append([])
        inner = inner[0]
    return top


def test_data_nested_too_deeply_to_encode_is_an_invalid_state(orc):
    run = orc.create_flow_run()
    with pytest.raises(InvalidState, match="data"):
        orc.set_flow_run_state(run.id, {"type": "COMPLETED", "data": nested_lists(100_000)})
    assert orc.read_flow_run_states(run.id) == []


def test_parameters_nested_too_deeply_to_encode_are_an_invalid_state(orc):
    with pytest.raises(InvalidState, match="parameters"):
        orc.create_flow_run(parameters={"deep": nested_lists(100_000)})
    assert orc.read_flow_runs() == []


@pytest.mark.parametrize("bad", [2**63, 2**200, -1, True, 1.5, "3"])
def test_a_limit_or_offset_sqlite_cannot_hold_is_an_invalid_state(orc, bad):
    with pytest.raises(InvalidState, match="limit"):
        orc.read_flow_runs(limit=bad)
    with pytest.raises(InvalidState, match="offset"):
        orc.read_task_runs(offset=bad)


def test_the_largest_limit_and_offset_are_accepted(orc):
    orc.create_flow_run()
    assert orc.read_flow_runs(limit=2**63 - 1, offset=2**63 - 1) == []


@pytest.mark.parametrize(
    "policy",
    [
        {"retries": 3, "retry_delay": 10**30},
        {"retries": 3, "retry_delay_seconds": float("inf")},
        {"retries": 3, "retry_delay_seconds": 1e300},
    ],
)
def test_a_flow_retry_delay_that_cannot_be_scheduled_is_refused_when_the_run_is_created(orc, policy):
    with pytest.raises(InvalidState, match="empirical_policy"):
        orc.create_flow_run(empirical_policy=policy)
    assert orc.read_flow_runs() == []


@pytest.mark.parametrize(
    "policy",
    [
        {"retries": 3, "retry_delay": float("inf")},
        {"retries": 3, "retry_delay": float("nan")},
        {"retries": 3, "retry_delay": [1, 1e300]},
        {"retries": 3, "retry_delay": 5, "retry_jitter_factor": 1e308},
    ],
)
def test_a_task_retry_delay_that_cannot_be_scheduled_is_refused_when_the_run_is_created(orc, policy):
    with pytest.raises(InvalidState, match="empirical_policy"):
        orc.create_task_run(empirical_policy=policy)
    assert orc.read_task_runs() == []


def test_a_long_but_schedulable_retry_delay_still_retries(orc):
    from flowstate.states import Failed, Running

    run = orc.create_flow_run(empirical_policy={"retries": 1, "retry_delay": 50 * 365 * 86400})
    orc.set_flow_run_state(run.id, Running(), force=True)
    result = orc.set_flow_run_state(run.id, Failed())
    assert result.state.name == "AwaitingRetry"


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ({"state_type": "DONE"}, "state_type='DONE' is not a StateType; expected one of SCHEDULED"),
        ({"flow_name": 7}, "flow_name=7; expected a str or None"),
        ({"flow_name": "\ud800"}, "flow_name '\\\\ud800' holds a lone surrogate"),
    ],
)
def test_a_listing_filter_that_cannot_match_is_an_invalid_state(orc, filters, message):
    for read in (orc.read_flow_runs, orc.read_task_runs):
        with pytest.raises(InvalidState, match=message):
            read(**filters)

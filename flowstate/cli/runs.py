"""``flowstate runs ls|show|create`` and ``flowstate tasks ls``: look at runs and their state
history, create a flow run.

With ``--json``: ``runs ls`` and ``tasks ls`` print a JSON array of Prefect-shaped runs;
``runs show`` prints ``{"flow_run": ..., "states": [...]}`` (``"task_run"`` for a task run);
``runs create`` prints the new flow run.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import reduce
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import click

from flowstate.cli._common import (
    DASH,
    STATE_TYPE,
    console,
    duration,
    echo_json,
    echo_result,
    fields_table,
    find_run,
    json_and_database,
    open_orchestrator,
    seconds,
    short_state,
    state_label,
    timestamp,
    when,
)
from flowstate.cli._common import table as make_table

if TYPE_CHECKING:
    from rich.table import Table

    from flowstate import Orchestrator
    from flowstate.runs import FlowRun, TaskRun
    from flowstate.states import State

__all__ = ["runs", "tasks"]

NO_WRAP = frozenset({"id", "timestamp", "state", "type", "duration"})


def listing_options(noun: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--limit``, ``--offset``, ``--all`` and ``--flow`` of ``runs ls`` and ``tasks ls``."""
    options = (
        click.option("--flow", "flow_name", metavar="NAME", help=f"Only {noun} of this flow."),
        click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True,
                     help=f"At most N {noun}, the newest."),
        click.option("--offset", type=click.IntRange(min=0), default=0,
                     help=f"Skip the N newest {noun} first."),
        click.option("--all", "every", is_flag=True, help=f"Every {noun[:-1]}: no limit."),
    )
    return lambda command: reduce(lambda made, option: option(made), reversed(options), command)


@click.group()
def runs() -> None:
    """Create, list and show flow runs, and read the input of their pauses."""


@runs.command("ls")
@click.option("--state", "state_type", type=STATE_TYPE, help="Only runs in this state type.")
@listing_options("flow runs")
@json_and_database
def list_runs(
    state_type: str | None,
    flow_name: str | None,
    limit: int,
    offset: int,
    every: bool,
    as_json: bool,
) -> None:
    """Flow runs, newest first (the 20 newest unless --limit or --all says otherwise)."""
    _list("Flow runs", lambda orc, **page: orc.read_flow_runs(**page),
          state_type, flow_name, None if every else limit, offset, as_json,
          ("id", "flow/name", "state", "runs"),
          lambda run: (str(run.id), f"{run.flow_name}/{run.name}", short_state(run.state),
                       str(run.run_count)))


@runs.command("show")
@click.argument("run_id", metavar="ID")
@json_and_database
def show_run(run_id: str, as_json: bool) -> None:
    """A flow run or task run: its fields, and its state history as a timeline."""
    with open_orchestrator() as orc:
        kind, run = find_run(orc, run_id)
        read_states = orc.read_flow_run_states if kind == "flow" else orc.read_task_run_states
        history = read_states(run.id)
    if as_json:
        echo_json({f"{kind}_run": run, "states": history})
        return
    out = console()
    out.print(run_fields_table(kind, run))
    out.print(timeline_table(history, datetime.now(timezone.utc)))


@runs.command("create")
@click.argument("flow_name", metavar="FLOW_NAME")
@click.option("--name", help="The run's name (default: a generated one, e.g. daring-puffin).")
@click.option("--state", "state_type", type=STATE_TYPE,
              help="Set this state at once, with force (default: no state).")
@json_and_database
def create_run(flow_name: str, name: str | None, state_type: str | None, as_json: bool) -> None:
    """Create a flow run of FLOW_NAME and print its id (with --json: the run)."""
    from flowstate.states import State, StateType

    state = None if state_type is None else State(type=StateType(state_type))
    with open_orchestrator() as orc:
        run = orc.create_flow_run(flow_name=flow_name, name=name, state=state)
    echo_result(run, str(run.id), as_json=as_json)


@click.group()
def tasks() -> None:
    """List task runs."""


@tasks.command("ls")
@click.option("--flow-run", "flow_run_id", metavar="ID", help="Only the task runs of this flow run.")
@click.option("--state", "state_type", type=STATE_TYPE, help="Only task runs in this state type.")
@listing_options("task runs")
@json_and_database
def list_tasks(
    flow_run_id: str | None,
    state_type: str | None,
    flow_name: str | None,
    limit: int,
    offset: int,
    every: bool,
    as_json: bool,
) -> None:
    """Task runs, newest first (the 20 newest unless --limit or --all says otherwise)."""

    def read(orc: Orchestrator, **page: Any) -> list[TaskRun]:
        if flow_run_id is not None:
            orc.read_flow_run(flow_run_id)  # an unknown flow run is an error, not an empty list
        return orc.read_task_runs(flow_run_id=flow_run_id, **page)

    _list("Task runs", read, state_type, flow_name, None if every else limit, offset, as_json,
          ("id", "name", "task_key", "state", "runs"),
          lambda run: (str(run.id), run.name, run.task_key, short_state(run.state),
                       str(run.run_count)))


def _list(
    noun: str, read: Callable[..., list[Any]], state_type: str | None, flow_name: str | None,
    limit: int | None, offset: int, as_json: bool, columns: tuple[str, ...],
    row: Callable[[Any], tuple[str, ...]],
) -> None:
    """``runs ls`` / ``tasks ls``: the runs ``read(orc, **filters and page)`` finds, newest
    first, as JSON or as a table titled by ``noun``: one ``row(run)`` per run."""
    with open_orchestrator() as orc:
        found = read(orc, state_type=state_type, flow_name=flow_name, limit=limit,
                     offset=offset, newest_first=True)
    if as_json:
        echo_json(found)
        return
    table = make_table(_title(noun, len(found), limit, offset), columns, no_wrap=NO_WRAP)
    for run in found:
        table.add_row(*row(run))
    console().print(table)


# -- tables ---------------------------------------------------------------------------------------


def _title(noun: str, shown: int, limit: int | None, offset: int) -> str:
    """``Flow runs (3)``; when the limit may have cut the list, how to see more."""
    if limit is not None and shown == limit:
        more = f"--offset {offset + limit} for the next, --all for every one"
        return f"{noun} ({shown} shown, newest first; {more})"
    return f"{noun} ({shown})"


def run_fields_table(kind: str, run: FlowRun | TaskRun) -> Table:
    """The run as field/value rows."""
    rows: dict[str, Any] = {"id": run.id, "name": run.name}
    if kind == "flow":
        rows["flow"] = run.flow_name  # type: ignore[union-attr]
    else:
        rows["task_key"] = run.task_key  # type: ignore[union-attr]
        rows["flow_run_id"] = run.flow_run_id or DASH  # type: ignore[union-attr]
    rows |= {
        "state": state_label(run.state),
        "run_count": run.run_count,
        "start_time": when(run.start_time),
        "end_time": when(run.end_time),
        "total_run_time": seconds(run.total_run_time),
    }
    policy = run.empirical_policy
    if kind == "flow":
        rows["pause_keys"] = ", ".join(sorted(policy.pause_keys)) or DASH  # type: ignore[union-attr]
        rows["tags"] = ", ".join(run.tags) or DASH  # type: ignore[union-attr]
    rows["retries"] = policy.retries if policy.retries is not None else DASH
    return fields_table(f"{kind.capitalize()} run", rows)


def timeline_table(history: list[State], now: datetime) -> Table:
    """The state history, oldest first, with how long the run stayed in each state."""
    table = make_table("State history", ("#", "timestamp", "type", "name", "duration", "message"),
                       no_wrap=NO_WRAP)
    for number, state in enumerate(history, start=1):
        if number < len(history):
            stayed = duration(history[number].timestamp - state.timestamp)
        elif state.is_final:
            stayed = DASH
        else:
            stayed = f"{duration(max(now - state.timestamp, timedelta(0)))} so far"
        table.add_row(
            str(number),
            timestamp(state.timestamp),
            state.type.value,
            state.name or DASH,
            stayed,
            state.message or DASH,
        )
    return table

"""``flowstate demo``: walk one new flow run through pause, input validation and resume.

::

    flowstate demo                      # the steps, the final run, its history, as tables
    flowstate --database runs.db demo   # another database (or set FLOWSTATE_DATABASE)
    flowstate demo --json               # one Prefect-shaped OrchestrationResult per line
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from flowstate.cli._common import (
    DASH,
    STATUS_STYLES,
    database_override,
    echo_json,
    fields_table,
    open_orchestrator,
    seconds,
    state_label,
    when,
)
from flowstate.cli._common import table as make_table

if TYPE_CHECKING:
    from rich.table import Table

    from flowstate import Orchestrator
    from flowstate.demo import DemoRun, DemoStep
    from flowstate.runs import FlowRun
    from flowstate.states import State

__all__ = ["demo"]


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print each result as JSON, one per line.")
@database_override
def demo(as_json: bool, database: str | None) -> None:
    """Walk one new flow run through schedule, pause, input check, resume, tasks and completion."""
    from flowstate.demo import run_demo

    with open_orchestrator(database) as orc:
        if as_json:
            run_demo(orc, on_step=lambda step: echo_json(step.result))
            return
        outcome = run_demo(orc)
        _print_demo(orc, outcome)


def _print_demo(orc: Orchestrator, outcome: DemoRun) -> None:
    """Print the steps, the final run, its state history, the stored run input and the database."""
    from rich.console import Console
    from rich.text import Text

    console = Console()
    console.print(_steps_table(outcome.steps))
    run = orc.read_flow_run(outcome.flow_run_id)
    console.print(_run_table(run))
    console.print(_history_table(orc.read_flow_run_states(run.id)))
    console.print(_run_input_table(orc, outcome))
    console.print(Text.assemble(("database: ", "bold"), orc.database))


def _steps_table(steps: list[DemoStep]) -> Table:
    """One row per orchestration call: step, status, resulting state type and name, reason."""
    from rich.text import Text

    table = make_table("Orchestration steps", ("#", "step", "status", "type", "name", "reason"))
    for number, (description, result) in enumerate(steps, start=1):
        status = result.status.value
        state = result.state
        table.add_row(
            str(number),
            Text(description),
            Text(status, style=STATUS_STYLES.get(status, "")),
            state.type.value if state else DASH,
            Text(state.name or DASH) if state else DASH,
            Text(result.reason or DASH),
        )
    return table


def _run_table(run: FlowRun) -> Table:
    """The final flow run as field/value rows."""
    rows: dict[str, Any] = {
        "id": run.id,
        "name": run.name,
        "flow": run.flow_name,
        "state": state_label(run.state),
        "run_count": run.run_count,
        "start_time": when(run.start_time),
        "end_time": when(run.end_time),
        "total_run_time": seconds(run.total_run_time),
        "pause_keys": ", ".join(sorted(run.empirical_policy.pause_keys)) or DASH,
    }
    return fields_table("Final flow run", rows)


def _history_table(states: list[State]) -> Table:
    """The flow run's state history, oldest first."""
    from rich.text import Text

    table = make_table("State history", ("timestamp", "type", "name", "message"))
    for state in states:
        table.add_row(
            when(state.timestamp),
            state.type.value,
            Text(state.name or DASH),
            Text(state.message or DASH),
        )
    return table


def _run_input_table(orc: Orchestrator, outcome: DemoRun) -> Table:
    """The run input stored under the pause's keyset, read back from the database."""
    from rich.text import Text

    from flowstate import ObjectNotFound

    table = make_table("Stored run input", ("key", "value"), no_wrap={"key"})
    for part in ("schema", "response"):
        key = outcome.run_input_keyset[part]
        try:
            value = orc.read_flow_run_input(outcome.flow_run_id, key)
        except ObjectNotFound:
            value = "(not stored)"
        table.add_row(Text(key), Text(value))
    return table

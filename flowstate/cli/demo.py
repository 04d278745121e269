"""``flowstate demo``: walk one new flow run through pause, input validation and resume.

::

    flowstate demo                      # the steps, the final run, its history, as tables
    flowstate --database runs.db demo   # another database (or set FLOWSTATE_DATABASE)
    flowstate demo --json               # one Prefect-shaped OrchestrationResult per line
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING

import click

from flowstate.cli._common import (
    DASH,
    STATUS_STYLES,
    console,
    database_override,
    echo_json,
    open_orchestrator,
)
from flowstate.cli._common import table as make_table
from flowstate.cli.runs import run_fields_table, timeline_table

if TYPE_CHECKING:
    from rich.table import Table

    from flowstate import Orchestrator
    from flowstate.demo import DemoRun, DemoStep

__all__ = ["demo"]


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print each result as JSON, one per line.")
@database_override
def demo(as_json: bool) -> None:
    """Walk one new flow run through schedule, pause, input check, resume, tasks and completion."""
    from flowstate.demo import run_demo

    with open_orchestrator() as orc:
        if as_json:
            run_demo(orc, on_step=lambda step: echo_json(step.result))
            return
        outcome = run_demo(orc)
        _print_demo(orc, outcome)


def _print_demo(orc: Orchestrator, outcome: DemoRun) -> None:
    """Print the steps, the final run, its state history, the stored run input and the database."""
    from rich.text import Text

    out = console()
    out.print(_steps_table(outcome.steps))
    run = orc.read_flow_run(outcome.flow_run_id)
    out.print(run_fields_table("flow", run))
    out.print(timeline_table(orc.read_flow_run_states(run.id), datetime.now(timezone.utc)))
    out.print(_run_input_table(orc, outcome))
    out.print(Text.assemble(("database: ", "bold"), _printable(orc.database)))


def _printable(path: str) -> str:
    """A file name as a terminal shows it: bytes that are not UTF-8 (kept by Python as
    surrogate escapes, which a strict UTF-8 stdout refuses to write) as U+FFFD."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _steps_table(steps: list[DemoStep]) -> Table:
    """One row per orchestration call: step, status, resulting state type and name, reason."""
    from rich.text import Text

    table = make_table("Orchestration steps", ("#", "step", "status", "type", "name", "reason"))
    for number, (description, result) in enumerate(steps, start=1):
        status = result.status.value
        state = result.state
        table.add_row(
            str(number),
            description,
            Text(status, style=STATUS_STYLES.get(status, "")),
            state.type.value if state else DASH,
            state.name or DASH if state else DASH,
            result.reason or DASH,
        )
    return table


def _run_input_table(orc: Orchestrator, outcome: DemoRun) -> Table:
    """The run input stored under the pause's keyset, read back from the database."""
    from flowstate import ObjectNotFound

    table = make_table("Stored run input", ("key", "value"), no_wrap={"key"})
    for part in ("schema", "response"):
        key = outcome.run_input_keyset[part]
        try:
            value = orc.read_flow_run_input(outcome.flow_run_id, key)
        except ObjectNotFound:
            value = "(not stored)"
        table.add_row(key, value)
    return table

"""The ``flowstate`` command line.

::

    flowstate demo                      # walk one flow run through pause/resume, show tables
    flowstate --database runs.db demo   # use another database (or set FLOWSTATE_DATABASE)
    flowstate demo --json               # one Prefect-shaped OrchestrationResult per line

``rich`` is imported inside the commands that draw tables, so ``--json`` and ``--help`` never load
it. Errors of the engine (:class:`flowstate.FlowstateError`) are printed as one line on stderr with
exit code 1, without a traceback.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from flowstate import Orchestrator
    from flowstate.demo import DemoRun, DemoStep
    from flowstate.results import OrchestrationResult
    from flowstate.runs import FlowRun
    from flowstate.states import State

__all__ = ["main"]

DEFAULT_DATABASE = Path("~/.flowstate/flowstate.db")
STATUS_STYLES = {"ACCEPT": "green", "REJECT": "yellow", "WAIT": "blue", "ABORT": "red"}
DASH = "—"


@dataclass(frozen=True)
class CliConfig:
    """Options of the ``flowstate`` group, shared with every command."""

    database: str | None


DATABASE_HELP = "SQLite database file, or ':memory:'. Default: ~/.flowstate/flowstate.db."


@click.group()
@click.option(
    "--database",
    metavar="PATH",
    envvar="FLOWSTATE_DATABASE",
    show_envvar=True,
    default=None,
    help=DATABASE_HELP,
)
@click.version_option(package_name="flowstate", prog_name="flowstate")
@click.pass_context
def main(ctx: click.Context, database: str | None) -> None:
    """flowstate: Prefect's flow and task run orchestration, embedded in SQLite."""
    ctx.obj = CliConfig(database=database)


def database_override(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--database`` accepted after the command name too (``flowstate demo --database x.db``)."""
    option = click.option(
        "--database",
        metavar="PATH",
        default=None,
        help=f"{DATABASE_HELP} Overrides the global option.",
    )
    return option(command)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print each result as JSON, one per line.")
@database_override
@click.pass_obj
def demo(config: CliConfig, as_json: bool, database: str | None) -> None:
    """Walk one new flow run through schedule, pause, input check, resume, tasks and completion."""
    from flowstate.demo import run_demo

    database = database if database is not None else config.database
    with _orchestrator(database) as orc:
        if as_json:
            run_demo(orc, on_step=lambda step: click.echo(_result_json(step.result)))
            return
        outcome = run_demo(orc)
        _print_demo(orc, outcome, _database_label(orc, database))


# -- engine access --------------------------------------------------------------------------------


@contextmanager
def _orchestrator(database: str | None) -> Iterator[Orchestrator]:
    """Open the orchestrator; turn any flowstate error inside the block into a one-line exit.

    While opening, ``OSError`` is treated the same way: a home folder that cannot be created is a
    problem of the environment, not a bug worth a traceback. (Later OSErrors, such as a closed
    pipe on stdout, are left to click.)
    """
    from flowstate import FlowstateError, Orchestrator

    try:
        orc = Orchestrator(database)
    except (FlowstateError, OSError) as exc:
        raise click.ClickException(_one_line(exc)) from exc
    try:
        with orc:
            yield orc
    except FlowstateError as exc:
        raise click.ClickException(_one_line(exc)) from exc


def _one_line(exc: BaseException) -> str:
    """The error's message on a single line, prefixed with its class name."""
    message = " ".join(str(exc).split()) or "(no message)"
    return f"{type(exc).__name__}: {message}"


def _database_label(orc: Orchestrator, database: str | None) -> str:
    """The database the orchestrator uses (its ``database`` property), as the user should see it."""
    value = getattr(orc, "database", None)  # not in API.md yet, so fall back to what was asked
    if isinstance(value, (str, os.PathLike)):
        return os.fspath(value)
    return str(database) if database else str(DEFAULT_DATABASE.expanduser())


def _result_json(result: OrchestrationResult) -> str:
    """The result as compact Prefect-shaped JSON."""
    return json.dumps(result.model_dump(mode="json"), separators=(",", ":"))


# -- rich presentation ----------------------------------------------------------------------------


def _print_demo(orc: Orchestrator, outcome: DemoRun, database_label: str) -> None:
    """Print the steps, the final run, its state history, the stored run input and the database."""
    from rich.console import Console

    console = Console()
    console.print(_steps_table(outcome.steps))
    run = orc.read_flow_run(outcome.flow_run_id)
    console.print(_run_table(run))
    console.print(_history_table(orc.read_flow_run_states(run.id)))
    console.print(_run_input_table(orc, outcome))
    _print_database(console, database_label)


def _steps_table(steps: list[DemoStep]) -> Table:
    """One row per orchestration call: step, status, resulting state type and name, reason."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title="Orchestration steps", title_justify="left")
    for column in ("#", "step", "status", "type", "name", "reason"):
        table.add_column(column, overflow="fold")
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
    from rich.table import Table
    from rich.text import Text

    table = Table(title="Final flow run", title_justify="left", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    rows: dict[str, Any] = {
        "id": run.id,
        "name": run.name,
        "flow": run.flow_name,
        "state": _state_label(run.state),
        "run_count": run.run_count,
        "start_time": _when(run.start_time),
        "end_time": _when(run.end_time),
        "total_run_time": _duration(run.total_run_time),
        "pause_keys": ", ".join(sorted(run.empirical_policy.pause_keys)) or DASH,
    }
    for name, value in rows.items():
        table.add_row(name, Text(str(value)))
    return table


def _history_table(states: list[State]) -> Table:
    """The flow run's state history, oldest first."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title="State history", title_justify="left")
    for column in ("timestamp", "type", "name", "message"):
        table.add_column(column, overflow="fold")
    for state in states:
        table.add_row(
            _when(state.timestamp),
            state.type.value,
            Text(state.name or DASH),
            Text(state.message or DASH),
        )
    return table


def _run_input_table(orc: Orchestrator, outcome: DemoRun) -> Table:
    """The run input stored under the pause's keyset, read back from the database."""
    from rich.table import Table
    from rich.text import Text

    from flowstate import ObjectNotFound

    table = Table(title="Stored run input", title_justify="left")
    table.add_column("key", no_wrap=True)
    table.add_column("value", overflow="fold")
    for part in ("schema", "response"):
        key = outcome.run_input_keyset[part]
        try:
            value = orc.read_flow_run_input(outcome.flow_run_id, key)
        except ObjectNotFound:
            value = "(not stored)"
        table.add_row(Text(key), Text(value))
    return table


def _print_database(console: Console, label: str) -> None:
    """Print which database file the demo wrote to."""
    from rich.text import Text

    console.print(Text.assemble(("database: ", "bold"), label))


# -- formatting -----------------------------------------------------------------------------------


def _state_label(state: State | None) -> str:
    """``COMPLETED (Completed)``; ``—`` when there is no state."""
    if state is None:
        return DASH
    return f"{state.type.value} ({state.name})"


def _when(value: datetime | None) -> str:
    """An ISO timestamp with milliseconds, or ``—``."""
    return value.isoformat(timespec="milliseconds") if value else DASH


def _duration(value: timedelta | None) -> str:
    """Seconds with millisecond precision."""
    return f"{value.total_seconds():.3f} s" if value is not None else DASH


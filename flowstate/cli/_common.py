"""What every command shares: the database option, engine access, exit codes, JSON and formatting.

Only ``click`` is imported here; ``rich`` is imported inside the functions that draw.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import click
from pydantic_core import to_jsonable_python

from flowstate.states import StateType

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from flowstate import Orchestrator
    from flowstate.results import OrchestrationResult
    from flowstate.runs import FlowRun, TaskRun
    from flowstate.states import State

DATABASE_HELP = (
    "SQLite database file (or sqlite:///path), ':memory:', or a PostgreSQL URL "
    "(postgresql://user@host/db; needs pip install 'flowstate[postgres]'). "
    "Default: ~/.flowstate/flowstate.db."
)
STATUS_STYLES = {"ACCEPT": "green", "REJECT": "yellow", "WAIT": "blue", "ABORT": "red"}
DASH = "—"

EXIT_CODES: dict[str, int] = {"ACCEPT": 0, "REJECT": 3, "WAIT": 4, "ABORT": 5}
"""The exit code of a command that proposes a state, by orchestration status."""

STATE_TYPE = click.Choice([t.value for t in StateType], case_sensitive=False)

MAX_SQL_INT = 2**63 - 1
"""The largest whole number a database column holds (SQLite's and PostgreSQL's BIGINT)."""

CENTURY_SECONDS = 100 * 365.25 * 86400
"""The longest span of seconds a command takes: a century, as the library (no clock goes further)."""


class Seconds(click.FloatRange):
    """A number of seconds in a range, and finite: click's FloatRange lets ``nan`` through
    (it compares false with both bounds), and ``inf`` when there is no upper bound."""

    name = "seconds"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number of seconds.", param, ctx)
        return number


@dataclass(frozen=True)
class CliConfig:
    """Options of the ``flowstate`` group, shared with every command."""

    database: str | None
    busy_timeout: float = 30.0


def _database_after_command(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    """The command's ``--database`` replaces the group's in the command's :class:`CliConfig`."""
    if value is not None:
        ctx.obj = replace(ctx.find_object(CliConfig) or CliConfig(None), database=value)


def database_override(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--database`` accepted after the command name too (``flowstate demo --database x.db``)."""
    option = click.option(
        "--database",
        metavar="PATH|URL",
        default=None,
        expose_value=False,
        callback=_database_after_command,
        help=f"{DATABASE_HELP} Overrides the global option.",
    )
    return option(command)


def json_and_database(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options of almost every command: ``--json`` (print Prefect-shaped JSON instead of
    tables) and :func:`database_override`."""
    option = click.option("--json", "as_json", is_flag=True, help="Print Prefect-shaped JSON.")
    return option(database_override(command))


@contextmanager
def open_orchestrator() -> Iterator[Orchestrator]:
    """Open the orchestrator of the database chosen by ``--database`` (after the command name,
    else before it, else ``$FLOWSTATE_DATABASE``); turn any flowstate error inside the block into
    a one-line exit.

    While opening, ``OSError`` is treated the same way: a home folder that cannot be created is a
    problem of the environment, not a bug worth a traceback. (Later OSErrors, such as a closed
    pipe on stdout, are left to click.)
    """
    from flowstate import FlowstateError, Orchestrator

    config = click.get_current_context().find_object(CliConfig) or CliConfig(None)
    if config.database is not None and not config.database.strip():
        raise click.BadParameter(
            "is empty; pass ':memory:' for a throwaway database in memory, a file path, or "
            "leave the option out for the default database (~/.flowstate/flowstate.db)",
            param_hint="'--database'",
        )
    with lock_wait_notice():
        try:
            orc = Orchestrator(config.database, busy_timeout=config.busy_timeout)
        except (FlowstateError, OSError) as exc:
            raise click.ClickException(one_line(exc)) from exc
        try:
            with orc:
                yield orc
        except FlowstateError as exc:
            raise click.ClickException(one_line(exc)) from exc


@contextmanager
def lock_wait_notice() -> Iterator[None]:
    """Inside the block, a call that waits for another connection's write lock for about a
    second says so on stderr, once (the library logs it at INFO on ``flowstate.lock``)."""
    logger = logging.getLogger("flowstate.lock")
    handler = logging.StreamHandler(sys.stderr)  # each message as one line
    level = logger.level
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def one_line(exc: BaseException) -> str:
    """The error's message on a single line, prefixed with its class name."""
    message = " ".join(str(exc).split()) or "(no message)"
    return f"{type(exc).__name__}: {message}"


def fail(message: str) -> click.ClickException:
    """A one-line error (``Error: message`` on stderr, exit code 1), to be raised."""
    return click.ClickException(" ".join(message.split()))


# -- runs of either kind --------------------------------------------------------------------------

RunKind = Literal["flow", "task"]


def find_run(orc: Orchestrator, run_id: str) -> tuple[RunKind, FlowRun | TaskRun]:
    """The flow run with this id, else the task run; ObjectNotFound naming both otherwise."""
    from flowstate import ObjectNotFound

    with suppress(ObjectNotFound):
        return "flow", orc.read_flow_run(run_id)
    try:
        return "task", orc.read_task_run(run_id)
    except ObjectNotFound:
        raise ObjectNotFound(f"No flow run or task run with id {run_id}") from None


def read_flow_run(orc: Orchestrator, run_id: str) -> FlowRun:
    """The flow run; a clear error when the id is a task run's."""
    from flowstate import ObjectNotFound

    kind, run = find_run(orc, run_id)
    if kind != "flow":
        raise ObjectNotFound(f"{run_id} is a task run; this command works on flow runs")
    return run  # type: ignore[return-value]


# -- JSON -----------------------------------------------------------------------------------------


def echo_json(value: Any) -> None:
    """Print ``value`` as compact JSON: pydantic models (inside lists and dicts too) in
    Prefect's JSON shape, as ``model_dump(mode="json")`` gives it.

    A value nested deeper than pydantic serialises (stored as raw text, or before flowstate
    refused such values) is a one-line error, not a traceback."""
    try:
        jsonable = to_jsonable_python(value, by_alias=False)
        text = json.dumps(jsonable, separators=(",", ":"), ensure_ascii=False)
    except (ValueError, RecursionError) as exc:
        raise fail(f"cannot print as JSON: {exc}") from None
    click.echo(text)


def echo_result(value: Any, text: str, *, as_json: bool) -> None:
    """Print ``value`` as JSON with ``--json``, else the line ``text``."""
    if as_json:
        echo_json(value)
    else:
        click.echo(text)


# -- presentation ---------------------------------------------------------------------------------


def console() -> Console:
    """A rich console on stdout (imported here so that ``--json`` never loads rich). Text is
    printed as written: rich markup is off, so a name such as ``[red]x`` is never read as a
    style."""
    from rich.console import Console

    return Console(highlight=False, markup=False)


def table(title: str, columns: Iterable[str], *, no_wrap: Collection[str] = ()) -> Table:
    """A rich table titled ``title`` (left-justified), one folding column per name."""
    from rich.table import Table

    made = Table(title=title, title_justify="left")
    for column in columns:
        made.add_column(column, no_wrap=column in no_wrap, overflow="fold")
    return made


def fields_table(title: str, rows: dict[str, Any]) -> Table:
    """``field  value`` rows under ``title``."""
    from rich.table import Table

    made = Table(title=title, title_justify="left", show_header=False)
    made.add_column("field", style="bold")
    made.add_column("value", overflow="fold")
    for field, value in rows.items():
        made.add_row(field, str(value))
    return made


def plural(count: int, noun: str) -> str:
    """``1 slot``, ``2 slots``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def short_state(state: State | None) -> str:
    """``COMPLETED``, or ``SCHEDULED (Late)`` when the name is not the type's default."""
    if state is None:
        return DASH
    if state.name in (None, state.type.default_name):
        return state.type.value
    return f"{state.type.value} ({state.name})"


def state_label(state: State | None) -> str:
    """``COMPLETED (Completed)``; ``—`` when there is no state."""
    if state is None:
        return DASH
    return f"{state.type.value} ({state.name})"


def when(value: datetime | None) -> str:
    """An ISO timestamp with milliseconds, or ``—``."""
    return value.isoformat(timespec="milliseconds") if value else DASH


def timestamp(value: datetime) -> str:
    """``2026-01-31 12:00:00.123`` (UTC), short enough for a table column."""
    return value.strftime("%Y-%m-%d %H:%M:%S.") + f"{value.microsecond // 1000:03d}"


def seconds(value: timedelta | None) -> str:
    """Seconds with millisecond precision."""
    return f"{value.total_seconds():.3f} s" if value is not None else DASH


def duration(value: timedelta) -> str:
    """A short human duration: ``850 ms``, ``12.4 s``, ``3 m 05 s``, ``2 h 10 m``, ``3 d 4 h``."""
    total = value.total_seconds()
    if total < 1:
        return f"{total * 1000:.0f} ms"
    if total < 60:
        return f"{total:.1f} s"
    minutes, secs = divmod(int(total), 60)
    if minutes < 60:
        return f"{minutes} m {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes:02d} m"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def print_result(result: OrchestrationResult, *, before: State | None, subject: str) -> None:
    """The orchestration result as ``field  value`` lines: run, status, state change, reason, delay."""
    status = result.status.value
    after = result.state
    if after is None or (before is not None and after.id == before.id):
        change = f"{state_label(after or before)} (unchanged)"
    else:
        change = f"{state_label(before)} → {state_label(after)}"
    rows = [("run", subject), ("status", click.style(status, fg=STATUS_STYLES.get(status))),
            ("state", change)]
    if result.reason:
        rows.append(("reason", result.reason))
    delay = getattr(result.details, "delay_seconds", None)
    if delay is not None:
        rows.append(("retry in", f"{delay} s"))
    for field, value in rows:
        click.echo(f"{field:<8}  {value}")

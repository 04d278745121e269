"""The ``flowstate`` command line (also ``python -m flowstate``).

::

    flowstate demo                              # walk one flow run through pause/resume
    flowstate runs ls [--state TYPE] [--flow NAME] [--limit N] [--offset N] [--all]
    flowstate runs show ID                      # fields and state history with durations
    flowstate runs create FLOW_NAME [--name N] [--state TYPE]   # prints the new run's id
    flowstate runs input ID                     # what each pause waits for, and its answer
    flowstate tasks ls [--flow-run ID] [--flow NAME] [--limit N] [--offset N] [--all]
    flowstate set-state ID TYPE [--name N] [--message M] [--force]
    flowstate pause ID [--key K] [--timeout S] [--schema JSON|@file] [--description T] [--reschedule]
    flowstate resume ID [--input JSON | --input @file.json]   # on a terminal: asks for the input
    flowstate cancel ID
    flowstate diagram [--format mermaid|dot] [--run ID] [--no-policy]
    flowstate worker [--once | --loop] [--limit N] [--name W]   # claim due runs
    flowstate reap --timeout S [--late-threshold S]            # crash silent runs, expire leases
    flowstate limits ls | create NAME LIMIT [--decay R] | inspect NAME | reset NAME | delete NAME

Every command but ``limits delete`` takes ``--json`` (Prefect-shaped JSON of results, states and
runs); every command takes ``--database PATH|URL`` (a SQLite file or a ``postgresql://`` URL,
before or after the command name; default ``$FLOWSTATE_DATABASE``, else
``~/.flowstate/flowstate.db``). ``--busy-timeout SECONDS`` (before the command name) bounds the
wait for another connection's write lock; after about a second of waiting, one line on stderr says
so. Commands that propose a state exit with the code of the orchestration status: 0 ACCEPT, 3
REJECT, 4 WAIT, 5 ABORT. Errors (unknown id, unreadable database, invalid input) are one line on
stderr with exit code 1; usage errors exit with 2.

One module per command group; ``rich`` and ``transitions`` are imported inside the commands, so
importing this package loads only ``click``.
"""

from __future__ import annotations

import click
from click.core import ParameterSource

from flowstate.cli._common import DATABASE_HELP, EXIT_CODES, CliConfig
from flowstate.store.connection import MAX_BUSY_TIMEOUT
from flowstate.cli.demo import demo
from flowstate.cli.diagram import diagram
from flowstate.cli.inputs import run_inputs
from flowstate.cli.limits import limits
from flowstate.cli.runs import runs, tasks
from flowstate.cli.steer import cancel, pause, resume, set_state
from flowstate.cli.workers import reap, worker

__all__ = ["EXIT_CODES", "main"]


@click.group()
@click.option(
    "--database",
    metavar="PATH|URL",
    envvar="FLOWSTATE_DATABASE",
    show_envvar=True,
    default=None,
    help=DATABASE_HELP,
)
@click.option(
    "--busy-timeout",
    metavar="SECONDS",
    type=click.FloatRange(min=0, max=MAX_BUSY_TIMEOUT),
    default=30.0,
    show_default=True,
    help="How long to wait for the write lock while another connection holds it, in seconds, "
    "before failing with DatabaseBusy. After about a second of waiting, one line on stderr "
    "says so; Ctrl-C stops the wait at once.",
)
@click.version_option(package_name="flowstate", prog_name="flowstate")
@click.pass_context
def main(ctx: click.Context, database: str | None, busy_timeout: float) -> None:
    """flowstate: Prefect's flow and task run orchestration, embedded in SQLite.

    Commands that propose a state exit with 0 ACCEPT, 3 REJECT, 4 WAIT, 5 ABORT;
    errors exit with 1, usage errors with 2.
    """
    from_variable = ctx.get_parameter_source("database") is ParameterSource.ENVIRONMENT
    if from_variable and database is not None and not database.strip():
        database = None  # the library refuses it, naming FLOWSTATE_DATABASE rather than --database
    ctx.obj = CliConfig(database=database, busy_timeout=busy_timeout)


runs.add_command(run_inputs)
for _command in (demo, runs, tasks, set_state, pause, resume, cancel, diagram, worker, reap, limits):
    main.add_command(_command)

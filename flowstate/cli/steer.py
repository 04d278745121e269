"""``flowstate set-state|pause|resume|cancel``: propose a state and report the orchestration result.

Each prints the result (``--json``: Prefect's ``OrchestrationResult`` JSON) and exits with the code
of its status: 0 ACCEPT, 3 REJECT, 4 WAIT, 5 ABORT (:data:`flowstate.cli.EXIT_CODES`).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from flowstate.cli._common import (
    EXIT_CODES,
    STATE_TYPE,
    echo_json,
    find_run,
    json_and_database,
    open_orchestrator,
    print_result,
    read_flow_run,
)
from flowstate.cli.inputs import json_object, pending_input, prompt_for_input

if TYPE_CHECKING:
    from flowstate.results import OrchestrationResult
    from flowstate.runs import FlowRun, TaskRun

__all__ = ["cancel", "pause", "resume", "set_state"]


@click.command("set-state")
@click.argument("run_id", metavar="ID")
@click.argument("state_type", metavar="TYPE", type=STATE_TYPE)
@click.option("--name", help="The state's name (default: the type's, e.g. Running).")
@click.option("--message", help="The state's message.")
@click.option("--force", is_flag=True, help="Skip the core policy's rules (Prefect's force=True).")
@json_and_database
def set_state(
    run_id: str,
    state_type: str,
    name: str | None,
    message: str | None,
    force: bool,
    as_json: bool,
) -> None:
    """Propose a state of TYPE for the flow run or task run ID."""
    from flowstate.states import State, StateType

    proposed = State(type=StateType(state_type), name=name, message=message)
    with open_orchestrator() as orc:
        kind, run = find_run(orc, run_id)
        set_run_state = orc.set_flow_run_state if kind == "flow" else orc.set_task_run_state
        result = set_run_state(run.id, proposed, force=force)
    _report(result, kind, run, as_json)


@click.command()
@click.argument("run_id", metavar="ID")
@click.option("--key", "pause_key", metavar="K",
              help="The pause key (a key can pause a run once; default: the pause's number).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), metavar="S",
              help="Seconds until the pause times out (default: none).")
@click.option("--schema", "schema_text", metavar="JSON|@FILE",
              help="Wait for input: a JSON schema (an object) the resume's input must satisfy.")
@click.option("--description", metavar="TEXT",
              help="Shown above the input prompts of `flowstate resume` (needs --schema).")
@click.option("--reschedule", is_flag=True,
              help="Suspend: release the infrastructure, resume to Scheduled (needs a "
              "deployment and --key).")
@json_and_database
def pause(
    run_id: str,
    pause_key: str | None,
    timeout: float | None,
    schema_text: str | None,
    description: str | None,
    reschedule: bool,
    as_json: bool,
) -> None:
    """Pause the running flow run ID, optionally until it is resumed with input."""
    if reschedule and pause_key is None:
        raise click.UsageError("--reschedule needs --key (the same key each time the run pauses)")
    if description is not None and schema_text is None:
        raise click.UsageError("--description goes with --schema")
    schema = None if schema_text is None else json_object(schema_text, "--schema", "schema")
    with open_orchestrator() as orc:
        run = read_flow_run(orc, run_id)
        result = orc.pause_flow_run(
            run.id,
            key=pause_key,
            timeout=timeout,
            wait_for_input=schema,
            description=description,
            reschedule=reschedule,
        )
    _report(result, "flow", run, as_json)


@click.command()
@click.argument("run_id", metavar="ID")
@click.option("--input", "run_input", metavar="JSON|@FILE",
              help="Run input: a JSON object, or @path to a file holding one. Without it, on a "
              "terminal, a pause that waits for input asks for each field.")
@json_and_database
def resume(run_id: str, run_input: str | None, as_json: bool) -> None:
    """Resume the paused flow run ID, as Prefect's /resume endpoint does."""
    given = None if run_input is None else json_object(run_input, "--input", "run input")
    with open_orchestrator() as orc:
        run = read_flow_run(orc, run_id)
        if given is None and sys.stdin.isatty():
            wanted = pending_input(orc, run)
            if wanted is not None:
                given = prompt_for_input(*wanted)
        result = orc.resume_flow_run(run.id, run_input=given)
    _report(result, "flow", run, as_json)


@click.command()
@click.argument("run_id", metavar="ID")
@click.option("--message", help="The Cancelling state's message.")
@json_and_database
def cancel(run_id: str, message: str | None, as_json: bool) -> None:
    """Cancel the flow run ID: propose CANCELLING, as Prefect does.

    A run with no infrastructure to stop (e.g. SCHEDULED) is answered REJECT with a
    CANCELLED state instead, so the exit code is then 3.
    """
    from flowstate.states import Cancelling

    with open_orchestrator() as orc:
        run = read_flow_run(orc, run_id)
        result = orc.set_flow_run_state(run.id, Cancelling(message=message))
    _report(result, "flow", run, as_json)


def _report(result: OrchestrationResult, kind: str, run: FlowRun | TaskRun, as_json: bool) -> None:
    """Print the result for the run as it was before (JSON or rows), then exit with the code of
    its status (0 for ACCEPT)."""
    if as_json:
        echo_json(result)
    else:
        print_result(result, before=run.state, subject=f"{kind} run {run.id} ({run.name})")
    code = EXIT_CODES[result.status.value]
    if code:
        raise SystemExit(code)


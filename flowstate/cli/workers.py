"""``flowstate worker`` and ``flowstate reap``: claim due runs, crash silent ones, and give back
the slots of concurrency leases nobody renewed in time.

With ``--json``: ``worker`` prints the claimed runs (Prefect-shaped) as a list, ``[]`` when none
was due (with ``--loop``: one list per poll that claimed any); ``reap`` prints the orchestration
results as a list, ``[]`` when there was nothing to reap, then, if it released any expired
leases, their list on a second line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from flowstate.cli._common import (
    CENTURY_SECONDS,
    MAX_SQL_INT,
    Seconds,
    echo_json,
    json_and_database,
    open_orchestrator,
    plural,
    print_result,
    state_label,
)

if TYPE_CHECKING:
    from flowstate.concurrency import ConcurrencyLease
    from flowstate.orchestrator import Orchestrator
    from flowstate.results import OrchestrationResult
    from flowstate.runs import FlowRun
    from flowstate.states import State

__all__ = ["reap", "worker"]


@click.command()
@click.option("--once", "mode", flag_value="once", default=True, help="Claim once, then exit (default).")
@click.option("--loop", "mode", flag_value="loop",
              help="Keep claiming, polling when idle; Ctrl-C stops it (exit 0, with a summary).")
@click.option("--limit", type=click.IntRange(min=1, max=MAX_SQL_INT), default=10, show_default=True,
              help="Runs claimed per poll.")
@click.option("--poll-interval", type=Seconds(min=0, max=CENTURY_SECONDS), default=5.0,
              show_default=True, help="Seconds between polls when nothing is due (--loop).")
@click.option("--max-polls", type=click.IntRange(min=1), default=None,
              help="Stop after this many polls (--loop).")
@click.option("--name", "worker_name", default="cli-worker", show_default=True,
              help="The worker name recorded with each claim.")
@json_and_database
def worker(
    mode: str, limit: int, poll_interval: float, max_polls: int | None, worker_name: str,
    as_json: bool,
) -> None:
    """Claim due SCHEDULED flow runs (moving them to PENDING) and print them; each poll also
    releases expired concurrency leases.

    With --json: the claimed runs as a list ([] when none is due); with --loop, one list per
    poll that claimed any.
    """
    import time

    once = mode == "once"
    last_poll = 1 if once else max_polls
    polls = claimed_in_all = 0
    with open_orchestrator() as orc:
        try:
            while True:
                _release_expired_leases(orc, as_json=as_json)
                claimed = orc.claim_due_flow_runs(limit=limit, worker=worker_name)
                polls += 1
                claimed_in_all += len(claimed)
                _show_claimed(claimed, as_json=as_json, once=once)
                if last_poll is not None and polls >= last_poll:
                    break
                if not claimed:
                    time.sleep(poll_interval)
        except KeyboardInterrupt:
            summary = f"stopped: claimed {plural(claimed_in_all, 'run')} in {polls} polls"
            click.echo(summary, err=as_json)
            return
        if once and not claimed and not as_json:
            click.echo("no due runs")


def _release_expired_leases(orc: Orchestrator, *, as_json: bool) -> None:
    """Release the concurrency leases nobody renewed in time, naming each (not with --json)."""
    expired = orc.expire_leases()
    if not as_json:
        _say_released(expired)


def _say_released(leases: list[ConcurrencyLease]) -> None:
    """``released expired lease <id> (2 slots of db, api; held by task_run <id>)``, a line each."""
    for lease in leases:
        held = ", ".join(lease.limits) or "no limit"
        holder = "" if lease.holder is None else f"; held by {lease.holder.type} {lease.holder.id}"
        click.echo(f"released expired lease {lease.lease_id} ({plural(lease.slots, 'slot')} of "
                   f"{held}{holder})")


def _show_claimed(claimed: list[FlowRun], *, as_json: bool, once: bool) -> None:
    """Print one poll's claimed runs: a line each, or with --json their list (an empty list only
    with --once)."""
    if as_json:
        if claimed or once:
            echo_json(claimed)
        return
    for run in claimed:
        click.echo(f"claimed  {run.id}  {run.name}  {state_label(run.state)}")


@click.command()
@click.option("--timeout", type=Seconds(min=0, max=CENTURY_SECONDS, min_open=True),
              required=True,
              help="Seconds of silence (no heartbeat) after which a PENDING/RUNNING run is lost.")
@click.option("--late-threshold", type=Seconds(min=0, max=CENTURY_SECONDS), default=None,
              help="Also mark Late the runs still Scheduled this many seconds past their time.")
@json_and_database
def reap(timeout: float, late_threshold: float | None, as_json: bool) -> None:
    """Propose CRASHED for flow runs silent longer than --timeout (and mark late runs); release
    the concurrency leases not renewed before they expired.

    Each run is shown with its name and the state it left; with --json, the orchestration
    results as a list ([] when there is nothing to reap).
    """
    with open_orchestrator() as orc:
        results = orc.mark_lost_runs(timeout=timeout)
        if late_threshold is not None:
            results += orc.mark_late_runs(threshold=late_threshold)
        expired = orc.expire_leases()
        if as_json:
            echo_json(results)
            if expired:
                echo_json(expired)
            return
        if not results and not expired:
            click.echo("nothing to reap")
        for result in results:
            run_id = result.state.state_details.flow_run_id if result.state else None
            if run_id is None:
                print_result(result, before=None, subject="flow run (unknown)")
                continue
            run = orc.read_flow_run(run_id)
            print_result(
                result,
                before=_state_left(orc.read_flow_run_states(run_id), result),
                subject=f"flow run {run_id} ({run.name})",
            )
        _say_released(expired)


def _state_left(history: list[State], result: OrchestrationResult) -> State | None:
    """The state a run was in before ``result``: the one before the state it wrote (the last
    of the history), else the run's current state (nothing was written)."""
    if result.state is not None and history and history[-1].id == result.state.id:
        return history[-2] if len(history) > 1 else None
    return history[-1] if history else None

"""``flowstate worker`` and ``flowstate reap``: claim due runs, crash silent ones, and give back
the slots of concurrency leases nobody renewed in time.

With ``--json``: ``worker`` prints each claimed run (Prefect-shaped) on its own line; ``reap``
prints each orchestration result on its own line, then each expired lease it released.
"""

from __future__ import annotations

import click

from flowstate.cli._common import (
    database_override,
    echo_json,
    json_option,
    open_orchestrator,
    print_result,
    state_label,
)

__all__ = ["reap", "worker"]


@click.command()
@click.option("--once", "mode", flag_value="once", default=True, help="Claim once, then exit (default).")
@click.option("--loop", "mode", flag_value="loop", help="Keep claiming, polling when idle (Ctrl-C stops).")
@click.option("--limit", type=click.IntRange(min=1), default=10, show_default=True,
              help="Runs claimed per poll.")
@click.option("--poll-interval", type=click.FloatRange(min=0), default=5.0, show_default=True,
              help="Seconds between polls when nothing is due (--loop).")
@click.option("--max-polls", type=click.IntRange(min=1), default=None,
              help="Stop after this many polls (--loop).")
@click.option("--name", "worker_name", default="cli-worker", show_default=True,
              help="The worker name recorded with each claim.")
@json_option
@database_override
def worker(mode: str, limit: int, poll_interval: float, max_polls: int | None, worker_name: str,
           as_json: bool, database: str | None) -> None:
    """Claim due SCHEDULED flow runs (moving them to PENDING) and print them; each poll also
    releases expired concurrency leases."""
    import time

    from flowstate.cli.limits import describe_lease

    polls = 0
    with open_orchestrator(database) as orc:
        while True:
            for lease in orc.expire_leases():
                if not as_json:
                    click.echo(f"released expired lease {describe_lease(lease)}")
            claimed = orc.claim_due_flow_runs(limit=limit, worker=worker_name)
            polls += 1
            for run in claimed:
                if as_json:
                    echo_json(run)
                else:
                    click.echo(f"claimed  {run.id}  {run.name}  {state_label(run.state)}")
            if mode == "once" or (max_polls is not None and polls >= max_polls):
                break
            if not claimed:
                time.sleep(poll_interval)
        if mode == "once" and not claimed and not as_json:
            click.echo("no due runs")


@click.command()
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), required=True,
              help="Seconds of silence (no heartbeat) after which a PENDING/RUNNING run is lost.")
@click.option("--late-threshold", type=click.FloatRange(min=0), default=None,
              help="Also mark Late the runs still Scheduled this many seconds past their time.")
@json_option
@database_override
def reap(timeout: float, late_threshold: float | None, as_json: bool, database: str | None) -> None:
    """Propose CRASHED for flow runs silent longer than --timeout (and mark late runs); release
    the concurrency leases not renewed before they expired."""
    from flowstate.cli.limits import describe_lease

    with open_orchestrator(database) as orc:
        results = orc.mark_lost_runs(timeout=timeout)
        if late_threshold is not None:
            results += orc.mark_late_runs(threshold=late_threshold)
        expired = orc.expire_leases()
    if as_json:
        for result in results:
            echo_json(result)
        for lease in expired:
            echo_json(lease)
        return
    if not results and not expired:
        click.echo("nothing to reap")
    for result in results:
        run_id = result.state.state_details.flow_run_id if result.state else None
        print_result(result, before=None, subject=f"flow run {run_id}")
    for lease in expired:
        click.echo(f"released expired lease {describe_lease(lease)}")

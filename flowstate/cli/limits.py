"""``flowstate limits ls|create|update|inspect|reset|delete``: global concurrency limits and rate
limits, with the leases that hold their slots.

With ``--json``: ``ls`` prints a JSON array of limits (Prefect's shape); ``create``,
``update`` and ``reset`` print the limit; ``inspect`` prints ``{"limit": ..., "holders": [leases],
"deployments": [deployments whose runs share it]}``.

A deployment's limit is the limit ``deployment:<deployment id>``; ``inspect`` also takes
``deployment:<deployment name>``. A tag limit is the limit ``tag:<tag>`` (``flowstate limits
create tag:warehouse 2``): at most that many task runs tagged ``warehouse`` RUNNING at once; its
holders are those task runs.
"""

from __future__ import annotations

from collections import Counter
from contextlib import suppress
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING
from uuid import UUID

import click

from flowstate.cli._common import (
    DASH,
    console,
    database_override,
    duration,
    echo_json,
    echo_result,
    fields_table,
    json_and_database,
    open_orchestrator,
    plural,
)
from flowstate.cli._common import table as make_table

if TYPE_CHECKING:
    from rich.table import Table

    from flowstate import FlowRun, Orchestrator, TaskRun
    from flowstate.concurrency import ConcurrencyLease, Deployment, GlobalConcurrencyLimit

__all__ = ["limits"]


@click.group()
def limits() -> None:
    """Global concurrency limits and rate limits, and who holds their slots."""


@limits.command("ls")
@json_and_database
def list_limits(as_json: bool) -> None:
    """Every limit, by name, with the slots held and the number of holders (leases)."""
    with open_orchestrator() as orc:
        found = orc.read_global_concurrency_limits()
        leases = orc.read_concurrency_leases()
        users = _deployments_by_limit(orc.read_deployments())
    if as_json:
        echo_json(found)
        return
    holders = Counter(name for lease in leases for name in lease.limits)
    table = make_table(f"Concurrency limits ({len(found)})",
                   ("name", "held", "limit", "active", "decay/s", "holders", "deployments"))
    for limit in found:
        table.add_row(
            limit.name,
            str(limit.active_slots),
            str(limit.limit),
            "yes" if limit.active else "no",
            f"{limit.slot_decay_per_second:g}" if limit.slot_decay_per_second else DASH,
            str(holders[limit.name]),
            ", ".join(d.name for d in users.get(limit.id, ())) or DASH,
        )
    console().print(table)


# (a negative LIMIT such as -1 is read as the argument, not as an unknown option "-1")
@limits.command("create", context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("limit", type=int)
@click.option("--decay", type=float, default=0.0, metavar="R",
              help="Slots freed per second by themselves: a rate limit (taken with rate_limit()).")
@click.option("--inactive", is_flag=True,
              help="Create it inactive: it restricts nothing until "
              "'flowstate limits update NAME --active'.")
@json_and_database
def create_limit(name: str, limit: int, decay: float, inactive: bool, as_json: bool) -> None:
    """Create the limit NAME of LIMIT slots."""
    with open_orchestrator() as orc:
        created = orc.create_global_concurrency_limit(
            name, limit, slot_decay_per_second=decay, active=not inactive)
    kind = f"rate limit ({decay:g} slots/s)" if decay else "concurrency limit"
    echo_result(created, f"created {kind} {name!r}: {plural(limit, 'slot')}", as_json=as_json)


@limits.command("update")
@click.argument("name")
@click.option("--limit", "new_limit", type=int, metavar="N", help="The number of slots.")
@click.option("--decay", type=float, metavar="R",
              help="Slots freed per second by themselves (0: none).")
@click.option("--active/--inactive", default=None, help="Make it restrict, or restrict nothing.")
@json_and_database
def update_limit(
    name: str, new_limit: int | None, decay: float | None, active: bool | None, as_json: bool
) -> None:
    """Change a limit's slots, decay or activity; the slots held stay held."""
    given = {"limit": new_limit, "slot_decay_per_second": decay, "active": active}
    changes = {field: value for field, value in given.items() if value is not None}
    if not changes:
        raise click.UsageError("nothing to change: give --limit, --decay, --active or --inactive")
    with open_orchestrator() as orc:
        limit = orc.update_global_concurrency_limit(name, **changes)  # type: ignore[arg-type]
    state = "active" if limit.active else "inactive (restricts nothing)"
    decay = limit.slot_decay_per_second
    rate = f"; a rate limit ({decay:g} slots/s)" if decay else ""
    echo_result(limit, f"updated {name!r}: {limit.active_slots} of {limit.limit} slots held; "
                f"{state}{rate}", as_json=as_json)


@limits.command("inspect")
@click.argument("name")
@json_and_database
def inspect_limit(name: str, as_json: bool) -> None:
    """A limit's fields, the deployments whose runs share it and the leases holding its slots
    (NAME may be deployment:<deployment name>, or tag:<tag> for a tag limit)."""
    with open_orchestrator() as orc:
        deployments = orc.read_deployments()
        limit = orc.read_global_concurrency_limit(_limit_name(name, deployments))
        holders = orc.read_concurrency_leases(limit.name)
        users = _deployments_by_limit(deployments).get(limit.id, [])
        runs = _holding_runs(orc, holders)
    if as_json:
        echo_json({"limit": limit, "holders": holders, "deployments": users})
        return
    out = console()
    out.print(_fields(limit, users))
    out.print(_holders(holders, runs))


@limits.command("reset")
@click.argument("name")
@json_and_database
def reset_limit(name: str, as_json: bool) -> None:
    """Empty a limit: no slot held, and its holders' leases no longer hold it."""
    with open_orchestrator() as orc:
        before = len(orc.read_concurrency_leases(name))
        limit = orc.reset_global_concurrency_limit(name)
    echo_result(limit, f"reset {name!r}: 0 of {limit.limit} slots held; "
                f"{plural(before, 'holder')} let go", as_json=as_json)


@limits.command("delete")
@click.argument("name")
@database_override
def delete_limit(name: str) -> None:
    """Delete a limit (the leases on it stay, holding nothing of it)."""
    with open_orchestrator() as orc:
        orc.delete_global_concurrency_limit(name)
    click.echo(f"deleted {name!r}")


def _deployments_by_limit(deployments: list[Deployment]) -> dict[UUID, list[Deployment]]:
    """Limit id -> the deployments whose runs share it."""
    found: dict[UUID, list[Deployment]] = {}
    for deployment in deployments:
        if deployment.global_concurrency_limit is not None:
            found.setdefault(deployment.global_concurrency_limit.id, []).append(deployment)
    return found


def _limit_name(name: str, deployments: list[Deployment]) -> str:
    """``deployment:<deployment name>`` as the limit of that deployment; any other name as is."""
    prefix, _, rest = name.partition(":")
    if prefix != "deployment":
        return name
    for deployment in deployments:
        if deployment.name == rest and deployment.global_concurrency_limit is not None:
            return deployment.global_concurrency_limit.name
    return name


def _holding_runs(
    orc: Orchestrator, leases: list[ConcurrencyLease]
) -> dict[UUID, FlowRun | TaskRun]:
    """The flow and task runs holding these leases (a deleted run is left out)."""
    from flowstate.errors import ObjectNotFound

    found: dict[UUID, FlowRun | TaskRun] = {}
    for lease in leases:
        holder = lease.holder
        if holder is None or holder.type not in ("flow_run", "task_run"):
            continue
        read = orc.read_flow_run if holder.type == "flow_run" else orc.read_task_run
        with suppress(ObjectNotFound):
            found[holder.id] = read(holder.id)
    return found


def _fields(limit: GlobalConcurrencyLimit, users: list[Deployment]) -> Table:
    tag = limit.name[len("tag:"):] if limit.name.startswith("tag:") else None
    rows = {
        "name": limit.name,
        **({"tag": f"{tag} (task runs tagged {tag!r} hold its slots while RUNNING)"} if tag else {}),
        "id": str(limit.id),
        "held": f"{limit.active_slots} of {limit.limit}",
        "active": "yes" if limit.active else "no (restricts nothing)",
        "decay": f"{limit.slot_decay_per_second:g} slots/s (a rate limit)"
        if limit.slot_decay_per_second else DASH,
        "avg occupancy": f"{limit.avg_slot_occupancy_seconds:.3f} s",
        "deployments": ", ".join(f"{d.name} ({d.id})" for d in users) or DASH,
        "updated": limit.updated.isoformat(timespec="milliseconds"),
    }
    return fields_table("Concurrency limit", rows)


def _holders(leases: list[ConcurrencyLease], runs: dict[UUID, FlowRun | TaskRun]) -> Table:
    table = make_table(f"Holders ({len(leases)})", ("lease", "slots", "holder", "held for", "expires in"))
    now = datetime.now(timezone.utc)
    for lease in leases:
        left = lease.expiration - now
        holder = DASH if lease.holder is None else f"{lease.holder.type} {lease.holder.id}"
        run = None if lease.holder is None else runs.get(lease.holder.id)
        if run is not None:
            state = DASH if run.state_type is None else run.state_type.value
            holder += f" ({run.name}, {state})"
        table.add_row(
            str(lease.lease_id),
            str(lease.slots),
            holder,
            duration(max(now - lease.created, timedelta(0))),
            "expired" if left.total_seconds() < 0 else duration(left),
        )
    return table

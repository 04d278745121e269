"""``flowstate limits ...``, and ``reap`` / ``worker`` releasing expired leases."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone
from uuid import uuid4

from click.testing import CliRunner

from flowstate import ConcurrencyLease, Deployment, GlobalConcurrencyLimit, Orchestrator
from flowstate.cli import main
from flowstate.states import Pending
from flowstate.testing import FrozenClock


def cli(path: str, *args: str):
    return CliRunner().invoke(main, ["--database", path, "limits", *args])


def test_create_ls_inspect_reset_delete(tmp_path):
    path = str(tmp_path / "l.db")
    assert cli(path, "create", "warehouse", "2").output == "created concurrency limit 'warehouse': 2 slots\n"
    made = cli(path, "create", "api", "10", "--decay", "5", "--json")
    assert made.exit_code == 0
    api = GlobalConcurrencyLimit.model_validate(json.loads(made.output))
    assert (api.limit, api.slot_decay_per_second) == (10, 5.0)
    run = uuid4()
    with Orchestrator(path) as orc:
        lease = orc.increment_concurrency_slots_with_lease(
            "warehouse", 1, holder={"type": "task_run", "id": run})
    listed = cli(path, "ls")
    assert listed.exit_code == 0
    rows = {line.split("│")[1].strip(): line for line in listed.output.splitlines() if "│" in line}
    assert [cell.strip() for cell in rows["warehouse"].split("│")[1:-1]] == [
        "warehouse", "1", "2", "yes", "—", "1", "—"]
    assert [cell.strip() for cell in rows["api"].split("│")[1:-1]] == [
        "api", "0", "10", "yes", "5", "0", "—"]
    as_json = json.loads(cli(path, "ls", "--json").output)
    assert [limit["name"] for limit in as_json] == ["api", "warehouse"]
    shown = cli(path, "inspect", "warehouse")
    assert shown.exit_code == 0 and "1 of 2" in shown.output and "Holders (1)" in shown.output
    detail = json.loads(cli(path, "inspect", "warehouse", "--json").output)
    [holder] = [ConcurrencyLease.model_validate(item) for item in detail["holders"]]
    assert holder.lease_id == lease.lease_id and holder.holder.id == run
    assert detail["limit"]["active_slots"] == 1
    reset = cli(path, "reset", "warehouse")
    assert reset.output == "reset 'warehouse': 0 of 2 slots held; 1 holder let go\n"
    assert json.loads(cli(path, "inspect", "warehouse", "--json").output)["holders"] == []
    assert cli(path, "delete", "api").output == "deleted 'api'\n"
    assert [limit["name"] for limit in json.loads(cli(path, "ls", "--json").output)] == ["warehouse"]


def test_errors_are_one_line_with_exit_code_1(tmp_path):
    path = str(tmp_path / "l.db")
    cli(path, "create", "warehouse", "2")
    for args, message in (
        (("create", "warehouse", "3"), "ObjectAlreadyExists: a global concurrency limit named 'warehouse'"),
        (("inspect", "nope"), "ObjectNotFound: Global concurrency limit 'nope' not found"),
        (("reset", "nope"), "ObjectNotFound"),
        (("delete", "nope"), "ObjectNotFound"),
        (("create", "api", "2", "--decay", "-1"), "InvalidState: slot_decay_per_second=-1.0"),
        (("create", "api", "--", "-1"), "InvalidState: limit=-1; expected a whole number"),
        (("create", "api", "-1"), "InvalidState: limit=-1; expected a whole number"),
        (("create", "api", str(2**63)), "InvalidState: limit=9223372036854775808; expected"),
        (("create", "api", "9" * 30), "InvalidState: limit=999"),
    ):
        result = cli(path, *args)
        assert result.exit_code == 1, args
        assert isinstance(result.exception, SystemExit), (args, result.exception)  # not a crash
        assert message in result.output and result.output.count("\n") == 1, result.output
    assert cli(path, "create", "x", "two").exit_code == 2


def _expired_lease(path: str) -> ConcurrencyLease:
    """A lease taken two hours ago for a minute, by a holder that never came back."""
    clock = FrozenClock(datetime.now(timezone.utc) - timedelta(hours=2))
    with Orchestrator(path, clock=clock) as orc:
        orc.create_global_concurrency_limit("warehouse", 1)
        return orc.increment_concurrency_slots_with_lease("warehouse", 1, lease_duration=60)


def test_reap_releases_expired_leases(tmp_path):
    path = str(tmp_path / "r.db")
    lease = _expired_lease(path)
    result = CliRunner().invoke(main, ["--database", path, "reap", "--timeout", "3600", "--json"])
    assert result.exit_code == 0, result.output
    results, leases = result.output.splitlines()  # no run to reap: [], then the leases
    assert json.loads(results) == []
    [released] = json.loads(leases)
    assert ConcurrencyLease.model_validate(released).lease_id == lease.lease_id
    with Orchestrator(path) as orc:
        assert orc.read_global_concurrency_limit("warehouse").active_slots == 0
    again = CliRunner().invoke(main, ["--database", path, "reap", "--timeout", "3600"])
    assert again.output == "nothing to reap\n"


def test_reap_says_which_lease_it_released(tmp_path):
    path = str(tmp_path / "r.db")
    lease = _expired_lease(path)
    result = CliRunner().invoke(main, ["--database", path, "reap", "--timeout", "3600"])
    assert result.output == f"released expired lease {lease.lease_id} (1 slot of warehouse)\n"


def test_the_worker_loop_releases_expired_leases(tmp_path):
    path = str(tmp_path / "w.db")
    _expired_lease(path)
    result = CliRunner().invoke(main, ["--database", path, "worker", "--once"])
    assert result.exit_code == 0 and "released expired lease" in result.output
    _expired_lease(str(tmp_path / "w2.db"))
    with Orchestrator(str(tmp_path / "w2.db")) as orc:
        stop = threading.Event()
        stop.set()  # one poll: none
        assert list(orc.iter_due_flow_runs(stop=stop)) == []
        assert orc.read_global_concurrency_limit("warehouse").active_slots == 1
        polls = orc.iter_due_flow_runs(poll_interval=0.05, stop=stop)
        stop.clear()
        threading.Timer(0.2, stop.set).start()
        assert list(polls) == []
        assert orc.read_global_concurrency_limit("warehouse").active_slots == 0


def test_update_changes_a_limit_and_keeps_the_slots_held(tmp_path):
    path = str(tmp_path / "l.db")
    assert cli(path, "create", "warehouse", "2", "--inactive").exit_code == 0
    with Orchestrator(path) as orc:
        orc.update_global_concurrency_limit("warehouse", active_slots=1)
    activated = cli(path, "update", "warehouse", "--active")
    assert activated.output == "updated 'warehouse': 1 of 2 slots held; active\n"
    changed = cli(path, "update", "warehouse", "--limit", "3", "--json")
    assert changed.exit_code == 0
    limit = GlobalConcurrencyLimit.model_validate(json.loads(changed.output))
    assert (limit.limit, limit.active, limit.active_slots) == (3, True, 1)
    assert cli(path, "update", "warehouse", "--inactive").output.endswith(
        "1 of 3 slots held; inactive (restricts nothing)\n")
    nothing = cli(path, "update", "warehouse")
    assert nothing.exit_code == 2 and "nothing to change" in nothing.output
    for args, message in (
        (("update", "nope", "--active"), "ObjectNotFound: Global concurrency limit 'nope'"),
        (("update", "warehouse", "--limit=-1"), "InvalidState: limit=-1"),
        (("update", "warehouse", "--decay", "nan"), "InvalidState: slot_decay_per_second=nan"),
    ):
        result = cli(path, *args)
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit), args
        assert message in result.output and result.output.count("\n") == 1, result.output
    with Orchestrator(path) as orc:
        kept = orc.read_global_concurrency_limit("warehouse")
    assert (kept.limit, kept.active, kept.active_slots) == (3, False, 1)


def test_deployment_limits_are_shown_with_their_deployments_and_holding_runs(tmp_path):
    path = str(tmp_path / "l.db")
    with Orchestrator(path) as orc:
        nightly = orc.create_deployment("nightly", concurrency_limit=1)
        shared = orc.create_global_concurrency_limit("warehouse", 3)
        orc.create_deployment("hourly", global_concurrency_limit_id=shared.id)
        run = orc.create_flow_run(name="monday-load", deployment_id=nightly.id)
        orc.set_flow_run_state(run.id, Pending())
    own = f"deployment:{nightly.id}"
    listed = CliRunner().invoke(main, ["--database", path, "limits", "ls"], env={"COLUMNS": "250"})
    rows = {line.split("│")[1].strip(): line for line in listed.output.splitlines() if "│" in line}
    assert [cell.strip() for cell in rows[own].split("│")[1:-1]] == [
        own, "1", "1", "yes", "—", "1", "nightly"]
    assert rows["warehouse"].split("│")[-2].strip() == "hourly"

    by_name = CliRunner().invoke(
        main, ["--database", path, "limits", "inspect", "deployment:nightly"], env={"COLUMNS": "250"})
    assert by_name.exit_code == 0, by_name.output
    assert own in by_name.output and f"nightly ({nightly.id})" in by_name.output
    assert f"flow_run {run.id} (monday-load, PENDING)" in by_name.output
    detail = json.loads(cli(path, "inspect", own, "--json").output)
    [holder] = [ConcurrencyLease.model_validate(item) for item in detail["holders"]]
    assert (holder.holder.type, holder.holder.id) == ("flow_run", run.id)
    assert [Deployment.model_validate(item).name for item in detail["deployments"]] == ["nightly"]
    missing = cli(path, "inspect", "deployment:nope")
    assert missing.exit_code == 1
    assert "ObjectNotFound: Global concurrency limit 'deployment:nope' not found" in missing.output


def test_tag_limits_are_shown_with_the_task_runs_holding_them(tmp_path):
    from flowstate.states import Running

    path = str(tmp_path / "l.db")
    assert cli(path, "create", "tag:warehouse", "2").exit_code == 0
    with Orchestrator(path) as orc:
        flow = orc.create_flow_run(state=Running())
        load = orc.create_task_run(flow_run_id=flow.id, name="load-orders", tags=["warehouse"])
        orc.set_task_run_state(load.id, Running())
        assert orc.read_concurrency_limit("warehouse").active_slots == [load.id]
    listed = CliRunner().invoke(main, ["--database", path, "limits", "ls"], env={"COLUMNS": "250"})
    rows = {line.split("│")[1].strip(): line for line in listed.output.splitlines() if "│" in line}
    assert [cell.strip() for cell in rows["tag:warehouse"].split("│")[1:-1]] == [
        "tag:warehouse", "1", "2", "yes", "—", "1", "—"]
    shown = CliRunner().invoke(
        main, ["--database", path, "limits", "inspect", "tag:warehouse"], env={"COLUMNS": "250"})
    assert shown.exit_code == 0, shown.output
    assert "task runs tagged 'warehouse'" in shown.output
    assert f"task_run {load.id} (load-orders, RUNNING)" in shown.output
    detail = json.loads(cli(path, "inspect", "tag:warehouse", "--json").output)
    [holder] = [ConcurrencyLease.model_validate(item) for item in detail["holders"]]
    assert (holder.holder.type, holder.holder.id, holder.limits) == (
        "task_run", load.id, ["tag:warehouse"])

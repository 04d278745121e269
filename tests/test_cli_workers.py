"""``flowstate worker`` and ``flowstate reap``."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone

from click.testing import CliRunner

from flowstate import FlowRun, Orchestrator, OrchestrationResult, StateType
from flowstate.cli import main
from flowstate.states import Running, Scheduled


def make_db(tmp_path, *, due=2, future=1, running=1):
    path = str(tmp_path / "w.db")
    now = datetime.now(timezone.utc)
    with Orchestrator(path) as orc:
        for _ in range(due):
            orc.create_flow_run(state=Scheduled(now - timedelta(minutes=1)))
        for _ in range(future):
            orc.create_flow_run(state=Scheduled(now + timedelta(hours=1)))
        for _ in range(running):
            orc.create_flow_run(state=Running(), heartbeat_timeout=0.001)
    return path


def test_worker_once_claims_the_due_runs_and_prints_them(tmp_path):
    path = make_db(tmp_path)
    result = CliRunner().invoke(main, ["--database", path, "worker", "--once", "--json"])
    assert result.exit_code == 0, result.output
    runs = [FlowRun.model_validate(json.loads(line)) for line in result.output.splitlines()]
    assert len(runs) == 2 and all(r.state_type is StateType.PENDING for r in runs)
    again = CliRunner().invoke(main, ["--database", path, "worker"])
    assert again.exit_code == 0 and "no due runs" in again.output


def test_worker_loop_stops_after_max_polls(tmp_path):
    path = make_db(tmp_path, due=3)
    result = CliRunner().invoke(main, ["--database", path, "worker", "--loop", "--limit", "1",
                                       "--poll-interval", "0", "--max-polls", "5"])
    assert result.exit_code == 0
    assert result.output.count("claimed") == 3


def test_reap_crashes_silent_runs_once(tmp_path):
    path = make_db(tmp_path, due=0, future=0, running=1)
    result = CliRunner().invoke(main, ["--database", path, "reap", "--timeout", "3600", "--json"])
    assert result.exit_code == 0, result.output
    [line] = result.output.splitlines()
    crashed = OrchestrationResult.model_validate(json.loads(line))
    assert crashed.state.type is StateType.CRASHED  # the run's own 1 ms timeout applied
    assert "nothing to reap" in CliRunner().invoke(main, ["--database", path, "reap", "--timeout", "1"]).output


def test_reap_needs_a_positive_timeout(tmp_path):
    result = CliRunner().invoke(main, ["--database", str(tmp_path / "x.db"), "reap", "--timeout", "0"])
    assert result.exit_code == 2


def test_worker_and_reap_in_a_real_process(tmp_path):
    path = make_db(tmp_path, due=1, running=0)
    worker = subprocess.run([sys.executable, "-m", "flowstate", "--database", path, "worker"],
                            capture_output=True, text=True, timeout=60)
    assert worker.returncode == 0 and worker.stdout.startswith("claimed")
    reap = subprocess.run([sys.executable, "-m", "flowstate", "--database", path, "reap",
                           "--timeout", "3600", "--late-threshold", "15"],
                          capture_output=True, text=True, timeout=60)
    assert reap.returncode == 0 and "Traceback" not in reap.stderr

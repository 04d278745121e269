"""``flowstate worker`` and ``flowstate reap``."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest
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
    [line] = result.output.splitlines()
    runs = [FlowRun.model_validate(run) for run in json.loads(line)]
    assert len(runs) == 2 and all(r.state_type is StateType.PENDING for r in runs)
    again = CliRunner().invoke(main, ["--database", path, "worker"])
    assert again.exit_code == 0 and "no due runs" in again.output
    as_json = CliRunner().invoke(main, ["--database", path, "worker", "--json"])
    assert as_json.exit_code == 0 and as_json.output == "[]\n"


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
    [crashed] = [OrchestrationResult.model_validate(item) for item in json.loads(line)]
    assert crashed.state.type is StateType.CRASHED  # the run's own 1 ms timeout applied
    assert "nothing to reap" in CliRunner().invoke(main, ["--database", path, "reap", "--timeout", "1"]).output
    nothing = CliRunner().invoke(main, ["--database", path, "reap", "--timeout", "1", "--json"])
    assert nothing.exit_code == 0 and nothing.output == "[]\n"


def test_reap_shows_the_run_by_name_and_the_state_it_left(tmp_path):
    path = str(tmp_path / "w.db")
    with Orchestrator(path) as orc:
        run = orc.create_flow_run(name="silent-otter", state=Running(), heartbeat_timeout=0.001)
    result = CliRunner().invoke(main, ["--database", path, "reap", "--timeout", "3600"])
    assert result.exit_code == 0, result.output
    assert f"flow run {run.id} (silent-otter)" in result.output
    assert "RUNNING (Running) → CRASHED (Crashed)" in result.output
    assert "—" not in result.output


def test_worker_loop_stopped_by_ctrl_c_exits_0_after_a_one_line_summary(tmp_path):
    import signal

    path = make_db(tmp_path, due=1, future=0, running=0)
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowstate", "--database", path, "worker", "--loop",
         "--poll-interval", "0.05"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # Ctrl-C as at a terminal, even if this process was started with SIGINT ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        first = proc.stdout.readline()  # it claimed the due run: it is in its loop now
        assert first.startswith("claimed"), first
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert out.splitlines()[-1].startswith("stopped: claimed 1 run in ")
    assert "Traceback" not in err and "Aborted" not in err + out


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


def _running_and_due(tmp_path):
    path = str(tmp_path / "n.db")
    now = datetime.now(timezone.utc)
    with Orchestrator(path) as orc:
        running = orc.create_flow_run(state=Running()).id
        due = orc.create_flow_run(state=Scheduled(now - timedelta(hours=1))).id
    return path, running, due


@pytest.mark.parametrize(
    "args",
    [
        ["reap", "--timeout", "nan"],
        ["reap", "--timeout", "inf"],
        ["reap", "--timeout", "3600", "--late-threshold", "nan"],
        ["reap", "--timeout", "3600", "--late-threshold", "inf"],
        ["reap", "--timeout", "1e300"],
        ["reap", "--timeout", "3600", "--late-threshold", "1e300"],
        ["worker", "--limit", "99999999999999999999"],
        ["worker", "--loop", "--max-polls", "3", "--poll-interval", "nan"],
        ["worker", "--loop", "--max-polls", "3", "--poll-interval", "inf"],
        ["worker", "--loop", "--max-polls", "3", "--poll-interval", "1e300"],
    ],
    ids=" ".join,
)
def test_worker_and_reap_refuse_numbers_no_clock_or_database_can_take(tmp_path, args):
    path, running, due = _running_and_due(tmp_path)
    result = CliRunner().invoke(main, ["--database", path, *args])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Invalid value for" in result.output
    with Orchestrator(path) as orc:  # nothing was crashed, claimed or marked late
        assert orc.read_flow_run(running).state.name == "Running"
        assert orc.read_flow_run(due).state.name == "Scheduled"

"""Worker processes driving runs through a PostgreSQL outage (``pg_ctl stop -m immediate``).

    python -m tests.reliability.pg_outage [--workers 8] [--outage 5] [--runs 3000]

starts a throwaway cluster of its own (``scripts/pg-cluster``), schedules ``--runs`` due flow
runs, and starts ``--workers`` processes, each with one Orchestrator that claims a run
(``claim_due_flow_runs``) and drives it to Running and Completed, one call at a time, logging
every call. Once every worker has made progress, the server is stopped abruptly for
``--outage`` seconds and started again; the workers keep going for ``--after`` seconds. Then:

- every acknowledged claim and transition must be in the history (none lost);
- no run may be claimed twice (by the workers' logs and by the runs' histories);
- every worker must make a successful call within ``--recover-within`` seconds of the restart.

It prints the figures as JSON and exits 1 if a check fails. ``tests/reliability/
test_postgres_outages.py`` runs a shorter version (``run_outage``) in the suite.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
WORKER_TIME_LIMIT = 300.0
"""No worker process runs longer than this, whatever happens to its stop file."""


# -- one worker process --------------------------------------------------------------------------


def worker(name: str, url: str, log_path: Path, stop_file: Path) -> None:
    """Claim and drive runs until ``stop_file`` exists, logging each call as a JSON line."""
    from flowstate import DatabaseError, Orchestrator, StateType
    from flowstate.states import Completed, Running

    log = log_path.open("a", encoding="utf-8")

    def note(kind: str, started: float, **fields: Any) -> None:
        fields.update(kind=kind, t=time.time(), dt=time.monotonic() - started)
        log.write(json.dumps(fields) + "\n")
        log.flush()

    orc = Orchestrator(url, call_timeout=10)
    current: str | None = None  # the run being driven
    state: StateType | None = None  # its state as last acknowledged (None: to be re-read)
    began = time.monotonic()
    while time.monotonic() - began < WORKER_TIME_LIMIT and not stop_file.exists():
        started = time.monotonic()
        try:
            if current is None:
                claimed = orc.claim_due_flow_runs(limit=1, worker=name)
                if not claimed:
                    note("idle", started)
                    time.sleep(0.05)
                    continue
                run = claimed[0]
                current, state = str(run.id), StateType.PENDING
                assert run.state is not None
                note("claim", started, run=current, state=str(run.state.id))
            elif state is None:
                state = orc.read_flow_run(current).state_type  # resync after an error
                note("read", started, run=current, type=None if state is None else state.value)
            else:
                proposed = Running() if state is StateType.PENDING else Completed()
                result = orc.set_flow_run_state(current, proposed)
                if result.status.value == "ACCEPT":
                    assert result.state is not None
                    state = result.state.type
                    note("ack", started, run=current, state=str(result.state.id), type=state.value)
                else:
                    state = None
                    note("refused", started, run=current, reason=str(result.details))
            if state is StateType.COMPLETED:
                current, state = None, None
        except DatabaseError as exc:
            note("error", started, run=current, error=str(exc)[:200])
            state = None
            time.sleep(0.02)
    orc.close()
    log.close()


# -- the driver ----------------------------------------------------------------------------------


def _read_log(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            pass  # a line cut by a kill
    return entries


def _schedule(url: str, count: int) -> None:
    from flowstate import Orchestrator
    from flowstate.states import Scheduled

    with Orchestrator(url) as orc:
        for first in range(0, count, 250):
            with orc.transaction():
                for _ in range(min(250, count - first)):
                    orc.create_flow_run(flow_name="outage", state=Scheduled())


def _history(url: str) -> tuple[set[str], dict[str, int], set[str]]:
    """Every state id in the history, each run's number of PENDING states, and the runs
    still PENDING or RUNNING."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        ids = {row[0] for row in conn.execute("SELECT id FROM flow_run_state")}
        pending = dict(
            conn.execute(
                "SELECT flow_run_id, count(*) FROM flow_run_state WHERE type = 'PENDING' "
                "GROUP BY flow_run_id"
            ).fetchall()
        )
        active = {
            row[0]
            for row in conn.execute(
                "SELECT id FROM flow_run WHERE state_type IN ('PENDING', 'RUNNING')"
            )
        }
    return ids, pending, active


def run_outage(
    cluster: Any,
    *,
    workers: int,
    outage: float,
    runs: int,
    after: float = 3.0,
    recover_within: float = 1.0,
    folder: Path,
) -> dict[str, Any]:
    """Run the experiment on ``cluster`` (a ``tests.reliability.pg_server.OwnCluster``); return
    its figures, with ``ok`` True when every check held."""
    url = cluster.url
    _schedule(url, runs)
    stop_file = folder / "stop"
    logs = [folder / f"w{i}.jsonl" for i in range(workers)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.pg_outage", "--worker", f"w{i}",
             "--url", url, "--log", str(logs[i]), "--stop-file", str(stop_file)],
            cwd=REPO,
        )
        for i in range(workers)
    ]
    try:
        waited = time.monotonic()
        while time.monotonic() - waited < 120:
            if all(any(e["kind"] == "ack" for e in _read_log(log)) for log in logs):
                break
            time.sleep(0.1)
        else:
            raise RuntimeError("the workers made no progress within 120 s")
        down_at = time.time()
        cluster.stop()
        stopped_at = time.time()
        time.sleep(outage)
        cluster.restart()
        up_at = time.time()
        time.sleep(after)
    finally:
        stop_file.touch()
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    entries = {f"w{i}": _read_log(log) for i, log in enumerate(logs)}
    acknowledged: dict[str, str] = {}  # state id -> worker
    claims: dict[str, list[str]] = {}  # run id -> workers that were told they claimed it
    recovery: dict[str, float | None] = {}
    errors_while_down: list[float] = []
    for name, log in entries.items():
        for e in log:
            if e["kind"] in ("claim", "ack"):
                acknowledged[e["state"]] = name
            if e["kind"] == "claim":
                claims.setdefault(e["run"], []).append(name)
            if e["kind"] == "error" and down_at <= e["t"] <= up_at:
                errors_while_down.append(e["dt"])
        firsts = [e["t"] for e in log if e["kind"] != "error" and e["t"] - e["dt"] >= up_at - 1e-3]
        fails_after = [e["t"] for e in log if e["kind"] == "error" and e["t"] >= up_at]
        first_ok = min((t for t in firsts if not fails_after or t > max(fails_after)), default=None)
        recovery[name] = None if first_ok is None else round(first_ok - up_at, 3)

    history, pending, active = _history(url)
    lost = sorted(set(acknowledged) - history)
    double_claims = sorted(run for run, names in claims.items() if len(names) > 1)
    double_pending = sorted(run for run, count in pending.items() if count > 1)
    recovered = [v for v in recovery.values() if v is not None]
    figures: dict[str, Any] = {
        "workers": workers,
        "outage_seconds": outage,
        "stop_took_seconds": round(stopped_at - down_at, 3),
        "acknowledged": len(acknowledged),
        "acknowledged_found": len(acknowledged) - len(lost),
        "lost": len(lost),
        "claims": sum(len(n) for n in claims.values()),
        "double_claims_in_logs": len(double_claims),
        "runs_with_two_pending_states": len(double_pending),
        # runs a worker was driving when told to stop, and claims whose commit reached the
        # server but whose answer did not (the worker saw an error): mark_lost_runs reaps them
        "runs_left_active": len(active),
        "runs_claimed_unacknowledged": len(active - set(claims)),
        "failed_calls_while_down": len(errors_while_down),
        "slowest_failed_call_while_down_seconds": round(max(errors_while_down, default=0.0), 3),
        "recovery_seconds_after_restart": recovery,
        "slowest_recovery_seconds": max(recovered, default=None),
    }
    figures["ok"] = (
        not lost
        and not double_claims
        and not double_pending
        and len(recovered) == workers
        and max(recovered) <= recover_within
    )
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--outage", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3000)
    parser.add_argument("--after", type=float, default=3.0)
    parser.add_argument("--recover-within", type=float, default=1.0)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--log", help=argparse.SUPPRESS)
    parser.add_argument("--stop-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.url, Path(args.log), Path(args.stop_file))
        return 0

    from tests.reliability.pg_server import OwnCluster

    with tempfile.TemporaryDirectory(prefix="flowstate-outage-") as tmp:
        cluster = OwnCluster(Path(tmp) / "pg")
        try:
            figures = run_outage(
                cluster,
                workers=args.workers,
                outage=args.outage,
                runs=args.runs,
                after=args.after,
                recover_within=args.recover_within,
                folder=Path(tmp),
            )
        finally:
            cluster.close()
    print(json.dumps(figures, indent=2))
    return 0 if figures["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

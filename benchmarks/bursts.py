"""Writers that write in bursts, not flat out: ``python -m benchmarks.bursts [--writers 3]
[--gap 0.002] [--runs 150]``.

Each of ``--writers`` processes opens its own Orchestrator on one SQLite file and drives
``--runs`` flow runs through create, Scheduled, Pending, Running and Completed, sleeping
``--gap`` seconds after each transition, as a worker does between the steps of real work. Every
call is timed. Prints, as JSON, the p50/p99/max call latency over all processes: what a writer
that is not saturating the lock waits for the others (`benchmarks.faults` measures writers that
write as fast as they can).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["main", "measure"]


def _writer(path: str, runs: int, gap: float, results: Any) -> None:
    from flowstate import Orchestrator
    from flowstate.states import Completed, Pending, Running, Scheduled

    latencies: list[float] = []
    with Orchestrator(path) as orc:
        for _ in range(runs):
            start = time.perf_counter()
            run = orc.create_flow_run(flow_name="bursts")
            latencies.append(time.perf_counter() - start)
            for state in (Scheduled, Pending, Running, Completed):
                start = time.perf_counter()
                orc.set_flow_run_state(run.id, state())
                latencies.append(time.perf_counter() - start)
                time.sleep(gap)
    results.put(latencies)


def measure(path: Path, writers: int, gap: float, runs: int) -> dict[str, Any]:
    """Run the writers on a new database at ``path``; their latencies' summary."""
    from flowstate import Orchestrator

    Orchestrator(path).close()  # the schema, before the writers race to make it
    results: Any = multiprocessing.Queue()
    processes = [
        multiprocessing.Process(target=_writer, args=(str(path), runs, gap, results))
        for _ in range(writers)
    ]
    for process in processes:
        process.start()
    latencies = sorted(sum((results.get() for _ in processes), []))
    for process in processes:
        process.join()
    count = len(latencies)
    return {
        "writers": writers,
        "gap_ms": gap * 1000,
        "calls": count,
        "p50_ms": latencies[count // 2] * 1000,
        "p99_ms": latencies[min(count - 1, int(count * 0.99))] * 1000,
        "max_ms": latencies[-1] * 1000,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bursts", description=__doc__)
    parser.add_argument("--writers", type=int, default=3, help="writer processes (default 3)")
    parser.add_argument("--gap", type=float, default=0.002, help="seconds after each transition")
    parser.add_argument("--runs", type=int, default=150, help="flow runs per writer")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        summary = measure(Path(folder) / "bursts.db", args.writers, args.gap, args.runs)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

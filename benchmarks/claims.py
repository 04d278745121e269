"""Scenario 7: claiming due runs — 1,000 claimed, in batches of 100, out of N scheduled runs.

The database holds N flow runs, all SCHEDULED in the past (built in bulk as in scenario 5).
Each round claims 1,000 of them with ``claim_due_flow_runs(limit=100)``; the figure is the time
per batch of 100 claims (each claim is one policy decision and its writes, all in one
transaction), which must not grow with N: the due-run query walks an index.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

from flowstate import Orchestrator
from flowstate.states import Scheduled

from benchmarks.config import Config
from benchmarks.harness import Figure
from benchmarks.scale import build_database

__all__ = ["run"]

BATCH = 100
PER_ROUND = 1_000


def run(config: Config) -> list[Figure]:
    """Seconds per batch of 100 claims, for each database size."""
    folder = config.workdir / "claims"
    folder.mkdir(parents=True, exist_ok=True)
    past = datetime.now(timezone.utc) - timedelta(days=1)
    figures = []
    for size in config.claim_sizes:
        path = folder / f"scheduled-{size}.db"
        if path.exists():
            path.unlink()  # claims consume the runs: always start from a full database
        build_database(path, size, states=(Scheduled(past),))
        per_round = min(PER_ROUND, size // max(1, config.rounds))
        samples = []
        with Orchestrator(path) as orc:
            for _ in range(config.rounds):
                claimed = 0
                start = time.perf_counter()
                while claimed < per_round:
                    claimed += len(orc.claim_due_flow_runs(limit=min(BATCH, per_round - claimed)))
                batches = per_round / BATCH
                samples.append((time.perf_counter() - start) / batches)
        figures.append(
            Figure(
                "7",
                f"claim {per_round:,} due runs in batches of {BATCH}, {size:,} scheduled",
                "s",
                samples,
                ratio_kind="none",
                extra={"scheduled_runs": size, "claims_per_round": per_round, "batch": BATCH},
            )
        )
    return figures

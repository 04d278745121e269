"""Scenario 5: per-call latency with 1 k, 100 k and 1 M runs already in the database.

The big databases are built quickly: flowstate creates the schema, then one real run's rows
(a completed flow run with its four states, in the store's own row format) are copied with
fresh time-ordered ids by ``executemany`` in one transaction. Latency is then timed on new
runs driven through the scenario-1 cycle, sizes interleaved round by round, and compared with
the smallest size. The database size per run is reported after a checkpoint.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from flowstate import Orchestrator
from flowstate.states import Completed, Pending, Running, Scheduled, State
from flowstate.store import sql

from benchmarks.config import Config
from benchmarks.flow_cycle import CALLS_PER_CYCLE, flow_cycle
from benchmarks.harness import Figure

__all__ = ["COMPLETED_RUN", "build_database", "run"]

_CHUNK = 20_000


COMPLETED_RUN = (Scheduled(), Pending(), Running(), Completed())


def _template(path: Path, states: tuple[State, ...]) -> tuple[tuple, list[tuple]]:
    """One flow run taken through ``states``, as stored: its flow_run row and its state rows."""
    with Orchestrator(path) as orc:
        run = orc.create_flow_run(flow_name="bench", name="bench-run")
        for state in states:
            orc.set_flow_run_state(run.id, state)
    conn = sqlite3.connect(path)
    run_row = conn.execute(
        f"SELECT {sql.PAYLOAD_FLOW_RUN_COLUMNS} FROM {sql.FLOW_RUN_WITH_PAYLOAD}"
    ).fetchone()
    state_rows = conn.execute(
        f"SELECT flow_run_id, {sql.STATE_COLUMNS} FROM flow_run_state ORDER BY timestamp"
    ).fetchall()
    conn.close()
    return run_row, state_rows


def _ids(start_ms: int, index: int, per_run: int) -> list[str]:
    """Time-ordered UUIDv7-shaped ids (as uuid7 would give), cheap to make in bulk."""
    base = index * per_run
    return [
        f"{start_ms >> 16:08x}-{start_ms & 0xFFFF:04x}-7000-8000-{base + k:012x}"
        for k in range(per_run)
    ]


def build_database(path: Path, runs: int, states: tuple[State, ...] = COMPLETED_RUN) -> float:
    """A flowstate database holding ``runs`` copies of one flow run taken through ``states``
    (completed runs by default); returns the seconds taken."""
    started = time.perf_counter()
    run_row, state_rows = _template(path.with_suffix(".template.db"), states)
    Orchestrator(path).close()  # schema, application id, WAL
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    old_run_id = run_row[0]
    old_state_ids = [row[1] for row in state_rows]
    start_ms = int(time.time() * 1000) - runs  # older than anything the probes will write
    per_run = 1 + len(state_rows)
    conn.execute("BEGIN")
    for chunk_start in range(0, runs, _CHUNK):
        run_values = []
        payload_values = []
        policy_values = []
        state_values = []
        for index in range(chunk_start, min(runs, chunk_start + _CHUNK)):
            run_id, *state_ids = _ids(start_ms, index, per_run)
            last = state_ids[-1]
            run_values.append((run_id, *run_row[1:3], "", "", last, *run_row[6:14], "", *run_row[15:]))
            payload_values.append((run_id, run_row[3], run_row[4]))
            policy_values.append((run_id, run_row[14]))
            for new_id, row in zip(state_ids, state_rows):
                details = row[7].replace(old_run_id, run_id)
                state_values.append((run_id, new_id, *row[2:7], details))
        conn.executemany(sql.INSERT_FLOW_RUN, run_values)
        conn.executemany(sql.INSERT_FLOW_RUN_PAYLOAD, payload_values)
        conn.executemany(sql.INSERT_FLOW_RUN_POLICY, policy_values)
        conn.executemany(sql.INSERT_FLOW_RUN_STATE, state_values)
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    assert old_state_ids  # the template had states
    return time.perf_counter() - started


def _file_size(path: Path) -> int:
    return sum(
        os.path.getsize(p) for p in (path, Path(f"{path}-wal")) if os.path.exists(p)
    )


def run(config: Config) -> list[Figure]:
    """Latency per call at each size, and the database size per run."""
    folder = config.workdir / "scale"
    folder.mkdir(parents=True, exist_ok=True)
    sizes = sorted(config.scale_sizes)
    databases: dict[int, Path] = {}
    build_seconds: dict[int, float] = {}
    bytes_per_run: dict[int, float] = {}
    for size in sizes:
        path = folder / f"runs-{size}.db"
        if not path.exists():
            build_seconds[size] = build_database(path, size)
        databases[size] = path
        bytes_per_run[size] = _file_size(path) / size

    orchestrators = {size: Orchestrator(path) for size, path in databases.items()}
    n = config.scale_probes
    calls = n * CALLS_PER_CYCLE

    def latency(orc: Orchestrator) -> float:
        start = time.perf_counter()
        for _ in range(n):
            flow_cycle(orc)
        return (time.perf_counter() - start) / calls

    for orc in orchestrators.values():
        latency(orc)  # warm the page cache
    samples: dict[int, list[float]] = {size: [] for size in sizes}
    for index in range(config.scale_rounds):
        order = sizes if index % 2 == 0 else list(reversed(sizes))
        for size in order:
            samples[size].append(latency(orchestrators[size]))
    for orc in orchestrators.values():
        orc.close()

    smallest = sizes[0]
    figures = []
    for size in sizes:
        figures.append(
            Figure(
                "5",
                f"latency per call, {size:,} runs in the database",
                "s/call",
                samples[size],
                samples[smallest],
                ratio_kind="latency",
                target="ratio <= 1.3" if size == sizes[-1] and size > smallest else None,
                extra={
                    "runs": size,
                    "db_bytes_per_run": round(bytes_per_run[size]),
                    "build_seconds": round(build_seconds.get(size, float("nan")), 1),
                    "reference": f"{smallest:,} runs",
                },
            )
        )
    return figures

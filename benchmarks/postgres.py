"""Scenario 9: scenarios 1, 2 and 3 again on PostgreSQL, against raw psycopg.

flowstate runs with ``Orchestrator("postgresql://…")``; the raw side replays, with plain
psycopg, the same rows (recorded on SQLite by :func:`benchmarks.raw.record`; both stores write
the same columns) on a second database of the same server, one commit per call (or one per
batch), with the same cache lookup in scenario 3. Each side has its own database, created by
flowstate's migrations, so tables and indexes are identical.

The server is ``$FLOWSTATE_BENCH_POSTGRES_URL`` if set, else a throwaway cluster started with
``scripts/pg-cluster`` (fsync on: the server's defaults) and stopped afterwards. When neither
is possible the scenario prints why and yields no figures.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from flowstate import Orchestrator
from flowstate.store.postgres.sql import psycopg_form

from benchmarks import flow_cycle, task_cycle
from benchmarks.config import Config
from benchmarks.harness import Figure, interleave, rate
from benchmarks.raw import Op, RawReplayer, Recording, record

__all__ = ["PgReplayer", "run", "server"]

_ROOT = Path(__file__).resolve().parent.parent
_CLUSTER = _ROOT / "scripts" / "pg-cluster"


@contextmanager
def server() -> Iterator[str | None]:
    """The URL of a PostgreSQL server to benchmark on, or None (with the reason printed)."""
    url = os.environ.get("FLOWSTATE_BENCH_POSTGRES_URL")
    if url:
        yield url
        return
    folder = tempfile.mkdtemp(prefix="flowstate-bench-pg-")
    started = subprocess.run(
        [str(_CLUSTER), "start", f"{folder}/cluster"], capture_output=True, text=True
    )
    if started.returncode != 0:
        print(f"scenario 9 skipped: no PostgreSQL server ({started.stderr.strip()})", file=sys.stderr)
        yield None
        return
    try:
        yield started.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run([str(_CLUSTER), "stop", f"{folder}/cluster"], capture_output=True)
        subprocess.run(["rm", "-rf", folder])


def _database_url(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def _fresh_database(admin_url: str, name: str) -> str:
    """Create (or recreate) database ``name`` on the server and return its URL."""
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return _database_url(admin_url, name)


def _pg_op(op: Op) -> Op:
    """The op with psycopg's placeholders (recorded SQL uses SQLite's ``?``)."""
    return dataclasses.replace(op, sql=psycopg_form(op.sql))


class PgReplayer(RawReplayer):
    """:class:`RawReplayer` on a psycopg connection: the same rows, the same commits."""

    def __init__(self, conn: Any, recording: Recording) -> None:
        calls = [[_pg_op(op) for op in ops] for ops in recording.calls]
        # psycopg prepares a statement on the server once it has run a few times, for the
        # raw side as for flowstate's store
        super().__init__(conn, Recording(calls, recording.ids))

    def replay(self, times: int) -> None:
        conn = self.conn
        for _ in range(times):
            fresh = self._fresh_ids()
            for ops in self.recording.calls:
                with conn.transaction():
                    self._run_call(ops, fresh)

    def replay_batched(self, times: int) -> None:
        with self.conn.transaction():
            for _ in range(times):
                fresh = self._fresh_ids()
                for ops in self.recording.calls:
                    self._run_call(ops, fresh)


def _raw_connection(url: str) -> Any:
    import psycopg

    return psycopg.connect(url, autocommit=True)


def run(config: Config) -> list[Figure]:
    """Scenarios 1P, 2P and 3P (the PostgreSQL column of 1, 2 and 3)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        print("scenario 9 skipped: psycopg is not installed (pip install 'flowstate[postgres]')", file=sys.stderr)
        return []
    with server() as url:
        if url is None:
            return []
        return _run(config, url)


def _run(config: Config, url: str) -> list[Figure]:
    folder = config.workdir / "postgres"
    folder.mkdir(parents=True, exist_ok=True)
    figures: list[Figure] = []

    # 1P and 2P: the flow-run cycle
    recording = record(str(folder / "flow-recording.db"), flow_cycle._script())
    fs_url = _fresh_database(url, "flowstate_bench_fs")
    raw_url = _fresh_database(url, "flowstate_bench_raw")
    orc = Orchestrator(fs_url)
    Orchestrator(raw_url).close()  # the same schema for the raw side
    raw = PgReplayer(_raw_connection(raw_url), recording)
    n = max(1, config.runs // 2)

    def fs_side() -> float:
        return rate(flow_cycle.calls_for(n), lambda: [flow_cycle.flow_cycle(orc) for _ in range(n)])

    def raw_side() -> float:
        return rate(flow_cycle.calls_for(n), lambda: raw.replay(n))

    fs_side(), raw_side()
    a, b = interleave(config.rounds, fs_side, raw_side)
    figures.append(
        Figure("1P", "PostgreSQL: flow-run cycle, one commit per call", "calls/s", a, b,
               extra={"calls_per_round": flow_cycle.calls_for(n), "baseline": "raw psycopg"})
    )

    per_batch = config.batch_runs

    fs_batch, raw_batch = flow_cycle.batched_sides(config, orc, raw)
    fs_batch(), raw_batch()
    a, b = interleave(config.rounds, fs_batch, raw_batch)
    figures.append(
        Figure("2P", f"PostgreSQL: flow-run cycle, {per_batch} runs per transaction", "calls/s",
               a, b, extra={"runs_per_transaction": per_batch, "baseline": "raw psycopg"})
    )
    orc.close()
    raw.conn.close()

    # 3P: task runs with a cache hit
    recording = record(
        str(folder / "task-recording.db"),
        task_cycle._script(),
        setup=task_cycle.setup,
        reads={6: (task_cycle._CACHE_LOOKUP, task_cycle._lookup_params)},
    )
    fs_url = _fresh_database(url, "flowstate_bench_fs_tasks")
    raw_url = _fresh_database(url, "flowstate_bench_raw_tasks")
    orc = Orchestrator(fs_url)
    task_cycle.setup(orc)
    with Orchestrator(raw_url) as raw_setup:
        task_cycle.setup(raw_setup)
    raw = PgReplayer(_raw_connection(raw_url), recording)
    tasks = max(1, config.tasks // 2)
    calls = tasks * task_cycle.CALLS_PER_UNIT

    def fs_tasks() -> float:
        return rate(calls, lambda: [task_cycle.task_unit(orc) for _ in range(tasks)])

    def raw_tasks() -> float:
        return rate(calls, lambda: raw.replay(tasks))

    fs_tasks(), raw_tasks()
    a, b = interleave(config.rounds, fs_tasks, raw_tasks)
    figures.append(
        Figure("3P", "PostgreSQL: task runs with a cache hit", "calls/s", a, b,
               extra={"calls_per_round": calls, "baseline": "raw psycopg"})
    )
    orc.close()
    raw.conn.close()
    return figures

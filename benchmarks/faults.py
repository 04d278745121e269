"""Reliability under load (SQLite): contention between writer processes, the WAL, big listings.

``python -m benchmarks.faults [--writers 8] [--seconds 5] [--runs 1000000] [--out FILE]``

1. **Contention.** One writer process, then ``--writers`` processes at once, each driving its own
   flow runs through Scheduled → Pending → Running → Completed as fast as it can for
   ``--seconds``, timing every call; a reader process lists the 20 newest runs meanwhile. Printed:
   p50/p99/max call latency, the share of calls that took over 10 ms (p99 is under 10 ms exactly
   when that share is under 1%), the aggregate throughput against the one writer's, the WAL's
   largest size during the load and its size once the load ended (one more connection stays
   open throughout, as a long-lived process would keep it, so SQLite does not delete the WAL on
   the last close), and the acknowledged transitions against those found in the database.
   And how busy the machine was: the load average before and after, and the share of the
   writers' time spent ready to run but waiting for a CPU (Linux scheduler statistics; on a
   machine shared with other work, latency then says more about the machine than flowstate).
   **The floor of the same shape**: the same number of processes writing, with plain sqlite3,
   the very rows flowstate wrote for that cycle (one commit per call, flowstate's PRAGMAs),
   one writer alone and then all at once (with the same reader), twice: waiting in SQLite's busy handler
   (``busy_timeout``, what a plain program does), taking an exclusive ``flock`` on a file beside
   the database around each transaction, and waiting in flowstate's writers' queue
   (``flowstate.store.write_queue``). What these show is what the machine gives any writer of
   this shape, before flowstate's own work.
2. **Listing.** A database of ``--runs`` completed flow runs: the time of
   ``read_flow_runs(limit=5, newest_first=True)``, and of ``flowstate runs ls --limit 5`` as a
   process (wall time, peak memory), and the latency of a writer while listings run beside it.

Takes a minute or two at the defaults (building the 1 M-run database is most of it);
``--runs 0`` skips part 2. Not run by the test suite except at toy size.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import multiprocessing
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import closing
from pathlib import Path
from typing import Any

from flowstate import Orchestrator, SetStateStatus
from flowstate.states import Completed, Pending, Running, Scheduled

__all__ = ["contention", "listing", "main"]

FORK = multiprocessing.get_context("fork")


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _share_over(values: list[float], seconds: float) -> float:
    return sum(value > seconds for value in values) / len(values)


def _waited_for_cpu() -> float | None:
    """Seconds this thread has spent ready to run but waiting for a CPU (Linux), or None."""
    try:
        with open("/proc/thread-self/schedstat") as stats:
            return int(stats.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


def _writer(path: str, start_at: float, seconds: float, out: str, release: Any) -> None:
    """Child: full flow-run cycles until ``start_at + seconds``; per-call latencies, the ids
    of the states acknowledged (an ACCEPT returned) and the time spent waiting for a CPU go to
    ``out``. The connection stays open, idle, until ``release`` is set (the WAL is measured
    meanwhile)."""
    latencies: list[float] = []
    acked: list[str] = []
    clock = time.perf_counter
    with Orchestrator(path) as orc:
        while time.time() < start_at:
            time.sleep(0.001)
        waited_before = _waited_for_cpu()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            t = clock()
            run = orc.create_flow_run(flow_name="load", state=Scheduled())
            latencies.append(clock() - t)
            acked.append(str(run.state.id))  # type: ignore[union-attr]
            for state in (Pending(), Running(), Completed()):
                t = clock()
                result = orc.set_flow_run_state(run.id, state)
                latencies.append(clock() - t)
                if result.status is SetStateStatus.ACCEPT:
                    acked.append(str(result.state.id))  # type: ignore[union-attr]
        waited_after = _waited_for_cpu()
        waited = None if waited_before is None or waited_after is None else waited_after - waited_before
        Path(out).write_text(json.dumps({"latencies": latencies, "acked": acked, "waited_for_cpu": waited}))
        release.wait(60)


def _raw_writer(
    path: str, start_at: float, seconds: float, out: str, recording: Any, turns: str
) -> None:
    """Child: the recorded cycle's rows with plain sqlite3, one commit per call, until
    ``start_at + seconds``; waiting in SQLite's busy handler (``turns`` "busy_handler"), for
    an exclusive ``flock`` on ``<path>-raw-writers`` ("flock") or in flowstate's writers' queue
    ("queue") around each transaction."""
    from benchmarks.raw import RawReplayer, open_raw
    from flowstate.store.write_queue import WriteQueue

    conn = open_raw(path)
    conn.execute("PRAGMA busy_timeout = 30000")
    replayer = RawReplayer(conn, recording)
    lock = os.open(f"{path}-raw-writers", os.O_RDWR | os.O_CREAT, 0o600) if turns == "flock" else None
    queue = WriteQueue(path) if turns == "queue" else None
    execute = conn.execute
    latencies: list[float] = []
    commits = 0
    clock = time.perf_counter
    while time.time() < start_at:
        time.sleep(0.001)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        fresh = replayer._fresh_ids()
        for ops in recording.calls:
            t = clock()
            if lock is not None:
                fcntl.flock(lock, fcntl.LOCK_EX)
            if queue is not None:
                queue.enter(30.0, path)
            execute("BEGIN IMMEDIATE")
            replayer._run_call(ops, fresh)
            execute("COMMIT")
            if lock is not None:
                fcntl.flock(lock, fcntl.LOCK_UN)
            if queue is not None:
                queue.leave()
            latencies.append(clock() - t)
            commits += 1
    conn.close()
    Path(out).write_text(json.dumps({"latencies": latencies, "commits": commits}))


def _raw_load(folder: Path, writers: int, seconds: float, recording: Any, turns: str) -> dict[str, Any]:
    """``writers`` raw writer processes on a new database (made by flowstate's schema)."""
    path = folder / f"raw-{writers}-{turns}.db"
    for suffix in ("", "-wal", "-shm", "-writers", "-raw-writers"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    Orchestrator(path).close()  # the same tables and indexes
    Path(f"{path}-writers").unlink(missing_ok=True)
    start_at = time.time() + 0.5
    outs = [folder / f"raw-writer-{writers}-{index}.json" for index in range(writers)]
    procs = [
        FORK.Process(target=_raw_writer, args=(str(path), start_at, seconds, str(out), recording, turns))
        for out in outs
    ]
    if writers > 1:  # the same reader beside them as beside flowstate's writers
        reader_out = folder / f"raw-reader-{writers}.json"
        procs.append(FORK.Process(target=_reader, args=(str(path), start_at, seconds, str(reader_out))))
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
    failed = [proc.exitcode for proc in procs if proc.exitcode != 0]
    assert not failed, f"a raw writer failed: exit codes {failed}"
    latencies: list[float] = []
    commits = 0
    for out in outs:
        data = json.loads(out.read_text())
        latencies += data["latencies"]
        commits += data["commits"]
    with closing(sqlite3.connect(path)) as conn:
        found = conn.execute("SELECT count(*) FROM flow_run_state").fetchone()[0]
    return {
        "writers": writers,
        "calls_per_second": len(latencies) / seconds,
        "p50_ms": _percentile(latencies, 0.5) * 1000,
        "p99_ms": _percentile(latencies, 0.99) * 1000,
        "max_ms": max(latencies) * 1000,
        "share_over_10ms": _share_over(latencies, 0.010),
        "acknowledged": commits,
        "found": found,
    }


def _recorded_cycle(folder: Path) -> Any:
    """The rows flowstate writes for one writer's cycle, call by call (see benchmarks.raw)."""
    from benchmarks.raw import record

    made: dict[str, Any] = {}

    def create(orc: Orchestrator) -> None:
        made["id"] = orc.create_flow_run(flow_name="load", state=Scheduled()).id

    def setter(state: Any) -> Any:
        return lambda orc: orc.set_flow_run_state(made["id"], state())

    path = folder / "raw-recording.db"
    for suffix in ("", "-wal", "-shm", "-writers"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return record(str(path), [create, setter(Pending), setter(Running), setter(Completed)])


def raw_floor(folder: Path, writers: int, seconds: float) -> dict[str, Any]:
    """The same shape with plain sqlite3: one writer, then ``writers`` at once, waiting in
    SQLite's busy handler, taking turns with ``flock``, and in flowstate's writers' queue."""
    folder.mkdir(parents=True, exist_ok=True)
    recording = _recorded_cycle(folder)
    figures: dict[str, Any] = {}
    for turns in ("busy_handler", "flock", "queue"):
        alone = _raw_load(folder, 1, seconds, recording, turns)
        together = _raw_load(folder, writers, seconds, recording, turns)
        together["one_writer_calls_per_second"] = alone["calls_per_second"]
        together["throughput_vs_one_writer"] = together["calls_per_second"] / alone["calls_per_second"]
        figures[turns] = together
    return figures


def _reader(path: str, start_at: float, seconds: float, out: str) -> None:
    """Child: list the 20 newest runs, again and again, beside the writers."""
    latencies: list[float] = []
    with Orchestrator(path) as orc:
        while time.time() < start_at:
            time.sleep(0.001)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            t = time.perf_counter()
            orc.read_flow_runs(limit=20, newest_first=True)
            latencies.append(time.perf_counter() - t)
            time.sleep(0.005)
    Path(out).write_text(json.dumps({"latencies": latencies}))


def _wal_size(path: Path) -> int:
    wal = Path(f"{path}-wal")
    return wal.stat().st_size if wal.exists() else 0


def _load(folder: Path, writers: int, seconds: float, reader: bool) -> dict[str, Any]:
    """Run ``writers`` writer processes (and a reader) on a new database; the figures."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"load-{writers}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    keeper = Orchestrator(path)  # a long-lived connection: the WAL is not deleted on close
    load_before = os.getloadavg()[0]
    start_at = time.time() + 0.5
    procs = []
    outs = []
    release = FORK.Event()
    for index in range(writers):
        out = folder / f"writer-{writers}-{index}.json"
        out.unlink(missing_ok=True)
        outs.append(out)
        procs.append(
            FORK.Process(target=_writer, args=(str(path), start_at, seconds, str(out), release))
        )
    reader_out = folder / f"reader-{writers}.json"
    if reader:
        procs.append(FORK.Process(target=_reader, args=(str(path), start_at, seconds, str(reader_out))))
    for proc in procs:
        proc.start()
    biggest = 0
    stop = threading.Event()

    def watch() -> None:
        nonlocal biggest
        while not stop.is_set():
            biggest = max(biggest, _wal_size(path))
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    deadline = time.monotonic() + seconds + 60
    while not all(out.exists() for out in outs) and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    watcher.join()
    load_after = os.getloadavg()[0]
    time.sleep(0.5)  # the load has ended; every writer's connection is still open, idle
    wal_after = _wal_size(path)
    release.set()
    for proc in procs:
        proc.join()
    failed = [proc.exitcode for proc in procs if proc.exitcode != 0]
    assert not failed, f"a load process failed: exit codes {failed}"
    latencies: list[float] = []
    acked: set[str] = set()
    waits: list[float | None] = []
    for out in outs:
        data = json.loads(out.read_text())
        latencies += data["latencies"]
        acked.update(data["acked"])
        waits.append(data["waited_for_cpu"])
    with closing(sqlite3.connect(path)) as conn:
        found = {row[0] for row in conn.execute("SELECT id FROM flow_run_state")}
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
    keeper.close()
    figures: dict[str, Any] = {
        "writers": writers,
        "calls": len(latencies),
        "calls_per_second": len(latencies) / seconds,
        "p50_ms": _percentile(latencies, 0.5) * 1000,
        "p99_ms": _percentile(latencies, 0.99) * 1000,
        "max_ms": max(latencies) * 1000,
        "share_over_10ms": _share_over(latencies, 0.010),
        "wal_max_mb": biggest / 1e6,
        "wal_after_mb": wal_after / 1e6,
        "acknowledged": len(acked),
        "found": len(found),
        "acknowledged_missing": len(acked - found),
        "integrity": integrity,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "writers_share_waiting_for_cpu": (
            None if None in waits else sum(waits) / (writers * seconds)  # type: ignore[arg-type]
        ),
    }
    if reader:
        reads = json.loads(reader_out.read_text())["latencies"]
        figures["reader_p50_ms"] = _percentile(reads, 0.5) * 1000
        figures["reader_max_ms"] = max(reads) * 1000
    return figures


def contention(folder: Path, writers: int, seconds: float) -> dict[str, Any]:
    """One writer alone, then ``writers`` at once (with a reader); both sets of figures, and
    the raw sqlite3 floor of the same shape."""
    alone = _load(folder, 1, seconds, reader=False)
    together = _load(folder, writers, seconds, reader=True)
    together["throughput_vs_one_writer"] = together["calls_per_second"] / alone["calls_per_second"]
    return {
        "one_writer": alone,
        "contended": together,
        "raw_sqlite3": raw_floor(folder, writers, seconds),
    }


def _list_once(path: Path) -> dict[str, float]:
    """``flowstate runs ls --limit 5`` as a process: wall seconds and peak memory."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "flowstate", "--database", str(path), "runs", "ls", "--limit", "5"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB, the largest child yet
    return {"cli_wall_s": wall, "cli_peak_mb": max(peak, before) / 1024}


def _startup(path: Path) -> float:
    """Wall seconds of ``flowstate --help``-like startup: the CLI listing an empty database."""
    empty = path.with_name("empty.db")
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "flowstate", "--database", str(empty), "runs", "ls", "--limit", "5"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def _writer_beside(path: str, seconds: float, out: str) -> None:
    latencies = []
    with Orchestrator(path) as orc:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            t = time.perf_counter()
            run = orc.create_flow_run(flow_name="beside", state=Scheduled())
            orc.set_flow_run_state(run.id, Pending())
            latencies.append((time.perf_counter() - t) / 2)
    Path(out).write_text(json.dumps(latencies))


def listing(folder: Path, runs: int, seconds: float = 2.0, repeats: int = 3) -> dict[str, Any]:
    """List the newest 5 of ``runs`` flow runs: in-process, as a CLI process (best of
    ``repeats``), and the latency of a writer alone and beside listings, ``seconds`` each."""
    from benchmarks.scale import build_database

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"runs-{runs}.db"
    built = None
    if not path.exists():
        built = build_database(path, runs)
    with Orchestrator(path) as orc:
        orc.read_flow_runs(limit=5, newest_first=True)  # warm the page cache
        samples = []
        for _ in range(20):
            t = time.perf_counter()
            found = orc.read_flow_runs(limit=5, newest_first=True)
            samples.append(time.perf_counter() - t)
        assert len(found) == min(5, runs)
        by_type = []
        for _ in range(5):
            t = time.perf_counter()
            orc.read_flow_runs(state_type="COMPLETED", limit=5, newest_first=True)
            by_type.append(time.perf_counter() - t)
    cli = min((_list_once(path) for _ in range(repeats)), key=lambda f: f["cli_wall_s"])
    startup = min(_startup(path) for _ in range(repeats))
    # a writer alone, then a writer while another process lists all the time
    alone_out = folder / "beside-alone.json"
    proc = FORK.Process(target=_writer_beside, args=(str(path), seconds, str(alone_out)))
    proc.start()
    proc.join()
    beside_out = folder / "beside-listing.json"
    proc = FORK.Process(target=_writer_beside, args=(str(path), seconds, str(beside_out)))
    proc.start()
    with Orchestrator(path) as orc:
        while proc.is_alive():
            orc.read_flow_runs(limit=5, newest_first=True)
            orc.read_flow_runs(limit=1000, newest_first=True)
    proc.join()
    alone = json.loads(alone_out.read_text())
    beside = json.loads(beside_out.read_text())
    return {
        "runs": runs,
        "build_s": built,
        "read_flow_runs_limit5_ms": statistics.median(samples) * 1000,
        "read_flow_runs_completed_limit5_ms": statistics.median(by_type) * 1000,
        **cli,
        "cli_startup_empty_db_s": startup,
        "writer_alone_p50_ms": _percentile(alone, 0.5) * 1000,
        "writer_alone_max_ms": max(alone) * 1000,
        "writer_beside_listing_p50_ms": _percentile(beside, 0.5) * 1000,
        "writer_beside_listing_max_ms": max(beside) * 1000,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.faults", description=__doc__)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3, help="CLI listings timed (the best)")
    parser.add_argument("--keep", help="build (and reuse) databases in this folder")
    parser.add_argument("--out", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="flowstate-faults-"))
    figures: dict[str, Any] = {"contention": contention(folder, args.writers, args.seconds)}
    if args.runs:
        figures["listing"] = listing(folder, args.runs, min(2.0, args.seconds), args.repeats)
    text = json.dumps(figures, indent=2, default=lambda v: round(v, 3))
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    if not args.keep:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

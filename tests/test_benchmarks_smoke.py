"""The benchmarks still run: every scenario once, at toy size (no timing is asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.__main__ import main


def test_every_scenario_runs_once_at_tiny_size(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "results.json"
    sqlite_scenarios = "1,3,4,5,6,7,8,10"  # 9 (PostgreSQL) has its own test below
    assert main(["--tiny", "--only", sqlite_scenarios, "--out", str(out), "--keep", str(tmp_path / "work")]) == 0
    figures = json.loads(out.read_text())["figures"]
    assert {f["scenario"] for f in figures} == {"1", "2", "3", "4", "5", "6", "7", "8", "10", "10C", "10L"}
    for figure in figures:
        assert figure["flowstate"] and all(v > 0 for v in figure["flowstate"]), figure["name"]
        if figure["raw"]:
            assert figure["ratio"] > 0
    assert "flow-run cycle" in capsys.readouterr().out


def test_raw_baseline_writes_the_same_rows_as_flowstate(tmp_path: Path) -> None:
    import sqlite3

    from benchmarks.config import Config
    from benchmarks import task_cycle

    task_cycle.run(Config.tiny(tmp_path))
    counts = []
    for name in ("flowstate.db", "raw.db"):
        conn = sqlite3.connect(tmp_path / "task_cycle" / name)
        counts.append(
            (
                conn.execute("SELECT name, count(*) FROM task_run_state GROUP BY name ORDER BY name").fetchall(),
                conn.execute("SELECT count(*) FROM task_cache").fetchone(),
                conn.execute("SELECT sum(length(details)) FROM task_run_state").fetchone(),
            )
        )
        conn.close()
    assert counts[0] == counts[1]


def test_postgres_scenario_runs_and_both_sides_write_the_same_rows(
    tmp_path: Path, postgres_server: str, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    from tests.backends import admin

    from benchmarks.postgres import _database_url

    monkeypatch.setenv("FLOWSTATE_BENCH_POSTGRES_URL", postgres_server)
    out = tmp_path / "results.json"
    assert main(["--tiny", "--only", "9", "--out", str(out), "--keep", str(tmp_path / "work")]) == 0
    figures = json.loads(out.read_text())["figures"]
    assert [f["scenario"] for f in figures] == ["1P", "2P", "3P"]
    for figure in figures:
        assert figure["flowstate"] and figure["raw"] and figure["ratio"] > 0
    counts = []
    for name in ("flowstate_bench_fs_tasks", "flowstate_bench_raw_tasks"):
        with admin(_database_url(postgres_server, name)) as conn:
            counts.append(
                (
                    conn.execute(
                        "SELECT name, count(*) FROM task_run_state GROUP BY name ORDER BY name"
                    ).fetchall(),
                    conn.execute("SELECT count(*) FROM task_cache").fetchone(),
                    conn.execute("SELECT sum(length(details)) FROM task_run_state").fetchone(),
                )
            )
    assert counts[0] == counts[1]
    assert counts[0][1][0] > 0  # the cache path ran


def test_the_lean_floor_engine_writes_the_same_rows_as_flowstate(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from benchmarks import floor

    figures = floor.main(["--rounds", "1", "--runs", "3", "--batches", "1", "--folder", str(tmp_path)])
    assert set(figures) == {"flowstate", "no rules", "lean", "raw"}
    assert all(v > 0 for v in figures.values())
    flowstate_rows, lean_rows = floor.same_rows(tmp_path)
    assert flowstate_rows[1] and flowstate_rows == lean_rows
    assert "ratio to raw" in capsys.readouterr().out


def test_the_instruction_count_workload_runs_and_the_counter_names_what_it_lacks(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    import os

    from benchmarks import instructions

    real_urandom = os.urandom
    for side in ("fs", "raw"):
        for mode in ("batched", "one"):
            assert instructions.main([side, mode, "--worker", "2"]) == 0
    assert instructions.main(["lean", "batched", "--worker", "2"]) == 0
    with pytest.raises(SystemExit):  # the lean engine has no one-commit-per-call mode
        instructions.main(["lean", "one"])
    assert os.urandom is real_urandom  # the seeded bytes were for the workload only
    monkeypatch.setattr(instructions.shutil, "which", lambda tool: None)
    assert instructions.main(["fs", "one"]) == 2
    assert "needs valgrind and setarch" in capsys.readouterr().err


def test_the_paired_ratio_is_the_median_of_the_rounds_ratios() -> None:
    from benchmarks.harness import Figure

    # the machine speeds up during the run: medians taken apart give 10/25, rounds give 0.5
    figure = Figure("x", "drifting", "ops/s", [5.0, 10.0, 20.0], [10.0, 20.0, 40.0])
    assert figure.paired_ratio == 0.5 and figure.ratio == 0.5
    figure = Figure("x", "drifting", "ops/s", [4.0, 10.0, 30.0], [10.0, 25.0, 50.0])
    assert figure.paired_ratio == 0.4 and figure.ratio == 10.0 / 25.0
    figure = Figure("x", "drifting", "ops/s", [6.0, 10.0, 12.0], [10.0, 25.0, 20.0])
    assert figure.paired_ratio == 0.6 and figure.ratio == 10.0 / 20.0
    assert Figure("x", "alone", "ops/s", [1.0]).paired_ratio is None


def test_the_import_is_timed_with_current_bytecode() -> None:
    """Scenario 6 brings flowstate's .pyc files up to date first, as installing does: each
    module's cached bytecode then records its source's current mtime and size."""
    import importlib.util
    import struct

    import flowstate
    from benchmarks.startup import current_bytecode

    current_bytecode()
    sources = sorted(Path(flowstate.__file__).parent.rglob("*.py"))
    assert len(sources) > 40
    for source in sources:
        cached = Path(importlib.util.cache_from_source(str(source)))
        header = cached.read_bytes()[:16]
        flags, mtime, size = struct.unpack("<3I", header[4:16])
        stat = source.stat()
        assert flags == 0 and (mtime, size) == (int(stat.st_mtime) & 0xFFFFFFFF, stat.st_size & 0xFFFFFFFF), source


def test_the_fault_benchmark_runs_at_toy_size(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from benchmarks import faults

    out = tmp_path / "faults.json"
    args = ["--writers", "2", "--seconds", "0.3", "--runs", "200", "--repeats", "1"]
    assert faults.main([*args, "--keep", str(tmp_path / "work"), "--out", str(out)]) == 0
    figures = json.loads(out.read_text())
    contended = figures["contention"]["contended"]
    assert contended["writers"] == 2 and contended["calls"] > 0
    assert contended["acknowledged_missing"] == 0 and contended["integrity"] == "ok"
    for raw in figures["contention"]["raw_sqlite3"].values():  # the floor of the same shape
        assert raw["writers"] == 2 and raw["calls_per_second"] > 0
        assert raw["found"] == raw["acknowledged"] > 0
    assert figures["listing"]["runs"] == 200 and figures["listing"]["cli_wall_s"] > 0


def test_the_bursts_benchmark_runs_at_toy_size(capsys) -> None:  # type: ignore[no-untyped-def]
    from benchmarks import bursts

    assert bursts.main(["--writers", "2", "--gap", "0.001", "--runs", "3"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["writers"] == 2 and summary["calls"] == 2 * 3 * 5
    assert 0 < summary["p50_ms"] <= summary["p99_ms"] <= summary["max_ms"]

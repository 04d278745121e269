"""Instructions per API call of scenario 1's cycle (or scenario 3's task unit), counted by
valgrind: steady on a noisy VM.

``python -m benchmarks.instructions [fs|raw|lean] [batched|one|task]`` runs the cycle under
``valgrind --tool=callgrind`` twice, for 100 and for 900 cycles, and prints the difference
divided by the 5,600 calls in between: the start-up cost cancels out. Address-space
randomisation is turned off (``setarch -R``), the hash seed is fixed and ``os.urandom`` is
seeded, so repeated runs of the same code agree within about 1.5k instructions per call, where
wall-clock figures on a shared VM move by 20 %. Each count takes about a minute. Needs valgrind
(and ``setarch``, from util-linux).

``fs`` is flowstate (``batched``: 100 runs per ``orc.transaction()``, as scenario 2; ``one``:
one commit per call, as scenario 1; ``task``: scenario 3's task unit, one commit per call);
``raw`` is the raw-sqlite3 replay of the same rows; ``lean`` is ``benchmarks.floor``'s lean
engine (batched only).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["count", "main"]

_ROOT = Path(__file__).resolve().parent.parent
_SMALL, _LARGE = 100, 900


def _work(side: str, mode: str, cycles: int) -> None:
    """What runs under valgrind: 10 warm-up cycles, then ``cycles`` measured ones, with
    ``os.urandom`` seeded (the same ids, so the same B-tree work, run after run)."""
    from flowstate import _ids

    real_urandom = os.urandom
    os.urandom = random.Random(0).randbytes
    try:
        _ids._refill()
        _cycles(side, mode, cycles)
    finally:
        os.urandom = real_urandom
        _ids._refill()  # (no seeded bits left behind when this runs inside another program)


def _cycles(side: str, mode: str, cycles: int) -> None:
    from flowstate import Orchestrator

    if mode == "task":
        _task_units(side, cycles)
        return

    from benchmarks.flow_cycle import _script, flow_cycle
    from benchmarks.raw import RawReplayer, open_raw, record

    folder = tempfile.mkdtemp(prefix="flowstate-instructions-")
    if side == "fs":
        orc = Orchestrator(os.path.join(folder, "fs.db"))
        for _ in range(10):
            flow_cycle(orc)
        if mode == "batched":
            with orc.transaction():
                for _ in range(cycles):
                    flow_cycle(orc)
        else:
            for _ in range(cycles):
                flow_cycle(orc)
    elif side == "lean":  # benchmarks.floor's lean engine: batched only
        from benchmarks.floor import LeanEngine, lean_cycle

        Orchestrator(os.path.join(folder, "lean.db")).close()  # flowstate's schema
        lean = LeanEngine(os.path.join(folder, "lean.db"))
        with lean:
            for _ in range(10):
                lean_cycle(lean)
        with lean:
            for _ in range(cycles):
                lean_cycle(lean)
    else:
        recording = record(os.path.join(folder, "recording.db"), _script())
        Orchestrator(os.path.join(folder, "raw.db")).close()
        raw = RawReplayer(open_raw(os.path.join(folder, "raw.db")), recording)
        raw.replay(10)
        raw.replay_batched(cycles) if mode == "batched" else raw.replay(cycles)
    shutil.rmtree(folder, ignore_errors=True)


def _task_units(side: str, units: int) -> None:
    """Scenario 3's task unit, one commit per call: flowstate, or the raw replay of its rows."""
    from flowstate import Orchestrator

    from benchmarks.raw import RawReplayer, open_raw, record
    from benchmarks.task_cycle import _CACHE_LOOKUP, _lookup_params, _script, setup, task_unit

    folder = tempfile.mkdtemp(prefix="flowstate-instructions-")
    if side == "fs":
        orc = Orchestrator(os.path.join(folder, "fs.db"))
        setup(orc)
        for _ in range(10):
            task_unit(orc)
        for _ in range(units):
            task_unit(orc)
        orc.close()
    else:
        recording = record(
            os.path.join(folder, "recording.db"), _script(), setup=setup,
            reads={6: (_CACHE_LOOKUP, _lookup_params)},
        )
        with Orchestrator(os.path.join(folder, "raw.db")) as raw_setup:
            setup(raw_setup)
        raw = RawReplayer(open_raw(os.path.join(folder, "raw.db")), recording)
        raw.replay(10)
        raw.replay(units)
    shutil.rmtree(folder, ignore_errors=True)


def _instructions(side: str, mode: str, cycles: int) -> int:
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "callgrind.out")
        command = [
            "setarch", "-R", "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
            sys.executable, "-m", "benchmarks.instructions", side, mode, "--worker", str(cycles),
        ]
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        subprocess.run(command, cwd=_ROOT, env=env, check=True, capture_output=True)
        match = re.search(r"^summary:\s+(\d+)", Path(out).read_text(), re.MULTILINE)
        if match is None:
            raise RuntimeError(f"no summary line in {out}")
        return int(match.group(1))


def count(side: str, mode: str) -> int:
    """Instructions per API call: (900 cycles − 100 cycles) ÷ 5,600 calls (task units:
    the same, 7 calls each)."""
    from benchmarks.flow_cycle import CALLS_PER_CYCLE
    from benchmarks.task_cycle import CALLS_PER_UNIT

    calls = CALLS_PER_UNIT if mode == "task" else CALLS_PER_CYCLE

    small = _instructions(side, mode, _SMALL)
    large = _instructions(side, mode, _LARGE)
    return (large - small) // ((_LARGE - _SMALL) * calls)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.instructions", description=__doc__)
    parser.add_argument("side", nargs="?", choices=["fs", "raw", "lean"], default="fs")
    parser.add_argument("mode", nargs="?", choices=["batched", "one", "task"], default="batched")
    parser.add_argument("--worker", type=int, metavar="CYCLES", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.side == "lean" and args.mode != "batched":
        parser.error("the lean engine runs batched only")
    if args.worker is not None:
        _work(args.side, args.mode, args.worker)
        return 0
    missing = [tool for tool in ("valgrind", "setarch") if shutil.which(tool) is None]
    if missing:
        print(f"needs {' and '.join(missing)} on PATH", file=sys.stderr)
        return 2
    print(f"{args.side} {args.mode}: {count(args.side, args.mode):,} instructions per call")
    return 0


if __name__ == "__main__":
    sys.exit(main())

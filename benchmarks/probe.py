"""Measurements made in a fresh interpreter: ``python -m benchmarks.probe import|memory-fs|memory-raw N``.

``import``: seconds taken by ``import flowstate``. ``memory-*``: scenario 1 run ``N`` cycles
by flowstate or by raw sqlite3; prints the tracemalloc peak of the cycles and the process's
peak RSS, in bytes.
"""

from __future__ import annotations

import json
import sys
import time


def _import() -> None:
    start = time.perf_counter()
    import flowstate  # noqa: F401

    print(json.dumps({"seconds": time.perf_counter() - start}))


def _memory(side: str, cycles: int) -> None:
    import tempfile
    import tracemalloc
    from pathlib import Path

    from flowstate import Orchestrator

    from benchmarks import flow_cycle
    from benchmarks.raw import RawReplayer, open_raw, record

    folder = Path(tempfile.mkdtemp(prefix="flowstate-mem-"))
    if side == "fs":
        orc = Orchestrator(folder / "fs.db")
        flow_cycle.flow_cycle(orc)
        tracemalloc.start()
        for _ in range(cycles):
            flow_cycle.flow_cycle(orc)
    else:
        recording = record(str(folder / "rec.db"), flow_cycle._script())
        Orchestrator(folder / "raw.db").close()
        raw = RawReplayer(open_raw(str(folder / "raw.db")), recording)
        raw.replay(1)
        tracemalloc.start()
        raw.replay(cycles)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss = _peak_rss()
    print(json.dumps({"tracemalloc_peak": peak, "max_rss": rss}))


def _peak_rss() -> int:
    """This process's peak resident size (VmHWM; ru_maxrss would include the parent's)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main(argv: list[str]) -> None:
    mode = argv[0]
    if mode == "import":
        _import()
    elif mode in ("memory-fs", "memory-raw"):
        _memory(mode.split("-")[1], int(argv[1]))
    else:
        raise SystemExit(f"unknown probe {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])

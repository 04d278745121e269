"""Scenario 6: ``import flowstate`` in a fresh interpreter, and peak memory of scenario 1."""

from __future__ import annotations

import compileall
import json
import subprocess
import sys
from pathlib import Path

from benchmarks.config import Config
from benchmarks.harness import Figure

__all__ = ["run"]

_ROOT = Path(__file__).resolve().parent.parent


def _probe(*args: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.probe", *args],
        cwd=_ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def current_bytecode() -> bool:
    """Bring flowstate's ``.pyc`` files up to date, as installing the package does (pip
    compiles them), so that the import is timed without compiling changed sources: a checkout
    run with ``PYTHONDONTWRITEBYTECODE`` set never refreshes them. False if some could not be
    written (a read-only install keeps its own)."""
    import flowstate

    return bool(compileall.compile_dir(Path(flowstate.__file__).parent, quiet=1))


def run(config: Config) -> list[Figure]:
    """Import time (median of fresh interpreters) and the memory of scenario 1's cycles."""
    current_bytecode()
    seconds = [_probe("import")["seconds"] for _ in range(config.import_runs)]
    fs = _probe("memory-fs", str(config.runs))
    raw = _probe("memory-raw", str(config.runs))
    return [
        Figure("6", "import flowstate (fresh interpreter)", "s", seconds,
               ratio_kind="none", target="median < 0.25 s",
               notes="with current .pyc files, as an installed package has them"),
        Figure("6", f"peak memory, scenario 1 ({config.runs} cycles): tracemalloc", "bytes",
               [fs["tracemalloc_peak"]], [raw["tracemalloc_peak"]], ratio_kind="memory"),
        Figure("6", f"peak memory, scenario 1 ({config.runs} cycles): process max RSS", "bytes",
               [fs["max_rss"]], [raw["max_rss"]], ratio_kind="memory",
               notes="raw side also imports flowstate (it creates the schema)"),
    ]

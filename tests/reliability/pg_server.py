"""A PostgreSQL cluster of a test's own, to stop, restart and freeze (``scripts/pg-cluster``).

The suite's shared server must never go down under other tests: a test that takes the server
away starts one of these in a temporary folder and stops it when done.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from collections.abc import Iterator

from tests.backends import PG_CLUSTER, start_cluster, stop_cluster

__all__ = ["OwnCluster"]


class OwnCluster:
    """A throwaway cluster in ``folder``: ``url``, and ways to take it away and back."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.url = start_cluster(folder)

    def _run(self, command: str) -> None:
        env = {**os.environ, "FLOWSTATE_PG_FSYNC": "off"}
        done = subprocess.run(
            [str(PG_CLUSTER), command, str(self.folder)],
            capture_output=True,
            text=True,
            env=env,
            check=False,
            timeout=120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"scripts/pg-cluster {command} failed:\n{done.stderr}")

    def stop(self) -> None:
        """Stop the server abruptly (``pg_ctl stop -m immediate``), as a crash would."""
        self._run("stop")

    def restart(self) -> None:
        """Start the stopped server again, on the same port; returns once it accepts
        connections (after its crash recovery)."""
        self._run("restart")

    def processes(self) -> list[int]:
        """The postmaster's pid, then those of its children (backends and helpers)."""
        postmaster = int((self.folder / "data" / "postmaster.pid").read_text().split()[0])
        children = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == postmaster:
                children.append(int(entry.name))
        return [postmaster, *children]

    @contextmanager
    def frozen(self) -> Iterator[None]:
        """Every server process stopped with SIGSTOP (a hung server: connections stay open,
        nothing answers), continued on leaving the block."""
        stopped: list[int] = []
        try:
            for pid in self.processes():
                os.kill(pid, signal.SIGSTOP)
                stopped.append(pid)
            yield
        finally:
            for pid in reversed(stopped):
                try:
                    os.kill(pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)

    def close(self) -> None:
        stop_cluster(self.folder)

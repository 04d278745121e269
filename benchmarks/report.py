"""The results table (text) and the JSON file."""

from __future__ import annotations

import json
import platform
import sqlite3
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmarks.harness import Figure

__all__ = ["check_targets", "render", "write_json"]


def _fmt(value: float, unit: str) -> str:
    if value != value:  # NaN
        return "-"
    if unit == "s/call":
        return f"{value * 1e6:,.0f} µs"
    if unit == "s":
        return f"{value:.3f} s"
    if unit == "ms":
        return f"{value:.2f} ms"
    if unit == "bytes":
        return f"{value / 1024:,.0f} KiB"
    return f"{value:,.0f}"


def _ratio(figure: Figure) -> str:
    ratio = figure.ratio
    if ratio is None:
        return ""
    return f"{ratio:.2f}" + ("×" if figure.ratio_kind in ("latency", "memory") else "")


def check_targets(figures: list[Figure]) -> None:
    """Fill ``met`` for the figures that carry one of the issue's targets."""
    for figure in figures:
        if figure.target is None:
            continue
        if figure.scenario == "1":
            figure.met = figure.ratio is not None and figure.ratio >= 0.5
        elif figure.scenario == "2":
            figure.met = figure.ratio is not None and figure.ratio >= 0.4
        elif figure.scenario == "5":
            figure.met = figure.ratio is not None and figure.ratio <= 1.3
        elif figure.scenario == "6":
            figure.met = figure.flowstate_median < 0.25
        elif figure.scenario == "10":
            figure.met = figure.ratio is not None and figure.ratio >= 0.7
        elif figure.scenario == "10L":
            figure.met = figure.flowstate_median < 10.0


def render(figures: list[Figure]) -> str:
    """A plain-text table: one line per figure."""
    header = ("#", "what", "unit", "flowstate", "raw", "ratio", "target")
    lines = [header]
    for f in figures:
        unit = "µs/call" if f.unit == "s/call" else f.unit
        raw = _fmt(f.raw_median, f.unit) if f.raw else ""
        target = "" if f.target is None else f"{f.target}: {'met' if f.met else 'MISSED'}"
        extra = ""
        if "db_bytes_per_run" in f.extra:
            extra = f" [{f.extra['db_bytes_per_run']:,} B/run]"
        lines.append(
            (f.scenario, f.name + extra, unit, _fmt(f.flowstate_median, f.unit), raw, _ratio(f), target)
        )
    widths = [max(len(str(row[i])) for row in lines) for i in range(len(header))]
    out = []
    for index, row in enumerate(lines):
        cells = [str(c).ljust(w) if i < 3 or i == 6 else str(c).rjust(w) for i, (c, w) in enumerate(zip(row, widths))]
        out.append("  ".join(cells).rstrip())
        if index == 0:
            out.append("  ".join("-" * w for w in widths))
    out.append("")
    out.append(
        "ratio: throughput flowstate ÷ raw (higher is better); × rows: latency or memory "
        "flowstate ÷ reference (lower is better). Medians of interleaved rounds. raw: plain "
        "sqlite3 doing the same writes; for the P rows (PostgreSQL), plain psycopg; for the 10 "
        "rows (asyncio), the sync Orchestrator."
    )
    return "\n".join(out)


def write_json(path: Path, figures: list[Figure], settings: dict[str, Any]) -> None:
    """Every per-round figure, the medians, ratios and the machine, as JSON."""
    payload = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
        "settings": settings,
        "figures": [f.as_json() for f in figures],
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")

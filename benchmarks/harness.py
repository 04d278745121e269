"""Timing helpers: interleaved rounds, medians, ratios and the result record."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Figure", "interleave", "median", "rate"]

Side = Callable[[], float]
"""Runs one batch and returns its figure (operations per second, or seconds)."""


def median(values: list[float]) -> float:
    """The median of ``values`` (NaN when empty)."""
    return statistics.median(values) if values else float("nan")


def rate(operations: int, work: Callable[[], None]) -> float:
    """Run ``work`` once and return ``operations`` per second of wall time."""
    gc.collect()
    start = time.perf_counter()
    work()
    return operations / (time.perf_counter() - start)


def interleave(rounds: int, flowstate: Side, raw: Side) -> tuple[list[float], list[float]]:
    """Run both sides ``rounds`` times, alternating which goes first (A B, B A, A B, ...)."""
    a: list[float] = []
    b: list[float] = []
    for index in range(rounds):
        if index % 2 == 0:
            a.append(flowstate())
            b.append(raw())
        else:
            b.append(raw())
            a.append(flowstate())
    return a, b


@dataclass
class Figure:
    """One line of the results table.

    ``flowstate`` and ``raw`` hold the per-round figures; ``unit`` says what they count.
    ``ratio`` is flowstate's median over raw's median for throughputs (higher is better) and
    for latencies (where 1.0 is parity and lower is better): see ``ratio_kind``. The targets
    are judged on it. ``paired_ratio``, in the JSON only, is the median of the rounds' own
    ratios (each round's two sides ran back to back): it moves less when the machine speeds
    up or slows down during a run.
    """

    scenario: str
    name: str
    unit: str
    flowstate: list[float]
    raw: list[float] = field(default_factory=list)
    ratio_kind: str = "throughput"  # "throughput": fs/raw ops/s; "latency": fs/ref seconds
    target: str | None = None
    met: bool | None = None
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def flowstate_median(self) -> float:
        return median(self.flowstate)

    @property
    def raw_median(self) -> float:
        return median(self.raw)

    @property
    def ratio(self) -> float | None:
        if not self.raw:
            return None
        return self.flowstate_median / self.raw_median

    @property
    def paired_ratio(self) -> float | None:
        if not self.raw or len(self.raw) != len(self.flowstate):
            return None
        return median([a / b for a, b in zip(self.flowstate, self.raw)])

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["flowstate_median"] = self.flowstate_median
        data["raw_median"] = self.raw_median if self.raw else None
        data["ratio"] = self.ratio
        data["paired_ratio"] = self.paired_ratio
        return data

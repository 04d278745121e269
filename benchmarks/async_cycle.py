"""Scenario 10: the flow-run cycle through ``AsyncOrchestrator``, against the sync engine.

- 10: one coroutine drives scenario 1's cycle (seven calls, six transitions), one commit per
  call; the reference side is ``Orchestrator`` doing the same cycles in the same process,
  interleaved round by round. Target: async ÷ sync >= 0.7.
- 10C: 8 coroutines in flight, each driving its own runs (8 runs at a time), against the same
  sync cycles.
- 10L: the event loop's lag while 8 coroutines drive ``async_transitions`` transitions: a ticker
  task asks to sleep 1 ms again and again and records how late it wakes; the figure is the
  99th percentile, in ms (target < 10 ms). ``extra`` has the idle loop's p99 for comparison.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from itertools import count

from flowstate import AsyncOrchestrator, Orchestrator
from flowstate.states import Completed, Paused, Pending, Running, Scheduled

from benchmarks.config import Config
from benchmarks.flow_cycle import CALLS_PER_CYCLE, flow_cycle
from benchmarks.harness import Figure, interleave, rate

__all__ = ["async_flow_cycle", "run"]

COROUTINES = 8
TRANSITIONS_PER_CYCLE = CALLS_PER_CYCLE - 1
TICK = 0.001


async def async_flow_cycle(orc: AsyncOrchestrator) -> None:
    """Scenario 1's cycle, awaited call by call."""
    run = await orc.create_flow_run(flow_name="bench", name="bench-run")
    await orc.set_flow_run_state(run.id, Scheduled())
    await orc.set_flow_run_state(run.id, Pending())
    await orc.set_flow_run_state(run.id, Running())
    await orc.set_flow_run_state(run.id, Paused(pause_key="approval"))
    await orc.resume_flow_run(run.id)
    await orc.set_flow_run_state(run.id, Completed())


async def _cycles(orc: AsyncOrchestrator, cycles: int, coroutines: int) -> None:
    async def driver(share: int) -> None:
        for _ in range(share):
            await async_flow_cycle(orc)

    shares = [cycles // coroutines + (i < cycles % coroutines) for i in range(coroutines)]
    await asyncio.gather(*(driver(share) for share in shares))


async def _timed(orc: AsyncOrchestrator, cycles: int, coroutines: int) -> float:
    start = time.perf_counter()
    await _cycles(orc, cycles, coroutines)
    return cycles * CALLS_PER_CYCLE / (time.perf_counter() - start)


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def _lag_p99(orc: AsyncOrchestrator | None, transitions: int) -> tuple[float, int]:
    """The ticker's p99 lateness in ms while 8 coroutines drive ``transitions`` transitions
    (with no orchestrator: while the loop sleeps for as long as the load took)."""
    loop = asyncio.get_running_loop()
    lags: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            asked = loop.time()
            await asyncio.sleep(TICK)
            lags.append(loop.time() - asked - TICK)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    if orc is None:
        await asyncio.sleep(transitions * 0.0002)
    else:
        cycles = max(COROUTINES, transitions // TRANSITIONS_PER_CYCLE)
        await _cycles(orc, cycles, COROUTINES)
    stop.set()
    await task
    return _p99(lags) * 1000, len(lags)


def run(config: Config) -> list[Figure]:
    """Scenarios 10, 10C and 10L."""
    folder = config.workdir / "async_cycle"
    folder.mkdir(parents=True, exist_ok=True)
    names = count()
    n = config.runs
    calls = n * CALLS_PER_CYCLE
    sync = Orchestrator(folder / f"sync-{next(names)}.db")
    figures: list[Figure] = []
    with asyncio.Runner() as runner:
        orc = runner.run(AsyncOrchestrator(folder / f"async-{next(names)}.db").open())

        def sync_side() -> float:
            return rate(calls, lambda: [flow_cycle(sync) for _ in range(n)])

        for name, coroutines in (("one coroutine", 1), (f"{COROUTINES} coroutines", COROUTINES)):

            def async_side(coroutines: int = coroutines) -> float:
                return runner.run(_timed(orc, n, coroutines))

            async_side(), sync_side()  # warm up both
            a, b = interleave(config.rounds, async_side, sync_side)
            scenario = "10" if coroutines == 1 else "10C"
            figures.append(
                Figure(scenario, f"flow-run cycle through AsyncOrchestrator, {name}", "calls/s",
                       a, b, target="ratio >= 0.7" if coroutines == 1 else None,
                       notes="reference side: the sync Orchestrator, same cycle, same process",
                       extra={"calls_per_round": calls, "coroutines": coroutines})
            )

        transitions = config.async_transitions
        loaded, idle, ticks = [], [], []
        for _ in range(config.rounds):
            p99, seen = runner.run(_lag_p99(orc, transitions))
            loaded.append(p99)
            ticks.append(seen)
            idle.append(runner.run(_lag_p99(None, transitions))[0])
        figures.append(
            Figure("10L", f"event-loop lag p99, {COROUTINES} coroutines driving "
                   f"{transitions:,} transitions", "ms", loaded, ratio_kind="none",
                   target="p99 < 10 ms",
                   extra={"idle_loop_p99_ms": statistics.median(idle), "ticks": ticks,
                          "tick_s": TICK})
        )
        runner.run(orc.close())
    sync.close()
    return figures

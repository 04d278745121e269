"""Scenario 3: task runs inside a Running flow run, with a cache hit.

Per unit, seven calls: a task is created, goes Pending → Running → Completed with a cache key
(its state is cached); a second task is created, goes Pending, and its Running proposal with the
same key is answered from the cache (REJECT with a written ``Cached`` COMPLETED state). The raw
side writes the same rows and, for the cache hit, makes the cache lookup a program would need.
"""

from __future__ import annotations

from datetime import datetime, timezone
from uuid import UUID

from flowstate import Orchestrator
from flowstate.states import Completed, Pending, Running

from benchmarks.config import Config
from benchmarks.harness import Figure, interleave, rate
from benchmarks.raw import RawReplayer, open_raw, record

__all__ = ["CALLS_PER_UNIT", "run", "task_unit"]

CALLS_PER_UNIT = 7
FLOW_RUN_ID = UUID("00000000-0000-7000-8000-00000000f10e")
CACHE_KEY = "bench-cache-key"
_CACHE_LOOKUP = (
    "SELECT s.id, s.type, s.name, s.timestamp, s.message, s.data, s.details FROM task_cache c "
    "JOIN task_run_state s ON s.id = c.state_id WHERE c.cache_key = ? "
    "AND (c.expiration IS NULL OR c.expiration > ?) ORDER BY c.id DESC LIMIT 1"
)


def setup(orc: Orchestrator) -> None:
    """The enclosing flow run, RUNNING."""
    orc.create_flow_run(flow_name="bench", name="bench-parent", id=FLOW_RUN_ID, state=Running())


def task_unit(orc: Orchestrator) -> None:
    """A task that completes into the cache, then a task served from it."""
    task = orc.create_task_run(flow_run_id=FLOW_RUN_ID, task_key="compute")
    orc.set_task_run_state(task.id, Pending())
    orc.set_task_run_state(task.id, Running())
    orc.set_task_run_state(task.id, Completed(cache_key=CACHE_KEY, data={"type": "reference"}))
    hit = orc.create_task_run(flow_run_id=FLOW_RUN_ID, task_key="compute", dynamic_key="1")
    orc.set_task_run_state(hit.id, Pending())
    orc.set_task_run_state(hit.id, Running(cache_key=CACHE_KEY))


def _script() -> list:
    ids: dict[str, UUID] = {}

    def create(slot: str, dynamic_key: str):  # type: ignore[no-untyped-def]
        def step(orc: Orchestrator) -> None:
            ids[slot] = orc.create_task_run(
                flow_run_id=FLOW_RUN_ID, task_key="compute", dynamic_key=dynamic_key
            ).id

        return step

    def to(slot: str, make):  # type: ignore[no-untyped-def]
        return lambda orc: orc.set_task_run_state(ids[slot], make())

    return [
        create("a", "0"),
        to("a", Pending),
        to("a", Running),
        to("a", lambda: Completed(cache_key=CACHE_KEY, data={"type": "reference"})),
        create("b", "1"),
        to("b", Pending),
        to("b", lambda: Running(cache_key=CACHE_KEY)),
    ]


def _lookup_params(_fresh: dict[str, str]) -> tuple[str, str]:
    return CACHE_KEY, datetime.now(timezone.utc).isoformat(timespec="microseconds")


def run(config: Config) -> list[Figure]:
    """Scenario 3, one commit per call."""
    folder = config.workdir / "task_cycle"
    folder.mkdir(parents=True, exist_ok=True)
    recording = record(
        str(folder / "recording.db"),
        _script(),
        setup=setup,
        reads={6: (_CACHE_LOOKUP, _lookup_params)},
    )
    orc = Orchestrator(folder / "flowstate.db")
    setup(orc)
    with Orchestrator(folder / "raw.db") as raw_setup:
        setup(raw_setup)
    raw = RawReplayer(open_raw(str(folder / "raw.db")), recording)
    n = config.tasks
    calls = n * CALLS_PER_UNIT

    def fs_side() -> float:
        return rate(calls, lambda: [task_unit(orc) for _ in range(n)])

    def raw_side() -> float:
        return rate(calls, lambda: raw.replay(n))

    fs_side(), raw_side()
    a, b = interleave(config.rounds, fs_side, raw_side)
    orc.close()
    raw.conn.close()
    return [
        Figure("3", "task runs in a Running flow, with a cache hit", "calls/s", a, b,
               extra={"calls_per_round": calls})
    ]

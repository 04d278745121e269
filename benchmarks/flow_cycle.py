"""Scenarios 1 and 2: the flow-run cycle, one commit per call and batched in a transaction.

create → Scheduled → Pending → Running → Paused → resume → Completed: seven calls, six
transitions. The raw side writes the same rows (recorded from flowstate) with plain sqlite3.
"""

from __future__ import annotations

from itertools import count

from flowstate import Orchestrator
from flowstate.states import Completed, Paused, Pending, Running, Scheduled

from benchmarks.config import Config
from benchmarks.harness import Figure, Side, interleave, rate
from benchmarks.raw import RawReplayer, open_raw, record

__all__ = ["CALLS_PER_CYCLE", "batched_sides", "flow_cycle", "run"]

CALLS_PER_CYCLE = 7


def flow_cycle(orc: Orchestrator) -> None:
    """One flow run through its life, as a worker and a user would drive it."""
    run = orc.create_flow_run(flow_name="bench", name="bench-run")
    orc.set_flow_run_state(run.id, Scheduled())
    orc.set_flow_run_state(run.id, Pending())
    orc.set_flow_run_state(run.id, Running())
    orc.set_flow_run_state(run.id, Paused(pause_key="approval"))
    orc.resume_flow_run(run.id)
    orc.set_flow_run_state(run.id, Completed())


def _script() -> list:
    holder: dict[str, object] = {}

    def create(orc: Orchestrator) -> None:
        holder["id"] = orc.create_flow_run(flow_name="bench", name="bench-run").id

    def setter(state_factory):  # type: ignore[no-untyped-def]
        return lambda orc: orc.set_flow_run_state(holder["id"], state_factory())

    return [
        create,
        setter(Scheduled),
        setter(Pending),
        setter(Running),
        setter(lambda: Paused(pause_key="approval")),
        lambda orc: orc.resume_flow_run(holder["id"]),
        setter(Completed),
    ]


def run(config: Config) -> list[Figure]:
    """Scenario 1 (NORMAL, and FULL for the durability trade-off) and scenario 2."""
    folder = config.workdir / "flow_cycle"
    folder.mkdir(parents=True, exist_ok=True)
    recording = record(str(folder / "recording.db"), _script())
    names = count()
    figures: list[Figure] = []

    modes = ["NORMAL", "FULL"] if config.durability else ["NORMAL"]
    for mode in modes:
        fs_path = folder / f"flowstate-{mode}-{next(names)}.db"
        raw_path = folder / f"raw-{mode}-{next(names)}.db"
        orc = Orchestrator(fs_path, synchronous=mode)  # type: ignore[arg-type]
        Orchestrator(raw_path).close()  # the same schema for the raw side
        raw = RawReplayer(open_raw(str(raw_path), synchronous=mode), recording)
        n = config.runs if mode == "NORMAL" else max(1, config.runs // 4)
        calls = n * CALLS_PER_CYCLE

        def fs_side(orc: Orchestrator = orc, n: int = n) -> float:
            return rate(calls_for(n), lambda: [flow_cycle(orc) for _ in range(n)])

        def raw_side(raw: RawReplayer = raw, n: int = n) -> float:
            return rate(calls_for(n), lambda: raw.replay(n))

        fs_side(), raw_side()  # warm up both (statement caches, file growth)
        a, b = interleave(config.rounds, fs_side, raw_side)
        if mode == "NORMAL":
            figures.append(
                Figure("1", "flow-run cycle, one commit per call", "calls/s", a, b,
                       target="ratio >= 0.5", extra={"calls_per_round": calls, "synchronous": mode})
            )
        else:
            figures.append(
                Figure("1F", "flow-run cycle, synchronous=FULL", "calls/s", a, b,
                       notes="power-loss durable; compare with scenario 1",
                       extra={"calls_per_round": calls, "synchronous": mode})
            )
        orc.close()
        raw.conn.close()

    fs_path = folder / f"flowstate-batch-{next(names)}.db"
    raw_path = folder / f"raw-batch-{next(names)}.db"
    orc = Orchestrator(fs_path)
    Orchestrator(raw_path).close()
    raw = RawReplayer(open_raw(str(raw_path)), recording)
    per_batch = config.batch_runs
    fs_batch, raw_batch = batched_sides(config, orc, raw)
    fs_batch(), raw_batch()
    a, b = interleave(config.rounds, fs_batch, raw_batch)
    figures.append(
        Figure("2", f"flow-run cycle, {per_batch} runs per transaction", "calls/s", a, b,
               target="ratio >= 0.4", extra={"runs_per_transaction": per_batch})
    )
    orc.close()
    raw.conn.close()
    return figures


def batched_sides(config: Config, orc: Orchestrator, raw: RawReplayer) -> tuple[Side, Side]:
    """Scenario 2's two sides: ``config.batches`` transactions of ``config.batch_runs`` cycles."""
    per_batch, batches = config.batch_runs, config.batches

    def fs_batch() -> float:
        def work() -> None:
            for _ in range(batches):
                with orc.transaction():
                    for _ in range(per_batch):
                        flow_cycle(orc)

        return rate(calls_for(per_batch * batches), work)

    def raw_batch() -> float:
        def work() -> None:
            for _ in range(batches):
                raw.replay_batched(per_batch)

        return rate(calls_for(per_batch * batches), work)

    return fs_batch, raw_batch


def calls_for(cycles: int) -> int:
    """API calls (and raw commits, unbatched) in ``cycles`` flow-run cycles."""
    return cycles * CALLS_PER_CYCLE

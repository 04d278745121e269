"""How fast could Python go? Scenario 2's cycle through a deliberately lean engine.

``python -m benchmarks.floor [--rounds N]`` interleaves four sides, 100 runs per transaction:
flowstate; flowstate with a flow policy of no rules (``no rules``: the same calls, context,
bookkeeping, saving and cache, without the rule pipeline, so what the pipeline costs and what
the rest costs can be told apart); raw sqlite3 (scenario 2's baseline); and
:class:`LeanEngine` — not part of
flowstate, and not a general engine: just enough to drive the benchmark's cycle (create →
Scheduled → Pending → Running → Paused → resume → Completed) the way flowstate does, with plain
slotted objects instead of pydantic models and no rule pipeline. It runs the checks the core
flow policy makes on these transitions, the same bookkeeping, and writes the same rows with the
same statements as flowstate (run, payload and policy INSERTs, six state INSERTs, one run
UPDATE and one policy UPDATE per run and transaction), in the same text encodings (the smoke test compares the rows).

What it measures: how much of flowstate's time a Python engine doing this work needs at all,
so that the cost of flowstate's generality (models, rule pipeline, cached runs brought back to
what a read would build) can be told apart from the cost of orchestrating. It leaves out what
the cycle does not exercise (other rules, listeners, text checks, run input, result data). It
answers with the same public pydantic models as flowstate (an ``OrchestrationResult`` holding
the new ``State``, a ``FlowRun`` for a created run), built from its own objects without
validation, as flowstate builds its own.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from uuid import UUID

from flowstate import Orchestrator
from flowstate._ids import uuid7
from flowstate._models import construct
from flowstate.orchestration.policies import CORE_FLOW
from flowstate.results import AcceptDetails, OrchestrationResult, SetStateStatus
from flowstate.runs import FlowRun, FlowRunPolicy
from flowstate.states import _DETAIL_DEFAULTS, State, StateDetails, StateType
from flowstate.store import sql
from flowstate.store.connection import configure, connect
from flowstate.store.rows import encode_time

from benchmarks.flow_cycle import CALLS_PER_CYCLE, _script, flow_cycle
from benchmarks.harness import median, rate
from benchmarks.raw import RawReplayer, open_raw, record

__all__ = ["LeanEngine", "lean_cycle", "main"]

_UTC = timezone.utc
_NAMES = {
    "SCHEDULED": "Scheduled",
    "PENDING": "Pending",
    "RUNNING": "Running",
    "PAUSED": "Paused",
    "COMPLETED": "Completed",
}
_TERMINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED", "CRASHED"})
_ONE_MICROSECOND = timedelta(microseconds=1)
_TYPES = {member.value: member for member in StateType}
_ACCEPTED = construct(AcceptDetails, {"type": "accept_details"}, set())


class LeanState:
    """A state as a plain object: what ``flowstate.states`` constructors give, minus pydantic."""

    __slots__ = ("id", "type", "name", "timestamp", "details")

    def __init__(self, type: str, details: dict[str, Any] | None = None) -> None:
        self.id = uuid7()
        self.type = type
        self.name = _NAMES[type]
        self.timestamp = datetime.now(_UTC)
        self.details = details or {}


class _LeanRun:
    __slots__ = (
        "id", "id_text", "state", "run_count", "start_time", "end_time", "total_run_time",
        "expected_start_time", "next_scheduled", "pause_keys", "resuming", "policy_text",
        "updated", "waiting", "policy_dirty",
    )
    id: UUID
    id_text: str
    state: LeanState | None
    run_count: int
    start_time: datetime | None
    end_time: datetime | None
    total_run_time: timedelta
    expected_start_time: datetime | None
    next_scheduled: datetime | None
    pause_keys: set[str]
    resuming: bool
    policy_text: str
    updated: datetime
    waiting: bool
    policy_dirty: bool


def _policy_json(pause_keys: set[str], resuming: bool) -> str:
    keys = ",".join(json.dumps(key) for key in pause_keys)
    return (
        '{"max_retries":0,"retry_delay_seconds":0.0,"retries":null,"retry_delay":null,'
        f'"pause_keys":[{keys}],"resuming":{"true" if resuming else "false"},"retry_type":null}}'
    )


def _public_state(state: LeanState) -> State:
    """The state as the API returns it: flowstate's pydantic model, built without validation."""
    details = state.details
    return construct(
        State,
        {
            "id": state.id,
            "type": _TYPES[state.type],
            "name": state.name,
            "timestamp": state.timestamp,
            "message": None,
            "data": None,
            "state_details": construct(StateDetails, {**_DETAIL_DEFAULTS, **details}, set(details)),
        },
    )


def _public_run(run: _LeanRun, name: str, flow_name: str) -> FlowRun:
    """A created run as the API returns it (no state yet), built without validation."""
    policy = construct(
        FlowRunPolicy,
        {"max_retries": 0, "retry_delay_seconds": 0.0, "retries": None, "retry_delay": None,
         "pause_keys": set(), "resuming": False, "retry_type": None},
    )
    return construct(
        FlowRun,
        {
            "id": run.id, "name": name, "flow_name": flow_name, "parameters": {}, "tags": [],
            "state": None, "state_type": None, "state_name": None, "run_count": 0,
            "start_time": None, "end_time": None, "total_run_time": timedelta(0),
            "expected_start_time": None, "next_scheduled_start_time": None,
            "estimated_run_time": timedelta(0), "empirical_policy": policy,
            "deployment_id": None, "infrastructure_pid": None, "parent_task_run_id": None,
            "created": run.updated, "updated": run.updated,
        },
    )


def _details_json(details: dict[str, Any]) -> str:
    """The cycle's details in StateDetails' field order, as pydantic writes them."""
    parts = [f'"flow_run_id":"{str(details["flow_run_id"])}"']
    scheduled = details.get("scheduled_time")
    if scheduled is not None:
        parts.append(f'"scheduled_time":"{scheduled.isoformat()[:-6]}Z"')
    key = details.get("pause_key")
    if key is not None:
        parts.append(f'"pause_key":{json.dumps(key, ensure_ascii=False)}')
    return "{" + ",".join(parts) + "}"


class LeanEngine:
    """The cycle's API calls, lean: see the module docstring for what it does and leaves out."""

    def __init__(self, path: str) -> None:
        self.conn = connect(path, busy_timeout=30.0)
        configure(self.conn, path, synchronous="NORMAL")
        self._runs: dict[int, _LeanRun] = {}
        self._waiting: list[_LeanRun] = []

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.execute("PRAGMA data_version").fetchone()  # as flowstate checks its cache

    def __exit__(self, *exc_info: object) -> None:
        for run in self._waiting:
            self._write_run(run)
        self._waiting.clear()
        self.conn.execute("COMMIT")
        self._runs.clear()

    def _write_run(self, run: _LeanRun) -> None:
        state = run.state
        assert state is not None  # (a run waits for its UPDATE only after a transition)
        self.conn.execute(
            sql.UPDATE_FLOW_RUN,
            (
                str(state.id), state.type, state.name, run.run_count,
                encode_time(run.start_time), encode_time(run.end_time),
                run.total_run_time.total_seconds(), encode_time(run.expected_start_time),
                encode_time(run.next_scheduled), encode_time(run.updated), run.id_text,
            ),
        )
        if run.policy_dirty:
            self.conn.execute(sql.UPDATE_FLOW_RUN_POLICY, (run.policy_text, run.id_text))
            run.policy_dirty = False
        run.waiting = False

    def create_flow_run(self, flow_name: str, name: str) -> FlowRun:
        if type(flow_name) is not str or type(name) is not str:
            raise TypeError("flow_name and name must be text")
        run = _LeanRun()
        run.id = uuid7()
        run.id_text = str(run.id)
        run.state = None
        run.run_count = 0
        run.start_time = run.end_time = run.expected_start_time = run.next_scheduled = None
        run.total_run_time = timedelta(0)
        run.pause_keys = set()
        run.resuming = False
        run.policy_text = _policy_json(run.pause_keys, False)
        run.waiting = run.policy_dirty = False
        run.updated = now = datetime.now(_UTC)
        text = encode_time(now)
        self.conn.execute(
            sql.INSERT_FLOW_RUN_IF_NEW,
            (run.id_text, name, flow_name, "", "", None, None, None, 0, None, None, 0.0,
             None, None, "", None, None, None, text, text),
        )
        self.conn.execute(sql.INSERT_FLOW_RUN_PAYLOAD, (run.id_text, "{}", "[]"))
        self.conn.execute(sql.INSERT_FLOW_RUN_POLICY, (run.id_text, run.policy_text))
        self._runs[run.id.int] = run
        return _public_run(run, name, flow_name)

    def resume_flow_run(self, run_id: UUID) -> OrchestrationResult | str:
        run = self._runs[run_id.int]
        if run.state is None or run.state.type != "PAUSED":
            return "ABORT"
        return self.set_flow_run_state(run_id, LeanState("RUNNING"))

    def set_flow_run_state(self, run_id: UUID, proposed: LeanState) -> OrchestrationResult | str:
        """The result of an accepted transition; the status alone for the refusals, which
        the benchmark's cycle never meets."""
        if type(proposed) is not LeanState:
            raise TypeError("not a state")
        run = self._runs[run_id.int]
        now = datetime.now(_UTC)
        initial = run.state
        from_type = None if initial is None else initial.type
        to_type = proposed.type
        details = {**proposed.details, "flow_run_id": run.id}
        if to_type == "SCHEDULED" and details.get("scheduled_time") is None:
            details["scheduled_time"] = now
        # the core flow policy's checks for these transitions
        if initial is not None:
            lease = initial.details.get("deployment_concurrency_lease_id")
            if lease is not None:
                details["deployment_concurrency_lease_id"] = lease
            transition = details.get("transition_id")
            if transition is not None and initial.details.get("transition_id") == transition:
                return "REJECT"
        if from_type == "SCHEDULED" and to_type == "PENDING":
            details["scheduled_time"] = initial.details.get("scheduled_time")  # type: ignore[union-attr]
        if from_type == "PENDING" and to_type == "RUNNING":
            scheduled = initial.details.get("scheduled_time")  # type: ignore[union-attr]
            if scheduled is not None and scheduled > now:
                return "WAIT"
        pause_key = None
        if to_type == "PAUSED":
            if from_type != "RUNNING":
                return "REJECT"
            pause_key = details.get("pause_key") or str(uuid7())
            if pause_key in run.pause_keys:
                return "REJECT"
        leaving_pause = from_type == "PAUSED"
        if leaving_pause:
            timeout = initial.details.get("pause_timeout")  # type: ignore[union-attr]
            if timeout is not None and timeout < now:
                return "REJECT"
        state = LeanState.__new__(LeanState)
        state.id, state.type, state.name, state.details = uuid7(), to_type, proposed.name, details
        state.timestamp = now
        # the bookkeeping
        if initial is not None and now <= initial.timestamp:
            state.timestamp = initial.timestamp + _ONE_MICROSECOND
        stamp = state.timestamp
        if to_type == "RUNNING" and run.start_time is None:
            run.start_time = stamp
        final = to_type in _TERMINAL
        if from_type in _TERMINAL and not final:
            run.end_time = None
        if final and run.end_time is None:
            if run.start_time is None:
                run.start_time = stamp
            run.end_time = stamp
        if from_type == "RUNNING":
            run.total_run_time += stamp - initial.timestamp  # type: ignore[union-attr]
        if run.expected_start_time is None:
            run.expected_start_time = details["scheduled_time"] if to_type == "SCHEDULED" else stamp
        if to_type == "SCHEDULED":
            run.next_scheduled = details["scheduled_time"]
        elif from_type == "SCHEDULED":
            run.next_scheduled = None
        policy_changed = False
        if to_type == "RUNNING" and not run.resuming:
            run.run_count += 1
        if run.resuming and (to_type == "RUNNING" or final):
            run.resuming, policy_changed = False, True
        if pause_key is not None:
            run.pause_keys = run.pause_keys | {pause_key}
            policy_changed = True
        if leaving_pause:
            run.resuming, policy_changed = True, True
        if policy_changed:
            run.policy_text = _policy_json(run.pause_keys, run.resuming)
            run.policy_dirty = True
        self.conn.execute(
            sql.INSERT_FLOW_RUN_STATE,
            (run.id_text, str(state.id), to_type, state.name, encode_time(stamp), None,
             None, _details_json(details)),
        )
        run.state, run.updated = state, now
        if not run.waiting:
            run.waiting = True
            self._waiting.append(run)
        return construct(
            OrchestrationResult,
            {"state": _public_state(state), "status": SetStateStatus.ACCEPT, "details": _ACCEPTED},
        )


def lean_cycle(engine: LeanEngine) -> None:
    """The benchmark's flow-run cycle (``flow_cycle``), through the lean engine."""
    run = engine.create_flow_run(flow_name="bench", name="bench-run")
    engine.set_flow_run_state(run.id, LeanState("SCHEDULED"))
    engine.set_flow_run_state(run.id, LeanState("PENDING"))
    engine.set_flow_run_state(run.id, LeanState("RUNNING"))
    engine.set_flow_run_state(run.id, LeanState("PAUSED", {"pause_key": "approval"}))
    engine.resume_flow_run(run.id)
    engine.set_flow_run_state(run.id, LeanState("COMPLETED"))


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.floor", description=__doc__)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--runs", type=int, default=100, help="runs per transaction")
    parser.add_argument("--batches", type=int, default=4, help="transactions per round")
    parser.add_argument("--folder", help="where to build the databases (default: a temp folder)")
    args = parser.parse_args(argv)
    folder = Path(args.folder or tempfile.mkdtemp(prefix="flowstate-floor-"))
    folder.mkdir(parents=True, exist_ok=True)
    recording = record(str(folder / "recording.db"), _script())
    for name in ("flowstate.db", "no-rules.db", "raw.db", "lean.db"):
        Orchestrator(folder / name).close()  # flowstate's schema for every side
    orc = Orchestrator(folder / "flowstate.db")
    no_rules = CORE_FLOW.remove(*CORE_FLOW.names, name="no rules")
    bare = Orchestrator(folder / "no-rules.db", flow_policy=no_rules)
    raw = RawReplayer(open_raw(str(folder / "raw.db")), recording)
    lean = LeanEngine(str(folder / "lean.db"))
    calls = args.runs * args.batches * CALLS_PER_CYCLE

    def cycles_of(engine: Orchestrator) -> Callable[[], None]:
        def side() -> None:
            for _ in range(args.batches):
                with engine.transaction():
                    for _ in range(args.runs):
                        flow_cycle(engine)

        return side

    def lean_side() -> None:
        for _ in range(args.batches):
            with lean:
                for _ in range(args.runs):
                    lean_cycle(lean)

    def raw_side() -> None:
        for _ in range(args.batches):
            raw.replay_batched(args.runs)

    sides = {
        "flowstate": cycles_of(orc), "no rules": cycles_of(bare), "lean": lean_side, "raw": raw_side
    }
    figures: dict[str, list[float]] = {name: [] for name in sides}
    for work in sides.values():
        work()  # warm up
    order = list(sides)
    for index in range(args.rounds):
        turn = index % len(order)
        for name in order[turn:] + order[:turn]:  # rotate who goes first
            figures[name].append(rate(calls, sides[name]))
    result = {name: median(values) for name, values in figures.items()}
    raw_median = result["raw"]
    print(f"scenario 2's cycle, {args.runs} runs per transaction, medians of {args.rounds} rounds:")
    for name in ("raw", "flowstate", "no rules", "lean"):
        print(f"  {name:9s} {result[name]:9,.0f} calls/s   ratio to raw {result[name] / raw_median:.2f}")
    orc.close()
    bare.close()
    raw.conn.close()
    lean.conn.close()
    return result


def same_rows(folder: Path) -> tuple[list[Any], list[Any]]:
    """The rows each engine wrote for its runs, without ids and times (for the smoke test)."""
    shapes = []
    for name in ("flowstate.db", "lean.db"):
        conn = sqlite3.connect(folder / name)
        runs = conn.execute(
            "SELECT name, flow_name, p.parameters, p.tags, state_type, state_name, run_count, "
            "start_time IS NULL, end_time IS NULL, expected_start_time IS NULL, "
            "next_scheduled_start_time IS NULL, q.empirical_policy "
            f"FROM {sql.FLOW_RUN_WITH_PAYLOAD} ORDER BY created"
        ).fetchall()
        states = conn.execute(
            "SELECT type, name, message, data, length(details), "
            "json_remove(replace(details, flow_run_id, 'RUN'), '$.scheduled_time'), "
            "json_extract(details, '$.scheduled_time') IS NULL "
            "FROM flow_run_state ORDER BY timestamp"
        ).fetchall()
        conn.close()
        shapes.append([runs, states])
    return shapes[0], shapes[1]


if __name__ == "__main__":
    main()

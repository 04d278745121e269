"""How fast does ``OrchestrationMachine`` find a planted bug in a custom rule, and how small is
the counterexample it shrinks to? A measurement, not a test (pytest does not collect it).

Run from the repository root::

    python -m tests.testing.planted_bugs                 # both planted bugs, 330 s cap each
    python -m tests.testing.planted_bugs --cap 120 pause-limit
    python -m tests.testing.planted_bugs --control       # the correct rules: nothing is found
    python -m tests.testing.planted_bugs --corners       # corners the strategies (and the
                                                         # machine's steps) reach in 1,000 draws

Each scenario is a user's subclass of ``OrchestrationMachine``, run as its ``TestCase`` would
run it (its settings, with a fixed seed and no example database), in a child process that is
killed at the cap. Scenarios:

* ``pause-limit``: docs/custom-rules.md's "at most 2 pauses" rule with ``> 2`` for ``>= 2``,
  and the invariant a user would write (no run has more than 2 pause keys);
* ``business-hours``: the docs' business-hours WAIT rule with ``hour <= 17`` for
  ``hour < 17``, and the invariant "no flow run starts RUNNING outside 09:00-17:00 unless
  forced".

For each it prints the time until the first failing example, the total time including
shrinking (wall clock, and the CPU time of the process: the machine may be shared), the examples run, and the steps of the final counterexample (the rule calls Hypothesis prints,
the first run created by ``@initialize`` included; not the invariant checks it prints between
them), then the counterexample.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import timedelta
from typing import Any

SCENARIOS = ("pause-limit", "business-hours")
MAX_EXAMPLES = 1000


def _machines(planted: bool) -> dict[str, Any]:
    """The users' machines (imported lazily so the parent process stays light)."""
    from hypothesis.stateful import invariant

    from flowstate import Orchestrator, StateType
    from flowstate.rules import ANY_STATE, CORE_FLOW, Reject, Wait, rule
    from flowstate.testing import FrozenClock, OrchestrationMachine

    limit = 3 if planted else 2

    @rule(from_=StateType.RUNNING, to=StateType.PAUSED, name="max-2-pauses")
    def at_most_two_pauses(ctx):  # type: ignore[no-untyped-def]
        if len(ctx.run.empirical_policy.pause_keys) >= limit:
            return Reject("This run has already paused 2 times.")
        return None

    closing = 18 if planted else 17

    @rule(from_=ANY_STATE, to=StateType.RUNNING, name="business-hours")
    def business_hours(ctx):  # type: ignore[no-untyped-def]
        if 9 <= ctx.now.hour < closing:
            return None
        opening = ctx.now.replace(hour=9, minute=0, second=0, microsecond=0)
        if ctx.now.hour >= 17:
            opening += timedelta(days=1)
        return Wait(int((opening - ctx.now).total_seconds()), "Outside business hours")

    pause_policy = CORE_FLOW.insert_after("handle_pausing_flows", at_most_two_pauses)
    hours_policy = CORE_FLOW.insert_before(
        "wait_for_scheduled_time", business_hours, name="business"
    )

    class PauseLimitMachine(OrchestrationMachine):
        def make_orchestrator(self, clock: FrozenClock) -> Orchestrator:
            _seen["examples"] += 1
            return Orchestrator(":memory:", clock=clock, flow_policy=pause_policy)

        @invariant()
        def at_most_two_pauses(self) -> None:
            for run in self.orc.read_flow_runs():
                if len(run.empirical_policy.pause_keys) > 2:
                    _fail(f"{run!r} paused 3 times")

    class BusinessHoursMachine(OrchestrationMachine):
        def make_orchestrator(self, clock: FrozenClock) -> Orchestrator:
            _seen["examples"] += 1
            return Orchestrator(":memory:", clock=clock, flow_policy=hours_policy)

        @invariant()
        def runs_start_in_business_hours(self) -> None:
            for run_id in self.flow_run_ids:
                for state in self.orc.read_flow_run_states(run_id):
                    if (
                        state.type is StateType.RUNNING
                        and state.id not in self.forced_state_ids
                        and not 9 <= state.timestamp.hour < 17
                    ):
                        _fail(f"{state!r} started after hours")

    return {"pause-limit": PauseLimitMachine, "business-hours": BusinessHoursMachine}


_seen: dict[str, Any] = {"examples": 0, "first_failure": None, "started": (0.0, 0.0)}


def _fail(message: str) -> None:
    """Fail the example; the first failure of the run is timed."""
    if _seen["first_failure"] is None:
        _seen["first_failure"] = time.perf_counter()
        wall, cpu = _seen["started"]
        found = {
            "event": "found",
            "find_s": round(_seen["first_failure"] - wall, 1),
            "find_cpu_s": round(time.process_time() - cpu, 1),
            "examples": _seen["examples"],
        }
        print(json.dumps(found), flush=True)
    raise AssertionError(message)


def run_one(name: str, planted: bool) -> dict[str, Any]:
    """Run one scenario in this process; the figures as a dict."""
    from hypothesis import settings
    from hypothesis.reporting import with_reporter
    from hypothesis.stateful import run_state_machine_as_test

    machine = _machines(planted)[name]
    chosen = settings(
        machine.TestCase.settings,
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        database=None,
        print_blob=False,
    )
    lines: list[str] = []
    started = time.perf_counter()
    _seen["started"] = (started, time.process_time())
    error = None
    with with_reporter(lines.append):
        try:
            run_state_machine_as_test(machine, settings=chosen)
        except AssertionError as exc:
            error = str(exc).splitlines()[0] if str(exc) else "AssertionError"
            for note in getattr(exc, "__notes__", []):  # where hypothesis puts the steps
                lines.extend(note.splitlines())
        except Exception as exc:  # a health check, an error in the machine
            error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    ended = time.perf_counter()
    first = _seen["first_failure"]
    setup = machine.setup_state()
    names = {r.function.__name__ for r in [*setup.rules, *setup.initializers]}
    steps = [line for line in lines if _called(line) in names]
    return {
        "scenario": name,
        "planted": planted,
        "found": first is not None,
        "error": error,
        "find_s": None if first is None else round(first - started, 1),
        "total_s": round(ended - started, 1),
        "cpu_s": round(time.process_time() - _seen["started"][1], 1),
        "examples": _seen["examples"],
        "steps": len(steps) if first is not None else None,
        "counterexample": lines,
    }


def _called(line: str) -> str | None:
    """The rule a printed step calls (``state.start_flow_run(...)``, ``x = state.f()``)."""
    call = line.split(" = ", 1)[-1].strip()
    if not call.startswith("state.") or "(" not in call:
        return None
    return call[len("state.") : call.index("(")]


def corners(draws: int = 1000) -> dict[str, dict[str, int]]:
    """How many of ``draws`` draws of each strategy reach each corner (sequences are replayed
    through an orchestrator to count the pauses they reach)."""
    from collections import Counter
    from uuid import UUID

    from hypothesis import Phase, given, settings

    from flowstate import Orchestrator, StateType
    from flowstate.testing import runs_in, states, transition_sequences
    from flowstate.testing.clock import DEFAULT_START

    now = DEFAULT_START
    S = StateType

    def count(strategy: Any, classify: Any) -> dict[str, int]:
        seen: Counter[str] = Counter()

        @settings(max_examples=draws, database=None, deadline=None, phases=[Phase.generate])
        @given(strategy)
        def draw(value: Any) -> None:
            seen["draws"] += 1
            for corner in classify(value):
                seen[corner] += 1

        draw()
        return dict(seen)

    def state_corners(state: Any) -> list[str]:
        d, found = state.state_details, []
        for name, value in (("scheduled", d.scheduled_time), ("pause timeout", d.pause_timeout),
                            ("cache expiration", d.cache_expiration)):
            if value is not None:
                found.append(f"{name} exactly now" if value == now else
                             f"{name} already past" if value < now else f"{name} ahead")
        if d.pause_key is not None:
            found.append("pause key from the pool")
        return found

    def replay(steps: Any) -> list[str]:
        with Orchestrator(":memory:") as orc:
            run = orc.create_flow_run(deployment_id=UUID(int=1))
            used: set[str] = set()
            reused = False
            for state, force in steps:
                key = state.state_details.pause_key
                if state.type is S.PAUSED and key is not None:
                    reused = reused or key in used
                    used.add(key)
                orc.set_flow_run_state(run.id, state, force=force)
            pauses = len(orc.read_flow_run(run.id).empirical_policy.pause_keys)
            types = {s.type for s in orc.read_flow_run_states(run.id)}
        found = [f"{n}+ pause keys" for n in (1, 2, 3) if pauses >= n]
        found += ["a pause key proposed again"] if reused else []
        found += [f"reached {t.value}" for t in (S.PAUSED, S.CANCELLING) if t in types]
        return found

    from flowstate.testing.strategies import StateTable

    def machine_states(types: tuple[StateType, ...], kind: Any) -> Any:
        """What the machine's steps draw (one choice into a table, times from its clock)."""
        table = StateTable(types, kind)
        return table.choice.map(lambda index: table.state(index, now))

    return {
        "machine: propose_state's states": count(machine_states(tuple(StateType), None),
                                                 state_corners),
        "machine: pause_flow_run's pauses": count(machine_states((S.PAUSED,), "flow"),
                                                  state_corners),
        "states()": count(states(), state_corners),
        "states(kind='task')": count(states(kind="task"), state_corners),
        "transition_sequences('flow')": count(transition_sequences("flow"), replay),
        "transition_sequences('flow', mode='pauses')": count(
            transition_sequences("flow", mode="pauses"), replay
        ),
        "runs_in(PAUSED, pauses=2)": count(
            runs_in(S.PAUSED, pauses=2),
            lambda run: [f"{len(run.empirical_policy.pause_keys)} pause keys"]
            + (["suspended"] if run.state.state_details.pause_reschedule else []),
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenarios", nargs="*", help=f"some of {SCENARIOS} (default: all)")
    parser.add_argument("--cap", type=float, default=330.0, help="seconds per scenario")
    parser.add_argument("--control", action="store_true", help="the correct rules instead")
    parser.add_argument("--corners", action="store_true", help="count corners in 1,000 draws")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.corners:
        for strategy, counts in corners().items():
            print(f"{strategy}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        return 0
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios {sorted(unknown)}; choose from {SCENARIOS}")
    if args.child:
        print(json.dumps(run_one(args.child, not args.control)))
        return 0
    for name in args.scenarios or SCENARIOS:
        command = [sys.executable, "-m", "tests.testing.planted_bugs", "--child", name]
        if args.control:
            command.append("--control")
        started = time.perf_counter()
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=args.cap)
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            found = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
            if found:
                print(
                    f"{name}: CAP HIT after {args.cap:.0f} s: found after {found[0]['find_s']} s "
                    f"({found[0]['find_cpu_s']} s CPU, {found[0]['examples']} examples), "
                    "not shrunk in time"
                )
            else:
                print(f"{name}: CAP HIT after {args.cap:.0f} s: not found")
            continue
        if done.returncode != 0 or not done.stdout.strip():
            print(f"{name}: the child failed ({done.returncode}):\n{done.stderr[-2000:]}")
            continue
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        wall = time.perf_counter() - started
        if figures["found"]:
            print(
                f"{name}: found after {figures['find_s']} s, shrunk by {figures['total_s']} s "
                f"({figures['cpu_s']} s CPU; {wall:.1f} s with start-up), {figures['examples']} "
                "examples, "
                f"{figures['steps']} steps in the counterexample"
            )
            print("    " + "\n    ".join(figures["counterexample"]))
            print(f"    -> {figures['error']}")
        else:
            print(
                f"{name}: nothing found in {figures['examples']} examples, {figures['total_s']} s"
                + (f" ({figures['error']})" if figures["error"] else "")
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())

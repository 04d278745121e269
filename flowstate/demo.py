"""The demo scenario: one flow run walked through pause, input validation and resume.

The scenario is separate from its presentation (``flowstate.cli``) so that it can be run and tested
on any orchestrator::

    >>> from flowstate import Orchestrator
    >>> from flowstate.demo import run_demo
    >>> with Orchestrator(":memory:") as orc:
    ...     demo = run_demo(orc)
    >>> [step.result.status.value for step in demo.steps][3:6]
    ['ACCEPT', 'REJECT', 'ACCEPT']

Every call creates a fresh flow run with its own pause key, so the demo can run any number of times
against the same (persistent) database.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple
from uuid import UUID

from flowstate.results import OrchestrationResult
from flowstate.run_input import keyset_from_base_key
from flowstate.runs import FlowRunPolicy
from flowstate.states import Completed, Paused, Pending, Running, Scheduled, State

if TYPE_CHECKING:
    from flowstate import Orchestrator

__all__ = [
    "APPROVAL_SCHEMA",
    "DEMO_FLOW_NAME",
    "DemoRun",
    "DemoStep",
    "INVALID_INPUT",
    "VALID_INPUT",
    "run_demo",
]

DEMO_FLOW_NAME = "demo-etl"
DEMO_TASKS = ("extract", "load")
PAUSE_TIMEOUT_SECONDS = 3600

APPROVAL_SCHEMA: dict[str, Any] = {
    "title": "Approval",
    "type": "object",
    "properties": {
        "approved": {"type": "boolean"},
        "reviewer": {"type": "string"},
    },
    "required": ["approved"],
}
"""The JSON schema the paused run waits for, stored under the keyset's ``schema`` key."""

INVALID_INPUT: dict[str, Any] = {"approved": "yes"}
"""Resume input that does not match :data:`APPROVAL_SCHEMA` (a string, not a boolean)."""

VALID_INPUT: dict[str, Any] = {"approved": True, "reviewer": "ada"}
"""Resume input that matches :data:`APPROVAL_SCHEMA`."""


class DemoStep(NamedTuple):
    """One orchestration call of the demo: what was asked, and what the engine answered."""

    description: str
    result: OrchestrationResult


@dataclass
class DemoRun:
    """The outcome of :func:`run_demo`: the run it created and every step taken on it."""

    flow_run_id: UUID
    pause_key: str
    run_input_keyset: dict[str, str]
    task_run_ids: list[UUID] = field(default_factory=list)
    steps: list[DemoStep] = field(default_factory=list)


def run_demo(
    orc: Orchestrator, *, on_step: Callable[[DemoStep], None] | None = None
) -> DemoRun:
    """Create one new flow run and walk it from Scheduled to Completed, pausing once for input.

    ``on_step`` is called after each orchestration call (for streaming output); the steps are
    also collected in the returned :class:`DemoRun`. Orchestration answers (REJECT, WAIT, ABORT)
    never raise; errors of the engine (e.g. :class:`flowstate.DatabaseError`) propagate.
    """
    suffix = uuid.uuid4().hex[:8]  # the run's name and its pause key are new on every call
    run = orc.create_flow_run(
        flow_name=DEMO_FLOW_NAME,
        name=f"nightly-load-{suffix}",
        parameters={"source": "s3://demo-bucket/raw/orders.csv", "batch_size": 500},
        tags=["demo"],
        empirical_policy=FlowRunPolicy(retries=1),
    )
    pause_key = f"approval-{suffix}"
    # the run-input keys of a pause waiting for input, as Prefect's client names them
    keyset = keyset_from_base_key(f"paused-{pause_key}")
    demo = DemoRun(flow_run_id=run.id, pause_key=pause_key, run_input_keyset=keyset)
    for step in _walk(orc, demo):
        demo.steps.append(step)
        if on_step is not None:
            on_step(step)
    return demo


def _walk(orc: Orchestrator, demo: DemoRun) -> Iterator[DemoStep]:
    """The scenario proper, one orchestration call per yielded step."""
    run_id = demo.flow_run_id
    yield _flow_step(orc, run_id, "flow: schedule for now", Scheduled())
    yield _flow_step(orc, run_id, "flow: submit", Pending())
    yield _flow_step(orc, run_id, "flow: start", Running())
    paused = Paused(
        timeout_seconds=PAUSE_TIMEOUT_SECONDS,
        pause_key=demo.pause_key,
        run_input_keyset=demo.run_input_keyset,
    )
    yield _flow_step(orc, run_id, f"flow: pause for input, key {demo.pause_key}", paused)
    orc.create_flow_run_input(run_id, demo.run_input_keyset["schema"], json.dumps(APPROVAL_SCHEMA))
    yield _resume_step(orc, run_id, "flow: resume, invalid input", INVALID_INPUT)
    yield _resume_step(orc, run_id, "flow: resume, valid input", VALID_INPUT)
    for task in DEMO_TASKS:
        yield from _task_steps(orc, demo, task)
    yield _flow_step(orc, run_id, "flow: complete", Completed(message="All rows loaded."))


def _flow_step(orc: Orchestrator, run_id: UUID, description: str, state: State) -> DemoStep:
    """Propose ``state`` for the flow run."""
    return DemoStep(description, orc.set_flow_run_state(run_id, state))


def _resume_step(
    orc: Orchestrator, run_id: UUID, description: str, run_input: dict[str, Any]
) -> DemoStep:
    """Call the resume endpoint with ``run_input``."""
    text = json.dumps(run_input)
    return DemoStep(f"{description} {text}", orc.resume_flow_run(run_id, run_input=run_input))


def _task_steps(orc: Orchestrator, demo: DemoRun, task: str) -> Iterator[DemoStep]:
    """Create one task run inside the flow run and take it Pending → Running → Completed."""
    task_run = orc.create_task_run(
        flow_run_id=demo.flow_run_id, task_key=f"{DEMO_FLOW_NAME}.{task}", name=f"{task}-0"
    )
    demo.task_run_ids.append(task_run.id)
    for verb, state in (("submit", Pending()), ("start", Running()), ("complete", Completed())):
        result = orc.set_task_run_state(task_run.id, state)
        yield DemoStep(f"task {task}: {verb}", result)

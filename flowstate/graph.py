"""The state graph of a flow run, declared once as data: named triggers between state types.

This is the user-level picture (schedule, submit, start, pause, ...), used to draw diagrams, to
pick plausible proposals in property tests, and checked against the policy by a test. The
engine never reads it: deciding a transition goes through the compiled rule table only.
``transitions`` is imported inside :func:`to_machine`, so importing flowstate stays cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from flowstate.states import StateType

__all__ = ["INITIAL", "TRIGGERS", "Trigger", "to_machine", "to_mermaid"]

INITIAL = "NONE"
"""The pseudo-state of a run that has no state yet."""


@dataclass(frozen=True)
class Trigger:
    """A named, user-level transition: proposing ``dest`` (named ``name``) from ``sources``.

    ``needs`` names what the run must have for the core flow policy to accept the proposal
    (``"deployment"``: rescheduling, suspending); a test checks every edge is accepted then.
    """

    trigger: str
    sources: tuple[str, ...]
    dest: StateType
    name: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    needs: tuple[str, ...] = ()


S = StateType
_FINAL = ("COMPLETED", "FAILED", "CANCELLED", "CRASHED")

TRIGGERS: tuple[Trigger, ...] = (
    Trigger("schedule", (INITIAL,), S.SCHEDULED),
    Trigger("submit", (INITIAL, "SCHEDULED"), S.PENDING),
    Trigger("start", (INITIAL, "SCHEDULED", "PENDING"), S.RUNNING),
    Trigger("pause", ("RUNNING",), S.PAUSED, details={"pause_key": "k"}),
    Trigger("suspend", ("RUNNING",), S.PAUSED, name="Suspended",
            details={"pause_key": "k", "pause_reschedule": True}, needs=("deployment",)),
    Trigger("resume", ("PAUSED",), S.RUNNING),
    Trigger("reschedule_resume", ("PAUSED",), S.SCHEDULED, name="Resuming"),
    Trigger("complete", ("RUNNING",), S.COMPLETED),
    Trigger("fail", ("RUNNING",), S.FAILED),
    Trigger("crash", ("PENDING", "RUNNING"), S.CRASHED),
    Trigger("cancel", ("PENDING", "RUNNING", "PAUSED"), S.CANCELLING),
    Trigger("cancelled", ("CANCELLING", "SCHEDULED", "PENDING", "RUNNING", "PAUSED"), S.CANCELLED),
    Trigger("mark_late", ("SCHEDULED",), S.SCHEDULED, name="Late"),
    Trigger("retry", ("FAILED", "CRASHED", "CANCELLED", "COMPLETED"), S.RUNNING),
    Trigger("reschedule", _FINAL, S.SCHEDULED, needs=("deployment",)),
)
"""Every named trigger. Automatic retries (RUNNING -> FAILED answered with AwaitingRetry) are
the policy's doing, not a trigger."""


def to_machine(
    triggers: Sequence[Trigger] = TRIGGERS,
    *,
    graph_engine: Literal["pygraphviz", "graphviz", "mermaid"] = "mermaid",
) -> Any:
    """A ``transitions`` GraphMachine of the declared graph (built on demand, never cached)."""
    from transitions.extensions import GraphMachine

    states = [INITIAL, *(t.value for t in StateType)]
    transitions = [
        {"trigger": t.trigger, "source": list(t.sources), "dest": t.dest.value} for t in triggers
    ]
    return GraphMachine(
        states=states,
        transitions=transitions,
        initial=INITIAL,
        auto_transitions=False,
        graph_engine=graph_engine,
        title="flowstate flow run",
    )


def to_mermaid(triggers: Sequence[Trigger] = TRIGGERS) -> str:
    """The graph as a Mermaid ``stateDiagram-v2``, drawn by transitions' own mermaid support."""
    return str(to_machine(triggers).get_graph().draw(None))

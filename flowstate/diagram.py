"""Drawings of the flow run state graph: the declared triggers, what the policy refuses, a run's path.

Three kinds of edges, all computed on demand (nothing here runs at import time):

- ``trigger`` — the user-level triggers declared in :data:`flowstate.graph.TRIGGERS`;
- ``refused`` — every (from, to) pair of state types that the policy answers with REJECT, WAIT
  or ABORT when a bare state of type ``to`` is proposed to a plain flow run (no deployment, no
  retries, no pause keys) currently in ``from``; found by asking the policy, see
  :func:`policy_verdicts`;
- ``path`` — the transitions one flow run actually took, from its state history, numbered.

Mermaid text is drawn by ``transitions``' own mermaid engine (:func:`flowstate.graph.to_machine`),
with the refused and path edges added as labelled transitions and visited states styled with its
``previous``/``active`` classes. DOT text is written here from the same edges, so it needs neither
the ``graphviz`` package nor its binary::

    >>> edges = diagram_edges()
    >>> [e.label for e in edges if (e.source, e.dest) == ("RUNNING", "PAUSED")]
    ['pause', 'suspend']
    >>> [e.label for e in edges if (e.source, e.dest) == ("SCHEDULED", "PAUSED")]
    ['REJECT']
    >>> "SCHEDULED --> PAUSED: REJECT" in to_mermaid_text(edges)
    True
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from flowstate.graph import INITIAL, TRIGGERS, Trigger, to_machine
from flowstate.states import State, StateType

__all__ = [
    "Edge",
    "Verdict",
    "diagram_edges",
    "path_edges",
    "policy_verdicts",
    "to_dot_text",
    "to_mermaid_text",
]

EdgeKind = Literal["trigger", "refused", "path"]
TITLE = "flowstate flow run"


@dataclass(frozen=True)
class Verdict:
    """The policy's answer to proposing a bare ``dest`` state to a plain run in ``source``."""

    source: str
    dest: str
    status: str
    reason: str | None
    result_type: str | None
    """The type of the state the run is in afterwards (None when it has none)."""


@dataclass(frozen=True)
class Edge:
    """One labelled arrow of a drawing; ``reason`` is the policy's reason for refused edges."""

    source: str
    dest: str
    label: str
    kind: EdgeKind
    reason: str | None = None


def policy_verdicts() -> list[Verdict]:
    """Ask the core flow policy about every (from, to) pair of state types.

    Each pair is proposed once, on a fresh flow run of an in-memory orchestrator that was forced
    into ``from`` (``NONE``: a run with no state yet). Nothing is written anywhere else.
    """
    from flowstate.orchestrator import Orchestrator

    verdicts: list[Verdict] = []
    with Orchestrator(":memory:") as orc:
        for source in (None, *StateType):
            for dest in StateType:
                run = orc.create_flow_run(flow_name="diagram")
                if source is not None:
                    orc.set_flow_run_state(run.id, State(type=source), force=True)
                result = orc.set_flow_run_state(run.id, State(type=dest))
                verdicts.append(
                    Verdict(
                        source=INITIAL if source is None else source.value,
                        dest=dest.value,
                        status=result.status.value,
                        reason=result.reason,
                        result_type=result.state.type.value if result.state else None,
                    )
                )
    return verdicts


def diagram_edges(*, policy: bool = True) -> list[Edge]:
    """The declared trigger edges, then (with ``policy``) the refused pairs that are not triggers.

    A declared trigger that needs something the plain run lacks (``reschedule`` needs a
    deployment) is refused in the default context; it is drawn as the trigger only.
    """
    edges = [
        Edge(source, trigger.dest.value, trigger.trigger, "trigger")
        for trigger in TRIGGERS
        for source in trigger.sources
    ]
    if not policy:
        return edges
    declared = {(edge.source, edge.dest) for edge in edges}
    for verdict in policy_verdicts():
        if verdict.status != "ACCEPT" and (verdict.source, verdict.dest) not in declared:
            label = verdict.status
            if verdict.result_type not in (None, verdict.source, verdict.dest):
                label += f" ({verdict.result_type} instead)"  # a substitute state was written
            edges.append(Edge(verdict.source, verdict.dest, label, "refused", verdict.reason))
    return edges


def path_edges(history: Sequence[State]) -> list[Edge]:
    """The transitions of a state history (oldest first), numbered ``#1``, ``#2``, ... from NONE."""
    types = [INITIAL, *(state.type.value for state in history)]
    return [
        Edge(source, dest, f"#{number}", "path")
        for number, (source, dest) in enumerate(zip(types, types[1:]), start=1)
    ]


def _visited(edges: Iterable[Edge]) -> tuple[set[str], str | None]:
    """The states a path visits, and the one it ends in (None without a path)."""
    path = [edge for edge in edges if edge.kind == "path"]
    if not path:
        return set(), None
    return {INITIAL, *(edge.dest for edge in path)}, path[-1].dest


def to_mermaid_text(edges: Sequence[Edge], *, title: str = TITLE) -> str:
    """A Mermaid ``stateDiagram-v2`` drawn by transitions' mermaid engine.

    Refused edges are labelled with the status (the reasons follow as ``%%`` comments), path edges
    with their step numbers; visited states get the ``s_previous`` class and the current one
    ``s_active``.
    """
    text = str(_styled_machine(edges).get_graph(title=title).draw(None))
    legend = [
        f"  %% {edge.label} {edge.source} --> {edge.dest}: {edge.reason}"
        for edge in edges
        if edge.kind == "refused"
    ]
    return "\n".join([text, *legend]) + "\n"


def _styled_machine(edges: Sequence[Edge]) -> Any:
    """A transitions machine holding every edge, its visited states styled and its state current."""
    declared = [edge for edge in edges if edge.kind == "trigger"]
    machine = to_machine(
        [Trigger(edge.label, (edge.source,), StateType(edge.dest)) for edge in declared]
    )
    extra = [edge for edge in edges if edge.kind != "trigger"]
    for number, edge in enumerate(extra):
        machine.add_transition(f"_{edge.kind}_{number}", edge.source, edge.dest, label=edge.label)
    visited, current = _visited(edges)
    if current is not None:
        machine.set_state(current)
    graph = machine.model_graphs[id(machine)]
    graph.reset_styling()
    for state in visited:
        graph.set_node_style(state, "active" if state == current else "previous")
    return machine


_DOT_EDGE_STYLE: dict[str, str] = {
    "trigger": "",
    "REJECT": ', style=dashed, color="darkorange", fontcolor="darkorange"',
    "WAIT": ', style=dashed, color="royalblue", fontcolor="royalblue"',
    "ABORT": ', style=dashed, color="firebrick", fontcolor="firebrick"',
    "path": ', color="blue", fontcolor="blue", penwidth=2',
}


def _quote(text: str) -> str:
    """A DOT double-quoted string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot_text(edges: Sequence[Edge], *, title: str = TITLE) -> str:
    """Graphviz DOT text of the same drawing: refused edges dashed with the reason as tooltip;
    one node line per state, the current one red, the other visited ones blue."""
    visited, current = _visited(edges)
    styles = {state: " [color=blue, fillcolor=azure]" for state in visited}
    if current is not None:
        styles[current] = " [color=red, fillcolor=darksalmon, peripheries=2]"
    lines = [
        f"digraph {_quote(title)} {{",
        f"  label={_quote(title)}; labelloc=t; rankdir=LR;",
        '  node [shape=rectangle, style="rounded,filled", fillcolor=white, color=black];',
        "  __start__ [shape=point, label=\"\"];",
        f"  __start__ -> {INITIAL};",
        *(f"  {state}{styles.get(state, '')};" for state in (INITIAL, *(t.value for t in StateType))),
        *_dot_edge_lines(edges),
        "}",
    ]
    return "\n".join(lines) + "\n"


def _dot_edge_lines(edges: Iterable[Edge]) -> list[str]:
    """One DOT edge line per (source, dest, style): the labels joined, the reasons as tooltip."""
    merged: dict[tuple[str, str, str], list[Edge]] = {}
    for edge in edges:
        style_key = edge.label.split()[0] if edge.kind == "refused" else edge.kind
        merged.setdefault((edge.source, edge.dest, style_key), []).append(edge)
    lines = []
    for (source, dest, style_key), group in merged.items():
        label = " | ".join(edge.label for edge in group)
        tooltip = "; ".join(edge.reason for edge in group if edge.reason)
        attributes = f"label={_quote(label)}{_DOT_EDGE_STYLE.get(style_key, '')}"
        if tooltip:
            attributes += f", tooltip={_quote(tooltip)}"
        lines.append(f"  {source} -> {dest} [{attributes}];")
    return lines

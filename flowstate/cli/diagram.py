"""``flowstate diagram``: the flow run state graph as Mermaid or DOT text.

The declared triggers (:mod:`flowstate.graph`), the pairs the core flow policy refuses (REJECT /
ABORT edges, reasons as comments or tooltips) and, with ``--run``, the path one run took.
``--json`` prints the edges as data: ``{"edges": [...], "states": [...]}`` where ``states`` is
the run's Prefect-shaped state history (empty without ``--run``).
"""

from __future__ import annotations

from dataclasses import asdict

import click

from flowstate.cli._common import (
    echo_json,
    json_and_database,
    open_orchestrator,
    read_flow_run,
)

__all__ = ["diagram"]


@click.command()
@click.option("--format", "fmt", type=click.Choice(["mermaid", "dot"]), default="mermaid",
              show_default=True, help="Mermaid stateDiagram-v2, or Graphviz DOT text.")
@click.option("--run", "run_id", metavar="ID", help="Draw the path this flow run took.")
@click.option("--policy/--no-policy", default=True, show_default=True,
              help="Add the transitions the core flow policy rejects or aborts.")
@json_and_database
def diagram(fmt: str, run_id: str | None, policy: bool, as_json: bool) -> None:
    """Draw the flow run state graph (no graphviz binary needed for either format)."""
    from flowstate.diagram import TITLE, diagram_edges, path_edges, to_dot_text, to_mermaid_text

    edges = diagram_edges(policy=policy)
    history = []
    title = TITLE
    if run_id is not None:
        with open_orchestrator() as orc:
            run = read_flow_run(orc, run_id)
            history = orc.read_flow_run_states(run.id)
        edges += path_edges(history)
        title = f"flow run {run.name} ({run.id})"
    if as_json:
        echo_json({"edges": [asdict(edge) for edge in edges], "states": history})
        return
    draw = to_dot_text if fmt == "dot" else to_mermaid_text
    click.echo(draw(edges, title=title), nl=False)

"""The examples in the README and in public docstrings run as written."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest

import flowstate
import flowstate.rules
import flowstate.run_input
import flowstate.states
import flowstate.store.postgres.timeouts

REPO = Path(__file__).resolve().parents[1]


def test_readme_examples_run():
    failures, tried = doctest.testfile(str(REPO / "README.md"), module_relative=False)
    assert tried > 5 and failures == 0


@pytest.mark.parametrize(
    "module",
    [
        flowstate,
        flowstate.states,
        flowstate.rules,
        flowstate.run_input,
        flowstate.store.postgres.timeouts,
    ],
)
def test_docstring_examples_run(module):
    failures, tried = doctest.testmod(module)
    assert tried > 0 and failures == 0


@pytest.mark.parametrize("doc", sorted((REPO / "docs").glob("*.md")), ids=lambda p: p.name)
def test_doc_examples_run(doc):
    failures, _tried = doctest.testfile(str(doc), module_relative=False)
    assert failures == 0


def test_the_readme_state_diagram_matches_the_declared_graph():
    from flowstate.graph import to_mermaid

    readme = (REPO / "README.md").read_text()
    block = readme.split("```mermaid", 1)[1].split("```", 1)[0]
    shown = sorted(line.strip() for line in block.splitlines() if "-->" in line)
    drawn = sorted(line.strip() for line in to_mermaid().splitlines() if "-->" in line)
    assert shown == drawn

"""The examples in the README and in public docstrings run as written."""

from __future__ import annotations

import doctest
import re
from pathlib import Path

import pytest

import flowstate
import flowstate.aio.orchestrator
import flowstate.demo
import flowstate.rules
import flowstate.run_input
import flowstate.states
import flowstate.store.postgres.timeouts
import flowstate.store.postgres.url

REPO = Path(__file__).resolve().parents[1]


def test_readme_examples_run():
    failures, tried = doctest.testfile(str(REPO / "README.md"), module_relative=False)
    assert tried > 5 and failures == 0


_DOCTESTED = [
    flowstate,
    flowstate.states,
    flowstate.rules,
    flowstate.run_input,
    flowstate.store.postgres.timeouts,
    flowstate.aio.orchestrator,
    flowstate.demo,
    flowstate.store.postgres.url,
]


def _defined_in(cls: type, module) -> bool:
    """Whether ``cls`` is defined in ``module``'s file, whatever its ``__module__`` says."""
    return any(getattr(member, "__code__", None) is not None
               and member.__code__.co_filename == module.__file__
               for member in list(vars(cls).values()))


def _docstring_examples(module) -> list[doctest.DocTest]:
    """The examples of a module's docstrings, with those of the classes it defines that carry
    the name of the package exporting them (``AsyncOrchestrator.__module__`` becomes
    ``"flowstate"`` once ``flowstate.AsyncOrchestrator`` is read), which doctest would skip."""
    finder = doctest.DocTestFinder()
    found = finder.find(module)
    for name, value in list(vars(module).items()):
        if (isinstance(value, type) and value.__module__ != module.__name__
                and _defined_in(value, module)):
            found += finder.find(value, f"{module.__name__}.{name}", module=False,
                                 globs=vars(module))
    return [test for test in found if test.examples]


@pytest.mark.parametrize("module", _DOCTESTED)
def test_docstring_examples_run(module):
    runner = doctest.DocTestRunner()
    tests = _docstring_examples(module)
    for test in tests:
        runner.run(test)
    assert tests and runner.summarize(verbose=False).failed == 0


_EXAMPLES_RUN_ELSEWHERE = {
    "flowstate/orchestrator.py",  # Orchestrator's: testmod(flowstate) finds the class there
    "flowstate/diagram.py",  # tests/test_cli_diagram.py
    "flowstate/testing/clock.py",  # tests/testing/test_packaging.py, the four of them
    "flowstate/testing/compare.py",
    "flowstate/testing/factory.py",
    "flowstate/testing/strategies.py",
}


def test_every_module_with_examples_has_them_run():
    run_here = {str(Path(module.__file__).relative_to(REPO)) for module in _DOCTESTED}
    with_examples = {str(path.relative_to(REPO)) for path in (REPO / "flowstate").rglob("*.py")
                     if ">>> " in path.read_text()}
    assert with_examples == run_here | _EXAMPLES_RUN_ELSEWHERE


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


def _user_docs() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def _fenced_blocks(text: str) -> list[tuple[str, str]]:
    """Each fenced block of a markdown text as (its info string, its body)."""
    blocks, info, body = [], None, []
    for line in text.splitlines():
        stripped = line.strip()
        if info is None and stripped.startswith("```"):
            info, body = stripped[3:], []
        elif info is not None and stripped == "```":
            blocks.append((info, "\n".join(body)))
            info = None
        elif info is not None:
            body.append(line)
    return blocks


@pytest.mark.parametrize("doc", _user_docs(), ids=lambda p: p.name)
def test_code_blocks_in_doctest_form_are_fenced_pycon(doc):
    for info, body in _fenced_blocks(doc.read_text()):
        if any(line.lstrip().startswith(">>> ") for line in body.splitlines()):
            assert info == "pycon", f"{doc.name}: a ```{info} block holds >>> examples"


def test_the_readme_has_a_pycon_block_and_doctest_runs_it():
    readme = (REPO / "README.md").read_text()
    pycon = [body for info, body in _fenced_blocks(readme) if info == "pycon"]
    assert pycon and "Orchestrator(\":memory:\")" in pycon[0]
    parsed = doctest.DocTestParser().get_examples(pycon[0])
    assert len(parsed) > 5


# How the work was done belongs in commit messages, not in what users read.
_DIARY = re.compile(
    r"(?i)\b(first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth) round\b"
    r"|\bsession \d|\bthis session\b|\bwe tuned\b|\bused to\b|\btuning\b"
)
_FIGURES_HISTORY = re.compile(
    r"(?i)\btargets?\b|\bmet\b|\bmissed\b|\b(the|this|that|last|next) round\b"
    r"|\bbefore (the|this) (change|round|work)|\bafter (the|this) (change|round|work)"
    r"|\b[0-9a-f]{7}\b|\b20\d\d-\d\d-\d\d\b"
)


@pytest.mark.parametrize("doc", _user_docs(), ids=lambda p: p.name)
def test_user_docs_tell_no_story_of_how_the_work_was_done(doc):
    found = _DIARY.findall(doc.read_text())
    assert not found, f"{doc.name}: {found}"


def test_the_performance_texts_speak_of_results_not_of_how_they_were_reached():
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Performance", 1)[1].split("\n## ", 1)[0]
    for name, text in (("README", section), ("performance.md", (REPO / "docs" / "performance.md").read_text())):
        found = _FIGURES_HISTORY.findall(text)
        assert not found, f"{name}: {found}"
    assert "python -m benchmarks" in section and "| scenario |" in section


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _shown_commands(block: str) -> list[tuple[str, list[str]]]:
    """Each ``$ flowstate ...`` line of a console block that shows its output, with that
    output (ids replaced by ``ID``)."""
    found: list[tuple[str, list[str]]] = []
    for line in block.splitlines():
        if line.startswith("$ "):
            found.append((line[2:], []))
        elif found:
            found[-1][1].append(_UUID.sub("ID", line))
    return [(command, shown) for command, shown in found if shown]


def test_the_readme_steering_session_prints_what_it_shows(tmp_path):
    import shlex

    from click.testing import CliRunner

    from flowstate.cli import main
    from flowstate.states import Running

    readme = (REPO / "README.md").read_text()
    [block] = [body for info, body in _fenced_blocks(readme)
               if info == "console" and "flowstate pause $RUN --key approval" in body]
    path = str(tmp_path / "runs.db")
    with flowstate.Orchestrator(path) as orc:
        run = orc.create_flow_run(flow_name="nightly", name="nightly", state=Running())
    commands = _shown_commands(block)
    assert len(commands) >= 4
    for command, shown in commands:
        echo_exit = command.endswith('; echo "[exit $?]"')
        words = shlex.split(command.removesuffix('; echo "[exit $?]"').replace("$RUN", str(run.id)))
        assert words[0] == "flowstate", command
        result = CliRunner().invoke(main, ["--database", path, *words[1:]])
        printed = _UUID.sub("ID", result.output).splitlines()
        if echo_exit:
            printed.append(f"[exit {result.exit_code}]")
        assert printed == shown, command


def _leaf_commands(group, prefix=()):
    import click

    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _leaf_commands(command, (*prefix, name))
        else:
            yield " ".join((*prefix, name)), command


def test_the_commands_without_json_are_the_ones_the_docs_name():
    from flowstate.cli import main

    without = sorted(name for name, command in _leaf_commands(main)
                     if not any(p.name == "as_json" for p in command.params))
    assert without == ["limits delete"]
    assert "every command but `limits delete` takes `--json`" in (REPO / "README.md").read_text()
    cli_doc = " ".join((REPO / "docs" / "cli.md").read_text().split())
    assert "`--json` on every command but `limits delete` prints" in cli_doc
    assert "it does not create them" not in cli_doc  # `flowstate runs create` does


def test_command_help_is_plain_text():
    from click.testing import CliRunner

    from flowstate.cli import main

    for name, _command in _leaf_commands(main):
        shown = CliRunner().invoke(main, [*name.split(), "--help"])
        assert shown.exit_code == 0, name
        assert "``" not in shown.output and ":meth:" not in shown.output, (name, shown.output)


def test_the_diagram_in_the_cli_doc_is_the_real_output():
    from click.testing import CliRunner

    from flowstate.cli import main

    text = (REPO / "docs" / "cli.md").read_text()
    shown = text.split("This is the real output of `flowstate diagram`:", 1)[1]
    block = shown.split("```mermaid\n", 1)[1].split("```", 1)[0]
    real = CliRunner().invoke(main, ["--database", ":memory:", "diagram"])
    assert real.exit_code == 0 and real.output == block


_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z")


def test_the_steering_part_of_the_cli_doc_session_prints_what_it_shows(tmp_path):
    import shlex

    from click.testing import CliRunner

    from flowstate.cli import main

    text = (REPO / "docs" / "cli.md").read_text()
    [block] = [body for info, body in _fenced_blocks(text)
               if info == "console" and "$ flowstate demo --json > /dev/null" in body]
    creating = "$ RUN=$(flowstate runs create nightly --name tuesday)"
    steering = block.split(creating + "\n", 1)[1]
    path = str(tmp_path / "session.db")
    made = CliRunner().invoke(main, ["--database", path, "runs", "create", "nightly",
                                     "--name", "tuesday"])
    run_id = made.output.strip()
    commands = _shown_commands(steering)
    assert len(commands) >= 8
    for command, shown in commands:
        words = shlex.split(command.replace("$RUN", run_id))
        result = CliRunner().invoke(main, ["--database", path, *words[1:]])
        printed = _UUID.sub("ID", _TIMESTAMP.sub("TIME", result.output)).splitlines()
        if result.exit_code:
            printed.append(f"[exit {result.exit_code}]")
        assert printed == [_TIMESTAMP.sub("TIME", line) for line in shown], command

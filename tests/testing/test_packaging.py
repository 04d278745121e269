"""flowstate.testing is opt-in: never loaded by ``import flowstate``, clear without hypothesis,
and its pytest plugin is registered and harmless."""

from __future__ import annotations

import doctest
import importlib.metadata
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

import flowstate.testing
import flowstate.testing.clock
import flowstate.testing.compare
import flowstate.testing.factory
import flowstate.testing.strategies

REPO = Path(__file__).resolve().parents[2]
NO_HYPOTHESIS = textwrap.dedent("""
    import sys

    class _NoHypothesis:  # as if hypothesis were not installed
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in ("hypothesis", "hypothesis_jsonschema"):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, _NoHypothesis())
""")


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)


def test_importing_flowstate_loads_neither_the_toolkit_nor_hypothesis() -> None:
    out = _python(
        "import sys, flowstate; print(sorted(m for m in sys.modules "
        "if m.startswith(('flowstate.testing', 'hypothesis', '_pytest', 'pytest'))))"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_without_hypothesis_the_clock_plugin_and_reference_still_import() -> None:
    out = _python(
        NO_HYPOTHESIS
        + "import flowstate.testing, flowstate.testing.plugin, flowstate.testing.reference\n"
        + "from flowstate.testing import FrozenClock, ReferenceOrchestrator\n"
        + "print(FrozenClock().now.year)"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "2024"


@pytest.mark.parametrize(
    "statement",
    ["from flowstate.testing import states", "from flowstate.testing import OrchestrationMachine",
     "import flowstate.testing.machine"],
)
def test_without_hypothesis_the_rest_says_what_to_install(statement: str) -> None:
    out = _python(NO_HYPOTHESIS + statement)
    assert out.returncode != 0
    assert "ImportError: flowstate.testing needs hypothesis" in out.stderr
    assert "pip install 'flowstate[testing]'" in out.stderr


def test_the_plugin_is_registered_as_a_pytest11_entry_point() -> None:
    found = importlib.metadata.entry_points(group="pytest11", name="flowstate")
    assert [e.value for e in found] == ["flowstate.testing.plugin"]
    assert '[project.entry-points.pytest11]\nflowstate = "flowstate.testing.plugin"' in (
        REPO / "pyproject.toml"
    ).read_text()


def test_the_plugin_works_in_a_session_without_hypothesis(tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text(NO_HYPOTHESIS)
    (tmp_path / "test_user.py").write_text(textwrap.dedent("""
        import pytest
        from flowstate.states import Pending, Running

        def test_hypothesis_is_not_there():
            with pytest.raises(ImportError):
                import hypothesis

        def test_uses_the_fixtures(orchestrator, frozen_clock):
            run = orchestrator.create_flow_run()
            orchestrator.set_flow_run_state(run.id, Pending())
            frozen_clock.advance(5)
            assert orchestrator.set_flow_run_state(run.id, Running()).state.timestamp.second == 5
    """))
    env_path = f"{tmp_path}:{REPO}"
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "-p", "flowstate.testing.plugin", str(tmp_path / "test_user.py")],
        capture_output=True, text=True, cwd=tmp_path,
        # no autoloading: pytest would import the installed hypothesis for its own plugin
        env={"PYTHONPATH": env_path, "PATH": "", "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 passed" in out.stdout


def test_the_public_names_are_sorted_and_resolve() -> None:
    assert flowstate.testing.__all__ == sorted(flowstate.testing.__all__)
    for name in flowstate.testing.__all__:
        assert getattr(flowstate.testing, name) is not None
        assert name in dir(flowstate.testing)
    with pytest.raises(AttributeError):
        flowstate.testing.nothing_here  # noqa: B018


@pytest.mark.parametrize(
    "module",
    [flowstate.testing.clock, flowstate.testing.strategies, flowstate.testing.compare,
     flowstate.testing.factory],
)
def test_docstring_examples_run(module: object) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # hypothesis warns about .example() outside a REPL
        failures, tried = doctest.testmod(module)  # type: ignore[arg-type]
    assert tried > 0 and failures == 0

"""A user's script type-checks against the package (it ships py.typed) as docs/api.md says:
``mypy --strict`` accepts the documented calls and sees the documented types, not ``Any``."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import mypy.api as mypy_api
import pytest


@pytest.fixture(scope="module")
def mypy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mypy-cache")


def check(script: str, folder: Path, cache: Path) -> tuple[list[str], list[str]]:
    """mypy --strict on ``script``: (its errors, the types its reveal_type calls show)."""
    path = folder / "user_script.py"
    path.write_text(textwrap.dedent(script))
    out, err, _code = mypy_api.run(
        ["--strict", "--cache-dir", str(cache), "--no-error-summary", str(path)]
    )
    assert err == "", err
    lines = out.splitlines()
    errors = [line for line in lines if ": error:" in line]
    revealed = [re.sub(r'.*Revealed type is "(.*)"', r"\1", line)
                for line in lines if "Revealed type is" in line]
    return errors, revealed


def test_a_run_input_subclass_of_the_top_level_name_type_checks(tmp_path, mypy_cache):
    errors, revealed = check(
        """
        from flowstate import Orchestrator, RunInput, RunInputMetadata

        class Approval(RunInput):
            approved: bool
            reviewer: str = ""

        def metadata_of(answer: Approval) -> RunInputMetadata | None:
            return answer.metadata

        with Orchestrator(":memory:") as orc:
            reveal_type(Approval(approved=True))
        """,
        tmp_path, mypy_cache,
    )
    assert errors == []
    assert revealed == ["user_script.Approval"]


def test_expire_leases_returns_leases_to_a_type_checker_sync_and_async(tmp_path, mypy_cache):
    errors, revealed = check(
        """
        from flowstate import AsyncOrchestrator, Orchestrator

        async def later(orc: AsyncOrchestrator) -> None:
            reveal_type(await orc.expire_leases())

        with Orchestrator(":memory:") as orc:
            reveal_type(orc.expire_leases())
        """,
        tmp_path, mypy_cache,
    )
    assert errors == []
    assert revealed == ["list[flowstate.concurrency.models.ConcurrencyLease]"] * 2


def test_the_state_a_run_left_its_pause_for_is_a_state_to_a_type_checker(tmp_path, mypy_cache):
    errors, revealed = check(
        """
        from flowstate import Orchestrator, RunNotResumed

        with Orchestrator(":memory:") as orc:
            try:
                orc.wait_for_resume("9e8b0a3c-0d44-4b50-8888-8dd25736052a", key="approval")
            except RunNotResumed as error:
                reveal_type(error.state)
        """,
        tmp_path, mypy_cache,
    )
    assert errors == []
    assert revealed == ["flowstate.states.State | None"]


def test_the_input_a_pause_was_resumed_with_is_of_the_model_asked_for(tmp_path, mypy_cache):
    errors, revealed = check(
        """
        from flowstate import AsyncOrchestrator, Orchestrator, RunInput

        class Approval(RunInput):
            approved: bool

        async def later(orc: AsyncOrchestrator, run: str) -> None:
            reveal_type(await orc.read_pause_input(run, key="a", model=Approval))
            reveal_type(await orc.wait_for_resume(run, key="a", model=Approval, timeout=1))

        with Orchestrator(":memory:") as orc:
            run = orc.create_flow_run().id
            reveal_type(orc.read_pause_input(run, key="a", model=Approval))
            reveal_type(orc.wait_for_resume(run, key="a", model=Approval, timeout=1))
            reveal_type(orc.read_pause_input(run, key="a", model=int))
            answer = orc.read_pause_input(run, key="a")
            schema = {"type": "object"}
            orc.read_pause_input(run, key="a", model=list[int])
        """,
        tmp_path, mypy_cache,
    )
    assert errors == []
    assert revealed == ["user_script.Approval | None"] * 4 + ["int | None"]


def test_received_input_is_of_the_type_asked_for(tmp_path, mypy_cache):
    errors, revealed = check(
        """
        from flowstate import AsyncOrchestrator, Orchestrator, RunInput

        class Note(RunInput):
            text: str

        async def later(orc: AsyncOrchestrator, run: str) -> None:
            async for note in orc.receive_input(run, Note, timeout=0):
                reveal_type(note)

        with Orchestrator(":memory:") as orc:
            run = orc.create_flow_run().id
            for note in orc.receive_input(run, Note, timeout=0):
                reveal_type(note)
            for number in orc.receive_input(run, int, timeout=0):
                reveal_type(number)
            for wrapped in orc.receive_input(run, int, timeout=0, with_metadata=True):
                print(wrapped.metadata)
        """,
        tmp_path, mypy_cache,
    )
    assert errors == []
    assert revealed == ["user_script.Note"] * 2 + ["int"]


def test_a_state_printed_with_times_as_text_type_checks_as_code(tmp_path, mypy_cache):
    from flowstate.states import Paused, Scheduled

    assert repr(Scheduled(scheduled_time="2024-01-01T09:00:00Z")) == (
        "Scheduled(scheduled_time='2024-01-01T09:00:00Z')"
    )
    assert repr(Paused(pause_expiration_time="2024-01-01T09:00:00Z")) == (
        "Paused(pause_expiration_time='2024-01-01T09:00:00Z')"
    )
    errors, _revealed = check(
        """
        from flowstate.states import AwaitingRetry, Cached, Late, Paused, Scheduled, Suspended

        printed = [
            Scheduled(scheduled_time='2024-01-01T09:00:00Z'),
            Late(scheduled_time='2024-01-01T09:00:00Z'),
            AwaitingRetry(scheduled_time='2024-01-01T09:00:00Z'),
            Cached(cache_key='k', cache_expiration='2024-01-01T09:00:00Z'),
            Paused(pause_expiration_time='2024-01-01T09:00:00Z'),
            Suspended(pause_key='review', pause_expiration_time='2024-01-01T09:00:00Z'),
        ]
        """,
        tmp_path, mypy_cache,
    )
    assert errors == []

"""Arguments of Orchestrator() that cannot work are InvalidState, before any file is touched."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowstate import InvalidState, Orchestrator


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), 10**10, "5", None, True])
def test_a_busy_timeout_that_is_not_a_sane_number_of_seconds_is_invalid(tmp_path: Path, bad):
    with pytest.raises(InvalidState, match="busy_timeout"):
        Orchestrator(tmp_path / "busy.db", busy_timeout=bad)
    assert not (tmp_path / "busy.db").exists()


@pytest.mark.parametrize("bad", [5, b"/tmp/x.db", 3.5, ["x.db"]])
def test_a_database_that_is_not_a_path_is_invalid(bad):
    with pytest.raises(InvalidState, match="database"):
        Orchestrator(bad)


def test_a_path_with_a_nul_byte_is_invalid(tmp_path: Path):
    with pytest.raises(InvalidState, match="NUL"):
        Orchestrator(str(tmp_path / "a\x00b.db"))
    assert list(tmp_path.iterdir()) == []


def test_a_zero_busy_timeout_is_allowed(tmp_path: Path):
    with Orchestrator(tmp_path / "zero.db", busy_timeout=0) as orc:
        assert orc.create_flow_run().id

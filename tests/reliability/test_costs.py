"""SQLite: a transition writes what it changed, not a run's parameters or its whole policy,
so its cost does not grow with them (SQLite rewrites a whole row on any UPDATE)."""

from __future__ import annotations

from pathlib import Path

from flowstate import Orchestrator
from flowstate.states import Completed, Paused, Pending, Running, Scheduled

PARAMETERS = {"blob": "x" * 2_000_000}
PAUSE_KEYS = [f"earlier-pause-{i:05d}" for i in range(20_000)]  # a policy of some 500 KB


def _wal_size(path: Path) -> int:
    wal = Path(f"{path}-wal")
    return wal.stat().st_size if wal.exists() else 0


def test_a_transition_writes_no_more_for_big_parameters_or_a_long_policy(tmp_path: Path) -> None:
    path = tmp_path / "cost.db"
    with Orchestrator(path) as orc, Orchestrator(path) as other:
        for each in (orc, other):  # no checkpoint: the WAL only grows, by what each commit wrote
            each._store.conn.execute("PRAGMA wal_autocheckpoint = 0")  # type: ignore[attr-defined]
        run = orc.create_flow_run(
            parameters=PARAMETERS, empirical_policy={"pause_keys": PAUSE_KEYS}, state=Scheduled()
        )
        written = []
        for index, state in enumerate((Pending(), Running(), Paused(pause_key="new"), None)):
            if index % 2:
                other.create_flow_run()  # another connection commits: the run is read again
            before = _wal_size(path)
            if state is None:
                assert orc.resume_flow_run(run.id).status.value == "ACCEPT"
            else:
                assert orc.set_flow_run_state(run.id, state).status.value == "ACCEPT"
            written.append(_wal_size(path) - before)
        # Pending and Running change neither: a few pages each. The pause adds a key and the
        # resume sets "resuming": the policy is written then, the parameters never.
        assert written[0] < 50_000 and written[1] < 50_000, written
        assert all(size < 1_500_000 for size in written), written
        again = orc.read_flow_run(run.id)
        assert again.parameters == PARAMETERS
        assert again.empirical_policy.pause_keys == {*PAUSE_KEYS, "new"}
        assert again.state_type.value == "RUNNING"


def test_parameters_left_out_by_a_transition_are_read_when_the_run_is(tmp_path: Path) -> None:
    """A transition reads no parameters; reading the run afterwards (cached or not) gives them."""
    path = tmp_path / "lazy.db"
    with Orchestrator(path) as orc, Orchestrator(path) as other:
        run = orc.create_flow_run(parameters={"a": [1, 2]}, tags=["t"], state=Scheduled())
        other.create_flow_run()  # the next transition reads the run from its row
        orc.set_flow_run_state(run.id, Pending())
        assert orc.read_flow_run(run.id).parameters == {"a": [1, 2]}  # from the cache
        with orc.transaction():
            orc.set_flow_run_state(run.id, Running())
            inside = orc.read_flow_run(run.id)
        orc.set_flow_run_state(run.id, Completed())
        assert inside.parameters == {"a": [1, 2]} and inside.tags == ["t"]
        assert other.read_flow_run(run.id).parameters == {"a": [1, 2]}
        assert [r.parameters for r in other.read_flow_runs(newest_first=True)][1] == {"a": [1, 2]}

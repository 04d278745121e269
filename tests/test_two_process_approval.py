"""The approval step across two real processes: the pipeline pauses for typed input and waits;
a person resumes it from the shell (``flowstate resume``); the pipeline goes on with the value.
On SQLite (one file) and PostgreSQL (one schema)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from flowstate import Orchestrator, StateType
from flowstate.states import Running
from tests.backends import REPO

PIPELINE = textwrap.dedent(
    """
    import sys
    from flowstate import Orchestrator, RunInput
    from flowstate.states import Completed

    class Approval(RunInput):
        approved: bool
        reviewer: str = ""

    database, run_id = sys.argv[1:3]
    with Orchestrator(database) as orc:
        paused = orc.pause_flow_run(run_id, key="approval", wait_for_input=Approval, timeout=600)
        print("pipeline: pause", paused.status.value, flush=True)
        answer = orc.wait_for_resume(
            run_id, key="approval", model=Approval, timeout=120, poll_interval=0.05
        )
        print("pipeline: resumed with", repr(answer), flush=True)
        if answer.approved:
            done = orc.set_flow_run_state(run_id, Completed(message=f"approved by {answer.reviewer}"))
            print("pipeline: complete", done.status.value, flush=True)
    """
)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def test_one_process_pauses_and_waits_another_resumes_it(backend, tmp_path: Path) -> None:
    database = backend.new_database()
    try:
        with Orchestrator(database) as orc:
            run_id = str(orc.create_flow_run(flow_name="nightly", state=Running()).id)
        script = tmp_path / "pipeline.py"
        script.write_text(PIPELINE)
        pipeline = subprocess.Popen(
            [sys.executable, str(script), database, run_id],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        try:
            assert pipeline.stdout is not None
            first = pipeline.stdout.readline()
            assert first == "pipeline: pause ACCEPT\n", (first, pipeline.stderr.read())  # type: ignore[union-attr]
            time.sleep(0.2)  # the pipeline is waiting now
            person = subprocess.run(
                [sys.executable, "-m", "flowstate", "--database", database, "resume", run_id,
                 "--input", '{"approved": true, "reviewer": "ada"}'],
                capture_output=True, text=True, env=_env(), timeout=120,
            )
            print(f"$ flowstate resume {run_id} --input '{{...}}'\n{person.stdout}", end="")
            assert person.returncode == 0, person.stderr
            out, err = pipeline.communicate(timeout=120)
        finally:
            if pipeline.poll() is None:
                pipeline.kill()
        print(first + out, end="")
        assert pipeline.returncode == 0, err
        assert out.splitlines() == [
            "pipeline: resumed with Approval(approved=True, reviewer='ada')",
            "pipeline: complete ACCEPT",
        ]
        with Orchestrator(database) as orc:
            history = orc.read_flow_run_states(run_id)
            assert [s.type for s in history] == [
                StateType.RUNNING, StateType.PAUSED, StateType.RUNNING, StateType.COMPLETED]
            assert history[-1].message == "approved by ada"
            response = orc.read_flow_run_input(run_id, "paused-approval-response")
            assert response == '{"approved":true,"reviewer":"ada"}'
    finally:
        backend.drop(database)

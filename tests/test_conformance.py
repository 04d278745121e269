"""Conformance: replay every vector recorded from Prefect 3.9.1 and demand identical answers.

The vectors ship with the repository in ``tests/conformance/vectors/*.jsonl``;
``$FLOWSTATE_CONFORMANCE_DIR`` adds the files of another folder. See
``tests/conformance/README.md``. A missing vector file fails the run, it never skips it.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from flowstate._time import utcnow
from flowstate.testing import ReferenceOrchestrator
from tests.backends import Backend
from tests.conformance import replay
from tests.conformance.replay import (
    ENV_VAR,
    Database,
    MIN_VECTORS,
    VECTOR_DIR,
    find_vector_files,
    load_vectors,
    override_location,
    replay_vector,
)

VECTORS: list[dict[str, Any]] = load_vectors()


def _params() -> list[Any]:
    """One param per vector; a single failing placeholder when none were found (never a skip)."""
    if not VECTORS:
        return [pytest.param(None, id="no-vectors-found")]
    return [pytest.param(vector, id=str(vector.get("id"))) for vector in VECTORS]


def test_vectors_found() -> None:
    """The repository ships the recorded vectors, and an override folder, when one is named,
    exists and holds vector files."""
    shipped = [path for path in find_vector_files() if path.parent == VECTOR_DIR]
    assert shipped, f"no *.jsonl conformance vectors in {VECTOR_DIR}"
    assert len(load_vectors(shipped)) >= MIN_VECTORS, (
        f"only {len(load_vectors(shipped))} vectors in {VECTOR_DIR}, expected >= {MIN_VECTORS}"
    )
    assert len(VECTORS) >= MIN_VECTORS
    location = override_location()
    if location is not None:
        assert location.is_file() or any(location.glob("*.jsonl")), (
            f"{ENV_VAR}={location}: no *.jsonl vector files there"
        )


def _vector_line(vector_id: str) -> str:
    return json.dumps({"id": vector_id, "run": "flow", "setup": {}, "steps": [], "expect": []})


def test_the_override_folder_adds_files_and_a_same_named_file_is_read_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    extra = tmp_path / "more.jsonl"
    extra.write_text(_vector_line("extra-vector") + "\n", encoding="utf-8")
    shipped_name = sorted(VECTOR_DIR.glob("*.jsonl"))[0].name
    (tmp_path / shipped_name).write_text(_vector_line("same-named") + "\n", encoding="utf-8")
    monkeypatch.setenv(ENV_VAR, str(tmp_path))

    files = find_vector_files()

    assert files[-1] == extra
    assert [path for path in files if path.name == shipped_name] == [VECTOR_DIR / shipped_name]
    shipped = sorted(VECTOR_DIR.glob("*.jsonl"))
    assert [path for path in files if path.parent == VECTOR_DIR] == shipped
    ids = {vector["id"] for vector in load_vectors(files)}
    assert "extra-vector" in ids and "same-named" not in ids


def test_the_override_may_name_a_single_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    extra = tmp_path / "one.jsonl"
    extra.write_text(_vector_line("single") + "\n", encoding="utf-8")
    monkeypatch.setenv(ENV_VAR, str(extra))
    assert find_vector_files()[-1] == extra


def test_without_an_override_only_the_repositorys_vectors_are_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    files = find_vector_files()
    assert files and all(path.parent == VECTOR_DIR for path in files)
    assert VECTOR_DIR.is_relative_to(replay.REPO_ROOT)


def test_vector_ids_unique() -> None:
    """Every vector id names exactly one vector."""
    counts = Counter(vector.get("id") for vector in VECTORS)
    duplicates = sorted(str(vector_id) for vector_id, count in counts.items() if count > 1)
    assert not duplicates, f"duplicate vector ids: {duplicates}"
    assert None not in counts, "a vector has no id"


DELIBERATE_DIFFERENCES = {
    "flow-dep-lease-lost-while-running": (
        "a run gives back only the slot its own lease holds: Prefect's COMPLETED of a run whose "
        "lease is gone frees another run's slot (README, deliberate differences; "
        "tests/test_deployments.py shows flowstate's answer)"
    ),
    "flow-dep-over-release-without-lease": (
        "quirks/: a run forced into PENDING holds no slot and frees none when it leaves "
        "(tests/test_deployments.py::test_a_run_releases_only_a_slot_it_holds_not_another_runs)"
    ),
    "flow-dep-retry-then-pending-self-blocks": (
        "quirks/: a retried run submitted again goes on with the slot it kept "
        "(tests/test_deployments.py::test_a_retried_run_keeps_using_its_own_slot)"
    ),
    "flow-dep-inactive-limit-blocks": (
        "quirks/: an inactive deployment limit restricts nothing "
        "(tests/test_deployments.py::test_an_inactive_deployment_limit_restricts_nothing)"
    ),
    "task-tag-zero-and-full": (
        "quirks/: a tag limit of 0 aborts first, whether the task's other tag is full or not "
        "(tests/test_tag_concurrency.py)"
    ),
    "task-tag-api-reset-leaks-slots": (
        "quirks/: reset sets the count to what the remaining holders hold "
        "(tests/test_tag_concurrency.py)"
    ),
    "task-tag-zero-and-free-leaks": (
        "a tag limit of 0 aborts before any slot is taken: Prefect's ABORT still takes a slot on "
        "the task's other tag and keeps it until the task leaves RUNNING (README, deliberate "
        "differences; tests/test_tag_concurrency.py shows flowstate's answer)"
    ),
}
"""Vectors of the acceptance files that record one of the Prefect bugs flowstate does not copy
(the conformance README's last section): replaying them must NOT give Prefect's answer."""


@pytest.fixture(params=["sqlite", "postgres", "memory"])
def database(request: pytest.FixtureRequest) -> Iterator[Database]:
    """A fresh database of each backend (SQLite in memory, a fresh PostgreSQL schema), and the
    store with no database (``ReferenceOrchestrator``, on the real clock as the others)."""
    if request.param == "memory":
        yield partial(ReferenceOrchestrator, clock=utcnow)
        return
    backend: Backend = request.getfixturevalue(f"{request.param}_backend")
    made = backend.new_database(memory=True)
    try:
        yield made
    finally:
        backend.drop(made)


@pytest.mark.parametrize("vector", _params())
def test_conformance(vector: dict[str, Any] | None, database: Database) -> None:
    """Replaying the vector through flowstate gives Prefect's recorded answer at every step,
    on each backend; a vector that records a Prefect bug (``DELIBERATE_DIFFERENCES``) must
    not."""
    assert vector is not None, f"no conformance vectors found in {VECTOR_DIR}"
    mismatches = replay_vector(vector, database)
    difference = DELIBERATE_DIFFERENCES.get(str(vector.get("id")))
    if difference is not None:
        assert mismatches and not any("raised" in line for line in mismatches), (
            f"{vector['id']} records a Prefect bug flowstate does not copy ({difference}), "
            f"yet flowstate answered {'with an error' if mismatches else 'as Prefect'}:\n  "
            + "\n  ".join(mismatches)
        )
        return
    assert not mismatches, (
        f"{vector['id']}: {vector.get('description', '')}\n"
        f"{len(mismatches)} mismatch(es):\n  " + "\n  ".join(mismatches)
    )


# -- the replayer's concurrency format (prefect-3.9.1-concurrency.jsonl) --------------------------


def _limit_vector(expect_after: dict[str, Any], http_status: int = 201) -> dict[str, Any]:
    return {
        "id": "limit-check",
        "run": "task",
        "setup": {"run": {"tags": []}, "parent_flow": {"state": {"type": "RUNNING"}}},
        "steps": [{"op": "create_global_concurrency_limit", "name": "db", "limit": 2}],
        "expect": [
            {
                "http_status": http_status,
                "limit": {"name": "db", "limit": 2, "active": True, "active_slots": 0,
                          "slot_decay_per_second": 0.0},
                "limits_after": expect_after,
            }
        ],
    }


def test_the_replayer_compares_limits_after_and_http_status() -> None:
    assert replay_vector(_limit_vector({"db": {"active_slots": 0}})) == []
    wrong_count = replay_vector(_limit_vector({"db": {"active_slots": 1}}))
    assert len(wrong_count) == 1 and "limits_after" in wrong_count[0]
    wrong_status = replay_vector(_limit_vector({"db": {"active_slots": 0}}, http_status=409))
    assert len(wrong_status) == 1 and "http_status" in wrong_status[0]


def test_the_replayer_checks_a_wait_delay_against_its_range() -> None:
    check = replay.Comparison("step 0:", 2, {})
    details = {"type": "wait_details", "delay_seconds": 2, "reason": "r"}
    replay.compare_details(check, details, {**details, "delay_seconds": 3}, False, [2, 3])
    assert check.mismatches == []
    replay.compare_details(check, details, {**details, "delay_seconds": 4}, False, [2, 3])
    assert len(check.mismatches) == 1 and "range [2, 3]" in check.mismatches[0]


def test_the_replayer_numbers_leases_and_names_deployments_as_the_vectors_do() -> None:
    from uuid import uuid4

    replayer = replay.VectorReplay(_limit_vector({}))
    try:
        first, second = uuid4(), uuid4()
        assert [replayer.lease_label(x) for x in (first, second, first, None)] == [
            "<lease:1>", "<lease:2>", "<lease:1>", None,
        ]
        assert replayer.real_name("deployment:<deployment:d1>") is None
        deployment_id = uuid4()
        replayer.deployments["d1"] = deployment_id
        assert replayer.real_name("deployment:<deployment:d1>") == f"deployment:{deployment_id}"
        assert replayer.vector_name(f"deployment:{deployment_id}") == "deployment:<deployment:d1>"
    finally:
        replayer.close()

"""Conformance: replay every vector recorded from Prefect 3.9.1 and demand identical answers.

The vectors are found at ``<repo>/../shared/conformance/*.jsonl`` or in ``$FLOWSTATE_CONFORMANCE_DIR``;
see ``tests/conformance/README.md``. A missing vector file fails the run, it never skips it.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from tests.backends import Backend
from tests.conformance.replay import (
    ENV_VAR,
    find_vector_files,
    load_vectors,
    minimum_vectors,
    replay_vector,
    vector_dir,
)

VECTORS: list[dict[str, Any]] = load_vectors()


def _params() -> list[Any]:
    """One param per vector; a single failing placeholder when none were found (never a skip)."""
    if not VECTORS:
        return [pytest.param(None, id="no-vectors-found")]
    return [pytest.param(vector, id=str(vector.get("id"))) for vector in VECTORS]


def test_vectors_found() -> None:
    """The vector file exists and holds at least the recorded number of vectors."""
    files = find_vector_files()
    assert files, f"no *.jsonl conformance vectors at {vector_dir()} (set {ENV_VAR} to override)"
    assert len(VECTORS) >= minimum_vectors(), (
        f"only {len(VECTORS)} vectors in {[str(f) for f in files]}, expected >= {minimum_vectors()}"
    )


def test_vector_ids_unique() -> None:
    """Every vector id names exactly one vector."""
    counts = Counter(vector.get("id") for vector in VECTORS)
    duplicates = sorted(str(vector_id) for vector_id, count in counts.items() if count > 1)
    assert not duplicates, f"duplicate vector ids: {duplicates}"
    assert None not in counts, "a vector has no id"


@pytest.mark.parametrize("vector", _params())
def test_conformance(vector: dict[str, Any] | None, backend: Backend) -> None:
    """Replaying the vector through flowstate gives Prefect's recorded answer at every step,
    on each backend (SQLite in memory, a fresh PostgreSQL schema)."""
    assert vector is not None, f"no conformance vectors found at {vector_dir()} (set {ENV_VAR})"
    database = backend.new_database(memory=True)
    try:
        mismatches = replay_vector(vector, database)
    finally:
        backend.drop(database)
    assert not mismatches, (
        f"{vector['id']}: {vector.get('description', '')}\n"
        f"{len(mismatches)} mismatch(es):\n  " + "\n  ".join(mismatches)
    )

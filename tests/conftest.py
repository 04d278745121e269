"""Fixtures shared by the whole suite: the storage backends.

``backend`` is parametrized ``sqlite`` and ``postgres``; ``open_orchestrator`` adds ``memory``
(the in-memory store of ``ReferenceOrchestrator``) for tests of one orchestrator. The PostgreSQL server is
``$FLOWSTATE_TEST_POSTGRES_URL`` if set, else a throwaway cluster that ``scripts/pg-cluster``
starts in a temporary folder for the session (and stops after it). With no server binary, the
PostgreSQL tests are skipped with the reason shown — except in CI (``$CI`` set), where they fail.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pytest

from flowstate import Orchestrator
from flowstate._time import utcnow
from flowstate.testing import ReferenceOrchestrator

from tests.backends import (
    URL_ENV,
    Backend,
    PostgresBackend,
    server_binaries_found,
    start_cluster,
    stop_cluster,
)

BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a PostgreSQL server for this session."""
    given = os.environ.get(URL_ENV)
    if given:
        yield given
        return
    if not server_binaries_found():
        reason = (
            "no PostgreSQL server binaries found (scripts/pg-cluster bindir); install Debian's "
            f"postgresql package or set {URL_ENV}"
        )
        if os.environ.get("CI"):
            pytest.fail(f"CI is set, so the PostgreSQL tests must run: {reason}", pytrace=False)
        pytest.skip(reason)
    folder = tmp_path_factory.mktemp("pg-cluster")
    try:
        url = start_cluster(folder)
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield url
    finally:
        stop_cluster(folder)


@pytest.fixture(scope="session")
def sqlite_backend() -> Iterator[Backend]:
    made = Backend()
    yield made
    made.close()


@pytest.fixture(scope="session")
def postgres_backend(postgres_server: str) -> PostgresBackend:
    return PostgresBackend(postgres_server)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each backend in turn (PostgreSQL's server is started on first use)."""
    return request.getfixturevalue(f"{request.param}_backend")  # type: ignore[no-any-return]


@pytest.fixture(params=[*BACKENDS, "memory"])
def open_orchestrator(request: pytest.FixtureRequest) -> Iterator[Callable[..., Orchestrator]]:
    """``open(**options)``: an Orchestrator on a fresh database of each backend (SQLite in
    memory, a fresh PostgreSQL schema), and on the in-memory store (``ReferenceOrchestrator``,
    on the real clock unless ``clock`` is given). For one orchestrator per test: each open of
    the memory store is a new, empty one."""
    if request.param == "memory":

        def in_memory(**options: Any) -> Orchestrator:
            options.setdefault("clock", utcnow)
            options.setdefault("uniform", random.Random().uniform)
            return ReferenceOrchestrator(**options)

        yield in_memory
        return
    backend: Backend = request.getfixturevalue(f"{request.param}_backend")
    made = backend.new_database(memory=True)
    yield partial(Orchestrator, made)
    backend.drop(made)


@pytest.fixture
def database(backend: Backend) -> Iterator[str]:
    """A fresh database of the backend under test: a file path, or a PostgreSQL URL."""
    made = backend.new_database()
    yield made
    backend.drop(made)


@pytest.fixture
def memory_database(backend: Backend) -> Iterator[str]:
    """A fresh database of the backend under test, in memory where the backend has that."""
    made = backend.new_database(memory=True)
    yield made
    backend.drop(made)

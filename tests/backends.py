"""The two storage backends as test parameters: fresh databases, and checks of what they hold.

A test that should hold on both backends takes the ``backend`` fixture (``tests/conftest.py``),
parametrized ``sqlite`` and ``postgres``, and asks it for fresh databases::

    def test_something(backend):
        with Orchestrator(backend.new_database()) as orc: ...

PostgreSQL databases are fresh schemas (``CREATE SCHEMA``) on one server per test session,
selected through the URL's ``options=-csearch_path=...``: creating one costs a few
milliseconds, and tests never see each other's rows.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager, suppress
from pathlib import Path
from typing import Any

from flowstate.store.postgres.url import is_postgres_url

REPO = Path(__file__).resolve().parents[1]
PG_CLUSTER = Path(os.environ.get("FLOWSTATE_TEST_PG_CLUSTER") or REPO / "scripts" / "pg-cluster")
"""The cluster script (``$FLOWSTATE_TEST_PG_CLUSTER`` overrides it: the fixture's own tests
point it at a script that finds no server)."""
URL_ENV = "FLOWSTATE_TEST_POSTGRES_URL"


class Backend:
    """Fresh databases of one kind, and whole-database checks for them."""

    name = "sqlite"

    def __init__(self) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="flowstate-sqlite-")
        self._count = itertools.count()

    def new_database(self, *, memory: bool = False) -> str:
        """A database no other test uses (``memory``: in memory, where the backend has one)."""
        if memory:
            return ":memory:"
        return str(Path(self._folder.name) / f"db{next(self._count)}.db")

    def drop(self, database: str) -> None:
        """Forget a database made by :meth:`new_database` (best effort)."""
        if database != ":memory:":
            for suffix in ("", "-wal", "-shm"):
                Path(database + suffix).unlink(missing_ok=True)

    def close(self) -> None:
        self._folder.cleanup()


class PostgresBackend(Backend):
    """Fresh schemas on one PostgreSQL server."""

    name = "postgres"

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self._schemas: list[str] = []

    def new_database(self, *, memory: bool = False) -> str:
        schema = f"t_{uuid.uuid4().hex[:16]}"
        with admin(self.server_url) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        self._schemas.append(schema)
        return with_search_path(self.server_url, schema)

    def drop(self, database: str) -> None:
        forget_checker(database)
        schema = schema_of(database)
        with admin(self.server_url) as conn:
            conn.execute("SET lock_timeout = '2s'")
            import psycopg

            with suppress(psycopg.errors.LockNotAvailable):
                # still in use by a connection a failed test left open: the schema goes with
                # the throwaway server (or stays on $FLOWSTATE_TEST_POSTGRES_URL's server)
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

    def close(self) -> None:
        pass


def with_search_path(server_url: str, schema: str) -> str:
    """``server_url`` with ``options=-csearch_path=<schema>`` added to its query."""
    separator = "&" if "?" in server_url else "?"
    return f"{server_url}{separator}options=-csearch_path%3D{schema}"


def schema_of(url: str) -> str:
    return url.rsplit("search_path%3D", 1)[1]


@contextmanager
def admin(url: str) -> Iterator[Any]:
    """A raw autocommit psycopg connection (for test set-up and checks only)."""
    import psycopg

    with closing(psycopg.connect(url, autocommit=True)) as conn:
        yield conn


# -- the throwaway server of a test session ---------------------------------------------------


def server_binaries_found() -> bool:
    """Whether ``scripts/pg-cluster`` can find initdb and pg_ctl."""
    return (
        subprocess.run(
            [str(PG_CLUSTER), "bindir"], capture_output=True, text=True, check=False
        ).returncode
        == 0
    )


def start_cluster(folder: Path) -> str:
    """Start a throwaway cluster in ``folder`` (fsync off: tests only); return its URL."""
    env = {**os.environ, "FLOWSTATE_PG_FSYNC": "off"}
    done = subprocess.run(
        [str(PG_CLUSTER), "start", str(folder)], capture_output=True, text=True, env=env, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"scripts/pg-cluster start failed:\n{done.stderr}")
    return done.stdout.strip().splitlines()[-1]


def stop_cluster(folder: Path) -> None:
    subprocess.run([str(PG_CLUSTER), "stop", str(folder)], capture_output=True, check=False)
    shutil.rmtree(folder, ignore_errors=True)


# -- whole-database checks ---------------------------------------------------------------------

MISMATCHED_RUNS = """
WITH newest AS (
    SELECT {fk} AS run_id, id, type, name,
           ROW_NUMBER() OVER (PARTITION BY {fk} ORDER BY timestamp DESC, id DESC) AS rank
    FROM {table}_state
)
SELECT r.id, r.state_id, n.id FROM {table} r LEFT JOIN newest n ON n.run_id = r.id AND n.rank = 1
WHERE r.state_id IS DISTINCT FROM n.id OR r.state_type IS DISTINCT FROM n.type
   OR r.state_name IS DISTINCT FROM n.name
"""
"""Runs whose current state is not the newest entry of their history; ``{table}`` and ``{fk}``
to fill in. The same SQL serves SQLite (3.39+ knows IS DISTINCT FROM) and PostgreSQL."""


_checkers: dict[str, Any] = {}


def checker(url: str) -> Any:
    """An autocommit connection for checks of ``url``'s schema, kept open for the next check
    (tests that check after every step would otherwise spend their time connecting)."""
    conn = _checkers.get(url)
    if conn is None or conn.closed or conn.broken:
        import psycopg

        conn = _checkers[url] = psycopg.connect(url, autocommit=True)
    return conn


def forget_checker(url: str) -> None:
    conn = _checkers.pop(url, None)
    if conn is not None:
        conn.close()


def postgres_mismatched_runs(url: str) -> list[tuple[str, str | None, str | None]]:
    """Runs whose current state is not the newest entry of their history (should be none)."""
    found: list[tuple[str, str | None, str | None]] = []
    conn = checker(url)
    for table, fk in (("flow_run", "flow_run_id"), ("task_run", "task_run_id")):
        found += conn.execute(MISMATCHED_RUNS.format(table=table, fk=fk)).fetchall()
    return found


def postgres_assert_consistent(url: str) -> None:
    """Every run row agrees with its history, and no state id is in two histories (foreign
    keys and the rest of integrity are the server's to enforce)."""
    assert postgres_mismatched_runs(url) == []
    shared = checker(url).execute(
        "SELECT id FROM flow_run_state INTERSECT SELECT id FROM task_run_state"
    ).fetchall()
    assert shared == []


def postgres_history_ids(url: str) -> set[str]:
    rows = checker(url).execute(
        "SELECT id FROM flow_run_state UNION ALL SELECT id FROM task_run_state"
    )
    return {row[0] for row in rows}


__all__ = [
    "Backend",
    "PostgresBackend",
    "is_postgres_url",
    "postgres_assert_consistent",
    "postgres_history_ids",
    "server_binaries_found",
    "start_cluster",
    "stop_cluster",
    "with_search_path",
]

"""The PostgreSQL test fixture: with no server binary it skips with a reason — unless $CI is
set, where the PostgreSQL tests must fail instead (CI never silently drops a backend)."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.backends import REPO, URL_ENV

ONE_POSTGRES_TEST = "tests/test_postgres_store.py::test_the_database_property_is_the_url"


def run_without_a_server(ci: bool) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in (URL_ENV, "CI")}
    env["FLOWSTATE_TEST_PG_CLUSTER"] = "/bin/false"  # finds no server binaries
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", ONE_POSTGRES_TEST],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_without_a_server_outside_ci_the_postgres_tests_are_skipped_with_the_reason() -> None:
    done = run_without_a_server(ci=False)
    assert done.returncode == 0, done.stdout
    assert "1 skipped" in done.stdout
    assert "no PostgreSQL server binaries found" in done.stdout


def test_without_a_server_in_ci_the_postgres_tests_fail() -> None:
    done = run_without_a_server(ci=True)
    assert done.returncode == 1, done.stdout
    assert "CI is set, so the PostgreSQL tests must run" in done.stdout
    assert "skipped" not in done.stdout


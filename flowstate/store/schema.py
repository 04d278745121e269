"""The database schema, its version, and the versioned migrations that create and evolve it.

The version lives in ``PRAGMA user_version`` (cheap to read on every open) and the file is marked
as flowstate's with ``PRAGMA application_id``. Migrations are registered with sqlite-utils'
``Migrations``, which is imported only when one is pending.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING

from flowstate.errors import DatabaseError
from flowstate.store._sqlite_errors import primary_code
from flowstate.store.connection import read_only_reason

if TYPE_CHECKING:
    from sqlite_utils import Database

__all__ = ["APPLICATION_ID", "SCHEMA_VERSION", "ensure_schema", "newer_schema", "statements"]

APPLICATION_ID = 0x466C5374  # "FlSt"
SCHEMA_VERSION = 7

_V1 = """
CREATE TABLE flow_run (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    flow_name TEXT NOT NULL,
    parameters TEXT NOT NULL,
    tags TEXT NOT NULL,
    state_id TEXT,
    state_type TEXT,
    state_name TEXT,
    run_count INTEGER NOT NULL DEFAULT 0,
    start_time TEXT,
    end_time TEXT,
    total_run_time REAL NOT NULL DEFAULT 0,
    expected_start_time TEXT,
    next_scheduled_start_time TEXT,
    empirical_policy TEXT NOT NULL,
    deployment_id TEXT,
    infrastructure_pid TEXT,
    parent_task_run_id TEXT,
    created TEXT NOT NULL,
    updated TEXT NOT NULL
);
CREATE INDEX ix_flow_run_state_type ON flow_run (state_type, next_scheduled_start_time, id);
CREATE INDEX ix_flow_run_created ON flow_run (created, id);

CREATE TABLE flow_run_state (
    id TEXT PRIMARY KEY,
    flow_run_id TEXT NOT NULL REFERENCES flow_run (id) ON DELETE CASCADE,
    type TEXT NOT NULL,
    name TEXT,
    timestamp TEXT NOT NULL,
    message TEXT,
    data TEXT,
    details TEXT NOT NULL
);
CREATE UNIQUE INDEX ux_flow_run_state_timestamp ON flow_run_state (flow_run_id, timestamp);

CREATE TABLE task_run (
    id TEXT PRIMARY KEY,
    flow_run_id TEXT REFERENCES flow_run (id) ON DELETE CASCADE,
    task_key TEXT NOT NULL,
    dynamic_key TEXT NOT NULL,
    name TEXT NOT NULL,
    state_id TEXT,
    state_type TEXT,
    state_name TEXT,
    run_count INTEGER NOT NULL DEFAULT 0,
    flow_run_run_count INTEGER NOT NULL DEFAULT 0,
    start_time TEXT,
    end_time TEXT,
    total_run_time REAL NOT NULL DEFAULT 0,
    expected_start_time TEXT,
    next_scheduled_start_time TEXT,
    empirical_policy TEXT NOT NULL,
    cache_key TEXT,
    cache_expiration TEXT,
    created TEXT NOT NULL,
    updated TEXT NOT NULL
);
CREATE INDEX ix_task_run_flow_run ON task_run (flow_run_id, created);
CREATE INDEX ix_task_run_created ON task_run (created, id);

CREATE TABLE task_run_state (
    id TEXT PRIMARY KEY,
    task_run_id TEXT NOT NULL REFERENCES task_run (id) ON DELETE CASCADE,
    type TEXT NOT NULL,
    name TEXT,
    timestamp TEXT NOT NULL,
    message TEXT,
    data TEXT,
    details TEXT NOT NULL
);
CREATE UNIQUE INDEX ux_task_run_state_timestamp ON task_run_state (task_run_id, timestamp);

CREATE TABLE task_cache (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    cache_key TEXT NOT NULL,
    expiration TEXT,
    state_id TEXT NOT NULL REFERENCES task_run_state (id) ON DELETE CASCADE
);
CREATE INDEX ix_task_cache_key ON task_cache (cache_key, id);
CREATE INDEX ix_task_cache_state ON task_cache (state_id);

CREATE TABLE flow_run_input (
    flow_run_id TEXT NOT NULL REFERENCES flow_run (id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    sender TEXT,
    created TEXT NOT NULL,
    PRIMARY KEY (flow_run_id, key)
);
"""

_V2_HEARTBEATS = """
CREATE TABLE flow_run_heartbeat (
    flow_run_id TEXT PRIMARY KEY REFERENCES flow_run (id) ON DELETE CASCADE,
    worker TEXT,
    last_heartbeat TEXT,
    timeout_seconds REAL
);
"""

_V3_LISTING_INDEXES = """
CREATE INDEX ix_flow_run_type_created ON flow_run (state_type, created, id);
CREATE INDEX ix_flow_run_flow_name ON flow_run (flow_name, created, id);
"""

# A run's parameters and tags, and its policy, each apart from its row: SQLite rewrites a whole
# row on any UPDATE (overflow pages included), so a transition would otherwise rewrite megabytes
# of parameters, or a policy holding thousands of pause keys, that it did not change. (Tags come
# before parameters so that reading them does not walk the parameters' pages.) The columns of the
# same names in flow_run are left empty.
_V4_RUN_PAYLOAD = """
CREATE TABLE flow_run_payload (
    flow_run_id TEXT PRIMARY KEY REFERENCES flow_run (id) ON DELETE CASCADE,
    tags TEXT NOT NULL,
    parameters TEXT NOT NULL
);
CREATE TABLE flow_run_policy (
    flow_run_id TEXT PRIMARY KEY REFERENCES flow_run (id) ON DELETE CASCADE,
    empirical_policy TEXT NOT NULL
);
INSERT INTO flow_run_payload (flow_run_id, parameters, tags) SELECT id, parameters, tags FROM flow_run;
INSERT INTO flow_run_policy (flow_run_id, empirical_policy) SELECT id, empirical_policy FROM flow_run;
UPDATE flow_run SET parameters = '', tags = '', empirical_policy = ''
"""

# Global concurrency limits (Prefect's V2 limits) and the leases that hold their slots. A lease
# records the slots it took on each limit (0 on a limit that was inactive then), so releasing it
# gives back exactly those. Deleting a limit lets go of its links, not of the leases.
_V5_CONCURRENCY = """
CREATE TABLE concurrency_limit (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    slot_limit INTEGER NOT NULL,
    active INTEGER NOT NULL,
    active_slots INTEGER NOT NULL,
    slot_decay_per_second REAL NOT NULL,
    avg_slot_occupancy_seconds REAL NOT NULL,
    created TEXT NOT NULL,
    updated TEXT NOT NULL
);
CREATE TABLE concurrency_lease (
    id TEXT PRIMARY KEY,
    slots INTEGER NOT NULL,
    holder_type TEXT,
    holder_id TEXT,
    created TEXT NOT NULL,
    expiration TEXT NOT NULL
);
CREATE INDEX ix_concurrency_lease_expiration ON concurrency_lease (expiration, id);
CREATE TABLE concurrency_lease_limit (
    lease_id TEXT NOT NULL REFERENCES concurrency_lease (id) ON DELETE CASCADE,
    limit_id TEXT NOT NULL REFERENCES concurrency_limit (id) ON DELETE CASCADE,
    slots INTEGER NOT NULL,
    PRIMARY KEY (lease_id, limit_id)
);
CREATE INDEX ix_concurrency_lease_limit ON concurrency_lease_limit (limit_id, lease_id)
"""

# Deployments: a name, and the concurrency a deployment's flow runs share (its own limit
# ``deployment:<id>``, or a global limit given by id; NULL: none). Deleting the limit unlinks it.
_V6_DEPLOYMENTS = """
CREATE TABLE deployment (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    concurrency_limit_id TEXT REFERENCES concurrency_limit (id) ON DELETE SET NULL,
    collision_strategy TEXT,
    grace_period_seconds INTEGER,
    created TEXT NOT NULL,
    updated TEXT NOT NULL
);
CREATE INDEX ix_deployment_limit ON deployment (concurrency_limit_id)
"""

# Task run tags (a tag with a limit limits the task runs carrying it), and the leases a run
# holds, found by their holder when the run leaves RUNNING.
_V7_TASK_RUN_TAGS = """
ALTER TABLE task_run ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
CREATE INDEX ix_concurrency_lease_holder ON concurrency_lease (holder_id, holder_type)
"""


_STEPS = (
    ("0001_initial", _V1),
    ("0002_heartbeats", _V2_HEARTBEATS),
    ("0003_listing_indexes", _V3_LISTING_INDEXES),
    ("0004_run_payload", _V4_RUN_PAYLOAD),
    ("0005_concurrency", _V5_CONCURRENCY),
    ("0006_deployments", _V6_DEPLOYMENTS),
    ("0007_task_run_tags", _V7_TASK_RUN_TAGS),
)
"""The migrations, in order: each runs its script."""


def statements(script: str) -> list[str]:
    """The statements of a migration script, one by one (for a transaction that must stay open:
    ``executescript`` commits first). No script holds a ``;`` but between statements."""
    return [statement for statement in script.split(";") if statement.strip()]


def newer_schema(where: str, version: int, known: int) -> DatabaseError:
    """The error for a database a newer flowstate wrote (schema ``version`` > ``known``)."""
    return DatabaseError(
        f"{where} was written by a newer flowstate (schema version {version}; this one knows "
        f"up to {known}); upgrade flowstate to open it"
    )


def _step(script: str) -> Callable[[Database], None]:
    def run(db: Database) -> None:
        for statement in statements(script):
            db.execute(statement)

    return run


def _migrations():  # type: ignore[no-untyped-def]
    from sqlite_utils.migrations import Migrations

    migrations = Migrations("flowstate")
    for name, script in _STEPS:
        migrations(name=name)(_step(script))
    return migrations


_READ_IDENTITY = (
    "SELECT (SELECT application_id FROM pragma_application_id), "
    "(SELECT user_version FROM pragma_user_version), (SELECT count(*) FROM sqlite_master)"
)


def _read_identity(conn: sqlite3.Connection) -> tuple[int, int, int]:
    # One statement, so one snapshot: read separately, another process's first migration could
    # commit in between and a new database would look like a foreign one (tables, no id).
    return conn.execute(_READ_IDENTITY).fetchone()


def _check_identity(path: str, application_id: int, user_version: int, tables: int) -> bool:
    """Raise unless this is a flowstate database we can use; True if a migration is pending."""
    if application_id == APPLICATION_ID:
        if user_version > SCHEMA_VERSION:
            raise newer_schema(path, user_version, SCHEMA_VERSION)
        return user_version < SCHEMA_VERSION
    if application_id == 0 and tables == 0:
        return True  # a new, empty database
    raise DatabaseError(
        f"{path} is not a flowstate database (it holds other tables, and no 'flow_run' table "
        "made by flowstate); pass a new path, or the path of a flowstate database"
    )


def _cannot_migrate(path: str, version: int, reason: str) -> DatabaseError:
    """The error for a database that needs writing before it can be used, and may not be."""
    what = (
        "is a new, empty database, which must be created"
        if version == 0
        else f"needs an upgrade from schema version {version} to {SCHEMA_VERSION}"
    )
    return DatabaseError(
        f"{path} {what}, which writes to it, but it can only be read ({reason}); open it once "
        "with write access (any flowstate command does it), or read a copy you may write"
    )


def ensure_schema(conn: sqlite3.Connection, path: str) -> None:
    """Check the file is a usable flowstate database and apply pending migrations.

    Nothing is written to a file that turns out not to be flowstate's, nor to one opened
    read-only (a pending migration is then a DatabaseError that says so).
    """
    identity = _read_identity(conn)
    if not _check_identity(path, *identity):
        return
    reason = read_only_reason(path)
    if reason is not None:
        raise _cannot_migrate(path, identity[1], reason)
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if primary_code(exc) != "READONLY":
            raise
        raise _cannot_migrate(path, identity[1], f"sqlite3: {exc}") from exc
    try:
        # Another process may have migrated between the check and the lock: check again.
        if _check_identity(path, *_read_identity(conn)):
            from sqlite_utils import Database

            _migrations().apply(Database(conn))
            conn.execute(f"PRAGMA application_id={APPLICATION_ID:d}")
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION:d}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise

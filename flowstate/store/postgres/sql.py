"""Every SQL statement the PostgreSQL store runs, as named constants with ``%s`` placeholders.

Where PostgreSQL runs the same SQL as SQLite, the statement is SQLite's
(``flowstate.store.sql``) with its placeholders changed, so that both stores write and read the
same columns for ``flowstate.store.rows``. Written out here are only the statements that differ:
reads of a run inside a transaction lock its row (``FOR UPDATE``), inserts that may race skip a
taken key (``ON CONFLICT DO NOTHING``), a missing limit is ``LIMIT NULL`` (no limit), a parameter
tested with ``IS NULL`` is cast to text, and claims skip rows others have locked.
"""

from __future__ import annotations

from flowstate.store import sql as sqlite


def psycopg_form(statement: str) -> str:
    """A SQLite statement with psycopg's placeholders (for flowstate's statements, which hold
    no literal ``?``)."""
    return statement.replace("?", "%s")


_task_run_updates: dict[tuple[str, ...], str] = {}


def update_task_run(columns: tuple[str, ...]) -> str:
    """SQLite's ``update_task_run`` with psycopg's placeholders."""
    statement = _task_run_updates.get(columns)
    if statement is None:
        statement = _task_run_updates[columns] = psycopg_form(sqlite.update_task_run(columns))
    return statement


def select_runs(kind: str, **filters: bool) -> str:
    """SQLite's ``select_runs`` with psycopg's placeholders, the payload in the run's row."""
    return sqlite.select_runs(kind, **filters, placeholder="%s", payload_table=False)


NO_LIMIT = None
"""``LIMIT NULL``: no limit."""

INSERT_FLOW_RUN_IF_NEW = psycopg_form(sqlite.INSERT_FLOW_RUN_IF_NEW)
INSERT_TASK_RUN_IF_NEW = psycopg_form(sqlite.INSERT_TASK_RUN_IF_NEW)

SELECT_FLOW_RUN = psycopg_form(sqlite.SELECT_FLOW_RUN_ONE_TABLE)
SELECT_TASK_RUN = psycopg_form(sqlite.SELECT_TASK_RUN)
SELECT_FLOW_RUN_PARAMETERS = "SELECT parameters FROM flow_run WHERE id = %s"

# Reading a run inside a transaction locks its row. When the lock had to wait for another
# transaction that changed the run, PostgreSQL re-reads the run's row (the newest version) but
# joins it with the state rows of the statement's snapshot, taken before the wait: the new
# state row is not among them, and comes back NULL. RUN_STATE_ID and STATE_ID (row positions)
# let the store see that, and read the run again (a new statement, a new snapshot; the lock is
# held by then). Uncontended reads take one statement.
SELECT_FLOW_RUN_FOR_UPDATE = f"{SELECT_FLOW_RUN} FOR UPDATE OF r"
SELECT_TASK_RUN_FOR_UPDATE = f"{SELECT_TASK_RUN} FOR UPDATE OF r"
RUN_STATE_ID = 5
STATE_ID = 20
UPDATE_FLOW_RUN = psycopg_form(sqlite.UPDATE_FLOW_RUN_ONE_TABLE)

INSERT_FLOW_RUN_STATE = psycopg_form(sqlite.INSERT_FLOW_RUN_STATE)
INSERT_TASK_RUN_STATE = psycopg_form(sqlite.INSERT_TASK_RUN_STATE)
SELECT_FLOW_RUN_STATES = psycopg_form(sqlite.SELECT_FLOW_RUN_STATES)
SELECT_TASK_RUN_STATES = psycopg_form(sqlite.SELECT_TASK_RUN_STATES)

DELETE_FLOW_RUN = psycopg_form(sqlite.DELETE_FLOW_RUN)
DELETE_TASK_RUN = psycopg_form(sqlite.DELETE_TASK_RUN)

INSERT_CACHE_ENTRY = psycopg_form(sqlite.INSERT_CACHE_ENTRY)
SELECT_CACHED_STATE = psycopg_form(sqlite.SELECT_CACHED_STATE)

INSERT_RUN_INPUT_IF_NEW = (
    psycopg_form(sqlite.INSERT_RUN_INPUT) + " ON CONFLICT (flow_run_id, key) DO NOTHING"
)
SELECT_RUN_INPUT = psycopg_form(sqlite.SELECT_RUN_INPUT)
DELETE_RUN_INPUT = psycopg_form(sqlite.DELETE_RUN_INPUT)
SELECT_RUN_INPUTS_BY_PREFIX = (
    "SELECT key, value, sender FROM flow_run_input WHERE flow_run_id = %s "
    "AND left(key, %s) = %s ORDER BY created, key"
)

# Claims lock the runs they pick and skip those another claimer holds: concurrent workers get
# disjoint batches instead of waiting for each other.
DUE_FLOW_RUN_IDS = (
    "SELECT id FROM flow_run WHERE state_type = 'SCHEDULED' AND next_scheduled_start_time <= %s "
    "ORDER BY next_scheduled_start_time, id LIMIT %s FOR UPDATE SKIP LOCKED"
)
LATE_CANDIDATE_IDS = (
    "SELECT id FROM flow_run WHERE state_type = 'SCHEDULED' AND state_name = 'Scheduled' "
    "AND next_scheduled_start_time <= %s ORDER BY next_scheduled_start_time, id FOR UPDATE"
)
LOCK_ACTIVE_FLOW_RUNS = (
    "SELECT id FROM flow_run WHERE state_type IN ('PENDING', 'RUNNING') ORDER BY id FOR UPDATE"
)
SELECT_SILENT_FLOW_RUNS = sqlite.SELECT_SILENT_FLOW_RUNS
# SQLite's upsert names the old row's columns bare; PostgreSQL needs them qualified.
UPSERT_HEARTBEAT = (
    "INSERT INTO flow_run_heartbeat AS h (flow_run_id, worker, last_heartbeat, timeout_seconds) "
    "VALUES (%s, %s, %s, %s) ON CONFLICT (flow_run_id) DO UPDATE SET "
    "worker = COALESCE(excluded.worker, h.worker), "
    "last_heartbeat = COALESCE(excluded.last_heartbeat, h.last_heartbeat), "
    "timeout_seconds = COALESCE(excluded.timeout_seconds, h.timeout_seconds)"
)
SELECT_HEARTBEAT = psycopg_form(sqlite.SELECT_HEARTBEAT)

SELECT_SERVER_TIME = "SELECT now()"
"""The server's clock at the start of the current transaction (a ``timestamptz``)."""

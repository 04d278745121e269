"""Every SQL statement the PostgreSQL store runs, as named constants with ``%s`` placeholders.

Column lists are shared with the SQLite store (``flowstate.store.sql``): both hand the same rows
to ``flowstate.store.rows``. What differs from SQLite's statements: reads of a run inside a
transaction first lock its row (``LOCK_*``), a missing limit is ``LIMIT NULL`` (no limit),
a parameter tested with ``IS NULL`` is cast to text, and claims skip rows others have locked.
"""

from __future__ import annotations

from flowstate.store import sql as sqlite_sql
from flowstate.store.sql import FLOW_RUN_COLUMNS, STATE_COLUMNS, TASK_RUN_COLUMNS

_S = "s.id, s.type, s.name, s.timestamp, s.message, s.data, s.details"
_FLOW_RUN_R = ", ".join(f"r.{c.strip()}" for c in FLOW_RUN_COLUMNS.split(","))
_TASK_RUN_R = ", ".join(f"r.{c.strip()}" for c in TASK_RUN_COLUMNS.split(","))
_20 = ", ".join(["%s"] * 20)

INSERT_FLOW_RUN_IF_NEW = (
    f"INSERT INTO flow_run ({FLOW_RUN_COLUMNS}) VALUES ({_20}) ON CONFLICT (id) DO NOTHING"
)
INSERT_TASK_RUN_IF_NEW = (
    f"INSERT INTO task_run ({TASK_RUN_COLUMNS}) VALUES ({_20}) ON CONFLICT (id) DO NOTHING"
)

SELECT_FLOW_RUN = (
    f"SELECT {_FLOW_RUN_R}, {_S} FROM flow_run r "
    "LEFT JOIN flow_run_state s ON s.id = r.state_id WHERE r.id = %s"
)
SELECT_TASK_RUN = (
    f"SELECT {_TASK_RUN_R}, {_S} FROM task_run r "
    "LEFT JOIN task_run_state s ON s.id = r.state_id WHERE r.id = %s"
)

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
SELECT_FLOW_RUNS = (
    f"SELECT {_FLOW_RUN_R}, {_S} FROM flow_run r "
    "LEFT JOIN flow_run_state s ON s.id = r.state_id "
    "WHERE (%(type)s::text IS NULL OR r.state_type = %(type)s) "
    "ORDER BY r.created, r.id LIMIT %(limit)s OFFSET %(offset)s"
)
SELECT_TASK_RUNS = (
    f"SELECT {_TASK_RUN_R}, {_S} FROM task_run r "
    "LEFT JOIN task_run_state s ON s.id = r.state_id "
    "WHERE (%(flow)s::text IS NULL OR r.flow_run_id = %(flow)s) "
    "AND (%(type)s::text IS NULL OR r.state_type = %(type)s) "
    "ORDER BY r.created, r.id LIMIT %(limit)s OFFSET %(offset)s"
)

UPDATE_FLOW_RUN = (
    "UPDATE flow_run SET state_id = %s, state_type = %s, state_name = %s, run_count = %s, "
    "start_time = %s, end_time = %s, total_run_time = %s, expected_start_time = %s, "
    "next_scheduled_start_time = %s, empirical_policy = %s, updated = %s WHERE id = %s"
)
UPDATE_TASK_RUN = (
    "UPDATE task_run SET state_id = %s, state_type = %s, state_name = %s, run_count = %s, "
    "flow_run_run_count = %s, start_time = %s, end_time = %s, total_run_time = %s, "
    "expected_start_time = %s, next_scheduled_start_time = %s, cache_key = %s, "
    "cache_expiration = %s, updated = %s WHERE id = %s"
)

INSERT_FLOW_RUN_STATE = (
    f"INSERT INTO flow_run_state (flow_run_id, {STATE_COLUMNS}) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
)
INSERT_TASK_RUN_STATE = (
    f"INSERT INTO task_run_state (task_run_id, {STATE_COLUMNS}) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
)
SELECT_FLOW_RUN_STATES = (
    f"SELECT {STATE_COLUMNS} FROM flow_run_state WHERE flow_run_id = %s ORDER BY timestamp, id"
)
SELECT_TASK_RUN_STATES = (
    f"SELECT {STATE_COLUMNS} FROM task_run_state WHERE task_run_id = %s ORDER BY timestamp, id"
)

DELETE_FLOW_RUN = "DELETE FROM flow_run WHERE id = %s"
DELETE_TASK_RUN = "DELETE FROM task_run WHERE id = %s"

INSERT_CACHE_ENTRY = "INSERT INTO task_cache (cache_key, expiration, state_id) VALUES (%s, %s, %s)"
SELECT_CACHED_STATE = (
    f"SELECT {_S} FROM task_cache c JOIN task_run_state s ON s.id = c.state_id "
    "WHERE c.cache_key = %s AND (c.expiration IS NULL OR c.expiration > %s) "
    "ORDER BY c.id DESC LIMIT 1"
)

INSERT_RUN_INPUT_IF_NEW = (
    "INSERT INTO flow_run_input (flow_run_id, key, value, sender, created) "
    "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (flow_run_id, key) DO NOTHING"
)
SELECT_RUN_INPUT = "SELECT value FROM flow_run_input WHERE flow_run_id = %s AND key = %s"
DELETE_RUN_INPUT = "DELETE FROM flow_run_input WHERE flow_run_id = %s AND key = %s"

# Claims lock the runs they pick and skip those another claimer holds: concurrent workers get
# disjoint batches instead of waiting for each other.
CLAIM_DUE_FLOW_RUN_IDS = (
    "SELECT id FROM flow_run WHERE state_type = 'SCHEDULED' AND next_scheduled_start_time <= %s "
    "ORDER BY next_scheduled_start_time, id LIMIT %s FOR UPDATE SKIP LOCKED"
)
LOCK_LATE_CANDIDATE_IDS = (
    "SELECT id FROM flow_run WHERE state_type = 'SCHEDULED' AND state_name = 'Scheduled' "
    "AND next_scheduled_start_time <= %s ORDER BY next_scheduled_start_time, id FOR UPDATE"
)
LOCK_ACTIVE_FLOW_RUNS = (
    "SELECT id FROM flow_run WHERE state_type IN ('PENDING', 'RUNNING') ORDER BY id FOR UPDATE"
)
SELECT_SILENT_FLOW_RUNS = sqlite_sql.SELECT_SILENT_FLOW_RUNS  # no parameters: the same text
UPSERT_HEARTBEAT = (
    "INSERT INTO flow_run_heartbeat AS h (flow_run_id, worker, last_heartbeat, timeout_seconds) "
    "VALUES (%s, %s, %s, %s) ON CONFLICT (flow_run_id) DO UPDATE SET "
    "worker = COALESCE(excluded.worker, h.worker), "
    "last_heartbeat = COALESCE(excluded.last_heartbeat, h.last_heartbeat), "
    "timeout_seconds = COALESCE(excluded.timeout_seconds, h.timeout_seconds)"
)
SELECT_HEARTBEAT = (
    "SELECT worker, last_heartbeat, timeout_seconds FROM flow_run_heartbeat WHERE flow_run_id = %s"
)

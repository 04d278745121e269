"""Every SQL statement the store runs, as named constants with ``?`` placeholders."""

from __future__ import annotations

FLOW_RUN_COLUMNS = (
    "id, name, flow_name, parameters, tags, state_id, state_type, state_name, run_count, "
    "start_time, end_time, total_run_time, expected_start_time, next_scheduled_start_time, "
    "empirical_policy, deployment_id, infrastructure_pid, parent_task_run_id, created, updated"
)
TASK_RUN_COLUMNS = (
    "id, flow_run_id, task_key, dynamic_key, name, state_id, state_type, state_name, run_count, "
    "flow_run_run_count, start_time, end_time, total_run_time, expected_start_time, "
    "next_scheduled_start_time, empirical_policy, cache_key, cache_expiration, created, updated"
)
STATE_COLUMNS = "id, type, name, timestamp, message, data, details"

JOINED_STATE_COLUMNS = "s.id, s.type, s.name, s.timestamp, s.message, s.data, s.details"
"""A run's current state, joined as ``s``: the 7 columns after a run's 20."""

INSERT_FLOW_RUN = f"INSERT INTO flow_run ({FLOW_RUN_COLUMNS}) VALUES ({', '.join('?' * 20)})"
INSERT_FLOW_RUN_IF_NEW = f"{INSERT_FLOW_RUN} ON CONFLICT (id) DO NOTHING"
INSERT_TASK_RUN = (
    f"INSERT INTO task_run ({TASK_RUN_COLUMNS}, tags) VALUES (?, ?, ?, ?, ?, NULL, NULL, NULL, "
    "0, 0, NULL, NULL, 0.0, NULL, NULL, ?, NULL, NULL, ?, ?, ?)"
)
"""A new task run: its ids, keys, name, policy, creation times and tags; no state yet, and the
counts, run times and cache key of a run that never ran (``rows.task_run_insert_row``)."""
INSERT_TASK_RUN_IF_NEW = f"{INSERT_TASK_RUN} ON CONFLICT (id) DO NOTHING"
TASK_RUN_TAIL = ", r.tags"
"""Read after a task run's state columns (so the state stands at the same place in flow and
task run rows): the columns added to task_run since."""

JOINED_FLOW_RUN_COLUMNS = ", ".join(f"r.{c.strip()}" for c in FLOW_RUN_COLUMNS.split(","))
JOINED_TASK_RUN_COLUMNS = ", ".join(f"r.{c.strip()}" for c in TASK_RUN_COLUMNS.split(","))

PAYLOAD_COLUMNS = {"parameters": "p", "tags": "p", "empirical_policy": "q"}
"""Kept apart from the run's row (SQLite; parameters and tags in flow_run_payload as ``p``, the
policy in flow_run_policy as ``q``): a transition rewrites neither unless it changed it."""
PAYLOAD_FLOW_RUN_COLUMNS = ", ".join(
    f"{PAYLOAD_COLUMNS.get(c.strip(), 'r')}.{c.strip()}" for c in FLOW_RUN_COLUMNS.split(",")
)
"""A flow run's columns, in FLOW_RUN_COLUMNS order, joined with its payload and policy."""
FLOW_RUN_WITH_PAYLOAD = (
    "flow_run r JOIN flow_run_payload p ON p.flow_run_id = r.id "
    "JOIN flow_run_policy q ON q.flow_run_id = r.id"
)

SELECT_FLOW_RUN = (
    f"SELECT {PAYLOAD_FLOW_RUN_COLUMNS}, {JOINED_STATE_COLUMNS} FROM {FLOW_RUN_WITH_PAYLOAD} "
    "LEFT JOIN flow_run_state s ON s.id = r.state_id WHERE r.id = ?"
)
SELECT_FLOW_RUN_LEAN = (
    "SELECT "
    + PAYLOAD_FLOW_RUN_COLUMNS.replace("p.parameters", "NULL")
    + f", {JOINED_STATE_COLUMNS} FROM {FLOW_RUN_WITH_PAYLOAD} "
    "LEFT JOIN flow_run_state s ON s.id = r.state_id WHERE r.id = ?"
)
"""SELECT_FLOW_RUN without the parameters (NULL): what checking a kept run against its row reads."""
SELECT_FLOW_RUN_PARAMETERS = "SELECT parameters FROM flow_run_payload WHERE flow_run_id = ?"
SELECT_FLOW_RUN_ONE_TABLE = (
    f"SELECT {JOINED_FLOW_RUN_COLUMNS}, {JOINED_STATE_COLUMNS} FROM flow_run r "
    "LEFT JOIN flow_run_state s ON s.id = r.state_id WHERE r.id = ?"
)
"""SELECT_FLOW_RUN where the payload is in the run's row (PostgreSQL, whose TOAST storage
keeps large values out of the row already)."""
SELECT_TASK_RUN = (
    f"SELECT {JOINED_TASK_RUN_COLUMNS}, {JOINED_STATE_COLUMNS}{TASK_RUN_TAIL} FROM task_run r "
    "LEFT JOIN task_run_state s ON s.id = r.state_id WHERE r.id = ?"
)


def select_runs(
    kind: str,
    *,
    flow_run_id: bool = False,
    state_type: bool = False,
    flow_name: bool = False,
    newest_first: bool = False,
    placeholder: str = "?",
    payload_table: bool = True,
) -> str:
    """The listing of flow runs (``kind`` "flow") or task runs ("task") with the filters asked
    for, each an equality an index can serve (no ``? IS NULL OR ...``), then ``LIMIT`` and
    ``OFFSET``. Parameters, in order: flow run id, state type, flow name, limit, offset.
    ``payload_table``: flow runs keep their payload in flow_run_payload (SQLite)."""
    columns = JOINED_TASK_RUN_COLUMNS
    source = "task_run r"
    tail = TASK_RUN_TAIL
    if kind == "flow":
        tail = ""
        columns = PAYLOAD_FLOW_RUN_COLUMNS if payload_table else JOINED_FLOW_RUN_COLUMNS
        source = FLOW_RUN_WITH_PAYLOAD if payload_table else "flow_run r"
    where = []
    if flow_run_id:
        where.append(f"r.flow_run_id = {placeholder}")
    if state_type:
        where.append(f"r.state_type = {placeholder}")
    if flow_name:
        if kind == "flow":
            where.append(f"r.flow_name = {placeholder}")
        else:
            where.append(f"r.flow_run_id IN (SELECT id FROM flow_run WHERE flow_name = {placeholder})")
    order = " DESC" if newest_first else ""
    return (
        f"SELECT {columns}, {JOINED_STATE_COLUMNS}{tail} FROM {source} "
        f"LEFT JOIN {kind}_run_state s ON s.id = r.state_id "
        + (f"WHERE {' AND '.join(where)} " if where else "")
        + f"ORDER BY r.created{order}, r.id{order} LIMIT {placeholder} OFFSET {placeholder}"
    )


NO_LIMIT = -1
"""``LIMIT -1``: no limit."""

UPDATE_FLOW_RUN_ONE_TABLE = (
    "UPDATE flow_run SET state_id = ?, state_type = ?, state_name = ?, run_count = ?, "
    "start_time = ?, end_time = ?, total_run_time = ?, expected_start_time = ?, "
    "next_scheduled_start_time = ?, empirical_policy = ?, updated = ? WHERE id = ?"
)
"""A run's bookkeeping and policy after a transition, in one row (PostgreSQL)."""
UPDATE_FLOW_RUN = (
    "UPDATE flow_run SET state_id = ?, state_type = ?, state_name = ?, run_count = ?, "
    "start_time = ?, end_time = ?, total_run_time = ?, expected_start_time = ?, "
    "next_scheduled_start_time = ?, updated = ? WHERE id = ?"
)
"""A run's bookkeeping after a transition (SQLite; its policy, where it changed: UPDATE_CHANGED_FLOW_RUN_POLICY)."""
UPDATE_FLOW_RUN_POLICY = "UPDATE flow_run_policy SET empirical_policy = ? WHERE flow_run_id = ?"
UPDATE_CHANGED_FLOW_RUN_POLICY = (
    "UPDATE flow_run_policy SET empirical_policy = ?1 WHERE flow_run_id = ?2 "
    "AND empirical_policy IS NOT ?1"
)
INSERT_FLOW_RUN_PAYLOAD = "INSERT INTO flow_run_payload (flow_run_id, parameters, tags) VALUES (?, ?, ?)"
INSERT_FLOW_RUN_POLICY = "INSERT INTO flow_run_policy (flow_run_id, empirical_policy) VALUES (?, ?)"
_task_run_updates: dict[tuple[str, ...], str] = {}


def update_task_run(columns: tuple[str, ...]) -> str:
    """The UPDATE of a task run's transition: the ``columns`` it changed (``state_id`` when it
    wrote a state, and the run's saved fields it set, ``rows.task_run_changes``), then
    ``updated``; by the run's id. Each shape is written once."""
    statement = _task_run_updates.get(columns)
    if statement is None:
        sets = "".join(f"{column} = ?, " for column in columns)
        statement = _task_run_updates[columns] = f"UPDATE task_run SET {sets}updated = ? WHERE id = ?"
    return statement


INSERT_FLOW_RUN_STATE = (
    f"INSERT INTO flow_run_state (flow_run_id, {STATE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_TASK_RUN_STATE = (
    f"INSERT INTO task_run_state (task_run_id, {STATE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
SELECT_FLOW_RUN_STATES = (
    f"SELECT {STATE_COLUMNS} FROM flow_run_state WHERE flow_run_id = ? ORDER BY timestamp, id"
)
SELECT_TASK_RUN_STATES = (
    f"SELECT {STATE_COLUMNS} FROM task_run_state WHERE task_run_id = ? ORDER BY timestamp, id"
)

DATA_VERSION = "PRAGMA data_version"
DELETE_FLOW_RUN = "DELETE FROM flow_run WHERE id = ?"
DELETE_TASK_RUN = "DELETE FROM task_run WHERE id = ?"

INSERT_CACHE_ENTRY = "INSERT INTO task_cache (cache_key, expiration, state_id) VALUES (?, ?, ?)"
SELECT_CACHED_STATE = (
    f"SELECT {JOINED_STATE_COLUMNS} FROM task_cache c JOIN task_run_state s ON s.id = c.state_id "
    "WHERE c.cache_key = ? AND (c.expiration IS NULL OR c.expiration > ?) "
    "ORDER BY c.id DESC LIMIT 1"
)

INSERT_RUN_INPUT = (
    "INSERT INTO flow_run_input (flow_run_id, key, value, sender, created) VALUES (?, ?, ?, ?, ?)"
)
INSERT_RUN_INPUT_IF_NEW = f"{INSERT_RUN_INPUT} ON CONFLICT (flow_run_id, key) DO NOTHING"
SELECT_RUN_INPUT = "SELECT value FROM flow_run_input WHERE flow_run_id = ? AND key = ?"
DELETE_RUN_INPUT = "DELETE FROM flow_run_input WHERE flow_run_id = ? AND key = ?"
SELECT_RUN_INPUTS_BY_PREFIX = (
    "SELECT key, value, sender FROM flow_run_input WHERE flow_run_id = ? "
    "AND substr(key, 1, ?) = ? ORDER BY created, key"
)

DUE_FLOW_RUN_IDS = (
    "SELECT id FROM flow_run WHERE state_type = 'SCHEDULED' AND next_scheduled_start_time <= ? "
    "ORDER BY next_scheduled_start_time, id LIMIT ?"
)
LATE_CANDIDATE_IDS = (
    "SELECT id FROM flow_run WHERE state_type = 'SCHEDULED' AND state_name = 'Scheduled' "
    "AND next_scheduled_start_time <= ? ORDER BY next_scheduled_start_time, id"
)
LOCK_ACTIVE_FLOW_RUNS = None
"""(PostgreSQL locks the active runs first; SQLite's write lock covers them already.)"""
SELECT_SILENT_FLOW_RUNS = (
    "SELECT r.id, COALESCE(h.last_heartbeat, s.timestamp), h.timeout_seconds FROM flow_run r "
    "JOIN flow_run_state s ON s.id = r.state_id "
    "LEFT JOIN flow_run_heartbeat h ON h.flow_run_id = r.id "
    "WHERE r.state_type IN ('PENDING', 'RUNNING') "
    "ORDER BY COALESCE(h.last_heartbeat, s.timestamp), r.id"
)
UPSERT_HEARTBEAT = (
    "INSERT INTO flow_run_heartbeat (flow_run_id, worker, last_heartbeat, timeout_seconds) "
    "VALUES (?, ?, ?, ?) ON CONFLICT (flow_run_id) DO UPDATE SET "
    "worker = COALESCE(excluded.worker, worker), "
    "last_heartbeat = COALESCE(excluded.last_heartbeat, last_heartbeat), "
    "timeout_seconds = COALESCE(excluded.timeout_seconds, timeout_seconds)"
)
SELECT_HEARTBEAT = (
    "SELECT worker, last_heartbeat, timeout_seconds FROM flow_run_heartbeat WHERE flow_run_id = ?"
)

"""The SQL of global concurrency limits and their leases (SQLite form, ``?`` placeholders).

PostgreSQL runs the same statements with its placeholders, plus row locks
(``flowstate.store.postgres.limits_sql``). Times are the stores' fixed-width UTC text, so they
compare as text; ``active`` is an integer (0/1) on both databases.
"""

from __future__ import annotations

__all__ = [
    "DELETE_LEASE",
    "DELETE_LIMIT",
    "DELETE_LINKS_OF_LIMIT",
    "INSERT_LEASE",
    "INSERT_LEASE_LIMIT",
    "INSERT_LIMIT",
    "RENEW_LEASE",
    "RENEW_TASK_LEASES_OF_FLOW_RUN",
    "SELECT_EXPIRED_LEASES",
    "SELECT_LEASE",
    "SELECT_LEASES",
    "SELECT_LEASES_OF_HOLDER",
    "SELECT_LEASES_OF_LIMIT",
    "SELECT_TASK_LEASES_OF_FLOW_RUN",
    "SELECT_LIMIT_BY_ID",
    "SELECT_LIMIT_BY_NAME",
    "SELECT_LIMITS",
    "UPDATE_LIMIT",
    "in_list",
    "select_lease_links",
    "select_limits_by_ids",
    "select_limits_by_names",
]

LIMIT_COLUMNS = (
    "id, name, slot_limit, active, active_slots, slot_decay_per_second, "
    "avg_slot_occupancy_seconds, created, updated"
)
LEASE_COLUMNS = "id, slots, holder_type, holder_id, created, expiration"

INSERT_LIMIT = (
    f"INSERT INTO concurrency_limit ({LIMIT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (name) DO NOTHING"
)
SELECT_LIMIT_BY_NAME = f"SELECT {LIMIT_COLUMNS} FROM concurrency_limit WHERE name = ?"
SELECT_LIMIT_BY_ID = f"SELECT {LIMIT_COLUMNS} FROM concurrency_limit WHERE id = ?"
SELECT_LIMITS = f"SELECT {LIMIT_COLUMNS} FROM concurrency_limit ORDER BY name"
UPDATE_LIMIT = (
    "UPDATE concurrency_limit SET slot_limit = ?, active = ?, active_slots = ?, "
    "slot_decay_per_second = ?, avg_slot_occupancy_seconds = ?, updated = ? WHERE id = ?"
)
DELETE_LIMIT = "DELETE FROM concurrency_limit WHERE id = ?"

INSERT_LEASE = f"INSERT INTO concurrency_lease ({LEASE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"
INSERT_LEASE_LIMIT = (
    "INSERT INTO concurrency_lease_limit (lease_id, limit_id, slots) VALUES (?, ?, ?)"
)
SELECT_LEASE = f"SELECT {LEASE_COLUMNS} FROM concurrency_lease WHERE id = ?"
SELECT_LEASES = f"SELECT {LEASE_COLUMNS} FROM concurrency_lease ORDER BY created, id"
SELECT_LEASES_OF_LIMIT = (
    f"SELECT {LEASE_COLUMNS} FROM concurrency_lease WHERE id IN "
    "(SELECT lease_id FROM concurrency_lease_limit WHERE limit_id = ?) ORDER BY created, id"
)
SELECT_LEASES_OF_HOLDER = (
    f"SELECT {LEASE_COLUMNS} FROM concurrency_lease WHERE holder_id = ? AND holder_type = ? "
    "ORDER BY created, id"
)
SELECT_EXPIRED_LEASES = (
    f"SELECT {LEASE_COLUMNS} FROM concurrency_lease WHERE expiration < ? ORDER BY expiration, id"
)
RENEW_LEASE = "UPDATE concurrency_lease SET expiration = ? WHERE id = ?"
SELECT_TASK_LEASES_OF_FLOW_RUN = (
    f"SELECT {LEASE_COLUMNS} FROM concurrency_lease WHERE holder_type = 'task_run' "
    "AND holder_id IN (SELECT id FROM task_run WHERE flow_run_id = ?) ORDER BY created, id"
)
RENEW_TASK_LEASES_OF_FLOW_RUN = (
    "UPDATE concurrency_lease SET expiration = ? WHERE holder_type = 'task_run' "
    "AND expiration < ? AND holder_id IN (SELECT id FROM task_run WHERE flow_run_id = ?)"
)
DELETE_LEASE = "DELETE FROM concurrency_lease WHERE id = ?"
DELETE_LINKS_OF_LIMIT = "DELETE FROM concurrency_lease_limit WHERE limit_id = ?"


def in_list(count: int) -> str:
    """``(?, ?, ...)`` with ``count`` placeholders."""
    return "(" + ", ".join("?" * count) + ")"


def select_limits_by_names(count: int) -> str:
    """The limits with one of ``count`` names, in id order (the order rows are locked in)."""
    return f"SELECT {LIMIT_COLUMNS} FROM concurrency_limit WHERE name IN {in_list(count)} ORDER BY id"


def select_limits_by_ids(count: int) -> str:
    """The limits with one of ``count`` ids, in id order."""
    return f"SELECT {LIMIT_COLUMNS} FROM concurrency_limit WHERE id IN {in_list(count)} ORDER BY id"


def select_lease_links(count: int) -> str:
    """(lease id, limit id, slots taken, limit name) of ``count`` leases; a link to a deleted
    limit is gone with it."""
    return (
        "SELECT k.lease_id, k.limit_id, k.slots, l.name FROM concurrency_lease_limit k "
        f"JOIN concurrency_limit l ON l.id = k.limit_id WHERE k.lease_id IN {in_list(count)} "
        "ORDER BY l.name"
    )

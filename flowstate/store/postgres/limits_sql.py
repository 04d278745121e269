"""PostgreSQL's form of the concurrency-limit SQL (``flowstate.store.limits_sql``): the same
statements with ``%s`` placeholders; reads made for a change lock their rows."""

from __future__ import annotations

from flowstate.store.postgres.sql import psycopg_form

__all__ = ["FOR_UPDATE", "SKIP_LOCKED", "psycopg_form"]

FOR_UPDATE = " FOR UPDATE"
"""Appended to a read of limits or of a lease made for a change: the rows stay locked until
the transaction ends (limits are always read in id order, so locks are taken in one order)."""
SKIP_LOCKED = " FOR UPDATE SKIP LOCKED"
"""Appended to the reaper's read of expired leases: a lease another call is releasing is left
to that call."""

"""The raw-sqlite3 baseline: replay, with plain prepared statements, the rows flowstate wrote.

A :class:`Recording` runs a script once through flowstate on a scratch database and notes,
call by call, every row flowstate inserted or changed (runs, states, cache entries). A
:class:`RawReplayer` then writes the same rows — same tables and indexes (the file is created by
flowstate's schema), same columns, same JSON sizes, fresh ids and timestamps — one commit per
call (or one per batch), with the same PRAGMAs (WAL, ``synchronous``). It decides nothing and
reads nothing, except where a hand-written program would have to (a cache lookup).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from flowstate import Orchestrator
from flowstate._ids import uuid7  # the same time-ordered ids flowstate uses: same B-tree pattern

__all__ = ["Op", "Recording", "RawReplayer", "open_raw", "record"]

_TABLES = ("flow_run", "task_run", "flow_run_state", "task_run_state", "task_cache")
_STATE_TABLES = frozenset({"flow_run_state", "task_run_state"})
_TIME_COLUMNS = frozenset({"timestamp", "updated", "created"})
_UTC = timezone.utc


@dataclass
class Op:
    """One statement of the replay: ``values`` with ids and "now" to fill in per iteration."""

    sql: str
    values: list[Any]
    id_slots: list[tuple[int, str]] = field(default_factory=list)  # (position, recorded id)
    text_slots: list[tuple[int, list[str]]] = field(default_factory=list)  # JSON holding ids
    now_slots: list[int] = field(default_factory=list)
    fetch: bool = False


@dataclass
class Recording:
    """What flowstate wrote, call by call: ``calls[i]`` is the list of ops of call ``i``."""

    calls: list[list[Op]]
    ids: list[str]
    """Every recorded id that must be fresh in each replay (runs and states made by the script)."""


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]


def _snapshot(conn: sqlite3.Connection) -> dict[str, dict[Any, tuple[Any, ...]]]:
    return {
        table: {row[0]: tuple(row) for row in conn.execute(f"SELECT * FROM {table}")}
        for table in _TABLES
    }


def record(
    path: str,
    script: Sequence[Callable[[Orchestrator], object]],
    *,
    setup: Callable[[Orchestrator], object] | None = None,
    reads: dict[int, tuple[str, Callable[[dict[str, str]], tuple[Any, ...]]]] | None = None,
) -> Recording:
    """Run ``script`` (one callable per API call) on a fresh database at ``path``; diff the
    tables after each call into ops. ``setup`` runs first and is not recorded (the ids it
    makes are kept in replays). ``reads[i]`` adds a SELECT the raw side must make in call
    ``i``, with parameters built from the fresh ids."""
    with Orchestrator(path) as orc:
        if setup is not None:
            setup(orc)
        conn = sqlite3.connect(path)  # a reader beside flowstate's own connection
        columns = {t: _columns(conn, t) for t in _TABLES}
        before = _snapshot(conn)
        existing = {str(k) for rows in before.values() for k in rows}
        calls: list[list[Op]] = []
        new_ids: list[str] = []
        for index, step in enumerate(script):
            step(orc)
            after = _snapshot(conn)
            ops: list[Op] = []
            ranked: list[tuple[int, Op]] = []
            if reads and index in reads:
                sql_text, params = reads[index]
                ops.append(Op(sql_text, [params], fetch=True))
            for table in _TABLES:
                for key, row in after[table].items():
                    old = before[table].get(key)
                    if old == row:
                        continue
                    if table != "task_cache" and isinstance(key, str) and key not in new_ids:
                        if key not in existing:
                            new_ids.append(key)
                    insert = old is None
                    # flowstate's order: new runs, then their new states, then run updates
                    rank = 0 if insert and table in ("flow_run", "task_run") else (
                        1 if table in _STATE_TABLES else 2 if not insert else 3
                    )
                    ranked.append((rank, _op(table, columns[table], row, insert=insert)))
            ops.extend(op for _, op in sorted(ranked, key=lambda item: item[0]))
            calls.append(ops)
            before = after
        conn.close()
    ids = new_ids
    for ops in calls:
        for op in ops:
            _bind(op, ids)
    return Recording(calls, ids)


def _op(table: str, columns: list[str], row: tuple[Any, ...], *, insert: bool) -> Op:
    if table == "task_cache":
        columns, row = columns[1:], row[1:]  # let SQLite number the entries
    if insert:
        sql_text = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        op = Op(sql_text, list(row))
        names = columns
    else:
        # the UPDATE flowstate runs sets every column but id, created and a few fixed ones
        settable = [c for c in columns[1:] if c != "created"]
        sql_text = f"UPDATE {table} SET {', '.join(f'{c} = ?' for c in settable)} WHERE id = ?"
        values = [row[columns.index(c)] for c in settable] + [row[0]]
        op = Op(sql_text, values)
        names = [*settable, "id"]
    op.now_slots = [i for i, name in enumerate(names) if name in _TIME_COLUMNS]
    return op


def _bind(op: Op, ids: list[str]) -> None:
    """Mark where recorded ids occur, so that each replay can put fresh ones there."""
    id_set = set(ids)
    for position, value in enumerate(op.values):
        if not isinstance(value, str):
            continue
        if value in id_set:
            op.id_slots.append((position, value))
        else:
            inside = [i for i in ids if i in value]
            if inside:
                op.text_slots.append((position, inside))


def open_raw(path: str, *, synchronous: str = "NORMAL") -> sqlite3.Connection:
    """A plain connection with flowstate's PRAGMAs: WAL, ``synchronous``, foreign keys."""
    conn = sqlite3.connect(path, isolation_level=None, cached_statements=256)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


class RawReplayer:
    """Writes a recording's rows again and again with fresh ids and times."""

    def __init__(self, conn: sqlite3.Connection, recording: Recording) -> None:
        self.conn = conn
        self.recording = recording

    def _now(self) -> str:
        return datetime.now(_UTC).isoformat(timespec="microseconds")

    def _fresh_ids(self) -> dict[str, str]:
        return {old: str(uuid7()) for old in self.recording.ids}

    def _run_call(self, ops: list[Op], fresh: dict[str, str]) -> None:
        execute = self.conn.execute
        now = self._now()
        for op in ops:
            if op.fetch:
                execute(op.sql, op.values[0](fresh)).fetchone()
                continue
            values = op.values.copy()
            for position, old in op.id_slots:
                values[position] = fresh[old]
            for position, olds in op.text_slots:
                text = values[position]
                for old in olds:
                    text = text.replace(old, fresh[old])
                values[position] = text
            for position in op.now_slots:
                values[position] = now
            execute(op.sql, values)

    def replay(self, times: int) -> None:
        """``times`` replays, one commit per call."""
        execute = self.conn.execute
        for _ in range(times):
            fresh = self._fresh_ids()
            for ops in self.recording.calls:
                execute("BEGIN IMMEDIATE")
                self._run_call(ops, fresh)
                execute("COMMIT")

    def replay_batched(self, times: int) -> None:
        """``times`` replays in one transaction: one commit in all."""
        execute = self.conn.execute
        execute("BEGIN IMMEDIATE")
        for _ in range(times):
            fresh = self._fresh_ids()
            for ops in self.recording.calls:
                self._run_call(ops, fresh)
        execute("COMMIT")

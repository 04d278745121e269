"""Statements bound with their Nones written as NULL store exactly what plain binding stores."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowstate.store import sql
from flowstate.store.nulls import nulls_inline

_INSERT = "INSERT INTO t (a, b, c, d, e) VALUES (?, ?, ?, ?, ?)"
_UPDATE = "UPDATE t SET b = ?, c = ?, d = ?, e = ? WHERE a = ?"
_values = st.none() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text()


def _table() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (a, b, c, d, e)")
    return conn


def _written(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
    return conn.execute("SELECT a, b, c, d, e, typeof(b), typeof(e) FROM t ORDER BY rowid").fetchall()


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(st.tuples(_values, _values, _values, _values, _values), max_size=6),
    nullable=st.lists(st.integers(0, 4), min_size=2, max_size=5, unique=True),
)
def test_an_insert_writes_what_plain_binding_writes(
    rows: list[tuple[Any, ...]], nullable: list[int]
) -> None:
    bind = nulls_inline(_INSERT, nullable)
    plain, inlined = _table(), _table()
    for row in rows:
        plain.execute(_INSERT, row)
        inlined.execute(*bind(row))
    assert _written(inlined) == _written(plain)


@settings(max_examples=200, deadline=None)
@given(
    start=st.tuples(_values, _values, _values, _values),
    change=st.tuples(_values, _values, _values, _values),
    nullable=st.lists(st.integers(0, 3), min_size=2, max_size=4, unique=True),
)
def test_an_update_writes_what_plain_binding_writes(
    start: tuple[Any, ...], change: tuple[Any, ...], nullable: list[int]
) -> None:
    bind = nulls_inline(_UPDATE, nullable)
    plain, inlined = _table(), _table()
    for conn in (plain, inlined):
        conn.execute(_INSERT, ("k", *start))
        conn.execute(_INSERT, ("other", *start))
    plain.execute(_UPDATE, (*change, "k"))
    inlined.execute(*bind((*change, "k")))
    assert _written(inlined) == _written(plain)


def test_nones_at_nullable_positions_become_null_and_are_not_bound() -> None:
    bind = nulls_inline(_INSERT, [1, 2, 4])
    assert bind((1, None, None, None, None)) == (
        "INSERT INTO t (a, b, c, d, e) VALUES (?, NULL, NULL, ?, NULL)",
        (1, None),
    )
    assert bind((1, None, "x", 4, None)) == (
        "INSERT INTO t (a, b, c, d, e) VALUES (?, NULL, ?, ?, NULL)",
        (1, "x", 4),
    )
    assert bind((1, 2, 3, 4, 5)) == (_INSERT, (1, 2, 3, 4, 5))


def test_a_row_of_nulls_only_binds_nothing() -> None:
    bind = nulls_inline("INSERT INTO t (a, b) VALUES (?, ?)", [0, 1])
    assert bind((None, None)) == ("INSERT INTO t (a, b) VALUES (NULL, NULL)", ())
    assert bind((None, 1)) == ("INSERT INTO t (a, b) VALUES (NULL, ?)", (1,))


@pytest.mark.parametrize("nullable", [[], [1], [1, 1], [0, 5], [-1, 2]])
def test_nullable_positions_are_checked(nullable: Sequence[int]) -> None:
    with pytest.raises(ValueError):
        nulls_inline(_INSERT, nullable)


@pytest.mark.parametrize(
    ("bind", "statement"),
    [
        (sql.BIND_INSERT_FLOW_RUN_IF_NEW, sql.INSERT_FLOW_RUN_IF_NEW),
        (sql.BIND_INSERT_TASK_RUN_IF_NEW, sql.INSERT_TASK_RUN_IF_NEW),
        (sql.BIND_UPDATE_FLOW_RUN, sql.UPDATE_FLOW_RUN),
        (sql.BIND_UPDATE_TASK_RUN, sql.UPDATE_TASK_RUN),
        (sql.BIND_INSERT_FLOW_RUN_STATE, sql.INSERT_FLOW_RUN_STATE),
        (sql.BIND_INSERT_TASK_RUN_STATE, sql.INSERT_TASK_RUN_STATE),
    ],
)
def test_the_store_statements_bind_a_row_without_nones_unchanged(bind, statement) -> None:  # type: ignore[no-untyped-def]
    width = statement.count("?")
    row = tuple(f"v{i}" for i in range(width))
    assert bind(row) == (statement, row)
    text, params = bind(tuple(None for _ in range(width)))
    assert text.count("?") == len(params) and text.count("NULL") + len(params) == width

"""The rooms of docs/architecture.md keep to their imports, and SQLite errors are told apart by
their result code at the one boundary."""

from __future__ import annotations

import ast
import sqlite3
from pathlib import Path

import pytest

from flowstate.errors import DatabaseBusy, DatabaseError
from flowstate.store._sqlite_errors import describe, is_busy

PACKAGE = Path(__file__).resolve().parents[1] / "flowstate"


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth (inside functions too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def _room(name: str) -> list[Path]:
    return sorted((PACKAGE / name).rglob("*.py"))


def _offending(paths: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{path.relative_to(PACKAGE)} imports {module}"
        for path in paths
        for module in sorted(_imports(path))
        if any(module == f or module.startswith(f + ".") for f in forbidden)
    ]


def test_the_pure_core_touches_no_database_clock_randomness_or_engine() -> None:
    forbidden = (
        "sqlite3", "psycopg", "time", "random", "threading", "flowstate.store",
        "flowstate.orchestrator", "flowstate.cli", "flowstate.testing", "flowstate.aio",
    )
    assert _offending(_room("orchestration"), forbidden) == []
    for path in _room("orchestration"):
        text = path.read_text()
        assert "uuid4" not in text and "datetime.now" not in text, path


def test_the_store_knows_no_rules() -> None:
    forbidden = (
        "flowstate.orchestration", "flowstate.orchestrator", "flowstate.rules",
        "flowstate.cli", "flowstate.testing", "flowstate.aio",
    )
    assert _offending(_room("store"), forbidden) == []


def test_nothing_outside_them_imports_the_command_line_or_the_testing_helpers() -> None:
    engine = [
        path for path in sorted(PACKAGE.rglob("*.py"))
        if path.relative_to(PACKAGE).parts[0] not in ("cli", "testing", "__main__.py")
    ]
    assert _offending(engine, ("flowstate.cli", "flowstate.testing")) == []


def _error(name: str | None, message: str) -> sqlite3.Error:
    exc = sqlite3.OperationalError(message)
    if name is not None:
        exc.sqlite_errorname = name
    return exc


@pytest.mark.parametrize(
    ("name", "advice"),
    [
        ("SQLITE_NOTADB", "is not a SQLite database"),
        ("SQLITE_CORRUPT", "is corrupt"),
        ("SQLITE_CORRUPT_INDEX", "is corrupt"),
        ("SQLITE_READONLY_DBMOVED", "is read-only"),
        ("SQLITE_CANTOPEN_ISDIR", "cannot open"),
        ("SQLITE_TOOBIG", "larger than"),
    ],
)
def test_sqlite_errors_are_told_apart_by_their_result_code_not_their_text(
    name: str, advice: str
) -> None:
    described = describe(_error(name, "a message that says nothing useful"), "db.sqlite")
    assert type(described) is DatabaseError and advice in str(described)


def test_busy_and_locked_are_lock_waits_whatever_the_message_says() -> None:
    for name in ("SQLITE_BUSY", "SQLITE_BUSY_SNAPSHOT", "SQLITE_LOCKED"):
        assert is_busy(_error(name, "xyz"))
        assert isinstance(describe(_error(name, "xyz"), "db.sqlite"), DatabaseBusy)
    # a message that merely mentions a lock is not a lock wait
    not_busy = _error("SQLITE_ERROR", "no such table: locked_busy_things")
    assert not is_busy(not_busy)
    assert type(describe(not_busy, "db.sqlite")) is DatabaseError
    # an error SQLite did not report (a closed connection, a Python-made one): the plain message
    closed = describe(_error(None, "Cannot operate on a closed database."), "db.sqlite")
    assert type(closed) is DatabaseError and str(closed).startswith("database error on db.sqlite")


_INTERNALS = {"__dict__", "__pydantic_fields_set__"}
_CHANGING = {"update", "add", "discard", "remove", "clear", "pop", "setdefault", "__setitem__"}


def _internal(node: ast.expr) -> bool:
    """Whether ``node`` is ``x.__dict__`` or ``x.__pydantic_fields_set__`` of another object
    (a class's own ``self.__dict__`` is its business)."""
    return (
        isinstance(node, ast.Attribute)
        and node.attr in _INTERNALS
        and not (isinstance(node.value, ast.Name) and node.value.id == "self")
    )


def _internals_written(path: Path) -> list[int]:
    """Lines of ``path`` that change a model's ``__dict__`` or ``__pydantic_fields_set__``."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in _CHANGING
            and _internal(node.func.value)
        ):
            lines.append(node.lineno)
        elif isinstance(node, ast.Assign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Subscript) and _internal(target.value):
                    lines.append(node.lineno)
    return lines


def test_only_one_small_module_writes_into_pydantic_internals() -> None:
    writers = {
        str(path.relative_to(PACKAGE)): found
        for path in sorted(PACKAGE.rglob("*.py"))
        if (found := _internals_written(path))
    }
    assert writers.keys() == {"_models.py"}, writers


def test_no_module_keeps_a_cache_keyed_by_object_identity() -> None:
    """``id()`` keys are right only while the object lives: no cache of the engine uses them
    (``diagram.py`` reads the ``transitions`` library's own graphs, which it keys that way)."""
    callers = sorted(
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "id"
    )
    assert callers == ["diagram.py"]

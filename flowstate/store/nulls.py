"""Statements whose None parameters are written as NULL in their text, not bound.

CPython's ``sqlite3`` binds an int, a float or a str directly, but sends every other value,
None included, through its adapter protocol. In Python 3.11 that builds a registry key, looks
it up, then looks ``__adapt__`` up on the protocol type, which raises an AttributeError whose
message is formatted and thrown away: about 3,300 machine instructions per None, where a whole
transition costs flowstate about 240k. A new flow run's row holds ten Nones, a state's two.

:func:`nulls_inline` writes the usual None parameters as ``NULL`` in the statement's text
instead. Each pattern of Nones is its own statement text, which ``sqlite3``'s statement cache
keeps prepared; rows of one kind come in a handful of patterns. The values written are the
same: a NULL either way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import is_, itemgetter
from typing import Any

__all__ = ["Binder", "nulls_inline"]

Binder = Callable[[Sequence[Any]], tuple[str, Sequence[Any]]]
"""Takes a row of parameters; gives the statement's text for it and the parameters to bind."""


def nulls_inline(statement: str, nullable: Sequence[int]) -> Binder:
    """A binder for ``statement`` (``?`` placeholders only) that writes the None values found
    at the ``nullable`` positions as ``NULL`` (a None elsewhere is bound as usual). The case
    where all of them are None, the usual one, is checked first."""
    parts = statement.split("?")  # (our statements hold no "?" but their placeholders)
    width = len(parts) - 1
    if len(nullable) < 2 or len(set(nullable)) != len(nullable):
        raise ValueError(f"give two nullable positions or more, each once: {nullable!r}")
    if not all(0 <= i < width for i in nullable):
        raise ValueError(f"nullable positions {nullable!r} for {width} parameters")
    positions = tuple(nullable)
    pick = itemgetter(*positions)
    nones = (None,) * len(positions)

    def variant(pattern: Sequence[bool]) -> tuple[str, Callable[[Sequence[Any]], Any]]:
        nulls = {i for i, null in zip(positions, pattern) if null}
        pieces = [parts[0]]
        for i, part in enumerate(parts[1:]):
            pieces.append("NULL" if i in nulls else "?")
            pieces.append(part)
        kept = [i for i in range(width) if i not in nulls]
        keep: Callable[[Sequence[Any]], Any]
        if not kept:
            keep = _nothing
        elif len(kept) == 1:
            keep = _one(kept[0])
        else:
            keep = itemgetter(*kept)
        return "".join(pieces), keep

    all_null_text, keep_all_null = variant([True] * len(positions))
    variants: dict[tuple[bool, ...], tuple[str, Callable[[Sequence[Any]], Any]]] = {}

    def bind(row: Sequence[Any]) -> tuple[str, Sequence[Any]]:
        picked = pick(row)
        if picked == nones:  # (None is None: compared by identity, at C speed)
            return all_null_text, keep_all_null(row)
        pattern = tuple(map(is_, picked, nones))
        found = variants.get(pattern)
        if found is None:
            found = variants[pattern] = variant(pattern)
        text, keep = found
        return text, keep(row)

    return bind


def _nothing(row: Sequence[Any]) -> tuple[()]:
    return ()


def _one(position: int) -> Callable[[Sequence[Any]], tuple[Any]]:
    return lambda row: (row[position],)  # (itemgetter of one position gives no tuple)

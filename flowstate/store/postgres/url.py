"""PostgreSQL URLs: recognising them, and showing them without their password.

Imports nothing heavy: the orchestrator calls :func:`is_postgres_url` on every open.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["SCHEMES", "is_postgres_url", "masked"]

SCHEMES = ("postgresql://", "postgres://")
"""The URL prefixes that select the PostgreSQL backend (libpq accepts both)."""

_SECRET_PARAMS = frozenset({"password", "sslpassword"})


def is_postgres_url(database: str) -> bool:
    """Whether ``database`` is a PostgreSQL URL rather than a SQLite path."""
    return database[:13].lower().startswith(SCHEMES)


def masked(url: str) -> str:
    """``url`` with any password (in the user part or the query) replaced by ``***``.

    >>> masked("postgresql://ann:s3cret@db.example:5432/flows?password=x&sslmode=require")
    'postgresql://ann:***@db.example:5432/flows?password=%2A%2A%2A&sslmode=require'
    >>> masked("postgres://ann@db/flows")
    'postgres://ann@db/flows'
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return url.split("://", 1)[0] + "://***"  # unparseable: show no part that may be secret
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostinfo = netloc.rpartition("@")
        if ":" in userinfo:
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}:***@{hostinfo}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(key in _SECRET_PARAMS for key, _ in pairs):
            query = urlencode(
                [(key, "***" if key in _SECRET_PARAMS else value) for key, value in pairs]
            )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))

"""SQLite persistence: schema, migrations, and rows <-> models. Knows nothing of rules."""

from flowstate.store.store import Store

__all__ = ["Store"]

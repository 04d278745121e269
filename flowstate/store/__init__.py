"""Persistence: schema, migrations, and rows <-> models. Knows nothing of rules.

Two databases behind one interface (``base.StoreBackend``): SQLite (:class:`Store`, the default)
and PostgreSQL (``flowstate.store.postgres``, for a ``postgresql://`` URL); ``opening.open_store``
picks one. A third backend keeps no database: ``memory.MemoryStore``, dictionaries in memory, for
``flowstate.testing.ReferenceOrchestrator``.
"""

from flowstate.store.run_cache import Store

__all__ = ["Store"]

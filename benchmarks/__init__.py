"""flowstate's benchmarks: each scenario against raw sqlite3 doing the same writes.

Run ``python -m benchmarks`` (``--quick`` for a short run). Every scenario that touches SQLite
runs flowstate and its raw-``sqlite3`` equivalent interleaved in the same process, round by
round, on file databases in a temporary folder, and reports medians and the throughput ratio
flowstate / raw. See ``docs/performance.md``.
"""

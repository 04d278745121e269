"""Run settings shared by the scenarios (sizes, rounds, the scratch folder)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Config"]


@dataclass
class Config:
    """How big and how many: ``rounds`` interleaved rounds of ``runs`` runs per side."""

    workdir: Path
    rounds: int = 7
    runs: int = 200  # scenario 1: flow-run cycles per round per side (7 calls each)
    batch_runs: int = 100  # scenario 2: runs per transaction
    batches: int = 4  # scenario 2: transactions per round
    tasks: int = 150  # scenario 3: task pairs (plain + cache hit) per round
    decisions: int = 3000  # scenario 4: decisions per round
    scale_sizes: list[int] = field(default_factory=lambda: [1_000, 100_000, 1_000_000])
    scale_probes: int = 60  # scenario 5: cycles timed per size and round
    scale_rounds: int = 5
    import_runs: int = 15  # scenario 6: fresh interpreters
    durability: bool = True  # scenario 1 again with synchronous=FULL
    claim_sizes: list[int] = field(default_factory=lambda: [1_000_000])  # scenario 7
    async_transitions: int = 10_000  # scenario 10L: transitions driven while the ticker runs

    @classmethod
    def quick(cls, workdir: Path) -> Config:
        """A short run (about half a minute): small sizes, fewer rounds."""
        return cls(
            workdir,
            rounds=5,
            runs=60,
            batch_runs=40,
            batches=2,
            tasks=50,
            decisions=1000,
            scale_sizes=[1_000, 20_000],
            scale_probes=30,
            scale_rounds=5,
            import_runs=7,
            claim_sizes=[20_000],
            async_transitions=2_000,
        )

    @classmethod
    def tiny(cls, workdir: Path) -> Config:
        """One round of everything at toy size: for the smoke test."""
        return cls(
            workdir,
            rounds=1,
            runs=3,
            batch_runs=3,
            batches=1,
            tasks=3,
            decisions=20,
            scale_sizes=[50, 200],
            scale_probes=3,
            scale_rounds=1,
            import_runs=1,
            durability=False,
            claim_sizes=[300],
            async_transitions=100,
        )

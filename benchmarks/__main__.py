"""``python -m benchmarks [--quick] [--sizes 1000,100000] [--only 1,2] [--out FILE]``."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from benchmarks import (
    async_cycle,
    claims,
    custom_rules,
    decide,
    flow_cycle,
    postgres,
    report,
    scale,
    startup,
    task_cycle,
)
from benchmarks.config import Config
from benchmarks.harness import Figure

SCENARIOS = {
    "1": flow_cycle,  # also 1F (synchronous=FULL) and 2
    "3": task_cycle,
    "4": decide,
    "5": scale,
    "6": startup,
    "7": claims,
    "8": custom_rules,
    "9": postgres,  # 1P, 2P, 3P: scenarios 1, 2, 3 on PostgreSQL
    "10": async_cycle,  # 10, 10C, 10L: AsyncOrchestrator against the sync engine, loop lag
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, fewer rounds")
    parser.add_argument("--tiny", action="store_true", help="one round at toy size (smoke test)")
    parser.add_argument("--sizes", help="scenario 5 sizes, comma-separated (e.g. 1000,100000)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds per scenario")
    parser.add_argument("--only", help="scenarios to run, comma-separated: 1 (with 1F, 2), 3, 4, 5, 6, 7, 8, 9 (PostgreSQL), 10 (asyncio)")
    parser.add_argument("--out", default=str(Path(__file__).with_name("results.json")))
    parser.add_argument("--keep", help="build (and reuse) databases in this folder")
    args = parser.parse_args(argv)

    workdir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="flowstate-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    config = Config.tiny(workdir) if args.tiny else Config.quick(workdir) if args.quick else Config(workdir)
    if args.sizes:
        config.scale_sizes = [int(s) for s in args.sizes.split(",")]
    if args.rounds:
        config.rounds = config.scale_rounds = args.rounds
    chosen = args.only.split(",") if args.only else list(SCENARIOS)
    for key in chosen:
        if key not in SCENARIOS:
            parser.error(f"--only: unknown scenario {key!r}; choose from {', '.join(SCENARIOS)}")

    figures: list[Figure] = []
    started = time.perf_counter()
    try:
        for key in chosen:
            t0 = time.perf_counter()
            figures.extend(SCENARIOS[key].run(config))
            print(f"scenario {key} done in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    report.check_targets(figures)
    print(report.render(figures))
    settings = {k: v for k, v in asdict(config).items() if k != "workdir"}
    settings["seconds"] = round(time.perf_counter() - started, 1)
    report.write_json(Path(args.out), figures, settings)
    print(f"\nwrote {args.out} ({settings['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

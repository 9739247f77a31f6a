"""The main job end to end on the embedded default (``make demo``).

Simulates the ``smoke`` scenario (benign personas plus hidden distillation campaigns, with ground
truth), ingests it into a fresh DuckDB store and shows what was loaded. Detection, reports and
evaluation join this run as those stages land.

    python -m distillguard.demo [--out demo-out] [--scenario smoke] [--scale X] [--seed N]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from rich.console import Console
from rich.rule import Rule

from distillguard.cli import render_ingest_summary
from distillguard.ingest.run import ingest
from distillguard.simulate import render_summary, simulate
from distillguard.stats import render_stats, store_stats


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m distillguard.demo", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("demo-out"))
    ap.add_argument("--scenario", default="smoke")
    ap.add_argument("--scale", type=float, default=None)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    console = Console()
    traffic = args.out / "traffic"
    db = args.out / "distillguard.duckdb"
    shutil.rmtree(args.out, ignore_errors=True)

    console.print(Rule(f"1. simulate '{args.scenario}' (seed {args.seed})"))
    sim = simulate(args.scenario, traffic, scale=args.scale, seed=args.seed, progress=console.is_terminal)
    render_summary(sim, console)

    console.print(Rule(f"2. ingest {traffic} into {db}"))
    summary = ingest(traffic, db, progress=console.is_terminal, console=console)
    render_ingest_summary(summary)

    console.print(Rule("3. what the store holds"))
    render_stats(store_stats(db), console)
    console.print(
        f"\nGround truth for evaluation: {traffic / 'truth.jsonl'}. Next: detection "
        "(`distillguard detect`) and `distillguard evaluate --truth ... --detections ...`."
    )
    return 0 if summary.usable else 1


if __name__ == "__main__":
    raise SystemExit(main())

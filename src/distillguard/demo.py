"""The main job end to end on the embedded default (``make demo``).

Simulates the ``smoke`` scenario (benign personas plus hidden distillation campaigns, with ground
truth), ingests it into a fresh DuckDB store, runs batch detection as it would have run every six
hours over the log, writes campaign reports, and scores the detections against the ground truth.

    python -m distillguard.demo [--out demo-out] [--scenario smoke] [--scale X] [--seed N]
"""

from __future__ import annotations

import argparse
import shutil
from datetime import timedelta
from pathlib import Path

from rich.console import Console
from rich.rule import Rule

from distillguard.cli import render_detect_summary, render_ingest_summary
from distillguard.detect import detect
from distillguard.evaluate import evaluate, render_report
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

    console.print(Rule("4. detect (every 12 h over the log, data up to each step only)"))
    found = detect(db, args.out / "detect", step=timedelta(hours=12), progress=console.is_terminal, console=console)
    render_detect_summary(found)
    for c in read_campaign_summaries(db)[:5]:
        console.print(f"  • {c}")

    console.print(Rule("5. evaluate against the ground truth"))
    report = evaluate(traffic / "truth.jsonl", args.out / "detect" / "detections.jsonl", out=args.out / "evaluation")
    render_report(report, console)
    console.print(f"\nreports: {args.out / 'detect' / 'reports' / 'index.html'}; "
                  f"evaluation: {args.out / 'evaluation' / 'evaluation.json'}")
    return 0 if summary.usable else 1


def read_campaign_summaries(db: Path) -> list[str]:
    """The one-paragraph summary of each campaign report, largest first."""
    from distillguard.engines import DuckDBEngine
    from distillguard.report import read_campaigns, summary_sentence
    from distillguard.store import connect

    con = connect(db)
    try:
        campaigns = read_campaigns(DuckDBEngine(con))
    finally:
        con.close()
    campaigns.sort(key=lambda c: -(c.get("n_flagged") or 0))
    return [summary_sentence(c) for c in campaigns]


if __name__ == "__main__":
    raise SystemExit(main())

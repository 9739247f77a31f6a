"""Detection quality against the issue's targets, on scenarios and seeds the detector was not tuned on.

For each (scenario, seed): simulate → ingest → detect (every STEP, data up to each step only) →
evaluate, with the calibration shipped in the package (built on seed 1001, benign accounts only).
Prints one row per run and writes every evaluation.json under --out.

    .venv/bin/python benchmarks/eval_detection.py --scenarios seed-2026,three-labs --scale 0.01 --seeds 2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import timedelta
from pathlib import Path

from rich.console import Console
from rich.table import Table

from distillguard.detect import detect
from distillguard.evaluate import evaluate
from distillguard.ingest import ingest
from distillguard.scoring.risk import RiskModel
from distillguard.simulate import simulate


def run(scenario: str, scale: float, seed: int, out: Path, step_h: float, model: RiskModel | None,
        corpus: Path | None = None) -> dict:
    base = out / f"{scenario}-{scale}-{seed}{'-corpus' if corpus else ''}"
    traffic, db = base / "traffic", base / "store.duckdb"
    if not (traffic / "truth.jsonl").exists():
        simulate(scenario, traffic, scale=scale, seed=seed, corpus=corpus, progress=False)
    if not db.exists():
        ingest(traffic, db, progress=False)
    t0 = time.perf_counter()
    step = timedelta(hours=step_h) if step_h > 0 else None
    summary = detect(db, base / "detect", step=step, model=model, reports=False, progress=False)
    seconds = time.perf_counter() - t0
    report = evaluate(traffic / "truth.jsonl", base / "detect" / "detections.jsonl", out=base / "evaluation")
    d = report.to_dict()
    d["detect_seconds"] = round(seconds, 1)
    d["stage_seconds"] = summary.stage_seconds
    (base / "evaluation" / "evaluation.json").write_text(json.dumps(d, indent=2, default=str))
    return d


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenarios", default="seed-2026,three-labs,adaptive")
    ap.add_argument("--scale", type=float, default=0.01)
    ap.add_argument("--seeds", default="2")
    ap.add_argument("--step-hours", type=float, default=6.0, help="0: score once, at the end")
    ap.add_argument("--calibration", type=Path, default=None)
    ap.add_argument("--corpus", type=Path, default=None, help="real prompt files (format of shared/corpora)")
    ap.add_argument("--out", type=Path, default=Path("bench-out/eval"))
    args = ap.parse_args()
    model = RiskModel.load(args.calibration) if args.calibration else None
    console = Console()
    t = Table(title="detection quality (targets: recall ≥ 0.99, precision ≥ 0.995, benign FPR ≤ 0.05%, "
                    "hard negatives ≤ 0.5%, first flag ≤ 24 h)")
    for c in ("scenario", "seed", "recall", "precision", "FPR", "worst hard-neg FPR", "slowest 1st flag",
              "detect s"):
        t.add_column(c)
    for scenario in args.scenarios.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            d = run(scenario, args.scale, seed, args.out, args.step_hours, model, args.corpus)
            acc = d["threshold"]
            worst = max((p for p in d["personas"] if p["hard_negative"]), key=lambda p: p["fpr"] or 0)
            firsts = [c["timing"].get("first_flag_s") for c in d["campaigns"]]
            slowest = "never" if any(f is None for f in firsts) else f"{max(firsts) / 3600:.1f} h"
            t.add_row(scenario, str(seed), f"{acc['recall']:.3f}", f"{acc['precision']:.3f}",
                      f"{d['benign']['fpr']:.3%}", f"{worst['persona']} {worst['fpr']:.1%}", slowest,
                      f"{d['detect_seconds']:.0f}")
            console.print(t)
    console.print("command: .venv/bin/python benchmarks/eval_detection.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()

"""Calibrate the risk model on benign-only traffic: the reference every score is measured against.

A provider calibrates on traffic it trusts (vetted customers, or a period before any campaign):

    distillguard calibrate --db reference.duckdb [--benign-accounts vetted.txt] --out calibration.json

The calibration shipped with the package was built from a simulated reference whose seed is used
for nothing else, taking only its benign accounts:

    python -m distillguard.scoring.calibrate --scenario seed-2026 --scale 0.02 --seed 1001 \
        --out src/distillguard/data/calibration.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from distillguard.engines import DuckDBEngine
from distillguard.scoring.defaults import EVIDENCE
from distillguard.scoring.risk import Evidence, RiskModel
from distillguard.store import connect

__all__ = ["calibrate", "calibrate_on_simulation"]


def calibrate(
    db: Path | str,
    out: Path | str,
    *,
    benign_accounts: Iterable[str] | None = None,
    evidence: tuple[Evidence, ...] = EVIDENCE,
    target_fpr: float = 0.0005,
) -> RiskModel:
    """Fit a :class:`RiskModel` on the store's accounts (or only ``benign_accounts``) and save it."""
    from distillguard.content import build_signals
    from distillguard.detect import DetectSummary, run_stages

    con = connect(db, memory_limit="4GB")
    try:
        engine = DuckDBEngine(con)
        build_signals(engine)
        features, clusters = run_stages(engine, None, DetectSummary(db=str(db), as_of=None))
    finally:
        con.close()
    if benign_accounts is not None:
        keep = pa.array(sorted(set(benign_accounts)), pa.string())
        features = features.filter(pc.is_in(features.column("account_id"), value_set=keep))
        clusters = clusters.filter(pc.is_in(clusters.column("account_id"), value_set=keep))
    model = RiskModel(evidence, target_fpr=target_fpr).fit(features, clusters)
    model.save(Path(out))
    return model


def calibrate_on_simulation(scenario: str, scale: float, seed: int, out: Path | str) -> RiskModel:
    """Simulate, ingest, and calibrate on the simulation's benign accounts only (truth.jsonl)."""
    from distillguard.ingest import ingest
    from distillguard.simulate import simulate

    with tempfile.TemporaryDirectory() as d:
        traffic = Path(d) / "traffic"
        simulate(scenario, traffic, scale=scale, seed=seed, progress=False)
        db = Path(d) / "reference.duckdb"
        ingest(traffic, db, progress=False)
        benign = []
        with (traffic / "truth.jsonl").open() as f:
            for line in f:
                row = json.loads(line)
                if row.get("kind") == "account" and str(row.get("label", "")).startswith("benign:"):
                    benign.append(row["account_id"])
        return calibrate(db, out, benign_accounts=benign)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", default="seed-2026")
    ap.add_argument("--scale", type=float, default=0.02)
    ap.add_argument("--seed", type=int, default=1001)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    model = calibrate_on_simulation(args.scenario, args.scale, args.seed, args.out)
    print(f"calibrated on {model.n_benign_:,} benign accounts; threshold {model.threshold_:.1f}; wrote {args.out}")


if __name__ == "__main__":
    main()

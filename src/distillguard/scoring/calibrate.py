"""Calibrate the risk model on benign-only traffic: the reference every score is measured against.

A provider calibrates on traffic it trusts (vetted customers, or a period before any campaign):

    distillguard calibrate --db reference.duckdb [--benign-accounts vetted.txt] --out calibration.json

The calibration shipped with the package was built from simulated references whose seeds are used
for nothing else, taking only their benign accounts:

    python -m distillguard.scoring.calibrate --out src/distillguard/data/calibration.json

(references: ``DEFAULT_REFERENCES`` below, several simulated worlds with different persona mixes).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from distillguard.engines import DuckDBEngine
from distillguard.scoring.defaults import EVIDENCE
from distillguard.scoring.risk import DEFAULT_TARGET_FPR, Evidence, RiskModel
from distillguard.store import connect

__all__ = ["REFERENCE_STEP", "calibrate", "calibrate_on_simulation"]

#: Reference moments for calibration: the accounts as of every 12 hours of the reference period, the
#: step ``distillguard detect`` runs at by default (calibrate at the step you detect at, or finer:
#: every step is one more chance for a benign account to cross the threshold).
REFERENCE_STEP = timedelta(hours=12)


def reference_tables(db: Path | str, benign_accounts: Iterable[str] | None = None, *,
                     step: timedelta | None = None) -> tuple[pa.Table, pa.Table]:
    """Features and clusters of the store's accounts (or only ``benign_accounts``), as of its end;
    with ``step``, also as of every ``step`` from the first exchange on, stacked with a ``step``
    column (the moments stepwise detection scores; see :meth:`RiskModel.fit`)."""
    from distillguard.content import build_signals
    from distillguard.detect import DetectSummary, run_stages, step_moments

    con = connect(db, memory_limit="4GB")
    feature_parts, cluster_parts = [], []
    try:
        engine = DuckDBEngine(con)
        build_signals(engine)
        moments: list[datetime | None] = [None]
        if step is not None:
            first, last = con.execute("SELECT min(ts), max(ts) FROM exchanges").fetchall()[0]
            moments = [*step_moments(first, last, step), last]
        for i, moment in enumerate(moments):
            features, clusters = run_stages(engine, moment, DetectSummary(db=str(db), as_of=None))
            if benign_accounts is not None:
                keep = pa.array(sorted(set(benign_accounts)), pa.string())
                features = features.filter(pc.is_in(features.column("account_id"), value_set=keep))
                clusters = clusters.filter(pc.is_in(clusters.column("account_id"), value_set=keep))
            if step is not None:
                features = features.append_column("step", pa.array([i] * features.num_rows, pa.int32()))
                clusters = clusters.append_column("step", pa.array([i] * clusters.num_rows, pa.int32()))
            feature_parts.append(features)
            cluster_parts.append(clusters)
    finally:
        con.close()
    return (pa.concat_tables(feature_parts, promote_options="permissive"),
            pa.concat_tables(cluster_parts, promote_options="permissive"))


def fit_reference(
    references: list[tuple[pa.Table, pa.Table]],
    out: Path | str,
    *,
    evidence: tuple[Evidence, ...] = EVIDENCE,
    target_fpr: float = DEFAULT_TARGET_FPR,
) -> RiskModel:
    """Fit and save a :class:`RiskModel` on one or more benign references (features, clusters)."""
    features = pa.concat_tables([f for f, _ in references], promote_options="permissive")
    clusters = pa.concat_tables([c for _, c in references], promote_options="permissive")
    model = RiskModel(evidence, target_fpr=target_fpr).fit(features, clusters)
    model.save(Path(out))
    return model


def calibrate(
    db: Path | str,
    out: Path | str,
    *,
    benign_accounts: Iterable[str] | None = None,
    evidence: tuple[Evidence, ...] = EVIDENCE,
    target_fpr: float = DEFAULT_TARGET_FPR,
    step: timedelta | None = REFERENCE_STEP,
) -> RiskModel:
    """Fit a :class:`RiskModel` on the store's accounts (or only ``benign_accounts``) and save it.

    ``step``: also take the accounts as of every step of the reference period, so the threshold
    holds ``target_fpr`` for stepwise detection, which scores every account at every step (None:
    the end of the period only)."""
    return fit_reference([reference_tables(db, benign_accounts, step=step)], out, evidence=evidence,
                         target_fpr=target_fpr)


def calibrate_on_simulation(specs: list[tuple[str, float, int]], out: Path | str, *,
                            step: timedelta | None = REFERENCE_STEP) -> RiskModel:
    """Simulate each (scenario, scale, seed), ingest it, and calibrate on the benign accounts of all
    of them (truth.jsonl): several simulated worlds with different persona mixes make a broader
    benign reference than one."""
    from distillguard.ingest import ingest
    from distillguard.simulate import simulate

    references = []
    with tempfile.TemporaryDirectory() as d:
        for i, (scenario, scale, seed) in enumerate(specs):
            traffic = Path(d) / f"traffic{i}"
            simulate(scenario, traffic, scale=scale, seed=seed, progress=False)
            db = Path(d) / f"reference{i}.duckdb"
            ingest(traffic, db, progress=False)
            benign = []
            with (traffic / "truth.jsonl").open() as f:
                for line in f:
                    row = json.loads(line)
                    if row.get("kind") == "account" and str(row.get("label", "")).startswith("benign:"):
                        benign.append(row["account_id"])
            references.append(reference_tables(db, benign, step=step))
    return fit_reference(references, out)


#: The references the shipped calibration is built from; these seeds are used for nothing else.
DEFAULT_REFERENCES = "seed-2026:0.02:1001,three-labs:0.05:1002,adaptive:0.1:1003"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--references", default=DEFAULT_REFERENCES,
                    help="comma-separated scenario:scale:seed simulations whose benign accounts form the reference")
    ap.add_argument("--step-hours", type=float, default=REFERENCE_STEP.total_seconds() / 3600,
                    help="reference moments every STEP hours (0: the end of each reference only)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    specs = [(s.split(":")[0], float(s.split(":")[1]), int(s.split(":")[2])) for s in args.references.split(",")]
    step = timedelta(hours=args.step_hours) if args.step_hours > 0 else None
    model = calibrate_on_simulation(specs, args.out, step=step)
    print(f"calibrated on {model.n_benign_:,} benign accounts; threshold {model.threshold_:.1f}; wrote {args.out}")


if __name__ == "__main__":
    main()

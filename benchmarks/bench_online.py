"""In-process online containment speed: decisions/s on one core and p50/p99 latency of score_one + learn_one.

    .venv/bin/python benchmarks/bench_online.py [--scenario smoke] [--scale S] [--work DIR]

Simulates a scenario, ingests it, computes content signals, then streams the exchanges (ts order, in
memory, with their signals) through one ``OnlineScorer`` with the shipped calibration and policy,
after loading a batch view, timing each score_one + learn_one pair. Also times
``content.compute_signals`` on a 1-row batch (the per-request cost of content signals on the hot path).
Not a test: numbers go to docs/online.md.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", default="smoke")
    ap.add_argument("--scale", type=float, default=None)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--signals-sample", type=int, default=300)
    args = ap.parse_args()

    from distillguard.content import build_signals, compute_signals
    from distillguard.detect import DetectSummary, run_stages
    from distillguard.engines import DuckDBEngine
    from distillguard.ingest import ingest
    from distillguard.online import BatchView, OnlineScorer, Policy
    from distillguard.scoring.defaults import default_model
    from distillguard.simulate import simulate
    from distillguard.store import connect

    work = args.work or Path(tempfile.mkdtemp(prefix="bench_online_"))
    sim, db = work / "sim", work / "store.duckdb"
    if not db.exists():
        simulate(args.scenario, sim, scale=args.scale, progress=False)
        ingest(sim, db, progress=False)
    con = connect(db, memory_limit="4GB")
    engine = DuckDBEngine(con)
    build_signals(engine)
    model, policy = default_model(), Policy.default()
    s = OnlineScorer(model, policy)
    for m, c in con.execute("SELECT model, max(max_tokens) FROM exchanges GROUP BY model").fetchall():
        if c is not None:
            s.features.context.ceiling[m] = c
    for r in con.sql("SELECT * FROM accounts").to_arrow_table().to_pylist():
        s.learn_account(r)
    features, clusters = run_stages(engine, None, DetectSummary(db=str(db), as_of=None))
    s.load_batch(BatchView.from_scored(model, features, clusters))
    rows = con.sql(
        "SELECT epoch_us(e.ts) AS ts, e.request_id, e.account_id, e.client_ip, e.asn, e.user_agent, e.model, "
        "e.conversation_id, e.turn_index, e.n_tools, e.thinking, e.max_tokens, e.input_tokens, e.output_tokens, "
        "s.capability, s.cot_score, s.template_fp, s.preamble_fp FROM exchanges e "
        "LEFT JOIN signals s USING (request_id) ORDER BY e.ts, e.request_id").to_arrow_table().to_pylist()
    stream = []
    for r in rows:
        sig = {k: r.pop(k) for k in ("capability", "cot_score", "template_fp", "preamble_fp")}
        r["signals"] = sig
        stream.append((r, sig))
    lat = np.empty(len(stream))
    clock = time.perf_counter_ns
    t_all = time.perf_counter()
    for i, (r, sig) in enumerate(stream):
        t0 = clock()
        d = s.score_one(r)
        s.learn_one(r, sig, d)
        lat[i] = clock() - t0
    wall = time.perf_counter() - t_all
    # content signals on one request at a time
    ex = con.sql(f"SELECT request_id, account_id, ts, system, prompt FROM exchanges USING SAMPLE "
                 f"{args.signals_sample} ROWS").to_arrow_table()
    sig_lat = []
    for i in range(ex.num_rows):
        b = pa.RecordBatch.from_pylist([ex.slice(i, 1).to_pylist()[0]], schema=ex.schema)
        t0 = clock()
        compute_signals(b)
        sig_lat.append(clock() - t0)
    con.close()
    out = {
        "scenario": args.scenario, "scale": args.scale, "exchanges": len(stream),
        "accounts": len(s.features.account_ids()),
        "decisions_per_s": round(len(stream) / wall, 1),
        "p50_us": round(float(np.percentile(lat, 50)) / 1e3, 1),
        "p99_us": round(float(np.percentile(lat, 99)) / 1e3, 1),
        "p999_us": round(float(np.percentile(lat, 99.9)) / 1e3, 1),
        "compute_signals_1row_p50_ms": round(float(np.percentile(sig_lat, 50)) / 1e6, 2),
        "compute_signals_1row_p99_ms": round(float(np.percentile(sig_lat, 99)) / 1e6, 2),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

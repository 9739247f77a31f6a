"""In-process online containment speed: decisions/s on one core and p50/p99 latency of score_one + learn_one.

    .venv/bin/python benchmarks/bench_online.py [--scenario smoke] [--scale S] [--work DIR]

Simulates a scenario, ingests it, computes content signals, then streams the exchanges (ts order, in
memory, with their signals) through one ``OnlineScorer`` with the shipped calibration and policy,
after loading a batch view, timing each score_one + learn_one pair. Also times
``content.compute_signals`` on a 1-row batch (the per-request cost of content signals on the hot path).
Not a test: numbers go to docs/online.md. ``benchmarks/bench_online_redis.py`` reuses :func:`prepare`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa


def prepare(scenario: str, scale: float | None, work: Path | None) -> dict[str, Any]:
    """Simulate + ingest (once per work dir), signals, one batch run; return what a scorer needs."""
    from distillguard.content import build_signals
    from distillguard.detect import DetectSummary, run_stages
    from distillguard.engines import DuckDBEngine
    from distillguard.ingest import ingest
    from distillguard.online import BatchView
    from distillguard.scoring.defaults import default_model
    from distillguard.simulate import simulate
    from distillguard.store import connect

    work = work or Path(tempfile.mkdtemp(prefix="bench_online_"))
    sim, db = work / "sim", work / "store.duckdb"
    if not db.exists():
        simulate(scenario, sim, scale=scale, progress=False)
        ingest(sim, db, progress=False)
    con = connect(db, memory_limit="4GB")
    engine = DuckDBEngine(con)
    build_signals(engine)
    model = default_model()
    ceilings = {m: c for m, c in con.execute("SELECT model, max(max_tokens) FROM exchanges GROUP BY model").fetchall()
                if c is not None}
    accounts = con.sql("SELECT * FROM accounts").to_arrow_table().to_pylist()
    features, clusters = run_stages(engine, None, DetectSummary(db=str(db), as_of=None))
    view = BatchView.from_scored(model, features, clusters)
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
    return {"con": con, "model": model, "ceilings": ceilings, "accounts": accounts, "view": view, "stream": stream}


def setup(scorer: Any, data: dict[str, Any]) -> None:
    """Seed ceilings, learn every accounts row, load the batch view (what a gateway does at start)."""
    scorer.features.context.ceiling.update(data["ceilings"])
    for r in data["accounts"]:
        scorer.learn_account(r)
    scorer.load_batch(data["view"])


def run(scorer: Any, stream: list) -> tuple[float, np.ndarray, float]:
    """Wall seconds, per-decision latency (ns) of score_one + learn_one over the stream, and the CPU
    seconds this process spent (on a shared machine, CPU time is the fair one-core figure)."""
    lat = np.empty(len(stream))
    clock = time.perf_counter_ns
    c_all = time.process_time()
    t_all = time.perf_counter()
    for i, (r, sig) in enumerate(stream):
        t0 = clock()
        d = scorer.score_one(r)
        scorer.learn_one(r, sig, d)
        lat[i] = clock() - t0
    return time.perf_counter() - t_all, lat, time.process_time() - c_all


def run_batched(scorer: Any, stream: list, k: int) -> tuple[float, np.ndarray, float]:
    """As :func:`run`, but ``k`` requests at a time through ``score_many``/``learn_many`` (a gateway
    with k requests in flight: one Redis round trip per batch). Each request's latency is its whole
    batch's (it waits for the batch)."""
    lat = np.empty(len(stream))
    clock = time.perf_counter_ns
    c_all = time.process_time()
    t_all = time.perf_counter()
    for i in range(0, len(stream), k):
        chunk = stream[i:i + k]
        t0 = clock()
        ds = scorer.score_many([r for r, _ in chunk])
        scorer.learn_many([(r, sig, d) for (r, sig), d in zip(chunk, ds, strict=True)])
        lat[i:i + len(chunk)] = clock() - t0
    return time.perf_counter() - t_all, lat, time.process_time() - c_all


def summary(wall: float, lat: np.ndarray, cpu: float | None = None) -> dict[str, float]:
    return {"decisions_per_s": round(len(lat) / wall, 1),
            "decisions_per_cpu_s": round(len(lat) / cpu, 1) if cpu else None,
            "p50_us": round(float(np.percentile(lat, 50)) / 1e3, 1),
            "p99_us": round(float(np.percentile(lat, 99)) / 1e3, 1),
            "p999_us": round(float(np.percentile(lat, 99.9)) / 1e3, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", default="smoke")
    ap.add_argument("--scale", type=float, default=None)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--signals-sample", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=3, help="best of N passes (fresh scorer each; best by CPU "
                    "seconds, the fair one-core figure on a shared machine)")
    ap.add_argument("--risk-every", type=int, default=1, help="OnlineScorer(risk_every=...): 1 = exact")
    args = ap.parse_args()

    from distillguard.content import compute_signals
    from distillguard.online import OnlineScorer, Policy

    data = prepare(args.scenario, args.scale, args.work)
    best = None
    for _ in range(max(1, args.repeat)):
        s = OnlineScorer(data["model"], Policy.default(), risk_every=args.risk_every)
        setup(s, data)
        wall, lat, cpu = run(s, data["stream"])
        if best is None or cpu < best[3]:
            best = (wall, lat, s, cpu)
    wall, lat, s, cpu = best
    # content signals on one request at a time
    con = data["con"]
    clock = time.perf_counter_ns
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
        "command": " ".join([".venv/bin/python", *sys.argv]),
        "scenario": args.scenario, "scale": args.scale, "exchanges": len(lat), "risk_every": args.risk_every,
        "accounts": len(s.features.account_ids()),
        **summary(wall, lat, cpu),
        "load_average_1m": round(__import__("os").getloadavg()[0], 2),
        "compute_signals_1row_p50_ms": round(float(np.percentile(sig_lat, 50)) / 1e6, 2),
        "compute_signals_1row_p99_ms": round(float(np.percentile(sig_lat, 99)) / 1e6, 2),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

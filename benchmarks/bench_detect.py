"""Batch detection speed: per-stage seconds, exchanges/s and peak RSS, against a plain DuckDB scan.

Simulates ``seed-2026`` at SCALE (1.0 is the disclosed campaign at full size, ~35M exchanges; 0.1 is
~3.5M), ingests it, then runs one detection pass over the whole log (no as-of steps) in a fresh
process and reports each stage's time, the total, and the ratio to a plain scan of the same
exchanges table (the floor: reading every prompt once).

    .venv/bin/python benchmarks/bench_detect.py --scale 0.1 --out bench-out/detect
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _cpu_s() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def child(db: Path, out: Path, sample: int | None, workers: int) -> None:
    from distillguard.detect import detect
    from distillguard.store import connect

    con = connect(db, memory_limit="4GB")
    t0 = time.perf_counter()
    n, _, _ = con.execute(
        "SELECT count(*), sum(length(prompt)), count(DISTINCT account_id) FROM exchanges").fetchall()[0]
    scan = time.perf_counter() - t0
    con.close()
    t0 = time.perf_counter()
    c0 = _cpu_s()
    summary = detect(db, out, progress=False, signal_sample=sample, signal_workers=workers)
    total = time.perf_counter() - t0
    # CPU seconds (this process and its helpers) and the load average: on a shared machine wall time
    # alone says little; compare runs by CPU time and under the same load.
    print(json.dumps({"exchanges": n, "plain_scan_s": round(scan, 2), "detect_s": round(total, 1),
                      "cpu_s": round(_cpu_s() - c0, 1), "loadavg_1m": os.getloadavg()[0],
                      "ratio_to_scan": round(total / scan, 1), "exchanges_per_s": round(n / total),
                      "stage_seconds": summary.stage_seconds, "flagged": summary.accounts_flagged,
                      "peak_rss_mib": round(peak_rss_mib())}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--sample", type=int, default=None,
                    help="content signals on at most N exchanges per account per day (default: all)")
    ap.add_argument("--workers", type=int, default=1, help="processes for the content stage")
    ap.add_argument("--out", type=Path, default=Path("bench-out/detect"))
    ap.add_argument("--child", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child[0], args.child[1], args.sample, args.workers)
    from distillguard.ingest import ingest
    from distillguard.simulate import simulate

    traffic, db = args.out / "traffic", args.out / "store.duckdb"
    if not db.exists():
        t0 = time.perf_counter()
        simulate("seed-2026", traffic, scale=args.scale, seed=args.seed, progress=False)
        ingest(traffic, db, progress=False)
        print(f"simulated and ingested in {time.perf_counter() - t0:.0f}s")
    cmd = [sys.executable, __file__, "--child", str(db), str(args.out / "run")]
    if args.sample:
        cmd += ["--sample", str(args.sample)]
    cmd += ["--workers", str(args.workers)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode:
        raise SystemExit(res.stderr[-3000:])
    print(res.stdout.strip().splitlines()[-1])
    print("command: .venv/bin/python benchmarks/bench_detect.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()

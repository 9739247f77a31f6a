"""Ingest benchmark: rows/s and peak RSS from Parquet and from JSON Lines.

Generates N exchanges (default 5M, ~1 KB each, with realistic field mix and high-entropy text so
compression does not flatter the reader) plus their accounts, then runs ``distillguard ingest``
in a fresh subprocess per format and reads the child's peak RSS from the kernel.

    .venv/bin/python benchmarks/bench_ingest.py --rows 5000000 --out bench-out/ingest
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb

GENERATE = """
SELECT
  'req_' || md5(i::VARCHAR || 'r') AS request_id,
  TIMESTAMPTZ '2026-04-22 00:00:00+00' + to_microseconds(i * {step_us}) AS ts,
  'acct_' || (hash(i) % {accounts})::VARCHAR AS account_id,
  'key_' || (hash(i) % {accounts})::VARCHAR AS api_key_id,
  (hash(i * 7) % 223 + 1)::VARCHAR || '.' || (hash(i * 11) % 255)::VARCHAR || '.'
    || (hash(i * 13) % 255)::VARCHAR || '.' || (hash(i * 17) % 255)::VARCHAR AS client_ip,
  (hash(i * 19) % 65000)::BIGINT AS asn,
  'sdk-python/1.' || (hash(i) % 40)::VARCHAR AS user_agent,
  ['model-large-2026-03', 'model-small-2026-01', 'model-large-2026-05'][1 + (hash(i) % 3)::BIGINT] AS model,
  CASE WHEN i % 3 = 0 THEN 'You are a helpful assistant. ' || md5(i::VARCHAR || 's') END AS system,
  'Please ' || md5(i::VARCHAR) || ' ' || md5(i::VARCHAR || 'a') || ' explain ' || md5(i::VARCHAR || 'b')
    || repeat(' and ' || md5(i::VARCHAR || 'c') || ' with ' || md5(i::VARCHAR || 'd'), 8) AS prompt,
  'conv_' || (i // 4)::VARCHAR AS conversation_id,
  (i % 4)::BIGINT AS turn_index,
  (hash(i) % 5)::BIGINT AS n_tools,
  (i % 2 = 0) AS thinking,
  4096::BIGINT AS max_tokens,
  (hash(i) % 3000)::BIGINT AS input_tokens,
  (hash(i * 3) % 4000)::BIGINT AS output_tokens,
  'stop' AS finish_reason,
  (hash(i) % 9000)::BIGINT AS latency_ms,
  200::BIGINT AS status
FROM range({rows}) t(i)
"""


def generate(out: Path, rows: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    accounts = max(rows // 500, 10)
    step_us = max(int(45 * 86400 * 1e6 // rows), 1)
    sql = GENERATE.format(rows=rows, accounts=accounts, step_us=step_us)
    acc = (
        f"SELECT 'acct_' || i::VARCHAR AS account_id, TIMESTAMPTZ '2026-01-01 00:00:00+00' AS created_at, "
        f"'free' AS tier, 'example.org' AS email_domain FROM range({accounts}) t(i)"
    )
    pq_dir = out / "parquet"
    js_dir = out / "jsonl"
    for d in (pq_dir, js_dir):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir()
    con.execute(f"COPY ({acc}) TO '{pq_dir}/accounts.parquet' (FORMAT parquet)")
    con.execute(f"COPY ({sql}) TO '{pq_dir}/exchanges.parquet' (FORMAT parquet, ROW_GROUP_SIZE 122880)")
    iso = "strftime(ts, '%Y-%m-%dT%H:%M:%S.%fZ') AS ts"
    con.execute(
        f"COPY (SELECT * REPLACE (strftime(created_at, '%Y-%m-%dT%H:%M:%SZ') AS created_at) FROM ({acc})) "
        f"TO '{js_dir}/accounts.jsonl' (FORMAT json)"
    )
    con.execute(
        f"COPY (SELECT * REPLACE ({iso}) FROM read_parquet('{pq_dir}/exchanges.parquet')) "
        f"TO '{js_dir}/exchanges.jsonl' (FORMAT json)"
    )


def peak_rss_mib() -> float:
    """This process's peak RSS. VmHWM, not ru_maxrss: after fork+exec, ru_maxrss still carries the
    parent's peak (here the data generator's), which would overstate the ingest's own."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(src: Path, db: Path) -> None:
    """Run one ingest in this (fresh) process and print its figures, peak RSS included."""
    from distillguard.ingest.run import ingest

    t0 = time.perf_counter()
    summary = ingest(src, db, progress=False)
    wall = time.perf_counter() - t0
    ex = sum(s.rows_read for s in summary.sources if s.table == "exchanges")
    peak_mib = peak_rss_mib()
    print(json.dumps({"exchanges": ex, "seconds": round(wall, 1), "exchanges_per_s": round(ex / wall),
                      "peak_rss_mib": round(peak_mib), "stored": summary.stored,
                      "quarantined": summary.quarantined}))


def run_ingest(src: Path, db: Path) -> dict:
    for p in (db, Path(str(db) + ".wal")):
        p.unlink(missing_ok=True)
    cmd = [sys.executable, __file__, "--child", str(src), str(db)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise SystemExit(f"ingest failed: {res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=5_000_000)
    ap.add_argument("--out", type=Path, default=Path("bench-out/ingest"))
    ap.add_argument("--keep", action="store_true", help="keep generated data")
    ap.add_argument("--formats", default="parquet,jsonl")
    ap.add_argument("--child", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(*args.child)
    t0 = time.perf_counter()
    generate(args.out, args.rows)
    print(f"generated {args.rows:,} exchanges in {time.perf_counter() - t0:.0f}s")
    results = {}
    for fmt in args.formats.split(","):
        results[fmt] = run_ingest(args.out / fmt, args.out / f"{fmt}.duckdb")
        print(fmt, json.dumps(results[fmt]))
    print("command: .venv/bin/python benchmarks/bench_ingest.py " + " ".join(sys.argv[1:]))
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    if not args.keep:
        for fmt in ("jsonl", "parquet"):
            shutil.rmtree(args.out / fmt, ignore_errors=True)


if __name__ == "__main__":
    main()

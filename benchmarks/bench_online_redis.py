"""Redis-backed online containment speed: decisions/s and p50/p99 of score_one + learn_one with
``RedisState`` (one Lua round trip per decision), plus Redis memory per account.

    .venv/bin/python benchmarks/bench_online_redis.py [--scenario smoke] [--scale S] [--work DIR] [--url redis://...]

Without ``--url`` it starts a throwaway ``redis-server`` on a free loopback port (no persistence) and
stops it at the end. Same stream and setup as ``bench_online.py``; the in-process figure is measured
in the same run for comparison. Not a test: numbers go to docs/online.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_online import prepare, run, run_batched, setup, summary  # noqa: E402


def _start_redis() -> tuple[subprocess.Popen, str]:
    exe = shutil.which("redis-server")
    if exe is None:
        raise SystemExit("redis-server not on PATH (apt-get install redis-server), or pass --url")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    d = tempfile.mkdtemp(prefix="bench_redis_")
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", d], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    import redis

    c = redis.Redis(port=port)
    for _ in range(200):
        try:
            c.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    return proc, f"redis://127.0.0.1:{port}/0"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", default="smoke")
    ap.add_argument("--scale", type=float, default=None)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--url", default=None, help="an existing Redis (default: start a throwaway redis-server)")
    ap.add_argument("--checkpoint-every", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32, help="requests in flight for the score_many run")
    args = ap.parse_args()

    import redis

    from distillguard.online import OnlineScorer, Policy, RedisState

    data = prepare(args.scenario, args.scale, args.work)
    proc, url = (None, args.url) if args.url else _start_redis()
    try:
        client = redis.Redis.from_url(url)
        prefix = f"bench{int(time.time())}"
        before = client.info("memory")["used_memory"]
        s = OnlineScorer(data["model"], Policy.default(),
                         state=RedisState(client, prefix=prefix, checkpoint_every=args.checkpoint_every))
        setup(s, data)
        after_setup = client.info("memory")["used_memory"]
        client.config_resetstat()
        wall, lat, cpu = run(s, data["stream"])
        s.flush()
        server_us = client.info("commandstats").get("cmdstat_evalsha", {}).get("usec_per_call")
        used = client.info("memory")["used_memory"]
        n_acc = len(data["accounts"])
        active = len({r["account_id"] for r, _ in data["stream"]})
        sb = OnlineScorer(data["model"], Policy.default(),
                          state=RedisState(client, prefix=prefix + "b", checkpoint_every=args.checkpoint_every))
        setup(sb, data)
        bwall, blat, bcpu = run_batched(sb, data["stream"], args.batch)
        t0 = time.perf_counter()
        for _ in range(2000):
            client.ping()
        ping_us = (time.perf_counter() - t0) / 2000 * 1e6
        mem = OnlineScorer(data["model"], Policy.default())
        setup(mem, data)
        mwall, mlat, mcpu = run(mem, data["stream"])
        ver = client.info("server")["redis_version"]
        for k in client.scan_iter(f"{prefix}*", count=1000):
            client.delete(k)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
    out = {
        "command": " ".join([".venv/bin/python", *sys.argv]),
        "scenario": args.scenario, "scale": args.scale, "exchanges": len(lat), "redis_version": ver,
        "redis_one_at_a_time": {**summary(wall, lat, cpu), "server_us_per_call": server_us},
        f"redis_score_many_{args.batch}": summary(bwall, blat, bcpu),
        "redis_ping_round_trip_us": round(ping_us, 1),
        "in_process_same_run": summary(mwall, mlat, mcpu),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "redis_bytes_per_active_account": round((used - after_setup) / max(active, 1)),
        "redis_bytes_per_account_row_and_batch": round((after_setup - before) / max(n_acc, 1)),
        "accounts": n_acc, "active_accounts": active,
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

"""Simulator throughput and memory: exchanges/s and peak RSS for a scenario at a scale.

    .venv/bin/python benchmarks/bench_simulate.py [SCALE] [--scenario seed-2026] [--out bench-out/simulate]

Target (issue 3): seed-2026 at scale 1.0 (~35M exchanges) in <= 15 min (>= 35k exchanges/s) on the
2-core development machine, RSS <= 4 GiB.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import threading
import time
from pathlib import Path

import psutil

from distillguard.simulate import simulate


def _watch_rss(stop: threading.Event, peak: list[int]) -> None:
    proc = psutil.Process(os.getpid())
    while not stop.is_set():
        peak[0] = max(peak[0], proc.memory_info().rss)
        stop.wait(0.05)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scale", nargs="?", type=float, default=0.1)
    ap.add_argument("--scenario", default="seed-2026")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("bench-out/simulate"))
    ap.add_argument("--keep", action="store_true", help="keep the output files")
    args = ap.parse_args()
    stop, peak = threading.Event(), [0]
    watcher = threading.Thread(target=_watch_rss, args=(stop, peak), daemon=True)
    watcher.start()
    t = time.perf_counter()
    s = simulate(args.scenario, args.out, scale=args.scale, seed=args.seed, progress=False)
    elapsed = time.perf_counter() - t
    stop.set()
    watcher.join()
    peak_rss = max(peak[0], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    size = sum(p.stat().st_size for p in args.out.iterdir())
    cmd = " ".join([Path(sys.executable).name, *sys.argv])
    print(f"command:       {cmd}")
    print(f"scenario:      {args.scenario} scale {args.scale:g} seed {args.seed}  (cpus: {os.cpu_count()})")
    print(f"accounts:      {s.n_accounts:,}")
    print(f"exchanges:     {s.n_exchanges:,}")
    print(f"elapsed:       {elapsed:.1f} s")
    print(f"throughput:    {s.n_exchanges / elapsed:,.0f} exchanges/s")
    print(f"peak RSS:      {peak_rss / 2**20:,.0f} MiB")
    print(f"output size:   {size / 2**20:,.0f} MiB")
    if not args.keep:
        shutil.rmtree(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Watermark detector speed on one thread: tokens/s at context widths 1, 2 and 4, and seed derivation.

    .venv/bin/python benchmarks/bench_watermark.py --out bench-out/watermark.json

Texts (``--tokens`` ids each): ``random`` (uniform over a GPT-2-sized vocabulary: every context is
new, the worst case for seed derivation), ``markov`` (a sparse random Markov chain over the first
2,048 ids, 20 successors per token: teacher-like, contexts recur) and ``repeated`` (one 200-token
phrase tiled: almost every pair is a repeat). Each (text, width) runs ``detect_ids`` on the whole text as one pooled
test; the table reports the best and the median of the runs (the machine may be shared, so the best
is the least disturbed). Seed derivation is ``context_seeds`` on distinct random contexts, next to
the earlier scheme (one HMAC-SHA256 per context) on a smaller sample for comparison. Thread pools
are pinned to one thread before numpy loads; every case stops after ``--case-budget`` seconds.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy loads: the target is one core

import argparse  # noqa: E402
import hmac  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shlex  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from distillguard.provenance import watermark  # noqa: E402
from distillguard.provenance.watermark import (  # noqa: E402
    KeyRing,
    WatermarkKey,
    WatermarkParams,
    context_seeds,
    detect_ids,
)

KEY = WatermarkKey("bench", bytes(range(32)))


def hmac_seeds(key: WatermarkKey, contexts: np.ndarray) -> np.ndarray:
    """The earlier seed derivation (one HMAC-SHA256 per context row), kept here only as the baseline."""
    ctx = np.ascontiguousarray(np.atleast_2d(contexts), dtype="<u4")
    step, buf = 4 * ctx.shape[1], ctx.tobytes()
    out = b"".join([hmac.digest(key.secret, b"distillguard/kgw/v1" + buf[i:i + step], "sha256")[:8]
                    for i in range(0, len(buf), step)])
    return np.frombuffer(out, dtype="<u8")


def texts(n: int, vocab: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    small = min(vocab, 2048)
    succ = rng.integers(0, small, size=(small, 20))
    pick = rng.integers(0, 20, size=n)
    markov = np.empty(n, dtype=np.int64)
    markov[0] = rng.integers(small)
    for t in range(1, n):  # ~0.1 s for 300k: fine in a benchmark
        markov[t] = succ[markov[t - 1], pick[t]]
    phrase = rng.integers(0, vocab, size=200)
    return {"random": rng.integers(0, vocab, size=n), "markov": markov,
            "repeated": np.tile(phrase, n // 200 + 1)[:n]}


def timed(fn: Callable[[], object], repeats: int, budget: float) -> list[float]:
    """Wall seconds of up to ``repeats`` calls after one warm-up, stopping once ``budget`` is spent."""
    fn()
    out: list[float] = []
    start = time.perf_counter()
    while len(out) < repeats and (not out or time.perf_counter() - start < budget):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=300_000)
    ap.add_argument("--vocab", type=int, default=50_257)
    ap.add_argument("--widths", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--case-budget", type=float, default=2.0, help="seconds of timed runs per case (after warm-up)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    a = ap.parse_args()
    t_all = time.perf_counter()
    print(f"seed scheme {getattr(watermark, '_DOMAIN', b'?').decode()}, {a.tokens:,} tokens per text, one thread")
    data = texts(a.tokens, a.vocab, a.seed)
    rows: list[dict[str, object]] = []
    print(f"{'what':<28}{'width':>6}{'best /s':>14}{'median /s':>14}{'runs':>6}{'pairs':>10}")
    for name, ids in data.items():
        for w in a.widths:
            ring = KeyRing([KEY], params=WatermarkParams(context_width=w))
            det = detect_ids(ids, ring)
            secs = timed(lambda ids=ids, ring=ring: detect_ids(ids, ring), a.repeats, a.case_budget)
            r = {"case": f"detect {name}", "width": w, "tokens": len(ids), "pairs_scored": det.tokens_scored,
                 "best_per_s": len(ids) / min(secs), "median_per_s": len(ids) / statistics.median(secs),
                 "runs": len(secs), "seconds": secs}
            rows.append(r)
            print(f"{r['case']:<28}{w:>6}{r['best_per_s']:>14,.0f}{r['median_per_s']:>14,.0f}{len(secs):>6}"
                  f"{det.tokens_scored:>10,}", flush=True)
    rng = np.random.default_rng(a.seed + 1)
    for w in a.widths:
        ctx = rng.integers(0, a.vocab, size=(a.tokens, w))
        secs = timed(lambda ctx=ctx: context_seeds(KEY, ctx), a.repeats, a.case_budget)
        rows.append({"case": "seeds context_seeds", "width": w, "contexts": len(ctx), "runs": len(secs),
                     "best_per_s": len(ctx) / min(secs), "median_per_s": len(ctx) / statistics.median(secs),
                     "seconds": secs})
        small = ctx[:20_000]
        hsecs = timed(lambda small=small: hmac_seeds(KEY, small), 3, a.case_budget)
        rows.append({"case": "seeds HMAC per context (old)", "width": w, "contexts": len(small), "runs": len(hsecs),
                     "best_per_s": len(small) / min(hsecs), "median_per_s": len(small) / statistics.median(hsecs),
                     "seconds": hsecs})
        for r in rows[-2:]:
            print(f"{r['case']:<28}{w:>6}{r['best_per_s']:>14,.0f}{r['median_per_s']:>14,.0f}{r['runs']:>6}"
                  f"{'':>10}", flush=True)
    total = time.perf_counter() - t_all
    print(f"total {total:.1f} s")
    if a.out is not None:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        env = [f"PYTHONPATH={os.environ['PYTHONPATH']}"] if os.environ.get("PYTHONPATH") else []
        meta = {"command": shlex.join([*env, ".venv/bin/python", *sys.argv]), "python": platform.python_version(),
                "seed_scheme": getattr(watermark, "_DOMAIN", b"?").decode(), "module": watermark.__file__,
                "numpy": np.__version__, "machine": platform.machine(), "cpus": os.cpu_count(),
                "load_avg": os.getloadavg(), "threads": 1, "total_s": total,
                "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()}}
        a.out.write_text(json.dumps({"meta": meta, "results": rows}, indent=2))
        print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

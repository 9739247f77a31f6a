"""Throughput of the content stage: ``compute_signals`` on generated ~1 KB prompts, one core (single thread).

    .venv/bin/python benchmarks/bench_content.py [--rows 65536] [--batch 32768]

Prints exchanges/s (model training, done once per process, is excluded and printed separately).
"""

from __future__ import annotations

import argparse
import random
import time

import pyarrow as pa

from distillguard.content import compute_signals
from distillguard.content._model import capability_model, cot_model


def make_batch(n: int, seed: int = 0) -> pa.RecordBatch:
    rng = random.Random(seed)
    vocab = [f"{w}{i}" if i % 7 == 0 else w for i, w in enumerate(
        ["the", "of", "and", "to", "in", "is", "for", "that", "with", "on", "as", "function", "data", "model", "plan", "step", "answer", "query", "value", "user", "system", "list", "table", "result", "error", "time", "reason", "task", "code", "file", "graph", "price", "rate", "test", "build", "agent", "tool", "call"] * 40)]
    pre = ["You are an expert software engineer. Give complete and transparent reasoning.\n\n", "", "",
           "Act as a careful planner. ", ""]
    post = ["\n\nArticulate your internal reasoning step by step.", "", "", "\n\nReturn JSON only."]
    prompts = []
    for _ in range(n):
        body = " ".join(rng.choice(vocab) for _ in range(150))  # ~1 KB
        prompts.append(rng.choice(pre) + body + rng.choice(post))
    return pa.RecordBatch.from_pydict({
        "request_id": [f"r{i}" for i in range(n)], "account_id": [f"a{i % 1000}" for i in range(n)],
        "ts": pa.array(range(n), pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        "system": pa.array([None if i % 3 else "You are a helpful assistant." for i in range(n)], pa.string()),
        "prompt": pa.array(prompts, pa.string()),
    })


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=65_536)
    ap.add_argument("--batch", type=int, default=32_768)
    a = ap.parse_args()
    t0 = time.perf_counter()
    capability_model()
    cot_model()
    print(f"model training (once per process): {time.perf_counter() - t0:.2f} s")
    b = make_batch(a.rows)
    mean_len = sum(len(p) for p in b.column("prompt").to_pylist()) / a.rows
    compute_signals(b.slice(0, 1000))  # warm caches
    b2 = make_batch(a.rows, seed=1)  # fresh texts: token caches partly cold, as in production
    t0, c0 = time.perf_counter(), time.process_time()
    for off in range(0, a.rows, a.batch):
        compute_signals(b2.slice(off, a.batch))
    dt, ct = time.perf_counter() - t0, time.process_time() - c0
    # CPU time is the fairer number on a shared machine (wall time includes other processes' share).
    print(f"compute_signals: {a.rows} exchanges, mean prompt {mean_len:.0f} chars, batch {a.batch}: "
          f"wall {dt:.2f} s = {a.rows / dt:,.0f} exchanges/s; CPU {ct:.2f} s = {a.rows / ct:,.0f} exchanges/s/core")


if __name__ == "__main__":
    main()

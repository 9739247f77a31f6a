"""Decision-service latency under a fixed request rate: nginx ``auth_request`` mode, uvicorn, 1 worker.

    .venv/bin/python benchmarks/bench_serve.py [--rate 2000] [--duration 20] [--accounts 2000] [--preload 100000]

Preloads a realistic state in process (synthetic sign-ups, ``--preload`` exchanges learned in time order
over the previous day, a batch view with flagged clusters), snapshots it, then starts
``distillguard serve`` (``serve_command``; restores the snapshot) in its own process on loopback, and
drives ``GET /v1/auth/nginx`` with an **open-loop** generator: request *i* is due at ``t0 + i/rate``,
and its latency is measured from that due time (so a stalled server cannot hide its queue:
no coordinated omission), over ``--connections`` keep-alive HTTP/1.1 connections (raw asyncio). It
stops by itself after ``--duration`` seconds (plus 1 s warm-up, not counted). Not a test: the numbers
go to docs/serve.md. Target (issue 5): p99 <= 5 ms at 2,000 requests/s.

``--no-http`` starts no server: it calls the edge answer (exchange from headers, decide, learn, render)
in this process on the same state, one request at a time, and prints its CPU per request with the
scorer inline and on its thread (what the service costs besides HTTP and the network).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def preload(work: Path, n_accounts: int, n_exchanges: int, seed: int) -> tuple[Path, Path, list[str]]:
    """State file and key map of ``n_accounts`` accounts that sent ``n_exchanges`` requests in the last day."""
    from distillguard.online import OnlineScorer, Policy
    from distillguard.online.batchview import load_batch
    from distillguard.scoring.defaults import default_model
    from distillguard.serve import hash_key

    rng = random.Random(seed)
    model = default_model()
    s = OnlineScorer(model, Policy.default())
    now = time.time_ns() // 1000
    day = 86_400 * 1_000_000
    accts = [f"acct_{i:05d}" for i in range(n_accounts)]
    for i, a in enumerate(accts):
        s.learn_account({"account_id": a, "created_at": "2026-01-01T00:00:00Z", "payment_fingerprint": f"card-{i}",
                         "signup_ip": f"10.{i % 250}.{i // 250}.1"})
    weights = [1.0 / (k + 1) for k in range(n_accounts)]  # a few heavy accounts, a long tail
    picks = rng.choices(accts, weights=weights, k=n_exchanges)
    for j, a in enumerate(picks):
        ts = now - day + j * day // max(1, n_exchanges)
        ex = {"request_id": f"pre{j}", "ts": ts, "account_id": a, "model": rng.choice(["m-large", "m-small"]),
              "client_ip": f"192.0.{hash(a) % 200}.{rng.randint(1, 250)}", "user_agent": "openai-python/1.40",
              "max_tokens": rng.choice([256, 1024, 4096]), "thinking": rng.random() < 0.2, "n_tools": 0,
              "turn_index": rng.randint(0, 3), "conversation_id": f"c{j // 4}"}
        s.learn_one(ex, {"capability": rng.choice(["chat", "coding", "agentic"]), "cot_score": rng.random() * 0.3,
                         "template_fp": rng.randint(0, 10**6), "preamble_fp": None})
    det = [{"account_id": a, "score": 0.95 if i < 30 else 0.01, "flagged": i < 30,
            "cluster_id": f"c{i // 10}" if i < 30 else None} for i, a in enumerate(accts[-300:])]
    import pyarrow as pa

    s.load_batch(load_batch(model, pa.Table.from_pylist(det)))
    snap = s.snapshot(work / "state.pkl")
    keymap = work / "keys.yaml"
    keys = [f"sk-{a}" for a in accts]
    keymap.write_text("keys:\n" + "".join(f"  - {{sha256: {hash_key(k)}, account_id: {a}}}\n"
                                          for k, a in zip(keys, accts, strict=True)))
    return snap, keymap, keys


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used: a cost per request that a busy machine does not inflate
    as much as wall-clock latency."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes) -> int:
    writer.write(raw)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


async def load(host: str, port: int, rate: float, duration: float, warmup: float, connections: int,
               keys: list[str], seed: int) -> dict[str, object]:
    rng = random.Random(seed + 1)
    weights = [1.0 / (k + 1) for k in range(len(keys))]
    n_warm, n = int(rate * warmup), int(rate * (warmup + duration))
    picks = rng.choices(range(len(keys)), weights=weights, k=n)
    reqs = [(f"GET /v1/auth/nginx HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {keys[k]}\r\n"
             f"X-Real-IP: 192.0.{k % 200}.{rng.randint(1, 250)}\r\nUser-Agent: openai-python/1.40\r\n"
             f"X-Original-URI: /v1/chat/completions\r\nX-Request-ID: bench-{i}\r\n\r\n").encode()
            for i, k in enumerate(picks)]
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await asyncio.open_connection(host, port))
    lat = np.full(n, np.nan)
    status: dict[int, int] = {}
    errors = 0

    async def one(i: int, due: float) -> None:
        nonlocal errors
        conn = await pool.get()
        try:
            st = await _request(*conn, reqs[i])
            lat[i] = time.perf_counter() - due
            status[st] = status.get(st, 0) + 1
            pool.put_nowait(conn)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            errors += 1
            conn[1].close()
            pool.put_nowait(await asyncio.open_connection(host, port))

    tasks = []
    t0 = time.perf_counter() + 0.05
    for i in range(n):
        due = t0 + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, due)))
    sent_s = time.perf_counter() - t0
    _, pending = await asyncio.wait(tasks, timeout=30)  # bounded: a saturated server cannot hold us forever
    for t in pending:
        t.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    wall = time.perf_counter() - (t0 + warmup)
    while not pool.empty():
        pool.get_nowait()[1].close()
    m = lat[n_warm:]
    ok = m[~np.isnan(m)] * 1000
    if ok.size == 0:
        ok = np.array([np.inf])
    return {"requests": int(n - n_warm), "sent_with_warmup": n, "unfinished_after_30s": len(pending), "completed": int(ok.size), "errors": errors,
            "offered_rate": round((n - n_warm) / duration, 1), "achieved_rate": round(ok.size / wall, 1),
            "schedule_lag_s": round(sent_s - (warmup + duration), 3),
            "p50_ms": round(float(np.percentile(ok, 50)), 3), "p95_ms": round(float(np.percentile(ok, 95)), 3),
            "p99_ms": round(float(np.percentile(ok, 99)), 3), "max_ms": round(float(ok.max()), 3),
            "status": dict(sorted(status.items()))}


def no_http(snap: Path, keys: list[str], args: argparse.Namespace, n: int = 20_000) -> None:
    """CPU per request of ``answer()`` (edge exchange, decide, learn, render) without HTTP, in process."""
    from distillguard.online import OnlineScorer, Policy
    from distillguard.scoring.defaults import default_model
    from distillguard.serve import ServeConfig, create_app
    from distillguard.serve.app import NGINX_PATH
    from distillguard.serve.config import KeyMap, hash_key

    km = KeyMap({hash_key(k): (k[3:], None) for k in keys})
    rng = random.Random(args.seed + 1)
    picks = rng.choices(range(len(keys)), weights=[1.0 / (k + 1) for k in range(len(keys))], k=n)
    heads = [{"host": "x", "authorization": f"Bearer {keys[k]}", "x-real-ip": f"192.0.{k % 200}.{rng.randint(1, 250)}",
              "user-agent": "openai-python/1.40", "x-original-uri": "/v1/chat/completions", "x-request-id": f"b{i}"}
             for i, k in enumerate(picks)]
    for thread, idle in ((False, False), (True, False), (True, True)):
        s = OnlineScorer(default_model(), Policy.default())
        s.restore(snap)
        app = create_app(s, ServeConfig(scorer_thread=thread, inline_when_idle=idle, decision_budget_ms=60_000.0), km)
        answer, core = app.state.edge_answer, app.state.core

        async def run(answer: Any, core: Any) -> float:
            await core.start()
            c0 = time.process_time()
            for h in heads:
                await answer(h, NGINX_PATH, b"", "127.0.0.1")
            await asyncio.sleep(0.05)  # the last learning
            cpu = time.process_time() - c0
            await core.stop()
            return cpu

        cpu = asyncio.run(run(answer, core))
        where = "on the loop while its thread is idle" if idle else "on its thread" if thread else "inline"
        print(f"  no HTTP, scorer {where}: {cpu / n * 1e6:.1f} us CPU per request "
              f"({n:,} requests, load average {os.getloadavg()[0]:.1f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rate", type=float, default=2000.0)
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--accounts", type=int, default=2000)
    ap.add_argument("--preload", type=int, default=100_000)
    ap.add_argument("--edge-learn", default="immediate", choices=["immediate", "defer", "off"])
    ap.add_argument("--budget-ms", type=float, default=50.0, help="decision_budget_ms of the server (a large "
                    "value turns off shedding, to measure what it can score)")
    ap.add_argument("--inline", action="store_true", help="score on the event loop (scorer_thread: false)")
    ap.add_argument("--thread-only", action="store_true", help="every decision on the scorer thread "
                    "(inline_when_idle: false; the default decides on the event loop while the thread is idle)")
    ap.add_argument("--edge-port", action="store_true", help="drive the lean edge server (edge_port) instead of "
                    "uvicorn's route: the same answers, less CPU per request")
    ap.add_argument("--no-http", action="store_true", help="no server and no network: call the edge answer "
                    "(the service's per-request logic) in this process on the same state, one request at a time, "
                    "and report its CPU per request, scorer inline and on its thread")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args()
    from distillguard.serve import free_port

    work = args.work or Path(tempfile.mkdtemp(prefix="bench_serve_"))
    work.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    tag = work / f"preload-{args.accounts}-{args.preload}-{args.seed}"
    if tag.exists():  # same --work and sizes: reuse the state (the server only reads the snapshot)
        snap, keymap = work / "state.pkl", work / "keys.yaml"
        keys = [f"sk-acct_{i:05d}" for i in range(args.accounts)]
        print(f"reusing the preloaded state in {work}")
    else:
        snap, keymap, keys = preload(work, args.accounts, args.preload, args.seed)
        tag.touch()
        print(f"preloaded {args.accounts:,} accounts, {args.preload:,} exchanges in {time.perf_counter() - t:.1f} s "
              f"(snapshot {snap.stat().st_size / 1e6:.1f} MB)")
    if args.no_http:
        no_http(snap, keys, args)
        return
    port = free_port()
    edge_port = free_port() if args.edge_port else None
    code = "import typer; from distillguard.serve.command import serve_command; typer.run(serve_command)"
    shutil.copy(snap, work / "serve-state.pkl")  # the server writes its own snapshot at shutdown
    srv = subprocess.Popen([sys.executable, "-c", code, "--port", str(port), "--snapshot", str(work / "serve-state.pkl"),
                            "--key-map", str(keymap), "--edge-learn", args.edge_learn,
                            *(["--edge-port", str(edge_port)] if edge_port else [])],
                           stdout=subprocess.DEVNULL, stderr=(work / "server.log").open("wb"),
                           env={**os.environ, "DISTILLGUARD_SERVE_SNAPSHOT_EVERY_S": "0",
                                "DISTILLGUARD_SERVE_SCORER_THREAD": "0" if args.inline else "1",
                                "DISTILLGUARD_SERVE_INLINE_WHEN_IDLE": "0" if args.thread_only else "1",
                                "DISTILLGUARD_SERVE_DECISION_BUDGET_MS": str(args.budget_ms)})
    try:
        import httpx

        t0 = time.monotonic()
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5)
                break
            except httpx.TransportError:
                if srv.poll() is not None or time.monotonic() - t0 > 60:
                    raise SystemExit("server did not start: " + (work / "server.log").read_text()) from None
                time.sleep(0.1)
        cpu0 = _cpu_s(srv.pid)
        if edge_port:
            while True:  # the edge server starts with the app's lifespan, just after /healthz answers
                try:
                    socket.create_connection(("127.0.0.1", edge_port), timeout=0.5).close()
                    break
                except OSError:
                    if time.monotonic() - t0 > 60:
                        raise SystemExit("edge server did not start: " + (work / "server.log").read_text()) from None
                    time.sleep(0.05)
        res = asyncio.run(load("127.0.0.1", edge_port or port, args.rate, args.duration, args.warmup,
                               args.connections, keys, args.seed))
        cpu_us = 1e6 * (_cpu_s(srv.pid) - cpu0) / max(1, res["completed"] + int(args.rate * args.warmup))  # type: ignore[operator]
        res["server_cpu_us_per_request"] = round(cpu_us, 1)
        res["capacity_on_one_free_core_rps_if_nothing_shed"] = round(1e6 / cpu_us)
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    finally:
        srv.send_signal(signal.SIGINT)
        try:
            srv.wait(30)
        except subprocess.TimeoutExpired:
            srv.kill()
    fails = [ln for ln in metrics.splitlines() if ln.startswith("distillguard_failures_total")]
    acts = [ln.split("{", 1)[1] for ln in metrics.splitlines() if ln.startswith("distillguard_decisions_total")]
    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    import importlib.util

    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end; server = uvicorn "
          f"({http}, {loop}), 1 worker, own process, scorer on {'the event loop' if args.inline else 'a thread'}"
          f"{'' if args.inline else ', every decision on it' if args.thread_only else ', decisions on the loop while it is idle'}, "
          f"{'lean edge server (edge_port)' if edge_port else 'uvicorn route'}; "
          "load generator = this process")
    for k, v in res.items():
        print(f"  {k}: {v}")
    print("  server failures: " + ", ".join(f.split("{", 1)[1] for f in fails))
    print("  server decisions: " + ", ".join(acts))
    ok = res["p99_ms"] <= 5.0 and res["achieved_rate"] >= 0.98 * args.rate  # type: ignore[operator]
    print(f"target p99 <= 5 ms at {args.rate:,.0f} req/s: {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()

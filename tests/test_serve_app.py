"""The decision service's generic mode, learning paths, fail modes, state and config, against a real
uvicorn server on loopback (pure helpers are tested directly)."""

from __future__ import annotations

import asyncio
import gc
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.datastructures import Headers

from distillguard.online import AuditLog, OnlineScorer, Policy
from distillguard.scoring.defaults import default_model
from distillguard.serve import (
    KeyMap,
    ServeConfig,
    ServerThread,
    create_app,
    edge_exchange,
    free_port,
    hash_key,
)
from distillguard.serve import core as serve_core
from distillguard.serve.core import short_reasons

MODEL = default_model()
TIGHT = Policy.from_dict({"tiers": [{"action": "throttle", "min_score": 0.35}, {"action": "block", "min_score": 0.8}],
                          "rate_limits": {"default": {"account": {"rate": 0.001, "burst": 2}}}})


class CountingScorer(OnlineScorer):
    """The real scorer; counts learn_one calls and can be made slow or failing for one account."""

    def __init__(self, *a: Any, slow_s: float = 0.0, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.learned: list[str] = []
        self.slow_s = slow_s

    def score_one(self, exchange: dict) -> Any:
        if exchange["account_id"] == "acct_slow":
            time.sleep(self.slow_s)
        if exchange["account_id"] == "acct_boom":
            raise RuntimeError("boom")
        return super().score_one(exchange)

    def learn_one(self, exchange: dict, signals: dict | None = None, decision: Any = None) -> None:
        self.learned.append(exchange.get("request_id") or "")
        super().learn_one(exchange, signals, decision)


class ContentScorer(CountingScorer):
    """Has the API this service asks online/ for: content of an exchange already learned at the edge."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.content: list[tuple[str, dict | None]] = []

    def learn_content(self, exchange: dict, signals: dict | None) -> None:
        self.content.append((exchange["request_id"], signals))


@contextmanager
def serve(scorer: OnlineScorer | None = None, **cfg: Any) -> Iterator[httpx.Client]:
    scorer = scorer if scorer is not None else CountingScorer(MODEL, Policy.default())
    with ServerThread(create_app(scorer, ServeConfig(**cfg))) as srv, httpx.Client(base_url=srv.url) as c:
        yield c


def metric(c: httpx.Client, name: str, **labels: str) -> float:
    want = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else "")
    for line in c.get("/metrics").text.splitlines():
        if line.startswith(want + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def nginx_get(c: httpx.Client, key: str, rid: str | None = None, **kw: str) -> httpx.Response:
    h = {"Authorization": f"Bearer {key}", "X-Real-IP": "192.0.2.9", **kw}
    if rid:
        h["X-Request-ID"] = rid
    return c.get("/v1/auth/nginx", headers=h)


# -- pure helpers --------------------------------------------------------------------------------
def test_edge_exchange_reads_account_ip_model_from_headers(tmp_path: Path) -> None:
    km = tmp_path / "k.yaml"
    km.write_text(f"keys:\n  - {{sha256: {hash_key('sk-1')}, account_id: acct_1, api_key_id: key_1}}\n")
    keymap = KeyMap.load(km)
    ex, why = edge_exchange(Headers({"authorization": "Bearer sk-1", "x-forwarded-for": "203.0.113.5, 10.0.0.1",
                                     "user-agent": "ua/1"}), "127.0.0.1", "/v1beta/models/gemini-x:generateContent",
                            keymap)
    assert why is None and ex is not None
    assert (ex["account_id"], ex["api_key_id"], ex["client_ip"], ex["user_agent"], ex["model"]) == \
        ("acct_1", "key_1", "203.0.113.5", "ua/1", "gemini-x")
    ex, _ = edge_exchange(Headers({"x-api-key": "sk-1", "x-real-ip": "198.51.100.1", "x-forwarded-for": "1.2.3.4"}),
                          "127.0.0.1", "/openai/deployments/gpt4o/chat/completions", keymap)
    assert ex is not None and (ex["client_ip"], ex["model"]) == ("198.51.100.1", "gpt4o")
    ex, _ = edge_exchange(Headers({"x-api-key": "sk-unknown"}), "10.1.1.1", "/v1/messages", keymap)
    assert ex is not None
    assert ex["account_id"] == "key:" + hash_key("sk-unknown")[:16] and ex["client_ip"] == "10.1.1.1"
    assert ex["model"] == "unknown"
    ex, _ = edge_exchange(Headers({"x-distillguard-account": "acct_9", "x-distillguard-model": "m"}), None, None, keymap)
    assert ex is not None and (ex["account_id"], ex["model"]) == ("acct_9", "m")
    ex, why = edge_exchange(Headers({"authorization": "Basic abc"}), None, None, keymap)
    assert ex is None and why is not None and why.startswith("NO_CREDENTIALS")


def test_short_reasons_are_codes_only_and_bounded() -> None:
    rs = ["RATE_LIMIT: account token bucket empty (0.01/s)", "CLUSTER_RISK: member of c (3 accounts) ...",
          "RATE_LIMIT: again", "lowercase text é"]
    assert short_reasons(rs) == "RATE_LIMIT,CLUSTER_RISK,OTHER"
    assert len(short_reasons([f"CODE_{i}: x" for i in range(100)], limit=50)) <= 50


def test_config_yaml_env_overrides_and_errors(tmp_path: Path) -> None:
    p = tmp_path / "serve.yaml"
    p.write_text("port: 9000\nfail_mode: closed\nsnapshot_path: /tmp/x.pkl\nmodel_ceilings: {m: 4096}\n")
    cfg = ServeConfig.load(p, env={"DISTILLGUARD_SERVE_PORT": "9100", "DISTILLGUARD_SERVE_DECISION_BUDGET_MS": "7.5"})
    assert (cfg.port, cfg.fail_mode, cfg.decision_budget_ms, cfg.snapshot_path) == (9100, "closed", 7.5,
                                                                                   Path("/tmp/x.pkl"))
    assert ServeConfig.load(p, env={}, port=1234, fail_mode=None).port == 1234
    p.write_text("prot: 9000\n")
    with pytest.raises(ValueError, match="prot"):
        ServeConfig.load(p, env={})
    with pytest.raises(ValueError, match="fail_mode"):
        ServeConfig(fail_mode="maybe")
    bad = tmp_path / "keys.yaml"
    bad.write_text("keys:\n  - {sha256: nothex, account_id: a}\n")
    with pytest.raises(ValueError, match="entry 0"):
        KeyMap.load(bad)


# -- generic mode --------------------------------------------------------------------------------
def test_decide_returns_contract_decision_and_hints(tmp_path: Path) -> None:
    km = tmp_path / "k.yaml"
    km.write_text(f"keys:\n  - {{sha256: {hash_key('sk-a')}, account_id: acct_a}}\n")
    with serve(key_map=km) as c:
        r = c.post("/v1/decide", json={"request_id": "r1", "account_id": "acct_x", "ts": "2026-05-01T00:00:00Z",
                                       "model": "m", "prompt": "hello", "client_ip": "192.0.2.1"})
        assert r.status_code == 200
        body = r.json()
        assert set(body["decision"]) == {"request_id", "action", "score", "reasons"}
        assert body["decision"]["request_id"] == "r1" and body["decision"]["action"] == "allow"
        assert body["http_status"] == 200 and body["headers"]["X-Distillguard-Action"] == "allow"
        assert 0.0 <= body["decision"]["score"] <= 1.0
        # no account in the body: resolved from the key, like the edge modes
        r = c.post("/v1/decide", json={"model": "m"}, headers={"Authorization": "Bearer sk-a"})
        assert r.json()["account_id"] == "acct_a"
        r = c.post("/v1/decide", json={"model": "m"})
        assert r.json()["action"] == "unauthenticated" and r.json()["http_status"] == 401
        assert c.post("/v1/decide", content=b"not json").status_code == 400
        assert c.post("/v1/decide", json=[1, 2]).status_code == 400


def test_decide_throttle_hint_after_burst() -> None:
    with serve(CountingScorer(MODEL, TIGHT)) as c:
        acts = [c.post("/v1/decide", json={"account_id": "acct_b", "model": "m"}).json() for _ in range(3)]
        assert [a["action"] for a in acts] == ["allow", "allow", "throttle"]
        assert acts[2]["http_status"] == 429 and acts[2]["retry_after_s"] > 0
        assert int(acts[2]["headers"]["Retry-After"]) >= 1


# -- learning paths ------------------------------------------------------------------------------
def test_immediate_edge_learning_counts_once_and_log_content_is_not_double_counted() -> None:
    s = CountingScorer(MODEL, Policy.default())
    with serve(s, edge_learn="immediate") as c:
        for i in range(5):
            assert nginx_get(c, "sk-x", f"e{i}").status_code == 200
        t0 = time.monotonic()  # each is learned right after its response went out
        while metric(c, "distillguard_learned_total", outcome="edge") < 5 and time.monotonic() - t0 < 5:
            time.sleep(0.01)
        assert metric(c, "distillguard_learned_total", outcome="edge") == 5
        rows = [{"request_id": f"e{i}", "account_id": "key:x", "ts": "2026-05-01T00:00:00Z", "model": "m",
                 "prompt": "p", "signals": {"template_fp": 7}} for i in range(5)]
        rows.append({"request_id": "log-only", "account_id": "acct_l", "ts": "2026-05-01T00:00:01Z", "model": "m"})
        rows.append({"request_id": "bad"})
        out = c.post("/v1/learn", json={"exchanges": rows}).json()["outcomes"]
        assert out == {"content_dropped": 5, "learned": 1, "invalid": 1}
        assert s.learned.count("e0") == 1 and s.learned.count("log-only") == 1
    s2 = ContentScorer(MODEL, Policy.default())
    with serve(s2, edge_learn="immediate") as c:
        nginx_get(c, "sk-x", "e0")
        out = c.post("/v1/learn", json=[{"request_id": "e0", "account_id": "a", "ts": 1, "model": "m",
                                         "signals": {"template_fp": 7}}]).json()["outcomes"]
        assert out == {"content_only": 1}
        assert s2.content == [("e0", {"template_fp": 7})] and s2.learned == ["e0"]


def test_defer_merges_log_row_into_the_edge_exchange_or_learns_it_when_grace_runs_out() -> None:
    s = CountingScorer(MODEL, Policy.default())
    with serve(s, edge_learn="defer", learn_grace_s=0.3) as c:
        nginx_get(c, "sk-d", "d1", **{"User-Agent": "edge-ua"})
        nginx_get(c, "sk-d", "d2")
        assert s.learned == []  # parked, not learned yet
        out = c.post("/v1/learn", json=[{"request_id": "d1", "account_id": "acct_from_log", "ts": 5,
                                         "model": "gpt-x", "prompt": "p"}]).json()["outcomes"]
        assert out == {"merged": 1}
        t0 = time.monotonic()
        while "d2" not in s.learned and time.monotonic() - t0 < 5:
            time.sleep(0.05)
        assert sorted(s.learned) == ["d1", "d2"]
        assert metric(c, "distillguard_learned_total", outcome="expired") == 1
        # a log row arriving after expiry is not learned a second time
        out = c.post("/v1/learn", json=[{"request_id": "d2", "account_id": "a", "ts": 5, "model": "m"}]).json()
        assert out["outcomes"] == {"content_dropped": 1} and s.learned.count("d2") == 1


def test_off_never_learns_at_the_edge() -> None:
    s = CountingScorer(MODEL, Policy.default())
    with serve(s, edge_learn="off") as c:
        nginx_get(c, "sk-o", "o1")
        c.post("/v1/learn", json=[{"request_id": "o1", "account_id": "a", "ts": 5, "model": "m"}])
        assert s.learned == ["o1"]


# -- fail modes ----------------------------------------------------------------------------------
def test_fail_open_on_error_and_timeout_then_recovers() -> None:
    s = CountingScorer(MODEL, Policy.default(), slow_s=0.3)
    with serve(s, fail_mode="open", decision_budget_ms=50, inline_when_idle=False) as c:  # every call on the thread
        r = c.get("/v1/auth/nginx", headers={"X-Distillguard-Account": "acct_boom"})
        assert r.status_code == 200 and r.headers["x-distillguard-failure"] == "open"
        assert r.headers["x-distillguard-reasons"] == "SCORER_ERROR"
        t0 = time.perf_counter()
        r = c.get("/v1/auth/nginx", headers={"X-Distillguard-Account": "acct_slow"})
        assert time.perf_counter() - t0 < 0.25  # answered at the budget, not when the scorer finished
        assert r.status_code == 200 and r.headers["x-distillguard-reasons"] == "SCORER_TIMEOUT"
        # the scorer thread is still busy with the slow one: the next request is answered at its budget too
        r = c.get("/v1/auth/nginx", headers={"X-Distillguard-Account": "acct_ok"})
        assert r.headers["x-distillguard-reasons"] == "SCORER_TIMEOUT"
        time.sleep(0.4)
        r = c.get("/v1/auth/nginx", headers={"X-Distillguard-Account": "acct_ok"})
        assert "x-distillguard-failure" not in r.headers and r.headers["x-distillguard-action"] == "allow"
        assert metric(c, "distillguard_failures_total", cause="timeout") == 2
        assert metric(c, "distillguard_failures_total", cause="error") == 1


def test_inline_scoring_mode_decides_learns_and_fails_open() -> None:
    s = CountingScorer(MODEL, TIGHT)
    with serve(s, scorer_thread=False, fail_mode="open") as c:
        acts = [nginx_get(c, "sk-i", f"i{i}").headers["x-distillguard-action"] for i in range(3)]
        assert acts == ["allow", "allow", "throttle"]  # learned after each decision, before the next
        t0 = time.monotonic()
        while len(s.learned) < 3 and time.monotonic() - t0 < 5:  # the last one right after its response
            time.sleep(0.01)
        assert s.learned == ["i0", "i1", "i2"]
        r = c.get("/v1/auth/nginx", headers={"X-Distillguard-Account": "acct_boom"})
        assert r.status_code == 200 and r.headers["x-distillguard-failure"] == "open"


def test_inline_when_idle_decides_on_the_loop_and_queues_behind_a_busy_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """Default mode: a decision that finds the scorer thread idle runs on the event loop (the thread is
    not used), one that finds it busy waits behind its job under the budget; learning keeps decision order."""
    monkeypatch.setattr(serve_core, "_CONTENDED_LAG_S", math.inf)  # however loaded the test machine is
    s = CountingScorer(MODEL, TIGHT)
    threads: list[str] = []
    score_one, load_batch = s.score_one, s.load_batch
    started = threading.Event()

    def spy_score(ex: dict) -> Any:
        threads.append(threading.current_thread().name)
        return score_one(ex)

    def slow_load(view: Any) -> None:  # a long scorer job on the thread (a snapshot, a big batch view)
        started.set()
        time.sleep(0.4)
        load_batch(view)

    s.score_one, s.load_batch = spy_score, slow_load  # type: ignore[method-assign]
    with serve(s, fail_mode="open", decision_budget_ms=100) as c:
        acts = [nginx_get(c, "sk-h", f"h{i}").headers["x-distillguard-action"] for i in range(3)]
        assert acts == ["allow", "allow", "throttle"]  # each learned before the next decision
        assert threads and "distillguard-scorer" not in threads
        assert gc.get_freeze_count() > 0  # the restored state is out of the collector's way while serving
        t = threading.Thread(target=lambda: c.post("/v1/batch", json={"detections": [
            {"account_id": "z", "score": 0.1, "flagged": False}]}))
        t.start()
        assert started.wait(5)
        r = nginx_get(c, "sk-h2", "q1")
        assert r.headers["x-distillguard-reasons"] == "SCORER_TIMEOUT"  # queued behind the job: budget ran out
        t.join()
        r = nginx_get(c, "sk-h2", "q2")
        assert "x-distillguard-failure" not in r.headers
        t0 = time.monotonic()
        while len(s.learned) < 4 and time.monotonic() - t0 < 5:
            time.sleep(0.01)
        assert s.learned == ["h0", "h1", "h2", "q2"]  # the timed-out one is neither scored late nor learned


def test_inline_when_idle_steps_aside_while_the_loop_lags(monkeypatch: pytest.MonkeyPatch) -> None:
    """A lagging event loop (a process short of CPU) sends decisions to the scorer thread, so loop and
    scorer each get their share of the cores; the decisions are the same."""
    monkeypatch.setattr(serve_core, "_CONTENDED_LAG_S", -1.0)  # every tick counts as lagging
    s = CountingScorer(MODEL, TIGHT)
    threads: list[str] = []
    score_one = s.score_one

    def spy_score(ex: dict) -> Any:
        threads.append(threading.current_thread().name)
        return score_one(ex)

    s.score_one = spy_score  # type: ignore[method-assign]
    with serve(s) as c:
        time.sleep(0.05)  # a few lag ticks
        acts = [nginx_get(c, "sk-l", f"l{i}").headers["x-distillguard-action"] for i in range(3)]
    assert acts == ["allow", "allow", "throttle"] and set(threads) == {"distillguard-scorer"}


def test_fail_closed_on_error_is_503_in_generic_and_403_in_nginx_mode() -> None:
    with serve(fail_mode="closed") as c:
        r = c.post("/v1/decide", json={"account_id": "acct_boom", "model": "m"})
        assert r.status_code == 503 and r.json()["failure"] == "error"
        r = c.get("/v1/auth/nginx", headers={"X-Distillguard-Account": "acct_boom"})
        assert r.status_code == 403 and r.headers["x-distillguard-action"] == "unavailable"
        assert r.headers["x-distillguard-failure"] == "closed"


def test_overload_beyond_in_flight_limit_applies_fail_mode() -> None:
    s = CountingScorer(MODEL, Policy.default(), slow_s=0.2)
    with ServerThread(create_app(s, ServeConfig(max_in_flight=1, decision_budget_ms=1000, fail_mode="closed",
                                                inline_when_idle=False))) as srv:
        async def burst() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=srv.url) as ac:
                return await asyncio.gather(*(ac.get("/v1/authz/envoy/v1/x", headers={"X-Distillguard-Account":
                                                                                       "acct_slow"})
                                              for _ in range(3)))
        codes = sorted(r.status_code for r in asyncio.run(burst()))
        assert codes[0] == 200 and codes[1:] == [503, 503]
        assert metric(httpx.Client(base_url=srv.url), "distillguard_failures_total", cause="overloaded") == 2


# -- state: snapshot, restore, audit, batch --------------------------------------------------------
def test_snapshot_on_shutdown_restore_on_start_and_audit_survive(tmp_path: Path) -> None:
    snap, audit = tmp_path / "state.pkl", tmp_path / "audit"
    cfg = {"snapshot_path": snap, "audit_dir": audit, "snapshot_every_s": 0.2}
    with serve(CountingScorer(MODEL, TIGHT), **cfg) as c:
        codes = [nginx_get(c, "sk-s", f"s{i}").status_code for i in range(3)]
        assert codes == [200, 200, 403]
        t0 = time.monotonic()
        while not snap.exists() and time.monotonic() - t0 < 5:
            time.sleep(0.05)
        assert snap.exists()  # periodic snapshot
        assert c.post("/v1/snapshot").json() == {"snapshot": str(snap)}
    # a fresh process-equivalent: new scorer, same files
    with serve(CountingScorer(MODEL, TIGHT), **cfg) as c:
        r = nginx_get(c, "sk-s", "s3")
        assert r.headers["x-distillguard-action"] == "throttle"  # the spent bucket survived the restart
        c.get("/v1/auth/nginx", headers={"X-Distillguard-Account": "acct_boom", "X-Request-ID": "s4"})
    rows = AuditLog(audit).read().to_pylist()
    assert [(r["request_id"], r["action"]) for r in rows] == [("s0", "allow"), ("s1", "allow"), ("s2", "throttle"),
                                                              ("s3", "throttle"), ("s4", "allow")]
    assert rows[-1]["reasons"] == ["SCORER_ERROR: answered by fail_mode open"]


def test_batch_and_accounts_endpoints_change_decisions() -> None:
    with serve() as c:
        det = [{"account_id": f"b{i}", "score": 0.99, "flagged": True, "cluster_id": "cx"} for i in range(3)]
        assert c.post("/v1/accounts", json={"accounts": [{"account_id": "b0", "created_at": "2026-01-01T00:00:00Z",
                                                          "payment_fingerprint": "card-1"},
                                                         {"account_id": "fresh", "created_at": "2026-05-01T00:00:00Z",
                                                          "payment_fingerprint": "card-1"}]}).json() == {"learned": 2}
        assert c.post("/v1/decide", json={"account_id": "b1", "model": "m"}).json()["action"] == "allow"
        assert c.post("/v1/batch", json={"detections": det}).json() == {"accounts": 3, "flagged": 3}
        assert c.post("/v1/decide", json={"account_id": "b1", "model": "m"}).json()["action"] == "block"
        d = c.post("/v1/decide", json={"account_id": "fresh", "model": "m"}).json()
        assert d["action"] == "block" and d["decision"]["reasons"][0].startswith("HYDRA_REPLACEMENT")
        assert c.post("/v1/batch", json={"detections": "/nonexistent.jsonl"}).status_code == 400
        assert c.post("/v1/accounts", json=[{"no_id": 1}]).status_code == 400
        assert c.post("/v1/learn", content=b"{not json").status_code == 400


def test_shared_secret_guards_everything_but_healthz() -> None:
    with serve(shared_secret="k") as c:
        assert c.get("/healthz").status_code == 200
        assert c.get("/metrics").status_code == 401
        assert c.post("/v1/learn", json=[]).status_code == 401
        assert c.post("/v1/decide", json={"account_id": "a"}, headers={"X-Distillguard-Secret": "k"}).status_code == 200


def test_two_replicas_share_state_through_redis(redis_url: str) -> None:
    """Two decision services on one redis-server: a bucket one replica spent is empty on the other."""
    from distillguard.online.redis_state import RedisState

    a = OnlineScorer(MODEL, TIGHT, state=RedisState(redis_url, prefix="t"))
    b = OnlineScorer(MODEL, TIGHT, state=RedisState(redis_url, prefix="t"))
    with serve(a, flush_every_s=0.05) as ca, serve(b, flush_every_s=0.05) as cb:
        assert [nginx_get(ca, "sk-r", f"r{i}").headers["x-distillguard-action"] for i in range(2)] == \
            ["allow", "allow"]
        time.sleep(0.3)  # A's buffered writes reach Redis (flush_every_s)
        # B has never seen this account: its very first request finds the shared bucket empty
        r = cb.get("/v1/auth/nginx", headers={"Authorization": "Bearer sk-r"})
        assert r.headers["x-distillguard-action"] == "throttle"
        assert "RATE_LIMIT" in r.headers["x-distillguard-reasons"]


# -- the command ---------------------------------------------------------------------------------
def test_serve_command_runs_uvicorn_and_snapshots_on_sigterm(tmp_path: Path) -> None:
    port, snap = free_port(), tmp_path / "s.pkl"
    code = "import typer; from distillguard.serve.command import serve_command; typer.run(serve_command)"
    p = subprocess.Popen([sys.executable, "-c", code, "--port", str(port), "--snapshot", str(snap),
                          "--fail-mode", "closed"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         env={**os.environ, "DISTILLGUARD_SERVE_EDGE_LEARN": "defer"})
    try:
        url, t0 = f"http://127.0.0.1:{port}", time.monotonic()
        while True:
            try:
                h = httpx.get(url + "/healthz", timeout=0.5).json()
                break
            except httpx.TransportError:
                assert p.poll() is None and time.monotonic() - t0 < 30, p.stdout.read() if p.stdout else ""
                time.sleep(0.1)
        assert h["fail_mode"] == "closed" and h["edge_learn"] == "defer"
        assert httpx.get(url + "/v1/auth/nginx", headers={"x-api-key": "k"}).status_code == 200
        p.send_signal(signal.SIGTERM)
        assert p.wait(30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after a graceful shutdown
        assert snap.exists()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()

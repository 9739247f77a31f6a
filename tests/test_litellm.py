"""The distillguard guardrail in a real LiteLLM proxy process on loopback (``make test-litellm``).

LiteLLM lives in its own venv (``.venv-litellm``, ``litellm[proxy]==1.100.5``); in any interpreter
without it this module skips. The proxy runs the shipped ``deploy/litellm`` config (mock models, no
upstream, master key, no database) with a batch view (``detections.jsonl``: a blocked, a challenged
and a degraded cluster) and a policy with a tight per-account token bucket, so every action is hit
by real HTTP requests.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import free_port

pytestmark = pytest.mark.litellm

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no fetch of the cost map from GitHub
pytest.importorskip("litellm", reason="LiteLLM is not installed here; run `make test-litellm`")
httpx = pytest.importorskip("httpx")
yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy" / "litellm"
MASTER = "sk-distillguard-demo"
MOCK = "Hello from the mock model."
BURST = 2  # the test policy's per-account bucket: the third request of an account in quick succession is throttled


def _write_fixture(d: Path) -> None:
    """deploy/litellm copied as is, plus the guard's settings, detections and policy."""
    shutil.copy(DEPLOY / "config.yaml", d / "config.yaml")
    shutil.copy(DEPLOY / "custom_callbacks.py", d / "custom_callbacks.py")
    rows = []
    for cid, score, flagged in (("c-block", 0.95, True), ("c-challenge", 0.6, True), ("c-degrade", 0.47, False)):
        rows += [{"account_id": f"end_user:{cid}-{i}", "score": score, "flagged": flagged, "cluster_id": cid,
                  "reasons": []} for i in range(3)]
    # a vetted customer the batch put in the blocked cluster: the allow-list wins
    rows.append({"account_id": "end_user:vetted-0", "score": 0.95, "flagged": True, "cluster_id": "c-block",
                 "reasons": []})
    (d / "detections.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pol = yaml.safe_load((ROOT / "src" / "distillguard" / "data" / "policy.yaml").read_text())
    pol["rate_limits"]["default"]["account"] = {"rate": 0.001, "burst": BURST}
    pol["allow_list"] = {"account_ids": ["end_user:vetted-0"], "org_ids": []}
    (d / "policy.yaml").write_text(yaml.safe_dump(pol))
    guard = yaml.safe_load((DEPLOY / "distillguard.yaml").read_text())
    guard.update(policy="policy.yaml", detections="detections.jsonl", snapshot="state/scorer.pkl",
                 snapshot_every_s=60, audit="state/audit", exchanges_log="state/exchanges.jsonl",
                 decision_headers=True, content_signals=True, reload_every_s=0.3,
                 step_up_url="https://example.com/verify")
    (d / "distillguard.yaml").write_text(yaml.safe_dump(guard))


def _spawn(d: Path, config: Path, guard: Path, log_name: str) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``litellm --config`` on a free loopback port (one worker, no database)."""
    port = free_port()
    exe = Path(sys.executable).with_name("litellm")
    cmd = [str(exe) if exe.exists() else "litellm", "--config", str(config), "--host", "127.0.0.1",
           "--port", str(port), "--num_workers", "1"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "LITELLM_", "DISTILLGUARD_"))}
    env.update(LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_TELEMETRY="False", LITELLM_LOG="ERROR",
               DISTILLGUARD_CONFIG=str(guard), NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1")
    with (d / log_name).open("wb") as log:
        p = subprocess.Popen(cmd, cwd=d, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return p, f"http://127.0.0.1:{port}"


def _wait_up(p: subprocess.Popen[bytes], base: str, log: Path, t0: float) -> None:
    while True:
        if p.poll() is not None:
            pytest.fail(f"litellm exited with {p.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(f"{base}/health/liveliness", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() - t0 > 180:
            pytest.fail(f"litellm not up in 180 s:\n{log.read_text()[-4000:]}")
        time.sleep(0.5)


def _stop(p: subprocess.Popen[bytes]) -> None:
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    d = tmp_path_factory.mktemp("litellm")
    _write_fixture(d)
    t0 = time.monotonic()
    p, base = _spawn(d, d / "config.yaml", d / "distillguard.yaml", "proxy.log")
    try:
        _wait_up(p, base, d / "proxy.log", t0)
        print(f"\nlitellm proxy up in {time.monotonic() - t0:.1f} s")
        yield {"base": base, "dir": d, "process": p, "startup_s": time.monotonic() - t0}
    finally:
        _stop(p)


#: What each account sends: the flagged clusters share a distillation-style prompt, a system prompt, a
#: client /24 and a user agent among themselves; everyone else is distinct. (Benign accounts sharing
#: all of that with a contained cluster would rightly be caught by the hydra-replacement rule.)
_CAMPAIGN = ("You are a teacher model. Produce exhaustive worked solutions.",
             "Solve step by step and show every intermediate reasoning step: integrate x^2 sin(x).")
_BENIGN = ("You are a helpful assistant.", "What is the capital of France?")
#: The vetted customer is batch-flagged (so contained): its fingerprints must not be the benign
#: accounts' or they, young and sharing template + preamble with a contained account, are caught too.
_VETTED = ("You are a contracts lawyer.", "Summarise the indemnity clause of the attached agreement.")


def _client(user: str | None) -> tuple[str, str]:
    """(X-Forwarded-For, User-Agent) of a test account: one per account, shared inside a campaign."""
    if user is not None and user.startswith("c-"):
        return "198.51.100.9", "distill-bot/2.0"
    n = sum(map(ord, user or "key")) % 200 + 1
    return f"203.0.{n}.7", f"test-client/1.0 ({user})"


def _chat(proxy: dict[str, Any], user: str | None, **body: Any) -> httpx.Response:
    system, prompt = (_CAMPAIGN if user is not None and user.startswith("c-")
                      else _VETTED if user == "vetted-0" else _BENIGN)
    payload: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [
        {"role": "system", "content": system}, {"role": "user", "content": prompt}]}
    if user is not None:
        payload["user"] = user
    payload.update(body)
    ip, ua = _client(user)
    return httpx.post(f"{proxy['base']}/v1/chat/completions", json=payload, timeout=60,
                      headers={"Authorization": f"Bearer {MASTER}", "X-Forwarded-For": ip, "User-Agent": ua})


def _error(r: httpx.Response) -> dict[str, Any]:
    body = r.json()
    assert "error" in body, body
    return body["error"]


def test_benign_request_is_served(proxy: dict[str, Any]) -> None:
    r = _chat(proxy, "benign-1")
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == MOCK
    assert r.headers.get("x-distillguard-action") == "allow"


def test_flagged_cluster_member_is_blocked(proxy: dict[str, Any]) -> None:
    r = _chat(proxy, "c-block-1")
    assert r.status_code == 403, r.text
    err = _error(r)
    assert "refused by distillguard" in err["message"] and "CLUSTER_RISK" in err["message"]
    assert r.headers.get("x-distillguard-action") == "block"
    detail = err["provider_specific_fields"]  # the hook's whole detail, structured
    assert detail["action"] == "block" and detail["score"] >= 0.8
    assert any(x.startswith("CLUSTER_RISK: member of c-block") for x in detail["reasons"])


def test_challenged_account_gets_step_up(proxy: dict[str, Any]) -> None:
    r = _chat(proxy, "c-challenge-2")
    assert r.status_code == 401, r.text
    text = json.dumps(r.json())
    assert "step-up verification required" in text and "https://example.com/verify" in text
    assert "CLUSTER_RISK" in text


def test_degraded_account_is_served_without_reasoning(proxy: dict[str, Any]) -> None:
    r = _chat(proxy, "c-degrade-0", max_tokens=4000, reasoning_effort="high")
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == MOCK
    assert r.headers.get("x-distillguard-action") == "degrade"


def test_allow_list_wins_over_batch_flag(proxy: dict[str, Any]) -> None:
    r = _chat(proxy, "vetted-0")
    assert r.status_code == 200, r.text


def test_rate_limit_throttles_with_retry_after(proxy: dict[str, Any]) -> None:
    for _ in range(BURST):
        r = _chat(proxy, "busy-1")
        assert r.status_code == 200, r.text
    r = _chat(proxy, "busy-1")
    assert r.status_code == 429, r.text
    assert "RATE_LIMIT: account token bucket empty" in _error(r)["message"]
    assert int(r.headers["retry-after"]) >= 1
    assert r.headers.get("x-distillguard-action") == "throttle"
    assert _chat(proxy, "busy-2").status_code == 200  # another account is unaffected


def test_new_detections_are_picked_up_while_running(proxy: dict[str, Any]) -> None:
    """A new ``distillguard detect`` output replaces the detections file (atomically): the proxy
    reloads it within ``reload_every_s`` (checked on requests) and blocks the newly flagged cluster."""
    assert _chat(proxy, "c-late-0").status_code == 200  # not in any batch view yet
    path = proxy["dir"] / "detections.jsonl"
    rows = path.read_text() + "".join(json.dumps({"account_id": f"end_user:c-late-{i}", "score": 0.95, "flagged": True,
                                                  "cluster_id": "c-late", "reasons": []}) + "\n" for i in range(12))
    tmp = path.with_suffix(".tmp")
    tmp.write_text(rows)
    tmp.replace(path)
    for i in range(1, 12):
        time.sleep(0.4)
        _chat(proxy, f"poller-{i}")  # any request starts the reload once it is due
        time.sleep(0.4)
        r = _chat(proxy, f"c-late-{i}")
        if r.status_code == 403:
            break
    assert r.status_code == 403, r.text
    assert "CLUSTER_RISK: member of c-late" in r.text


def test_anthropic_messages_shape(proxy: dict[str, Any]) -> None:
    """/v1/messages: the account from ``metadata.user_id``, the system prompt from ``system``."""
    def post(user: str) -> httpx.Response:
        return httpx.post(f"{proxy['base']}/v1/messages", timeout=60, headers={"x-api-key": MASTER}, json={
            "model": "claude-sonnet", "max_tokens": 256, "system": "Answer briefly.",
            "metadata": {"user_id": user}, "messages": [{"role": "user", "content": "Name a prime."}]})

    r = post("anthropic-user-1")
    assert r.status_code == 200, r.text
    assert MOCK in json.dumps(r.json())
    r = post("c-block-2")
    assert r.status_code == 403, r.text
    assert "CLUSTER_RISK" in r.text


def test_streamed_request_is_served_and_learned(proxy: dict[str, Any]) -> None:
    with httpx.stream("POST", f"{proxy['base']}/v1/chat/completions", timeout=60,
                      headers={"Authorization": f"Bearer {MASTER}"},
                      json={"model": "gpt-4o-mini", "user": "streamer-1", "stream": True,
                            "messages": [{"role": "user", "content": "Count to three."}]}) as r:
        assert r.status_code == 200
        body = "".join(r.iter_text())
    assert "data:" in body and "[DONE]" in body
    deadline = time.monotonic() + 10  # streamed requests are learned by the async success logger
    while time.monotonic() < deadline:
        if any(x["account_id"] == "end_user:streamer-1" for x in _exchanges(proxy)):
            break
        time.sleep(0.2)
    (x,) = [x for x in _exchanges(proxy) if x["account_id"] == "end_user:streamer-1"]
    assert x["status"] == 200


def _exchanges(proxy: dict[str, Any]) -> list[dict[str, Any]]:
    path = proxy["dir"] / "state" / "exchanges.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_learned_exchanges_carry_ip_agent_and_usage(proxy: dict[str, Any]) -> None:
    """What the proxy process learned, from its exchanges log: the X-Forwarded-For client, the user
    agent, the response's usage tokens; refused attempts are learned too, with their status."""
    assert _chat(proxy, None).status_code == 200  # no `user`: the account is the hashed master key
    rows = _exchanges(proxy)
    by_acct: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_acct.setdefault(r["account_id"], []).append(r)
    (b,) = by_acct["end_user:benign-1"]
    assert (b["client_ip"], b["user_agent"]) == _client("benign-1")  # the X-Forwarded-For client, its UA
    assert b["model"] == "gpt-4o-mini" and b["prompt"] == "What is the capital of France?"
    assert b["system"] == "You are a helpful assistant." and b["status"] == 200
    assert b["input_tokens"] and b["output_tokens"] and b["finish_reason"] == "stop"
    assert [r["status"] for r in by_acct["end_user:busy-1"]] == [200] * BURST + [429]
    assert by_acct["end_user:c-block-1"][0]["status"] == 403
    assert by_acct["end_user:c-challenge-2"][0]["status"] == 401
    (g,) = by_acct["end_user:c-degrade-0"]
    assert g["max_tokens"] == 4000 and g["thinking"] is True  # as asked; the model got max_tokens 1024, no reasoning
    assert any(a.startswith("key:") for a in by_acct), sorted(by_acct)


def test_restart_restores_learned_state(proxy: dict[str, Any]) -> None:
    """Stop the proxy with SIGTERM as a rolling restart would (last test: it ends the process). The
    snapshot and the audit log must hold what it learned; a scorer restored from the snapshot
    still finds busy-1's bucket empty and c-block contained."""
    p = proxy["process"]
    os.killpg(p.pid, signal.SIGTERM)
    p.wait(30)
    from distillguard.online import AuditLog, OnlineScorer, Policy
    from distillguard.scoring.defaults import default_model

    d = proxy["dir"]
    s = OnlineScorer(default_model(), Policy.from_yaml(d / "policy.yaml"))
    s.restore(d / "state" / "scorer.pkl")
    now = time.time_ns() // 1000
    assert s.score_one({"request_id": "x", "account_id": "end_user:busy-1", "ts": now,
                        "model": "gpt-4o-mini"}).action == "throttle"
    assert s.score_one({"request_id": "y", "account_id": "end_user:benign-1", "ts": now,
                        "model": "gpt-4o-mini"}).action == "allow"
    assert "end_user:c-block-0" in s.contained()
    audit = AuditLog(d / "state" / "audit").read().to_pylist()
    assert len(audit) == len(_exchanges(proxy))  # one decision per request, all flushed
    assert {"allow", "throttle", "challenge", "degrade", "block"} <= {r["action"] for r in audit}
    logged = (d / "proxy.log").read_text()
    assert not re.search(r"^distillguard: ", logged, re.M), logged[-3000:]  # the hook logged no error


def test_usage_tokens_from_a_litellm_response() -> None:
    """The post-call learn reads usage from LiteLLM's own response object (in-process, mocked)."""
    import litellm

    from distillguard.serve.litellm_guard import _usage

    resp = litellm.completion(model="openai/gpt-4o-mini", api_key="x", mock_response=MOCK,
                              messages=[{"role": "user", "content": "hi"}])
    ex: dict[str, Any] = {}
    _usage(ex, resp)
    assert ex["input_tokens"] and ex["output_tokens"] and ex["finish_reason"] == "stop"


# -- two proxies sharing state through Redis -----------------------------------------------------------
def test_two_proxies_share_state_through_redis(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> None:
    """Two proxy processes (as two replicas, or two workers) with ``redis_url``: an account's token
    bucket and the batch containment are shared, so alternating between them does not double its rate."""
    d = tmp_path_factory.mktemp("litellm-redis")
    _write_fixture(d)
    guard = yaml.safe_load((d / "distillguard.yaml").read_text())
    for k in ("snapshot", "audit", "exchanges_log"):
        guard.pop(k)
    guard.update(redis_url=redis_url, content_signals=False)
    (d / "distillguard.yaml").write_text(yaml.safe_dump(guard))
    t0 = time.monotonic()
    procs = [_spawn(d, d / "config.yaml", d / "distillguard.yaml", f"proxy{i}.log") for i in range(2)]
    try:
        for i, (p, base) in enumerate(procs):
            _wait_up(p, base, d / f"proxy{i}.log", t0)
        (a, b) = ({"base": base} for _, base in procs)
        assert _chat(a, "shared-1").status_code == 200
        assert _chat(b, "shared-1").status_code == 200  # the account's second token (burst 2), spent on B
        r = _chat(a, "shared-1")
        assert r.status_code == 429, r.text  # A saw B's spend: one bucket for both
        assert "RATE_LIMIT" in r.text
        assert _chat(b, "c-block-0").status_code == 403
    finally:
        for p, _ in procs:
            _stop(p)

"""Real nginx (auth_request, the shipped deploy/nginx/nginx.conf) in front of a mock OpenAI/Anthropic
upstream, with the decision service on uvicorn: statuses, headers and fail modes end to end."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request

from distillguard.online import OnlineScorer, Policy
from distillguard.scoring.defaults import default_model
from distillguard.serve import ServeConfig, ServerThread, create_app, free_port, hash_key

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx not installed (apt-get install nginx-light)")
CONF = Path(__file__).resolve().parents[1] / "deploy" / "nginx" / "nginx.conf"

KEYS = {"sk-good": "acct_good", "sk-bad": "acct_bad0", "sk-new": "acct_new", "sk-chal": "acct_c0",
        "sk-degr": "acct_d0", "sk-busy": "acct_busy", "sk-boom": "acct_boom"}
BURST = 4


class FlakyScorer(OnlineScorer):
    """The real scorer, except that it raises for one account: the service's own failure path."""

    def score_one(self, exchange: dict) -> Any:
        if exchange["account_id"] == "acct_boom":
            raise RuntimeError("scorer failure (test)")
        return super().score_one(exchange)


def mock_upstream(seen: list[dict[str, Any]]) -> FastAPI:
    """An LLM API speaking the OpenAI chat and Anthropic messages shapes; records what reached it."""
    app = FastAPI()

    def record(request: Request, body: dict[str, Any]) -> None:
        seen.append({"path": request.url.path, "body": body, "request_id": request.headers.get("x-request-id"),
                     "dg": {k.lower(): v for k, v in request.headers.items() if k.lower().startswith("x-distillguard")}})

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> dict[str, Any]:
        body = await request.json()
        record(request, body)
        return {"id": "chatcmpl-1", "object": "chat.completion", "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": "hello from upstream"}}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8,
                          "completion_tokens_details": {"reasoning_tokens": 0}}}

    @app.post("/v1/messages")
    async def messages(request: Request) -> dict[str, Any]:
        body = await request.json()
        record(request, body)
        return {"id": "msg_1", "type": "message", "role": "assistant", "model": body["model"],
                "content": [{"type": "text", "text": "hello from upstream"}], "stop_reason": "end_turn",
                "usage": {"input_tokens": 5, "output_tokens": 3}}

    return app


def render_conf(listen: int, decision: str, upstream: str, fail_closed: bool, secret: str = "") -> str:
    vals = {"DG_LISTEN": f"127.0.0.1:{listen}", "DG_DECISION": decision, "DG_UPSTREAM": upstream,
            "DG_FAIL_CLOSED": "1" if fail_closed else "0", "DG_SECRET": secret}
    text = re.sub(r"\$\{(DG_[A-Z_]+)\}", lambda m: vals[m.group(1)], CONF.read_text())
    assert "${" not in text
    return text


class Nginx:
    """``nginx -p DIR -c nginx.conf`` in the foreground (daemon off), logs and pid inside DIR."""

    def __init__(self, prefix: Path, conf: str, port: int) -> None:
        self.prefix, self.port = prefix, port
        for d in ("logs", "tmp"):
            (prefix / d).mkdir(parents=True, exist_ok=True)
        (prefix / "nginx.conf").write_text(conf)
        assert NGINX is not None
        args = [NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", str(prefix / "logs" / "error.log")]
        chk = subprocess.run([*args, "-t"], capture_output=True, text=True)
        assert chk.returncode == 0, chk.stderr
        self.proc = subprocess.Popen([*args, "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        t0 = time.monotonic()
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/nginx-ready", timeout=0.5)
                break
            except httpx.TransportError:
                if self.proc.poll() is not None or time.monotonic() - t0 > 10:
                    raise RuntimeError("nginx did not start: " + (prefix / "logs" / "error.log").read_text()) from None
                time.sleep(0.02)
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("nginx_stack")
    keymap = tmp / "keys.yaml"
    keymap.write_text("keys:\n" + "".join(f"  - {{sha256: {hash_key(k)}, account_id: {a}}}\n" for k, a in KEYS.items()))
    policy = Policy.from_dict({**_policy_dict(), "rate_limits": {"default": {"account": {"rate": 0.001, "burst": BURST}}}})
    scorer = FlakyScorer(default_model(), policy)
    cfg = ServeConfig(key_map=keymap, fail_mode="closed", challenge_url="https://example.test/verify")
    seen: list[dict[str, Any]] = []
    servers, nginxes = [], []
    try:
        up = ServerThread(mock_upstream(seen)).start()
        servers.append(up)
        dg = ServerThread(create_app(scorer, cfg)).start()
        servers.append(dg)
        _seed(dg.url)
        dead = f"127.0.0.1:{free_port()}"  # nothing listens there: the decision service is "down"
        up_addr = f"127.0.0.1:{up.port}"
        for name, decision, closed in (("main", f"127.0.0.1:{dg.port}", False), ("down_open", dead, False),
                                       ("down_closed", dead, True)):
            port = free_port()
            nginxes.append(Nginx(tmp / name, render_conf(port, decision, up_addr, closed), port))
        yield {"main": nginxes[0].url, "down_open": nginxes[1].url, "down_closed": nginxes[2].url, "seen": seen,
               "dg": dg.url}
    finally:
        for n in nginxes:
            n.stop()
        for s in servers:
            s.stop()


def _policy_dict() -> dict[str, Any]:
    """The shipped tiers (explicit, so a retuned default policy does not change what is tested)."""
    return {"tiers": [{"action": "throttle", "min_score": 0.35},
                      {"action": "degrade", "min_score": 0.45, "strip_reasoning": True, "max_tokens": 1024},
                      {"action": "challenge", "min_score": 0.5}, {"action": "block", "min_score": 0.8}]}


def _seed(url: str) -> None:
    """Accounts and a batch view: cluster c_bad (3 accounts, score .99 -> block), c_chal (score .6 ->
    challenge), c_degr (score .47 -> degrade); acct_new shares c_bad's payment card (hydra replacement)."""
    accts = [{"account_id": f"acct_bad{i}", "created_at": "2026-04-01T00:00:00Z", "payment_fingerprint": "card-X"}
             for i in range(3)]
    accts += [{"account_id": "acct_new", "created_at": "2026-05-01T00:00:00Z", "payment_fingerprint": "card-X"},
              {"account_id": "acct_good", "created_at": "2026-01-01T00:00:00Z", "payment_fingerprint": "card-G"}]
    det = []
    for cid, prefix, score in (("c_bad", "acct_bad", 0.99), ("c_chal", "acct_c", 0.6), ("c_degr", "acct_d", 0.47)):
        det += [{"account_id": f"{prefix}{i}", "score": score, "flagged": score >= 0.5, "cluster_id": cid}
                for i in range(3)]
    assert httpx.post(url + "/v1/accounts", json=accts).json() == {"learned": len(accts)}
    assert httpx.post(url + "/v1/batch", json={"detections": det}).json() == {"accounts": 9, "flagged": 6}


def _openai(base: str, key: str, **kw: Any) -> httpx.Response:
    return httpx.post(base + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}", **kw},
                      json={"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 64})


def _anthropic(base: str, key: str) -> httpx.Response:
    return httpx.post(base + "/v1/messages", headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
                      json={"model": "claude-test", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]})


def test_benign_client_reaches_upstream_openai_and_anthropic(stack: dict[str, Any]) -> None:
    n = len(stack["seen"])
    r = _openai(stack["main"], "sk-good")
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "hello from upstream"
    assert r.json()["model"] == "gpt-test"  # the body went through nginx untouched
    r = _anthropic(stack["main"], "sk-good")
    assert r.status_code == 200, r.text
    assert r.json()["content"][0]["text"] == "hello from upstream"
    assert len(stack["seen"]) == n + 2
    hints = stack["seen"][-1]["dg"]
    assert hints["x-distillguard-action"] == "allow"
    assert hints["x-distillguard-account"] == "acct_good"
    # the decision's request id is nginx's $request_id, which the upstream also gets (log stream join key)
    assert re.fullmatch(r"[0-9a-f]{32}", hints["x-distillguard-request-id"])
    assert stack["seen"][-1]["request_id"] == hints["x-distillguard-request-id"]
    assert "x-distillguard-failure" not in hints


def test_client_cannot_choose_its_account(stack: dict[str, Any]) -> None:
    r = _openai(stack["main"], "sk-bad", **{"X-Distillguard-Account": "acct_good"})
    assert r.status_code == 403
    assert r.headers["x-distillguard-action"] == "block"


def test_flagged_cluster_member_is_blocked(stack: dict[str, Any]) -> None:
    n = len(stack["seen"])
    r = _openai(stack["main"], "sk-bad")
    assert r.status_code == 403
    assert r.headers["x-distillguard-action"] == "block"
    assert "CLUSTER_RISK" in r.headers["x-distillguard-reasons"]
    assert r.json()["error"]["type"] == "permission_error"
    assert len(stack["seen"]) == n  # never reached the upstream


def test_hydra_replacement_blocked_on_first_request(stack: dict[str, Any]) -> None:
    r = _anthropic(stack["main"], "sk-new")
    assert r.status_code == 403
    assert r.headers["x-distillguard-action"] == "block"
    assert "HYDRA_REPLACEMENT" in r.headers["x-distillguard-reasons"]


def test_challenge_is_401_step_up(stack: dict[str, Any]) -> None:
    r = _openai(stack["main"], "sk-chal")
    assert r.status_code == 401
    assert r.headers["x-distillguard-action"] == "challenge"
    assert r.headers["www-authenticate"].startswith("DistillguardStepUp")
    assert r.headers["x-distillguard-challenge"] == "https://example.test/verify"


def test_degrade_is_served_with_hints_for_the_upstream(stack: dict[str, Any]) -> None:
    r = _openai(stack["main"], "sk-degr")
    assert r.status_code == 200
    hints = stack["seen"][-1]["dg"]
    assert hints["x-distillguard-action"] == "degrade"
    assert hints["x-distillguard-strip-reasoning"] == "1"
    assert hints["x-distillguard-max-tokens"] == "1024"


def test_throttle_is_429_with_retry_after(stack: dict[str, Any]) -> None:
    codes = [_openai(stack["main"], "sk-busy").status_code for _ in range(BURST)]
    assert codes == [200] * BURST
    r = _openai(stack["main"], "sk-busy")
    assert r.status_code == 429
    assert r.headers["x-distillguard-action"] == "throttle"
    assert int(r.headers["retry-after"]) >= 1
    assert "RATE_LIMIT" in r.headers["x-distillguard-reasons"]


def test_no_key_is_401(stack: dict[str, Any]) -> None:
    r = httpx.post(stack["main"] + "/v1/chat/completions", json={"model": "m", "messages": []})
    assert r.status_code == 401
    assert r.headers["x-distillguard-action"] == "unauthenticated"
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_scorer_failure_fail_closed_is_503(stack: dict[str, Any]) -> None:
    r = _openai(stack["main"], "sk-boom")
    assert r.status_code == 503
    assert r.headers["x-distillguard-failure"] == "closed"
    assert r.headers["retry-after"] == "1"


def test_service_down_fail_open_serves_with_failure_header(stack: dict[str, Any]) -> None:
    n = len(stack["seen"])
    r = _openai(stack["down_open"], "sk-bad")  # even a flagged key: nobody can tell
    assert r.status_code == 200
    assert r.headers["x-distillguard-failure"] == "open"
    assert r.json()["model"] == "gpt-test"  # the POST body still reached the upstream
    assert len(stack["seen"]) == n + 1
    assert stack["seen"][-1]["dg"]["x-distillguard-failure"] == "open"


def test_service_down_fail_closed_is_503(stack: dict[str, Any]) -> None:
    n = len(stack["seen"])
    r = _anthropic(stack["down_closed"], "sk-good")
    assert r.status_code == 503
    assert r.headers["x-distillguard-failure"] == "closed"
    assert len(stack["seen"]) == n


def test_metrics_count_what_nginx_saw(stack: dict[str, Any]) -> None:
    text = httpx.get(stack["dg"] + "/metrics").text
    got = {m.group(1): int(m.group(2)) for m in
           re.finditer(r'distillguard_decisions_total\{mode="nginx",action="(\w+)"\} (\d+)', text)}
    assert got.get("block", 0) >= 2 and got.get("throttle", 0) >= 1 and got.get("allow", 0) >= 3

"""Envoy ext_authz HTTP-service contract, spoken to the real uvicorn server the way Envoy does: the
original method, ``path_prefix`` + original path, no body (Content-Length: 0), Host, Authorization and
the headers of the shipped deploy/envoy/envoy.yaml's allowed_headers plus its headers_to_add.
200 allows (headers go upstream per allowed_upstream_headers); any other status is the denial."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from distillguard.online import OnlineScorer, Policy
from distillguard.scoring.defaults import default_model
from distillguard.serve import ServeConfig, ServerThread, create_app, hash_key

ENVOY_YAML = Path(__file__).resolve().parents[1] / "deploy" / "envoy" / "envoy.yaml"
SECRET = "s3cret-for-tests"
KEYS = {"sk-good": "acct_good", "sk-bad": "acct_bad0", "sk-chal": "acct_c0", "sk-degr": "acct_d0",
        "sk-busy": "acct_busy", "sk-boom": "acct_boom"}


class FlakyScorer(OnlineScorer):
    def score_one(self, exchange: dict) -> Any:
        if exchange["account_id"] == "acct_boom":
            raise RuntimeError("scorer failure (test)")
        return super().score_one(exchange)


def _filter() -> dict[str, Any]:
    conf = yaml.safe_load(ENVOY_YAML.read_text())
    hcm = conf["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    return next(f for f in hcm["http_filters"] if f["name"] == "envoy.filters.http.ext_authz")["typed_config"]


def _matches(name: str, patterns: list[dict[str, Any]]) -> bool:
    n = name.lower()
    return any(("exact" in p and n == p["exact"].lower()) or ("prefix" in p and n.startswith(p["prefix"].lower()))
               for p in patterns)


def envoy_check(base: str, method: str, path: str, client_headers: dict[str, str]) -> httpx.Response:
    """The authorization request Envoy sends for a client request (what the shipped config forwards)."""
    svc = _filter()["http_service"]
    req = svc["authorization_request"]
    allowed = req["allowed_headers"]["patterns"]
    headers = {"host": "api.example.test", "content-length": "0"}
    for k, v in client_headers.items():
        if k.lower() == "authorization" or _matches(k, allowed):
            headers[k.lower()] = v
    for h in req.get("headers_to_add", []):
        headers[h["key"]] = h["value"].replace("change-me", SECRET)
    return httpx.request(method, base + svc["path_prefix"] + path, headers=headers)


def _service(fail_mode: str, tmp: Path) -> ServerThread:
    keymap = tmp / f"keys-{fail_mode}.json"
    keymap.write_text('{"keys": [' + ", ".join(f'{{"sha256": "{hash_key(k)}", "account_id": "{a}"}}'
                                               for k, a in KEYS.items()) + "]}")
    policy = Policy.from_dict({"tiers": [{"action": "throttle", "min_score": 0.35},
                                         {"action": "degrade", "min_score": 0.45, "strip_reasoning": True,
                                          "max_tokens": 512},
                                         {"action": "challenge", "min_score": 0.5},
                                         {"action": "block", "min_score": 0.8}],
                               "rate_limits": {"default": {"account": {"rate": 0.01, "burst": 2}}}})
    cfg = ServeConfig(key_map=keymap, fail_mode=fail_mode, shared_secret=SECRET)
    srv = ServerThread(create_app(FlakyScorer(default_model(), policy), cfg)).start()
    det = [{"account_id": f"{p}{i}", "score": s, "flagged": s >= 0.5, "cluster_id": c}
           for c, p, s in (("cb", "acct_bad", 0.99), ("cc", "acct_c", 0.6), ("cd", "acct_d", 0.47)) for i in range(3)]
    r = httpx.post(srv.url + "/v1/batch", json={"detections": det}, headers={"x-distillguard-secret": SECRET})
    assert r.status_code == 200, r.text
    return srv


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    tmp = tmp_path_factory.mktemp("envoy")
    closed = _service("closed", tmp)
    try:
        opened = _service("open", tmp)
        try:
            yield {"closed": closed.url, "open": opened.url}
        finally:
            opened.stop()
    finally:
        closed.stop()


def _bearer(key: str, **kw: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "User-Agent": "openai-python/1.0", "X-Forwarded-For": "198.51.100.7",
            "X-Request-Id": "rid-" + key, **kw}


def test_shipped_config_has_the_contract_fields() -> None:
    f = _filter()
    assert f["failure_mode_allow"] is True and "status_on_error" in f
    svc = f["http_service"]
    assert svc["path_prefix"] == "/v1/authz/envoy"
    assert svc["authorization_request"]["allowed_headers"]["patterns"]
    assert svc["authorization_response"]["allowed_upstream_headers"]["patterns"]


def test_allow_is_200_and_its_headers_are_forwarded_upstream(services: dict[str, str]) -> None:
    r = envoy_check(services["closed"], "POST", "/v1/chat/completions", _bearer("sk-good"))
    assert r.status_code == 200
    assert r.headers["x-distillguard-action"] == "allow"
    assert r.headers["x-distillguard-account"] == "acct_good"
    assert r.headers["x-distillguard-request-id"] == "rid-sk-good"  # Envoy's x-request-id is kept
    upstream = _filter()["http_service"]["authorization_response"]["allowed_upstream_headers"]["patterns"]
    dg = [k for k in r.headers if k.lower().startswith("x-distillguard")]
    assert dg and all(_matches(k, upstream) for k in dg)


@pytest.mark.parametrize("method", ["GET", "DELETE", "PUT"])
def test_any_original_method_is_checked(services: dict[str, str], method: str) -> None:
    r = envoy_check(services["closed"], method, "/v1/models", _bearer("sk-bad"))
    assert r.status_code == 403
    assert r.headers["x-distillguard-action"] == "block"


def test_block_is_403_with_body_and_client_headers(services: dict[str, str]) -> None:
    r = envoy_check(services["closed"], "POST", "/v1/messages", {"x-api-key": "sk-bad"})
    assert r.status_code == 403
    assert r.json()["error"]["action"] == "block"
    assert "CLUSTER_RISK" in r.headers["x-distillguard-reasons"]
    client = _filter()["http_service"]["authorization_response"]["allowed_client_headers"]["patterns"]
    assert _matches("x-distillguard-reasons", client) and _matches("content-type", client)


def test_challenge_is_401_with_www_authenticate(services: dict[str, str]) -> None:
    r = envoy_check(services["closed"], "POST", "/v1/chat/completions", _bearer("sk-chal"))
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("DistillguardStepUp")
    assert r.headers["x-distillguard-action"] == "challenge"


def test_degrade_is_200_with_hints(services: dict[str, str]) -> None:
    r = envoy_check(services["closed"], "POST", "/v1/chat/completions", _bearer("sk-degr"))
    assert r.status_code == 200
    assert r.headers["x-distillguard-action"] == "degrade"
    assert r.headers["x-distillguard-strip-reasoning"] == "1"
    assert r.headers["x-distillguard-max-tokens"] == "512"


def test_throttle_is_429_with_retry_after(services: dict[str, str]) -> None:
    codes = [envoy_check(services["closed"], "POST", "/v1/chat/completions", _bearer("sk-busy")).status_code
             for _ in range(2)]
    assert codes == [200, 200]
    r = envoy_check(services["closed"], "POST", "/v1/chat/completions", _bearer("sk-busy"))
    assert r.status_code == 429
    assert int(r.headers["retry-after"]) >= 1
    assert r.headers["x-distillguard-action"] == "throttle"


def test_missing_key_is_401(services: dict[str, str]) -> None:
    r = envoy_check(services["closed"], "POST", "/v1/chat/completions", {"User-Agent": "curl"})
    assert r.status_code == 401
    assert r.headers["x-distillguard-action"] == "unauthenticated"


def test_wrong_shared_secret_is_refused(services: dict[str, str]) -> None:
    r = httpx.post(services["closed"] + "/v1/authz/envoy/v1/chat/completions", headers=_bearer("sk-good"))
    assert r.status_code == 401
    assert r.headers["x-distillguard-reasons"] == "BAD_SECRET"


def test_scorer_failure_fail_closed_is_503(services: dict[str, str]) -> None:
    r = envoy_check(services["closed"], "POST", "/v1/chat/completions", _bearer("sk-boom"))
    assert r.status_code == 503
    assert r.headers["x-distillguard-failure"] == "closed"


def test_scorer_failure_fail_open_is_200_with_failure_header(services: dict[str, str]) -> None:
    r = envoy_check(services["open"], "POST", "/v1/chat/completions", _bearer("sk-boom"))
    assert r.status_code == 200
    assert r.headers["x-distillguard-failure"] == "open"
    assert r.headers["x-distillguard-action"] == "allow"


def test_metrics_label_envoy_mode(services: dict[str, str]) -> None:
    text = httpx.get(services["closed"] + "/metrics", headers={"x-distillguard-secret": SECRET}).text
    assert re.search(r'distillguard_decisions_total\{mode="envoy",action="block"\} [1-9]', text)
    assert re.search(r'distillguard_failures_total\{cause="error"\} [1-9]', text)

"""The lean edge server (``edge_port``) answers the nginx and Envoy endpoints exactly as the ASGI routes
do: two services with identical state get the same request sequence, one on its uvicorn port, one on
its edge port, and every status, header and body must match (keep-alive and pipelining included)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pyarrow as pa
import pytest

from distillguard.online import OnlineScorer, Policy, load_batch
from distillguard.scoring.defaults import default_model
from distillguard.serve import KeyMap, ServeConfig, ServerThread, create_app, hash_key
from distillguard.serve.config import _parse_env

MODEL = default_model()
TIGHT = Policy.from_dict({"tiers": [{"action": "throttle", "min_score": 0.35}, {"action": "block", "min_score": 0.8}],
                          "rate_limits": {"default": {"account": {"rate": 0.001, "burst": 2}}}})
KEYS = KeyMap({hash_key("sk-a"): ("acct_a", None), hash_key("sk-b"): ("acct_b", "key_b"),
               hash_key("sk-bad"): ("acct_bad", None)})


def _scorer() -> OnlineScorer:
    s = OnlineScorer(MODEL, TIGHT)
    s.load_batch(load_batch(MODEL, pa.Table.from_pylist(
        [{"account_id": "acct_bad", "score": 0.99, "flagged": True, "cluster_id": "c1"},
         {"account_id": "acct_b", "score": 0.01, "flagged": False, "cluster_id": None}])))
    return s


@contextmanager
def _service(loop: Any = None, **cfg: Any) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    """(client of the uvicorn port, client of the edge port) of one service."""
    cfg.setdefault("decision_budget_ms", 60_000)  # no load shedding on a busy test machine: compare real answers
    app = create_app(_scorer(), ServeConfig(edge_port=0, **cfg), KEYS)
    with ServerThread(app, loop_factory=loop) as srv, httpx.Client(base_url=srv.url) as main, \
            httpx.Client(base_url=f"http://127.0.0.1:{app.state.edge_port}") as edge:
        yield main, edge


def _requests() -> list[tuple[str, dict[str, str]]]:
    n = "/v1/auth/nginx"
    e = "/v1/authz/envoy/v1/models/m-large:generateContent?alt=sse"
    return [
        (n, {"Authorization": "Bearer sk-a", "X-Request-ID": "r1", "X-Real-IP": "198.51.100.7"}),
        (n, {"x-api-key": "sk-a", "X-Request-ID": "r2", "X-Original-URI": "/v1/chat/completions"}),
        (n, {"Authorization": "Bearer sk-a", "X-Request-ID": "r3"}),  # bucket of 2: throttled
        (n, {"Authorization": "Bearer sk-unknown", "X-Request-ID": "r4", "User-Agent": "ua/1"}),
        (n, {"X-Request-ID": "r5"}),  # no credentials: 401
        (n, {"Authorization": "Bearer sk-bad", "X-Request-ID": "r6"}),  # batch-flagged: blocked
        (e, {"Authorization": "Bearer sk-b", "X-Request-ID": "r7", "X-Forwarded-For": "203.0.113.9, 10.0.0.1"}),
        (e, {"Authorization": "Bearer sk-b", "X-Request-ID": "r8"}),
        (e, {"Authorization": "Bearer sk-b", "X-Request-ID": "r9"}),  # throttled: 429 with a JSON body
        (e, {"Authorization": "Bearer sk-bad", "X-Request-ID": "r10"}),
        (e, {"X-Request-ID": "r11"}),
    ]


def _seen(r: httpx.Response) -> tuple[int, dict[str, str], bytes]:
    keep = {k: v for k, v in r.headers.items() if k.startswith("x-distillguard-")
            or k in ("retry-after", "www-authenticate", "content-type", "content-length")}
    return r.status_code, keep, r.content


@pytest.mark.parametrize(("thread", "uvloop"), [(True, False), (False, False), (True, True), (False, True)])
def test_edge_port_answers_exactly_as_the_asgi_routes(thread: bool, uvloop: bool) -> None:
    loop = pytest.importorskip("uvloop").new_event_loop if uvloop else None  # what `distillguard serve` runs on
    with _service(loop, scorer_thread=thread) as (main_a, _), _service(loop, scorer_thread=thread) as (_, edge_b):
        for path, headers in _requests():
            want, got = _seen(main_a.get(path, headers=headers)), _seen(edge_b.get(path, headers=headers))
            assert got == want, (path, headers, got, want)
        statuses = [main_a.get(p, headers=h).status_code for p, h in _requests()]
        assert {200, 401, 403, 429} <= set(statuses)  # the sequence covers allow, deny and throttle paths
        assert edge_b.get("/healthz").status_code == 404  # only the edge endpoints live on the edge port


def test_edge_port_shared_secret_and_pipelining() -> None:
    with _service(shared_secret="s3") as (main, edge):
        assert _seen(edge.get("/v1/auth/nginx", headers={"Authorization": "Bearer sk-a"})) == \
            _seen(main.get("/v1/auth/nginx", headers={"Authorization": "Bearer sk-a"}))
        assert edge.get("/v1/auth/nginx").status_code == 401
        port = edge.base_url.port
        raw = b"".join(b"GET /v1/auth/nginx HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-b\r\n"
                       b"X-Distillguard-Secret: s3\r\nX-Request-ID: p%d\r\n\r\n" % i for i in range(3))
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(raw + b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        heads = [h for h in data.split(b"HTTP/1.1 ")[1:]]
        assert [h[:3] for h in heads] == [b"200", b"200", b"403", b"404"]  # in order; the 3rd spent bucket
        assert [h.split(b"x-distillguard-request-id: ")[1][:2] for h in heads[:2]] == [b"p0", b"p1"]


def test_edge_port_config() -> None:
    assert _parse_env("edge_port", "8788") == 8788 and _parse_env("edge_port", "off") is None
    assert ServeConfig.load(env={"DISTILLGUARD_SERVE_EDGE_PORT": "0"}).edge_port == 0
    assert ServeConfig().edge_port is None


def test_edge_port_closes_with_the_service() -> None:
    with _service() as (_, edge):
        port = edge.base_url.port
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(b"GET /v1/auth/nginx HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-a\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK\r\n")  # kept alive
    with sock:
        assert sock.recv(65536) == b""  # closed at shutdown, keep-alive or not
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()

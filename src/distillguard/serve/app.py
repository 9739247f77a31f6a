"""The HTTP decision service: ``create_app(scorer, config)`` → FastAPI app, served by uvicorn.

Thin HTTP modes over :class:`~distillguard.serve.core.DecisionCore` (docs/serve.md):

- ``POST /v1/decide``: generic mode, JSON exchange in, contract decision + gateway hints out;
- ``GET|POST /v1/auth/nginx``: nginx ``auth_request`` (headers only; 200 / 401 / 403 + headers);
- ``* /v1/authz/envoy/{path}``: Envoy ``ext_authz`` HTTP service (200 allows; 429 / 401 / 403 / 503 deny);
- ``POST /v1/learn``, ``/v1/accounts``, ``/v1/batch``, ``/v1/snapshot``: state from the log stream and batch runs;
- ``GET /healthz``, ``GET /metrics`` (Prometheus text).
"""

from __future__ import annotations

import gc
import hmac
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from distillguard.online.scorer import OnlineScorer
from distillguard.serve.config import KeyMap, ServeConfig
from distillguard.serve.core import DecisionCore, H, edge_exchange, render

__all__ = ["ENVOY_PREFIX", "NGINX_PATH", "create_app"]

_JSON = "application/json"


def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(obj), status_code=status, headers=headers, media_type=_JSON)


NGINX_PATH = "/v1/auth/nginx"
ENVOY_PREFIX = "/v1/authz/envoy"


async def _send(send: Send, status: int, headers: dict[str, str], body: bytes) -> None:
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1", "replace")) for k, v in headers.items()]
    raw.append((b"content-length", str(len(body)).encode()))
    if body:
        raw.append((b"content-type", _JSON.encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class _EdgeFastPath:
    """Pure ASGI front for the two per-request edge endpoints. FastAPI's routing, request and response
    objects cost ~180 µs per request on the build machine (measured with a no-op scorer), as much as
    uvicorn itself; the gateway modes need none of it. Everything else goes to the FastAPI app."""

    def __init__(self, app: ASGIApp, edge: Any) -> None:
        self.app, self.edge = app, edge

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            p = scope["path"]
            if p == NGINX_PATH or p.startswith(ENVOY_PREFIX + "/"):
                await self.edge(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(scorer: OnlineScorer, config: ServeConfig | None = None, keymap: KeyMap | None = None) -> FastAPI:
    """The decision service around one scorer. Start-up restores ``config.snapshot_path`` when it exists;
    shut-down learns what is parked, flushes the audit log and writes the snapshot."""
    config = config or ServeConfig()
    core = DecisionCore(scorer, config, keymap)
    secret = config.shared_secret.encode() if config.shared_secret else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        core.restore()
        warm_up = getattr(scorer, "warm_up", None)
        if callable(warm_up):
            warm_up()
        for m, c in config.model_ceilings.items():  # a model's documented max_tokens (docs/online.md)
            ctx = getattr(getattr(scorer, "features", None), "context", None)
            if ctx is not None:
                ctx.ceiling[m] = int(c)
        # the restored state is long-lived: move it (and the imported code) out of the collector's
        # generations, so that a full collection does not scan it while requests wait (it would stall
        # the loop for tens of ms with a large state); given back at shutdown
        gc.collect()
        gc.freeze()
        await core.start()
        edge_server = None
        if config.edge_port is not None:  # the lean HTTP/1.1 server for the two edge endpoints
            from distillguard.serve.edge import start_edge_server

            edge_server = await start_edge_server(answer, config.host, config.edge_port)
            app.state.edge_port = edge_server.port
        try:
            yield
        finally:
            if edge_server is not None:
                edge_server.close()
            await core.stop()
            gc.unfreeze()

    app = FastAPI(title="distillguard decision service", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.core = core

    async def answer(headers: dict[str, str], path: str, qs: bytes, peer: str | None) -> tuple[int, dict[str, str], bytes]:
        """``/v1/auth/nginx`` and ``/v1/authz/envoy/{path}``: (status, headers, body) for a request's
        lower-cased headers, path, query string and TCP peer. Served by the ASGI app and, with
        ``edge_port``, by the lean edge server (``serve.edge``): the same answer either way."""
        if secret is not None and not hmac.compare_digest(headers.get("x-distillguard-secret", "").encode(), secret):
            core.counts["unauthorised", "secret"] += 1
            return 401, {H["action"]: "block", H["reasons"]: "BAD_SECRET"}, \
                b'{"error":"missing or wrong X-Distillguard-Secret"}'
        if path == NGINX_PATH:
            ex, _ = edge_exchange(headers, peer, headers.get("x-original-uri"), core.keymap)
            v = await core.decide(ex, mode="nginx")
            status, hdrs = render(v, "nginx", config.challenge_url)
            return status, hdrs, b""
        uri = path[len(ENVOY_PREFIX):] + ("?" + qs.decode("latin-1") if qs else "")
        ex, _ = edge_exchange(headers, peer, uri, core.keymap)
        v = await core.decide(ex, mode="envoy")
        status, hdrs = render(v, "envoy", config.challenge_url)
        body = b"" if status == 200 else orjson.dumps(
            {"error": {"type": "distillguard", "action": v.action, "reasons": hdrs.get(H["reasons"], ""),
                       "request_id": hdrs.get(H["request_id"])}})
        return status, hdrs, body

    async def edge(scope: Scope, receive: Receive, send: Send) -> None:
        """The per-request hot path, in plain ASGI."""
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        peer = scope["client"][0] if scope.get("client") else None
        status, hdrs, body = await answer(headers, scope["path"], scope.get("query_string") or b"", peer)
        await _send(send, status, hdrs, body)

    app.state.edge_answer = answer
    app.add_middleware(_EdgeFastPath, edge=edge)

    @app.exception_handler(orjson.JSONDecodeError)
    async def bad_json(request: Request, exc: orjson.JSONDecodeError) -> Response:
        return _json({"error": f"body is not JSON: {exc}"}, 400)

    def denied(request: Request) -> Response | None:
        """Shared-secret check (when configured): the decision service must not be an open oracle."""
        if secret is None:
            return None
        got = request.headers.get("x-distillguard-secret", "").encode()
        if hmac.compare_digest(got, secret):
            return None
        core.counts["unauthorised", "secret"] += 1
        return _json({"error": "missing or wrong X-Distillguard-Secret"}, 401,
                     {H["action"]: "block", H["reasons"]: "BAD_SECRET"})

    async def body_json(request: Request) -> Any:
        raw = await request.body()
        return orjson.loads(raw) if raw else None

    @app.get("/healthz")
    async def healthz() -> Response:
        return _json({"status": "ok", "in_flight": core.in_flight, "uptime_s": round(time.time() - core.started_at, 1),
                      "fail_mode": config.fail_mode, "edge_learn": config.edge_learn})

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        if (r := denied(request)) is not None:
            return r
        return Response(core.metrics_text(), media_type="text/plain; version=0.0.4")

    @app.post("/v1/decide")
    async def decide(request: Request, learn: bool = True) -> Response:
        if (r := denied(request)) is not None:
            return r
        ex = await body_json(request)
        if not isinstance(ex, dict):
            return _json({"error": "body must be one exchange object"}, 400)
        if not ex.get("account_id"):
            hdr, _ = edge_exchange(request.headers, request.client.host if request.client else None, None,
                                   core.keymap)
            if hdr is not None:
                ex = {**{k: v for k, v in hdr.items() if v is not None}, **{k: v for k, v in ex.items() if v is not None}}
                ex["account_id"] = hdr["account_id"]
        if not ex.get("account_id"):
            v = await core.decide(None, mode="generic")
        else:
            ex.setdefault("request_id", uuid.uuid4().hex)
            if ex.get("ts") is None:
                ex["ts"] = time.time_ns() // 1000
            ex.setdefault("model", "unknown")
            v = await core.decide(ex, learn=learn, mode="generic")
        status, headers = render(v, "generic", config.challenge_url)
        d = v.decision
        out: dict[str, Any] = {
            "decision": d.to_contract() if d is not None else None,
            "action": v.action, "http_status": status, "headers": headers, "failure": v.failure,
            "account_id": d.account_id if d is not None else None,
            "strip_reasoning": bool(d and d.strip_reasoning), "max_tokens": d.max_tokens if d else None,
            "retry_after_s": d.retry_after_s if d else None,
        }
        code = 503 if d is None and v.failure != "credentials" and config.fail_mode == "closed" else 200
        return _json(out, code)

    @app.post("/v1/learn")
    async def learn(request: Request) -> Response:
        if (r := denied(request)) is not None:
            return r
        data = await body_json(request)
        rows = data.get("exchanges") if isinstance(data, dict) else data
        if not isinstance(rows, list):
            return _json({"error": "body must be a list of exchanges or {\"exchanges\": [...]}"}, 400)
        return _json({"outcomes": await core.learn(rows)})

    @app.post("/v1/accounts")
    async def accounts(request: Request) -> Response:
        if (r := denied(request)) is not None:
            return r
        data = await body_json(request)
        rows = data.get("accounts") if isinstance(data, dict) else data
        if not isinstance(rows, list) or not all(isinstance(r, dict) and r.get("account_id") for r in rows):
            return _json({"error": "body must be a list of accounts rows (each with account_id)"}, 400)
        return _json({"learned": await core.learn_accounts(rows)})

    @app.post("/v1/batch")
    async def batch(request: Request) -> Response:
        if (r := denied(request)) is not None:
            return r
        data = await body_json(request)
        if not isinstance(data, dict) or "detections" not in data:
            return _json({"error": "body must be {\"detections\": rows or path, \"clusters\": rows, path or null}"},
                         400)
        try:
            res = await core.load_batch(data["detections"], data.get("clusters"))
        except Exception as e:  # a bad path or table: the caller's error, the service keeps running
            return _json({"error": f"could not load the batch view: {e}"}, 400)
        return _json(res)

    @app.post("/v1/snapshot")
    async def snapshot(request: Request) -> Response:
        if (r := denied(request)) is not None:
            return r
        p = await core.snapshot()
        return _json({"snapshot": None if p is None else str(p)}, 200 if p is not None else 409)

    return app

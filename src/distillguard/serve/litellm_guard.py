"""LiteLLM proxy guardrail: score every request with :class:`~distillguard.online.OnlineScorer` before
LiteLLM calls the model, and learn from it after.

:class:`DistillGuardHook` is a LiteLLM ``CustomLogger``. Register the module-level instance in the proxy
config (``litellm_settings: callbacks: distillguard.serve.litellm_guard.proxy_handler_instance``, or the
``custom_callbacks.py`` in ``deploy/litellm/``); it is built on first access from ``DISTILLGUARD_*``
environment variables or the YAML file ``DISTILLGUARD_CONFIG`` names (:meth:`GuardConfig.from_env`).

- ``async_pre_call_hook``: the request → a contract ``exchanges`` row (:func:`build_exchange`) →
  ``score_one`` → allow returns the request unchanged; degrade rewrites it (:func:`degrade_request`);
  throttle, challenge and block raise ``fastapi.HTTPException`` (429 + ``Retry-After``, 401 by default,
  403; :data:`STATUS`), with the reasons in the body. LiteLLM turns the exception into the client's
  error response, status and headers kept.
- ``async_post_call_success_hook`` (non-streaming, awaited before the response leaves, so the next
  request of the account already sees it) and ``async_log_success_event`` (streaming): ``learn_one``
  with the usage tokens of the response; a rejected request is learned at once (it is evidence too,
  as in replay). Content signals are off by default (~7-11 ms a row, ``content_signals: true``).

LiteLLM is imported only here, and only if installed, so distillguard does not depend on it. State
is per process (each proxy worker has its own scorer) unless ``redis_url`` shares it. See
``docs/litellm.md``.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from distillguard.online.scorer import Decision, OnlineScorer

try:  # the proxy's base class; without litellm the pure helpers below still import (docs, unit use)
    from litellm.integrations.custom_logger import CustomLogger as _Base
except ImportError:  # pragma: no cover - exercised only where litellm is absent
    _Base = object  # type: ignore[assignment,misc]

__all__ = ["ACCOUNT_SOURCES", "STATUS", "DistillGuardHook", "GuardConfig", "account_id_for", "build_exchange",
           "degrade_request", "rejection"]

log = logging.getLogger("distillguard.litellm")

#: Where an account id may come from, in the order ``account_from`` lists them (first non-empty wins):
#: ``key`` the hashed virtual key (LiteLLM's ``user_api_key_dict.api_key``; the default: the unit that is
#: billed and revoked), ``user`` LiteLLM's internal user_id, ``team``, ``org``, ``end_user`` (the
#: request's ``user`` field / LiteLLM end-user id: one key serving many customers), ``header`` (the
#: ``account_header``, only behind a trusted edge that sets it: a client could send any value).
ACCOUNT_SOURCES = ("key", "user", "team", "org", "end_user", "header")

#: HTTP status of each rejecting action. Challenge is 401 by default (step-up verification is
#: re-authentication; OpenAI SDKs raise AuthenticationError, distinct from a block's
#: PermissionDeniedError); ``challenge_status: 403`` where a 401 would make clients rotate keys.
STATUS = {"throttle": 429, "challenge": 401, "block": 403}

#: Request fields that ask for reasoning: dropped on a ``strip_reasoning`` degrade.
_REASONING_FIELDS = ("thinking", "reasoning_effort", "reasoning")
#: LiteLLM call types that generate text from a prompt: the ones scored (embeddings, files, ... pass).
_GENERATIVE = frozenset(p + c for p in ("", "a") for c in ("completion", "text_completion", "anthropic_messages",
                                                           "responses", "generate_content", "generate_content_stream"))
_DECISION_KEY = "distillguard_decision"  # in the request metadata: the decision, for the response headers
_TRUE = {"1", "true", "yes", "on"}


@dataclass
class GuardConfig:
    """How the hook is built; every field can be set in YAML (``DISTILLGUARD_CONFIG``) or by its
    environment variable ``DISTILLGUARD_<FIELD>`` (environment wins).

    Files are read with the loaders ``distillguard replay`` uses: ``Policy.from_yaml``,
    ``RiskModel.load``, ``load_batch``; unset means the packaged defaults / no batch view.
    """

    policy: str | None = None  #: policy YAML (default: the packaged policy.yaml)
    calibration: str | None = None  #: RiskModel calibration JSON (default: the shipped one)
    detections: str | None = None  #: batch ``detections`` (JSONL/Parquet) loaded at start: flagged → contained
    clusters: str | None = None  #: optional ``clusters`` table for the batch view's cluster sizes
    reload_every_s: float = 60.0  #: check this often whether ``detections`` changed; reload it if so (0: never)
    snapshot: str | None = None  #: restored at start if present; written every ``snapshot_every_s`` and at exit
    snapshot_every_s: float = 300.0
    redis_url: str | None = None  #: share state between proxy workers/replicas (``RedisState``); default in process
    redis_prefix: str = "dg"  #: Redis key prefix (one per deployment sharing a Redis)
    flush_every_s: float = 0.1  #: how often buffered Redis writes are sent (at the latest; each decision syncs too)
    audit: str | None = None  #: directory of the Parquet audit log (one row per decision); none by default
    exchanges_log: str | None = None  #: JSONL of every learned exchange (contract ``exchanges`` row, with
    #: the prompt text): the gateway as the log source for ``distillguard ingest`` / batch detection
    account_from: str = "key"  #: comma list of ACCOUNT_SOURCES, first non-empty wins
    account_header: str = "x-distillguard-account"
    challenge_status: int = 401
    step_up_url: str | None = None  #: where a challenged client verifies (put in the 401/403 body)
    content_signals: bool = False  #: compute content signals when learning (~7-11 ms a request, off the hot path)
    fail_open: bool = True  #: scorer error → serve (True) or 503 (False)
    decision_headers: bool = False  #: add x-distillguard-action/-score to responses (tells a client it is watched)
    model_ceilings: dict[str, int] = field(default_factory=dict)  #: model → documented max_tokens limit

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> GuardConfig:
        """YAML file ``DISTILLGUARD_CONFIG`` (if set), overridden field by field by ``DISTILLGUARD_<FIELD>``."""
        env = os.environ if environ is None else environ
        data: dict[str, Any] = {}
        path = env.get("DISTILLGUARD_CONFIG")
        if path:
            import yaml

            data = yaml.safe_load(Path(path).read_text()) or {}
            base = Path(path).resolve().parent
            for k in ("policy", "calibration", "detections", "clusters", "snapshot", "audit", "exchanges_log"):
                if data.get(k):  # relative paths in the YAML are relative to the YAML
                    data[k] = str(base / str(data[k]))
        known = {f.name: f for f in fields(cls)}
        unknown = set(data) - set(known)
        if unknown:
            raise ValueError(f"{path}: unknown keys {sorted(unknown)} (known: {sorted(known)})")
        for name in known:
            v = env.get(f"DISTILLGUARD_{name.upper()}")
            if v is not None and name != "model_ceilings":
                data[name] = v
        for name in ("content_signals", "fail_open", "decision_headers"):
            if isinstance(data.get(name), str):
                data[name] = data[name].strip().lower() in _TRUE
        for name in ("snapshot_every_s", "flush_every_s", "reload_every_s"):
            if name in data:
                data[name] = float(data[name])
        if "challenge_status" in data:
            data["challenge_status"] = int(data["challenge_status"])
            if data["challenge_status"] not in (401, 403):
                raise ValueError(f"challenge_status must be 401 or 403, got {data['challenge_status']}")
        cfg = cls(**data)
        bad = [s for s in cfg.sources if s not in ACCOUNT_SOURCES]
        if bad:
            raise ValueError(f"account_from: unknown {bad}; use {', '.join(ACCOUNT_SOURCES)}")
        return cfg

    @property
    def sources(self) -> list[str]:
        return [s.strip() for s in self.account_from.split(",") if s.strip()]

    def build_scorer(self) -> OnlineScorer:
        """The scorer, with its batch view and snapshot loaded (same loaders as ``distillguard replay``)."""
        from distillguard.online.batchview import load_batch
        from distillguard.online.policy import Policy
        from distillguard.scoring.defaults import default_model
        from distillguard.scoring.risk import RiskModel

        model = RiskModel.load(self.calibration) if self.calibration else default_model()
        policy = Policy.from_yaml(self.policy) if self.policy else Policy.default()
        if self.redis_url:
            from distillguard.online.redis_state import RedisState

            scorer = OnlineScorer(model, policy, state=RedisState(self.redis_url, prefix=self.redis_prefix))
        else:
            scorer = OnlineScorer(model, policy)
        if self.snapshot and Path(self.snapshot).exists():
            try:
                scorer.restore(self.snapshot)
            except Exception:  # e.g. written by another distillguard version
                if not self.fail_open:
                    raise
                log.exception("distillguard: cannot restore %s; starting with empty state", self.snapshot)
        if self.detections:
            scorer.load_batch(load_batch(model, self.detections, self.clusters))
        for m, c in self.model_ceilings.items():
            scorer.features.context.ceiling[m] = int(c)
        return scorer


# -- request → exchange ------------------------------------------------------------------------------
def _metadata(data: dict) -> dict:
    """LiteLLM puts headers/IP/UA under ``metadata`` (chat) or ``litellm_metadata`` (some routes)."""
    for k in ("metadata", "litellm_metadata"):
        m = data.get(k)
        if isinstance(m, dict) and ("headers" in m or "requester_ip_address" in m):
            return m
    m = data.get("metadata")
    return m if isinstance(m, dict) else {}


def _text(content: Any) -> str:
    """Message content as text: a string, or the text parts of an OpenAI/Anthropic content list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _header(headers: dict, name: str) -> str | None:
    name = name.lower()
    for k, v in headers.items():
        if str(k).lower() == name:
            return str(v) if v not in (None, "") else None
    return None


def account_id_for(sources: list[str], user_api_key_dict: Any, data: dict, account_header: str) -> str | None:
    """The first non-empty id among ``sources`` (see :data:`ACCOUNT_SOURCES`); prefixed with its source
    (``key:``, ``user:``, ``end_user:`` ...) so ids from different sources never collide.

    >>> class K: api_key = "hash1"; user_id = None; end_user_id = None
    >>> account_id_for(["end_user", "key"], K(), {"user": "cust-7"}, "x")
    'end_user:cust-7'
    >>> account_id_for(["end_user", "key"], K(), {}, "x")
    'key:hash1'
    """
    md = _metadata(data)
    for src in sources:
        v: Any = None
        if src == "key":
            v = getattr(user_api_key_dict, "api_key", None) or getattr(user_api_key_dict, "token", None) \
                or md.get("user_api_key_hash")
        elif src == "user":
            v = getattr(user_api_key_dict, "user_id", None) or md.get("user_api_key_user_id")
        elif src == "team":
            v = getattr(user_api_key_dict, "team_id", None) or md.get("user_api_key_team_id")
        elif src == "org":
            v = getattr(user_api_key_dict, "org_id", None) or md.get("user_api_key_org_id")
        elif src == "end_user":
            v = getattr(user_api_key_dict, "end_user_id", None) or data.get("user") \
                or md.get("user_api_key_end_user_id")
            if not v and isinstance(data.get("metadata"), dict):  # Anthropic shape: metadata.user_id
                v = data["metadata"].get("user_id")
        elif src == "header":
            v = _header(md.get("headers") or {}, account_header)
        if v:
            return f"{src}:{v}"
    return None


def build_exchange(data: dict, user_api_key_dict: Any, account_id: str, now_us: int | None = None) -> dict[str, Any]:
    """A contract ``exchanges`` row from what LiteLLM hands the pre-call hook (usage filled in later).

    ``client_ip`` is LiteLLM's ``requester_ip_address``: the socket peer, or the X-Forwarded-For value
    when the proxy runs with ``general_settings: use_x_forwarded_for: true`` (its first address: the client).

    >>> ex = build_exchange({"model": "m", "messages": [{"role": "system", "content": "be brief"},
    ...     {"role": "user", "content": "hi"}], "max_tokens": 50,
    ...     "metadata": {"requester_ip_address": "203.0.113.9, 10.0.0.1", "user_agent": "sdk/1"}},
    ...     None, "key:h", now_us=0)
    >>> ex["prompt"], ex["system"], ex["client_ip"], ex["max_tokens"], ex["turn_index"]
    ('hi', 'be brief', '203.0.113.9', 50, 0)
    """
    md = _metadata(data)
    msgs = data.get("messages") if isinstance(data.get("messages"), list) else []
    users = [m for m in msgs if isinstance(m, dict) and m.get("role") == "user"]
    system = "\n".join(_text(m.get("content")) for m in msgs if isinstance(m, dict)
                       and m.get("role") in ("system", "developer"))
    if not system and data.get("system") is not None:  # Anthropic messages shape
        system = _text(data["system"])
    prompt = _text(users[-1].get("content")) if users else _text(data.get("prompt") or data.get("input") or "")
    ip = str(md.get("requester_ip_address") or "").split(",")[0].strip() or None
    headers = md.get("headers") or {}
    thinking = data.get("thinking")
    mt = data.get("max_tokens", data.get("max_completion_tokens"))
    return {
        "request_id": str(data.get("litellm_call_id") or uuid.uuid4()),
        "ts": time.time_ns() // 1000 if now_us is None else now_us,
        "account_id": account_id,
        "api_key_id": getattr(user_api_key_dict, "api_key", None) or md.get("user_api_key_hash"),
        "client_ip": ip,
        "user_agent": md.get("user_agent") or _header(headers, "user-agent"),
        "model": str(data.get("model") or ""),
        "system": system or None,
        "prompt": prompt,
        "conversation_id": md.get("session_id") or data.get("prompt_cache_key"),
        "turn_index": max(len(users) - 1, 0),
        "n_tools": len(data["tools"]) if isinstance(data.get("tools"), list) else 0,
        "thinking": bool(data.get("reasoning_effort") or data.get("reasoning")
                         or (isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive"))),
        "max_tokens": int(mt) if isinstance(mt, int | float) else None,
    }


def _usage(exchange: dict, response: Any) -> None:
    """Fill input/output tokens, reasoning tokens and finish_reason from an OpenAI- or Anthropic-shaped
    response (object or dict)."""
    def get(o: Any, k: str) -> Any:
        return o.get(k) if isinstance(o, dict) else getattr(o, k, None)

    u = get(response, "usage")
    if u is not None:
        exchange["input_tokens"] = get(u, "prompt_tokens") or get(u, "input_tokens")
        exchange["output_tokens"] = get(u, "completion_tokens") or get(u, "output_tokens")
        det = get(u, "completion_tokens_details")
        if det is not None:
            exchange["reasoning_tokens"] = get(det, "reasoning_tokens")  # not a contract column; kept for logs
    choices = get(response, "choices")
    if isinstance(choices, list) and choices:
        exchange["finish_reason"] = get(choices[0], "finish_reason")
    elif get(response, "stop_reason") is not None:  # Anthropic messages shape
        exchange["finish_reason"] = get(response, "stop_reason")


# -- decision → request / error ----------------------------------------------------------------------
def degrade_request(data: dict, decision: Decision) -> dict:
    """Apply a degrade in place: drop the reasoning request fields, cap max_tokens (and
    max_completion_tokens). Returns ``data``.

    >>> d = Decision("r", "degrade", 0.46, [], "a", strip_reasoning=True, max_tokens=1024)
    >>> degrade_request({"max_tokens": 4000, "reasoning_effort": "high"}, d)
    {'max_tokens': 1024}
    """
    if decision.strip_reasoning:
        for k in _REASONING_FIELDS:
            data.pop(k, None)
    if decision.max_tokens:
        capped = False
        for k in ("max_tokens", "max_completion_tokens"):
            if isinstance(data.get(k), int | float):
                data[k] = min(int(data[k]), decision.max_tokens)
                capped = True
        if not capped:
            data["max_tokens"] = decision.max_tokens
        th = data.get("thinking")  # Anthropic: budget_tokens must stay below max_tokens
        if isinstance(th, dict) and isinstance(th.get("budget_tokens"), int) \
                and th["budget_tokens"] >= data["max_tokens" if "max_tokens" in data else "max_completion_tokens"]:
            data.pop("thinking")
    return data


def rejection(decision: Decision, challenge_status: int = 401, step_up_url: str | None = None) -> Any:
    """The ``fastapi.HTTPException`` for a throttle / challenge / block (LiteLLM keeps its status, its
    headers and, for a dict detail, the ``error`` message plus the whole dict in the response body)."""
    from fastapi import HTTPException

    status = challenge_status if decision.action == "challenge" else STATUS[decision.action]
    msg = {"throttle": "rate limited by distillguard", "challenge": "step-up verification required",
           "block": "request refused by distillguard"}[decision.action]
    detail: dict[str, Any] = {"error": f"{msg}: {'; '.join(decision.reasons) or decision.action}",
                              "action": decision.action, "reasons": decision.reasons,
                              "score": round(decision.score, 4), "request_id": decision.request_id}
    headers = {"x-distillguard-action": decision.action}
    if decision.action == "throttle" and decision.retry_after_s:
        retry = max(1, int(decision.retry_after_s + 0.999))
        detail["retry_after_s"] = decision.retry_after_s
        headers["Retry-After"] = str(retry)
    if decision.action == "challenge":
        if step_up_url:
            detail["step_up_url"] = step_up_url
        if status == 401:
            headers["WWW-Authenticate"] = 'Bearer error="insufficient_user_authentication"'
    return HTTPException(status_code=status, detail=detail, headers=headers)


# -- the hook ---------------------------------------------------------------------------------------
class DistillGuardHook(_Base):  # type: ignore[misc,valid-type]
    """The LiteLLM callback. One scorer per proxy worker process; LiteLLM runs all hooks on the
    worker's event loop, so the scorer needs no lock."""

    _MAX_PENDING = 100_000  # served requests awaiting their response; the oldest are learned without usage

    def __init__(self, config: GuardConfig | None = None, scorer: OnlineScorer | None = None) -> None:
        super().__init__()
        self.config = config or GuardConfig()
        self.scorer = scorer if scorer is not None else self.config.build_scorer()
        self.audit = None
        if self.config.audit:
            from distillguard.online.audit import AuditLog

            self.audit = AuditLog(self.config.audit)
        self._xlog = None
        if self.config.exchanges_log:
            Path(self.config.exchanges_log).parent.mkdir(parents=True, exist_ok=True)
            self._xlog = Path(self.config.exchanges_log).open("a", buffering=1)  # noqa: SIM115 - closed in close()
        self._pending: OrderedDict[str, tuple[dict, Decision]] = OrderedDict()
        self._known: set[str] = set()
        self._last_snapshot = self._last_flush = time.monotonic()
        self._closing = False
        self._det_mtime = self._mtime(self.config.detections)
        self._next_reload = time.monotonic() + self.config.reload_every_s
        self._reload_task: Any = None
        if self.config.content_signals:  # load the content models now, not on the first request (~1.5 s)
            self._signals({"request_id": "warmup", "account_id": "warmup", "ts": 0, "prompt": "warm up"})
        atexit.register(self.close)
        self._chain_signals()

    def _chain_signals(self) -> None:
        """Save state on SIGTERM/SIGINT. uvicorn (which runs the proxy) catches the signal, shuts down
        gracefully, then re-raises it with the default handler, so the process dies without running
        ``atexit``. Chained in front of uvicorn's handler: on the signal, close (snapshot, audit flush)
        on the event loop, between requests; requests still draining afterwards snapshot as they end."""
        import signal
        import threading

        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGINT):
            prev = signal.getsignal(sig)

            def handler(signum: int, frame: Any, prev: Any = prev) -> None:
                self._closing = True
                try:
                    import asyncio

                    asyncio.get_running_loop().call_soon(self.close)
                except RuntimeError:  # no loop running: we are between requests anyway
                    self.close()
                if callable(prev):
                    prev(signum, frame)
                elif prev == signal.SIG_DFL:
                    signal.signal(signum, signal.SIG_DFL)
                    signal.raise_signal(signum)

            try:
                signal.signal(sig, handler)
            except (ValueError, OSError):  # not allowed here: atexit and the snapshot timer remain
                return

    @classmethod
    def from_env(cls) -> DistillGuardHook:
        return cls(GuardConfig.from_env())

    # pre-call ---------------------------------------------------------------------------------------
    async def async_pre_call_hook(self, user_api_key_dict: Any, cache: Any, data: dict, call_type: str) -> dict:
        """Score the request; return it (allow/degrade) or raise the rejection (throttle/challenge/block)."""
        if not isinstance(data, dict) or call_type not in _GENERATIVE:
            return data
        self._maybe_reload()
        try:
            acct = account_id_for(self.config.sources, user_api_key_dict, data, self.config.account_header)
            if acct is None:
                return data  # nothing to attribute the request to (e.g. no key configured): not ours to judge
            ex = build_exchange(data, user_api_key_dict, acct)
            self._learn_account(acct, user_api_key_dict)
            d = self.scorer.score_one(ex)
        except Exception:
            log.exception("distillguard: scoring failed (fail_open=%s)", self.config.fail_open)
            if self.config.fail_open:
                return data
            from fastapi import HTTPException

            raise HTTPException(503, detail={"error": "distillguard unavailable", "action": "error"}) from None
        if self.audit is not None:
            self.audit.append(d, ex["ts"])
        _metadata(data)[_DECISION_KEY] = {"action": d.action, "score": round(d.score, 4)}
        if d.action in ("allow", "degrade"):
            if d.action == "degrade":
                degrade_request(data, d)
            if not data.get("litellm_call_id"):  # no id to meet the response by: learn now, without usage
                await self._learn_async(ex, d)
                return data
            self._pending[ex["request_id"]] = (ex, d)
            while len(self._pending) > self._MAX_PENDING:
                _, (old, od) = self._pending.popitem(last=False)
                self._learn(old, od)
            return data
        ex["status"] = self.config.challenge_status if d.action == "challenge" else STATUS[d.action]
        await self._learn_async(ex, d)  # a refused request is evidence too (replay learns every exchange)
        raise rejection(d, self.config.challenge_status, self.config.step_up_url)

    # batch view refresh ----------------------------------------------------------------------------
    @staticmethod
    def _mtime(path: str | None) -> float | None:
        try:
            return Path(path).stat().st_mtime if path else None
        except OSError:
            return None

    def _maybe_reload(self) -> None:
        """Every ``reload_every_s``: if the detections file changed (a new ``distillguard detect`` run),
        read it in a worker thread and swap the batch view in on the loop; requests keep flowing."""
        cfg = self.config
        if not cfg.detections or cfg.reload_every_s <= 0 or time.monotonic() < self._next_reload \
                or (self._reload_task is not None and not self._reload_task.done()):
            return
        self._next_reload = time.monotonic() + cfg.reload_every_s
        m = self._mtime(cfg.detections)
        if m is None or m == self._det_mtime:
            return
        import asyncio

        self._reload_task = asyncio.get_running_loop().create_task(self._reload(m))

    async def _reload(self, mtime: float) -> None:
        import asyncio

        from distillguard.online.batchview import load_batch

        try:
            view = await asyncio.to_thread(load_batch, self.scorer.model, self.config.detections, self.config.clusters)
            self.scorer.load_batch(view)
            self._det_mtime = mtime
            log.info("distillguard: batch view reloaded from %s (%d accounts)", self.config.detections,
                     len(view.accounts))
        except Exception:  # a half-written file: keep the current view, retry at the next check
            log.exception("distillguard: cannot reload %s", self.config.detections)

    def _learn_account(self, acct: str, key: Any) -> None:
        """First sighting in this process: an ``accounts`` row with the org (team if no org), so
        ``allow_list.org_ids`` applies. Only when LiteLLM knows an org or team (it would replace an
        accounts row loaded otherwise)."""
        if acct in self._known:
            return
        self._known.add(acct)
        org = getattr(key, "org_id", None) or getattr(key, "team_id", None)
        if org:
            self.scorer.learn_account({"account_id": acct, "org_id": org})

    # post-call --------------------------------------------------------------------------------------
    async def async_post_call_success_hook(self, data: dict, user_api_key_dict: Any, response: Any) -> Any:
        """Non-streaming: learn before the response is returned (so the next request sees it)."""
        await self._finish(data.get("litellm_call_id") if isinstance(data, dict) else None, response)
        return None

    async def async_log_success_event(self, kwargs: dict, response_obj: Any, start_time: Any, end_time: Any) -> None:
        """Streaming (and anything the success hook missed): learn with the assembled response's usage."""
        await self._finish(kwargs.get("litellm_call_id"), response_obj, start_time, end_time)

    async def async_post_call_failure_hook(self, request_data: dict, original_exception: Exception,
                                           user_api_key_dict: Any, traceback_str: str | None = None) -> None:
        """The upstream failed after we allowed it: learn the attempt with its status, no usage."""
        cid = request_data.get("litellm_call_id") if isinstance(request_data, dict) else None
        item = self._pending.pop(cid, None) if cid else None
        if item is not None:
            ex, d = item
            ex["status"] = getattr(original_exception, "status_code", None) or 500
            await self._learn_async(ex, d)
        return None

    async def async_post_call_response_headers_hook(self, data: dict, user_api_key_dict: Any, response: Any,
                                                    request_headers: dict | None = None,
                                                    litellm_call_info: dict | None = None) -> dict[str, str] | None:
        """With ``decision_headers``: tell the client the action and score of a served request."""
        if not self.config.decision_headers or not isinstance(data, dict):
            return None
        dec = _metadata(data).get(_DECISION_KEY)
        if not dec:
            return None
        return {"x-distillguard-action": str(dec["action"]), "x-distillguard-score": str(dec["score"])}

    async def _finish(self, call_id: str | None, response: Any, start_time: Any = None, end_time: Any = None) -> None:
        item = self._pending.pop(call_id, None) if call_id else None
        if item is None:
            return
        ex, d = item
        try:
            _usage(ex, response)
            ex["status"] = 200
            if start_time is not None and end_time is not None:
                ex["latency_ms"] = int((end_time - start_time).total_seconds() * 1000)
        except Exception:  # a response shape we do not know: learn what we have
            log.debug("distillguard: no usage in response", exc_info=True)
        await self._learn_async(ex, d)

    async def _learn_async(self, ex: dict, d: Decision) -> None:
        """With ``content_signals``, compute them in a worker thread (the event loop keeps serving),
        then learn on the loop."""
        sig = None
        if self.config.content_signals:
            import asyncio

            try:
                sig = await asyncio.to_thread(self._signals, ex)
            except Exception:
                log.exception("distillguard: content signals failed for %s", ex.get("request_id"))
        self._learn(ex, d, sig)

    def _learn(self, ex: dict, d: Decision, sig: dict | None = None) -> None:
        try:
            self.scorer.learn_one(ex, sig, d)
        except Exception:
            log.exception("distillguard: learn_one failed for %s", ex.get("request_id"))
        if self._xlog is not None:
            self._write_exchange(ex)
        now = time.monotonic()
        if self._closing or now - self._last_snapshot >= self.config.snapshot_every_s:
            self._last_snapshot = self._last_flush = now
            self._snapshot()
        elif self.config.redis_url and now - self._last_flush >= self.config.flush_every_s:
            self._last_flush = now
            try:
                self.scorer.flush()
            except Exception:
                log.exception("distillguard: flushing state to %s failed", self.config.redis_url)

    def _write_exchange(self, ex: dict) -> None:
        from datetime import UTC, datetime

        row = {k: v for k, v in ex.items() if k != "signals"}
        row["ts"] = datetime.fromtimestamp(ex["ts"] / 1e6, tz=UTC).isoformat().replace("+00:00", "Z")
        try:
            assert self._xlog is not None
            self._xlog.write(json.dumps(row, default=str) + "\n")
        except Exception:
            log.exception("distillguard: cannot write %s", self.config.exchanges_log)

    @staticmethod
    def _signals(ex: dict) -> dict | None:
        """Content signals of one exchange (template/preamble fingerprints, capability, CoT)."""
        from datetime import UTC, datetime

        import pyarrow as pa

        from distillguard.content import compute_signals

        row = {"request_id": ex["request_id"], "account_id": ex["account_id"],
               "ts": datetime.fromtimestamp(ex["ts"] / 1e6, tz=UTC), "prompt": ex.get("prompt") or "",
               "system": ex.get("system")}
        sig = compute_signals(pa.RecordBatch.from_pylist([row])).to_pylist()[0]
        return {k: v for k, v in sig.items() if k not in ("request_id", "account_id", "ts")}

    def _snapshot(self) -> None:
        """Flush buffered state writes (a no-op in process; Redis: send them) and write the snapshot."""
        try:
            flush = getattr(self.scorer, "flush", None)
            if flush is not None:
                flush()
            if self.config.snapshot:
                self.scorer.snapshot(self.config.snapshot)
            if self.audit is not None:
                self.audit.flush()
        except Exception:
            log.exception("distillguard: snapshot to %s failed", self.config.snapshot)

    def close(self) -> None:
        """Learn what is still pending (without usage), write the snapshot, flush the audit log."""
        while self._pending:
            _, (ex, d) = self._pending.popitem(last=False)
            try:
                self.scorer.learn_one(ex, None, d)
            except Exception:
                break
        self._snapshot()
        if self.audit is not None:
            self.audit.close()
        if self._xlog is not None:
            self._xlog.close()
            self._xlog = None


_instance: DistillGuardHook | None = None


def __getattr__(name: str) -> Any:
    """``proxy_handler_instance``: the hook LiteLLM's config names, built from the environment on first
    access (importing this module builds nothing, so it can be imported where the files do not exist)."""
    global _instance
    if name == "proxy_handler_instance":
        if _instance is None:
            _instance = DistillGuardHook.from_env()
        return _instance
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""Framework-neutral core of the decision service: build an exchange from a gateway's request, decide,
learn, and turn the decision into statuses and headers for each gateway contract.

One ``OnlineScorer`` is not thread-safe, so every scorer call (decide, learn, batch load, snapshot,
audit) runs on **one worker thread**, in submission order; the event loop only parses HTTP and waits
on a future with the per-decision time budget. A decision is posted back as soon as ``score_one``
returns; the learning that follows it runs next on the same thread, before any later decision, so
rates and volume are counted request by request without making the client wait for them. With
``inline_when_idle`` (default, in-process state only) a decision that finds the thread idle runs on
the event loop instead, under the thread's lock (no hop, no future); its learning runs right after
the response is written, still before any later decision.
"""

from __future__ import annotations

import asyncio
import logging
import math
import queue
import re
import threading
import time
import uuid
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distillguard.online.audit import AuditLog
from distillguard.online.scorer import Decision, OnlineScorer
from distillguard.serve.config import KeyMap, ServeConfig, hash_key

__all__ = ["ACTION_STATUS", "H", "DecisionCore", "Verdict", "edge_exchange", "render"]

log = logging.getLogger("distillguard.serve")

#: Header names the service sets (``X-Distillguard-*``) and reads from gateways.
H = {
    "action": "X-Distillguard-Action", "score": "X-Distillguard-Score", "reasons": "X-Distillguard-Reasons",
    "request_id": "X-Distillguard-Request-Id", "account": "X-Distillguard-Account",
    "strip": "X-Distillguard-Strip-Reasoning", "max_tokens": "X-Distillguard-Max-Tokens",
    "failure": "X-Distillguard-Failure", "challenge": "X-Distillguard-Challenge",
    "model": "X-Distillguard-Model", "secret": "X-Distillguard-Secret", "watermark": "X-Distillguard-Watermark",
}
#: Status the client should see per action (Envoy and the generic ``http_status`` hint use it as is;
#: nginx can only be told 2xx/401/403, so the shipped nginx config maps 403 + action back to these).
ACTION_STATUS = {"allow": 200, "degrade": 200, "throttle": 429, "challenge": 401, "block": 403}
_REASON_CODE = re.compile(r"^([A-Z][A-Z0-9_]*)")
_MODEL_IN_PATH = (re.compile(r"/models?/([A-Za-z0-9._\-]+?)(?::[A-Za-z]+)?(?:/|$|\?)"),
                  re.compile(r"/deployments/([A-Za-z0-9._\-]+)"))
_LEARNED_CAP = 200_000
_HIST_MS = (0.5, 1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0)
#: inline_when_idle steps aside when the event loop lags more than this (the process is short of CPU,
#: e.g. on a host shared with other jobs): for the next _CONTENDED_HOLD_S decisions go to the scorer
#: thread, so loop and scorer are two threads, each with its own share of the cores, as without it.
_CONTENDED_LAG_S = 0.003
_CONTENDED_HOLD_S = 1.0


@dataclass
class Verdict:
    """What the service answers for one request: a decision, or why there is none.

    ``failure``: None, ``error`` (scorer raised), ``overloaded`` (in-flight limit), ``timeout``
    (budget missed) or ``credentials`` (no API key / account to score)."""

    decision: Decision | None
    failure: str | None = None
    fail_mode: str = "open"
    exchange: dict[str, Any] = field(default_factory=dict)

    @property
    def action(self) -> str:
        if self.decision is not None:
            return self.decision.action
        if self.failure == "credentials":
            return "unauthenticated"
        return "allow" if self.fail_mode == "open" else "unavailable"


def _now_us() -> int:
    return time.time_ns() // 1000


def edge_exchange(headers: Mapping[str, str], peer: str | None, uri: str | None, keymap: KeyMap,
                  ) -> tuple[dict[str, Any] | None, str | None]:
    """The header-level exchange of a gateway subrequest (no body): (exchange, None) or (None, reason).

    Account: ``X-Distillguard-Account`` (set by a gateway that already resolved it), else the key in
    ``Authorization: Bearer`` / ``x-api-key`` hashed with SHA-256 and looked up in the key map (an
    unknown key is scored as its own pseudo-account ``key:<hash prefix>``, so it is still rate-limited).
    Client IP: ``X-Real-IP``, else the first ``X-Forwarded-For`` hop, else the TCP peer."""
    acct = headers.get("x-distillguard-account")
    key_id = None
    if not acct:
        key = headers.get("x-api-key") or ""
        auth = headers.get("authorization") or ""
        if not key and auth[:7].lower() == "bearer ":
            key = auth[7:].strip()
        if not key:
            return None, "NO_CREDENTIALS: no API key (Authorization: Bearer or x-api-key) and no account header"
        hit = keymap.lookup(key)
        if hit is None:
            h = hash_key(key)[:16]
            acct, key_id = "key:" + h, "sha256:" + h
        else:
            acct, key_id = hit
    ip = headers.get("x-real-ip")
    if not ip:
        xff = headers.get("x-forwarded-for")
        ip = xff.split(",")[0].strip() if xff else (headers.get("x-envoy-external-address") or peer)
    model = headers.get("x-distillguard-model")
    if not model and uri:
        for rx in _MODEL_IN_PATH:
            m = rx.search(uri)
            if m:
                model = m.group(1)
                break
    ex: dict[str, Any] = {
        "request_id": headers.get("x-request-id") or uuid.uuid4().hex,
        "ts": _now_us(), "account_id": acct, "api_key_id": key_id, "client_ip": ip or None,
        "user_agent": headers.get("user-agent"), "model": model or "unknown",
    }
    return ex, None


def short_reasons(reasons: list[str], limit: int = 200) -> str:
    """Reason codes only (``RATE_LIMIT,CLUSTER_RISK``): header-safe ASCII, short; full text is in the audit log."""
    codes = []
    for r in reasons:
        m = _REASON_CODE.match(r)
        c = m.group(1) if m else "OTHER"
        if c not in codes:
            codes.append(c)
    out = ",".join(codes)
    return out if len(out) <= limit else out[:limit].rsplit(",", 1)[0]


def render(v: Verdict, mode: str, challenge_url: str | None = None) -> tuple[int, dict[str, str]]:
    """(status, headers) of a verdict for a gateway contract.

    ``nginx``: 200 for allow/degrade and fail-open; 403 for throttle/challenge/block and fail-closed (the
    action header tells nginx's ``error_page`` location which status to give the client); 401 without
    credentials. ``envoy`` and ``generic``: the client status itself (``ACTION_STATUS``), 503 when failing
    closed."""
    h: dict[str, str] = {}
    d = v.decision
    if d is None:
        if v.failure == "credentials":
            h[H["action"]] = "unauthenticated"
            h[H["reasons"]] = "NO_CREDENTIALS"
            h["WWW-Authenticate"] = 'Bearer realm="api"'
            return 401, h
        h[H["failure"]] = v.fail_mode
        h[H["reasons"]] = "SCORER_" + (v.failure or "error").upper()
        if v.fail_mode == "open":
            h[H["action"]] = "allow"
            return 200, h
        h[H["action"]] = "unavailable"
        h["Retry-After"] = "1"
        return (403 if mode == "nginx" else 503), h
    h[H["action"]] = d.action
    h[H["score"]] = f"{d.score:.4f}"
    h[H["request_id"]] = d.request_id
    if d.reasons:
        h[H["reasons"]] = short_reasons(d.reasons)
    if d.action in ("allow", "degrade"):
        if getattr(d, "watermark", False):  # provenance marking, where the scorer decides it
            h[H["watermark"]] = "1"
        if d.account_id:
            h[H["account"]] = d.account_id
        if d.action == "degrade":
            h[H["strip"]] = "1" if d.strip_reasoning else "0"
            if d.max_tokens is not None:
                h[H["max_tokens"]] = str(d.max_tokens)
        return 200, h
    if d.action == "throttle":
        h["Retry-After"] = str(max(1, math.ceil(d.retry_after_s or 1.0)))
    elif d.action == "challenge":
        if challenge_url:
            h[H["challenge"]] = challenge_url
        if mode == "envoy":
            h["WWW-Authenticate"] = 'DistillguardStepUp realm="api"'
    return (403 if mode == "nginx" else ACTION_STATUS[d.action]), h


class _Worker:
    """One thread that owns the scorer. A job returns (result, after): ``result`` goes back to the
    waiting request at once, ``after`` (learning, audit) runs next, before the following job.

    ``inline_when_idle``: a decision may also run on the event loop itself while the thread is idle
    (no job queued or running): no thread hop, no future, no timer. The thread's lock keeps the two
    apart (the scorer is never used by both at once), and the afters of inline decisions wait in a
    queue that whoever holds the lock next runs first, so learning keeps decision order."""

    def __init__(self, inline_when_idle: bool = False) -> None:
        self._q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.inline_when_idle = inline_when_idle
        self._submitted = 0  # written by the event loop only
        self._done = 0  # written by the worker thread only
        self._afters: deque[Callable[[], None]] = deque()  # of inline decisions, run in order under the lock
        self._retry = False
        self._t = threading.Thread(target=self._run, name="distillguard-scorer", daemon=True)
        self.errors = 0
        self._t.start()

    def submit(self, fn: Callable[[], tuple[Any, Callable[[], None] | None]],
               deadline: float | None = None) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._submitted += 1
        self._q.put((fn, fut, loop, deadline))
        return fut

    def try_inline(self) -> bool:
        """On the event loop: take the scorer for an inline decision (True: the lock is held; call
        :meth:`end_inline`). False while a job is queued or running: the decision queues behind it."""
        if not self.inline_when_idle or self._done != self._submitted or not self.lock.acquire(blocking=False):
            return False
        self._drain()
        return True

    def end_inline(self, after: Callable[[], None] | None) -> None:
        """Release the scorer after an inline decision; its ``after`` runs once the response is out."""
        self.lock.release()
        if after is not None:
            self._afters.append(after)
            asyncio.get_running_loop().call_soon(self._run_afters)

    def _run_afters(self, retry: bool = False) -> None:
        if retry:
            self._retry = False
        if not self._afters:
            return
        if self.lock.acquire(blocking=False):
            try:
                self._drain()
            finally:
                self.lock.release()
        elif not self._retry:  # the thread has the scorer and runs them before its next job; in case
            self._retry = True  # that job was its last, look again shortly (one retry pending at a time)
            asyncio.get_running_loop().call_later(0.005, self._run_afters, True)

    def _drain(self) -> None:
        """Run the afters of inline decisions (the caller holds the lock)."""
        afters = self._afters
        while afters:
            after = afters.popleft()
            try:
                after()
            except Exception:
                self.errors += 1
                log.exception("learning after a decision failed")

    def stop(self) -> None:
        self._q.put(None)
        self._t.join(timeout=30)

    def _run(self) -> None:
        while True:
            job = self._q.get()
            if job is None:
                return
            with self.lock:
                try:
                    self._drain()
                    self._job(*job)
                    self._drain()
                finally:
                    self._done += 1

    def _job(self, fn: Callable[[], tuple[Any, Callable[[], None] | None]], fut: asyncio.Future[Any],
             loop: asyncio.AbstractEventLoop, deadline: float | None) -> None:
        if deadline is not None and time.monotonic() > deadline:
            # its caller has already answered per the fail mode: do not score (or learn) it late
            loop.call_soon_threadsafe(_resolve, fut, None, TimeoutError("stale"))
            return
        try:
            res, after = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the request, which applies the fail mode
            loop.call_soon_threadsafe(_resolve, fut, None, e)
            return
        loop.call_soon_threadsafe(_resolve, fut, res, None)
        if after is not None:
            try:
                after()
            except Exception:
                self.errors += 1
                log.exception("learning after a decision failed")


class _Inline:
    """The same interface, on the event loop itself: no thread hop (faster per request), but a slow
    scorer call blocks the loop, so the budget cannot cut it short; overload shows as loop lag instead."""

    errors = 0

    def submit(self, fn: Callable[[], tuple[Any, Callable[[], None] | None]],
               deadline: float | None = None) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        try:
            res, after = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the request, which applies the fail mode
            fut.set_exception(e)
            return fut
        fut.set_result(res)
        if after is not None:
            loop.call_soon(self.after, after)  # after the response is written
        return fut

    def after(self, after: Callable[[], None]) -> None:
        try:
            after()
        except Exception:
            self.errors += 1
            log.exception("learning after a decision failed")

    def stop(self) -> None:
        return None


def _in_process(scorer: Any) -> bool:
    """Whether the scorer keeps its state in this process (a decision is then CPU only, tens of µs; a
    Redis round trip could wait on the network, which must not block the event loop)."""
    from distillguard.online.state import MemoryState

    return isinstance(getattr(scorer, "state", None), MemoryState)


def _expire(fut: asyncio.Future[Any]) -> None:
    """The decision budget ran out: the waiting request gets TimeoutError (and applies the fail mode)."""
    if not fut.done():
        fut.set_exception(TimeoutError("decision budget exceeded"))


def _resolve(fut: asyncio.Future[Any], res: Any, exc: BaseException | None) -> None:
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(res)


def _signals(row: dict[str, Any]) -> dict[str, Any] | None:
    sig = row.get("signals")
    return sig if isinstance(sig, dict) and sig else None


def _has_content(ex: dict[str, Any]) -> bool:
    return bool(ex.get("prompt") or ex.get("signals"))


class DecisionCore:
    """Decide and learn for any HTTP front (``serve.app``) or in-process caller.

    Double counting between the edge and the log stream (``edge_learn``): ``immediate`` learns the
    header-level exchange right after deciding (rates and volume count at once) and remembers its
    request_id; a ``/v1/learn`` row with that request_id then only adds content, through
    ``scorer.learn_content(exchange, signals)`` when the scorer has it, else its content is dropped and
    counted (``outcome="content_dropped"``). ``defer`` parks the edge exchange for ``learn_grace_s``:
    the log row with the same request_id is merged into it and learned once, with content; rows that
    never arrive are learned header-only when the grace runs out. ``off``: the edge never learns.
    """

    def __init__(self, scorer: OnlineScorer, config: ServeConfig, keymap: KeyMap | None = None) -> None:
        self.scorer = scorer
        self.config = config
        self.keymap = keymap if keymap is not None else KeyMap.load(config.key_map)
        self.audit = AuditLog(config.audit_dir, config.audit_batch_rows) if config.audit_dir else None
        self.counts: Counter[tuple[str, str]] = Counter()  # (metric, label) -> count; event-loop thread only
        self.learn_counts: Counter[str] = Counter()  # worker thread only
        self.latency_ms: list[int] = [0] * (len(_HIST_MS) + 1)
        self.latency_sum_ms = 0.0
        self.in_flight = 0
        self.snapshots = 0
        self._pending: OrderedDict[str, tuple[dict[str, Any], Decision, float]] = OrderedDict()
        self._learned: OrderedDict[str, None] = OrderedDict()
        self._fail_audit: deque[tuple[Decision, Any]] = deque()  # appended on the loop, drained by the worker
        self._worker: _Worker | _Inline | None = None
        self.loop_lag_s = 0.0
        self._contended_until = 0.0  # time.monotonic() until which decisions go to the thread (inline_when_idle)
        self._tasks: list[asyncio.Task[None]] = []
        self.started_at = time.time()

    # -- lifecycle ---------------------------------------------------------------------------
    def restore(self) -> bool:
        """Load ``snapshot_path`` when it exists (call before serving): a restart loses nothing."""
        p = self.config.snapshot_path
        if p is not None and p.exists():
            self.scorer.restore(p)
            log.info("restored scorer state from %s", p)
            return True
        return False

    async def start(self) -> None:
        c = self.config
        inline = c.inline_when_idle and _in_process(self.scorer)
        self._worker = _Worker(inline) if c.scorer_thread else _Inline()
        self._tasks.append(asyncio.create_task(self._watch_lag()))
        if c.snapshot_path is not None and c.snapshot_every_s > 0:
            self._tasks.append(asyncio.create_task(self._every(c.snapshot_every_s, self.snapshot)))
        if self.audit is not None and c.audit_flush_s > 0:
            self._tasks.append(asyncio.create_task(self._every(c.audit_flush_s, self._flush_audit)))
        flush = getattr(self.scorer, "flush", None)  # buffered state writes (Redis backend)
        if flush is not None and c.flush_every_s > 0:
            self._tasks.append(asyncio.create_task(self._every(c.flush_every_s, lambda: self.call(flush))))
        if c.edge_learn == "defer":
            self._tasks.append(asyncio.create_task(self._every(min(0.25, c.learn_grace_s / 2), self._sweep)))

    async def stop(self) -> None:
        """Learn what is still parked, flush the audit log, write the final snapshot, stop the worker."""
        for t in self._tasks:
            t.cancel()
        self._tasks.clear()
        if self._worker is None:
            return

        def final() -> tuple[Any, None]:
            self._expire(0.0)
            flush = getattr(self.scorer, "flush", None)
            if flush is not None:
                flush()
            self._drain_fail_audit()
            if self.audit is not None:
                self.audit.close()
            if self.config.snapshot_path is not None:
                self.scorer.snapshot(self.config.snapshot_path)
            return None, None

        try:
            await self._worker.submit(final)
        finally:
            self._worker.stop()
            self._worker = None

    async def _watch_lag(self, tick: float = 0.01) -> None:
        """Event-loop lag (how late a 10 ms sleep wakes up): over the budget, requests are shed."""
        loop = asyncio.get_running_loop()
        while True:
            t = loop.time()
            await asyncio.sleep(tick)
            now = loop.time()
            self.loop_lag_s = max(0.0, now - t - tick)
            if self.loop_lag_s > _CONTENDED_LAG_S:  # CPU-starved: decide on the thread for a while
                self._contended_until = time.monotonic() + _CONTENDED_HOLD_S

    async def _every(self, seconds: float, fn: Callable[[], Any]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await fn()
            except Exception:
                log.exception("periodic %s failed", getattr(fn, "__name__", fn))

    async def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the scorer thread (serialised with decisions) and return its result."""
        assert self._worker is not None, "DecisionCore.start() was not awaited"
        return await self._worker.submit(lambda: (fn(), None))

    # -- deciding ----------------------------------------------------------------------------
    async def decide(self, exchange: dict[str, Any] | None, *, learn: bool = True, mode: str = "generic",
                     failure: str | None = None) -> Verdict:
        """Decide one request within the budget; apply the fail mode when the scorer cannot answer."""
        c = self.config
        if exchange is None:
            v = Verdict(None, failure or "credentials", c.fail_mode)
            self.counts["decisions", mode + ":" + v.action] += 1
            return v
        if self.in_flight >= c.max_in_flight or self.loop_lag_s * 1000.0 > c.decision_budget_ms:
            return self._failed(exchange, "overloaded", mode)
        assert self._worker is not None, "DecisionCore.start() was not awaited"
        t0 = time.perf_counter()
        budget = c.decision_budget_ms / 1000.0
        self.in_flight += 1
        try:
            w = self._worker
            if isinstance(w, _Inline):  # no future, no timer: this is the fast mode
                d, after = self._decide_job(exchange, learn)
                asyncio.get_running_loop().call_soon(w.after, after)
            elif self._contended_until < time.monotonic() and w.try_inline():  # thread idle, loop keeping up: decide here
                after = None
                try:
                    d, after = self._decide_job(exchange, learn)
                finally:
                    w.end_inline(after)
            else:
                fut = self._worker.submit(lambda: self._decide_job(exchange, learn), time.monotonic() + budget)
                # the budget as a timer on the future itself (what asyncio.wait_for does, without its
                # extra waiter future and callbacks per request)
                timer = asyncio.get_running_loop().call_later(budget, _expire, fut)
                try:
                    d = await fut
                finally:
                    timer.cancel()
        except TimeoutError:
            return self._failed(exchange, "timeout", mode)
        except Exception:
            log.exception("scorer failed on %s", exchange.get("request_id"))
            return self._failed(exchange, "error", mode)
        finally:
            self.in_flight -= 1
        ms = (time.perf_counter() - t0) * 1000.0
        self.latency_sum_ms += ms
        i = 0
        while i < len(_HIST_MS) and ms > _HIST_MS[i]:
            i += 1
        self.latency_ms[i] += 1
        self.counts["decisions", mode + ":" + d.action] += 1
        return Verdict(d, None, c.fail_mode, exchange)

    def _failed(self, exchange: dict[str, Any], why: str, mode: str) -> Verdict:
        self.counts["failures", why] += 1
        v = Verdict(None, why, self.config.fail_mode, exchange)
        if self.audit is not None:  # audited too: as allow (fail open) or block (fail closed), with the cause
            action = "allow" if v.fail_mode == "open" else "block"
            d = Decision(exchange.get("request_id", ""), action, 0.0,
                         [f"SCORER_{why.upper()}: answered by fail_mode {v.fail_mode}"], exchange.get("account_id"))
            self._fail_audit.append((d, exchange.get("ts")))
        self.counts["decisions", mode + ":" + v.action] += 1
        return v

    def _decide_job(self, ex: dict[str, Any], learn: bool) -> tuple[Decision, Callable[[], None]]:
        d = self.scorer.score_one(ex)

        def after() -> None:
            if self.audit is not None:
                self.audit.append(d, ex["ts"])
            if not learn or self.config.edge_learn == "off":
                return
            rid = d.request_id
            if _has_content(ex) or self.config.edge_learn == "immediate":
                self.scorer.learn_one(ex, _signals(ex), d)
                self._remember(rid)
                self.learn_counts["edge"] += 1
            else:
                self._pending[rid] = (ex, d, time.monotonic())

        return d, after

    def _remember(self, rid: str) -> None:
        self._learned[rid] = None
        if len(self._learned) > _LEARNED_CAP:
            self._learned.popitem(last=False)

    def _expire(self, grace: float) -> int:
        now, n = time.monotonic(), 0
        while self._pending:
            rid, (ex, d, t) = next(iter(self._pending.items()))
            if now - t < grace:
                break
            del self._pending[rid]
            self.scorer.learn_one(ex, None, d)
            self._remember(rid)
            self.learn_counts["expired"] += 1
            n += 1
        return n

    async def _sweep(self) -> None:
        grace = self.config.learn_grace_s
        await self.call(lambda: self._expire(grace))

    # -- learning from the log stream, accounts, batch -----------------------------------------
    def _learn_rows(self, rows: list[dict[str, Any]]) -> dict[str, int]:
        out: Counter[str] = Counter()
        learn_content = getattr(self.scorer, "learn_content", None)
        for row in rows:
            if not isinstance(row, dict) or not row.get("account_id") or row.get("ts") is None:
                out["invalid"] += 1
                continue
            sig = _signals(row)
            ex = {k: v for k, v in row.items() if k != "signals"}
            rid = ex.get("request_id")
            if ex.get("model") is None:
                ex["model"] = "unknown"
            if rid is not None and rid in self._pending:
                edge, d, _ = self._pending.pop(rid)
                merged = {**edge, **{k: v for k, v in ex.items() if v is not None}}
                self.scorer.learn_one(merged, sig, d)
                self._remember(rid)
                out["merged"] += 1
            elif rid is not None and rid in self._learned:
                if learn_content is not None:
                    learn_content(ex, sig)
                    out["content_only"] += 1
                else:
                    out["content_dropped"] += 1
            else:
                self.scorer.learn_one(ex, sig, None)
                if rid is not None:
                    self._remember(rid)
                out["learned"] += 1
        self.learn_counts.update(out)
        return dict(out)

    async def learn(self, rows: list[dict[str, Any]]) -> dict[str, int]:
        """Exchanges from the log stream (with ``signals`` rows when the content stage has them)."""
        return await self.call(lambda: self._learn_rows(rows))

    async def learn_accounts(self, rows: list[dict[str, Any]]) -> int:
        def job() -> int:
            for r in rows:
                self.scorer.learn_account(r)
            return len(rows)

        return await self.call(job)

    async def load_batch(self, detections: Any, clusters: Any = None) -> dict[str, int]:
        """A batch view (contract ``detections`` + optional ``clusters``: inline rows or file paths)."""
        import pyarrow as pa

        from distillguard.online.batchview import load_batch

        def as_table(x: Any) -> Any:
            return pa.Table.from_pylist(x) if isinstance(x, list) else x

        det, clu = as_table(detections), None if clusters is None else as_table(clusters)

        def job() -> dict[str, int]:
            view = load_batch(self.scorer.model, det, clu)
            self.scorer.load_batch(view)
            return {"accounts": len(view.accounts), "flagged": len(view.flagged)}

        return await self.call(job)

    async def snapshot(self) -> Path | None:
        p = self.config.snapshot_path
        if p is None:
            return None
        await self.call(lambda: self.scorer.snapshot(p))
        self.snapshots += 1
        return p

    def _drain_fail_audit(self) -> None:
        while self.audit is not None and self._fail_audit:
            d, ts = self._fail_audit.popleft()
            self.audit.append(d, ts)

    async def _flush_audit(self) -> None:
        if self.audit is not None:
            audit = self.audit

            def job() -> Any:
                self._drain_fail_audit()
                return audit.flush()

            await self.call(job)

    # -- metrics -------------------------------------------------------------------------------
    def _learn_counts_now(self) -> dict[str, int]:
        for _ in range(5):  # the worker thread may add a key while we copy; retry rather than lock the hot path
            try:
                return dict(self.learn_counts)
            except RuntimeError:
                continue
        return {}

    def metrics_text(self) -> str:
        """Prometheus text exposition of the counters (plain: no client library needed)."""
        lines = ["# HELP distillguard_decisions_total Decisions by gateway mode and action.",
                 "# TYPE distillguard_decisions_total counter"]
        for (metric, label), n in sorted(self.counts.items()):
            if metric == "decisions":
                mode, action = label.split(":", 1)
                lines.append(f'distillguard_decisions_total{{mode="{mode}",action="{action}"}} {n}')
        lines += ["# HELP distillguard_failures_total Requests answered by the fail mode, by cause.",
                  "# TYPE distillguard_failures_total counter"]
        for why in ("error", "overloaded", "timeout"):
            lines.append(f'distillguard_failures_total{{cause="{why}"}} {self.counts["failures", why]}')
        lines += ["# HELP distillguard_learned_total Exchanges learned, by path.",
                  "# TYPE distillguard_learned_total counter"]
        for k, n in sorted(self._learn_counts_now().items()):
            lines.append(f'distillguard_learned_total{{outcome="{k}"}} {n}')
        lines += ["# TYPE distillguard_in_flight gauge", f"distillguard_in_flight {self.in_flight}",
                  "# TYPE distillguard_pending_learn gauge", f"distillguard_pending_learn {len(self._pending)}",
                  "# TYPE distillguard_snapshots_total counter", f"distillguard_snapshots_total {self.snapshots}",
                  "# TYPE distillguard_worker_errors_total counter",
                  f"distillguard_worker_errors_total {self._worker.errors if self._worker else 0}",
                  "# HELP distillguard_decision_seconds Time from request to decision, in the service.",
                  "# TYPE distillguard_decision_seconds histogram"]
        acc = 0
        for le, n in zip((*_HIST_MS, math.inf), self.latency_ms, strict=True):
            acc += n
            le_s = "+Inf" if le == math.inf else f"{le / 1000:g}"
            lines.append(f'distillguard_decision_seconds_bucket{{le="{le_s}"}} {acc}')
        lines += [f"distillguard_decision_seconds_sum {self.latency_sum_ms / 1000:.6f}",
                  f"distillguard_decision_seconds_count {acc}"]
        return "\n".join(lines) + "\n"

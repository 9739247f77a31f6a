"""Configuration of the decision service: one small dataclass, from YAML and ``DISTILLGUARD_SERVE_*`` env vars.

Kept apart from the app so the CLI, the tests and the benchmark build the same thing the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

__all__ = ["ENV_PREFIX", "KeyMap", "ServeConfig", "hash_key"]

ENV_PREFIX = "DISTILLGUARD_SERVE_"
_FAIL_MODES = ("open", "closed")
_EDGE_LEARN = ("immediate", "defer", "off")


@dataclass
class ServeConfig:
    """Everything ``distillguard serve`` needs; every field has a safe default (loopback, fail-open).

    ``fail_mode``: what a request gets when the scorer raises, is overloaded (``max_in_flight``
    decisions waiting) or misses ``decision_budget_ms``: ``open`` allows it with
    ``X-Distillguard-Failure: open``, ``closed`` refuses it (503; in nginx mode 403 + that header,
    which the shipped nginx config turns into 503). ``edge_learn``: how a header-only edge request
    is learned (docs/serve.md, "How content reaches the scorer"). ``scorer_thread``: score on a worker
    thread (the budget can cut a slow call short) or on the event loop (no thread hop; faster).
    ``inline_when_idle`` (with ``scorer_thread``, in-process state only): a decision that finds the
    worker thread idle runs on the event loop (no hop); one that finds it busy (a snapshot, a batch
    load, a log-stream batch) queues behind it under the budget.
    ``redis_url``: keep the scorer state in Redis, shared by every replica (``online.RedisState``);
    buffered writes are flushed every ``flush_every_s`` and at shutdown. ``intel_db`` + ``group_key``:
    indicators peers shared (``distillguard share import/pull`` into that store) become the scorer's
    watchlist, so a new account whose keyed card or IP block matches is challenged at once.
    ``edge_port``: also answer the nginx and Envoy endpoints on this port with a lean HTTP/1.1 server
    (``serve.edge``: the same answers for less CPU per request; 0 picks a free port; None: off).
    """

    host: str = "127.0.0.1"
    port: int = 8787
    edge_port: int | None = None
    key_map: Path | None = None
    policy: Path | None = None
    calibration: Path | None = None
    fail_mode: str = "open"
    max_in_flight: int = 256
    scorer_thread: bool = True
    inline_when_idle: bool = True
    decision_budget_ms: float = 50.0
    edge_learn: str = "immediate"
    learn_grace_s: float = 2.0
    redis_url: str | None = None
    redis_prefix: str = "dg"
    flush_every_s: float = 0.5
    snapshot_path: Path | None = None
    snapshot_every_s: float = 300.0
    audit_dir: Path | None = None
    audit_batch_rows: int = 10_000
    audit_flush_s: float = 5.0
    shared_secret: str | None = None
    challenge_url: str | None = None
    model_ceilings: dict[str, int] = field(default_factory=dict)
    intel_db: Path | None = None
    group_key: Path | None = None

    def __post_init__(self) -> None:
        for name in ("key_map", "policy", "calibration", "snapshot_path", "audit_dir", "intel_db", "group_key"):
            v = getattr(self, name)
            if v is not None and not isinstance(v, Path):
                setattr(self, name, Path(v))
        if self.fail_mode not in _FAIL_MODES:
            raise ValueError(f"fail_mode must be one of {_FAIL_MODES}, got {self.fail_mode!r}")
        if self.edge_learn not in _EDGE_LEARN:
            raise ValueError(f"edge_learn must be one of {_EDGE_LEARN}, got {self.edge_learn!r}")
        if (self.intel_db is None) != (self.group_key is None):
            raise ValueError("intel_db and group_key go together (the indicators are keyed with the group key)")
        if self.max_in_flight < 1 or self.decision_budget_ms <= 0:
            raise ValueError("max_in_flight must be >= 1 and decision_budget_ms > 0")

    @classmethod
    def load(cls, path: Path | str | None = None, env: dict[str, str] | None = None, **overrides: Any) -> ServeConfig:
        """YAML file (optional) < ``DISTILLGUARD_SERVE_<FIELD>`` env vars < keyword ``overrides`` (None ignored).

        Unknown YAML keys are errors, so a typo does not silently leave a default in place."""
        import yaml

        data: dict[str, Any] = {}
        if path is not None:
            data = yaml.safe_load(Path(path).read_text()) or {}
        known = {f.name: f for f in fields(cls)}
        unknown = set(data) - set(known)
        if unknown:
            raise ValueError(f"{path}: unknown serve config keys {sorted(unknown)}")
        env = os.environ if env is None else env
        for name in known:
            raw = env.get(ENV_PREFIX + name.upper())
            if raw is not None:
                data[name] = _parse_env(name, raw)
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**data)


def _parse_env(name: str, raw: str) -> Any:
    if name in ("port", "max_in_flight", "audit_batch_rows"):
        return int(raw)
    if name == "edge_port":
        return None if raw.strip().lower() in ("", "none", "off") else int(raw)
    if name in ("decision_budget_ms", "learn_grace_s", "snapshot_every_s", "audit_flush_s", "flush_every_s"):
        return float(raw)
    if name in ("scorer_thread", "inline_when_idle"):
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if name == "model_ceilings":
        return json.loads(raw)
    return raw


def hash_key(api_key: str) -> str:
    """SHA-256 hex of an API key: the service never stores or logs a raw key."""
    return hashlib.sha256(api_key.encode()).hexdigest()


@dataclass(frozen=True)
class KeyMap:
    """SHA-256 of an API key → (account_id, api_key_id), from a YAML/JSON file the provider exports.

    File format (YAML or JSON)::

        keys:
          - {sha256: 9f86d0…, account_id: acct_123, api_key_id: key_abc}   # api_key_id optional
    """

    entries: dict[str, tuple[str, str | None]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | str | None) -> KeyMap:
        if path is None:
            return cls()
        import yaml

        data = yaml.safe_load(Path(path).read_text()) or {}
        rows = data.get("keys", []) if isinstance(data, dict) else data
        out: dict[str, tuple[str, str | None]] = {}
        for i, r in enumerate(rows):
            try:
                h = str(r["sha256"]).lower()
                if len(h) != 64 or any(c not in "0123456789abcdef" for c in h):
                    raise ValueError(f"sha256 must be 64 hex digits, got {h!r}")
                out[h] = (str(r["account_id"]), None if r.get("api_key_id") is None else str(r["api_key_id"]))
            except (KeyError, TypeError, ValueError) as e:
                raise ValueError(f"{path}: key map entry {i}: {e}") from e
        return cls(out)

    def lookup(self, api_key: str) -> tuple[str, str] | None:
        """(account_id, api_key_id) of a raw key; None when the provider's map does not know it."""
        h = hash_key(api_key)
        hit = self.entries.get(h)
        if hit is None:
            return None
        return hit[0], hit[1] or "sha256:" + h[:16]

"""The graduated containment policy (``src/distillguard/data/policy.yaml``) and its token buckets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

from distillguard.contract import ACTIONS

__all__ = ["DEFAULT_POLICY", "Bucket", "MarkRule", "Policy", "ReplacementRule", "Tier", "TokenBuckets"]

DEFAULT_POLICY = "policy.yaml"
US = 1_000_000


@dataclass(frozen=True)
class Bucket:
    """Token bucket parameters: ``rate`` tokens per second, at most ``burst`` tokens."""

    rate: float
    burst: float

    @classmethod
    def parse(cls, d: dict[str, Any]) -> Bucket:
        rate, burst = float(d["rate"]), float(d["burst"])
        if rate < 0 or burst < 1:
            raise ValueError(f"bucket needs rate >= 0 and burst >= 1, got {d}")
        return cls(rate, burst)


@dataclass(frozen=True)
class Tier:
    action: str
    min_score: float
    strip_reasoning: bool = False
    max_tokens: int | None = None


@dataclass(frozen=True)
class ReplacementRule:
    enabled: bool = True
    young_max_requests: int = 200
    hub_max_accounts: int = 25
    min_contained_share: float = 0.5
    weights: dict[str, float] = field(default_factory=lambda: {
        "payment": 3.0, "signup_block": 1.0, "client_block": 1.0, "user_agent": 0.5, "template": 2.0,
        "preamble": 1.0})
    challenge_at: float = 2.0
    block_at: float = 3.0
    recheck_every: int = 8


@dataclass(frozen=True)
class MarkRule:
    """Which served responses the gateway should watermark (``Decision.watermark``, for provenance
    tests later): scores at or above ``min_score`` and, with ``contained``, contained or watchlisted
    accounts and members of a cluster whose batch risk is over the threshold. Off unless enabled."""

    enabled: bool = False
    min_score: float = 0.35
    contained: bool = True

    @classmethod
    def parse(cls, d: dict[str, Any] | None) -> MarkRule:
        if not d:
            return cls()
        unknown = set(d) - {"enabled", "min_score", "contained"}
        if unknown:
            raise ValueError(f"unknown mark keys {sorted(unknown)}")
        return cls(bool(d.get("enabled", True)), float(d.get("min_score", cls.min_score)),
                   bool(d.get("contained", True)))


_KNOWN = {"version", "min_requests", "tiers", "rate_limits", "allow_list", "replacement", "watchlist", "mark"}


@dataclass(frozen=True)
class Policy:
    """Score tiers, token buckets, allow-lists, the hydra-replacement rule, the action for watchlist
    matches (``watchlist_action``, YAML ``watchlist: {action: challenge}``) and which served responses
    are watermarked (``mark``, YAML ``mark: {min_score: 0.35, contained: true}``).

    ``tiers`` are sorted by ``min_score``; the highest one the score reaches decides.
    """

    tiers: tuple[Tier, ...]
    min_requests: int = 20
    default_account: Bucket = Bucket(50.0, 3000)
    default_cluster: Bucket = Bucket(500.0, 30000)
    suspect_account: Bucket = Bucket(0.01, 20)
    suspect_cluster: Bucket = Bucket(0.05, 100)
    allow_accounts: frozenset[str] = frozenset()
    allow_orgs: frozenset[str] = frozenset()
    replacement: ReplacementRule = ReplacementRule()
    watchlist_action: str = "challenge"
    mark: MarkRule = MarkRule()

    @classmethod
    def default(cls) -> Policy:
        return cls.from_yaml(Path(str(resources.files("distillguard") / "data" / DEFAULT_POLICY)))

    @classmethod
    def from_yaml(cls, path: Path | str) -> Policy:
        import yaml

        data = yaml.safe_load(Path(path).read_text()) or {}
        try:
            return cls.from_dict(data)
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{path}: invalid policy: {e}") from e

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Policy:
        unknown = set(data) - _KNOWN
        if unknown:
            raise ValueError(f"unknown keys {sorted(unknown)}")
        tiers = []
        for t in data.get("tiers", []):
            if t["action"] not in ACTIONS or t["action"] == "allow":
                raise ValueError(f"tier action must be one of {ACTIONS[1:]}, got {t['action']!r}")
            tiers.append(Tier(t["action"], float(t["min_score"]), bool(t.get("strip_reasoning", False)),
                              None if t.get("max_tokens") is None else int(t["max_tokens"])))
        tiers.sort(key=lambda t: t.min_score)
        rl = data.get("rate_limits", {})
        d, s = rl.get("default", {}), rl.get("suspect", {})
        base = cls(tiers=())
        al = data.get("allow_list", {}) or {}
        rep = dict(data.get("replacement", {}) or {})
        if "weights" in rep:
            rep["weights"] = {**ReplacementRule().weights, **{k: float(v) for k, v in rep["weights"].items()}}
        return cls(
            tiers=tuple(tiers),
            min_requests=int(data.get("min_requests", base.min_requests)),
            default_account=Bucket.parse(d["account"]) if "account" in d else base.default_account,
            default_cluster=Bucket.parse(d["cluster"]) if "cluster" in d else base.default_cluster,
            suspect_account=Bucket.parse(s["account"]) if "account" in s else base.suspect_account,
            suspect_cluster=Bucket.parse(s["cluster"]) if "cluster" in s else base.suspect_cluster,
            allow_accounts=frozenset(al.get("account_ids") or ()),
            allow_orgs=frozenset(al.get("org_ids") or ()),
            replacement=ReplacementRule(**rep),
            watchlist_action=_watchlist_action(data.get("watchlist")),
            mark=MarkRule.parse(data.get("mark")),
        )

    def tier(self, score: float) -> Tier | None:
        """The highest tier whose ``min_score`` the score reaches (None: allow)."""
        out = None
        for t in self.tiers:
            if score >= t.min_score:
                out = t
        return out

    def first_tier(self, action: str) -> Tier | None:
        """The lowest tier with this action (where a rule that forces ``degrade`` takes its settings)."""
        return next((t for t in self.tiers if t.action == action), None)

    @cached_property
    def throttle_min(self) -> float:
        """Scores at or above this draw from the suspect buckets (inf when there is no throttle tier)."""
        return min((t.min_score for t in self.tiers if t.action == "throttle"), default=float("inf"))


def _watchlist_action(d: dict[str, Any] | None) -> str:
    if not d:
        return "challenge"
    unknown = set(d) - {"action"}
    if unknown:
        raise ValueError(f"unknown watchlist keys {sorted(unknown)}")
    a = d.get("action", "challenge")
    if a not in ACTIONS or a == "allow":
        raise ValueError(f"watchlist action must be one of {ACTIONS[1:]}, got {a!r}")
    return a


class TokenBuckets:
    """Token buckets keyed by any string; time is the request's own timestamp (µs), so replay is
    deterministic. ``peek`` is pure; ``take`` spends one token when one is there (a request that
    found the bucket empty was throttled and costs nothing)."""

    __slots__ = ("state",)

    def __init__(self) -> None:
        self.state: dict[str, list[float]] = {}  # key -> [tokens, last_us]

    def level(self, key: str, b: Bucket, t_us: int) -> float:
        return self.level_of(self.state.get(key), b, t_us)

    @staticmethod
    def level_of(st: Sequence[float] | None, b: Bucket, t_us: int) -> float:
        """Tokens at ``t_us`` of a bucket whose stored state is ``[tokens, last_us]`` (None: full). The
        Redis backend's Lua script computes exactly this, in the same double arithmetic."""
        if st is None:
            return b.burst
        return min(b.burst, st[0] + max(0, t_us - st[1]) / US * b.rate)

    def peek(self, key: str, b: Bucket, t_us: int) -> bool:
        return self.level(key, b, t_us) >= 1.0

    def take(self, key: str, b: Bucket, t_us: int) -> bool:
        st = self.state.get(key)
        lvl = self.level_of(st, b, t_us)
        ok = lvl >= 1.0
        last = t_us if st is None else max(st[1], t_us)
        self.state[key] = [lvl - 1.0 if ok else lvl, last]
        return ok

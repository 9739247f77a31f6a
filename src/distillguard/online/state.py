"""Where the online scorer keeps what it learns: in-process (default) or shared through Redis.

:class:`OnlineScorer` holds the decision logic and talks to its state only through the
:class:`StateBackend` interface below, so a gateway with one process and a fleet of replicas run the
same code. Each decision is ``sync`` (make one account's reads current: a no-op in process, one round
trip to Redis), reads, then writes. Two implementations:

- :class:`MemoryState` (default): plain dicts in this process; snapshot/restore by pickling.
- :class:`distillguard.online.redis_state.RedisState`: several gateway replicas share one Redis
  (``docs/online.md`` documents its key layout, TTLs, memory and consistency).

The feature state itself is an :class:`~distillguard.features.online.OnlineFeatures` (the batch
feature definitions, incremental) that the scorer builds and ``bind``\\ s to the backend; Redis keeps a
local copy of it in sync.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from distillguard.features.online import OnlineFeatures
from distillguard.online.batchview import BatchAccount, BatchView
from distillguard.online.policy import Bucket, TokenBuckets

__all__ = ["FINGERPRINT_KINDS", "FingerprintMatch", "MemoryState", "StateBackend"]

#: Kinds of fingerprint the hydra-replacement rule indexes, in the order reasons list them.
FINGERPRINT_KINDS = ("payment", "signup_block", "client_block", "user_agent", "template", "preamble")

#: ``(kind, n_users, n_contained_users, account_uses_it, account_is_contained_user)`` for one
#: fingerprint value of an account that at least one contained account shares.
FingerprintMatch = tuple[str, int, int, bool, bool]


@runtime_checkable
class StateBackend(Protocol):
    """Everything an :class:`OnlineScorer` reads and writes besides its model and policy.

    Reads are valid for the account last passed to :meth:`sync` (in process: always). Writes may be
    buffered until the next ``sync`` or :meth:`flush` (Redis: write-behind, so a decision costs one
    round trip)."""

    features: OnlineFeatures

    def bind(self, features: OnlineFeatures, *, fp_cap: int) -> None:
        """Take the scorer's feature state; ``fp_cap``: distinct values remembered per account and kind."""
        ...

    def sync(self, account_id: str, extras: dict[str, Any], young_max: int) -> None:
        """Make this account's reads current. ``extras``: the request's own fingerprint values
        (kind -> value) to look up as well; ``young_max``: fingerprint matches are needed only while
        the account has fewer requests than this (0: never)."""
        ...

    def prefetch(self, requests: list[tuple[str, dict[str, Any], int]]) -> None:
        """``sync`` for several accounts at once (Redis: one round trip); reads stay valid for them,
        through their ``learn`` calls, until :meth:`end_batch`."""
        ...

    def end_batch(self) -> None: ...

    def requests(self, account_id: str) -> int:
        """Requests learned for the account (all replicas)."""
        ...

    def is_contained(self, account_id: str) -> bool: ...

    def is_suspect(self, account_id: str) -> bool: ...

    def watch_reasons(self, account_id: str) -> list[str]:
        """Watchlist reasons recorded for the account (empty: none)."""
        ...

    def batch_account(self, account_id: str) -> BatchAccount | None: ...

    def bucket_level(self, key: str, bucket: Bucket, t_us: int) -> float:
        """Tokens in bucket ``key`` at ``t_us`` (pure)."""
        ...

    def fingerprint_matches(self, account_id: str, extras: dict[str, Any]) -> list[FingerprintMatch]:
        """The account's fingerprint values (plus ``extras``) that contained accounts share, one entry
        per value, grouped by kind in :data:`FINGERPRINT_KINDS` order; empty when nothing is contained."""
        ...

    def learn(self, account_id: str, exchange: dict, signals: dict | None, t_us: int) -> int:
        """Fold the exchange into the account's features; returns its request count afterwards."""
        ...

    def set_suspect(self, account_id: str, suspect: bool) -> None: ...

    def take(self, key: str, bucket: Bucket, t_us: int) -> None:
        """Spend one token from bucket ``key`` if it has one (atomic)."""
        ...

    def note(self, account_id: str, kind: str, value: Any) -> None:
        """Index a fingerprint value the account uses (at most ``fp_cap`` per kind)."""
        ...

    def contain(self, account_id: str) -> None:
        """Mark the account contained and index its fingerprints as contained."""
        ...

    def watch(self, account_id: str, reasons: list[str]) -> None:
        """Record watchlist reasons for the account (replacing earlier ones)."""
        ...

    def learn_account(self, row: dict) -> None: ...

    def load_batch(self, view: BatchView) -> None:
        """Replace the batch view (cluster membership and risk); does not contain anyone itself."""
        ...

    @property
    def batch(self) -> BatchView: ...

    def contained(self) -> set[str]: ...

    def flush(self) -> None:
        """Send buffered writes now (no-op in process)."""
        ...

    def dump(self) -> dict[str, Any]:
        """Picklable state for ``OnlineScorer.snapshot`` (Redis: flushes and returns only a marker)."""
        ...

    def load(self, d: dict[str, Any]) -> None:
        """Inverse of :meth:`dump`."""
        ...


class _Acct:
    __slots__ = ("contained", "n", "suspect", "values", "watch")

    def __init__(self) -> None:
        self.n = 0
        self.contained = False
        self.suspect = False
        self.values: dict[str, set] = {}
        self.watch: list[str] = []


class MemoryState:
    """In-process state: per-account counters and flags, fingerprint indexes, token buckets, the batch
    view and the feature state, all in dicts of this process (the default; what ``snapshot`` pickles).

    >>> from distillguard.features.online import OnlineFeatures
    >>> s = MemoryState(); s.bind(OnlineFeatures(), fp_cap=32)
    >>> s.learn("a", {"account_id": "a", "ts": 0, "model": "m"}, None, 0)
    1
    """

    def __init__(self) -> None:
        self.features = OnlineFeatures()
        self.buckets = TokenBuckets()
        self._batch = BatchView()
        self._acct: dict[str, _Acct] = {}
        self._users: dict[tuple[str, Any], set[str]] = {}  # (kind, value) -> accounts that use it
        self._contained_users: dict[tuple[str, Any], set[str]] = {}  # ... of which contained
        self._cap = 32

    def bind(self, features: OnlineFeatures, *, fp_cap: int = 32) -> None:
        self.features, self._cap = features, fp_cap

    # -- reads -----------------------------------------------------------------------------------
    def sync(self, account_id: str, extras: dict[str, Any], young_max: int) -> None:
        return None

    def prefetch(self, requests: list[tuple[str, dict[str, Any], int]]) -> None:
        return None

    def end_batch(self) -> None:
        return None

    def requests(self, account_id: str) -> int:
        a = self._acct.get(account_id)
        return 0 if a is None else a.n

    def is_contained(self, account_id: str) -> bool:
        a = self._acct.get(account_id)
        return a is not None and a.contained

    def is_suspect(self, account_id: str) -> bool:
        a = self._acct.get(account_id)
        return a is not None and a.suspect

    def watch_reasons(self, account_id: str) -> list[str]:
        a = self._acct.get(account_id)
        return [] if a is None else a.watch

    def batch_account(self, account_id: str) -> BatchAccount | None:
        return self._batch.accounts.get(account_id)

    def bucket_level(self, key: str, bucket: Bucket, t_us: int) -> float:
        return self.buckets.level(key, bucket, t_us)

    def fingerprint_matches(self, account_id: str, extras: dict[str, Any]) -> list[FingerprintMatch]:
        if not self._contained_users:
            return []
        a = self._acct.get(account_id)
        out: list[FingerprintMatch] = []
        for kind in FINGERPRINT_KINDS:
            vals = a.values.get(kind, ()) if a is not None else ()
            x = extras.get(kind)
            for v in vals if x is None or x in vals else (*vals, x):
                cu = self._contained_users.get((kind, v))
                if cu:
                    users = self._users.get((kind, v), ())
                    out.append((kind, len(users), len(cu), account_id in users, account_id in cu))
        return out

    @property
    def batch(self) -> BatchView:
        return self._batch

    def contained(self) -> set[str]:
        return {k for k, a in self._acct.items() if a.contained}

    # -- writes ----------------------------------------------------------------------------------
    def _get(self, account_id: str) -> _Acct:
        a = self._acct.get(account_id)
        if a is None:
            a = self._acct[account_id] = _Acct()
        return a

    def learn(self, account_id: str, exchange: dict, signals: dict | None, t_us: int) -> int:
        f = self.features
        f.context.learn(exchange, signals, t_us)
        _, values = f.record(exchange, signals, t_us)
        f.apply(account_id, t_us, values)
        a = self._get(account_id)
        a.n += 1
        return a.n

    def set_suspect(self, account_id: str, suspect: bool) -> None:
        self._get(account_id).suspect = suspect

    def take(self, key: str, bucket: Bucket, t_us: int) -> None:
        self.buckets.take(key, bucket, t_us)

    def note(self, account_id: str, kind: str, value: Any) -> None:
        a = self._acct.get(account_id)
        if a is None:
            a = self._acct[account_id] = _Acct()
        vals = a.values.get(kind)
        if vals is None:
            vals = a.values[kind] = set()
        if value in vals or len(vals) >= self._cap:
            return
        vals.add(value)
        key = (kind, value)
        self._users.setdefault(key, set()).add(account_id)
        if a.contained:
            self._contained_users.setdefault(key, set()).add(account_id)

    def contain(self, account_id: str) -> None:
        a = self._get(account_id)
        if a.contained:
            return
        a.contained = True
        for kind, vals in a.values.items():
            for v in vals:
                self._contained_users.setdefault((kind, v), set()).add(account_id)

    def watch(self, account_id: str, reasons: list[str]) -> None:
        self._get(account_id).watch = list(reasons)

    def learn_account(self, row: dict) -> None:
        self.features.learn_account(row)

    def load_batch(self, view: BatchView) -> None:
        self._batch = view

    def flush(self) -> None:
        return None

    # -- snapshot --------------------------------------------------------------------------------
    def dump(self) -> dict[str, Any]:
        return {"backend": "memory", "features": self.features.dump(), "batch": self._batch,
                "buckets": self.buckets.state, "acct": self._acct, "users": self._users,
                "contained_users": self._contained_users}

    def load(self, d: dict[str, Any]) -> None:
        if d.get("backend") != "memory":
            raise ValueError(f"snapshot of a {d.get('backend')!r} backend cannot be restored into MemoryState")
        self.features.load(d["features"])
        self._batch, self.buckets.state, self._acct = d["batch"], d["buckets"], d["acct"]
        self._users, self._contained_users = d["users"], d["contained_users"]

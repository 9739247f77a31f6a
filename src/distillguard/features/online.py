"""Online mode: the same declared features, updated one exchange at a time.

Per account it keeps, for every windowed (feature, window), one mergeable op state per UTC clock hour
(only the last 7 days of hours are kept) and one running state for ``all``; ``features_one`` merges
the hours inside each window and finalizes, exactly as the batch GROUP BY does.

The few global facts an input needs (a model's ceiling and first sighting, the log's start, which
fingerprints are shared by several accounts) live in :class:`Context`. By default it is learned from
the stream (first sighting and log start are then exactly the batch's; a ceiling or a shared
fingerprint is what has been seen *so far*, while batch sees the whole log up to ``as_of``).
``Context.from_engine`` loads the batch pipeline's snapshot instead (``feature_model_context`` and
``feature_shared_fps``), frozen, which is how the gateway refreshes it on a schedule.

Exchanges must arrive in time order per account (gaps are measured to the previous one seen).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from distillguard.contract import EXCHANGES
from distillguard.features.account import ATTRIBUTES, FEATURES, HOUR_US, SHARED_MIN_OTHERS
from distillguard.features.batch import to_us
from distillguard.features.spec import Feature

__all__ = ["Context", "OnlineFeatures"]

_SIGNAL_FIELDS = ("capability", "cot_score", "template_fp", "preamble_fp")


@dataclass
class Context:
    """Global lookups shared by all accounts; ``frozen``: a batch snapshot that the stream does not update."""

    ceiling: dict[str, int] = field(default_factory=dict)
    model_first_us: dict[str, int] = field(default_factory=dict)
    log_start_us: int | None = None
    shared: dict[str, set[int]] = field(default_factory=lambda: {"template": set(), "preamble": set()})
    frozen: bool = False
    _fp_accounts: dict[tuple[str, int], set[str]] = field(default_factory=dict, repr=False)

    @classmethod
    def from_engine(cls, engine: Any) -> Context:
        """The snapshot the last ``build_features`` run left in the store."""
        ctx = cls(frozen=True)
        for r in engine.query("SELECT model, ceiling, first_us FROM feature_model_context").to_pylist():
            if r["ceiling"] is not None:
                ctx.ceiling[r["model"]] = r["ceiling"]
            ctx.model_first_us[r["model"]] = r["first_us"]
        ctx.log_start_us = min(ctx.model_first_us.values(), default=None)
        for r in engine.query("SELECT kind, fp FROM feature_shared_fps").to_pylist():
            ctx.shared[r["kind"]].add(r["fp"])
        return ctx

    def learn(self, ex: dict, sig: dict | None, t_us: int) -> None:
        if self.frozen:
            return
        model, mt = ex.get("model"), ex.get("max_tokens")
        if mt is not None and (model not in self.ceiling or mt > self.ceiling[model]):
            self.ceiling[model] = mt
        if model not in self.model_first_us or t_us < self.model_first_us[model]:
            self.model_first_us[model] = t_us
        if self.log_start_us is None or t_us < self.log_start_us:
            self.log_start_us = t_us
        for kind in ("template", "preamble"):
            fp = sig.get(f"{kind}_fp") if sig else None
            if fp is not None:
                accts = self._fp_accounts.setdefault((kind, fp), set())
                accts.add(ex["account_id"])
                if len(accts) > SHARED_MIN_OTHERS:
                    self.shared[kind].add(fp)

    def is_shared(self, kind: str, fp: int | None) -> bool | None:
        return None if fp is None else fp in self.shared[kind]


class _Account:
    __slots__ = ("all", "hours", "last_us")

    def __init__(self, features: list[Feature]) -> None:
        self.all = [f.op.init() for f in features]
        self.hours: dict[int, list[Any]] = {}
        self.last_us: int | None = None


class OnlineFeatures:
    """Incremental twin of :func:`distillguard.features.build_features`.

    >>> from datetime import datetime, UTC
    >>> o = OnlineFeatures()
    >>> for s in range(0, 300, 60):
    ...     o.learn_one({"account_id": "a", "ts": datetime(2026, 3, 2, 10, 0, s // 60, tzinfo=UTC),
    ...                  "model": "m"}, None)
    >>> f = o.features_one("a")
    >>> f["request_count_1h"], f["gap_s_cv_all"]
    (5, 0.0)
    """

    def __init__(self, features: list[Feature] = FEATURES, context: Context | None = None,
                 accounts: dict[str, dict] | None = None) -> None:
        self.features = features
        self.context = context if context is not None else Context()
        self.accounts = dict(accounts or {})
        self._windowed = [(i, f) for i, f in enumerate(features) if any(w.hours is not None for w in f.windows)]
        self._max_hours = max((w.hours for f in features for w in f.windows if w.hours is not None), default=0)
        self._state: dict[str, _Account] = {}
        self._clock_us: int | None = None

    def learn_account(self, account: dict) -> None:
        """Record (or update) an ``accounts`` row: created_at, tier, verified."""
        self.accounts[account["account_id"]] = account

    def _prepare(self, ex: dict, sig: dict | None, t_us: int, last_us: int | None) -> dict:
        r = dict.fromkeys(EXCHANGES.names)
        r.update(ex)
        for k in _SIGNAL_FIELDS:
            r[k] = sig.get(k) if sig else None
        ctx = self.context
        acct = self.accounts.get(ex["account_id"])
        created = acct.get("created_at") if acct else None
        model = ex.get("model")
        r.update(
            t_us=t_us,
            gap_us=None if last_us is None else t_us - last_us,
            created_us=None if created is None else to_us(created),
            model_ceiling=ctx.ceiling.get(model),
            model_first_us=ctx.model_first_us.get(model),
            log_start_us=ctx.log_start_us,
            template_shared=ctx.is_shared("template", r["template_fp"]),
            preamble_shared=ctx.is_shared("preamble", r["preamble_fp"]),
        )
        return r

    def learn_one(self, exchange: dict, signals: dict | None = None) -> None:
        """Update state with one exchange (and its signals row, if the content stage has one)."""
        t_us = to_us(exchange["ts"]) if isinstance(exchange["ts"], datetime | str) else int(exchange["ts"])
        self.context.learn(exchange, signals, t_us)
        st = self._state.get(exchange["account_id"])
        if st is None:
            st = self._state[exchange["account_id"]] = _Account(self.features)
        r = self._prepare(exchange, signals, t_us, st.last_us)
        st.last_us = t_us if st.last_us is None else max(st.last_us, t_us)
        self._clock_us = t_us if self._clock_us is None else max(self._clock_us, t_us)
        values: dict[str, Any] = {}
        for i, f in enumerate(self.features):
            name = f.input.name
            if name not in values:
                values[name] = f.input.py(r)
            st.all[i] = f.op.update(st.all[i], values[name])
        hb = t_us // HOUR_US
        bucket = st.hours.get(hb)
        if bucket is None:
            bucket = st.hours[hb] = [None] * len(self.features)
            oldest = hb - self._max_hours
            for h in [h for h in st.hours if h <= oldest]:
                del st.hours[h]
        for i, f in self._windowed:
            s = bucket[i] if bucket[i] is not None else f.op.init()
            bucket[i] = f.op.update(s, values[f.input.name])

    def features_one(self, account_id: str, as_of: datetime | str | int | None = None) -> dict[str, Any]:
        """Every feature column for one account as of ``as_of`` (default: the latest ts learned); pure."""
        as_of_us = self._clock_us if as_of is None else (as_of if isinstance(as_of, int) else to_us(as_of))
        st = self._state.get(account_id)
        out: dict[str, Any] = {}
        if as_of_us is None:
            as_of_us = 0
        as_of_hb = as_of_us // HOUR_US
        for i, f in enumerate(self.features):
            for w in f.windows:
                if st is None:
                    state = f.op.init()
                elif w.hours is None:
                    state = st.all[i]
                else:
                    state = f.op.init()
                    for hb, bucket in st.hours.items():
                        if as_of_hb - w.hours < hb <= as_of_hb and bucket[i] is not None:
                            state = f.op.merge(state, bucket[i])
                out[f.column(w)] = f.op.finalize(state)
        acct = self.accounts.get(account_id) or {}
        for a in ATTRIBUTES:
            out[a] = acct.get(a)
        return out

    def account_ids(self) -> list[str]:
        return list(self._state)

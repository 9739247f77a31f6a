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

Learning is split in two public steps so that state can live elsewhere (``distillguard.online``'s
Redis backend ships the second step's input between gateway replicas): :meth:`OnlineFeatures.record`
turns an exchange into its input values (one per distinct input, the same ``Input.py`` functions the
batch SQL mirrors) and :meth:`OnlineFeatures.apply` folds them into the account's op states. A
scorer that reads only some columns builds its ``OnlineFeatures`` over :func:`project` of the
declared features: the same definitions, fewer of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from dataclasses import replace as _replace
from datetime import datetime
from typing import Any

from distillguard.contract import EXCHANGES
from distillguard.features.account import ATTRIBUTES, FEATURES, HOUR_US, SHARED_MIN_OTHERS
from distillguard.features.batch import to_us
from distillguard.features.spec import Feature, Input

__all__ = ["AccountState", "Context", "OnlineFeatures", "project"]

_SIGNAL_FIELDS = ("capability", "cot_score", "template_fp", "preamble_fp")
_FP_FIELDS = (("template", "template_fp"), ("preamble", "preamble_fp"))
_BLANK = dict.fromkeys(EXCHANGES.names)
_UNSET: Any = object()


def _compile(name: str, lines: list[str], ns: dict[str, Any]) -> Any:
    """``def name(...)`` from source lines, with ``ns`` as its globals: the compiled form of a feature
    set's per-exchange work (the ops' and inputs' own functions, called in a straight line instead of
    a loop over tuples). Generated from the declarations; no feature logic is written here."""
    code = "\n".join(lines) + "\n"
    exec(compile(code, f"<distillguard.features.online:{name}>", "exec"), ns)  # noqa: S102 - our own source
    return ns[name]


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

    def learn(self, ex: dict, sig: dict | None, t_us: int) -> list[tuple[str, Any, Any]]:
        """Learn from one exchange (nothing when ``frozen``). Returns what changed, so that a shared
        store can merge it: ``("ceiling", model, max_tokens)``, ``("first", model, t_us)``,
        ``("start", None, t_us)``, ``("fp", kind, fp)`` (this account newly seen on that fingerprint)."""
        if self.frozen:
            return []
        changes: list[tuple[str, Any, Any]] = []
        model, mt = ex.get("model"), ex.get("max_tokens")
        ceiling = self.ceiling
        if mt is not None:
            c = ceiling.get(model, _UNSET)
            if c is _UNSET or mt > c:
                ceiling[model] = mt
                changes.append(("ceiling", model, mt))
        first = self.model_first_us
        f = first.get(model, _UNSET)
        if f is _UNSET or t_us < f:
            first[model] = t_us
            changes.append(("first", model, t_us))
        if self.log_start_us is None or t_us < self.log_start_us:
            self.log_start_us = t_us
            changes.append(("start", None, t_us))
        if sig:
            for kind, field_ in _FP_FIELDS:
                fp = sig.get(field_)
                if fp is not None:
                    key = (kind, fp)
                    accts = self._fp_accounts.get(key)
                    if accts is None:
                        accts = self._fp_accounts[key] = set()
                    if ex["account_id"] not in accts:
                        accts.add(ex["account_id"])
                        changes.append(("fp", kind, fp))
                        if len(accts) > SHARED_MIN_OTHERS:
                            self.shared[kind].add(fp)
        return changes

    def merge(self, ceiling: dict[str, int], model_first_us: dict[str, int], log_start_us: int | None,
              shared: dict[str, Iterable[int]]) -> None:
        """Merge another replica's view (larger ceilings, earlier sightings, more shared fingerprints):
        every fact here only grows or moves earlier, so merging in any order gives the same result."""
        if self.frozen:
            return
        for m, c in ceiling.items():
            if m not in self.ceiling or c > self.ceiling[m]:
                self.ceiling[m] = c
        for m, t in model_first_us.items():
            if m not in self.model_first_us or t < self.model_first_us[m]:
                self.model_first_us[m] = t
        if log_start_us is not None and (self.log_start_us is None or log_start_us < self.log_start_us):
            self.log_start_us = log_start_us
        for kind, fps in shared.items():
            self.shared.setdefault(kind, set()).update(fps)

    def is_shared(self, kind: str, fp: int | None) -> bool | None:
        return None if fp is None else fp in self.shared[kind]


class AccountState:
    """One account's online feature state: ``all`` (one op state per feature, whole history), ``hours``
    (UTC hour bucket -> one op state per windowed feature, None where unused; only the last
    ``max_hours`` buckets are kept) and ``last_us`` (latest ts, for gaps).

    ``to_tuple``/``from_tuple`` give plain builtins (lists, dicts, sets, numbers, strings) so a state can
    be shipped with :mod:`marshal` (no code runs when it is read back, unlike pickle)."""

    __slots__ = ("all", "hours", "last_us")

    def __init__(self, features: Sequence[Feature]) -> None:
        self.all: list[Any] = [f.op.init() for f in features]
        self.hours: dict[int, list[Any]] = {}
        self.last_us: int | None = None

    def to_tuple(self) -> tuple[list[Any], dict[int, list[Any]], int | None]:
        return self.all, self.hours, self.last_us

    @classmethod
    def from_tuple(cls, t: tuple[list[Any], dict[int, list[Any]], int | None] | list[Any]) -> AccountState:
        st = cls.__new__(cls)
        st.all, st.hours, st.last_us = list(t[0]), dict(t[1]), t[2]
        return st


_Account = AccountState  # old private name (snapshots pickled before the rename load through it)


def project(features: Sequence[Feature], columns: Iterable[str]) -> list[Feature]:
    """The declared ``features`` restricted to the ``columns`` asked for (each feature keeping only the
    windows asked for). Same inputs and ops, so the projected values equal the full ones; an online
    reader that needs 14 columns then updates 14 op states per exchange instead of 70.

    >>> from distillguard.features.account import FEATURES
    >>> [f.columns for f in project(FEATURES, ["request_count_1d", "thinking_share_all"])]
    [['request_count_1d'], ['thinking_share_all']]
    """
    want = set(columns)
    out = []
    for f in features:
        ws = [w for w in f.windows if f.column(w) in want]
        if ws:
            out.append(f if len(ws) == len(f.windows) else _replace(f, windows=ws))
    missing = want - {c for f in out for c in f.columns}
    if missing:
        raise KeyError(f"not declared features: {sorted(missing)}")
    return out


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
    >>> o.read("a", ["request_count_1h"])
    {'request_count_1h': 5}
    """

    def __init__(self, features: Sequence[Feature] = FEATURES, context: Context | None = None,
                 accounts: dict[str, dict] | None = None) -> None:
        self.features = list(features)
        self.context = context if context is not None else Context()
        self.accounts = dict(accounts or {})
        self._windowed = [(i, f) for i, f in enumerate(self.features) if any(w.hours is not None for w in f.windows)]
        self._max_hours = max((w.hours for f in self.features for w in f.windows if w.hours is not None), default=0)
        self._state: dict[str, AccountState] = {}
        self._clock_us: int | None = None
        self._created_us: dict[str, int | None] = {}
        # Compiled once: the distinct inputs, and per feature (index, op.update, index of its input's value).
        self.inputs: list[Input] = list({f.input.name: f.input for f in self.features}.values())
        vi = {inp.name: k for k, inp in enumerate(self.inputs)}
        self._py = [inp.py for inp in self.inputs]
        self._upd = [(i, f.op.update, vi[f.input.name]) for i, f in enumerate(self.features)]
        self._wupd = [(i, f.op.update, f.op.init, vi[f.input.name]) for i, f in self._windowed]
        self._cols = {f.column(w): (i, f.op, w.hours) for i, f in enumerate(self.features) for w in f.windows}
        self._plans: dict[tuple[str, ...], Any] = {}
        self._memo: dict[str, list[Any]] = {}
        self._values, self._fold, self._fold_hour = self._compile_learn(vi)

    def _compile_learn(self, vi: dict[str, int]) -> tuple[Any, Any, Any]:
        """Straight-line forms of ``record``'s input calls and ``apply``'s op updates (same functions,
        same order as the loops they replace: ``self._py``, ``self._upd``, ``self._wupd``)."""
        ns: dict[str, Any] = {}
        for k, py in enumerate(self._py):
            ns[f"p{k}"] = py
        vals = ["def values(r):", "    return (" + "".join(f"p{k}(r), " for k in range(len(self._py))) + ")"]
        fold = ["def fold(a, v):"]
        for j, (i, upd, k) in enumerate(self._upd):
            ns[f"u{j}"] = upd
            fold.append(f"    a[{i}] = u{j}(a[{i}], v[{k}])")
        fold.append("    return None")
        hour = ["def fold_hour(b, v):"]
        for j, (i, upd, init, k) in enumerate(self._wupd):
            ns[f"w{j}"], ns[f"i{j}"] = upd, init
            hour += [f"    s = b[{i}]", f"    b[{i}] = w{j}(i{j}() if s is None else s, v[{k}])"]
        hour.append("    return None")
        return (_compile("values", vals, dict(ns)), _compile("fold", fold, dict(ns)),
                _compile("fold_hour", hour, dict(ns)))

    def _compile_read(self, key: tuple[str, ...]) -> Any:
        """``read``'s plan for one column list, as one function ``(state, hour_now) -> dict``: an ``all``
        column finalizes its state; a windowed one merges the hour buckets inside its window, in the
        buckets' order (one pass over the buckets for all of them), as the loop it replaces did."""
        ns: dict[str, Any] = {}
        head = ["def read(st, hb_now):", "    a = st.all"]
        loop: list[str] = []
        items = []
        for j, c in enumerate(key):
            i, op, hours = self._cols[c]
            ns[f"f{j}"] = op.finalize
            if hours is None:
                items.append(f"{c!r}: f{j}(a[{i}])")
                continue
            ns[f"m{j}"], ns[f"n{j}"] = op.merge, op.init
            head += [f"    s{j} = n{j}()", f"    lo{j} = hb_now - {int(hours)}"]
            loop += [f"            if lo{j} < hb:", f"                x = bucket[{i}]",
                     "                if x is not None:", f"                    s{j} = m{j}(s{j}, x)"]
            items.append(f"{c!r}: f{j}(s{j})")
        if loop:
            head += ["    for hb, bucket in st.hours.items():", "        if hb <= hb_now:", *loop]
        head.append("    return {" + ", ".join(items) + "}")
        return _compile("read", head, ns)

    @property
    def max_hours(self) -> int:
        """The longest window in hours: hour buckets older than this are dropped (and may expire)."""
        return self._max_hours

    @property
    def columns(self) -> list[str]:
        """Every feature column this instance maintains, in declaration order."""
        return list(self._cols)

    @property
    def clock_us(self) -> int | None:
        """The latest ts learned (µs), the default ``as_of`` of reads."""
        return self._clock_us

    def learn_account(self, account: dict) -> None:
        """Record (or update) an ``accounts`` row: created_at, tier, verified."""
        self.accounts[account["account_id"]] = account
        self._created_us.pop(account["account_id"], None)

    def _prepare(self, ex: dict, sig: dict | None, t_us: int, last_us: int | None) -> dict:
        r = _BLANK.copy()
        r.update(ex)
        if sig:
            for k in _SIGNAL_FIELDS:
                r[k] = sig.get(k)
        else:
            for k in _SIGNAL_FIELDS:
                r[k] = None
        ctx = self.context
        aid = ex["account_id"]
        created_us = self._created_us.get(aid, _UNSET)
        if created_us is _UNSET:  # parse created_at once per account, not once per exchange
            acct = self.accounts.get(aid)
            created = acct.get("created_at") if acct else None
            created_us = None if created is None else (created if isinstance(created, int) else to_us(created))
            if acct is not None:
                self._created_us[aid] = created_us
        model = ex.get("model")
        tfp, pfp = r["template_fp"], r["preamble_fp"]
        r["t_us"] = t_us
        r["gap_us"] = None if last_us is None else t_us - last_us
        r["created_us"] = created_us
        r["model_ceiling"] = ctx.ceiling.get(model)
        r["model_first_us"] = ctx.model_first_us.get(model)
        r["log_start_us"] = ctx.log_start_us
        r["template_shared"] = None if tfp is None else tfp in ctx.shared["template"]
        r["preamble_shared"] = None if pfp is None else pfp in ctx.shared["preamble"]
        return r

    def record(self, exchange: dict, signals: dict | None = None, t_us: int | None = None) -> tuple[int, tuple]:
        """``(t_us, values)``: the exchange's value of every input in ``self.inputs`` order, prepared
        against the account's state and the context as they are now. Pure (learns nothing); pass the
        result to :meth:`apply`. ``learn_one`` = ``context.learn`` + ``record`` + ``apply``."""
        if t_us is None:
            t_us = _t_us(exchange["ts"])
        st = self._state.get(exchange["account_id"])
        r = self._prepare(exchange, signals, t_us, None if st is None else st.last_us)
        return t_us, self._values(r)  # (py(r) for py in self._py), compiled

    def apply(self, account_id: str, t_us: int, values: Sequence[Any]) -> None:
        """Fold one :meth:`record` into the account's op states (``update`` on the ``all`` state and the
        hour bucket of ``t_us``). Order matters only through floating-point rounding: the ops are
        mergeable aggregates, so replicas that apply the same records in another order agree."""
        st = self._state.get(account_id)
        if st is None:
            st = self._state[account_id] = AccountState(self.features)
        else:
            m = self._memo.get(account_id)
            if m is not None:
                m[0] = None  # the state changed: what was computed from it is stale
        if st.last_us is None or t_us > st.last_us:
            st.last_us = t_us
        if self._clock_us is None or t_us > self._clock_us:
            self._clock_us = t_us
        self._fold(st.all, values)  # a[i] = upd(a[i], values[k]) for i, upd, k in self._upd
        if not self._wupd:
            return
        hb = t_us // HOUR_US
        bucket = st.hours.get(hb)
        if bucket is None:
            bucket = st.hours[hb] = [None] * len(self.features)
            oldest = hb - self._max_hours
            for h in [h for h in st.hours if h <= oldest]:
                del st.hours[h]
        self._fold_hour(bucket, values)  # the windowed updates into the hour bucket, likewise

    def learn_one(self, exchange: dict, signals: dict | None = None) -> None:
        """Update state with one exchange (and its signals row, if the content stage has one)."""
        t_us = _t_us(exchange["ts"])
        self.context.learn(exchange, signals, t_us)
        _, values = self.record(exchange, signals, t_us)
        self.apply(exchange["account_id"], t_us, values)

    # -- reads ------------------------------------------------------------------------------------
    def read(self, account_id: str, columns: Iterable[str], as_of: datetime | str | int | None = None) -> dict[str, Any]:
        """Only the given feature columns of :meth:`features_one` (finalizing 14 columns, not 70); an
        unknown account gives {}. Pure."""
        st = self._state.get(account_id)
        if st is None:
            return {}
        key = columns if isinstance(columns, tuple) else tuple(columns)
        plan = self._plans.get(key)
        if plan is None:  # compiled once per column list
            plan = self._compile_read(key)
            if len(self._plans) >= 64:  # callers with ever new column lists: keep the cache bounded
                self._plans.clear()
            self._plans[key] = plan
        return plan(st, self._as_of(as_of) // HOUR_US)

    def memo(self, account_id: str) -> list[Any]:
        """A per-account scratch list for a reader that reuses work over an unchanged state (the
        scorer's risk): created as ``[None]``, item 0 reset to None whenever the account's state changes
        (:meth:`apply`), the whole list dropped when the state is replaced or forgotten (``set_state``,
        ``load``). Code that mutates a :meth:`state` in place must call ``set_state`` after it."""
        m = self._memo.get(account_id)
        if m is None:
            m = self._memo[account_id] = [None]
        return m

    def _as_of(self, as_of: datetime | str | int | None) -> int:
        as_of_us = self._clock_us if as_of is None else (as_of if isinstance(as_of, int) else to_us(as_of))
        return 0 if as_of_us is None else as_of_us

    def features_one(self, account_id: str, as_of: datetime | str | int | None = None) -> dict[str, Any]:
        """Every feature column for one account as of ``as_of`` (default: the latest ts learned); pure."""
        as_of_hb = self._as_of(as_of) // HOUR_US
        st = self._state.get(account_id)
        out: dict[str, Any] = {}
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

    # -- state, for backends and snapshots -----------------------------------------------------------
    def state(self, account_id: str) -> AccountState | None:
        """The account's live state (None: never learned). Mutating it changes what reads return."""
        return self._state.get(account_id)

    def set_state(self, account_id: str, state: AccountState | None) -> None:
        """Replace (None: forget) one account's state, e.g. with a checkpoint another replica wrote."""
        self._memo.pop(account_id, None)
        if state is None:
            self._state.pop(account_id, None)
            return
        self._state[account_id] = state
        if state.last_us is not None and (self._clock_us is None or state.last_us > self._clock_us):
            self._clock_us = state.last_us

    def dump(self) -> dict[str, Any]:
        """Everything mutable (for a snapshot): per-account states, context, accounts rows, clock."""
        return {"state": self._state, "context": self.context, "accounts": self.accounts, "clock": self._clock_us}

    def load(self, d: dict[str, Any]) -> None:
        """Inverse of :meth:`dump`."""
        self._state, self.context, self.accounts, self._clock_us = d["state"], d["context"], d["accounts"], d["clock"]
        self._created_us = {}
        self._memo = {}


def _t_us(ts: Any) -> int:
    return ts if isinstance(ts, int) else to_us(ts) if isinstance(ts, datetime | str) else int(ts)

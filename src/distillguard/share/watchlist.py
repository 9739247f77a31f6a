"""Imported indicators as a watchlist: online matching (one account or exchange at a time) and the
batch table ``indicator_matches`` that detection and reports read.

An identifier matches when its keyed form under any of our usable group keys equals an active
indicator's value (active: not revoked, ``valid_from <= now <= valid_until``). A peer's indicator
made under a key we do not hold can never match: that is the privacy boundary, not a failure.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from distillguard.contract import SIGNALS
from distillguard.engines import DuckDBEngine
from distillguard.share import _sql
from distillguard.share.imports import ensure_share_tables
from distillguard.share.keys import KeyRing

__all__ = ["INDICATOR_MATCHES", "KIND_LABELS", "ONLINE_KINDS", "IntelRule", "Watchlist", "apply_intel", "build_indicator_matches"]

_TS = pa.timestamp("us", tz="UTC")

#: Table ``indicator_matches``: one row per (account, indicator) that matched, with the earliest time
#: the account showed the matching identifier (sign-up time for account fields).
INDICATOR_MATCHES = pa.schema([
    pa.field("account_id", pa.string(), nullable=False),
    pa.field("indicator_id", pa.string(), nullable=False),
    pa.field("kind", pa.string(), nullable=False),
    pa.field("provider", pa.string()),
    pa.field("shared_at", _TS),
    pa.field("matched_at", _TS),  # earliest evidence: created_at (account fields) or first matching exchange
    pa.field("exchanges", pa.int64()),  # matching exchanges (0 for account fields)
])

KIND_LABELS = {"payment": "payment fingerprint", "ip": "IP address", "ip_block": "IP block",
               "email_domain": "e-mail domain", "user_agent": "user agent", "asn": "ASN",
               "template": "prompt template fingerprint", "preamble": "role preamble fingerprint"}


@dataclass(frozen=True)
class _Ind:
    id: str
    kind: str
    provider: str
    shared_at: datetime | None


def _active_sql(now: datetime) -> tuple[str, list[Any]]:
    return ("SELECT id, kind, value, provider, shared_at FROM shared_indicators WHERE NOT revoked "
            "AND (valid_from IS NULL OR valid_from <= ?) AND (valid_until IS NULL OR valid_until >= ?)", [now, now])


#: Kinds a :class:`Watchlist` matches by default: each alone is specific enough to put a request on
#: notice online. ASNs and user agents are context only (one matches whole networks or every user of
#: an SDK); batch matching (``kinds=None``) uses them, weighted by :class:`IntelRule`.
ONLINE_KINDS = frozenset({"payment", "ip", "ip_block", "email_domain", "template", "preamble"})


class Watchlist:
    """Active imported indicators, matched under our group keys (``kinds``: which; None = all).

    >>> from distillguard.share.keys import GroupKey, KeyRing
    >>> ring = KeyRing([GroupKey("k1", b"s" * 32, datetime(2026, 1, 1, tzinfo=UTC))])
    >>> v = ring.keyed("payment", "pm_123")
    >>> wl = Watchlist([{"id": "indicator--1", "kind": "payment", "value": v, "provider": "Lab A",
    ...                  "shared_at": datetime(2026, 6, 1, tzinfo=UTC)}], ring)
    >>> wl.match_account({"payment_fingerprint": "pm_123"})
    ['matches indicator indicator--1 (payment fingerprint) shared by Lab A on 2026-06-01']
    >>> wl.match_account({"payment_fingerprint": "pm_999"})
    []
    """

    def __init__(self, indicators: list[dict[str, Any]], keys: KeyRing, *, now: datetime | None = None,
                 kinds: frozenset[str] | None = ONLINE_KINDS) -> None:
        self.keys = keys
        self.now = now or datetime.now(UTC)
        self.index: dict[tuple[str, str], list[_Ind]] = defaultdict(list)
        for r in indicators:
            if kinds is not None and r["kind"] not in kinds:
                continue
            self.index[(r["kind"], r["value"])].append(_Ind(r["id"], r["kind"], r.get("provider") or "?",
                                                            r.get("shared_at")))
        self.kinds = frozenset(k for k, _ in self.index)
        self._keyed = lru_cache(maxsize=200_000)(self._keyed_uncached)

    @classmethod
    def from_store(cls, db: Path | str | duckdb.DuckDBPyConnection, keys: KeyRing, *,
                   now: datetime | None = None, kinds: frozenset[str] | None = ONLINE_KINDS) -> Watchlist:
        """The active indicators of ``shared_indicators`` (empty when nothing was imported)."""
        now = now or datetime.now(UTC)
        con = db if isinstance(db, duckdb.DuckDBPyConnection) else duckdb.connect(str(db))
        try:
            ensure_share_tables(con)
            sql, params = _active_sql(now)
            rows = con.sql(sql, params=params).to_arrow_table().to_pylist()
        finally:
            if not isinstance(db, duckdb.DuckDBPyConnection):
                con.close()
        return cls(rows, keys, now=now, kinds=kinds)

    def __len__(self) -> int:
        return sum(len(v) for v in self.index.values())

    def _keyed_uncached(self, kind: str, raw: str) -> tuple[str, ...]:
        return tuple(self.keys.all_keyed(kind, raw, self.now))

    def lookup(self, kind: str, raw: object) -> list[_Ind]:
        """Indicators of ``kind`` that the raw identifier matches."""
        if raw is None or kind not in self.kinds:
            return []
        out: list[_Ind] = []
        for v in self._keyed(kind, str(raw)):
            out.extend(self.index.get((kind, v), ()))
        return out

    @staticmethod
    def reason(ind: _Ind) -> str:
        day = ind.shared_at.date().isoformat() if ind.shared_at else "?"
        return f"matches indicator {ind.id} ({KIND_LABELS.get(ind.kind, ind.kind)}) shared by {ind.provider} on {day}"

    def _reasons(self, pairs: list[tuple[str, object]]) -> list[str]:
        seen: dict[str, str] = {}
        for kind, raw in pairs:
            for ind in self.lookup(kind, raw):
                seen.setdefault(ind.id, self.reason(ind))
        return list(seen.values())

    def match_account(self, row: dict[str, Any]) -> list[str]:
        """Reasons an account row (payment_fingerprint, signup_ip, email_domain or email) matches."""
        email = row.get("email_domain") or (str(row["email"]).rsplit("@", 1)[-1] if row.get("email") else None)
        ip = row.get("signup_ip")
        return self._reasons([("payment", row.get("payment_fingerprint")), ("ip", ip), ("ip_block", ip),
                              ("email_domain", email)])

    def match_exchange(self, exchange: dict[str, Any]) -> list[str]:
        """Reasons an exchange (client_ip, user_agent, asn; template_fp/preamble_fp in ``signals``) matches."""
        sig = exchange.get("signals") or {}
        ip = exchange.get("client_ip")
        return self._reasons([("ip", ip), ("ip_block", ip), ("user_agent", exchange.get("user_agent")),
                              ("asn", exchange.get("asn")), ("template", sig.get("template_fp")),
                              ("preamble", sig.get("preamble_fp"))])


def build_indicator_matches(con: duckdb.DuckDBPyConnection, keys: KeyRing, *, now: datetime | None = None) -> int:
    """Replace table ``indicator_matches`` for every account of the store; returns rows written.

    Distinct raw identifiers are read once per kind, keyed in Python (one HMAC per distinct value and
    key), and joined back in SQL.
    """
    con.execute("SET TimeZone = 'UTC'")
    wl = Watchlist.from_store(con, keys, now=now, kinds=None)
    con.execute(f"CREATE OR REPLACE TABLE indicator_matches AS SELECT * FROM "
                f"(SELECT {', '.join(f'NULL::{_ddl_type(f.type)} AS {f.name}' for f in INDICATOR_MATCHES)}) "
                "WHERE FALSE")
    if not len(wl):
        return 0
    signals = "signals"
    if not DuckDBEngine(con).has_table("signals"):
        con.register("_share_empty_signals", SIGNALS.schema.empty_table())
        signals = "_share_empty_signals"
    con.execute("CREATE OR REPLACE TEMP TABLE _share_mobs AS "
                + _sql.OBSERVATIONS.format(signals=signals, where_x="", where_a=""))
    kinds = sorted(wl.kinds)
    distinct = con.sql("SELECT DISTINCT kind, value FROM _share_mobs WHERE kind IN (SELECT unnest(?))",
                       params=[kinds]).to_arrow_table().to_pylist()
    hits: dict[str, list[Any]] = {"kind": [], "value": [], "indicator_id": [], "provider": [], "shared_at": []}
    for r in distinct:
        for ind in wl.lookup(r["kind"], r["value"]):
            hits["kind"].append(r["kind"])
            hits["value"].append(r["value"])
            hits["indicator_id"].append(ind.id)
            hits["provider"].append(ind.provider)
            hits["shared_at"].append(ind.shared_at)
    con.register("_share_hits", pa.table(hits, schema=pa.schema([
        ("kind", pa.string()), ("value", pa.string()), ("indicator_id", pa.string()), ("provider", pa.string()),
        ("shared_at", _TS)])))
    con.execute("""
        INSERT INTO indicator_matches
        SELECT o.account_id, h.indicator_id, h.kind, h.provider, h.shared_at, MIN(o.first_ts), SUM(o.exchanges)
        FROM _share_mobs o JOIN _share_hits h ON h.kind = o.kind AND h.value = o.value
        GROUP BY o.account_id, h.indicator_id, h.kind, h.provider, h.shared_at
    """)
    con.execute("DROP TABLE IF EXISTS _share_mobs")
    return int(con.execute("SELECT count(*) FROM indicator_matches").fetchall()[0][0])


def _ddl_type(t: pa.DataType) -> str:
    from distillguard.store import duckdb_type

    return duckdb_type(t)


_ORDER = {k: i for i, k in enumerate(("payment", "email_domain", "ip", "ip_block", "template", "preamble",
                                        "user_agent", "asn"))}


@dataclass(frozen=True)
class IntelRule:
    """The explicit, opt-in rule by which shared intel alone flags an account (off by default).

    An account is flagged when the summed ``weights`` of the distinct indicator kinds it matched by
    then reach ``threshold`` and it has sent at least ``min_exchanges`` exchanges; its score is raised
    to 0.5 (the operating threshold) and a ``SHARED_INDICATOR_RULE`` reason says why. The calibrated
    risk is untouched. Defaults: a payment instrument alone suffices (it is the operator's, not a
    network's); IP evidence needs a second kind (a proxy exit is shared with ordinary households).
    """

    weights: tuple[tuple[str, float], ...] = (
        ("payment", 1.0), ("email_domain", 0.5), ("template", 0.5), ("preamble", 0.5), ("ip", 0.5),
        ("ip_block", 0.2), ("user_agent", 0.2), ("asn", 0.0))
    threshold: float = 1.0
    min_exchanges: int = 1

    def weight(self, kinds: set[str]) -> float:
        w = dict(self.weights)
        return sum(w.get(k, 0.0) for k in kinds)


def apply_intel(scored: dict[str, Any], matches: list[dict[str, Any]], first_exchange: dict[str, datetime],
                at: datetime, rule: IntelRule | None) -> dict[str, Any]:
    """Add ``SHARED_INDICATOR`` reasons for matches evident by ``at`` and, with a ``rule``, flag by it.

    ``scored``: the risk model's output (account_id, score, flagged, cluster_id, reasons), changed in
    place and returned; ``matches``: rows of ``indicator_matches``; ``first_exchange``: account ->
    first exchange time (for ``min_exchanges``, counted as 0 or >= 1).
    """
    by_acc: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for m in matches:
        if m["matched_at"] is None or m["matched_at"] <= at:
            by_acc[m["account_id"]].append(m)
    if not by_acc:
        return scored
    score = list(scored["score"])
    flagged = list(scored["flagged"])
    reasons = [list(r or []) for r in scored["reasons"]]
    for i, a in enumerate(scored["account_id"]):
        ms = by_acc.get(a)
        if not ms:
            continue
        shared = [f"SHARED_INDICATOR: matches indicator {m['indicator_id']} ({KIND_LABELS.get(m['kind'], m['kind'])}) "
                  f"shared by {m['provider']} on {m['shared_at'].date().isoformat() if m['shared_at'] else '?'}"
                  for m in sorted(ms, key=lambda m: (_ORDER.get(m["kind"], 99), m["indicator_id"]))]
        kinds = {m["kind"] for m in ms}
        if rule is not None and not flagged[i]:
            fx = first_exchange.get(a)
            active = fx is not None and fx <= at
            w = rule.weight(kinds)
            if w >= rule.threshold and (active or rule.min_exchanges <= 0):
                flagged[i] = True
                score[i] = max(float(score[i]), 0.5)
                shared.insert(0, f"SHARED_INDICATOR_RULE: matched {', '.join(sorted(kinds))} shared by peers "
                                 f"(weight {w:.2f} >= {rule.threshold:.2f})")
        reasons[i] = shared[:6] + reasons[i] if rule is not None and flagged[i] else reasons[i] + shared[:6]
    scored = dict(scored)
    scored["score"], scored["flagged"], scored["reasons"] = score, flagged, reasons
    return scored

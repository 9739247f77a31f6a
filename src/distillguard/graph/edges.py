"""Linkage edges between accounts: shared payment instruments, sign-up blocks, client IP sets, ASNs,
user agents, e-mail domains, templates, synchronised activity and sign-up waves, with hub guards.

Reads ``accounts``, ``exchanges`` and (when present) ``signals``; writes ``edges``
(:data:`distillguard.contract.EDGES`). See ``docs/graph.md`` for every kind, its benign look-alikes
and its guard.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from distillguard.engines import Engine
from distillguard.graph import _sql

__all__ = ["DEFAULTS", "RULES", "KindRule", "build_edges"]


@dataclass(frozen=True)
class KindRule:
    """How a kind of shared value turns into an edge weight: ``base * min(cap, max(floor, sum of IDF)))``.

    ``floor`` keeps identity-like evidence (a card) from fading in big groups the way a NAT should."""

    base: float
    cap: float = 1.0
    floor: float = 0.0


#: Per-kind weights. IDF of a value held by n accounts is 1/log2(1+n): 0.63 for 2, 0.23 for 20,
#: 0.13 for 200, so the summed IDF of one shared value never exceeds 0.63.
RULES: dict[str, KindRule] = {
    "payment": KindRule(3.0, floor=0.25),  # a card is an identity: >= 0.75 however many share it
    "template": KindRule(2.0),  # same role preamble / prompt skeleton on many requests
    "signup_block": KindRule(0.6),  # alone (<= 0.38) below min_weight: a proxy exit is also a home
    "email": KindRule(0.8),  # non-public domain only
    "client_ip": KindRule(2.0, cap=3.0),  # times the Jaccard of the two /24 sets
    "user_agent": KindRule(0.2),  # weak: SDK defaults are everywhere
    "asn": KindRule(0.1),  # very weak: usually hub-guarded away
}

#: Thresholds; every one is a ``build_edges`` keyword argument.
DEFAULTS: dict[str, Any] = {
    "max_group": 200,  # a value held by more accounts is a hub: no pairs (NAT, cloud ASN, SDK UA, proxy exit)
    "sparse_kinds": ("payment", "template"),  # ...except these strong kinds, expanded sparsely:
    "max_group_sparse": 50_000,  # up to this size, each member linked to its next sparse_k members
    "sparse_k": 5,
    "weak_kinds": ("asn", "user_agent"),  # weak kinds use a smaller hub size:
    "max_group_weak": 50,
    "dominant_share": 0.5,  # asn / user_agent: only an account's dominant value counts
    "min_shared_blocks": 2,  # client_ip: shared /24s needed ...
    "min_ip_jaccard": 0.25,  # ... and Jaccard of the two accounts' /24 sets
    "min_template_share": 0.2,  # template value on >= this share of an account's requests ...
    "min_template_requests": 2,  # ... and on at least this many
    "bucket_s": 600,  # synchrony: 10-minute buckets
    "min_sync_buckets": 3,
    "min_sync_jaccard": 0.3,
    "sync_kinds": ("payment", "signup_block", "client_ip", "template", "email"),
    "w_synchrony": 1.5,  # weight = w_synchrony * Jaccard
    "wave_s": 6 * 3600,  # sign-up wave: created within 6 h ...
    "wave_kinds": ("payment", "signup_block", "client_ip", "template", "email"),  # ... and sharing one
    "w_wave": 0.5,
}

_TEMP = ("_g_acc", "_g_acc_block", "_g_acc_dom", "_g_acc_bucket", "_g_acc_template", "_g_attr", "_g_members",
         "_g_pairs", "_g_pair_kind", "_g_deg", "_g_shared", "_g_sync", "_g_wave")


def _as_of_literal(as_of: datetime | str | None) -> str:
    if as_of is None:
        return "9999-12-31 00:00:00+00:00"
    if isinstance(as_of, str):
        as_of = datetime.fromisoformat(as_of.replace("Z", "+00:00"))
    if as_of.tzinfo is None:
        as_of = as_of.replace(tzinfo=UTC)
    return as_of.astimezone(UTC).isoformat(sep=" ")


def _quote_list(xs: tuple[str, ...] | list[str]) -> str:
    return ", ".join("'" + str(x).replace("'", "''") + "'" for x in xs)


def format_params(as_of: datetime | str | None = None, **overrides: Any) -> dict[str, Any]:
    """The constants the stage's SQL is formatted with (defaults, overridden, lists quoted)."""
    unknown = set(overrides) - set(DEFAULTS)
    if unknown:
        raise TypeError(f"unknown build_edges parameter(s): {', '.join(sorted(unknown))}")
    p = {**DEFAULTS, **overrides, "as_of": _as_of_literal(as_of), "template_union": ""}
    for k in ("sparse_kinds", "weak_kinds", "sync_kinds", "wave_kinds"):
        p[k] = _quote_list(p[k])
    return p


def build_edges(engine: Engine, *, as_of: datetime | str | None = None,
                rules: dict[str, KindRule] | None = None, **params: Any) -> int:
    """Write table ``edges`` (src < dst, kind, weight, evidence) and return its row count.

    Uses accounts created and exchanges/signals seen up to ``as_of`` (all when None). Without a
    ``signals`` table there are no template edges. ``params`` override :data:`DEFAULTS`.

    >>> import duckdb
    >>> from distillguard.engines import DuckDBEngine
    >>> e = DuckDBEngine(duckdb.connect())
    >>> e.execute("CREATE TABLE accounts AS SELECT * FROM (VALUES ('a', TIMESTAMPTZ '2026-01-01', "
    ...           "'card1', '1.2.3.4', 'x.com'), ('b', TIMESTAMPTZ '2026-02-01', 'card1', '9.9.9.9', "
    ...           "'gmail.com')) t(account_id, created_at, payment_fingerprint, signup_ip, email_domain)")
    >>> e.execute("CREATE TABLE exchanges (request_id VARCHAR, ts TIMESTAMPTZ, account_id VARCHAR, "
    ...           "client_ip VARCHAR, asn BIGINT, user_agent VARCHAR)")
    >>> build_edges(e)
    1
    >>> e.query("SELECT src, dst, kind, evidence FROM edges").to_pylist()
    [{'src': 'a', 'dst': 'b', 'kind': 'payment', 'evidence': 'card1'}]
    """
    p = format_params(as_of, **params)
    rules = RULES if rules is None else {**RULES, **rules}
    engine.register("_g_rules", pa.table({
        "kind": list(rules), "base": [r.base for r in rules.values()], "cap": [r.cap for r in rules.values()],
        "floor": [r.floor for r in rules.values()],
    }))
    try:
        engine.create_table_as("_g_acc", _sql.ACC.format(**p), temp=True)
        engine.create_table_as("_g_acc_block", _sql.ACC_BLOCK.format(**p), temp=True)
        engine.create_table_as("_g_acc_dom", _sql.ACC_DOM.format(**p), temp=True)
        engine.create_table_as("_g_acc_bucket", _sql.ACC_BUCKET.format(**p), temp=True)
        if engine.has_table("signals"):
            engine.create_table_as("_g_acc_template", _sql.ACC_TEMPLATE.format(**p), temp=True)
            p["template_union"] = _sql.TEMPLATE_UNION
        engine.create_table_as("_g_attr", _sql.ATTR.format(**p), temp=True)
        engine.create_table_as("_g_members", _sql.MEMBERS.format(**p), temp=True)
        engine.create_table_as("_g_pairs", _sql.PAIRS.format(**p), temp=True)
        engine.create_table_as("_g_pair_kind", _sql.PAIR_KIND.format(**p), temp=True)
        engine.create_table_as("_g_deg", _sql.DEG.format(**p), temp=True)
        engine.create_table_as("_g_shared", _sql.SHARED.format(**p), temp=True)
        engine.create_table_as("_g_sync", _sql.SYNC.format(**p), temp=True)
        engine.create_table_as("_g_wave", _sql.WAVE.format(**p), temp=True)
        engine.create_table_as("edges", _sql.EDGES.format(**p))
    finally:
        for t in _TEMP:
            engine.execute(f"DROP TABLE IF EXISTS {t}")
        _unregister(engine, "_g_rules")
    return int(engine.query("SELECT count(*) AS n FROM edges").column("n")[0].as_py())


def _unregister(engine: Engine, name: str) -> None:
    con = getattr(engine, "con", None)
    if con is not None:
        with contextlib.suppress(Exception):
            con.unregister(name)

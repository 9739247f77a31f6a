"""Stage 6a: one row per campaign in table ``campaigns``, from the stage tables only.

A *campaign* is a cluster with at least ``min_flagged`` flagged accounts. Every other flagged account
(no cluster, or a cluster under the bar) becomes a single-account campaign ``solo_<account_id>`` so that
every flagged account appears in exactly one report (``include_single=False`` turns this off).
Counts of accounts cover all cluster members; everything else (exchanges, window, capability mix,
templates, infrastructure, sign-ups, models, reasons) covers the *flagged* members, the accounts an
operator would act on.
"""

from __future__ import annotations

import json
from collections import defaultdict
from decimal import Decimal
from typing import Any

import pyarrow as pa

from distillguard.contract import CAMPAIGNS, CLUSTERS, SIGNALS
from distillguard.engines import Engine
from distillguard.report import _sql

__all__ = ["CAMPAIGNS", "JSON_COLUMNS", "build_campaigns", "read_campaigns"]

#: Columns of ``campaigns`` that hold JSON text.
JSON_COLUMNS = frozenset(f.name for f in CAMPAIGNS.fields if f.doc.startswith("JSON"))

_TEMPS = ("_report_members", "_report_models", "_report_ax", "_report_sx", "_report_facets", "_report_other_pairs")


def _plain(v: Any) -> Any:
    if isinstance(v, Decimal):  # engines differ in the type of SUM(); the report wants plain numbers
        return int(v) if v == v.to_integral_value() else float(v)
    return v


def _rows(engine: Engine, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    return [{k: _plain(v) for k, v in r.items()} for r in engine.query(sql, params).to_pylist()]


def _iso(v: Any) -> str | None:
    return None if v is None else v.isoformat()


def build_campaigns(
    engine: Engine,
    *,
    min_flagged: int = 2,
    include_single: bool = True,
    top_k: int = 10,
    cot_threshold: float = 0.5,
    wave_gap_s: int = 6 * 3600,
) -> int:
    """Write table ``campaigns`` (see :data:`CAMPAIGNS`) and return its number of rows.

    Reads ``detections``, ``accounts``, ``exchanges`` and, when present, ``clusters`` and ``signals``
    (without them, cluster ids come from ``detections`` and content columns stay empty).
    """
    if not engine.has_table("detections"):
        raise RuntimeError("build_campaigns needs table 'detections' (run the scoring stage first)")
    clusters, signals = "clusters", "signals"
    if not engine.has_table("clusters"):
        clusters = "_report_empty_clusters"
        engine.register(clusters, CLUSTERS.schema.empty_table())
    if not engine.has_table("signals"):
        signals = "_report_empty_signals"
        engine.register(signals, SIGNALS.schema.empty_table())
    fmt = {
        "clusters": clusters,
        "signals": signals,
        "min_flagged": int(min_flagged),
        "include_single": "TRUE" if include_single else "FALSE",
        "cot_threshold": float(cot_threshold),
        "top_k": int(top_k),
        "wave_gap_s": int(wave_gap_s),
    }
    try:
        engine.create_table_as("_report_members", _sql.MEMBERS.format(**fmt))
        engine.create_table_as("_report_models", _sql.MODELS)
        engine.create_table_as("_report_ax", _sql.ACCOUNT_EXCHANGES.format(**fmt))
        engine.create_table_as("_report_sx", _sql.ACCOUNT_SIGNALS.format(**fmt))
        engine.create_table_as("_report_facets", _sql.EXCHANGE_FACETS.format(**fmt))
        engine.create_table_as("_report_other_pairs", _sql.OTHER_PAIRS.format(**fmt))
        rows = _assemble(engine, fmt, top_k)
    finally:
        for t in _TEMPS:
            engine.execute(f"DROP TABLE IF EXISTS {t}")
    table = pa.Table.from_pylist(rows, schema=CAMPAIGNS.schema)
    engine.register("_report_campaigns_new", table)
    engine.create_table_as("campaigns", "SELECT * FROM _report_campaigns_new")
    return table.num_rows


def _assemble(engine: Engine, fmt: dict[str, Any], top_k: int) -> list[dict[str, Any]]:
    core = _rows(engine, _sql.CORE.format(**fmt))
    by_id: dict[str, dict[str, Any]] = {r["campaign_id"]: r for r in core}

    # Exchange facets: top values, distinct counts.
    facets: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    n_values: dict[tuple[str, str], int] = {}
    for r in _rows(engine, _sql.FACETS_TOP.format(**fmt)):
        key = (r["campaign_id"], r["facet"])
        facets[key].append({"value": r["value"], "exchanges": r["exchanges"], "accounts": r["accounts"]})
        n_values[key] = r["n_values"]
    others = {
        (r["campaign_id"], r["facet"], r["value"]): r["other_accounts"]
        for r in _rows(engine, _sql.FACET_OTHERS.format(**fmt))
    }
    others_total = {
        (r["campaign_id"], r["facet"]): r["other_accounts"]
        for r in _rows(engine, _sql.FACET_OTHERS_TOTAL.format(**fmt))
    }
    acc_facets: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in _rows(engine, _sql.ACCOUNT_FACETS.format(**fmt)):
        key = (r["campaign_id"], r["facet"])
        n_values[key] = r["n_values"]
        if r["facet"] == "signup_day":
            acc_facets[key].append({"day": r["value"], "accounts": r["accounts"]})
        elif r["rk"] <= top_k:
            acc_facets[key].append(
                {"value": r["value"], "accounts": r["accounts"], "other_accounts": r["other_accounts"]}
            )
    waves: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in _rows(engine, _sql.WAVES.format(**fmt)):
        waves[r["campaign_id"]].append(
            {"wave": r["wave"], "accounts": r["accounts"], "first_at": _iso(r["first_at"]), "last_at": _iso(r["last_at"])}
        )
    newest = {r["campaign_id"]: r for r in _rows(engine, _sql.NEWEST_MODEL.format(**fmt))}
    reasons: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in _rows(engine, _sql.REASONS.format(**fmt)):
        if r["rk"] <= top_k:
            reasons[r["campaign_id"]].append({"phrase": r["phrase"], "accounts": r["accounts"], "example": r["example"]})
    daily: dict[str, dict[str, dict[str, int]]] = defaultdict(lambda: defaultdict(dict))
    for r in _rows(engine, _sql.DAILY.format(**fmt)):
        daily[r["campaign_id"]][r["day"].isoformat()][r["series"]] = r["n"]
    members: dict[str, list[str]] = defaultdict(list)
    for r in _rows(engine, _sql.MEMBER_IDS):
        members[r["campaign_id"]].append(r["account_id"])

    out = []
    for cid, c in by_id.items():
        def top(facet: str, cid: str = cid) -> list[dict[str, Any]]:
            return facets.get((cid, facet), [])

        caps = top("capability")
        n_cls = c["n_classified"] or 0
        mix = {v["value"]: v["exchanges"] / n_cls for v in caps} if n_cls else {}
        templates = [
            {"kind": kind, "fp": v["value"], "exchanges": v["exchanges"], "accounts": v["accounts"]}
            for kind in ("template", "preamble")
            for v in top(kind)
        ]
        infra = {}
        for facet in ("block", "asn"):
            infra[facet] = [dict(v, other_accounts=others.get((cid, facet, v["value"]), 0)) for v in top(facet)]
        days = daily.get(cid, {})
        series = [
            {
                "day": d,
                "exchanges": days[d].get("exchanges", 0),
                "new_accounts": days[d].get("new_accounts", 0),
                "flagged": days[d].get("flagged", 0),
                "created": days[d].get("created", 0),
            }
            for d in sorted(days)
        ]
        nm = newest.get(cid, {})
        out.append(
            {
                "campaign_id": cid,
                "kind": c["kind"],
                "cluster_id": c["cluster_id"],
                "n_accounts": c["n_accounts"],
                "n_flagged": c["n_flagged"],
                "n_exchanges": c["n_exchanges"],
                "first_ts": c["first_ts"],
                "last_ts": c["last_ts"],
                "first_flagged_at": c["first_flagged_at"],
                "mean_score": c["mean_score"],
                "max_score": c["max_score"],
                "capability_mix": json.dumps(dict(sorted(mix.items(), key=lambda kv: (-kv[1], kv[0])))),
                "cot_share": c["cot_share"],
                "cot_mean": c["cot_mean"],
                "n_templates": n_values.get((cid, "template"), 0),
                "n_preambles": n_values.get((cid, "preamble"), 0),
                "top_templates": json.dumps(templates),
                "n_blocks": n_values.get((cid, "block"), 0),
                "n_asns": n_values.get((cid, "asn"), 0),
                "blocks_other_accounts": others_total.get((cid, "block"), 0),
                "asns_other_accounts": others_total.get((cid, "asn"), 0),
                "blocks": json.dumps(infra["block"]),
                "asns": json.dumps(infra["asn"]),
                "n_payments": n_values.get((cid, "payment"), 0),
                "payments": json.dumps(acc_facets.get((cid, "payment"), [])),
                "n_user_agents": n_values.get((cid, "user_agent"), 0),
                "user_agents": json.dumps(top("user_agent")),
                "email_domains": json.dumps(acc_facets.get((cid, "email_domain"), [])),
                "n_waves": len(waves.get(cid, [])),
                "waves": json.dumps(waves.get(cid, [])),
                "signups": json.dumps(sorted(acc_facets.get((cid, "signup_day"), []), key=lambda r: r["day"])),
                "models": json.dumps(top("model")),
                "newest_model": nm.get("newest_model") if nm.get("n_models_seen", 0) > 1 else None,
                "newest_model_share": nm.get("newest_model_share") if nm.get("n_models_seen", 0) > 1 else None,
                "newest_model_share_after": nm.get("newest_model_share_after") if nm.get("n_models_seen", 0) > 1 else None,
                "top_reasons": json.dumps(reasons.get(cid, [])),
                "daily": json.dumps(series),
                "members": json.dumps(members.get(cid, [])),
            }
        )
    return out


def read_campaigns(engine: Engine) -> list[dict[str, Any]]:
    """The ``campaigns`` table as plain dicts, JSON columns decoded, timestamps as ISO strings,
    largest campaign (most flagged accounts) first."""
    json_cols = JSON_COLUMNS
    out = []
    for r in _rows(engine, _sql.READ_CAMPAIGNS):
        d: dict[str, Any] = {}
        for k, v in r.items():
            if k in json_cols:
                d[k] = json.loads(v) if v is not None else None
            elif hasattr(v, "isoformat"):
                d[k] = v.isoformat()
            else:
                d[k] = v
        out.append(d)
    return out

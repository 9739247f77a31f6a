"""Export one campaign as a STIX 2.1 bundle that identifies its operator without exposing customers.

What leaves, and only if the privacy rule passes (:class:`PrivacyPolicy`):

* identifiers of the campaign's flagged members (payment fingerprints, client and sign-up IPs and
  their /24 or /48 blocks, e-mail domains, user agents) as keyed HMACs under the group key; ASNs
  (public) and template/preamble fingerprints (numbers, not text) in clear;
* counts and time windows (campaign, observed-data, sightings), capability mix, techniques.

Never: prompt or response text, raw identifiers, account ids, the campaign's member list.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import stix2

from distillguard.contract import SIGNALS
from distillguard.engines import DuckDBEngine
from distillguard.share import _sql
from distillguard.share.keys import KEYED_KINDS, KeyRing, is_public_email_domain, normalise
from distillguard.share.stix import (
    CAMPAIGN_EXTENSION_ID,
    FP_SCHEME,
    SCO_EXTENSION_ID,
    SCO_TYPE,
    TECHNIQUES,
    KeyedIdentifier,
    pattern_for,
    stable_id,
)

__all__ = ["Candidate", "ExportPlan", "PrivacyPolicy", "build_bundle", "export_campaign", "plan_dict", "plan_export",
           "render_privacy_report", "validate_bundle"]

#: Indicator kinds exported, in the order the privacy report lists them.
EXPORT_KINDS = ("payment", "ip", "ip_block", "email_domain", "user_agent", "asn", "template", "preamble")
PROJECT_IDENTITY = stable_id("identity", "distillguard-project")


@dataclass
class PrivacyPolicy:
    """When an identifier may leave. Defaults are documented in ``docs/sharing.md``.

    ``k``: seen on at least k flagged accounts of the campaign. *High-value* accounts (never exposed,
    even by a match): unflagged accounts whose tier is in ``high_value_tiers``, or verified (when
    ``high_value_verified``), or with more than ``high_value_exchanges`` exchanges. ``allow_list``:
    account ids the provider vouches for; a value any of them uses stays home. ``max_other_ratio``:
    a value used by more unflagged accounts than ``ratio x`` its flagged accounts does not single
    out the campaign (a shared SDK user agent, a big ASN) and stays home.
    """

    k: int = 3
    high_value_tiers: tuple[str, ...] = ("enterprise",)
    high_value_verified: bool = True
    high_value_exchanges: int = 1000
    max_other_ratio: float = 1.0
    allow_list: frozenset[str] = frozenset()
    max_per_kind: int = 50


@dataclass
class Candidate:
    """One identifier of the campaign and the verdict on it."""

    kind: str
    value: str  # raw, local only: never written to the bundle or the privacy report
    members: int
    flagged_accounts: int
    unflagged_accounts: int
    high_value_accounts: int
    allow_listed_accounts: int
    exchanges: int
    first_ts: datetime | None
    last_ts: datetime | None
    shared: str | None = None  # the value as it leaves (keyed or clear), when exported
    withheld: str | None = None  # why not, when withheld


@dataclass
class ExportPlan:
    """Everything an export would do: the campaign, each candidate's verdict, the key used."""

    campaign: dict[str, Any]
    candidates: list[Candidate]
    key_id: str
    policy: PrivacyPolicy
    provider: str
    bundle: dict[str, Any] | None = None
    files: list[str] = field(default_factory=list)

    @property
    def exported(self) -> list[Candidate]:
        return [c for c in self.candidates if c.shared is not None]

    def report(self) -> dict[str, Any]:
        """The privacy report: per kind, how many leave and how many stay (and why); no raw values."""
        kinds: dict[str, dict[str, Any]] = {}
        for c in self.candidates:
            d = kinds.setdefault(c.kind, {"exported": 0, "withheld": 0, "withheld_why": Counter()})
            if c.shared is not None:
                d["exported"] += 1
            else:
                d["withheld"] += 1
                d["withheld_why"][c.withheld or "?"] += 1
        for d in kinds.values():
            d["withheld_why"] = dict(d["withheld_why"].most_common())
        types = Counter(o["type"] for o in (self.bundle or {}).get("objects", []))
        return {
            "campaign": self.campaign["campaign_id"], "provider": self.provider, "key_id": self.key_id,
            "k": self.policy.k, "indicators": len(self.exported), "kinds": kinds,
            "objects": dict(sorted(types.items())),
            "leaves": ["campaign window, account and exchange counts, capability mix, CoT share",
                       "techniques seen (attack patterns)",
                       "keyed HMACs of payment fingerprints, IPs, /24 or /48 blocks, non-webmail e-mail domains, "
                       "user agents; ASNs, webmail domains and template/preamble fingerprints in clear",
                       "per indicator: flagged-account count, exchange count, first/last seen"],
            "never": ["prompt or response text", "raw identifiers", "account ids", "member lists",
                      "counts of unflagged accounts"],
        }


def _connect(db: Path | str) -> duckdb.DuckDBPyConnection:
    if not Path(db).exists():
        raise ValueError(f"{db}: no such store (run `distillguard ingest` and `distillguard detect` first)")
    con = duckdb.connect(str(db))
    con.execute("SET TimeZone = 'UTC'")
    return con


def _has(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    return DuckDBEngine(con).has_table(name)


def _campaign(con: duckdb.DuckDBPyConnection, campaign_id: str) -> dict[str, Any]:
    from distillguard.engines import DuckDBEngine
    from distillguard.report import read_campaigns

    if not _has(con, "campaigns"):
        raise ValueError("the store has no campaigns table: run `distillguard detect` (with reports) first")
    camps = read_campaigns(DuckDBEngine(con))
    for c in camps:
        if c["campaign_id"] == campaign_id:
            return c
    known = ", ".join(c["campaign_id"] for c in camps[:10])
    raise ValueError(f"no campaign {campaign_id!r} in the store (largest: {known})")


def plan_export(db: Path | str, campaign_id: str, keys: KeyRing, *, policy: PrivacyPolicy | None = None,
                provider: str = "distillguard provider", now: datetime | None = None) -> ExportPlan:
    """Decide, per identifier of the campaign, whether it may leave and in what form."""
    policy = policy or PrivacyPolicy()
    now = now or datetime.now(UTC)
    key = keys.current(now)
    con = _connect(db)
    try:
        camp = _campaign(con, campaign_id)
        members = camp["members"] or []
        con.register("_share_members", pa.table({"account_id": pa.array(members, pa.string())}))
        con.register("_share_allow", pa.table({"account_id": pa.array(sorted(policy.allow_list), pa.string())}))
        signals = "signals"
        if not _has(con, "signals"):
            con.register("_share_empty_signals", SIGNALS.schema.empty_table())
            signals = "_share_empty_signals"
        obs = _sql.OBSERVATIONS.format(signals=signals, where_x="", where_a="")
        con.execute(f"CREATE TEMP TABLE _share_obs AS {obs}")
        tiers = ", ".join("'" + t.lower().replace("'", "''") + "'" for t in policy.high_value_tiers) or "''"
        rows = con.sql(_sql.CANDIDATES.format(
            hv_tiers=tiers, hv_verified="TRUE" if policy.high_value_verified else "FALSE",
            hv_exchanges=int(policy.high_value_exchanges))).to_arrow_table().to_pylist()
    finally:
        con.close()
    cands = [Candidate(**r) for r in rows if r["kind"] in EXPORT_KINDS]
    per_kind: Counter[str] = Counter()
    for c in sorted(cands, key=lambda c: (-c.members, c.kind, c.value)):
        c.withheld = _verdict(c, policy)
        if c.withheld is None and per_kind[c.kind] >= policy.max_per_kind:
            c.withheld = f"over the {policy.max_per_kind} indicators kept per kind"
        if c.withheld is None:
            c.shared = keys.keyed(c.kind, c.value, key)
            if c.shared is None:
                c.withheld = "cannot be normalised"
            else:
                per_kind[c.kind] += 1
    cands.sort(key=lambda c: (EXPORT_KINDS.index(c.kind), -c.members, c.value))
    return ExportPlan(camp, cands, key.key_id, policy, provider)


def _verdict(c: Candidate, p: PrivacyPolicy) -> str | None:
    if c.members < p.k:
        return f"seen on {c.members} flagged account(s), below k={p.k}"
    if c.allow_listed_accounts:
        return "used by an allow-listed account"
    if c.high_value_accounts:
        return "used by an unflagged high-value account"
    if c.unflagged_accounts > p.max_other_ratio * c.flagged_accounts:
        return "used by more unflagged than flagged accounts (not discriminating)"
    if c.kind == "email_domain" and is_public_email_domain(normalise("email_domain", c.value) or ""):
        return "public webmail domain (identifies nobody, matches everyone)"
    return None


def _ts(v: Any) -> datetime:
    if isinstance(v, str):
        v = datetime.fromisoformat(v)
    assert isinstance(v, datetime)
    return v if v.tzinfo else v.replace(tzinfo=UTC)


def _techniques(c: dict[str, Any]) -> list[str]:
    """Which techniques the campaign's figures evidence (thresholds documented in docs/sharing.md)."""
    mix = c.get("capability_mix") or {}
    seen = ["inference_api_exfiltration"]
    if (c.get("cot_share") or 0) >= 0.3:
        seen.append("cot_elicitation")
    if any(t["kind"] == "preamble" and t["accounts"] >= 2 for t in c.get("top_templates") or []):
        seen.append("templated_preambles")
    if mix.get("grader", 0) >= 0.1:
        seen.append("grader_prompts")
    if c.get("kind") == "cluster" and (c.get("n_flagged") or 0) >= 3 and (c.get("n_waves") or 0) >= 1:
        seen.append("hydra_accounts")
    if (c.get("n_blocks") or 0) >= 5 and (c.get("n_blocks") or 0) >= (c.get("n_flagged") or 0) // 2:
        seen.append("proxy_rotation")
    if c.get("newest_model") and (c.get("newest_model_share_after") or 0) >= 0.5:
        seen.append("model_release_pivot")
    return seen


def build_bundle(plan: ExportPlan, *, now: datetime | None = None, ttl_days: int = 90,
                 intrusion_set: str | None = None) -> dict[str, Any]:
    """The STIX 2.1 bundle of a plan (a dict, ready to serialise)."""
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    c = plan.campaign
    ident = stix2.Identity(id=stable_id("identity", plan.provider), name=plan.provider,
                           identity_class="organization", created=now, modified=now)
    project = stix2.Identity(id=PROJECT_IDENTITY, name="distillguard", identity_class="system",
                             created=datetime(2026, 1, 1, tzinfo=UTC), modified=datetime(2026, 1, 1, tzinfo=UTC))
    common = {"created_by_ref": ident.id, "created": now, "modified": now,
              "object_marking_refs": [stix2.TLP_AMBER.id]}
    ext_defs = [
        stix2.ExtensionDefinition(
            id=SCO_EXTENSION_ID, created_by_ref=project.id, created=project.created, modified=project.created,
            name=SCO_TYPE, version="1.0.0", extension_types=["new-sco"],
            description="A customer identifier shared between LLM API providers: kind (payment, ip, ip_block, "
                        "email_domain, user_agent, template, preamble), value (hmac-sha256:<key_id>:<hex> under "
                        "the sharing group's key, or a clear public value), key_id, scheme.",
            schema="https://github.com/distillguard/distillguard/blob/main/docs/sharing.md#the-custom-sco"),
        stix2.ExtensionDefinition(
            id=CAMPAIGN_EXTENSION_ID, created_by_ref=project.id, created=project.created,
            modified=project.created, name="distillguard campaign figures", version="1.0.0",
            extension_types=["property-extension"],
            description="Counts of a distillation campaign: flagged_accounts, linked_accounts, exchanges, "
                        "capability_mix {class: share}, cot_share, model_pivot_share, fingerprint_scheme.",
            schema="https://github.com/distillguard/distillguard/blob/main/docs/sharing.md#campaign-figures"),
    ]
    mix = c.get("capability_mix") or {}
    aims = ", ".join(f"{k} {v:.0%}" for k, v in list(mix.items())[:4])
    first, last = _ts(c["first_ts"]) if c.get("first_ts") else now, _ts(c["last_ts"]) if c.get("last_ts") else now
    campaign = stix2.Campaign(
        id=stable_id("campaign", plan.provider, c["campaign_id"]),
        name=f"LLM distillation campaign seen by {plan.provider} from {first.date()}",
        description=(f"{c['n_flagged']} flagged accounts ({c['n_accounts']} linked), {c['n_exchanges']} exchanges "
                     f"from {first.date()} to {last.date()}."),
        first_seen=first, last_seen=last,
        objective=f"Harvest model outputs to train a competing model (distillation); capability mix: {aims or '?'}.",
        extensions={CAMPAIGN_EXTENSION_ID: {
            "extension_type": "property-extension", "flagged_accounts": int(c["n_flagged"]),
            "linked_accounts": int(c["n_accounts"]), "exchanges": int(c["n_exchanges"]),
            "capability_mix": {k: round(float(v), 4) for k, v in mix.items()},
            "cot_share": None if c.get("cot_share") is None else round(float(c["cot_share"]), 4),
            "model_pivot_share": (None if c.get("newest_model_share_after") is None
                                  else round(float(c["newest_model_share_after"]), 4)),
            "fingerprint_scheme": FP_SCHEME}},
        allow_custom=True, **common)
    objs: list[Any] = [stix2.TLP_AMBER, project, ident, *ext_defs, campaign]
    for key in _techniques(c):
        t = TECHNIQUES[key]
        ap = stix2.AttackPattern(
            id=stable_id("attack-pattern", "distillguard", key), name=t.name, description=t.description,
            external_references=[{"source_name": "distillguard", "external_id": key}]
            + [{"source_name": s, "external_id": e, "url": u} for s, e, u in t.refs],
            created_by_ref=project.id, created=project.created, modified=project.created)
        objs += [ap, stix2.Relationship(id=stable_id("relationship", campaign.id, "uses", ap.id),
                                        relationship_type="uses", source_ref=campaign.id, target_ref=ap.id, **common)]
    if intrusion_set:
        iset = stix2.IntrusionSet(id=stable_id("intrusion-set", plan.provider, intrusion_set), name=intrusion_set,
                                  **common)
        objs += [iset, stix2.Relationship(id=stable_id("relationship", campaign.id, "attributed-to", iset.id),
                                          relationship_type="attributed-to", source_ref=campaign.id,
                                          target_ref=iset.id, **common)]
    for cand in plan.exported:
        assert cand.shared is not None
        keyed = cand.kind in KEYED_KINDS and cand.shared.startswith("hmac-sha256:")
        f_ts = _ts(cand.first_ts) if cand.first_ts else first
        l_ts = max(_ts(cand.last_ts) if cand.last_ts else last, f_ts)
        if cand.kind == "asn":
            sco: Any = stix2.AutonomousSystem(number=int(cand.shared))
        else:
            sco = KeyedIdentifier(kind=cand.kind, value=cand.shared, key_id=plan.key_id if keyed else None,
                                  scheme=("hmac-sha256" if keyed else FP_SCHEME if cand.kind in ("template", "preamble")
                                          else "clear"))
        ind = stix2.Indicator(
            id=stable_id("indicator", plan.provider, cand.kind, cand.shared),
            name=f"{cand.kind.replace('_', ' ')} of an LLM distillation campaign",
            indicator_types=["malicious-activity"], pattern=pattern_for(cand.kind, cand.shared),
            pattern_type="stix", valid_from=f_ts, valid_until=max(l_ts, now) + timedelta(days=ttl_days),
            labels=[f"kind:{cand.kind}"] + ([f"key:{plan.key_id}"] if keyed else []), **common)
        od = stix2.ObservedData(
            id=stable_id("observed-data", ind.id), first_observed=f_ts, last_observed=l_ts,
            number_observed=max(1, int(cand.exchanges or cand.members)), object_refs=[sco.id],
            allow_custom=True, **common)
        sight = stix2.Sighting(
            id=stable_id("sighting", ind.id), sighting_of_ref=ind.id, observed_data_refs=[od.id],
            where_sighted_refs=[ident.id], count=int(cand.members), first_seen=f_ts, last_seen=l_ts,
            description=f"seen on {cand.members} flagged accounts, {cand.exchanges} exchanges", **common)
        rel = stix2.Relationship(id=stable_id("relationship", ind.id, "indicates", campaign.id),
                                 relationship_type="indicates", source_ref=ind.id, target_ref=campaign.id, **common)
        objs += [sco, ind, od, sight, rel]
    bundle = stix2.Bundle(objects=objs, allow_custom=True)
    doc: dict[str, Any] = json.loads(bundle.serialize())
    _assert_no_raw(doc, plan)
    return doc


def _assert_no_raw(doc: dict[str, Any], plan: ExportPlan) -> None:
    """Last line of defence: no raw customer identifier of any candidate appears anywhere."""
    text = json.dumps(doc)
    for a in [plan.campaign["campaign_id"], *(plan.campaign.get("members") or [])]:
        if a in text:
            raise RuntimeError("refusing to export: a local account or campaign id would leave in the bundle")
    for c in plan.candidates:
        if c.kind in KEYED_KINDS and len(c.value) >= 4 and not is_public_email_domain(c.value) and c.value in text:
            raise RuntimeError(f"refusing to export: a raw {c.kind} value would leave in the bundle")


def validate_bundle(doc: dict[str, Any]) -> list[str]:
    """Errors from ``stix2-validator`` (empty when valid); warnings are not errors."""
    from stix2validator import ValidationOptions, validate_parsed_json

    res = validate_parsed_json(doc, ValidationOptions(version="2.1"))
    results = res if isinstance(res, list) else [res]
    return [str(e) for r in results for e in r.errors]


def export_campaign(db: Path | str, campaign_id: str, keys: KeyRing, out: Path | str | None, *,
                    policy: PrivacyPolicy | None = None, provider: str = "distillguard provider",
                    dry_run: bool = False, now: datetime | None = None, ttl_days: int = 90,
                    intrusion_set: str | None = None) -> ExportPlan:
    """Plan, build, validate and (unless ``dry_run``) write the bundle; returns the plan with its report."""
    plan = plan_export(db, campaign_id, keys, policy=policy, provider=provider, now=now)
    plan.bundle = build_bundle(plan, now=now, ttl_days=ttl_days, intrusion_set=intrusion_set)
    errors = validate_bundle(plan.bundle)
    if errors:
        raise RuntimeError("the bundle does not validate: " + "; ".join(errors[:5]))
    if not dry_run and out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(out.suffix + ".tmp")
        tmp.write_text(json.dumps(plan.bundle, indent=1) + "\n")
        tmp.replace(out)
        plan.files.append(str(out))
    return plan


def render_privacy_report(plan: ExportPlan) -> str:
    """The dry-run text: exactly what would leave, per kind, and what stays home and why."""
    r = plan.report()
    lines = [f"campaign {r['campaign']} as {r['provider']}, key {r['key_id']}, k={r['k']}: "
             f"{r['indicators']} indicator(s) would leave", ""]
    lines.append(f"{'kind':<14}{'exported':>9}{'withheld':>9}  why withheld")
    for kind in EXPORT_KINDS:
        d = r["kinds"].get(kind)
        if not d:
            continue
        why = "; ".join(f"{n}x {w}" for w, n in d["withheld_why"].items()) or "-"
        lines.append(f"{kind:<14}{d['exported']:>9}{d['withheld']:>9}  {why}")
    lines += ["", "STIX objects: " + ", ".join(f"{k} {v}" for k, v in r["objects"].items()), "",
              "leaves: " + "; ".join(r["leaves"]), "never: " + "; ".join(r["never"])]
    return "\n".join(lines)


def plan_dict(plan: ExportPlan) -> dict[str, Any]:
    """The plan without raw values (for --json)."""
    return {"report": plan.report(), "files": plan.files,
            "indicators": [{k: v for k, v in asdict(c).items() if k != "value"}
                           for c in plan.candidates if c.shared is not None]}

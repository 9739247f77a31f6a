"""The same export as a MISP event (MISP core format JSON, built by hand: no extra dependency), for
providers who run MISP. Same privacy rules: it is built from an :class:`ExportPlan`'s exported values.

Keyed identifiers have no MISP attribute type, so they are ``text`` attributes whose comment names
the kind, key id and scheme; ASNs use the ``AS`` type. Techniques become ``mitre-atlas`` /
``mitre-attack`` tags where a reference exists.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from distillguard.share.export import ExportPlan, _techniques
from distillguard.share.stix import NAMESPACE, TECHNIQUES

__all__ = ["misp_event"]

_CATEGORY = {"payment": "Financial fraud", "ip": "Network activity", "ip_block": "Network activity",
             "asn": "Network activity", "email_domain": "Network activity", "user_agent": "Network activity",
             "template": "Payload delivery", "preamble": "Payload delivery"}


def misp_event(plan: ExportPlan, *, now: datetime | None = None) -> dict[str, Any]:
    """``{"Event": {...}}`` with one attribute per exported indicator (distribution: this community)."""
    now = now or datetime.now(UTC)
    c = plan.campaign
    attrs = []
    for cand in plan.exported:
        assert cand.shared is not None
        keyed = cand.shared.startswith("hmac-sha256:")
        attrs.append({
            "uuid": str(uuid.uuid5(NAMESPACE, f"misp|{plan.provider}|{cand.kind}|{cand.shared}")),
            "type": "AS" if cand.kind == "asn" else "text", "category": _CATEGORY.get(cand.kind, "Other"),
            "value": cand.shared, "to_ids": True, "distribution": "1",
            "comment": (f"distillguard {cand.kind}" + (f", hmac-sha256 under group key {plan.key_id}" if keyed else "")
                        + f"; seen on {cand.members} flagged accounts, {cand.exchanges} exchanges"),
            "first_seen": cand.first_ts.isoformat() if cand.first_ts else None,
            "last_seen": cand.last_ts.isoformat() if cand.last_ts else None,
        })
    tags = [{"name": "tlp:amber"}]
    for key in _techniques(c):
        for src, ext, _ in TECHNIQUES[key].refs:
            tags.append({"name": f'misp-galaxy:{src}="{ext}"'})
    mix = ", ".join(f"{k} {v:.0%}" for k, v in list((c.get("capability_mix") or {}).items())[:4])
    return {"Event": {
        "uuid": str(uuid.uuid5(NAMESPACE, f"misp-event|{plan.provider}|{c['campaign_id']}")),
        "info": f"LLM distillation campaign seen by {plan.provider}: {c['n_flagged']} flagged accounts, "
                f"{c['n_exchanges']} exchanges; capability mix {mix}",
        "date": now.date().isoformat(), "timestamp": str(int(now.timestamp())),
        "threat_level_id": "2", "analysis": "2", "distribution": "1", "published": False,
        "Orgc": {"name": plan.provider}, "Attribute": attrs, "Tag": tags,
    }}

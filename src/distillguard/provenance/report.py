"""One suspect, three independent lines of evidence, each with its own number and what it survives.

>>> from distillguard.provenance.canary import CanaryReport
>>> r = combine(radioactivity=[{"mode": "blackbox", "p_value": 3e-9, "key_id": "wm-1", "tokens_scored": 9000}],
...             canaries=CanaryReport(40, 120, 2949120000, [], 1e-9).to_dict())
>>> [(line["line"], line["finding"]) for line in r["lines"]]
[('watermark (blackbox)', True), ('canaries', False)]
"""

from __future__ import annotations

from typing import Any

__all__ = ["SURVIVES", "combine"]

#: What each line of evidence survives and what defeats it (printed with every report).
SURVIVES = {
    "watermark": "survives mixing with other data (loses power, stays valid) and light token edits; "
                 "removed by paraphrasing the outputs before training",
    "canaries": "survive paraphrase that keeps names, places and numbers; removed by filtering rare "
                "entities or numbers; need a suspect that memorises",
    "evidence": "needs the evidence key to forge; ties keys and canaries to the accounts served",
}


def combine(*, radioactivity: list[dict[str, Any]] | None = None, canaries: dict[str, Any] | None = None,
            evidence: dict[str, Any] | None = None, alpha: float = 1e-6) -> dict[str, Any]:
    """A report from the JSON results of the separate tests (``--json`` outputs of the CLI commands).

    Lines are kept apart on purpose: each has its own null hypothesis and its own way to fail, so
    they are not multiplied into one number; ``finding`` marks those at or below ``alpha``.
    """
    lines = []
    for r in radioactivity or []:
        how = ", ".join(str(x) for x in (r.get("mode", "detect"), r.get("statistic")) if x)
        lines.append({"line": f"watermark ({how})", "p_value": r["p_value"],
                      "finding": r["p_value"] <= alpha, "key_id": r.get("key_id"),
                      "detail": f"{r.get('tokens_scored')} distinct pairs scored", "survives": SURVIVES["watermark"]})
    if canaries is not None:
        hits = canaries.get("hits", [])
        p = max((h["p_chance"] for h in hits), default=canaries.get("family_p_chance", 1.0))
        lines.append({"line": "canaries", "p_value": p if hits else None, "finding": bool(hits) and p <= alpha,
                      "accounts": sorted({h["account_id"] for h in hits}),
                      "detail": f"{len(hits)} of {canaries.get('canaries_checked')} canaries found; "
                                f"family chance {canaries.get('family_p_chance'):.3g}",
                      "survives": SURVIVES["canaries"]})
    if evidence is not None:
        lines.append({"line": "evidence log", "p_value": None, "finding": bool(evidence.get("ok")),
                      "detail": f"{evidence.get('records')} records, head {str(evidence.get('head_hash'))[:16]}, "
                                f"{len(evidence.get('issues', []))} issue(s)", "survives": SURVIVES["evidence"]})
    return {"alpha": alpha, "lines": lines, "findings": sum(bool(x["finding"]) for x in lines)}

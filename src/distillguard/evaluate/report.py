"""The evaluation result: plain dataclasses, one JSON document (``evaluation.json``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from distillguard.evaluate.metrics import ActionShares, Confusion, PRCurve, Timing

__all__ = ["CampaignResult", "EvaluationReport", "GroupRate", "PersonaResult", "SCHEMA_VERSION"]

SCHEMA_VERSION = 1


@dataclass
class CampaignResult:
    """Detection and containment of one campaign's accounts and exchanges."""

    campaign_id: str
    style: str | None
    n_accounts: int
    n_flagged: int
    recall: float | None
    first_ts: datetime | None
    first_flagged_at: datetime | None
    timing: Timing
    n_flagged_time_unknown: int
    actions: ActionShares | None = None
    #: seconds from first_ts to each flagged account's first_flagged_at (for the timeline plot only)
    flag_offsets_s: list[float] = field(default_factory=list, metadata={"json": False})
    #: (bin end s, {action: count}) for the leakage plot only
    action_timeline: list[tuple[float, dict[str, int]]] = field(
        default_factory=list, metadata={"json": False}
    )

    @property
    def leakage(self) -> float | None:
        """Share of the campaign's decided exchanges served in full (action allow)."""
        return self.actions.served_full if self.actions else None


@dataclass
class PersonaResult:
    """False positives among one benign persona's accounts, and what its traffic went through."""

    persona: str
    hard_negative: bool
    n_accounts: int
    n_flagged: int
    fpr: float | None
    actions: ActionShares | None = None


@dataclass
class GroupRate:
    """Flagged share of a set of benign accounts."""

    n_accounts: int
    n_flagged: int
    fpr: float | None


@dataclass
class EvaluationReport:
    """Everything ``evaluate`` measured; ``to_dict`` is what goes into evaluation.json."""

    inputs: dict[str, str | None]
    n_accounts: int
    n_campaign_accounts: int
    n_benign_accounts: int
    n_detections: int
    n_absent: int  # truth accounts missing from detections: scored 0, not flagged
    n_unknown_detections: int  # detections for accounts not in the truth: ignored
    threshold: Confusion
    pr: PRCurve
    campaigns: list[CampaignResult]
    personas: list[PersonaResult]
    benign: GroupRate
    benign_hard_negative: GroupRate
    benign_other: GroupRate
    decisions: dict[str, Any] | None = None
    campaign_actions: ActionShares | None = None  # all campaigns pooled
    benign_actions: ActionShares | None = None  # all benign personas pooled
    plots: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: datetimes as RFC 3339, plot-only series left out."""
        out = _plain(self)
        out["schema_version"] = SCHEMA_VERSION
        return out


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {
            f.name: _plain(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.metadata.get("json", True)
        }
        if isinstance(value, CampaignResult):
            out["leakage"] = value.leakage
        return out
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value

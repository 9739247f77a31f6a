"""``evaluate``: score one detector's output (and optionally an online replay) against the truth."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import orjson

from distillguard.contract import ACTIONS
from distillguard.evaluate.decisions import UNDECIDED, DecisionTally, find_exchanges, tally_decisions
from distillguard.evaluate.detections import Detection, load_detections
from distillguard.evaluate.metrics import action_shares, confusion, pr_curve, ratio, timing
from distillguard.evaluate.report import CampaignResult, EvaluationReport, GroupRate, PersonaResult
from distillguard.evaluate.truth import Campaign, load_truth

__all__ = ["evaluate"]


def evaluate(
    truth: Path | str,
    detections: Path | str,
    *,
    decisions: Path | str | None = None,
    exchanges: Path | str | None = None,
    out: Path | str | None = None,
) -> EvaluationReport:
    """Measure ``detections`` (any detector's, contract format) against the simulator's truth.

    With ``decisions`` (an online replay), also measure leakage and benign friction; those need the
    exchanges log to know each request's account and time (``exchanges`` or the one beside truth).
    With ``out``, write ``evaluation.json`` and the PNG plots there. Raises EvaluationInputError on
    any input that breaks the contract.
    """
    truth_path, det_path = Path(truth), Path(detections)
    t = load_truth(truth_path)
    dets = load_detections(det_path)
    notes: list[str] = []

    accounts = t.accounts
    positive = np.fromiter((a in t.campaign_of for a in accounts), bool, len(accounts))
    scores = np.fromiter((dets[a].score if a in dets else 0.0 for a in accounts), float, len(accounts))
    flagged = np.fromiter((a in dets and dets[a].flagged for a in accounts), bool, len(accounts))
    n_absent = sum(1 for a in accounts if a not in dets)
    n_unknown = sum(1 for a in dets if a not in t.campaign_of and a not in t.persona_of)
    if n_absent:
        notes.append(f"{n_absent} truth accounts have no detection row: counted as score 0, not flagged.")
    if n_unknown:
        notes.append(f"{n_unknown} detection rows name accounts not in the truth: ignored.")
    n_time_unflagged = sum(1 for d in dets.values() if d.first_flagged_at is not None and not d.flagged)
    if n_time_unflagged:
        notes.append(
            f"{n_time_unflagged} detection rows have first_flagged_at but flagged=false: "
            "not counted as flagged, their time is ignored."
        )

    campaigns = [_campaign(c, dets, notes) for c in t.campaigns.values()]
    personas = sorted(
        (
            PersonaResult(
                p.persona,
                p.hard_negative,
                len(p.account_ids),
                n := sum(1 for a in p.account_ids if _flagged(dets, a)),
                ratio(n, len(p.account_ids)),
            )
            for p in t.personas.values()
        ),
        key=lambda r: (r.hard_negative, r.persona),
    )
    report = EvaluationReport(
        inputs={
            "truth": str(truth_path),
            "detections": str(det_path),
            "decisions": str(decisions) if decisions else None,
            "exchanges": None,
        },
        n_accounts=len(accounts),
        n_campaign_accounts=int(positive.sum()),
        n_benign_accounts=int((~positive).sum()),
        n_detections=len(dets),
        n_absent=n_absent,
        n_unknown_detections=n_unknown,
        threshold=confusion(positive, flagged),
        pr=pr_curve(positive, scores),
        campaigns=campaigns,
        personas=personas,
        benign=_rate(personas),
        benign_hard_negative=_rate([p for p in personas if p.hard_negative]),
        benign_other=_rate([p for p in personas if not p.hard_negative]),
        notes=notes,
    )
    if decisions is not None:
        ex_path = find_exchanges(truth_path, Path(exchanges) if exchanges else None)
        report.inputs["exchanges"] = str(ex_path)
        _attach_decisions(report, tally_decisions(t, Path(decisions), ex_path))
    if out is not None:
        write_outputs(report, Path(out))
    return report


def _flagged(dets: dict[str, Detection], account_id: str) -> bool:
    d = dets.get(account_id)
    return d is not None and d.flagged


def _rate(personas: list[PersonaResult]) -> GroupRate:
    n = sum(p.n_accounts for p in personas)
    k = sum(p.n_flagged for p in personas)
    return GroupRate(n, k, ratio(k, n))


def _campaign(c: Campaign, dets: dict[str, Detection], notes: list[str]) -> CampaignResult:
    """Recall and time-to-flag of one campaign; accounts flagged without a time are counted, not timed."""
    flagged = [dets[a] for a in c.account_ids if _flagged(dets, a)]
    times = sorted(d.first_flagged_at for d in flagged if d.first_flagged_at is not None)
    n_unknown = len(flagged) - len(times)
    offsets = [(ts - c.first_ts).total_seconds() for ts in times] if c.first_ts else []
    tm = timing(
        len(c.account_ids),
        offsets if c.first_ts else [0.0] * len(times),
        n_unknown,
        has_start=c.first_ts is not None,
    )
    if n_unknown:
        notes.append(
            f"campaign {c.campaign_id}: {n_unknown} flagged accounts have no first_flagged_at; "
            "their flag time is unknown, so time-to-flag is an upper bound or unknown."
        )
    if c.first_ts is None:
        notes.append(f"campaign {c.campaign_id}: the truth gives no first_ts; time-to-flag is unavailable.")
    if c.declared_accounts is not None and c.declared_accounts != len(c.account_ids):
        notes.append(
            f"campaign {c.campaign_id}: truth declares {c.declared_accounts} accounts but lists "
            f"{len(c.account_ids)}; the listed ones are used."
        )
    return CampaignResult(
        campaign_id=c.campaign_id,
        style=c.style,
        n_accounts=len(c.account_ids),
        n_flagged=len(flagged),
        recall=ratio(len(flagged), len(c.account_ids)),
        first_ts=c.first_ts,
        first_flagged_at=times[0] if times else None,
        timing=tm,
        n_flagged_time_unknown=n_unknown,
        flag_offsets_s=offsets,
    )


def _attach_decisions(report: EvaluationReport, tally: DecisionTally) -> None:
    """Per-group action shares, pooled totals, and the notes a reader needs to trust them."""
    pooled: dict[str, Counter[str]] = {"campaign": Counter(), "benign": Counter()}
    for (kind, _name), counts in tally.by_group.items():
        pooled[kind].update(counts)
    by_group = tally.by_group
    for c in report.campaigns:
        c.actions = action_shares(by_group.get(("campaign", c.campaign_id), {}), ACTIONS, UNDECIDED)
        c.action_timeline = tally.timeline.get(c.campaign_id, [])
    for p in report.personas:
        p.actions = action_shares(by_group.get(("benign", p.persona), {}), ACTIONS, UNDECIDED)
    report.campaign_actions = action_shares(pooled["campaign"], ACTIONS, UNDECIDED)
    report.benign_actions = action_shares(pooled["benign"], ACTIONS, UNDECIDED)
    n_undecided = report.campaign_actions.n_undecided + report.benign_actions.n_undecided
    report.decisions = {
        "n_decisions": tally.n_decisions,
        "n_undecided_exchanges": n_undecided,
        "n_orphan_decisions": tally.n_orphan_decisions,
        "n_unknown_account_exchanges": tally.n_unknown_account_exchanges,
        "timeline_bin_seconds": tally.bin_seconds,
    }
    if n_undecided:
        report.notes.append(
            f"{n_undecided} exchanges of truth accounts have no decision: left out of every share."
        )
    if tally.n_orphan_decisions:
        report.notes.append(
            f"{tally.n_orphan_decisions} decisions name a request_id not in the exchanges: ignored."
        )
    if tally.n_unknown_account_exchanges:
        report.notes.append(
            f"{tally.n_unknown_account_exchanges} exchanges belong to accounts not in the truth: ignored."
        )


def write_outputs(report: EvaluationReport, out: Path) -> None:
    """evaluation.json and the PNGs; plot paths are recorded in the report before the JSON is written."""
    from distillguard.evaluate.plots import write_plots  # matplotlib only when files are wanted

    out.mkdir(parents=True, exist_ok=True)
    report.plots = [str(p) for p in write_plots(report, out)]
    (out / "evaluation.json").write_bytes(orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2))

"""Terminal view of an EvaluationReport (rich tables); JSON holds the same numbers unrounded."""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.table import Table

from distillguard.evaluate.metrics import ActionShares, Timing
from distillguard.evaluate.report import EvaluationReport

__all__ = ["format_duration", "render_report"]


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def _num(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def format_duration(seconds: float | None) -> str:
    """Human duration: 45 s, 12.5 min, 5.2 h, 3.1 d (negative when flagged before the first exchange)."""
    if seconds is None:
        return "n/a"
    sign, s = ("-" if seconds < 0 else ""), abs(seconds)
    if s < 120:
        return f"{sign}{s:.0f} s"
    if s < 3600:
        return f"{sign}{s / 60:.1f} min"
    if s < 172_800:
        return f"{sign}{s / 3600:.1f} h"
    return f"{sign}{s / 86_400:.1f} d"


def _when(seconds: float | None, status: str) -> str:
    return {
        "exact": format_duration(seconds),
        "upper_bound": f"≤ {format_duration(seconds)}",
        "unknown": "reached, time unknown",
        "not_reached": "never",
        "no_first_ts": "no first_ts",
    }.get(status, status)


def _first(t: Timing) -> str:
    return _when(t.first_flag_s, t.first_flag_status)


def _ninety(t: Timing) -> str:
    return _when(t.ninety_s, t.ninety_status)


def _shares(a: ActionShares | None, *names: str) -> list[str]:
    return ["" if a is None else _pct(getattr(a, n)) for n in names]


def render_report(report: EvaluationReport, console: Console) -> None:
    """Print the summary, per-campaign and per-persona tables, then the notes."""
    th = report.threshold
    summary = Table(title="Summary (accounts at the detector's threshold)", show_header=False)
    summary.add_column(style="bold")
    summary.add_column(justify="right")
    rows = [
        (
            "accounts (campaign / benign)",
            f"{report.n_accounts} ({report.n_campaign_accounts} / {report.n_benign_accounts})",
        ),
        ("TP / FP / FN / TN", f"{th.tp} / {th.fp} / {th.fn} / {th.tn}"),
        ("precision", _num(th.precision)),
        ("recall", _num(th.recall)),
        ("F1", _num(th.f1)),
        ("average precision (score)", _num(report.pr.average_precision)),
        ("benign FPR (all)", _pct(report.benign.fpr)),
        ("benign FPR (hard negatives)", _pct(report.benign_hard_negative.fpr)),
        ("benign FPR (other personas)", _pct(report.benign_other.fpr)),
    ]
    if report.campaign_actions is not None and report.benign_actions is not None:
        rows += [
            ("campaign exchanges served in full (leakage)", _pct(report.campaign_actions.served_full)),
            ("campaign exchanges served incl. degrade", _pct(report.campaign_actions.served_incl_degrade)),
            ("benign exchanges not allowed", _pct(report.benign_actions.not_allowed)),
            ("benign exchanges blocked", _pct(report.benign_actions.blocked)),
        ]
    for k, v in rows:
        summary.add_row(k, v)
    console.print(summary)

    with_actions = report.campaign_actions is not None
    camps = Table(title="Campaigns", box=box.SIMPLE_HEAD)
    camps.add_column("campaign")
    camps.add_column("style")
    for col in ("accts", "flagged", "recall", "1st flag", "90% flagged"):
        camps.add_column(col, justify="right")
    if with_actions:
        camps.add_column("leak (allow)", justify="right")
        camps.add_column("+ degrade", justify="right")
    for c in report.campaigns:
        extra = _shares(c.actions, "served_full", "served_incl_degrade") if with_actions else []
        camps.add_row(
            c.campaign_id,
            c.style or "",
            str(c.n_accounts),
            str(c.n_flagged),
            _pct(c.recall),
            _first(c.timing),
            _ninety(c.timing),
            *extra,
        )
    console.print(camps)

    pers = Table(title="Benign personas (hard negatives last)", box=box.SIMPLE_HEAD)
    pers.add_column("persona")
    for col in ("hard neg.", "accts", "flagged", "FPR"):
        pers.add_column(col, justify="right")
    if with_actions:
        pers.add_column("not allowed", justify="right")
        pers.add_column("blocked", justify="right")
    for p in report.personas:
        extra = _shares(p.actions, "not_allowed", "blocked") if with_actions else []
        pers.add_row(
            p.persona,
            "yes" if p.hard_negative else "",
            str(p.n_accounts),
            str(p.n_flagged),
            _pct(p.fpr),
            *extra,
        )
    console.print(pers)

    for note in report.notes:
        console.print(f"[yellow]note:[/yellow] {note}", highlight=False)
    for plot in report.plots:
        console.print(f"wrote {plot}", highlight=False)

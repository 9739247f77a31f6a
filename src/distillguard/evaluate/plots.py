"""PNG plots: the PR curve and one detection timeline per campaign (Agg backend, no display needed)."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from distillguard.evaluate.metrics import k_of_90  # noqa: E402
from distillguard.evaluate.report import CampaignResult, EvaluationReport  # noqa: E402

__all__ = ["write_plots"]

DAY = 86_400.0


def write_plots(report: EvaluationReport, out: Path) -> list[Path]:
    """Write ``pr_curve.png`` and ``timeline_<campaign>.png``; return their paths."""
    paths = [_pr_plot(report, out / "pr_curve.png")]
    for c in report.campaigns:
        paths.append(_timeline_plot(c, out / f"timeline_{_safe(c.campaign_id)}.png"))
    return paths


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:100] or "campaign"


def _pr_plot(report: EvaluationReport, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    pr = report.pr
    if pr.recall:
        # "pre" steps: recall in (R[k-1], R[k]] is drawn at P[k], the area average precision sums.
        ax.step(
            [0.0, *pr.recall],
            [pr.precision[0], *pr.precision],
            where="pre",
            label=f"AP = {pr.average_precision:.3f}",
        )
    th = report.threshold
    if th.precision is not None and th.recall is not None:
        ax.plot([th.recall], [th.precision], "o", color="C3", label="detector's threshold (flagged)")
    prevalence = report.n_campaign_accounts / report.n_accounts if report.n_accounts else 0.0
    ax.axhline(prevalence, color="grey", lw=0.8, ls=":", label=f"chance = {prevalence:.3f}")
    ax.set(
        xlabel="recall (campaign accounts)",
        ylabel="precision",
        xlim=(0, 1.02),
        ylim=(0, 1.02),
        title="Account precision-recall over score",
    )
    ax.legend(loc="lower left", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _timeline_plot(c: CampaignResult, path: Path) -> Path:
    has_actions = bool(c.action_timeline)
    fig, axes = plt.subplots(
        1, 2 if has_actions else 1, figsize=(11 if has_actions else 5.5, 4.2), squeeze=False
    )
    ax = axes[0][0]
    if c.n_accounts and c.flag_offsets_s:
        xs = [o / DAY for o in sorted(c.flag_offsets_s)]
        ys = [(i + 1) / c.n_accounts for i in range(len(xs))]
        ax.step([min(0.0, xs[0]), *xs], [0.0, *ys], where="post", label="accounts flagged")
    ax.axhline(
        k_of_90(c.n_accounts) / c.n_accounts if c.n_accounts else 0.9,
        color="grey",
        lw=0.8,
        ls=":",
        label="90% of accounts",
    )
    note = f" ({c.n_flagged_time_unknown} flagged, time unknown)" if c.n_flagged_time_unknown else ""
    ax.set(
        xlabel="days since the campaign's first exchange",
        ylabel="cumulative share of accounts flagged",
        ylim=(0, 1.02),
        title=f"{c.campaign_id}: detection{note}",
    )
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    if has_actions:
        _leakage_panel(axes[0][1], c)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _leakage_panel(ax: plt.Axes, c: CampaignResult) -> None:
    """Cumulative exchanges sent vs served, as shares of all the campaign's decided exchanges."""
    total = sum(sum(v for a, v in counts.items() if a != "undecided") for _, counts in c.action_timeline)
    if not total:
        return
    xs, sent, full, some = [0.0], [0.0], [0.0], [0.0]
    n_sent = n_full = n_some = 0
    for end, counts in c.action_timeline:
        n_sent += sum(v for a, v in counts.items() if a != "undecided")
        n_full += counts.get("allow", 0)
        n_some += counts.get("allow", 0) + counts.get("degrade", 0)
        xs.append(end / DAY)
        sent.append(n_sent / total)
        full.append(n_full / total)
        some.append(n_some / total)
    ax.plot(xs, sent, color="grey", label="sent (all decided)")
    ax.plot(xs, some, color="C1", label="served incl. degrade")
    ax.plot(xs, full, color="C3", label="served in full (leakage)")
    ax.set(
        xlabel="days since the campaign's first exchange",
        ylabel="cumulative share of campaign exchanges",
        ylim=(0, 1.02),
        title=f"{c.campaign_id}: leakage",
    )
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)

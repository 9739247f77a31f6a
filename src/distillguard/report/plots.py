"""The report's two plots as PNG bytes (matplotlib, Agg backend): timeline and capability mix."""

from __future__ import annotations

import base64
import io
from datetime import date, timedelta
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

__all__ = ["capability_png", "data_uri", "timeline_png"]


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def data_uri(png: bytes) -> str:
    """``data:image/png;base64,...`` for an ``<img src>`` that needs no file beside the page."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def timeline_png(daily: list[dict[str, Any]], title: str = "") -> bytes:
    """Exchanges per day (top); new accounts per day and flagged accounts cumulative (bottom)."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
    days = [date.fromisoformat(d["day"]) for d in daily]
    if days:
        top.bar(days, [d["exchanges"] for d in daily], width=0.9, color="C0")
        bottom.bar(days, [d.get("created", 0) for d in daily], width=0.9, color="grey", alpha=0.5,
                   label="accounts created (sign-up waves)")
        bottom.bar(days, [d["new_accounts"] for d in daily], width=0.9, color="C1", alpha=0.7,
                   label="accounts active for the first time")
        cum, total = [], 0
        for d in daily:
            total += d["flagged"]
            cum.append(total)
        end = days[-1] + timedelta(days=1)
        bottom.step([*days, end], [*cum, total], where="post", color="C3", label="flagged accounts (cumulative)")
        bottom.legend(loc="upper left", fontsize=8)
    top.set(ylabel="exchanges / day", title=title or "Timeline (UTC days)")
    bottom.set(ylabel="accounts")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    bottom.xaxis.set_major_formatter(mdates.ConciseDateFormatter(bottom.xaxis.get_major_locator()))
    return _png(fig)


def capability_png(mix: dict[str, float], title: str = "") -> bytes:
    """Horizontal bars: share of classified exchanges per capability, largest on top."""
    items = sorted(mix.items(), key=lambda kv: kv[1], reverse=True)[::-1]  # largest on top, ties keep order
    fig, ax = plt.subplots(figsize=(6, 0.4 * max(len(items), 1) + 1.2))
    if items:
        ax.barh([k for k, _ in items], [v for _, v in items], color="C2")
        for i, (_, v) in enumerate(items):
            ax.text(v, i, f" {v:.0%}", va="center", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no content signals", ha="center", va="center", transform=ax.transAxes)
    ax.set(xlim=(0, 1.1), xlabel="share of exchanges", title=title or "Capability mix")
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)

"""What a simulation wrote, as a dataclass (for JSON) and as a rich table (for the terminal)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["SimulationSummary", "render_summary"]


@dataclass
class SimulationSummary:
    scenario: str
    seed: int
    scale: float
    n_accounts: int
    n_exchanges: int
    first_ts: str | None
    last_ts: str | None
    #: persona -> {"accounts", "exchanges", "hard_negative"}
    personas: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: campaign id -> {"style", "accounts", "exchanges", "first_ts", "last_ts"}
    campaigns: dict[str, dict[str, Any]] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def exchanges_per_s(self) -> float:
        return self.n_exchanges / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["exchanges_per_s"] = round(self.exchanges_per_s, 1)
        return d


def render_summary(summary: SimulationSummary, console: Console) -> None:
    """Print per-population account and exchange counts, campaigns first."""
    s = summary
    t = Table(title=f"simulate {s.scenario} (seed {s.seed}, scale {s.scale:g})")
    for col, just in (("population", "left"), ("kind", "left"), ("accounts", "right"), ("exchanges", "right"),
                      ("share", "right")):
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    total = max(s.n_exchanges, 1)
    for cid, c in s.campaigns.items():
        t.add_row(cid, f"campaign ({c['style']})", f"{c['accounts']:,}", f"{c['exchanges']:,}",
                  f"{c['exchanges'] / total:.1%}", style="red")
    for name, p in s.personas.items():
        kind = "benign, hard negative" if p["hard_negative"] else "benign"
        t.add_row(name, kind, f"{p['accounts']:,}", f"{p['exchanges']:,}", f"{p['exchanges'] / total:.1%}")
    t.add_section()
    t.add_row("total", "", f"{s.n_accounts:,}", f"{s.n_exchanges:,}", "100%", style="bold")
    console.print(t)
    console.print(f"window {s.first_ts} .. {s.last_ts}; {s.elapsed_s:.1f}s "
                  f"({s.exchanges_per_s:,.0f} exchanges/s)")
    for f in s.files:
        console.print(f"  wrote {f}")

"""The ``distillguard replay`` command (to register in ``cli.py`` as ``app.command("replay")(replay_command)``)."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from distillguard.online.policy import Policy
from distillguard.online.replay import replay
from distillguard.store import DEFAULT_DB

__all__ = ["parse_every", "replay_command"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_every(value: str) -> timedelta | None:
    """``1d``, ``6h``, ``30m``, ``90s`` → timedelta; ``none`` → None (no batch refresh)."""
    if value.strip().lower() in ("none", "0", "off"):
        return None
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", value.lower())
    if not m:
        raise typer.BadParameter(f"{value!r}: use a number and a unit s/m/h/d (e.g. 1d, 6h) or 'none'")
    return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])


def replay_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for decisions.jsonl and the audit log.")],
    db: Annotated[Path, typer.Option("--db", help="Store written by `distillguard ingest`.")] = DEFAULT_DB,
    policy: Annotated[Path | None, typer.Option("--policy", exists=True, dir_okay=False,
                                                help="Policy YAML (default: the packaged policy.yaml).")] = None,
    calibration: Annotated[Path | None, typer.Option("--calibration", exists=True, dir_okay=False,
                                                     help="RiskModel calibration JSON (default: shipped).")] = None,
    batch_every: Annotated[str, typer.Option("--batch-every", help="Refresh clusters from a batch run as of every "
                                             "such boundary (e.g. 1d, 6h; 'none' for never).")] = "1d",
    snapshot: Annotated[Path | None, typer.Option("--snapshot", help="Write the scorer's state here at the end.")]
    = None,
    no_audit: Annotated[bool, typer.Option("--no-audit", help="Do not write the Parquet audit log.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Stream the stored exchanges in time order through the online scorer; write decisions.jsonl."""
    from distillguard.scoring.risk import RiskModel

    every = parse_every(batch_every)
    model = RiskModel.load(calibration) if calibration else None
    pol = Policy.from_yaml(policy) if policy else None
    s = replay(db, out, model=model, policy=pol, batch_every=every, audit=not no_audit, snapshot=snapshot)
    if json_out:
        typer.echo(json.dumps(s.to_dict(), indent=2))
        return
    t = Table(title=f"replay of {s.exchanges:,} exchanges ({s.batch_runs} batch refreshes)")
    t.add_column("action")
    t.add_column("exchanges", justify="right")
    for a, n in s.actions.items():
        t.add_row(a, f"{n:,}")
    c = Console()
    c.print(t)
    c.print(f"stream {s.seconds.get('stream', 0):.1f} s ({s.decisions_per_s:,.0f} decisions/s), batch "
            f"{s.seconds.get('batch', 0):.1f} s; wrote {', '.join(s.files)}")

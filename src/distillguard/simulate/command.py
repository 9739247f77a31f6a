"""The ``distillguard simulate`` command (registered by ``cli.py`` as ``app.command("simulate")``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from distillguard.simulate.run import simulate
from distillguard.simulate.scenarios import SCENARIOS
from distillguard.simulate.summary import render_summary

__all__ = ["simulate_command"]

_SCENARIO_HELP = (f"Scenario to generate: {', '.join(SCENARIOS)}. smoke runs in seconds; seed-2026 at scale 1 "
                  "is ~35M exchanges (see docs/simulator.md).")


def _check_scenario(value: str) -> str:
    if value not in SCENARIOS:
        raise typer.BadParameter(f"unknown scenario {value!r}; choose one of {', '.join(SCENARIOS)}")
    return value


def simulate_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory to write accounts.parquet, "
                                      "exchanges.parquet and truth.jsonl into (created if missing).")],
    scenario: Annotated[str, typer.Option("--scenario", "-s", help=_SCENARIO_HELP,
                                          callback=_check_scenario)] = "smoke",
    scale: Annotated[float | None, typer.Option("--scale", min=0.0001, help="Multiply account counts and "
                                                "exchange volumes (default: the scenario's own, 1.0).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed; same scenario+seed+scale gives "
                                      "byte-identical files.")] = 0,
    corpus: Annotated[Path | None, typer.Option("--corpus", exists=True, file_okay=False, dir_okay=True,
                                                help="Directory of *.jsonl prompt files ({kind, turns}) to mix "
                                                "real prompt text into the generated traffic.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON instead of a table.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Generate simulated API traffic with hidden distillation campaigns, plus ground truth."""
    console = Console(stderr=json_out)
    summary = simulate(scenario, out, scale=scale, seed=seed, corpus=corpus, progress=not (quiet or json_out))
    if json_out:
        typer.echo(json.dumps(summary.to_dict(), indent=2))
    else:
        render_summary(summary, console)

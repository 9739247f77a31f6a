"""``distillguard evaluate``: the CLI face of :func:`distillguard.evaluate.evaluate`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from distillguard.evaluate.api import evaluate
from distillguard.evaluate.errors import EvaluationInputError
from distillguard.evaluate.render import render_report

__all__ = ["evaluate_command"]


def evaluate_command(
    truth: Annotated[Path, typer.Option("--truth", help="truth.jsonl written by `distillguard simulate`.")],
    detections: Annotated[
        Path,
        typer.Option(
            "--detections",
            help="Any detector's detections (contract format), .jsonl or .parquet. "
            "Truth accounts missing from it count as score 0, not flagged.",
        ),
    ],
    decisions: Annotated[
        Path | None,
        typer.Option(
            "--decisions",
            help="Optional decisions.jsonl (or .parquet) from an online replay: "
            "adds leakage and benign friction.",
        ),
    ] = None,
    exchanges: Annotated[
        Path | None,
        typer.Option(
            "--exchanges",
            help="Exchanges log (Parquet file/dir or JSONL) mapping decisions' "
            "request_id to account and time. Default: exchanges.* beside the truth.",
        ),
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", help="Directory for evaluation.json and the PNG plots.")
    ] = Path("evaluation"),
) -> None:
    """Score a detector's output against the simulator's ground truth: precision, recall, PR curve,
    per-campaign recall and time to flag, per-persona false positives, and (with decisions) leakage."""
    console = Console()
    try:
        report = evaluate(truth, detections, decisions=decisions, exchanges=exchanges, out=out)
    except EvaluationInputError as exc:
        Console(stderr=True, soft_wrap=True).print(f"[red]error:[/red] {exc}", highlight=False, markup=True)
        raise typer.Exit(2) from None
    render_report(report, console)
    console.print(f"wrote {out / 'evaluation.json'}", highlight=False)

"""Command line: one thin command per verb; each calls a documented library function."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table as RichTable

from distillguard.ingest.run import BATCH_ROWS
from distillguard.store import DEFAULT_DB

app = typer.Typer(
    name="distillguard",
    help=(
        "Detect, contain, attribute and prove distillation attacks on an LLM API.\n\n"
        "Start with `distillguard ingest LOGDIR` (a folder with accounts.* and exchanges.* files), "
        "then `distillguard stats`. No logs yet? `distillguard simulate --scenario smoke --out sim` "
        "writes realistic traffic with hidden campaigns and a ground-truth file."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

DbOption = Annotated[
    Path,
    typer.Option("--db", help="DuckDB store file (created if missing). Env: DISTILLGUARD_DB."),
]


@app.command()
def ingest(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Traffic-log folders (holding accounts.* and exchanges.*) or single files: "
            ".jsonl, .jsonl.gz, .parquet (file or folder), or OpenTelemetry exports *.otlp.json[l][.gz].",
            show_default=False,
        ),
    ],
    db: DbOption = DEFAULT_DB,
    batch_rows: Annotated[int, typer.Option(help="Rows per batch; each batch is one transaction.")] = BATCH_ROWS,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Load traffic logs into the store, setting aside (quarantining) every row that breaks the contract.

    Re-running on the same files changes nothing (rows are keyed by request_id / account_id).
    Exits non-zero only when nothing usable was read.
    """
    from distillguard.ingest.readers import SourceError
    from distillguard.ingest.run import ingest as run_ingest

    try:
        summary = run_ingest(paths, db, batch_rows=batch_rows, progress=not json_out, console=err_console)
    except (FileNotFoundError, ValueError, SourceError) as e:
        err_console.print(f"[red]error:[/] {e}")
        raise typer.Exit(2) from e
    if json_out:
        console.print_json(json.dumps(summary.to_dict()))
    else:
        render_ingest_summary(summary)
    if not summary.usable:
        err_console.print("[red]nothing usable was read[/]")
        raise typer.Exit(1)


def render_ingest_summary(summary) -> None:  # type: ignore[no-untyped-def]
    t = RichTable(title=f"ingest into {summary.db}")
    for c in ("source", "table", "read", "stored", "quarantined", "duplicates", "note"):
        t.add_column(c, justify="right" if c in ("read", "stored", "quarantined", "duplicates") else "left")
    for s in summary.sources:
        t.add_row(s.source, s.table, f"{s.rows_read:,}", f"{s.stored:,}", f"{s.quarantined:,}",
                  f"{s.duplicates:,}", f"[red]{s.error}[/]" if s.error else "")
    t.add_row("[bold]total", "", f"{summary.rows_read:,}", f"{summary.stored:,}", f"{summary.quarantined:,}",
              f"{summary.duplicates:,}", f"{summary.files_rejected} file(s) rejected" if summary.files_rejected else "")
    console.print(t)
    examples = [e for s in summary.sources for e in s.examples]
    for line in examples[:10]:
        console.print(f"[yellow]quarantined[/] {line}", highlight=False)
    if summary.quarantined:
        console.print(f"{summary.quarantined:,} rows set aside: see `distillguard stats` or the quarantine table")
    if summary.unknown_account_exchanges:
        console.print(
            f"[yellow]{summary.unknown_account_exchanges:,} exchanges from {summary.unknown_accounts:,} accounts "
            "not in the accounts table (kept)"
        )


@app.command()
def stats(
    db: DbOption = DEFAULT_DB,
    json_out: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Show what the store holds: rows per table, time range, models, quarantine reasons."""
    from distillguard.stats import render_stats, store_stats

    try:
        data = store_stats(db)
    except FileNotFoundError as e:
        err_console.print(f"[red]error:[/] {e}")
        raise typer.Exit(2) from e
    if json_out:
        console.print_json(json.dumps(data))
    else:
        render_stats(data, console)


def _parse_duration(text: str | None):  # type: ignore[no-untyped-def]
    """'6h', '1d', '30m' -> timedelta; None or 'none' -> None."""
    from datetime import timedelta

    if text is None or text.lower() == "none":
        return None
    units = {"m": 60, "h": 3600, "d": 86400}
    try:
        return timedelta(seconds=float(text[:-1]) * units[text[-1].lower()])
    except (KeyError, ValueError) as e:
        raise typer.BadParameter(f"{text!r}: use a number and a unit, like 30m, 6h or 1d") from e


@app.command()
def detect(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for detections.jsonl and the campaign reports.")],
    db: DbOption = DEFAULT_DB,
    as_of: Annotated[
        datetime | None,
        typer.Option("--as-of", help="Use only exchanges up to this time (UTC), e.g. 2026-05-01T00:00:00."),
    ] = None,
    step: Annotated[
        str,
        typer.Option(help="Also run every STEP over the log (30m, 6h, 12h, 1d, or none), each time on data up to "
                     "then, so first_flagged_at is when it would have fired in production. The shipped "
                     "calibration holds its false-positive target at 12h or coarser (calibrate with "
                     "--step at your own step)."),
    ] = "12h",
    calibration: Annotated[
        Path | None,
        typer.Option(help="Calibration from `distillguard calibrate` (default: the one shipped, built on a "
                     "benign-only simulation)."),
    ] = None,
    reports: Annotated[bool, typer.Option(help="Write Markdown/HTML/JSON campaign reports.")] = True,
    sample: Annotated[
        int | None,
        typer.Option(help="Classify at most N prompts per account per day (hash-chosen, unbiased); for very "
                     "large logs. Default: every prompt."),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(min=1, help="Processes for the content stage (2 on a dedicated 2-core machine; the output "
                     "is identical)."),
    ] = 1,
    group_key: Annotated[
        list[Path] | None,
        typer.Option("--group-key", help="Group key file(s): match indicators imported with `distillguard share "
                     "import/pull` and add SHARED_INDICATOR reasons (docs/sharing.md)."),
    ] = None,
    intel_rule: Annotated[
        bool, typer.Option("--intel-rule/--no-intel-rule", help="Let shared indicators flag accounts by the "
                           "documented IntelRule (off: they only add reasons).")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the run summary as JSON.")] = False,
) -> None:
    """Score every account: content signals, behaviour features, linkage clusters, benign-calibrated risk.

    Writes detections.jsonl (score, flagged, cluster, first_flagged_at, reasons) and campaign reports.
    """
    from datetime import UTC

    from distillguard.detect import detect as run_detect
    from distillguard.scoring.risk import RiskModel

    model = RiskModel.load(calibration) if calibration else None
    when = as_of.replace(tzinfo=UTC) if as_of and as_of.tzinfo is None else as_of
    intel_keys = rule = None
    if group_key or intel_rule:
        from distillguard.share import IntelRule, load_keys

        intel_keys = load_keys(group_key) if group_key else None
        rule = IntelRule() if intel_rule else None
    try:
        summary = run_detect(db, out, as_of=when, step=_parse_duration(step), model=model, reports=reports,
                             progress=not json_out, console=err_console, signal_sample=sample,
                             signal_workers=workers, intel_keys=intel_keys, intel_rule=rule)
    except (FileNotFoundError, ValueError) as e:
        err_console.print(f"[red]error:[/] {e}")
        raise typer.Exit(2) from e
    if json_out:
        console.print_json(json.dumps(summary.to_dict()))
        return
    render_detect_summary(summary)


def render_detect_summary(summary) -> None:  # type: ignore[no-untyped-def]
    console.print(f"scored {summary.accounts_scored:,} accounts over {summary.steps} step(s): "
                  f"[bold red]{summary.accounts_flagged:,} flagged[/] in {summary.campaigns:,} campaign report(s)")
    t = RichTable(title="stage times (s)")
    for name in summary.stage_seconds:
        t.add_column(name, justify="right")
    t.add_row(*(f"{v:.1f}" for v in summary.stage_seconds.values()))
    console.print(t)
    for f in summary.files[:1] + [f for f in summary.files if f.endswith("index.html")]:
        console.print(f"wrote {f}")


@app.command()
def calibrate(
    out: Annotated[Path, typer.Option("--out", "-o", help="Calibration file to write (JSON).")],
    db: DbOption = DEFAULT_DB,
    benign_accounts: Annotated[
        Path | None,
        typer.Option(help="File with one trusted account_id per line (vetted customers); default: every account "
                     "in the store, so point --db at a period you trust."),
    ] = None,
    target_fpr: Annotated[
        float | None,
        typer.Option(help="Share of benign accounts the threshold may flag (default: "
                     "scoring.risk.DEFAULT_TARGET_FPR, 0.02%)."),
    ] = None,
    step: Annotated[
        str,
        typer.Option(help="Also take the accounts as of every STEP of the period (1d, 12h, or none), so the "
                     "threshold holds for stepwise detection, which scores each account at every step."),
    ] = "12h",
) -> None:
    """Calibrate risk scores on benign-only traffic: the reference every score is measured against."""
    from distillguard.scoring.calibrate import calibrate as run_calibrate
    from distillguard.scoring.risk import DEFAULT_TARGET_FPR

    ids = None
    if benign_accounts:
        ids = [line.strip() for line in benign_accounts.read_text().splitlines() if line.strip()]
    model = run_calibrate(db, out, benign_accounts=ids, step=_parse_duration(step),
                          target_fpr=DEFAULT_TARGET_FPR if target_fpr is None else target_fpr)
    console.print(f"calibrated on {model.n_benign_:,} benign accounts; threshold {model.threshold_:.1f}; wrote {out}")


def _register_stage_commands() -> None:
    """Commands whose options live beside their stage (one module per verb)."""
    from distillguard.evaluate.command import evaluate_command
    from distillguard.online.command import replay_command
    from distillguard.provenance.command import evidence_app, provenance_app, watermark_app
    from distillguard.serve.command import serve_command
    from distillguard.share.command import share_app
    from distillguard.simulate.command import simulate_command

    app.command("simulate")(simulate_command)
    app.command("evaluate")(evaluate_command)
    app.command("replay")(replay_command)
    app.command("serve")(serve_command)
    app.add_typer(share_app, name="share")
    app.add_typer(watermark_app, name="watermark")
    app.add_typer(provenance_app, name="provenance")
    app.add_typer(evidence_app, name="evidence")


_register_stage_commands()


def main() -> None:
    app()


if __name__ == "__main__":
    main()

"""Command line: one thin command per verb; each calls a documented library function."""

from __future__ import annotations

import json
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


def _register_stage_commands() -> None:
    """Commands whose options live beside their stage (one module per verb)."""
    from distillguard.evaluate.command import evaluate_command
    from distillguard.simulate.command import simulate_command

    app.command("simulate")(simulate_command)
    app.command("evaluate")(evaluate_command)


_register_stage_commands()


def main() -> None:
    app()


if __name__ == "__main__":
    main()

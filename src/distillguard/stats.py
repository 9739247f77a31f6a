"""What is in the store: a quick look before running detection on it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table as RichTable

from distillguard.store import DEFAULT_DB, connect, table_counts

__all__ = ["render_stats", "store_stats"]


def store_stats(db: Path | str = DEFAULT_DB) -> dict[str, Any]:
    """Counts, time range, models, unknown accounts and quarantine reasons, as plain data."""
    if not Path(db).exists():
        raise FileNotFoundError(f"{db}: no store here (run `distillguard ingest` first, or pass --db)")
    con = connect(db)
    try:
        first, last, accounts_seen = con.execute(
            "SELECT min(ts), max(ts), count(DISTINCT account_id) FROM exchanges"
        ).fetchone()
        unknown_ex, unknown_acc = con.execute(
            "SELECT count(*), count(DISTINCT account_id) FROM exchanges e "
            "WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.account_id = e.account_id)"
        ).fetchone()
        models = con.execute(
            "SELECT model, count(*) AS n FROM exchanges GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10"
        ).fetchall()
        reasons = con.execute(
            "SELECT table_name, coalesce(field, '(row)'), regexp_replace(reason, ':.*', '') AS why, count(*) "
            "FROM quarantine GROUP BY ALL ORDER BY 4 DESC, 1, 2, 3 LIMIT 20"
        ).fetchall()
        runs = con.execute(
            "SELECT finished_at, rows_read, stored, quarantined, duplicates, files_rejected "
            "FROM ingest_runs ORDER BY finished_at DESC LIMIT 5"
        ).fetchall()
        return {
            "db": str(db),
            "tables": table_counts(con),
            "first_ts": first.isoformat() if first else None,
            "last_ts": last.isoformat() if last else None,
            "accounts_with_traffic": accounts_seen,
            "unknown_account_exchanges": unknown_ex,
            "unknown_accounts": unknown_acc,
            "top_models": [{"model": m, "exchanges": n} for m, n in models],
            "quarantine_by_reason": [
                {"table": t, "field": f, "reason": r, "rows": n} for t, f, r, n in reasons
            ],
            "recent_ingests": [
                {"finished_at": f.isoformat(), "rows_read": a, "stored": b, "quarantined": c, "duplicates": d,
                 "files_rejected": e}
                for f, a, b, c, d, e in runs
            ],
        }
    finally:
        con.close()


def render_stats(stats: dict[str, Any], console: Console) -> None:
    """Print :func:`store_stats` as tables."""
    t = RichTable(title=f"store {stats['db']}", show_header=True)
    t.add_column("table")
    t.add_column("rows", justify="right")
    for name, n in stats["tables"].items():
        t.add_row(name, f"{n:,}")
    console.print(t)
    console.print(
        f"exchanges from [bold]{stats['first_ts']}[/] to [bold]{stats['last_ts']}[/], "
        f"{stats['accounts_with_traffic']:,} accounts with traffic; "
        f"{stats['unknown_account_exchanges']:,} exchanges from {stats['unknown_accounts']:,} accounts "
        "not in the accounts table"
    )
    if stats["top_models"]:
        m = RichTable(title="models")
        m.add_column("model")
        m.add_column("exchanges", justify="right")
        for row in stats["top_models"]:
            m.add_row(row["model"], f"{row['exchanges']:,}")
        console.print(m)
    if stats["quarantine_by_reason"]:
        q = RichTable(title="quarantine")
        for c in ("table", "field", "reason", "rows"):
            q.add_column(c, justify="right" if c == "rows" else "left")
        for row in stats["quarantine_by_reason"]:
            q.add_row(row["table"], row["field"], row["reason"], f"{row['rows']:,}")
        console.print(q)

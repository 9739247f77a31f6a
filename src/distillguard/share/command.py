"""``distillguard share ...``: the typer sub-app (registered by ``cli.py`` with
``app.add_typer(share_app, name="share")``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from distillguard.store import DEFAULT_DB

__all__ = ["share_app"]

share_app = typer.Typer(name="share", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                        help="Share campaign indicators with other providers: STIX 2.1 bundles with keyed "
                             "identifiers, TAXII 2.1 push/pull, import and match (docs/sharing.md).")
console = Console()
err = Console(stderr=True)

DbOption = Annotated[Path, typer.Option("--db", help="DuckDB store file. Env: DISTILLGUARD_DB.")]
KeyOption = Annotated[list[Path], typer.Option("--group-key", help="Group key file(s) (JSON); repeat for several.")]
ServerOption = Annotated[str, typer.Option("--server", help="TAXII 2.1 API root URL (or the server's /taxii2/ URL).")]
CollectionOption = Annotated[str, typer.Option("--collection", help="TAXII collection id.")]
UserOption = Annotated[str | None, typer.Option("--user", envvar="DISTILLGUARD_TAXII_USER", help="Basic-auth user.")]
PasswordOption = Annotated[str | None, typer.Option("--password", envvar="DISTILLGUARD_TAXII_PASSWORD",
                                                    help="Basic-auth password (prefer the environment variable).")]


def _fail(e: Exception, code: int = 2) -> typer.Exit:
    err.print(f"[red]error:[/] {e}", highlight=False)
    return typer.Exit(code)


@share_app.command("keygen")
def keygen(
    out: Annotated[Path, typer.Option("--out", "-o", help="Key file to create or add a key to (rotation).")],
    key_id: Annotated[str, typer.Option("--key-id", help="Name of the new key, e.g. 2026q3.")],
    days: Annotated[int, typer.Option(help="Validity in days (not_after).")] = 180,
) -> None:
    """Create a random group key (32 bytes) or add one to an existing key file (rotation)."""
    from distillguard.share.keys import KeyError_, generate_key

    try:
        key = generate_key(out, key_id, days=days)
    except KeyError_ as e:
        raise _fail(e) from e
    console.print(f"added key {key.key_id} (valid until {key.not_after:%Y-%m-%d}) to {out}; share it with the "
                  "group over a channel you trust, never with the bundles")


@share_app.command("export")
def export(
    campaign: Annotated[str, typer.Option("--campaign", help="campaign_id from the campaign reports.")],
    group_key: KeyOption,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Bundle file to write (STIX 2.1 JSON).")] = None,
    db: DbOption = DEFAULT_DB,
    k: Annotated[int, typer.Option("--k", help="Share an identifier only if seen on >= k flagged accounts.")] = 3,
    provider: Annotated[str, typer.Option(help="Name of the sharing provider (STIX identity).")] = "distillguard provider",
    allow_list: Annotated[Path | None, typer.Option(help="File of account ids (one a line) whose identifiers "
                                                    "never leave.")] = None,
    high_value_exchanges: Annotated[int, typer.Option(help="An unflagged account with more exchanges is "
                                                      "high-value: its identifiers never leave.")] = 1000,
    intrusion_set: Annotated[str | None, typer.Option(help="Attribute the campaign to this intrusion set.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the privacy report; write nothing.")] = False,
    misp: Annotated[Path | None, typer.Option("--misp", help="Also write the same export as a MISP event "
                                              "(JSON).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Export a campaign as a STIX 2.1 bundle: keyed identifiers, counts and windows, never prompt text."""
    from distillguard.share.export import PrivacyPolicy, export_campaign, plan_dict, render_privacy_report
    from distillguard.share.keys import KeyError_, load_keys

    if out is None and not dry_run:
        raise _fail(ValueError("give --out FILE, or --dry-run to see what would leave"))
    allow = frozenset(x.strip() for x in allow_list.read_text().splitlines() if x.strip()) if allow_list else frozenset()
    policy = PrivacyPolicy(k=k, allow_list=allow, high_value_exchanges=high_value_exchanges)
    try:
        plan = export_campaign(db, campaign, load_keys(group_key), out, policy=policy, provider=provider,
                               dry_run=dry_run, intrusion_set=intrusion_set)
    except (KeyError_, ValueError, RuntimeError) as e:
        raise _fail(e) from e
    if misp is not None and not dry_run:
        from distillguard.share.misp import misp_event

        misp.write_text(json.dumps(misp_event(plan), indent=1) + "\n")
        plan.files.append(str(misp))
    if json_out:
        console.print_json(json.dumps(plan_dict(plan), default=str))
        return
    console.print(render_privacy_report(plan), highlight=False)
    if plan.files:
        console.print(f"wrote {plan.files[0]} ({len(plan.bundle['objects']) if plan.bundle else 0} STIX objects)")
    elif dry_run:
        console.print("dry run: nothing written")


@share_app.command("import")
def import_(
    bundles: Annotated[list[Path], typer.Argument(help="STIX 2.1 bundle files from peers.")],
    db: DbOption = DEFAULT_DB,
) -> None:
    """Store peers' indicators (checked first; a malformed or unkeyed bundle is refused whole)."""
    from distillguard.share.imports import ShareImportError, import_bundle

    for b in bundles:
        try:
            s = import_bundle(db, b)
        except ShareImportError as e:
            raise _fail(e) from e
        console.print_json(json.dumps(s.to_dict()))


@share_app.command("push")
def push_cmd(bundle: Annotated[Path, typer.Argument(help="Bundle file to publish.")], server: ServerOption,
             collection: CollectionOption, user: UserOption = None, password: PasswordOption = None) -> None:
    """Publish a bundle to a TAXII 2.1 collection."""
    from distillguard.share.taxii import TaxiiError, push

    try:
        status = push(bundle, server, collection, user=user, password=password)
    except (TaxiiError, OSError, ValueError) as e:
        raise _fail(e) from e
    console.print_json(json.dumps(status))


@share_app.command("pull")
def pull_cmd(server: ServerOption, collection: CollectionOption, db: DbOption = DEFAULT_DB,
             user: UserOption = None, password: PasswordOption = None,
             save: Annotated[Path | None, typer.Option(help="Also save what was pulled as a bundle file.")] = None) -> None:
    """Pull a TAXII 2.1 collection and import it (objects already imported are skipped)."""
    from distillguard.share.imports import ShareImportError, import_bundle
    from distillguard.share.taxii import TaxiiError, pull

    try:
        doc = pull(server, collection, user=user, password=password)
        if save:
            save.write_text(json.dumps(doc, indent=1))
        s = import_bundle(db, doc, source=f"taxii:{server.rstrip('/')}/collections/{collection}")
    except (TaxiiError, ShareImportError) as e:
        raise _fail(e) from e
    console.print_json(json.dumps(s.to_dict()))


@share_app.command("revoke")
def revoke_cmd(indicator_id: Annotated[str, typer.Argument(help="indicator--... id to stop matching.")],
               db: DbOption = DEFAULT_DB) -> None:
    """Revoke an imported indicator locally."""
    from distillguard.share.imports import revoke

    if not revoke(db, indicator_id):
        raise _fail(ValueError(f"no imported indicator {indicator_id}"), 1)
    console.print(f"revoked {indicator_id}")


@share_app.command("match")
def match_cmd(group_key: KeyOption, db: DbOption = DEFAULT_DB) -> None:
    """Match imported indicators against every account and exchange (table indicator_matches);
    `distillguard detect` then adds SHARED_INDICATOR reasons and lists them in campaign reports."""
    import duckdb

    from distillguard.share.keys import KeyError_, load_keys
    from distillguard.share.watchlist import build_indicator_matches

    try:
        keys = load_keys(group_key)
    except KeyError_ as e:
        raise _fail(e) from e
    con = duckdb.connect(str(db))
    try:
        n = build_indicator_matches(con, keys)
        accts = con.execute("SELECT count(DISTINCT account_id) FROM indicator_matches").fetchall()[0][0]
    finally:
        con.close()
    console.print(f"{n} match(es) on {accts} account(s) written to indicator_matches")

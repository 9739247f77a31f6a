"""``distillguard watermark|provenance|evidence`` sub-commands (register in ``cli.py`` with
``app.add_typer(watermark_app, name="watermark")`` and likewise for the other two)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from distillguard.provenance.keys import EvidenceKey, Key, WatermarkKey, generate_key, load_key
from distillguard.store import DEFAULT_DB

__all__ = ["evidence_app", "provenance_app", "watermark_app"]

T = TypeVar("T")

console = Console()
err = Console(stderr=True)

watermark_app = typer.Typer(help="Keyed text watermark: make keys, detect the watermark in text or token ids.",
                            no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
provenance_app = typer.Typer(help="Was a suspect model trained on our watermarked outputs? (radioactivity test)",
                             no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
evidence_app = typer.Typer(help="Tamper-evident log of what was served to whom: verify it, export a bundle.",
                           no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

KeyOption = Annotated[Path, typer.Option("--key", "-k", exists=True, dir_okay=False,
                                         help="Key file (JSON {key_id, secret_hex}) or key ring file.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


def _fail(e: Exception) -> typer.Exit:
    err.print(f"[red]error:[/] {e}")
    return typer.Exit(2)


def _file_arg(help: str) -> Any:
    """A positional argument naming an existing file."""
    return typer.Argument(exists=True, dir_okay=False, help=help)


def _call(fn: Callable[..., T], *args: Any, **kw: Any) -> T:
    """``fn(*args, **kw)``; a bad input (ValueError, missing file, unknown key id) exits 2 with the message."""
    try:
        return fn(*args, **kw)
    except (ValueError, FileNotFoundError, KeyError) as e:
        raise _fail(e) from e


def _echo_json(result: Any, json_out: bool) -> bool:
    """Print ``result`` (a dict or an object with ``to_dict()``) as JSON when ``--json``; say whether it did."""
    if json_out:
        typer.echo(json.dumps(result if isinstance(result, dict) else result.to_dict(), indent=2))
    return json_out


@watermark_app.command("keygen")
def keygen_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Key file to write (0600; never overwritten).")],
    key_id: Annotated[str, typer.Option("--key-id", help="Public id of the key, e.g. wm-2026-11.")],
    kind: Annotated[str, typer.Option(help="watermark, evidence or canary.")] = "watermark",
    context_width: Annotated[int, typer.Option(help="Watermark: tokens of context seeding the green list.")] = 2,
    gamma: Annotated[float, typer.Option(help="Watermark: green share of the vocabulary.")] = 0.25,
    delta: Annotated[float, typer.Option(help="Watermark: logit bias on green tokens.")] = 2.0,
) -> None:
    """Generate a random secret key (watermark keys also record their parameters)."""
    if kind not in ("watermark", "evidence", "canary"):
        raise _fail(ValueError(f"unknown kind {kind!r}: use watermark, evidence or canary"))
    try:
        if kind == "watermark":
            from distillguard.provenance.watermark import KeyRing, WatermarkParams

            params = WatermarkParams(context_width=context_width, gamma=gamma, delta=delta)
            k = generate_key(key_id, WatermarkKey)
            KeyRing([k], params=params)  # validates
            from dataclasses import asdict

            from distillguard.provenance.keys import save_key

            save_key(k, out, extra={"params": asdict(params)})
        else:
            from distillguard.provenance.keys import save_key

            save_key(generate_key(key_id, EvidenceKey if kind == "evidence" else Key), out)
    except (ValueError, FileExistsError) as e:
        raise _fail(e) from e
    console.print(f"wrote {kind} key {key_id!r} to {out}")


@watermark_app.command("detect")
def detect_command(
    path: Annotated[Path, _file_arg("Text file, JSONL of {text}, or token ids (.json list / lists).")],
    key: KeyOption,
    tokenizer: Annotated[Path | None, typer.Option(help="tokenizer.json the generator used (for text).")] = None,
    key_id: Annotated[list[str] | None, typer.Option("--key-id", help="Test only these key ids.")] = None,
    json_out: JsonOption = False,
) -> None:
    """Exact p-value that the text carries the watermark of a key in the ring (distinct pairs scored once)."""
    from distillguard.provenance.api import detect_file

    d = _call(detect_file, path, key, tokenizer, key_ids=key_id or None)
    if _echo_json(d, json_out):
        return
    console.print(f"key {d.key_id}: p = {d.p_value:.3g} (z = {d.score:.2f}); {d.green}/{d.tokens_scored} distinct "
                  f"(context, token) pairs green (expected {d.gamma:.0%}); {d.tokens_total} tokens; "
                  f"{d.keys_tested} key(s) tested")


@provenance_app.command("test")
def test_command(
    suspect: Annotated[Path, typer.Option("--suspect", exists=True,
                                          help="Saved model folder (white-box) or file of its outputs (black-box).")],
    key: KeyOption,
    probes: Annotated[Path | None, typer.Option(help="White-box: never-watermarked probe text or token ids.")] = None,
    tokenizer: Annotated[Path | None, typer.Option(help="tokenizer.json of our generator.")] = None,
    key_id: Annotated[list[str] | None, typer.Option("--key-id", help="Test only these key ids.")] = None,
    statistic: Annotated[str, typer.Option(help="White-box statistic: top1 (the suspect's argmax, exact binomial p) "
                                           "or green-mass (its next-token distribution, Chernoff-bound p; "
                                           "more powerful).")] = "top1",
    reference: Annotated[Path | None, typer.Option(exists=True, file_okay=False,
                                                   help="green-mass: a model folder that never saw our watermark, "
                                                        "best our own teacher (the watermark is applied at sampling, "
                                                        "not in its weights), else the public base the suspect "
                                                        "started from; scores the suspect's green preference beyond "
                                                        "it.")] = None,
    topk: Annotated[int, typer.Option(help="green-mass: next tokens kept per position.")] = 32,
    json_out: JsonOption = False,
) -> None:
    """Radioactivity test: p-value over distinct (context, token) pairs of the suspect's predictions or outputs."""
    from distillguard.provenance.api import test_suspect

    r = _call(test_suspect, suspect, key, probes=probes, tokenizer=tokenizer, key_ids=key_id or None,
              statistic=statistic, reference=reference, topk=topk)
    if _echo_json(r, json_out):
        return
    if hasattr(r, "green_mass"):
        console.print(f"{r.mode} green mass: p = {r.p_value:.3g} for key {r.key_id} (z = {r.score:.2f}); green mass "
                      f"{r.green_mass:.2f}, expected {r.expected:.2f}, over {r.contexts} distinct contexts, "
                      f"{r.probes} probe(s)")
        return
    d = r.detection
    console.print(f"{r.mode}: p = {d.p_value:.3g} for key {d.key_id}; {d.green}/{d.tokens_scored} distinct pairs "
                  f"green (expected {d.gamma:.0%}) over {r.probes} probe(s)")


@evidence_app.command("verify")
def verify_command(
    key: KeyOption,
    db: Annotated[Path, typer.Option("--db", help="Store holding the evidence_log table.")] = DEFAULT_DB,
    anchor: Annotated[Path | None, typer.Option(help="manifest.json of an earlier export: also detects "
                                                "records cut off the end.")] = None,
    json_out: JsonOption = False,
) -> None:
    """Check every signature, hash, chain link and sequence number; exit 1 when anything was tampered with."""
    from distillguard.provenance.evidence import verify

    try:
        k = load_key(key, EvidenceKey)
        anc = None
        if anchor:
            m = json.loads(anchor.read_text())
            anc = {"seq": m["head_seq"], "record_hash": m["chain_head"]}
        res = verify(db, k, anchor=anc)
    except (ValueError, FileNotFoundError, KeyError) as e:
        raise _fail(e) from e
    if json_out:
        typer.echo(json.dumps(res.to_dict(), indent=2))
    else:
        state = "[green]intact[/]" if res.ok else f"[red]{len(res.issues)} problem(s)[/]"
        console.print(f"{res.records:,} records, head seq {res.head_seq} {res.head_hash[:16]}…: {state}")
        for i in res.issues:
            console.print(f"  {i.kind:<14} seq {i.seq} request {i.request_id}: {i.message}", highlight=False)
    if not res.ok:
        raise typer.Exit(1)


@evidence_app.command("export")
def export_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Bundle folder to write.")],
    db: Annotated[Path, typer.Option("--db", help="Store holding the evidence_log table.")] = DEFAULT_DB,
    key: Annotated[Path | None, typer.Option("--key", "-k", exists=True, dir_okay=False,
                                             help="Evidence key: verify first and record the result.")] = None,
    zip_bundle: Annotated[bool, typer.Option("--zip", help="Also write OUT.zip.")] = False,
) -> None:
    """Write a self-contained bundle (records.jsonl, manifest.json, README.txt, verify_bundle.py)."""
    from distillguard.provenance.evidence import export

    try:
        res = export(db, out, key=load_key(key, EvidenceKey) if key else None, zip_bundle=zip_bundle)
    except (ValueError, FileNotFoundError) as e:
        raise _fail(e) from e
    ver = {None: "not verified (no --key)", True: "verified intact", False: "[red]TAMPERED (see manifest)[/]"}
    console.print(f"exported {res.records:,} records to {res.out_dir}; chain head {res.chain_head[:16]}…; "
                  f"{ver[res.verified]}")


@provenance_app.command("canary-probes")
def canary_probes_command(
    subjects: Annotated[Path, _file_arg("File with one account or cluster id per line (canaries served).")],
    key: KeyOption,
    out: Annotated[Path, typer.Option("--out", "-o", help="JSONL of probes {canary_id, subject_id, prompt}.")],
) -> None:
    """Write the probe prompts for the canaries of these accounts (ask the suspect each, keep its answers)."""
    from distillguard.provenance.canary import canary_for, probe_set

    k = load_key(key)
    ids = [line.strip() for line in subjects.read_text().splitlines() if line.strip()]
    probes = probe_set(canary_for(s, k.secret) for s in ids)
    out.write_text("".join(json.dumps(p.__dict__) + "\n" for p in probes))
    console.print(f"wrote {len(probes)} probes for {len(ids)} canaries to {out}")


@provenance_app.command("canary-check")
def canary_check_command(
    answers: Annotated[Path, _file_arg("JSONL {subject_id, prompt, answer}: the suspect's answers to the probes.")],
    key: KeyOption,
    json_out: JsonOption = False,
) -> None:
    """Which accounts' canaries the suspect reproduces, each with its chance-match probability."""
    from distillguard.provenance.canary import Probe, canary_for, check

    k = load_key(key)
    try:
        rows = [json.loads(line) for line in answers.read_text().splitlines() if line.strip()]
        cans = {s: canary_for(s, k.secret) for s in {r["subject_id"] for r in rows}}
        rep = check([(Probe(cans[r["subject_id"]].canary_id, r["subject_id"], r["prompt"]), r["answer"])
                     for r in rows], list(cans.values()))
    except (ValueError, KeyError) as e:
        raise _fail(ValueError(f"{answers}: {e}")) from e
    if _echo_json(rep, json_out):
        return
    console.print(f"{len(rep.hits)} of {rep.canaries_checked} canaries found (family chance {rep.family_p_chance:.3g})")
    for h in rep.hits:
        console.print(f"  {h.account_id} ({h.canary_id}): chance {h.p_chance:.3g}: …{h.excerpt}…", highlight=False)


@provenance_app.command("report")
def report_command(
    radioactivity: Annotated[list[Path] | None, typer.Option("--radioactivity", exists=True,
                                                             help="JSON from `provenance test --json` (repeatable).")] = None,
    canaries: Annotated[Path | None, typer.Option(exists=True, help="JSON from `provenance canary-check --json`.")] = None,
    evidence: Annotated[Path | None, typer.Option(exists=True, help="JSON from `evidence verify --json`.")] = None,
    alpha: Annotated[float, typer.Option(help="Level at which a line counts as a finding.")] = 1e-6,
    json_out: JsonOption = False,
) -> None:
    """One suspect, the independent lines of evidence side by side, each with its own number."""
    from distillguard.provenance.report import combine

    rep = combine(radioactivity=[json.loads(p.read_text()) for p in radioactivity or []],
                  canaries=json.loads(canaries.read_text()) if canaries else None,
                  evidence=json.loads(evidence.read_text()) if evidence else None, alpha=alpha)
    if _echo_json(rep, json_out):
        return
    for line in rep["lines"]:
        p = "" if line["p_value"] is None else f" p = {line['p_value']:.3g}"
        mark = "[bold red]finding[/]" if line["finding"] else "no finding"
        console.print(f"{line['line']}:{p} {mark}; {line['detail']}\n    {line['survives']}")

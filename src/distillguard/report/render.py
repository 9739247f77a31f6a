"""Stage 6b: campaign reports on disk -- Markdown, one self-contained HTML page each, JSON, index.

Reads only table ``campaigns`` (and, when ``quote_samples``, one example text per campaign from
``exchanges``/``signals``); plots are embedded as base64 PNG so each page works offline and attached.
"""

from __future__ import annotations

import html
import json
import os
import pickle
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from distillguard.engines import Engine
from distillguard.report import _sql
from distillguard.report.build import read_campaigns
from distillguard.report.plots import capability_png, data_uri, timeline_png

__all__ = ["CAPABILITY_LABELS", "SAMPLE_CHARS", "summary_sentence", "write_reports"]

#: How capabilities read in a sentence.
CAPABILITY_LABELS = {
    "coding": "coding",
    "agentic": "agentic reasoning",
    "planning": "planning",
    "math_reasoning": "math reasoning",
    "grader": "grading and rubrics",
    "censorship_rewrite": "censorship rewriting",
    "chat": "general chat",
    "other": "other tasks",
}

#: Longest quoted template skeleton, in characters.
SAMPLE_CHARS = 120


def _n(v: int | None, one: str, many: str | None = None) -> str:
    v = v or 0
    return f"{v:,} {one if v == 1 else (many or one + 's')}"


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{v:.0%}"


def _day(ts: str | None) -> str:
    return ts[:10] if ts else "?"


def _when(ts: str | None) -> str:
    return ts[:16].replace("T", " ") + " UTC" if ts else "?"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:100] or "campaign"


def summary_sentence(c: dict[str, Any]) -> str:
    """One paragraph a trust-and-safety engineer can paste into a letter (``c`` from ``read_campaigns``)."""
    accounts = _n(c["n_flagged"], "flagged account")
    if c["n_accounts"] != c["n_flagged"]:
        accounts += f" (of {c['n_accounts']:,} linked)"
    parts = [
        f"Campaign {c['campaign_id']}: {accounts}, {_n(c['n_exchanges'], 'exchange')}"
        + (f" from {_day(c['first_ts'])} to {_day(c['last_ts'])}" if c["first_ts"] else "")
    ]
    mix = c["capability_mix"] or {}
    if mix:
        aims = [f"{CAPABILITY_LABELS.get(k, k)} ({_pct(v)})" for k, v in list(mix.items())[:3]]
        parts.append("aimed at " + ", ".join(aims))
    parts.append(
        f"through {_n(c['n_blocks'], 'client /24 block')} in {_n(c['n_asns'], 'ASN')} "
        f"shared with {_n(c['blocks_other_accounts'], 'other account')}"
    )
    parts.append(_n(c["n_payments"], "payment instrument"))
    parts.append(f"created in {_n(c['n_waves'], 'sign-up wave')}")
    text = ", ".join(parts) + "."
    if c["cot_share"]:
        text += f" {_pct(c['cot_share'])} of its prompts coerce a full reasoning trace."
    if c["newest_model"] and c["newest_model_share_after"] is not None:
        text += (
            f" Once {c['newest_model']} appeared, {_pct(c['newest_model_share_after'])} of its traffic went to it."
        )
    if c["first_flagged_at"]:
        text += f" First flagged {c['first_flagged_at'][:16].replace('T', ' ')} UTC."
    return text


def _skeleton(text: str) -> str:
    """Whitespace collapsed, digits masked, cut to :data:`SAMPLE_CHARS` characters."""
    s = re.sub(r"\d+", "#", " ".join(text.split()))
    return s if len(s) <= SAMPLE_CHARS else s[: SAMPLE_CHARS - 1] + "…"


def _sample(engine: Engine, c: dict[str, Any]) -> dict[str, str] | None:
    if not c["top_templates"] or not engine.has_table("signals"):
        return None
    engine.register("_report_sample_members", pa.table({"account_id": pa.array(c["members"], pa.string())}))
    for t in c["top_templates"]:  # templates first, then preambles, most used first
        col = "template_fp" if t["kind"] == "template" else "preamble_fp"
        first = engine.query(_sql.SAMPLE_TEXT.format(signals="signals", fp_col=col), [t["fp"]]).to_pylist()
        rows = first and engine.query(_sql.SAMPLE_EXCHANGE, [first[0]["ts"], first[0]["account_id"],
                                                             first[0]["request_id"]]).to_pylist()
        text = rows and (rows[0]["prompt"] if t["kind"] == "template" else rows[0]["system"])
        if text:
            return {"kind": t["kind"], "fp": t["fp"], "skeleton": _skeleton(text)}
    return None


# --- tables: (title, columns, rows) -------------------------------------------------------------

Section = tuple[str, list[str], list[list[Any]]]


def _sections(c: dict[str, Any]) -> list[Section]:
    def facet(rows: list[dict[str, Any]], cols: list[str]) -> list[list[Any]]:
        return [[r.get(k) for k in cols] for r in rows]

    overview = [
        ["kind", c["kind"]],
        ["cluster", c["cluster_id"] or "–"],
        ["accounts (flagged / linked)", f"{c['n_flagged']:,} / {c['n_accounts']:,}"],
        ["exchanges", f"{c['n_exchanges']:,}"],
        ["active", f"{_when(c['first_ts'])} → {_when(c['last_ts'])}"],
        ["first flagged", _when(c["first_flagged_at"]) if c["first_flagged_at"] else "–"],
        ["risk score (mean / max)",
         "–" if c["mean_score"] is None else f"{c['mean_score']:.3f} / {c['max_score']:.3f}"],
        ["reasoning-trace coercion (share / mean score)",
         "–" if c["cot_mean"] is None else f"{_pct(c['cot_share'])} / {c['cot_mean']:.2f}"],
        ["newest model (share / share once available)",
         "–" if not c["newest_model"]
         else f"{c['newest_model']} ({_pct(c['newest_model_share'])} / {_pct(c['newest_model_share_after'])})"],
    ]
    return [
        ("Overview", ["", ""], overview),
        ("Capability mix", ["capability", "share"], [[k, _pct(v)] for k, v in (c["capability_mix"] or {}).items()]),
        ("Top templates (fingerprints)", ["kind", "fingerprint", "exchanges", "accounts"],
         facet(c["top_templates"], ["kind", "fp", "exchanges", "accounts"])),
        (f"Client network blocks ({c['n_blocks']:,}; {c['blocks_other_accounts']:,} other accounts use them)",
         ["block", "exchanges", "accounts", "other accounts"],
         facet(c["blocks"], ["value", "exchanges", "accounts", "other_accounts"])),
        (f"ASNs ({c['n_asns']:,}; {c['asns_other_accounts']:,} other accounts use them)",
         ["ASN", "exchanges", "accounts", "other accounts"],
         facet(c["asns"], ["value", "exchanges", "accounts", "other_accounts"])),
        (f"Payment instruments ({c['n_payments']:,})", ["fingerprint", "accounts", "other accounts"],
         facet(c["payments"], ["value", "accounts", "other_accounts"])),
        (f"User agents ({c['n_user_agents']:,})", ["user agent", "exchanges", "accounts"],
         facet(c["user_agents"], ["value", "exchanges", "accounts"])),
        ("E-mail domains", ["domain", "accounts", "other accounts"],
         facet(c["email_domains"], ["value", "accounts", "other_accounts"])),
        (f"Sign-up waves ({c['n_waves']:,})", ["wave", "accounts", "first sign-up", "last sign-up"],
         [[w["wave"], w["accounts"], _when(w["first_at"]), _when(w["last_at"])] for w in c["waves"]]),
        ("Sign-ups per day", ["day", "accounts"], facet(c["signups"], ["day", "accounts"])),
        ("Models", ["model", "exchanges", "accounts"], facet(c["models"], ["value", "exchanges", "accounts"])),
        ("Top reasons", ["reason", "accounts", "example"], facet(c["top_reasons"], ["phrase", "accounts", "example"])),
    ] + ([("Shared indicators matched (imported from peers)",
           ["indicator", "kind", "provider", "shared", "accounts"],
           facet(c["shared_indicators"], ["indicator_id", "kind", "provider", "shared_at", "accounts"]))]
         if c.get("shared_indicators") else [])


def _cell_md(v: Any) -> str:
    s = "–" if v is None else (f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v))
    return s.replace("|", "\\|").replace("\n", " ")


def _markdown(c: dict[str, Any], sample: dict[str, str] | None, html_name: str) -> str:
    out = [f"# Campaign {c['campaign_id']}", "", summary_sentence(c), "",
           f"Plots (timeline, capability mix): [{html_name}]({html_name}).", ""]
    for title, cols, rows in _sections(c):
        out += [f"## {title}", ""]
        if not rows:
            out += ["(none)", ""]
            continue
        if title == "Overview":
            out += ["| | |", "|---|---|"]
        else:
            out += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        out += ["| " + " | ".join(_cell_md(v) for v in r) + " |" for r in rows]
        out.append("")
    if sample:
        out += ["## Template sample", "",
                f"Most used {sample['kind']} `{sample['fp']}`, skeleton (digits masked, "
                f"cut to {SAMPLE_CHARS} characters):", "",
                "> " + sample["skeleton"].replace("\n", " "), ""]
    out += ["## Members (flagged)", "", ", ".join(f"`{a}`" for a in c["members"]) or "(none)", ""]
    return "\n".join(out)


_CSS = """body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}td,th{border:1px solid #ccc;padding:.25rem .5rem;
text-align:left;font-size:.9rem;vertical-align:top}th{background:#f3f3f3}p.summary{font-size:1.05rem;
background:#fff8e1;padding:.75rem;border-left:4px solid #f0b400}img{max-width:100%}code{font-size:.85rem}
blockquote{background:#f6f6f6;margin:0;padding:.5rem 1rem;font-family:monospace}"""


def _cell_html(v: Any) -> str:
    return html.escape(_cell_md(v).replace("\\|", "|"))


def _html_page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_CSS}</style></head><body>\n{body}\n</body></html>\n")


def _plot_uris(c: dict[str, Any]) -> tuple[str, str]:
    """The campaign page's two plots as ``data:`` URIs: (timeline, capability mix)."""
    return (data_uri(timeline_png(c["daily"], "Campaign " + c["campaign_id"])),
            data_uri(capability_png(c["capability_mix"] or {})))


def _plot_many(items: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """:func:`_plot_uris` for several campaigns."""
    return [_plot_uris(c) for c in items]


def serve_plots() -> None:
    """Helper-process entry: read a pickled list of campaigns on stdin, write their plot URIs."""
    items = pickle.load(sys.stdin.buffer)
    pickle.dump(_plot_many(items), sys.stdout.buffer, protocol=pickle.HIGHEST_PROTOCOL)
    sys.stdout.buffer.flush()


#: With at least this many campaigns, half the plots are drawn in a helper process (start-up ~1-2 s).
PARALLEL_PLOTS_MIN = 8


def _start_helper(items: list[dict[str, Any]]) -> tuple[threading.Thread, list[Any]]:
    """A fresh interpreter (not multiprocessing: no re-import of the caller's ``__main__``) that
    draws ``items``' plots; returns the thread that talks to it and the list it fills."""
    import distillguard

    root = str(Path(distillguard.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    data = pickle.dumps(items, protocol=pickle.HIGHEST_PROTOCOL)
    result: list[Any] = []

    def talk() -> None:
        try:
            proc = subprocess.Popen(
                [sys.executable, "-c", "from distillguard.report.render import serve_plots; serve_plots()"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
            out, _ = proc.communicate(data)
            if proc.returncode == 0:
                result.append(pickle.loads(out))
        except Exception:  # noqa: BLE001 - the caller draws them itself then
            pass

    t = threading.Thread(target=talk, daemon=True)
    t.start()
    return t, result


def _all_plots(campaigns: list[dict[str, Any]], workers: int | None) -> Iterator[tuple[str, str]]:
    """Every campaign's plot URIs, in order. Matplotlib holds the GIL, so on two cores the plots of
    the second half of the campaigns are drawn in a helper interpreter while this one draws the first
    half (and queries the samples between them): the same bytes, in about half the time. Should the
    helper fail, its share is drawn here."""
    if workers is None:
        workers = 2 if (os.cpu_count() or 1) >= 2 and len(campaigns) >= PARALLEL_PLOTS_MIN else 1
    if workers <= 1 or len(campaigns) < 2:
        for c in campaigns:
            yield _plot_uris(c)
        return
    keys = ("campaign_id", "daily", "capability_mix")
    mid = (len(campaigns) + 1) // 2  # the helper starts later: it takes the second half
    thread, result = _start_helper([{k: c[k] for k in keys} for c in campaigns[mid:]])
    for c in campaigns[:mid]:
        yield _plot_uris(c)
    thread.join()
    rest = result[0] if result and len(result[0]) == len(campaigns) - mid else _plot_many(campaigns[mid:])
    yield from rest


def _html(c: dict[str, Any], sample: dict[str, str] | None, plots: tuple[str, str] | None = None) -> str:
    cid = html.escape(c["campaign_id"])
    timeline, capability = plots or _plot_uris(c)
    body = [f"<h1>Campaign {cid}</h1>", f'<p class="summary">{html.escape(summary_sentence(c))}</p>',
            "<h2>Timeline</h2>",
            f'<img alt="timeline" src="{timeline}">',
            "<h2>Capability mix</h2>",
            f'<img alt="capability mix" src="{capability}">']
    for title, cols, rows in _sections(c):
        body.append(f"<h2>{html.escape(title)}</h2>")
        if not rows:
            body.append("<p>(none)</p>")
            continue
        head = "" if title == "Overview" else "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in cols) + "</tr>"
        trs = "".join("<tr>" + "".join(f"<td>{_cell_html(v)}</td>" for v in r) + "</tr>" for r in rows)
        body.append(f"<table>{head}{trs}</table>")
    if sample:
        body += ["<h2>Template sample</h2>",
                 f"<p>Most used {html.escape(sample['kind'])} <code>{html.escape(sample['fp'])}</code>, "
                 f"skeleton (digits masked, cut to {SAMPLE_CHARS} characters):</p>",
                 f"<blockquote>{html.escape(sample['skeleton'])}</blockquote>"]
    members = ", ".join(f"<code>{html.escape(a)}</code>" for a in c["members"]) or "(none)"
    body += ["<h2>Members (flagged)</h2>", f"<p>{members}</p>"]
    return _html_page(f"Campaign {c['campaign_id']}", "\n".join(body))


def _index(campaigns: list[dict[str, Any]], names: list[str]) -> tuple[str, str]:
    cols = ["campaign", "kind", "flagged", "accounts", "exchanges", "active", "main capability", "/24 blocks", "ASNs"]
    rows = []
    for c, name in zip(campaigns, names, strict=True):
        main = next(iter((c["capability_mix"] or {}).items()), None)
        rows.append([
            (c["campaign_id"], name), c["kind"], c["n_flagged"], c["n_accounts"], c["n_exchanges"],
            f"{_day(c['first_ts'])} → {_day(c['last_ts'])}",
            f"{CAPABILITY_LABELS.get(main[0], main[0])} ({_pct(main[1])})" if main else "–",
            c["n_blocks"], c["n_asns"],
        ])
    md = ["# Campaigns", "", f"{len(campaigns)} campaigns, largest first.", "",
          "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    md += ["| " + " | ".join([f"[{r[0][0]}]({r[0][1]}.md)"] + [_cell_md(v) for v in r[1:]]) + " |" for r in rows]
    head = "<tr>" + "".join(f"<th>{h}</th>" for h in cols) + "</tr>"
    trs = "".join(
        "<tr>" + f'<td><a href="{html.escape(r[0][1])}.html">{html.escape(r[0][0])}</a></td>'
        + "".join(f"<td>{_cell_html(v)}</td>" for v in r[1:]) + "</tr>"
        for r in rows
    )
    body = f"<h1>Campaigns</h1><p>{len(campaigns)} campaigns, largest first.</p><table>{head}{trs}</table>"
    return "\n".join(md) + "\n", _html_page("Campaigns", body)


def _attach_shared_indicators(engine: Engine, campaigns: list[dict[str, Any]]) -> None:
    """Peers' indicators that the campaign's flagged members matched (table ``indicator_matches``,
    written by the share stage), as ``c["shared_indicators"]``; nothing when no intel was imported."""
    if not campaigns or not engine.has_table("indicator_matches"):
        return
    members = [(c["campaign_id"], a) for c in campaigns for a in c["members"]]
    engine.register("_report_shared_members", pa.table({"campaign_id": [m[0] for m in members],
                                                        "account_id": [m[1] for m in members]},
                                                       schema=pa.schema([("campaign_id", pa.string()),
                                                                         ("account_id", pa.string())])))
    rows = engine.query(
        "SELECT m.campaign_id, i.indicator_id, i.kind, i.provider, CAST(CAST(i.shared_at AS DATE) AS VARCHAR) AS "
        "shared_at, COUNT(DISTINCT i.account_id) AS accounts FROM indicator_matches i "
        "JOIN _report_shared_members m ON m.account_id = i.account_id "
        "GROUP BY ALL ORDER BY m.campaign_id, accounts DESC, i.kind, i.indicator_id").to_pylist()
    by: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by.setdefault(r.pop("campaign_id"), []).append(r)
    for c in campaigns:
        if c["campaign_id"] in by:
            c["shared_indicators"] = by[c["campaign_id"]]


def write_reports(engine: Engine, out_dir: Path, *, quote_samples: bool = True,
                  workers: int | None = None) -> list[Path]:
    """Write ``<campaign>.md`` and ``<campaign>.html`` per campaign, ``campaigns.json``, ``index.md``
    and ``index.html`` under ``out_dir`` from table ``campaigns`` (run :func:`build_campaigns` first);
    return the paths written. ``quote_samples`` adds one digit-masked, 120-character skeleton of the
    campaign's most used template (the only prompt text in a report; the tables hold fingerprints only).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    campaigns = read_campaigns(engine)
    _attach_shared_indicators(engine, campaigns)
    paths: list[Path] = []
    names: list[str] = []
    seen: set[str] = set()
    for c, plots in zip(campaigns, _all_plots(campaigns, workers), strict=True):
        name = _safe(c["campaign_id"])
        while name in seen or name == "index":
            name += "_"
        seen.add(name)
        names.append(name)
        sample = _sample(engine, c) if quote_samples else None
        c["summary"] = summary_sentence(c)
        md = out_dir / f"{name}.md"
        md.write_text(_markdown(c, sample, f"{name}.html"), encoding="utf-8")
        page = out_dir / f"{name}.html"
        page.write_text(_html(c, sample, plots), encoding="utf-8")
        paths += [md, page]
    doc = {"n_campaigns": len(campaigns), "campaigns": campaigns}
    js = out_dir / "campaigns.json"
    js.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    index_md, index_html = _index(campaigns, names)
    (out_dir / "index.md").write_text(index_md, encoding="utf-8")
    (out_dir / "index.html").write_text(index_html, encoding="utf-8")
    return [*paths, js, out_dir / "index.md", out_dir / "index.html"]

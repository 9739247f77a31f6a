"""Stage 6 (campaign reports) on hand-made tables: one flagged cluster c1 (a1, a2 flagged, a3 not), one
benign cluster c2 (b1, b2), an unclustered flagged account s1 and an unclustered benign account o1 that
shares a /24 and a card with the campaign. Every expected number below is counted by hand."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from distillguard.contract import ACCOUNTS, CLUSTERS, DETECTIONS, EXCHANGES, SIGNALS, Table
from distillguard.engines import DuckDBEngine, registered_sql, to_spark_sql
from distillguard.report import build_campaigns, read_campaigns, summary_sentence, write_reports


def T(s: str) -> datetime:
    return datetime.fromisoformat(s).replace(tzinfo=UTC)


def _table(t: Table, rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist([{n: r.get(n) for n in t.names} for r in rows], schema=t.schema)


ACC = [
    dict(account_id="a1", created_at=T("2026-04-01T00:00"), payment_fingerprint="pay1", email_domain="mail.x"),
    dict(account_id="a2", created_at=T("2026-04-02T00:00"), payment_fingerprint="pay1", email_domain="mail.x"),
    dict(account_id="a3", created_at=T("2026-04-05T00:00"), payment_fingerprint="pay2", email_domain="mail.x"),
    dict(account_id="b1", created_at=T("2026-03-01T00:00"), payment_fingerprint="pb1", email_domain="uni.edu"),
    dict(account_id="b2", created_at=T("2026-03-01T00:00"), payment_fingerprint="pb2", email_domain="uni.edu"),
    dict(account_id="s1", created_at=T("2026-04-03T00:00"), payment_fingerprint="ps1", email_domain="mail.x"),
    dict(account_id="o1", created_at=T("2026-02-01T00:00"), payment_fingerprint="pay1", email_domain="other.org"),
]


def _x(i: int, acct: str, ts: str, ip: str, asn: int, ua: str, model: str, **kw) -> dict:
    return dict(request_id=f"r{i}", account_id=acct, ts=T(ts), client_ip=ip, asn=asn, user_agent=ua,
                model=model, prompt=kw.get("prompt", f"question {i}"), system=kw.get("system"))


LONG = "You are grading solutions. Task 12345: " + "think step by step and show every step " * 5
EXC = [
    _x(1, "a1", "2026-04-22T10:00", "10.0.1.5", 100, "bot/1", "m-old", prompt=LONG, system="Role: tutor 42"),
    _x(2, "a1", "2026-04-22T11:00", "10.0.1.5", 100, "bot/1", "m-old"),
    _x(3, "a1", "2026-04-22T12:00", "10.0.1.5", 100, "bot/1", "m-old"),
    _x(4, "a2", "2026-04-23T10:00", "10.0.1.9", 100, "bot/1", "m-new"),
    _x(5, "a2", "2026-04-23T11:00", "10.0.2.7", 200, "bot/2", "m-new"),
    _x(6, "a3", "2026-04-23T12:00", "10.0.9.1", 100, "bot/1", "m-old"),  # unflagged member: not counted
    _x(7, "b1", "2026-04-20T09:00", "10.0.1.77", 100, "sdk/3", "m-old"),  # other account on the /24
    _x(8, "b2", "2026-04-21T09:00", "172.16.0.1", 400, "sdk/3", "m-old"),
    _x(9, "s1", "2026-04-24T08:00", "192.168.5.5", 300, "curl", "m-old"),
    _x(10, "o1", "2026-04-24T09:00", "10.0.2.3", 300, "sdk/3", "m-old"),  # other account on 10.0.2.0/24
]

SIG = [
    dict(request_id="r1", capability="coding", cot_score=0.9, template_fp=111, preamble_fp=7),
    dict(request_id="r2", capability="coding", cot_score=0.1, template_fp=111, preamble_fp=7),
    dict(request_id="r3", capability="agentic", cot_score=0.8, template_fp=111, preamble_fp=7),
    dict(request_id="r4", capability="agentic", cot_score=0.7, template_fp=111),
    dict(request_id="r5", capability="planning", cot_score=0.2, template_fp=222),
    dict(request_id="r7", capability="chat", cot_score=0.0, template_fp=999),
]

DET = [
    dict(account_id="a1", score=0.9, flagged=True, cluster_id="c1", first_flagged_at=T("2026-04-22T12:00"),
         reasons=["SHARED_PAYMENT: 2 accounts share one card", "COT: 67% of prompts coerce a trace"]),
    dict(account_id="a2", score=0.8, flagged=True, cluster_id="c1", first_flagged_at=T("2026-04-23T11:00"),
         reasons=["SHARED_PAYMENT: 3 accounts share one card"]),
    dict(account_id="a3", score=0.3, flagged=False, cluster_id="c1"),
    dict(account_id="b1", score=0.1, flagged=False, cluster_id="c2"),
    dict(account_id="b2", score=0.2, flagged=False, cluster_id="c2"),
    dict(account_id="s1", score=0.95, flagged=True, first_flagged_at=T("2026-04-24T08:00"), reasons=["VOLUME: 1 burst"]),
    dict(account_id="o1", score=0.05, flagged=False),
]

CLU = [
    dict(account_id="a1", cluster_id="c1", cluster_size=3),
    dict(account_id="a2", cluster_id="c1", cluster_size=3),
    dict(account_id="a3", cluster_id="c1", cluster_size=3),
    dict(account_id="b1", cluster_id="c2", cluster_size=2),
    dict(account_id="b2", cluster_id="c2", cluster_size=2),
    dict(account_id="s1", cluster_id=None, cluster_size=1),
    dict(account_id="o1", cluster_id=None, cluster_size=1),
]


def make_engine(*, signals: bool = True, clusters: bool = True) -> DuckDBEngine:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    e = DuckDBEngine(con)
    tables = {"accounts": _table(ACCOUNTS, ACC), "exchanges": _table(EXCHANGES, EXC), "detections": _table(DETECTIONS, DET)}
    if signals:
        by_req = {x["request_id"]: x for x in EXC}
        rows = [dict(s, account_id=by_req[s["request_id"]]["account_id"], ts=by_req[s["request_id"]]["ts"]) for s in SIG]
        tables["signals"] = _table(SIGNALS, rows)
    if clusters:
        tables["clusters"] = _table(CLUSTERS, CLU)
    for name, t in tables.items():
        e.register(f"_in_{name}", t)
        e.create_table_as(name, f"SELECT * FROM _in_{name}")
    return e


@pytest.fixture(scope="module")
def built() -> tuple[DuckDBEngine, dict[str, dict]]:
    e = make_engine()
    assert build_campaigns(e) == 2
    return e, {c["campaign_id"]: c for c in read_campaigns(e)}


def test_campaign_numbers(built):
    _, cs = built
    assert set(cs) == {"c1", "solo_s1"}  # c2 (benign) is no campaign
    c = cs["c1"]
    assert (c["kind"], c["cluster_id"], c["n_accounts"], c["n_flagged"], c["n_exchanges"]) == ("cluster", "c1", 3, 2, 5)
    assert c["first_ts"].startswith("2026-04-22T10:00") and c["last_ts"].startswith("2026-04-23T11:00")
    assert c["first_flagged_at"].startswith("2026-04-22T12:00")
    assert c["mean_score"] == pytest.approx(0.85) and c["max_score"] == pytest.approx(0.9)
    assert c["capability_mix"] == {"agentic": 0.4, "coding": 0.4, "planning": 0.2}
    assert list(c["capability_mix"]) == ["agentic", "coding", "planning"]
    assert c["cot_share"] == pytest.approx(0.6) and c["cot_mean"] == pytest.approx(0.54)
    assert (c["n_templates"], c["n_preambles"]) == (2, 1)
    assert c["top_templates"] == [
        {"kind": "template", "fp": "111", "exchanges": 4, "accounts": 2},
        {"kind": "template", "fp": "222", "exchanges": 1, "accounts": 1},
        {"kind": "preamble", "fp": "7", "exchanges": 3, "accounts": 1},
    ]
    assert (c["n_blocks"], c["n_asns"], c["blocks_other_accounts"], c["asns_other_accounts"]) == (2, 2, 2, 2)
    assert c["blocks"] == [
        {"value": "10.0.1.0/24", "exchanges": 4, "accounts": 2, "other_accounts": 1},  # b1
        {"value": "10.0.2.0/24", "exchanges": 1, "accounts": 1, "other_accounts": 1},  # o1
    ]
    assert c["asns"] == [
        {"value": "100", "exchanges": 4, "accounts": 2, "other_accounts": 2},  # b1 and unflagged member a3
        {"value": "200", "exchanges": 1, "accounts": 1, "other_accounts": 0},
    ]
    assert c["n_payments"] == 1 and c["payments"] == [{"value": "pay1", "accounts": 2, "other_accounts": 1}]
    assert c["n_user_agents"] == 2 and c["user_agents"][0] == {"value": "bot/1", "exchanges": 4, "accounts": 2}
    assert c["email_domains"] == [{"value": "mail.x", "accounts": 2, "other_accounts": 1}]  # a3
    assert c["n_waves"] == 2 and [w["accounts"] for w in c["waves"]] == [1, 1]
    assert c["signups"] == [{"day": "2026-04-01", "accounts": 1}, {"day": "2026-04-02", "accounts": 1}]
    assert c["models"] == [{"value": "m-old", "exchanges": 3, "accounts": 1}, {"value": "m-new", "exchanges": 2, "accounts": 1}]
    assert c["newest_model"] == "m-new"
    assert c["newest_model_share"] == pytest.approx(0.4) and c["newest_model_share_after"] == pytest.approx(1.0)
    assert c["top_reasons"][0] == {"phrase": "SHARED_PAYMENT: N accounts share one card", "accounts": 2,
                                   "example": "SHARED_PAYMENT: 2 accounts share one card"}
    assert c["top_reasons"][1]["phrase"] == "COT: N of prompts coerce a trace"
    days = {d["day"]: d for d in c["daily"]}
    assert days["2026-04-22"] == {"day": "2026-04-22", "exchanges": 3, "new_accounts": 1, "flagged": 1, "created": 0}
    assert days["2026-04-23"] == {"day": "2026-04-23", "exchanges": 2, "new_accounts": 1, "flagged": 1, "created": 0}
    assert days["2026-04-02"]["created"] == 1
    assert c["members"] == ["a1", "a2"]


def test_unclustered_flagged_account_gets_its_own_report(built):
    _, cs = built
    s = cs["solo_s1"]
    assert (s["kind"], s["cluster_id"], s["n_accounts"], s["n_flagged"], s["n_exchanges"]) == ("single", None, 1, 1, 1)
    assert s["capability_mix"] == {} and s["cot_share"] is None  # no signals row for its exchange
    assert s["blocks"] == [{"value": "192.168.5.0/24", "exchanges": 1, "accounts": 1, "other_accounts": 0}]
    assert s["asns"][0]["other_accounts"] == 1  # o1 on AS300
    assert s["n_waves"] == 1 and s["members"] == ["s1"]
    assert s["newest_model_share"] == 0.0 and s["newest_model_share_after"] == 0.0


def test_every_flagged_account_is_in_exactly_one_campaign(built):
    _, cs = built
    members = [a for c in cs.values() for a in c["members"]]
    assert sorted(members) == ["a1", "a2", "s1"]


def test_options_and_degradation():
    e = make_engine()
    assert build_campaigns(e, include_single=False) == 1
    assert build_campaigns(e, min_flagged=3) == 3  # c1 falls under the bar: a1, a2, s1 each alone
    ids = {c["campaign_id"]: c for c in read_campaigns(e)}
    assert set(ids) == {"solo_a1", "solo_a2", "solo_s1"} and ids["solo_a1"]["cluster_id"] == "c1"
    bare = make_engine(signals=False, clusters=False)  # cluster ids from detections, no content columns
    assert build_campaigns(bare) == 2
    c = {c["campaign_id"]: c for c in read_campaigns(bare)}["c1"]
    assert (c["n_accounts"], c["n_exchanges"], c["capability_mix"], c["top_templates"]) == (3, 5, {}, [])
    assert c["cot_share"] is None and c["n_blocks"] == 2


def test_reports(built, tmp_path: Path):
    e, _ = built
    paths = write_reports(e, tmp_path)
    names = sorted(p.name for p in paths)
    assert names == sorted(["c1.md", "c1.html", "solo_s1.md", "solo_s1.html", "campaigns.json", "index.md", "index.html"])
    assert all(p.exists() for p in paths)
    html = (tmp_path / "c1.html").read_text()
    assert html.count("data:image/png;base64,") == 2
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html) and "<script" not in html
    md = (tmp_path / "c1.md").read_text()
    want = ("Campaign c1: 2 flagged accounts (of 3 linked), 5 exchanges from 2026-04-22 to 2026-04-23, "
            "aimed at agentic reasoning (40%), coding (40%), planning (20%), through 2 client /24 blocks in "
            "2 ASNs shared with 2 other accounts, 1 payment instrument, created in 2 sign-up waves.")
    assert want in md and want in html.replace("&#x27;", "'")
    # The one quoted sample: the top template's prompt, digits masked, cut to 120 characters.
    m = re.search(r"^> (.*)$", md, re.M)
    assert m and m.group(1).startswith("You are grading solutions. Task #:") and len(m.group(1)) == 120
    assert "12345" not in md
    doc = json.loads((tmp_path / "campaigns.json").read_text())
    assert doc["n_campaigns"] == 2 and [c["campaign_id"] for c in doc["campaigns"]] == ["c1", "solo_s1"]
    c1 = doc["campaigns"][0]
    assert c1["n_exchanges"] == 5 and c1["capability_mix"]["planning"] == 0.2 and c1["summary"].startswith(want)
    assert "question" not in (tmp_path / "campaigns.json").read_text()  # no prompt text in the JSON
    index = (tmp_path / "index.md").read_text()
    assert index.index("[c1](c1.md)") < index.index("[solo_s1](solo_s1.md)")
    assert 'href="c1.html"' in (tmp_path / "index.html").read_text()


def test_reports_without_samples(built, tmp_path: Path):
    e, _ = built
    write_reports(e, tmp_path, quote_samples=False)
    assert "Template sample" not in (tmp_path / "c1.md").read_text()


def test_summary_singular_forms(built):
    _, cs = built
    text = summary_sentence(cs["solo_s1"])
    assert text.startswith("Campaign solo_s1: 1 flagged account, 1 exchange from 2026-04-24 to 2026-04-24, through "
                           "1 client /24 block in 1 ASN shared with 0 other accounts, 1 payment instrument, "
                           "created in 1 sign-up wave.")


def test_registered_sql_transpiles_to_spark():
    import distillguard.report  # noqa: F401  (registers the stage's statements)

    fill = dict(clusters="clusters", signals="signals", min_flagged=2, include_single="TRUE", cot_threshold=0.5,
                top_k=10, wave_gap_s=21600, fp_col="template_fp")
    stmts = {k: v for k, v in registered_sql().items() if k.startswith("report.")}
    assert len(stmts) >= 12
    for name, sql in stmts.items():
        assert to_spark_sql(sql.format(**fill)), name


def test_plots_in_a_helper_process_are_byte_identical(built, tmp_path: Path):
    e, _ = built
    one, two = tmp_path / "one", tmp_path / "two"
    p1 = write_reports(e, one, workers=1)
    p2 = write_reports(e, two, workers=2)  # the second campaign's plots come from a helper interpreter
    assert [p.name for p in p1] == [p.name for p in p2]
    for a, b in zip(p1, p2, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name


def test_sample_lookup_casts_the_fingerprint_once():
    from distillguard.report import _sql

    assert "CAST(s.{fp_col} AS VARCHAR)" not in _sql.SAMPLE_TEXT
    assert "CAST(? AS BIGINT)" in _sql.SAMPLE_TEXT


def test_block_expr():
    from distillguard.report._sql import BLOCK_EXPR

    con = duckdb.connect()
    ips = ["10.0.1.5", "10.0.1.", "1.2.3", "a.b.c.d", "", None, "2001:DB8:a::1", "::1", "1.2.3.4.5"]
    con.register("t", pa.table({"i": list(range(len(ips))), "ip": pa.array(ips, pa.string())}))
    got = [r[0] for r in con.execute(f"SELECT {BLOCK_EXPR.format(col='ip')} FROM t ORDER BY i").fetchall()]
    assert got == ["10.0.1.0/24", "10.0.1.0/24", None, None, None, None, "2001:db8:a::/48", "::1::/48", "1.2.3.0/24"]

"""Stage 3 (linkage graph and clusters) on hand-built tiny tables in an in-memory DuckDB."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import duckdb
import pyarrow as pa
import pytest

from distillguard.contract import ACCOUNTS, CLUSTERS, EDGES, EXCHANGES, SIGNALS
from distillguard.engines import DuckDBEngine, registered_sql, to_spark_sql
from distillguard.graph import DEFAULTS, LinkageClusterer, _sql, build_clusters, build_edges
from distillguard.graph.edges import format_params

T0 = datetime(2026, 5, 1, tzinfo=UTC)


def _table(spec, rows):
    cols = {f.name: [r.get(f.name) for r in rows] for f in spec.fields}
    return pa.Table.from_pydict(cols, schema=spec.schema)


_N = iter(range(1, 10**9))


def acct(aid, **kw):
    """An account; by default created days apart from every other, so no sign-up wave by accident."""
    return {"account_id": aid, "created_at": kw.pop("created_at", T0 - timedelta(days=next(_N))), **kw}


def ex(aid, i, ts=None, **kw):
    return {"request_id": f"{aid}-{i}", "ts": ts or T0 + timedelta(hours=1, minutes=i), "account_id": aid,
            "model": "m", "prompt": "p", **kw}


def engine(accounts, exchanges=(), signals=None):
    e = DuckDBEngine(duckdb.connect())
    e.con.register("_a", _table(ACCOUNTS, list(accounts)))
    e.execute("CREATE TABLE accounts AS SELECT * FROM _a")
    e.con.register("_x", _table(EXCHANGES, list(exchanges)))
    e.execute("CREATE TABLE exchanges AS SELECT * FROM _x")
    if signals is not None:
        e.con.register("_s", _table(SIGNALS, list(signals)))
        e.execute("CREATE TABLE signals AS SELECT * FROM _s")
    return e


def edges(e, **kw):
    build_edges(e, **kw)
    return e.query("SELECT * FROM edges").to_pylist()


def linked(e, a, b, kind=None):
    a, b = min(a, b), max(a, b)
    rows = e.query("SELECT kind FROM edges WHERE src = ? AND dst = ?", [a, b]).column("kind").to_pylist()
    return bool(rows) if kind is None else kind in rows


def sig(aid, i, pre=None, bands=None, ts=None):
    return {"request_id": f"{aid}-{i}", "account_id": aid, "ts": ts or T0 + timedelta(hours=1, minutes=i),
            "capability": "coding", "cot_score": 0.0, "preamble_fp": pre, "template_bands": bands}


def test_shared_template_links():
    accs = [acct("a"), acct("b"), acct("c")]
    sigs = [sig("a", i, pre=77, bands=[1, 2]) for i in range(4)] + [sig("b", i, pre=77, bands=[1, 2]) for i in range(3)]
    sigs += [sig("c", i, pre=99, bands=[5, 6]) for i in range(3)]
    e = engine(accs, [], sigs)
    edges(e)
    assert linked(e, "a", "b", "template")
    assert not linked(e, "a", "c")


def test_no_signals_table_skips_templates():
    e = engine([acct("a", payment_fingerprint="k"), acct("b", payment_fingerprint="k")])
    assert {r["kind"] for r in edges(e)} == {"payment"}


def test_shared_card_links():
    e = engine([acct("a", payment_fingerprint="card9"), acct("b", payment_fingerprint="card9"),
                acct("c", payment_fingerprint="card1")])
    rows = edges(e)
    assert [(r["src"], r["dst"], r["kind"], r["evidence"]) for r in rows] == [("a", "b", "payment", "card9")]
    assert rows[0]["weight"] > 1.0


def test_schema_matches_contract():
    e = engine([acct("a", payment_fingerprint="k"), acct("b", payment_fingerprint="k")])
    build_edges(e)
    build_clusters(e)
    assert e.query("SELECT * FROM edges").schema.names == EDGES.names
    assert e.query("SELECT * FROM clusters").schema.names == CLUSTERS.names


def test_nat_hub_links_nobody():
    n = 300
    accs = [acct(f"u{i:03d}", signup_ip="131.7.9.4", created_at=T0 + timedelta(days=i)) for i in range(n)]
    exs = [ex(f"u{i:03d}", j, client_ip=f"131.7.9.{j % 3}", asn=2152, user_agent="atlas-python/1.9.0")
           for i in range(n) for j in range(3)]
    e = engine(accs, exs)
    assert edges(e) == []
    build_clusters(e)
    assert e.query("SELECT count(*) AS n FROM clusters WHERE cluster_id IS NULL").column("n")[0].as_py() == n


def test_public_email_links_nobody_private_does():
    accs = [acct("a", email_domain="gmail.com"), acct("b", email_domain="GMail.com"),
            acct("c", email_domain="qq.com"), acct("d", email_domain="qq.com"),
            acct("e", email_domain="tinylab.ai"), acct("f", email_domain="tinylab.ai")]
    e = engine(accs)
    rows = edges(e)
    assert [(r["src"], r["dst"], r["kind"]) for r in rows] == [("e", "f", "email")]
    assert "gmail.com" in _sql.PUBLIC_EMAIL_DOMAINS and "163.com" in _sql.PUBLIC_EMAIL_DOMAINS


def test_ip_blocks_v4_and_v6():
    e = DuckDBEngine(duckdb.connect())
    got = e.query(f"SELECT {_sql.block_sql('ip')} AS b FROM (VALUES ('1.2.3.4'), ('2001:db8:0a::1'), "
                  "('2001:0db8::5'), ('nonsense'), (NULL)) t(ip)").column("b").to_pylist()
    assert got == ["1.2.3.0/24", "2001:db8:a::/48", "2001:db8:0::/48", None, None]


def _campaign_and_org():
    """A 20-account hydra campaign (two shared cards, one template, a pool of proxy /24s also used by
    benign households) and a benign 10-account org sharing a corporate card and an office NAT."""
    accs, exs, sigs = [], [], []
    proxies = [f"{50 + k}.{k}.1.{k}" for k in range(8)]
    for i in range(20):
        a = f"camp{i:02d}"
        accs.append(acct(a, created_at=T0 + timedelta(days=i // 5, minutes=7 * i),
                         payment_fingerprint="cardA" if i % 2 else "cardB", email_domain="gmail.com",
                         signup_ip=proxies[i % 8]))
        for j in range(12):
            ts = T0 + timedelta(days=2, minutes=10 * j + (i % 3))
            exs.append(ex(a, j, ts=ts, client_ip=proxies[(i + j) % 8], asn=7922, user_agent="atlas-python/1.9.0"))
            sigs.append(sig(a, j, pre=4242, bands=[11, 12, 13], ts=ts))
    for i in range(10):
        a = f"org{i:02d}"
        accs.append(acct(a, created_at=T0 + timedelta(days=1, minutes=3 * i), payment_fingerprint="corp",
                         email_domain="acme-corp.com", signup_ip="198.51.100.7"))
        for j in range(6):
            ts = T0 + timedelta(days=3, hours=9 + j, minutes=i)
            exs.append(ex(a, j, ts=ts, client_ip="198.51.100.7", asn=3356, user_agent="atlas-python/1.9.0"))
            sigs.append(sig(a, j, pre=1000 + i, bands=[2000 + i], ts=ts))
    # benign households whose home IP is a proxy exit
    for k in range(8):
        a = f"home{k}"
        accs.append(acct(a, signup_ip=proxies[k], email_domain="outlook.com"))
        exs += [ex(a, j, client_ip=proxies[k] if j % 2 else f"81.{k}.0.9", asn=7922) for j in range(4)]
    return accs, exs, sigs


def test_campaign_and_benign_org_form_separate_clusters():
    e = engine(*_campaign_and_org())
    build_edges(e)
    kinds = set(e.query("SELECT DISTINCT kind FROM edges").column("kind").to_pylist())
    assert {"payment", "template", "client_ip", "wave"} <= kinds
    build_clusters(e)
    cl = {r["account_id"]: r for r in e.query("SELECT * FROM clusters").to_pylist()}
    camp = {cl[f"camp{i:02d}"]["cluster_id"] for i in range(20)}
    org = {cl[f"org{i:02d}"]["cluster_id"] for i in range(10)}
    assert len(camp) == 1 and None not in camp
    assert len(org) == 1 and None not in org
    assert camp != org
    assert cl["camp00"]["cluster_size"] == 20 and cl["org00"]["cluster_size"] == 10
    for k in range(8):  # households behind the proxy exits stay out
        assert cl[f"home{k}"]["cluster_id"] is None and cl[f"home{k}"]["cluster_size"] == 1


def test_cluster_ids_deterministic_and_label_free():
    e = engine(*_campaign_and_org())
    build_clusters(e, rebuild_edges=True)
    first = e.query("SELECT * FROM clusters ORDER BY account_id").to_pylist()
    build_clusters(e, rebuild_edges=True, seed=0)
    assert e.query("SELECT * FROM clusters ORDER BY account_id").to_pylist() == first
    ids = {r["cluster_id"] for r in first if r["cluster_id"]}
    assert all(i.startswith("c_") and "camp" not in i and "org" not in i for i in ids)


def test_synchrony_for_coactive_not_for_disjoint():
    # a, b, c share a signup /24 (the candidate condition); a and b act in the same 10-minute buckets,
    # c is active on other days
    accs = [acct(x, signup_ip=f"203.0.113.{k}", created_at=T0 - timedelta(days=30 * k))
            for k, x in enumerate("abc")]
    exs = []
    for j in range(10):
        exs.append(ex("a", j, ts=T0 + timedelta(hours=3 * j, minutes=1)))
        exs.append(ex("b", j, ts=T0 + timedelta(hours=3 * j, minutes=4)))
        exs.append(ex("c", j, ts=T0 + timedelta(days=5, hours=3 * j, minutes=1)))
    e = engine(accs, exs)
    edges(e)
    assert linked(e, "a", "b", "synchrony")
    assert not linked(e, "a", "c", "synchrony") and not linked(e, "b", "c", "synchrony")
    assert not linked(e, "a", "b", "wave")  # created 30 days apart


def test_hub_client_ip_dropped_but_pool_overlap_links():
    accs = [acct(f"p{i}") for i in range(3)] + [acct(f"n{i:03d}") for i in range(250)]
    exs = [ex(f"p{i}", j, client_ip=f"{60 + j % 4}.1.1.{j}") for i in range(3) for j in range(8)]
    exs += [ex(f"n{i:03d}", 0, client_ip="60.1.1.200") for i in range(250)]  # hub shared with the pool
    e = engine(accs, exs)
    edges(e)
    assert linked(e, "p0", "p1", "client_ip")
    assert e.query("SELECT count(*) AS n FROM edges WHERE src LIKE 'n%' OR dst LIKE 'n%'").column("n")[0].as_py() == 0


def test_as_of_excludes_later_data():
    accs = [acct("a", payment_fingerprint="k"), acct("b", payment_fingerprint="k", created_at=T0 + timedelta(days=5))]
    sigs = [sig("a", i, pre=5, ts=T0 + timedelta(hours=i)) for i in range(3)]
    sigs += [sig("c", i, pre=5, ts=T0 + timedelta(days=6, hours=i)) for i in range(3)]
    e = engine(accs + [acct("c")], [], sigs)
    assert edges(e, as_of=T0 + timedelta(days=1)) == []
    build_clusters(e, as_of=T0 + timedelta(days=1))
    assert sorted(e.query("SELECT account_id FROM clusters").column("account_id").to_pylist()) == ["a", "c"]
    kinds = {(r["src"], r["dst"], r["kind"]) for r in edges(e)}
    assert ("a", "b", "payment") in kinds and ("a", "c", "template") in kinds


def test_weak_kinds_alone_do_not_cluster():
    exs = [ex(x, j, asn=99, user_agent="rare-agent/1") for x in "ab" for j in range(3)]
    e = engine([acct("a"), acct("b")], exs)
    assert {r["kind"] for r in edges(e)} == {"asn", "user_agent"}
    build_clusters(e)
    assert e.query("SELECT count(cluster_id) AS n FROM clusters").column("n")[0].as_py() == 0


def test_clusterer_contract():
    c = LinkageClusterer(resolution=0.5, seed=3)
    assert (c.resolution, c.seed) == (0.5, 3)
    empty = pa.table({"src": pa.array([], pa.string()), "dst": pa.array([], pa.string()),
                      "kind": pa.array([], pa.string()), "weight": pa.array([], pa.float64())})
    assert c.fit(empty).labels_ == {}


def test_unknown_param_rejected():
    with pytest.raises(TypeError):
        format_params(None, max_grop=3)


def test_every_registered_sql_transpiles_to_spark():
    p = format_params(None)
    p["template_union"] = _sql.TEMPLATE_UNION
    stmts = {k: v for k, v in registered_sql().items() if k.startswith("graph.")}
    assert len(stmts) >= 14
    for name, sql in stmts.items():
        spark = to_spark_sql(sql.format(**p))
        assert spark, name
        assert "EPOCH_US" not in spark.upper() and "STRING_AGG" not in spark.upper(), name
    assert DEFAULTS["max_group"] == 200


@pytest.mark.parametrize("sparse_k", [0, 2, 5])
def test_sparse_expansion_links_each_member_to_its_next_k(sparse_k):
    # 8 accounts on one card, a group over max_group: member i (by account id) links to i+1..i+k only
    ids = [f"h{i}" for i in range(8)]
    e = engine([acct(a, payment_fingerprint="card") for a in ids])
    got = {(r["src"], r["dst"]) for r in edges(e, max_group=3, sparse_k=sparse_k) if r["kind"] == "payment"}
    want = {(ids[i], ids[j]) for i in range(8) for j in range(i + 1, min(8, i + sparse_k + 1))}
    assert got == want
    # at or under max_group every pair is expanded
    assert len([r for r in edges(e, max_group=8) if r["kind"] == "payment"]) == 8 * 7 // 2

"""Account behaviour features: hand-computed values, batch == online, Spark transpile, as-of cuts."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import duckdb
import pyarrow as pa
import pytest

from conftest import close
from distillguard.contract import ACCOUNTS, EXCHANGES, SIGNALS
from distillguard.engines import DuckDBEngine, registered_sql, to_spark_sql
from distillguard.features import FEATURES, build_features, feature_columns
from distillguard.features.online import Context, OnlineFeatures

T0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)  # a Monday, 00:00 UTC


def _ex(i: int, account: str, ts: datetime, **kw) -> dict:
    row = {n: None for n in EXCHANGES.names}
    row.update(request_id=f"r{i}", ts=ts, account_id=account, model="m1", prompt="p")
    row.update(kw)
    return row


def _sig(ex: dict, **kw) -> dict:
    row = {n: None for n in SIGNALS.names}
    row.update(request_id=ex["request_id"], account_id=ex["account_id"], ts=ex["ts"], capability="chat",
               cot_score=0.0)
    row.update(kw)
    return row


def _acct(account: str, created: datetime, **kw) -> dict:
    row = {n: None for n in ACCOUNTS.names}
    row.update(account_id=account, created_at=created, tier="free", verified=False)
    row.update(kw)
    return row


def _engine(accounts: list[dict], exchanges: list[dict], signals: list[dict] | None) -> DuckDBEngine:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    e = DuckDBEngine(con)
    tables = [(ACCOUNTS, accounts), (EXCHANGES, exchanges)] + ([(SIGNALS, signals)] if signals is not None else [])
    for table, rows in tables:
        e.register("_src", pa.Table.from_pylist(rows, schema=table.schema))
        e.execute(f"CREATE TABLE {table.name} AS SELECT * FROM _src")
        con.unregister("_src")
    return e


def _rows(e: DuckDBEngine) -> dict[str, dict]:
    return {r["account_id"]: r for r in e.query("SELECT * FROM account_features").to_pylist()}


@pytest.fixture
def tiny() -> tuple[list, list, list]:
    """metro: every 60 s, 20 requests, coding, CoT, at the ceiling; human: irregular chat;
    pivot: moves to model m2 that appears on day 3 (log starts day 0)."""
    accounts = [_acct("metro", T0 - timedelta(hours=2)), _acct("human", T0 - timedelta(days=30), tier="scale",
                                                                 verified=True), _acct("pivot", T0)]
    ex, sig = [], []
    for k in range(20):
        x = _ex(len(ex), "metro", T0 + timedelta(hours=10, seconds=60 * k), max_tokens=4096, input_tokens=100,
                output_tokens=4000, thinking=True, n_tools=2, client_ip=f"10.0.0.{k % 4}", user_agent="bot")
        ex.append(x)
        sig.append(_sig(x, capability="coding", cot_score=0.9, template_fp=7, preamble_fp=70))
    for k, h in enumerate([1, 1.5, 4, 9, 13, 14, 22]):
        x = _ex(len(ex), "human", T0 + timedelta(hours=h), max_tokens=1000, input_tokens=500, output_tokens=250,
                thinking=False, n_tools=0, conversation_id="c1", turn_index=k, client_ip="192.168.1.5",
                user_agent="browser")
        ex.append(x)
        sig.append(_sig(x, capability="chat" if k % 2 else "math_reasoning", template_fp=100 + k))
    for k in range(4):  # two on m1 on day 0, two on m2 on day 3, m2 first seen then
        ts = T0 + timedelta(hours=5 + k) if k < 2 else T0 + timedelta(days=3, hours=k)
        x = _ex(len(ex), "pivot", ts, model="m1" if k < 2 else "m2", max_tokens=2048, input_tokens=10,
                output_tokens=20)
        ex.append(x)
        sig.append(_sig(x, capability="agentic", template_fp=7))
    return accounts, ex, sig


def test_hand_computed_values(tiny):
    accounts, ex, sig = tiny
    e = _engine(accounts, ex, sig)
    assert build_features(e) == 3
    f = _rows(e)
    m, h, p = f["metro"], f["human"], f["pivot"]
    assert m["request_count_all"] == 20 and m["request_count_1d"] == 0  # as_of is day 3 + 3 h
    assert m["gap_s_cv_all"] == pytest.approx(0.0, abs=1e-12)  # a metronome
    assert m["gap_s_burstiness_all"] == pytest.approx(-1.0)
    assert m["max_tokens_at_ceiling_share_all"] == 1.0  # 4096 is m1's ceiling
    assert h["max_tokens_at_ceiling_share_all"] == 0.0  # 1000 < 0.95 * 4096
    assert p["max_tokens_at_ceiling_share_all"] == 0.5  # m1: 2048 < 3891; m2: 2048 is its ceiling
    assert m["cot_elicit_share_all"] == 1.0 and m["cot_score_mean_all"] == pytest.approx(0.9)
    assert m["capability_entropy_all"] == 0.0 and m["capability_top_share_all"] == 1.0
    assert h["capability_entropy_all"] == pytest.approx(-(3 / 7 * math.log2(3 / 7) + 4 / 7 * math.log2(4 / 7)))
    assert m["target_capability_share_all"] == 1.0 and h["target_capability_share_all"] == 0.0
    assert m["out_in_ratio_mean_all"] == 40.0 and m["thinking_share_all"] == 1.0 and m["n_tools_mean_all"] == 2
    assert m["single_turn_share_all"] == 1.0 and h["single_turn_share_all"] == 0.0  # one 7-turn conversation
    assert m["client_ip_distinct_all"] == 4 and m["ip_block_distinct_all"] == 1 and m["user_agent_distinct_all"] == 1
    assert m["template_fp_distinct_ratio_all"] == 1 / 20 and h["template_fp_distinct_ratio_all"] == 1.0
    # template 7 is used by metro and pivot only: not shared by >= 3 others
    assert m["shared_template_share_all"] == 0.0
    assert m["age_at_use_h_min_all"] == pytest.approx(12.0) and h["age_at_use_h_min_all"] == pytest.approx(721.0)
    assert m["active_hour_distinct_all"] == 1 and h["active_hour_distinct_all"] == 6
    assert h["hour_of_day_entropy_all"] == pytest.approx(-(2 / 7 * math.log2(2 / 7) + 5 / 7 * math.log2(1 / 7)))
    assert h["night_share_all"] == pytest.approx(3 / 7)  # 01:00, 01:30, 04:00
    assert m["weekday_entropy_all"] == 0.0
    assert p["new_model_share_all"] == 0.5 and p["model_pivot_48h_share_all"] == 0.5
    assert m["new_model_share_all"] == 0.0 and m["model_pivot_48h_share_all"] == 0.0
    assert p["request_count_1h"] == 1 and p["request_count_1d"] == 2  # day 3, 02:00 and 03:00
    assert h["tier"] == "scale" and h["verified"] is True
    assert f["metro"]["as_of"] == T0 + timedelta(days=3, hours=3)


def test_shared_template(tiny):
    accounts, ex, sig = tiny
    for a in ("s1", "s2"):  # template 7 now used by metro, pivot, s1, s2: 3 others each
        accounts.append(_acct(a, T0))
        x = _ex(len(ex), a, T0 + timedelta(hours=1))
        ex.append(x)
        sig.append(_sig(x, template_fp=7))
    e = _engine(accounts, ex, sig)
    build_features(e)
    f = _rows(e)
    assert f["metro"]["shared_template_share_all"] == 1.0 and f["human"]["shared_template_share_all"] == 0.0


def test_without_signals_content_features_are_null(tiny):
    accounts, ex, _ = tiny
    e = _engine(accounts, ex, None)
    build_features(e)
    m = _rows(e)["metro"]
    assert m["request_count_all"] == 20 and m["gap_s_cv_all"] == pytest.approx(0.0, abs=1e-12)
    for c in ("capability_entropy_all", "cot_score_mean_all", "shared_template_share_all",
              "template_fp_distinct_ratio_all", "target_capability_share_all"):
        assert m[c] is None, c


def test_as_of_excludes_later_data(tiny):
    accounts, ex, sig = tiny
    e = _engine(accounts, ex, sig)
    build_features(e, as_of=T0 + timedelta(hours=10, minutes=5))
    f = _rows(e)
    assert set(f) == {"metro", "human", "pivot"}
    assert f["metro"]["request_count_all"] == 6  # 10:00 .. 10:05 inclusive
    assert f["human"]["request_count_all"] == 4
    assert f["pivot"]["new_model_share_all"] == 0.0  # m2 is not seen yet
    assert f["pivot"]["max_tokens_at_ceiling_share_all"] == 0.0  # m1's ceiling is still 4096
    build_features(e, as_of=T0 + timedelta(hours=3))
    assert set(_rows(e)) == {"human"}


def test_every_generated_statement_transpiles_to_spark():
    stmts = {n: s for n, s in registered_sql().items() if n.startswith("features.")}
    assert len(stmts) >= 4
    for name, sql in stmts.items():
        out = to_spark_sql(sql.format(as_of="2026-03-02 00:00:00+00:00", as_of_hb=1, log_start_us=0))
        assert "SELECT" in out, name


def test_column_names_are_generated():
    cols = feature_columns()
    assert len(cols) == len(set(cols))
    assert {"request_count_1d", "cot_score_mean_7d", "capability_entropy_all"} <= set(cols)
    assert all(c == f"{f.name or f.input.name}_{f.op.name}_{w.name}" for f in FEATURES for w, c in
               zip(f.windows, f.columns, strict=True))


def _stream(n: int = 3000, seed: int = 7) -> tuple[list, list, list]:
    """A few thousand exchanges over 10 days: bots, humans, a shared template ring, a model launched on
    day 6, IPv4 and IPv6 clients, conversations, missing fields and missing signals rows."""
    rng = random.Random(seed)
    accts = [f"a{i}" for i in range(40)]
    accounts = [_acct(a, T0 - timedelta(hours=rng.randint(0, 900)), tier=rng.choice(["free", "build", None]),
                      verified=rng.choice([True, False, None])) for a in accts[:-2]]  # 2 unknown accounts
    ex, sig = [], []
    ts = T0
    for i in range(n):
        ts += timedelta(seconds=rng.expovariate(1 / 290), microseconds=rng.randint(0, 999_999))
        a = rng.choice(accts[:8]) if rng.random() < 0.5 else rng.choice(accts)
        model = rng.choice(["m1", "m2"]) if ts < T0 + timedelta(days=6) else rng.choice(["m1", "m2", "m3", "m3"])
        ip = rng.choice([f"10.1.{rng.randint(0, 3)}.{rng.randint(0, 255)}", f"2001:db8:{rng.randint(0, 2)}::1",
                         None])
        ti = rng.choice([None, 0, 0, 1, 2])
        x = _ex(i, a, ts, model=model, client_ip=ip, user_agent=rng.choice(["ua1", "ua2", None]),
                conversation_id=rng.choice([None, f"c{i % 50}"]), turn_index=ti, n_tools=rng.choice([None, 0, 3]),
                thinking=rng.choice([None, True, False]), max_tokens=rng.choice([None, 512, 4000, 8192, 8000]),
                input_tokens=rng.choice([None, 0, 10, 2000]), output_tokens=rng.choice([None, 5, 900]))
        ex.append(x)
        if rng.random() < 0.9:
            sig.append(_sig(x, capability=rng.choice(["coding", "agentic", "chat", "other", "grader"]),
                            cot_score=rng.random(), template_fp=rng.choice([None, 1, 2, 3, rng.getrandbits(40)]),
                            preamble_fp=rng.choice([None, 11, 12, rng.getrandbits(40)])))
    return accounts, ex, sig



def _online(accounts, ex, sig, context=None, until=None) -> OnlineFeatures:
    o = OnlineFeatures(context=context, accounts={a["account_id"]: a for a in accounts})
    by_req = {s["request_id"]: s for s in sig}
    for x in ex:
        if until is None or x["ts"] <= until:
            o.learn_one(x, by_req.get(x["request_id"]))
    return o


@pytest.mark.parametrize("cut", [None, timedelta(days=6, hours=13, minutes=7)])
def test_batch_equals_online(cut):
    accounts, ex, sig = _stream()
    e = _engine(accounts, ex, sig)
    as_of = None if cut is None else T0 + cut
    build_features(e, as_of=as_of)
    batch = _rows(e)
    ctx_cols = {c for f in FEATURES if f.input.name in ("max_tokens_at_ceiling", "shared_template",
                                                         "shared_preamble") for c in f.columns}
    frozen = _online(accounts, ex, sig, Context.from_engine(e), until=as_of)
    running = _online(accounts, ex, sig, None, until=as_of)
    assert set(batch) == set(frozen.account_ids()) == set(running.account_ids())
    assert any(r["shared_template_share_all"] for r in batch.values())
    assert any(r["model_pivot_48h_share_7d"] for r in batch.values())
    checked = 0
    for acct, row in batch.items():
        f, r = frozen.features_one(acct), running.features_one(acct)
        for col in [*feature_columns(), "tier", "verified"]:
            assert close(row[col], f[col]), (acct, col, row[col], f[col])
            if col not in ctx_cols:  # running context: everything but ceiling / shared-fp columns agrees
                assert close(row[col], r[col]), (acct, col, row[col], r[col])
            checked += 1
    assert checked > 2000


def test_online_read_is_pure():
    accounts, ex, sig = _stream(300)
    o = _online(accounts, ex, sig)
    first = o.features_one("a1")
    assert o.features_one("a1") == first
    assert o.features_one("nobody")["request_count_all"] == 0


def test_share_lower_bound_is_exact_at_zero_and_same_in_sql_and_python():
    """The Wilson bound of 0 of n is 0 exactly (float noise of either sign would rank benign accounts at
    random in the benign reference), and SQL and Python agree on every other value."""
    import duckdb

    from distillguard.features.spec import ShareLowerBound

    op = ShareLowerBound()
    cases = [(n, k) for n in (1, 3, 7, 50, 333) for k in (0, 1, n // 2, n)]
    sql = op.sql_finalize(["n", "s"])
    got = duckdb.sql(f"SELECT {sql} FROM (SELECT unnest({[n for n, _ in cases]}) AS n, "
                     f"unnest({[float(k) for _, k in cases]}) AS s)").fetchall()
    for (n, k), (v,) in zip(cases, got, strict=True):
        py = op.finalize([n, float(k)])
        assert math.isclose(v, py, rel_tol=1e-12, abs_tol=1e-15), (n, k, v, py)
        assert (py == 0.0) == (k == 0) and 0.0 <= py <= k / n
    assert math.isclose(op.finalize([5, 5.0]), 0.4803, abs_tol=1e-4)  # 5 of 5
    assert math.isclose(op.finalize([90, 80.0]), 0.7888, abs_tol=1e-4)  # 80 of 90

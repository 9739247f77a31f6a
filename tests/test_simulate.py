"""Simulator: determinism, coverage of personas/styles, truth consistency, contract schemas, ordering,
no label leaks, scale, corpus text, and the CLI command."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from distillguard.contract import ACCOUNTS, EXCHANGES
from distillguard.simulate import PERSONAS, SCENARIOS, STYLES, simulate
from distillguard.simulate.world import MODELS, NEW_MODEL

CORPORA = Path("/work/shared/corpora")
FILES = ("accounts.parquet", "exchanges.parquet", "truth.jsonl")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("smoke")
    simulate("smoke", out, seed=7, progress=False)
    return out


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """seed-2026 at scale 0.004: 100 campaign accounts inside ~1,000 benign ones."""
    out = tmp_path_factory.mktemp("seed2026")
    return out, simulate("seed-2026", out, scale=0.004, seed=1, progress=False)


def _truth(out: Path) -> dict[str, list[dict]]:
    by_kind: dict[str, list[dict]] = defaultdict(list)
    for line in (out / "truth.jsonl").read_text().splitlines():
        rec = json.loads(line)
        by_kind[rec["kind"]].append(rec)
    return by_kind


def _labels(out: Path) -> dict[str, dict]:
    return {r["account_id"]: r for r in _truth(out)["account"]}


def test_same_seed_gives_identical_bytes(smoke: Path, tmp_path: Path) -> None:
    simulate("smoke", tmp_path / "a", seed=7, progress=False)
    simulate("smoke", tmp_path / "b", seed=8, progress=False)
    for name in FILES:
        assert (smoke / name).read_bytes() == (tmp_path / "a" / name).read_bytes(), name
        assert (smoke / name).read_bytes() != (tmp_path / "b" / name).read_bytes(), name


def test_smoke_has_every_persona_and_campaign_style_with_traffic(smoke: Path) -> None:
    truth = _truth(smoke)
    assert {p["persona"] for p in truth["persona"]} == set(PERSONAS)
    assert {c["style"] for c in truth["campaign"]} == set(STYLES)
    assert all(p["n_exchanges"] > 0 for p in truth["persona"]), truth["persona"]
    assert all(c["n_exchanges"] > 0 for c in truth["campaign"]), truth["campaign"]
    hard = {p["persona"] for p in truth["persona"] if p["hard_negative"]}
    assert {"mobile_rotating", "serverless", "shared_card_org", "heavy_agent", "cot_student"} <= hard
    n = pq.read_metadata(smoke / "exchanges.parquet").num_rows
    assert 5_000 < n < 50_000


def test_truth_matches_accounts_and_exchanges(smoke: Path) -> None:
    truth = _truth(smoke)
    ids = [r["account_id"] for r in truth["account"]]
    acc = pq.read_table(smoke / "accounts.parquet")
    assert len(ids) == len(set(ids)) == acc.num_rows
    assert set(ids) == set(acc["account_id"].to_pylist())
    ex = pq.read_table(smoke / "exchanges.parquet", columns=["account_id", "ts", "request_id"])
    assert set(ex["account_id"].to_pylist()) <= set(ids)
    assert len(set(ex["request_id"].to_pylist())) == ex.num_rows
    labels = _labels(smoke)
    for r in truth["account"]:
        assert r["label"] == (f"campaign:{r['campaign_id']}" if r["campaign_id"] else f"benign:{r['persona']}")
    # per-population totals and campaign windows agree with the rows written
    counts: dict[str, int] = defaultdict(int)
    first: dict[str, int] = {}
    ts = ex["ts"].cast(pa.int64()).to_numpy()
    for a, t in zip(ex["account_id"].to_pylist(), ts, strict=True):
        lab = labels[a]["label"]
        counts[lab] += 1
        first.setdefault(lab, int(t))
    for p in truth["persona"]:
        assert counts[f"benign:{p['persona']}"] == p["n_exchanges"]
        assert sum(1 for r in truth["account"] if r["persona"] == p["persona"]) == p["n_accounts"]
    for c in truth["campaign"]:
        assert counts[f"campaign:{c['campaign_id']}"] == c["n_exchanges"]
        assert c["first_ts"].startswith(str(np.datetime64(first[f"campaign:{c['campaign_id']}"], "us"))[:19])


def test_schemas_are_the_contracts(smoke: Path) -> None:
    assert pq.read_schema(smoke / "accounts.parquet").remove_metadata() == ACCOUNTS.schema
    assert pq.read_schema(smoke / "exchanges.parquet").remove_metadata() == EXCHANGES.schema
    ex = pq.read_table(smoke / "exchanges.parquet")
    for name in ("api_key_id", "client_ip", "asn", "user_agent", "conversation_id", "turn_index", "max_tokens",
                 "input_tokens", "latency_ms", "status"):
        assert ex[name].null_count == 0, name
    assert set(pc.unique(ex["finish_reason"]).to_pylist()) >= {"end_turn", "max_tokens", "tool_use", None}
    assert pc.max(ex["turn_index"]).as_py() > 3  # multi-turn conversations exist


def test_exchanges_sorted_by_ts(smoke: Path) -> None:
    ts = pq.read_table(smoke / "exchanges.parquet", columns=["ts"])["ts"].cast(pa.int64()).to_numpy()
    assert ts.size and np.all(np.diff(ts) >= 0)


def _attack_only(values: dict[str, set[str]], attack: set[str], min_accounts: int) -> list[str]:
    """Values used by >= min_accounts attack accounts and by no benign account."""
    bad = []
    for v, accs in values.items():
        n_attack = len(accs & attack)
        if n_attack >= min_accounts and n_attack == len(accs):
            bad.append(v)
    return bad


@pytest.mark.parametrize("which", ["smoke", "small"])
def test_no_label_leaks(which: str, request: pytest.FixtureRequest) -> None:
    smoke = request.getfixturevalue("smoke") if which == "smoke" else request.getfixturevalue("small")[0]
    labels = _labels(smoke)
    attack = {a for a, r in labels.items() if r["campaign_id"]}
    assert attack and len(attack) < len(labels)
    acc = pq.read_table(smoke / "accounts.parquet")
    # row order of accounts carries no label
    assert acc["account_id"].to_pylist() == sorted(acc["account_id"].to_pylist())
    rows = acc.to_pylist()
    for col in ("tier", "email_domain", "country", "verified"):
        vals: dict[str, set[str]] = defaultdict(set)
        for r in rows:
            vals[str(r[col])].add(r["account_id"])
        assert not _attack_only(vals, attack, 5), col
    ex = pq.read_table(smoke / "exchanges.parquet",
                       columns=["account_id", "user_agent", "asn", "model", "max_tokens", "request_id",
                                "api_key_id", "conversation_id"])
    pairs = ex.group_by(["account_id", "user_agent", "asn", "model", "max_tokens"]).aggregate([]).to_pylist()
    for col in ("user_agent", "asn", "model", "max_tokens"):
        vals = defaultdict(set)
        for r in pairs:
            vals[str(r[col])].add(r["account_id"])
        # a proxy network spans every household ASN; tiny runs have too few benign households to cover them
        if which == "small" or col != "asn":
            assert not _attack_only(vals, attack, 5), col

    # identical id formats for both populations
    def shapes(values: list[str | None]) -> set[str]:
        return {re.sub(r"[0-9a-f]", "h", v) for v in values if v is not None}

    is_attack = np.array([a in attack for a in ex["account_id"].to_pylist()])
    for col in ("request_id", "api_key_id", "conversation_id", "account_id"):
        v = np.array(ex[col].to_pylist(), dtype=object)
        assert shapes(list(v[is_attack])) == shapes(list(v[~is_attack])), col
        assert len(shapes(list(v))) == 1, col
    arows = np.array([r["account_id"] in attack for r in rows])
    pay = np.array(acc["payment_fingerprint"].to_pylist(), dtype=object)
    assert shapes(list(pay[arows])) == shapes(list(pay[~arows]))
    # no population name appears in any identifying column
    names = [*PERSONAS, *(c["campaign_id"] for c in _truth(smoke)["campaign"]), "attack", "campaign", "benign"]
    names = [n for n in names if n != "seed-2026"]  # that campaign id is also the scenario's name, not data
    text = " ".join(str(v) for r in rows for v in r.values()) + " ".join(map(str, pc.unique(ex["user_agent"])))
    assert not [n for n in names if n in text]


def test_proxy_ips_are_shared_with_benign_customers(smoke: Path) -> None:
    labels = _labels(smoke)
    assert any(r["role"] == "proxy-household" for r in labels.values())
    ex = pq.read_table(smoke / "exchanges.parquet", columns=["account_id", "client_ip"])
    kinds: dict[str, set[bool]] = defaultdict(set)
    for a, ip in zip(ex["account_id"].to_pylist(), ex["client_ip"].to_pylist(), strict=True):
        kinds[ip].add(labels[a]["campaign_id"] is not None)
    assert sum(1 for k in kinds.values() if k == {True, False}) >= 1


def test_hydra_waves_and_pivot_to_new_model(smoke: Path) -> None:
    labels = _labels(smoke)
    hydra = {a for a, r in labels.items() if r["campaign_id"] == "hydra"}
    assert any(labels[a]["role"].startswith("replacement") for a in hydra)
    ex = pq.read_table(smoke / "exchanges.parquet", columns=["account_id", "ts", "model"]).to_pylist()
    release = np.datetime64("2026-05-13T12:00:00")  # smoke: release_day 1.5
    new = MODELS[NEW_MODEL]
    after = [r["model"] == new for r in ex if r["account_id"] in hydra
             and np.datetime64(r["ts"].replace(tzinfo=None)) > release + np.timedelta64(24, "h")]
    before = [r["model"] == new for r in ex if np.datetime64(r["ts"].replace(tzinfo=None)) < release]
    benign_after = [r["model"] == new for r in ex if labels[r["account_id"]]["persona"] == "casual_chat"
                    and np.datetime64(r["ts"].replace(tzinfo=None)) > release + np.timedelta64(24, "h")]
    assert not any(before)
    assert np.mean(after) > 0.7 > np.mean(benign_after)


def test_scale_multiplies_accounts_and_volume(small: tuple[Path, object]) -> None:
    s = small[1]
    camp = s.campaigns["seed-2026"]
    assert camp["accounts"] == 100
    assert 0.8 * 115_200 < camp["exchanges"] < 1.2 * 115_200
    benign = sum(p["accounts"] for p in s.personas.values())
    assert benign >= 10 * camp["accounts"]
    assert s.first_ts.startswith("2026-04-22") and s.last_ts.startswith("2026-06-05")
    assert set(s.to_dict()) >= {"scenario", "seed", "scale", "n_accounts", "n_exchanges", "personas", "campaigns",
                                "files"}


@pytest.mark.skipif(not CORPORA.is_dir(), reason="development corpora not present")
def test_corpus_text_is_used(tmp_path: Path) -> None:
    simulate("smoke", tmp_path, seed=3, corpus=CORPORA, progress=False)
    firsts: dict[str, set[str]] = defaultdict(set)
    for f in CORPORA.glob("*.jsonl"):
        for line in f.read_text(encoding="utf-8").split("\n"):
            if not line.strip():
                continue
            rec = json.loads(line)
            firsts[rec["kind"]].add(rec["turns"][0][:8000])
    prompts = pq.read_table(tmp_path / "exchanges.parquet", columns=["prompt"])["prompt"].to_pylist()
    joined = set(prompts)
    assert joined & firsts["benign_human"]
    assert joined & (firsts["code_task"] | firsts["math_task"])
    # campaigns wrap corpus task bodies in their templates
    assert any(p.split("\n\n")[0] in firsts["math_task"] | firsts["code_task"] for p in prompts if "\n\n" in p)


def test_scenarios_listed_and_unknown_rejected(tmp_path: Path) -> None:
    assert set(SCENARIOS) == {"seed-2026", "three-labs", "adaptive", "smoke"}
    with pytest.raises(ValueError, match="unknown scenario"):
        simulate("nope", tmp_path, progress=False)


def test_command_runs_and_prints_summary(tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from distillguard.simulate.command import simulate_command

    app = typer.Typer()
    app.command("simulate")(simulate_command)
    app.command("noop")(lambda: None)
    res = CliRunner().invoke(app, ["simulate", "--scenario", "smoke", "--out", str(tmp_path), "--seed", "1",
                                   "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["scenario"] == "smoke" and summary["n_exchanges"] > 0
    assert all((tmp_path / f).exists() for f in FILES)
    bad = CliRunner().invoke(app, ["simulate", "--scenario", "nope", "--out", str(tmp_path)])
    assert bad.exit_code != 0

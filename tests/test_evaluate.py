"""The evaluation harness on a tiny hand-made world whose every number is worked out by hand below.

World (19 truth accounts):
  campaign c1: a1..a10, first exchange 2026-04-22T00:00Z. a1..a9 flagged (score 0.9) at +1h..+9h,
               a10 not flagged (0.4).           -> recall 9/10, first flag 3600 s, 90% (9th) at 32400 s
  campaign c2: b1, b2. b1 flagged (0.8) with no first_flagged_at; b2 absent from detections.
                                                -> recall 1/2, first flag unknown, 90% (2 of 2) never
  casual (benign): u1 flagged (0.9), u2 0.1, u3 0.4, u4 absent          -> FPR 1/4
  nat (hard negative, persona line): n1 flagged (0.8), n2 0.2           -> FPR 1/2
  evalrunner (hard negative, only on its account line): e1 0.0          -> FPR 0/1
  plus a detection for "zz", an account the truth does not know (ignored).
Confusion: TP 10 (a1..a9, b1), FP 2 (u1, n1), FN 2 (a10, b2), TN 5 -> P = R = F1 = 10/12.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from distillguard.contract import TIMESTAMP
from distillguard.evaluate import EvaluationInputError, evaluate, render_report
from distillguard.evaluate.command import evaluate_command
from distillguard.evaluate.metrics import k_of_90, pr_curve, timing

T0 = datetime(2026, 4, 22, tzinfo=UTC)


def iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def truth_rows() -> list[dict]:
    rows: list[dict] = [
        {
            "kind": "campaign",
            "campaign_id": "c1",
            "style": "hydra",
            "params": {"waves": 2},
            "first_ts": iso(T0),
            "last_ts": iso(T0 + timedelta(days=1)),
            "n_accounts": 10,
            "n_exchanges": 9,
        },
        {
            "kind": "campaign",
            "campaign_id": "c2",
            "style": "proxy",
            "params": {},
            "first_ts": "2026-04-22T12:00:00+00:00",
            "last_ts": "2026-04-22T13:00:00Z",
            "n_accounts": 2,
        },
        {"kind": "persona", "persona": "casual", "hard_negative": False, "n_accounts": 4},
        {"kind": "persona", "persona": "nat", "hard_negative": True, "n_accounts": 2},
        {"kind": "something_new", "whatever": 1},
    ]
    for i in range(1, 11):
        rows.append(
            {
                "kind": "account",
                "account_id": f"a{i}",
                "label": "campaign:c1",
                "persona": None,
                "campaign_id": "c1",
                "hard_negative": False,
                "role": "worker",
                "extra": [1],
            }
        )
    for b in ("b1", "b2"):
        rows.append({"kind": "account", "account_id": b, "label": "campaign:c2", "hard_negative": False})
    for u in ("u1", "u2", "u3", "u4"):
        rows.append({"kind": "account", "account_id": u, "label": "benign:casual", "persona": "casual"})
    for n in ("n1", "n2"):
        rows.append({"kind": "account", "account_id": n, "label": "benign:nat", "hard_negative": True})
    rows.append({"kind": "account", "account_id": "e1", "label": "benign:evalrunner", "hard_negative": True})
    return rows


def detection_rows() -> list[dict]:
    rows = [
        {
            "account_id": f"a{i}",
            "score": 0.9,
            "flagged": True,
            "cluster_id": "k1",
            "first_flagged_at": iso(T0 + timedelta(hours=i)),
            "reasons": ["SHARED_PAYMENT"],
        }
        for i in range(1, 10)
    ]
    rows += [
        {
            "account_id": "a10",
            "score": 0.4,
            "flagged": False,
            "cluster_id": None,
            "first_flagged_at": None,
            "reasons": [],
        },
        {"account_id": "b1", "score": 0.8, "flagged": True, "cluster_id": 7, "first_flagged_at": None},
        {"account_id": "u1", "score": 0.9, "flagged": True, "first_flagged_at": iso(T0), "reasons": ["x"]},
        {"account_id": "u2", "score": 0.1, "flagged": False},
        {"account_id": "u3", "score": 0.4, "flagged": False},
        {"account_id": "n1", "score": 0.8, "flagged": True},
        {"account_id": "n2", "score": 0.2, "flagged": False},
        {"account_id": "e1", "score": 0, "flagged": False},
        {"account_id": "zz", "score": 1.0, "flagged": True, "new_field": "ignored"},
    ]
    return rows


# Exchanges and decisions: (request_id, account_id, hours after T0, action or None = no decision).
EXCHANGES = [
    ("r1", "a1", 0, "allow"),
    ("r2", "a1", 1, "allow"),
    ("r3", "a2", 2, "allow"),
    ("r4", "a3", 3, "degrade"),
    ("r5", "a4", 4, "throttle"),
    ("r6", "a5", 5, "challenge"),
    ("r7", "a6", 6, "block"),
    ("r8", "a7", 23, "block"),
    ("r9", "a8", 7, None),
    ("r10", "b1", 12, "allow"),
    ("r11", "b2", 12.5, "block"),
    ("q1", "u1", 1, "allow"),
    ("q2", "u2", 2, "allow"),
    ("q3", "u3", 3, "allow"),
    ("q4", "u4", 4, "throttle"),
    ("q5", "n1", 1, "block"),
    ("q6", "n2", 2, "allow"),
    ("g1", "ghost", 1, "allow"),  # account not in the truth
]


def exchange_rows() -> list[dict]:
    return [
        {"request_id": r, "ts": iso(T0 + timedelta(hours=h)), "account_id": a, "model": "m", "prompt": "p"}
        for r, a, h, _ in EXCHANGES
    ]


def decision_rows() -> list[dict]:
    # Valid but varied: integer scores 0 and 1, null or missing reasons, unknown extra keys.
    scores: list[object] = [0, 1, 0.25, 1e-9]
    rows = [
        {"request_id": r, "action": act, "score": scores[i % 4], "reasons": None if i % 3 else ["R"], "x": {}}
        for i, (r, _, _, act) in enumerate(EXCHANGES)
        if act
    ]
    rows.append({"request_id": "orphan1", "action": "allow", "score": 0.0})
    return rows


@pytest.fixture
def world(tmp_path: Path) -> dict[str, Path]:
    return {
        "truth": write_jsonl(tmp_path / "truth.jsonl", truth_rows()),
        "detections": write_jsonl(tmp_path / "detections.jsonl", detection_rows()),
        "decisions": write_jsonl(tmp_path / "decisions.jsonl", decision_rows()),
        "exchanges": write_jsonl(tmp_path / "exchanges.jsonl", exchange_rows()),
    }


# ----------------------------------------------------------------------------- detections


def test_threshold_metrics(world: dict[str, Path]) -> None:
    r = evaluate(world["truth"], world["detections"])
    th = r.threshold
    assert (th.tp, th.fp, th.fn, th.tn) == (10, 2, 2, 5)
    assert th.precision == pytest.approx(10 / 12)
    assert th.recall == pytest.approx(10 / 12)
    assert th.f1 == pytest.approx(10 / 12)
    assert (r.n_accounts, r.n_campaign_accounts, r.n_benign_accounts) == (19, 12, 7)
    assert (r.n_detections, r.n_absent, r.n_unknown_detections) == (18, 2, 1)  # 17 truth accounts scored + zz
    assert any("2 truth accounts have no detection row" in n for n in r.notes)


def test_pr_curve_and_average_precision(world: dict[str, Path]) -> None:
    pr = evaluate(world["truth"], world["detections"]).pr
    # thresholds 0.9 (a1..a9,u1), 0.8 (+b1,n1), 0.4 (+a10,u3), 0.2 (+n2), 0.1 (+u2), 0.0 (+b2,u4,e1)
    assert pr.thresholds == [0.9, 0.8, 0.4, 0.2, 0.1, 0.0]
    assert pr.precision == pytest.approx([9 / 10, 10 / 12, 11 / 14, 11 / 15, 11 / 16, 12 / 19])
    assert pr.recall == pytest.approx([9 / 12, 10 / 12, 11 / 12, 11 / 12, 11 / 12, 1.0])
    assert pr.n_thresholds == 6
    ap = 9 / 12 * 9 / 10 + 1 / 12 * 10 / 12 + 1 / 12 * 11 / 14 + 1 / 12 * 12 / 19
    assert pr.average_precision == pytest.approx(ap)


def test_pr_curve_perfect_and_thinned() -> None:
    import numpy as np

    perfect = pr_curve(np.array([1, 1, 0, 0]), np.array([0.9, 0.8, 0.2, 0.1]))
    assert perfect.average_precision == pytest.approx(1.0)
    assert (perfect.precision[0], perfect.recall[0]) == (1.0, 0.5)
    assert (perfect.precision[-1], perfect.recall[-1]) == (0.5, 1.0)
    n = 5000
    big = pr_curve(np.arange(n) % 2 == 0, np.linspace(1, 0, n), max_points=100)
    assert big.n_thresholds == n and len(big.thresholds) <= 101
    assert big.thresholds[0] == 1.0 and big.thresholds[-1] == 0.0 and big.recall[-1] == 1.0


def test_campaign_recall_and_timing(world: dict[str, Path]) -> None:
    r = evaluate(world["truth"], world["detections"])
    c1, c2 = r.campaigns
    assert (c1.campaign_id, c1.style, c1.n_accounts, c1.n_flagged) == ("c1", "hydra", 10, 9)
    assert c1.recall == pytest.approx(0.9)
    assert c1.first_flagged_at == T0 + timedelta(hours=1)
    assert (c1.timing.first_flag_s, c1.timing.first_flag_status) == (3600.0, "exact")
    assert (c1.timing.ninety_s, c1.timing.ninety_status) == (9 * 3600.0, "exact")
    assert (c2.n_accounts, c2.n_flagged, c2.recall) == (2, 1, 0.5)
    assert (c2.timing.first_flag_s, c2.timing.first_flag_status) == (None, "unknown")
    assert (c2.timing.ninety_s, c2.timing.ninety_status) == (None, "not_reached")
    assert c2.n_flagged_time_unknown == 1
    assert any("campaign c2: 1 flagged accounts have no first_flagged_at" in n for n in r.notes)


def test_timing_edge_cases() -> None:
    assert k_of_90(70) == 63 and k_of_90(10) == 9 and k_of_90(1) == 1 and k_of_90(11) == 10
    # 10 accounts, 8 timed + 1 untimed: first flag is at most 5 s; 9th could be the untimed one
    t = timing(10, [5, 6, 7, 8, 9, 10, 11, 12], 1)
    assert (t.first_flag_s, t.first_flag_status) == (5, "upper_bound")
    assert (t.ninety_s, t.ninety_status) == (None, "unknown")
    t = timing(10, [50, 10, 20, 30, 40, 60, 70, 80, 90, 100], 0)  # unsorted input
    assert (t.first_flag_s, t.ninety_s, t.ninety_status) == (10, 90, "exact")
    t = timing(3, [], 0)
    assert (t.first_flag_status, t.ninety_status) == ("not_reached", "not_reached")


def test_persona_false_positive_rates(world: dict[str, Path]) -> None:
    r = evaluate(world["truth"], world["detections"])
    by = {p.persona: p for p in r.personas}
    assert [p.persona for p in r.personas] == ["casual", "evalrunner", "nat"]  # hard negatives last
    assert (by["casual"].hard_negative, by["casual"].n_flagged, by["casual"].fpr) == (False, 1, 0.25)
    assert (by["nat"].hard_negative, by["nat"].fpr) == (True, 0.5)
    assert (by["evalrunner"].hard_negative, by["evalrunner"].fpr) == (True, 0.0)
    assert (r.benign.n_accounts, r.benign.n_flagged) == (7, 2)
    assert r.benign.fpr == pytest.approx(2 / 7)
    assert r.benign_hard_negative.fpr == pytest.approx(1 / 3)
    assert r.benign_other.fpr == pytest.approx(1 / 4)


def test_parquet_detections_match_jsonl(world: dict[str, Path], tmp_path: Path) -> None:
    rows = detection_rows()
    table = pa.table(
        {
            "account_id": [d["account_id"] for d in rows],
            "score": pa.array([float(d["score"]) for d in rows], pa.float64()),
            "flagged": [d["flagged"] for d in rows],
            "first_flagged_at": pa.array(
                [
                    datetime.fromisoformat(d["first_flagged_at"]) if d.get("first_flagged_at") else None
                    for d in rows
                ],
                TIMESTAMP,
            ),
        }
    )
    pq.write_table(table, tmp_path / "det.parquet")
    a = evaluate(world["truth"], tmp_path / "det.parquet").to_dict()
    b = evaluate(world["truth"], world["detections"]).to_dict()
    for key in ("threshold", "pr", "campaigns", "personas", "benign"):
        assert a[key] == b[key]


# ----------------------------------------------------------------------------- decisions


def test_leakage_and_benign_friction(world: dict[str, Path]) -> None:
    r = evaluate(
        world["truth"], world["detections"], decisions=world["decisions"], exchanges=world["exchanges"]
    )
    c1, c2 = r.campaigns
    assert c1.actions is not None and c2.actions is not None
    # c1: allow x3, degrade, throttle, challenge, block x2 decided; r9 has no decision
    assert (c1.actions.n_exchanges, c1.actions.n_decided, c1.actions.n_undecided) == (9, 8, 1)
    assert c1.actions.counts == {"allow": 3, "throttle": 1, "challenge": 1, "degrade": 1, "block": 2}
    assert c1.leakage == pytest.approx(3 / 8)
    assert c1.actions.served_incl_degrade == pytest.approx(4 / 8)
    assert c2.leakage == pytest.approx(0.5)
    by = {p.persona: p.actions for p in r.personas}
    assert by["casual"] is not None and by["nat"] is not None and by["evalrunner"] is not None
    assert (by["casual"].not_allowed, by["casual"].blocked) == (0.25, 0.0)
    assert (by["nat"].not_allowed, by["nat"].blocked) == (0.5, 0.5)
    assert (by["evalrunner"].n_exchanges, by["evalrunner"].not_allowed) == (0, None)
    assert r.campaign_actions is not None and r.benign_actions is not None
    assert r.campaign_actions.served_full == pytest.approx(4 / 10)
    assert r.benign_actions.not_allowed == pytest.approx(2 / 6)
    assert r.benign_actions.blocked == pytest.approx(1 / 6)
    assert r.decisions == {
        "n_decisions": 18,
        "n_undecided_exchanges": 1,
        "n_orphan_decisions": 1,
        "n_unknown_account_exchanges": 1,
        "timeline_bin_seconds": {"c1": 432.0, "c2": 18.0},
    }
    # c1 spans 1 day -> 200 bins of 432 s; r1 at +0h ends bin 0 at 432 s; r8 at +23h in bin 191
    ends = [end for end, _ in c1.action_timeline]
    assert ends[0] == 432.0 and ends == sorted(ends)
    assert c1.action_timeline[-1] == (192 * 432.0, {"block": 1})
    assert sum(c.get("allow", 0) for _, c in c1.action_timeline) == 3


def test_exchanges_default_beside_truth_and_parquet(world: dict[str, Path], tmp_path: Path) -> None:
    base = evaluate(
        world["truth"], world["detections"], decisions=world["decisions"]
    )  # finds exchanges.jsonl
    assert base.inputs["exchanges"] == str(world["exchanges"])
    rows = exchange_rows()
    table = pa.table(
        {
            "request_id": [x["request_id"] for x in rows],
            "account_id": [x["account_id"] for x in rows],
            "ts": pa.array([datetime.fromisoformat(x["ts"]) for x in rows], TIMESTAMP),
        }
    )
    (tmp_path / "xdir").mkdir()
    pq.write_table(table.slice(0, 5), tmp_path / "xdir" / "part-0.parquet")
    pq.write_table(table.slice(5), tmp_path / "xdir" / "part-1.parquet")
    other = evaluate(
        world["truth"], world["detections"], decisions=world["decisions"], exchanges=tmp_path / "xdir"
    )
    assert other.to_dict()["campaigns"] == base.to_dict()["campaigns"]
    assert other.to_dict()["personas"] == base.to_dict()["personas"]


def test_parquet_decisions(world: dict[str, Path], tmp_path: Path) -> None:
    rows = decision_rows()
    pq.write_table(
        pa.table(
            {
                "request_id": [d["request_id"] for d in rows],
                "action": [d["action"] for d in rows],
                "score": [float(d["score"]) for d in rows],
            }
        ),
        tmp_path / "dec.parquet",
    )
    r = evaluate(
        world["truth"], world["detections"], decisions=tmp_path / "dec.parquet", exchanges=world["exchanges"]
    )
    assert r.campaigns[0].leakage == pytest.approx(3 / 8)
    bad = [*rows[:3], {"request_id": "x", "action": "ban", "score": 0.1}]
    pq.write_table(
        pa.table(
            {
                "request_id": [d["request_id"] for d in bad],
                "action": [d["action"] for d in bad],
                "score": [float(d["score"]) for d in bad],
            }
        ),
        tmp_path / "bad.parquet",
    )
    with pytest.raises(EvaluationInputError, match=r"bad\.parquet, line 4: field 'action': 'ban'"):
        evaluate(
            world["truth"],
            world["detections"],
            decisions=tmp_path / "bad.parquet",
            exchanges=world["exchanges"],
        )


def test_exchanges_missing_column(world: dict[str, Path], tmp_path: Path) -> None:
    pq.write_table(pa.table({"request_id": ["r1"], "account_id": ["a1"]}), tmp_path / "nots.parquet")
    with pytest.raises(EvaluationInputError, match=r"nots\.parquet: could not join .*ts"):
        evaluate(
            world["truth"],
            world["detections"],
            decisions=world["decisions"],
            exchanges=tmp_path / "nots.parquet",
        )


def test_decisions_without_exchanges(tmp_path: Path) -> None:
    truth = write_jsonl(tmp_path / "truth.jsonl", truth_rows())
    det = write_jsonl(tmp_path / "detections.jsonl", detection_rows())
    dec = write_jsonl(tmp_path / "decisions.jsonl", decision_rows())
    with pytest.raises(EvaluationInputError, match="--exchanges"):
        evaluate(truth, det, decisions=dec)


# ----------------------------------------------------------------------------- outputs


def test_outputs_written(world: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = evaluate(
        world["truth"],
        world["detections"],
        decisions=world["decisions"],
        exchanges=world["exchanges"],
        out=out,
    )
    doc = json.loads((out / "evaluation.json").read_text())
    assert doc["threshold"]["precision"] == pytest.approx(10 / 12)
    assert doc["campaigns"][0]["leakage"] == pytest.approx(3 / 8)
    assert doc["campaigns"][0]["first_flagged_at"] == "2026-04-22T01:00:00Z"
    assert doc["campaigns"][0]["timing"]["ninety_s"] == 32400.0
    assert "flag_offsets_s" not in doc["campaigns"][0] and doc["schema_version"] == 1
    names = sorted(Path(p).name for p in r.plots)
    assert names == ["pr_curve.png", "timeline_c1.png", "timeline_c2.png"]
    for p in r.plots:
        data = Path(p).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert doc["plots"] == r.plots


def test_render_report(world: dict[str, Path]) -> None:
    r = evaluate(
        world["truth"], world["detections"], decisions=world["decisions"], exchanges=world["exchanges"]
    )
    console = Console(record=True, width=200)
    render_report(r, console)
    text = console.export_text()
    for needle in (
        "0.833",
        "28.6%",
        "1.0 h",
        "9.0 h",
        "reached, time unknown",
        "never",
        "37.5%",
        "33.3%",
        "nat",
        "yes",
    ):
        assert needle in text, needle


def _cli() -> typer.Typer:
    app = typer.Typer()
    app.callback()(lambda: None)
    app.command("evaluate")(evaluate_command)
    return app


def test_command_ok_and_error(world: dict[str, Path], tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "cli-out"
    res = runner.invoke(
        _cli(),
        [
            "evaluate",
            "--truth",
            str(world["truth"]),
            "--detections",
            str(world["detections"]),
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "precision" in res.output and (out / "evaluation.json").exists()
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"account_id": "a1", "score": 2, "flagged": True}])
    res = runner.invoke(
        _cli(), ["evaluate", "--truth", str(world["truth"]), "--detections", str(bad), "--out", str(out)]
    )
    assert res.exit_code == 2
    assert "bad.jsonl, line 1: field 'score'" in res.output


# ----------------------------------------------------------------------------- malformed input

GOOD = {"account_id": "a1", "score": 0.5, "flagged": True}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", r"line 2: bad JSON"),
        ('["a1", 0.5, true]', r"line 2: expected a JSON object"),
        ({"score": 0.5, "flagged": True}, r"line 2: field 'account_id': missing"),
        ({"account_id": "a2", "flagged": True}, r"line 2: field 'score': missing"),
        ({"account_id": "a2", "score": 0.5}, r"line 2: field 'flagged': missing"),
        (
            {"account_id": 7, "score": 0.5, "flagged": True},
            r"line 2: field 'account_id': expected a non-empty",
        ),
        ({"account_id": "", "score": 0.5, "flagged": True}, r"line 2: field 'account_id'"),
        (
            {"account_id": "a2", "score": 1.5, "flagged": True},
            r"line 2: field 'score': 1.5 is outside \[0, 1\]",
        ),
        ({"account_id": "a2", "score": -0.1, "flagged": True}, r"line 2: field 'score': -0.1 is outside"),
        ('{"account_id": "a2", "score": NaN, "flagged": true}', r"line 2: field 'score': is NaN"),
        (
            {"account_id": "a2", "score": "0.5", "flagged": True},
            r"line 2: field 'score': expected a number.*string",
        ),
        (
            {"account_id": "a2", "score": True, "flagged": True},
            r"line 2: field 'score': expected a number.*bool",
        ),
        (
            {"account_id": "a2", "score": 0.5, "flagged": "yes"},
            r"line 2: field 'flagged': expected true or false",
        ),
        ({"account_id": "a2", "score": 0.5, "flagged": 1}, r"line 2: field 'flagged'"),
        (
            {"account_id": "a1", "score": 0.5, "flagged": True},
            r"line 2: field 'account_id': duplicate account 'a1'",
        ),
        (
            {**GOOD, "account_id": "a2", "first_flagged_at": "yesterday"},
            r"line 2: field 'first_flagged_at': 'yesterday' is not an RFC 3339",
        ),
        (
            {**GOOD, "account_id": "a2", "first_flagged_at": "2026-04-22T00:00:00"},
            r"line 2: field 'first_flagged_at': .* has no UTC offset",
        ),
        ({**GOOD, "account_id": "a2", "first_flagged_at": 1713744000}, r"line 2: field 'first_flagged_at'"),
        ({**GOOD, "account_id": "a2", "reasons": "SHARED"}, r"line 2: field 'reasons': expected a list"),
        ({**GOOD, "account_id": "a2", "cluster_id": [1]}, r"line 2: field 'cluster_id'"),
    ],
)
def test_malformed_detections(world: dict[str, Path], tmp_path: Path, line: object, message: str) -> None:
    path = write_jsonl(tmp_path / "bad-det.jsonl", [GOOD, line])
    with pytest.raises(EvaluationInputError, match=r"bad-det\.jsonl, " + message) as info:
        evaluate(world["truth"], path)
    assert info.value.line == 2
    assert isinstance(info.value, ValueError)


def test_malformed_parquet_detections(world: dict[str, Path], tmp_path: Path) -> None:
    pq.write_table(
        pa.table(
            {
                "account_id": ["a1", "a2", "a3"],
                "score": [0.1, math.nan, 0.3],
                "flagged": [False, False, False],
            }
        ),
        tmp_path / "nan.parquet",
    )
    with pytest.raises(EvaluationInputError, match=r"nan\.parquet, line 2: field 'score': is NaN"):
        evaluate(world["truth"], tmp_path / "nan.parquet")
    pq.write_table(pa.table({"account_id": ["a1"], "flagged": [False]}), tmp_path / "noscore.parquet")
    with pytest.raises(EvaluationInputError, match=r"noscore\.parquet: field 'score': missing column"):
        evaluate(world["truth"], tmp_path / "noscore.parquet")
    (tmp_path / "junk.parquet").write_text("not parquet")
    with pytest.raises(EvaluationInputError, match=r"junk\.parquet: not readable as Parquet"):
        evaluate(world["truth"], tmp_path / "junk.parquet")


def test_missing_detections_file(world: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(EvaluationInputError, match=r"nope\.jsonl: file not found"):
        evaluate(world["truth"], tmp_path / "nope.jsonl")


GOOD_DEC = {"request_id": "r1", "action": "allow", "score": 0.5}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{oops", r"line 2: bad JSON"),
        ("42", r"line 2: expected a JSON object"),
        ({"action": "allow", "score": 0.1}, r"line 2: field 'request_id': missing"),
        ({"request_id": "r2", "score": 0.1}, r"line 2: field 'action': missing"),
        ({"request_id": "r2", "action": "allow"}, r"line 2: field 'score': missing"),
        (
            {"request_id": "r2", "action": "ban", "score": 0.1},
            r"line 2: field 'action': unknown action 'ban'",
        ),
        ({"request_id": "r2", "action": "ALLOW", "score": 0.1}, r"line 2: field 'action': unknown action"),
        ({"request_id": "r2", "action": "allow", "score": 3}, r"line 2: field 'score': 3.0 is outside"),
        (
            {"request_id": "r2", "action": "allow", "score": "0.1"},
            r"line 2: field 'score': expected a number",
        ),
        ('{"request_id": "r2", "action": "allow", "score": NaN}', r"line 2: field 'score'"),
        ({"request_id": 5, "action": "allow", "score": 0.1}, r"line 2: field 'request_id'"),
        ({"request_id": "r2", "action": "allow", "score": 0.1, "reasons": [1]}, r"line 2: field 'reasons'"),
        (
            {"request_id": "r1", "action": "block", "score": 0.1},
            r"line 2: field 'request_id': duplicate request",
        ),
    ],
)
def test_malformed_decisions(world: dict[str, Path], tmp_path: Path, line: object, message: str) -> None:
    path = write_jsonl(tmp_path / "bad-dec.jsonl", [GOOD_DEC, "", line])  # blank line 2 is skipped
    message = message.replace("line 2", "line 3")
    with pytest.raises(EvaluationInputError, match=r"bad-dec\.jsonl, " + message):
        evaluate(world["truth"], world["detections"], decisions=path, exchanges=world["exchanges"])


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ({"kind": "account", "account_id": "x1", "label": "attacker"}, r"field 'label': 'attacker' is not"),
        ({"kind": "account", "label": "benign:casual"}, r"field 'account_id'"),
        ({"kind": "account", "account_id": "a1", "label": "benign:casual"}, r"field 'account_id': duplicate"),
        ({"kind": "campaign", "campaign_id": "c9", "first_ts": "22/04/2026"}, r"field 'first_ts'"),
        ({"account_id": "x1"}, r"field 'kind': missing"),
    ],
)
def test_malformed_truth(world: dict[str, Path], tmp_path: Path, line: object, message: str) -> None:
    path = write_jsonl(tmp_path / "bad-truth.jsonl", [*truth_rows(), line])
    with pytest.raises(
        EvaluationInputError, match=rf"bad-truth\.jsonl, line {len(truth_rows()) + 1}: {message}"
    ):
        evaluate(path, world["detections"])

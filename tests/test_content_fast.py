"""The vectorised fast paths of the content stage agree with their straightforward definitions."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from distillguard.content._model import capability_model, cot_model, features, model_scores
from distillguard.content._template import preamble_fp, template_fingerprints
from distillguard.content._text import clip, hash_strings, interleave, subtokens, take_rows, tokenize

TEXTS = [
    "Write a Python function: sort(list) -> list, e.g. [3,1,2].", "", None, "--- *** ---", "hello",
    "a b", "你好世界 hello 123abc x=1;y=2", "He said \"quote this please\" and «ça» then ```code here``` end.",
    " ".join(f"w{i} tok{i % 5}" for i in range(120)), "You are an expert. Act now!", "  \n  trailing   ",
]


def _reference_tokens(text: str | None) -> np.ndarray:
    subs = [t for chunk in (text or "").split() for t in subtokens(chunk)]
    return hash_strings(subs).view(np.uint64)


def test_tokenize_matches_per_row_definition() -> None:
    tok = tokenize(pa.array(TEXTS, pa.string()))
    for i, t in enumerate(TEXTS):
        assert np.array_equal(tok.hashes[tok.offsets[i]:tok.offsets[i + 1]], _reference_tokens(t))


def test_interleave_and_take_rows() -> None:
    a, b = tokenize(pa.array(TEXTS[:6], pa.string())), tokenize(pa.array(TEXTS[5:11], pa.string()))
    both = interleave(a, b)
    for i in range(6):
        want = np.concatenate([_reference_tokens(TEXTS[i]), _reference_tokens(TEXTS[5 + i])])
        assert np.array_equal(both.hashes[both.offsets[i]:both.offsets[i + 1]], want)
    idx = np.array([3, 0, 0, 5, 1])
    got = take_rows(a, idx)
    for j, i in enumerate(idx):
        assert np.array_equal(got.hashes[got.offsets[j]:got.offsets[j + 1]], _reference_tokens(TEXTS[i]))


@pytest.mark.parametrize("texts", [TEXTS, TEXTS[1:3], ["x"], [None, "", "a b c"]])
def test_model_scores_match_sorted_features(texts: list[str | None]) -> None:
    tok = tokenize(clip(pa.array(texts, pa.string())))
    cap, cot = model_scores(tok)
    ids, offsets = features(tok)
    np.testing.assert_allclose(cap, capability_model().decision(ids, offsets), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(cot, cot_model().decision(ids, offsets)[:, 0], rtol=1e-9, atol=1e-12)


def test_template_token_reuse_matches_skeleton_path() -> None:
    arr = clip(pa.array(TEXTS * 3, pa.string()))
    fp, bands = template_fingerprints(arr, tokenize(arr))
    fp2, bands2 = template_fingerprints(arr)
    assert fp.equals(fp2) and bands.equals(bands2)
    assert fp[2].as_py() is None and fp[3].as_py() is None  # null and punctuation-only


def test_preamble_mixed_system_and_roles() -> None:
    prompts = ["You are an expert data engineer. Tune it.", "You are an expert data engineer! Fix it.",
               "Tune it.", "  Act as a planner\nthen plan.", "act as a planner. go", None, "You are ."]
    system = [None, "", "Be terse.", None, None, "be   terse", None]
    pre = preamble_fp(pa.array(system, pa.string()), pa.array(prompts, pa.string())).to_pylist()
    assert pre[0] is not None and pre[0] == pre[1]
    assert pre[2] is not None and pre[2] == pre[5] and pre[2] != pre[0]
    assert pre[3] is not None and pre[3] == pre[4]
    assert pre[6] is not None and pre[6] not in (pre[0], pre[3])  # first sentence "you are"


def test_build_signals_two_workers_same_output() -> None:
    import duckdb

    from distillguard.content import build_signals
    from distillguard.engines import DuckDBEngine

    con = duckdb.connect()
    con.execute("""CREATE TABLE exchanges AS SELECT 'r' || range AS request_id, 'a' || (range % 7) AS account_id,
        TIMESTAMPTZ '2026-04-22 00:00:00+00' + to_seconds(range) AS ts,
        CASE WHEN range % 3 = 0 THEN 'You are helpful.' END AS system,
        'You are a planner. Plan step ' || range || ' of "the launch" and show your chain of thought.' AS prompt
        FROM range(5000)""")
    eng = DuckDBEngine(con)
    assert build_signals(eng) == 5000
    one = eng.query("SELECT * FROM signals ORDER BY request_id")
    assert build_signals(eng, workers=2) == 5000
    two = eng.query("SELECT * FROM signals ORDER BY request_id")
    assert one.equals(two)

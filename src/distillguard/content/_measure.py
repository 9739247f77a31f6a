"""Measure the content signals on the development corpora and the hand-written held-out set.

``python -m distillguard.content._measure [CORPORA_DIR]`` prints the numbers in docs/content.md.
The corpora are read from disk at measurement time only; nothing from them is shipped or trained on.
"""

from __future__ import annotations

import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa

__all__ = ["CORPUS_CLASS", "load_corpora", "measure"]

#: corpus file stem -> expected capability (None: no single right answer; distribution reported).
CORPUS_CLASS: dict[str, str | None] = {
    "humaneval": "coding", "mbpp": "coding", "gpteacher_codegen": "coding",
    "gsm8k": "math_reasoning", "bbh": "math_reasoning",
    "agentbench_os_db": "agentic", "bfcl_nonlive": "agentic", "glaive_toolcall_demo": "agentic",
    "hh_rlhf_harmless_test": "chat", "gpteacher_roleplay": "chat", "awesome_chatgpt_prompts_classic": "chat",
    "arena_hard_v01": None,
}


def load_corpora(root: Path, turns: str = "first") -> dict[str, list[str]]:
    """First user turn of every record (``turns="later"``: every later user turn), per corpus file stem."""
    out: dict[str, list[str]] = {}
    for stem in CORPUS_CLASS:
        p = root / f"{stem}.jsonl"
        if p.exists():
            with p.open(encoding="utf-8") as f:
                records = [json.loads(line)["turns"] for line in f if line.strip()]
            out[stem] = [t[0] for t in records] if turns == "first" else [x for t in records for x in t[1:]]
    return out


def _batch(prompts: list[str]) -> pa.RecordBatch:
    n = len(prompts)
    return pa.RecordBatch.from_pydict({
        "request_id": [f"r{i}" for i in range(n)], "account_id": ["a"] * n,
        "ts": pa.array(np.zeros(n, dtype="datetime64[us]")).cast(pa.timestamp("us", tz="UTC")),
        "system": pa.nulls(n, pa.string()), "prompt": pa.array(prompts, pa.string()),
    })


def measure(root: Path, cot_threshold: float = 0.5) -> dict:
    from distillguard.content._heldout import COT_HELDOUT, STUDENT_HELDOUT
    from distillguard.content._signals import compute_signals

    res: dict = {"corpora": {}, "confusion": defaultdict(Counter)}
    right = total = 0
    for stem, prompts in load_corpora(root).items():
        sig = compute_signals(_batch(prompts))
        cap = sig.column("capability").to_pylist()
        cot = np.asarray(sig.column("cot_score"))
        want = CORPUS_CLASS[stem]
        dist = Counter(cap)
        row = {"n": len(prompts), "dist": dict(dist.most_common()), "cot_fpr": float((cot >= cot_threshold).mean())}
        if want is not None:
            ok = sum(c == want for c in cap)
            row["accuracy"] = ok / len(cap)
            right, total = right + ok, total + len(cap)
            res["confusion"][want].update(cap)
        res["corpora"][stem] = row
    # later turns (follow-ups in multi-turn corpora): what chat users send most, and where a CoT
    # false positive costs most
    for stem, prompts in load_corpora(root, turns="later").items():
        if prompts:
            cot = np.asarray(compute_signals(_batch(prompts)).column("cot_score"))
            res["corpora"][stem]["later_n"] = len(prompts)
            res["corpora"][stem]["later_cot_fpr"] = float((cot >= cot_threshold).mean())
    res["accuracy_micro"] = right / total if total else None
    accs = [r["accuracy"] for r in res["corpora"].values() if "accuracy" in r]
    res["accuracy_macro_corpus"] = float(np.mean(accs)) if accs else None
    pos = np.asarray(compute_signals(_batch(COT_HELDOUT)).column("cot_score"))
    neg = np.asarray(compute_signals(_batch(STUDENT_HELDOUT)).column("cot_score"))
    res["cot_heldout_recall"] = float((pos >= cot_threshold).mean())
    res["cot_heldout_missed"] = [p for p, s in zip(COT_HELDOUT, pos, strict=True) if s < cot_threshold]
    res["student_fpr"] = float((neg >= cot_threshold).mean())
    res["student_mean"], res["cot_mean"] = float(neg.mean()), float(pos.mean())
    res["confusion"] = {k: dict(v) for k, v in res["confusion"].items()}
    return res


if __name__ == "__main__":
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/corpora")
    print(json.dumps(measure(root), indent=1, ensure_ascii=False))

"""Radioactivity end to end on CPU: teacher -> watermarked outputs -> students -> p-values.

    .venv/bin/python benchmarks/radioactivity.py --out bench-out/radioactivity.json

1. A grammar writes the training text (``provenance.textgen``); a byte-level BPE tokenizer and a tiny
   GPT-2 teacher (2 layers, 128 wide) are trained on it.
2. The teacher answers prompts with the watermark (HF ``LogitsProcessor`` adapter) and without.
3. A *student* is trained from scratch on a mix: other text (fresh output of the grammar, as a
   distiller mixes in other data) plus watermarked teacher outputs, ``--wm-share`` of its tokens;
   a *control* student on the same other text plus as many *unwatermarked* teacher outputs (same
   size, same recipe, same seed).
4. White-box (teacher-forced top predictions on never-watermarked probe text) and black-box
   (samples on probe prompts) radioactivity tests for both, exact binomial p over distinct pairs.
Also measured: detection of 200-token teacher outputs, the watermark's perplexity cost on held-out
text, robustness to token substitution and to length, detector speed, and the false-positive rate on
never-watermarked text. Prints a table and writes everything to ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from distillguard.provenance import textgen
from distillguard.provenance.harness import lm_nll, tiny_gpt2, train_bpe, train_lm
from distillguard.provenance.hf import WatermarkLogitsProcessor, generate_ids, top_token_fn
from distillguard.provenance.radioactivity import blackbox_test, whitebox_test
from distillguard.provenance.watermark import (
    KeyRing,
    Watermarker,
    WatermarkKey,
    WatermarkParams,
    detect_ids,
    detect_many,
    encode,
    with_tokenizer,
)


def log(msg: str) -> None:
    print(msg, flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("bench-out/radioactivity.json"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--vocab", type=int, default=2048)
    ap.add_argument("--teacher-tokens", type=int, default=300_000, help="tokens of teacher training")
    ap.add_argument("--student-data", type=int, default=250_000, help="tokens of training data per student")
    ap.add_argument("--student-epochs", type=float, default=1.0)
    ap.add_argument("--batch", type=int, default=8, help="sequences of 256 tokens per training step")
    ap.add_argument("--bb-samples", type=int, default=384, help="black-box samples (64 tokens) per suspect")
    ap.add_argument("--bb-temperature", type=float, default=1.0,
                    help="sampling temperature of the black-box probes (lower: scores the suspect's modes)")
    ap.add_argument("--teacher-row", action="store_true", help="also test the teacher itself (a third suspect)")
    ap.add_argument("--wm-share", type=float, default=0.10, help="share of the student's data that is watermarked")
    ap.add_argument("--context-width", type=int, default=1)
    ap.add_argument("--gamma", type=float, default=0.25)
    ap.add_argument("--delta", type=float, default=3.0)
    ap.add_argument("--quick", action="store_true", help="a small run to check the script (minutes less)")
    a = ap.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    if a.quick:
        a.teacher_tokens, a.student_data, a.bb_samples = 60_000, 40_000, 128
    T: dict[str, float] = {}
    t_all = time.perf_counter()

    def phase(name: str, t0: float) -> None:
        T[name] = round(time.perf_counter() - t0, 1)
        log(f"[{name}] {T[name]} s")

    # 1. text, tokenizer, teacher ------------------------------------------------------------------
    t0 = time.perf_counter()
    texts = textgen.corpus(14_000 if not a.quick else 5_000, seed=a.seed)
    tok = train_bpe(texts, a.vocab)
    stream = np.concatenate([np.asarray(encode(tok, t) + [0]) for t in texts])
    heldout = [encode(tok, t) for t in textgen.corpus(400, seed=a.seed + 101)]
    probe_text = np.concatenate([np.asarray(encode(tok, t) + [0]) for t in textgen.corpus(600, seed=a.seed + 202)])
    phase("text+tokenizer", t0)
    log(f"corpus {len(stream):,} tokens, vocab {tok.get_vocab_size()}")
    t0 = time.perf_counter()
    teacher = tiny_gpt2(tok.get_vocab_size(), seed=a.seed)
    n_params = sum(p.numel() for p in teacher.parameters())
    log(f"teacher: {n_params:,} parameters")
    tstats = train_lm(teacher, stream, tokens=a.teacher_tokens, batch=a.batch, seed=a.seed, log=log)
    phase("teacher", t0)

    key = WatermarkKey("wm-bench", bytes(range(7, 39)))
    params = with_tokenizer(WatermarkParams(context_width=a.context_width, gamma=a.gamma, delta=a.delta), tok)
    ring = KeyRing([key], params=params)
    proc = WatermarkLogitsProcessor(ring)

    # 2. teacher outputs ---------------------------------------------------------------------------
    t0 = time.perf_counter()
    plen, new = 8, 120
    prompts_all = [encode(tok, p) for p in textgen.prompts(20_000, seed=a.seed + 7)]
    prompts_all = [p[:plen] for p in prompts_all if len(p) >= plen]
    n_wm = max(1, int(round(a.wm_share * a.student_data / (plen + new + 1))))
    wm_out = generate_ids(teacher, prompts_all[:n_wm], new, processor=proc, batch_size=256, seed=a.seed + 1)
    plain_out = generate_ids(teacher, prompts_all[n_wm:2 * n_wm], new, batch_size=256, seed=a.seed + 2)
    phase("teacher outputs", t0)

    # detection, quality, robustness on 200-token outputs
    t0 = time.perf_counter()
    det_prompts = prompts_all[-32:]
    wm200 = generate_ids(teacher, det_prompts, 200, processor=proc, batch_size=64, seed=a.seed + 3)
    pl200 = generate_ids(teacher, det_prompts, 200, batch_size=64, seed=a.seed + 4)
    p_wm200 = [detect_ids(s, ring).p_value for s in wm200]
    p_pl200 = [detect_ids(s, ring).p_value for s in pl200]
    rng = np.random.default_rng(a.seed)
    subst = {}
    for share in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5):
        ps = []
        for s in wm200:
            x = np.asarray(s).copy()
            m = rng.random(len(x)) < share
            x[m] = rng.integers(1, tok.get_vocab_size(), size=m.sum())
            ps.append(detect_ids(x, ring).p_value)
        subst[share] = float(np.median(ps))
    trunc = {}
    for L in (25, 50, 100, 200, 400):
        if L <= 200:
            trunc[L] = float(np.median([detect_ids(s[:L], ring).p_value for s in wm200]))
        else:  # two outputs of the same account pooled
            trunc[L] = float(np.median([detect_ids([wm200[i], wm200[i + 1]], ring).p_value
                                        for i in range(0, len(wm200) - 1, 2)]))
    nll_plain = lm_nll(teacher, heldout[:40])
    nll_wm = lm_nll(teacher, heldout[:40], bias=Watermarker(ring))
    pooled = np.concatenate([np.asarray(s) for s in wm_out + plain_out])
    reps = 3
    t1 = time.perf_counter()
    for _ in range(reps):
        detect_ids(pooled, ring)
    det_speed = reps * len(pooled) / (time.perf_counter() - t1)
    chunks = [np.asarray(c) for c in np.array_split(probe_text[: (len(probe_text) // 100) * 100], len(probe_text) // 100)]
    fpr_batch = detect_many(chunks, ring)
    fpr = {str(al): float((fpr_batch.p_value <= al).mean()) for al in (1e-3, 1e-2)}
    phase("detection", t0)

    # 3. students ----------------------------------------------------------------------------------
    def to_stream(seqs: list[list[int]]) -> np.ndarray:
        return np.concatenate([np.asarray(p + s + [0]) for p, s in seqs])

    rng = np.random.default_rng(a.seed + 5)
    wm_pairs = list(zip(prompts_all[:n_wm], wm_out, strict=True))
    plain_pairs = list(zip(prompts_all[n_wm:2 * n_wm], plain_out, strict=True))
    wm_tokens = sum(len(p) + len(s) + 1 for p, s in wm_pairs)
    other: list[tuple[list[int], list[int]]] = []  # other data: fresh grammar text, never from the teacher
    n_other = 0
    for t in textgen.corpus(40_000, seed=a.seed + 55):
        if n_other >= a.student_data - wm_tokens:
            break
        ids = encode(tok, t)
        other.append(([], ids))
        n_other += len(ids) + 1
    order = rng.permutation(len(other) + n_wm)
    s_items, c_items = other + wm_pairs, other + plain_pairs
    student_stream = to_stream([s_items[i] for i in order])
    control_stream = to_stream([c_items[i] for i in order])
    share = wm_tokens / len(student_stream)
    log(f"student data {len(student_stream):,} tokens ({share:.1%} watermarked); control {len(control_stream):,}")
    t0 = time.perf_counter()
    student = tiny_gpt2(tok.get_vocab_size(), seed=a.seed + 11)
    sstats = train_lm(student, student_stream, tokens=int(a.student_epochs * len(student_stream)), batch=a.batch,
                      seed=a.seed + 12, log=log)
    phase("student", t0)
    t0 = time.perf_counter()
    control = tiny_gpt2(tok.get_vocab_size(), seed=a.seed + 11)
    cstats = train_lm(control, control_stream, tokens=int(a.student_epochs * len(control_stream)), batch=a.batch,
                      seed=a.seed + 12, log=log)
    phase("control", t0)

    # 4. radioactivity -----------------------------------------------------------------------------
    t0 = time.perf_counter()
    probes = [probe_text[i:i + 128].tolist() for i in range(0, len(probe_text) - 128, 128)][:300]
    bb_prompts = [p[:plen] for p in (encode(tok, q) for q in textgen.prompts(3000, seed=a.seed + 303)) if len(p) >= plen]
    bb_prompts = bb_prompts[:a.bb_samples]
    results = {}
    suspects = [("student", student), ("control", control)] + ([("teacher", teacher)] if a.teacher_row else [])
    for name, model in suspects:
        wb = whitebox_test(top_token_fn(model), probes, ring)
        samples = generate_ids(model, bb_prompts, 64, batch_size=256, seed=a.seed + 9, temperature=a.bb_temperature)
        bb = blackbox_test(samples, ring, prompts=bb_prompts)
        results[name] = {"whitebox": wb.to_dict(), "blackbox": bb.to_dict()}
    phase("radioactivity", t0)
    T["total"] = round(time.perf_counter() - t_all, 1)

    cmd = "python " + " ".join(sys.argv)
    out = {
        "command": cmd,
        "machine": {"platform": platform.platform(), "torch_threads": a.threads},
        "params": {"context_width": a.context_width, "gamma": a.gamma, "delta": a.delta, "wm_share_target": a.wm_share,
                   "bb_temperature": a.bb_temperature,
                   "vocab": tok.get_vocab_size(), "teacher_params": n_params},
        "data": {"corpus_tokens": int(len(stream)), "student_tokens": int(len(student_stream)),
                 "watermarked_tokens": int(wm_tokens), "watermarked_share": share,
                 "control_tokens": int(len(control_stream))},
        "training": {"teacher": tstats, "student": sstats, "control": cstats},
        "detection_200_tokens": {"median_p_watermarked": float(np.median(p_wm200)),
                                 "share_p_below_1e-6": float(np.mean(np.asarray(p_wm200) < 1e-6)),
                                 "median_p_plain": float(np.median(p_pl200)), "min_p_plain": float(np.min(p_pl200))},
        "quality": {"heldout_ppl_plain": float(np.exp(nll_plain)), "heldout_ppl_watermarked": float(np.exp(nll_wm))},
        "robustness_substitution_median_p": {str(k): v for k, v in subst.items()},
        "robustness_length_median_p": {str(k): v for k, v in trunc.items()},
        "detector_tokens_per_s": det_speed,
        "fpr_never_watermarked": {"texts": len(chunks), "tokens_each": 100, **fpr},
        "radioactivity": results,
        "seconds": T,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=2))

    log("\nradioactivity (exact binomial p over distinct (context, token) pairs)")
    log(f"{'suspect':<9} {'white-box p':>12} {'pairs':>7} {'green':>6}   {'black-box p':>12} {'pairs':>7} {'green':>6}")
    for name, r in results.items():
        w, b = r["whitebox"], r["blackbox"]
        log(f"{name:<9} {w['p_value']:>12.3g} {w['tokens_scored']:>7} {w['green_fraction']:>6.3f}   "
            f"{b['p_value']:>12.3g} {b['tokens_scored']:>7} {b['green_fraction']:>6.3f}")
    log(f"\nstudent data: {share:.1%} watermarked ({wm_tokens:,} of {len(student_stream):,} tokens)")
    log(f"200-token teacher outputs: median p {np.median(p_wm200):.3g} (watermarked), {np.median(p_pl200):.3g} (plain)")
    log(f"held-out perplexity: {np.exp(nll_plain):.2f} plain, {np.exp(nll_wm):.2f} with watermark bias")
    log("substitution -> median p: " + ", ".join(f"{k:.0%}: {v:.2g}" for k, v in subst.items()))
    log("length -> median p: " + ", ".join(f"{k}: {v:.2g}" for k, v in trunc.items()))
    log(f"detector: {det_speed:,.0f} tokens/s; FPR on {len(chunks):,} never-watermarked texts: {fpr}")
    log(f"times (s): {T}")
    log(f"command: {cmd}\nwrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

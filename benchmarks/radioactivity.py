"""Radioactivity end to end on CPU: teacher -> watermarked outputs -> students -> p-values.

    .venv/bin/python benchmarks/radioactivity.py --wm-share 0.05 --seed 1 --out bench-out/radioactivity.json

1. A grammar writes the training text (``provenance.textgen``); a byte-level BPE tokenizer and a tiny
   GPT-2 (2 layers, 128 wide) are trained on it, about one pass over ``--corpus`` paragraphs (2M
   tokens), to near the grammar's floor: a public base is a converged model, and an undertrained one
   makes every fine-tuned student drift far from it, which drowns the watermark's small shift in the
   green-mass test against the base. With ``--init base`` (default) that model is the
   *public base*: the teacher is the base fine-tuned on the provider's own text, and the students
   start from the base too, as when a provider and a distiller both fine-tune the same open model
   (``--init scratch``: teacher and students trained from scratch, the earlier set-up). Every model
   trains on one torch thread per process (on 2 shared cores, 2 threads were 5x slower).
2. The teacher answers prompts with the watermark (HF ``LogitsProcessor`` adapter; ``--gamma 0.1
   --delta 4`` by default, 0.25 / 3 before: per context, the green mass a student's training mix gains
   is larger relative to its null spread) and without.
3. A *student* is fine-tuned on a mix: other text (fresh output of the grammar, as a distiller mixes
   in other data) plus watermarked teacher outputs, ``--wm-share`` of its tokens, for
   ``--student-epochs``; a *control* on the same other text plus as many *unwatermarked* teacher
   outputs (same size, same recipe, same seed). Both train side by side (one process each).
4. Radioactivity tests for both (``provenance.radioactivity``), on ``--probe-paragraphs`` of
   never-watermarked grammar text cut into 128-token probes: white-box top-1 (exact binomial p over
   distinct pairs), green mass (the suspect's next-token distribution, Chernoff-bound p), green mass
   against the public base as reference, reading mode (our own watermarked outputs as probes, their
   pairs excluded) and black-box (samples on probe prompts). Each statistic is also computed for
   ``--null-keys`` random keys that never marked anything: its empirical level on real models.
Also measured (skip with ``--no-detection``): detection of 200-token teacher outputs, the
watermark's perplexity cost on held-out text, robustness to token substitution and to length,
detector speed, and the false-positive rate on never-watermarked text. Prints a table and writes
everything to ``--out`` (JSON), with the command, parameters, data sizes and phase times.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table
from rich.text import Text

from distillguard.provenance import textgen
from distillguard.provenance.harness import lm_nll, tiny_gpt2, topk_next_fn, train_bpe, train_lm
from distillguard.provenance.hf import WatermarkLogitsProcessor, generate_ids, top_token_fn
from distillguard.provenance.radioactivity import blackbox_test, green_mass_test, whitebox_test
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

console = Console(highlight=False, width=160)
_T0 = time.perf_counter()


def log(msg: str) -> None:
    """One progress line, with the seconds since the start."""
    console.print(Text.assemble((f"{time.perf_counter() - _T0:7.1f}s ", "dim"), msg))


def measure_detection(teacher: Any, tok: Any, ring: KeyRing, proc: Any, prompts_all: list[list[int]],
                      heldout: list[list[int]], probe_text: np.ndarray, outputs: list[list[int]], seed: int,
                      log: Callable[[str], None]) -> dict[str, Any]:
    """Detection of 200-token teacher outputs, the watermark's perplexity cost, robustness to
    substitution and length, detector speed and false positives on never-watermarked text."""
    det_prompts = prompts_all[-32:]
    wm200 = generate_ids(teacher, det_prompts, 200, processor=proc, batch_size=64, seed=seed + 3)
    pl200 = generate_ids(teacher, det_prompts, 200, batch_size=64, seed=seed + 4)
    p_wm200 = [detect_ids(s, ring).p_value for s in wm200]
    p_pl200 = [detect_ids(s, ring).p_value for s in pl200]
    rng = np.random.default_rng(seed)
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
    pooled = np.concatenate([np.asarray(s) for s in outputs])
    reps = 3
    t1 = time.perf_counter()
    for _ in range(reps):
        detect_ids(pooled, ring)
    det_speed = reps * len(pooled) / (time.perf_counter() - t1)
    chunks = [np.asarray(c) for c in np.array_split(probe_text[: (len(probe_text) // 100) * 100], len(probe_text) // 100)]
    fpr_batch = detect_many(chunks, ring)
    fpr = {str(al): float((fpr_batch.p_value <= al).mean()) for al in (1e-3, 1e-2)}
    out = {
        "detection_200_tokens": {"median_p_watermarked": float(np.median(p_wm200)),
                                 "share_p_below_1e-6": float(np.mean(np.asarray(p_wm200) < 1e-6)),
                                 "median_p_plain": float(np.median(p_pl200)), "min_p_plain": float(np.min(p_pl200))},
        "quality": {"heldout_ppl_plain": float(np.exp(nll_plain)), "heldout_ppl_watermarked": float(np.exp(nll_wm))},
        "robustness_substitution_median_p": {str(k): v for k, v in subst.items()},
        "robustness_length_median_p": {str(k): v for k, v in trunc.items()},
        "detector_tokens_per_s": det_speed,
        "fpr_never_watermarked": {"texts": len(chunks), "tokens_each": 100, **fpr},
    }
    log(f"200-token teacher outputs: median p {np.median(p_wm200):.3g} (watermarked), {np.median(p_pl200):.3g} (plain)")
    log(f"held-out perplexity: {np.exp(nll_plain):.2f} plain, {np.exp(nll_wm):.2f} with watermark bias")
    log("substitution -> median p: " + ", ".join(f"{k:.0%}: {v:.2g}" for k, v in subst.items()))
    log("length -> median p: " + ", ".join(f"{k}: {v:.2g}" for k, v in trunc.items()))
    log(f"detector: {det_speed:,.0f} tokens/s; FPR on {len(chunks):,} never-watermarked texts: {fpr}")
    return out


def memo(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``fn`` with its results kept per input (the tests below read the same probes several times)."""
    cache: dict[int, Any] = {}

    def call(seqs: Any) -> Any:
        k = hash(tuple(tuple(s) for s in seqs))
        if k not in cache:
            cache[k] = fn(seqs)
        return cache[k]

    return call


def _train_job(job: dict[str, Any]) -> tuple[dict[str, Any], dict[str, float]]:
    """Train one model in a worker process (student and control train side by side on the 2 cores)."""
    import torch

    torch.set_num_threads(job["threads"])
    model = tiny_gpt2(job["vocab"], n_embd=job["width"], n_layer=job["layers"], seed=job["seed"])
    if job["init"] is not None:
        model.load_state_dict(job["init"])
    stats = train_lm(model, job["stream"], tokens=job["tokens"], batch=job["batch"], lr=job["lr"],
                     seed=job["seed"] + 1, log=lambda m: print(f"[{job['name']}]{m}", flush=True))
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, stats


def train_pair(jobs: list[dict[str, Any]], parallel: bool) -> list[tuple[dict[str, Any], dict[str, float]]]:
    if not parallel:
        return [_train_job(j) for j in jobs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(len(jobs), mp_context=multiprocessing.get_context("spawn")) as ex:
        return list(ex.map(_train_job, jobs))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("bench-out/radioactivity.json"))
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads per process (student and control train in two processes side by side)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--vocab", type=int, default=1024)
    ap.add_argument("--corpus", type=int, default=36_000,
                    help="paragraphs of grammar text the base model (--init scratch: the teacher) trains on")
    ap.add_argument("--teacher-tokens", type=int, default=2_000_000,
                    help="tokens of teacher training (--init base: of the base model; about one pass over --corpus)")
    ap.add_argument("--student-data", type=int, default=1_200_000, help="tokens of training data per student")
    ap.add_argument("--student-epochs", type=float, default=1.0)
    ap.add_argument("--student-width", type=int, default=128, help="students' n_embd (the teacher's is 128)")
    ap.add_argument("--student-layers", type=int, default=2)
    ap.add_argument("--topk", type=int, default=128, help="next-token probabilities kept per position (green mass)")
    ap.add_argument("--probe-paragraphs", type=int, default=3000,
                    help="never-watermarked grammar paragraphs cut into 128-token white-box probes")
    ap.add_argument("--null-keys", type=int, default=200,
                    help="random keys that never marked anything: empirical level of each test on each suspect")
    ap.add_argument("--reading-texts", type=int, default=100,
                    help="watermarked teacher outputs read in reading mode (pairs they contain excluded)")
    ap.add_argument("--save", type=Path, default=None, help="save tokenizer, teacher, student, control here")
    ap.add_argument("--init", choices=("base", "scratch"), default="base",
                    help="base: a public base model (trained on grammar text) is fine-tuned into the teacher "
                         "(on the provider's own text) and, separately, into the student and the control, as when "
                         "provider and distiller start from the same open model; scratch: every model from scratch")
    ap.add_argument("--teacher-ft-tokens", type=int, default=30_000, help="--init base: teacher fine-tuning tokens")
    ap.add_argument("--student-lr", type=float, default=None, help="default 1e-3 (--init base), 3e-3 (scratch)")
    ap.add_argument("--serial", action="store_true", help="train student and control one after the other")
    ap.add_argument("--batch", type=int, default=16, help="sequences of 256 tokens per training step")
    ap.add_argument("--bb-samples", type=int, default=384, help="black-box samples (64 tokens) per suspect")
    ap.add_argument("--bb-temperature", type=float, default=1.0,
                    help="sampling temperature of the black-box probes (lower: scores the suspect's modes)")
    ap.add_argument("--teacher-row", action="store_true", help="also test the teacher itself (a third suspect)")
    ap.add_argument("--wm-share", type=float, default=0.05, help="share of the student's data that is watermarked")
    ap.add_argument("--context-width", type=int, default=1)
    ap.add_argument("--gamma", type=float, default=0.1,
                    help="green share (0.25 before; a smaller green list shifts more mass per context)")
    ap.add_argument("--delta", type=float, default=4.0, help="green bias (3 before)")
    ap.add_argument("--no-detection", action="store_true",
                    help="skip the watermark-detection measurements (radioactivity only; saves minutes)")
    ap.add_argument("--quick", action="store_true", help="a small run to check the script (minutes less)")
    a = ap.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    if a.quick:
        a.corpus, a.teacher_tokens, a.student_data, a.bb_samples = 5_000, 60_000, 40_000, 128
    T: dict[str, float] = {}
    t_all = time.perf_counter()

    def phase(name: str, t0: float) -> None:
        T[name] = round(time.perf_counter() - t0, 1)
        log(f"[{name}] {T[name]} s")

    # 1. text, tokenizer, teacher ------------------------------------------------------------------
    t0 = time.perf_counter()
    texts = textgen.corpus(a.corpus, seed=a.seed)
    tok = train_bpe(texts[:14_000], a.vocab)
    stream = np.concatenate([np.asarray(encode(tok, t) + [0]) for t in texts])
    heldout = [encode(tok, t) for t in textgen.corpus(400, seed=a.seed + 101)]
    probe_text = np.concatenate([np.asarray(encode(tok, t) + [0])
                                 for t in textgen.corpus(a.probe_paragraphs, seed=a.seed + 202)])
    phase("text+tokenizer", t0)
    log(f"corpus {len(stream):,} tokens, vocab {tok.get_vocab_size()}")
    t0 = time.perf_counter()
    teacher = tiny_gpt2(tok.get_vocab_size(), seed=a.seed)
    n_params = sum(p.numel() for p in teacher.parameters())
    log(f"{'base model' if a.init == 'base' else 'teacher'}: {n_params:,} parameters")
    tstats = train_lm(teacher, stream, tokens=a.teacher_tokens, batch=a.batch, seed=a.seed, log=log)
    base_state = None
    if a.init == "base":  # the public base; the teacher is the base fine-tuned on the provider's own text
        import copy

        base = copy.deepcopy(teacher)
        base_state = {k: v.detach().clone() for k, v in base.state_dict().items()}
        own = np.concatenate([np.asarray(encode(tok, t) + [0]) for t in textgen.corpus(2_000, seed=a.seed + 77)])
        tstats = {"base": tstats, "fine_tune": train_lm(teacher, own, tokens=a.teacher_ft_tokens, batch=a.batch,
                                                         lr=1e-3, seed=a.seed + 78, log=log)}
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
    detection = {} if a.no_detection else measure_detection(teacher, tok, ring, proc, prompts_all, heldout, probe_text,
                                                            wm_out + plain_out, a.seed, log)
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
    for t in textgen.corpus(a.student_data // 40 + 1_000, seed=a.seed + 55):
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
    width, layers = (128, 2) if a.init == "base" else (a.student_width, a.student_layers)
    lr = a.student_lr or (1e-3 if a.init == "base" else 3e-3)
    jobs = [{"name": name, "vocab": tok.get_vocab_size(), "width": width, "layers": layers, "seed": a.seed + 11,
             "init": base_state, "stream": st, "tokens": int(a.student_epochs * len(st)), "batch": a.batch, "lr": lr,
             "threads": a.threads if a.serial else 1}
            for name, st in (("student", student_stream), ("control", control_stream))]
    (s_state, sstats), (c_state, cstats) = train_pair(jobs, parallel=not a.serial)
    student = tiny_gpt2(tok.get_vocab_size(), n_embd=width, n_layer=layers)
    student.load_state_dict(s_state)
    control = tiny_gpt2(tok.get_vocab_size(), n_embd=width, n_layer=layers)
    control.load_state_dict(c_state)
    student.eval()
    control.eval()
    phase("student+control", t0)

    # 4. radioactivity -----------------------------------------------------------------------------
    t0 = time.perf_counter()
    probes = [probe_text[i:i + 128].tolist() for i in range(0, len(probe_text) - 128, 128)]
    bb_prompts = [p[:plen] for p in (encode(tok, q) for q in textgen.prompts(3000, seed=a.seed + 303)) if len(p) >= plen]
    bb_prompts = bb_prompts[:a.bb_samples]
    results: dict[str, dict] = {}
    null_ring = KeyRing([WatermarkKey(f"null-{i}", rng.bytes(32)) for i in range(a.null_keys)], params=params)
    null_level: dict[str, dict] = {}
    reading = [list(p) + list(s) for p, s in wm_pairs[:a.reading_texts]]  # our served outputs (evidence log)
    # reference for the green-mass test: a model independent of the key that the provider holds
    # (--init base: the public base model; scratch: the teacher, whose weights never saw a watermark)
    if base_state is not None:
        base.eval()
    ref = memo(topk_next_fn(base if base_state is not None else teacher, a.topk))
    suspects = [("student", student), ("control", control)] + ([("teacher", teacher)] if a.teacher_row else [])
    for name, model in suspects:
        t1 = time.perf_counter()
        top1, topk = memo(top_token_fn(model)), memo(topk_next_fn(model, a.topk))
        r = {"whitebox": whitebox_test(top1, probes, ring).to_dict(),
             "green_mass": green_mass_test(topk, probes, ring).to_dict(),
             "reading_top1": whitebox_test(top1, reading, ring, exclude_probe_pairs=True).to_dict(),
             "reading_mass": green_mass_test(topk, reading, ring, exclude_probe_pairs=True, mode="reading").to_dict()}
        if model is not teacher:
            r["green_mass_ref"] = green_mass_test(topk, probes, ring, reference=ref, mode="whitebox-ref").to_dict()
        r["whitebox_seconds"] = round(time.perf_counter() - t1, 1)
        samples = generate_ids(model, bb_prompts, 64, batch_size=256, seed=a.seed + 9, temperature=a.bb_temperature)
        r["blackbox"] = blackbox_test(samples, ring, prompts=bb_prompts).to_dict()
        results[name] = r
        # the same statistics with keys that never marked anything: every suspect is null for them
        lv = {}
        null_p = {"whitebox": whitebox_test(top1, probes, null_ring).detection.p_per_key,
                  "green_mass": green_mass_test(topk, probes, null_ring).p_per_key,
                  "blackbox": blackbox_test(samples, null_ring, prompts=bb_prompts).detection.p_per_key}
        if model is not teacher:
            null_p["green_mass_ref"] = green_mass_test(topk, probes, null_ring, reference=ref).p_per_key
        for stat, pk in null_p.items():
            ps = np.array(list(pk.values()))
            lv[stat] = {"keys": len(ps), "le_0.05": int((ps <= 0.05).sum()), "le_0.01": int((ps <= 0.01).sum()),
                        "min_p": float(ps.min()), "median_p": float(np.median(ps))}
        null_level[name] = lv
    phase("radioactivity", t0)
    if a.save:
        a.save.mkdir(parents=True, exist_ok=True)
        tok.save(str(a.save / "tokenizer.json"))
        for name, model in (("teacher", teacher), ("student", student), ("control", control)) + (
                (("base", base),) if base_state is not None else ()):
            model.save_pretrained(a.save / name)
            tok.save(str(a.save / name / "tokenizer.json"))
        (a.save / "probes.json").write_text(json.dumps(probes))
        (a.save / "reading.json").write_text(json.dumps(reading))
        KeyRing([key], params=params).save(a.save / "ring.json")
    T["total"] = round(time.perf_counter() - t_all, 1)

    cmd = "python " + " ".join(sys.argv)
    out = {
        "command": cmd,
        "machine": {"platform": platform.platform(), "torch_threads": a.threads},
        "params": {"context_width": a.context_width, "gamma": a.gamma, "delta": a.delta, "wm_share_target": a.wm_share,
                   "bb_temperature": a.bb_temperature, "student_epochs": a.student_epochs, "init": a.init,
                   "student_lr": lr, "teacher_ft_tokens": a.teacher_ft_tokens if a.init == "base" else 0,
                   "student_width": width, "student_layers": layers, "topk": a.topk,
                   "probes": len(probes), "probe_tokens": 128, "reading_texts": len(reading),
                   "vocab": tok.get_vocab_size(), "teacher_params": n_params, "corpus_paragraphs": a.corpus,
                   "teacher_tokens": a.teacher_tokens, "batch": a.batch, "null_keys": a.null_keys},
        "data": {"corpus_tokens": int(len(stream)), "student_tokens": int(len(student_stream)),
                 "watermarked_tokens": int(wm_tokens), "watermarked_share": share,
                 "control_tokens": int(len(control_stream))},
        "training": {"teacher": tstats, "student": sstats, "control": cstats},
        **detection,
        "radioactivity": results,
        "null_level_random_keys": null_level,
        "seconds": T,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=2))

    table = Table(title="radioactivity: top-1, black-box = exact binomial p over distinct (context, token) pairs; "
                        "green mass = Chernoff bound", title_justify="left")
    for col in ("suspect", "top-1 p", "green", "mass p", "z", "mass−base p", "z", "read-1 p", "read-mass p",
                "black-box p", "green"):
        table.add_column(col, justify="left" if col == "suspect" else "right")
    for name, r in results.items():
        w, m, b = r["whitebox"], r["green_mass"], r["blackbox"]
        mr = r.get("green_mass_ref", {"p_value": float("nan"), "score": float("nan")})
        table.add_row(name, f"{w['p_value']:.3g}", f"{w['green_fraction']:.3f}", f"{m['p_value']:.3g}",
                      f"{m['score']:.2f}", f"{mr['p_value']:.3g}", f"{mr['score']:.2f}",
                      f"{r['reading_top1']['p_value']:.3g}", f"{r['reading_mass']['p_value']:.3g}",
                      f"{b['p_value']:.3g}", f"{b['green_fraction']:.3f}")
    console.print(table)
    log(f"null level over {a.null_keys} random keys (count of p <= 0.05 / 0.01): " + "; ".join(
        f"{n}: " + ", ".join(f"{st} {v['le_0.05']}/{v['le_0.01']}" for st, v in lv.items())
        for n, lv in null_level.items()))
    log(f"student data: {share:.1%} watermarked ({wm_tokens:,} of {len(student_stream):,} tokens)")
    log(f"times (s): {T}")
    log(f"command: {cmd}\nwrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Radioactivity end to end on CPU: teacher -> watermarked outputs -> students -> p-values.

    .venv/bin/python benchmarks/radioactivity.py --seed 1 --serial --no-detection --save bench-out/rad-s1 \
        --out bench-out/radioactivity_seed1.json
    .venv/bin/python benchmarks/radioactivity.py --seed 1 --load bench-out/rad-s1 --out bench-out/radioactivity_seed1.json

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
4. Radioactivity tests for both (``provenance.radioactivity``). Probes: ``--probe-paragraphs`` of
   never-watermarked grammar text cut into 128-token probes, and ``--decoy-probes`` *decoy probes*:
   teacher answers sampled under fresh decoy keys (never ours). Watermarked answers wander into
   unusual tokens, and the student learned what follows those almost only from watermarked text;
   decoy probes visit such contexts too but do not depend on our key, so the null still holds.
   Statistics: white-box top-1 (exact binomial p over distinct pairs), green mass (the suspect's
   next-token distribution, Chernoff bound with a Berry-Esseen factor), green mass against a reference
   model (the teacher, the primary statistic ``PRIMARY``: its weights never saw the watermark, applied
   only at sampling, so it is independent of the key, and a student imitating it is close to it; and
   the public base), each on both probe sets; reading mode (our own watermarked outputs as probes,
   their pairs excluded) and black-box (samples on grammar prompts, and on decoy prompts). Each
   statistic is also computed for ``--null-keys`` random keys that never marked anything: its
   empirical level on real models. ``--save DIR`` keeps models, probe text and key; ``--load DIR``
   reruns only the tests on them (minutes).
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
PROMPT_TOKENS = 8
#: the statistic the target is judged on, fixed before the confirmation seeds (see docs/provenance.md):
#: top-1 over grammar and decoy probes pooled (chosen on seed 1, where the first choice, the green mass
#: on decoy probes against the teacher, gave p 0.044)
PRIMARY = "whitebox_all"
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


def train_all(a: argparse.Namespace, phase: Callable[[str, float], None]) -> dict[str, Any]:
    """Text, tokenizer, base, teacher, teacher outputs, detection measurements, student and control."""
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
    plen, new = PROMPT_TOKENS, 120
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
    meta = {"teacher_params": n_params, "corpus_tokens": int(len(stream)), "student_tokens": int(len(student_stream)),
            "watermarked_tokens": int(wm_tokens), "watermarked_share": share, "control_tokens": int(len(control_stream)),
            "training": {"teacher": tstats, "student": sstats, "control": cstats}, "student_width": width,
            "student_layers": layers, "student_lr": lr}
    return {"tok": tok, "probe_text": probe_text, "teacher": teacher, "base": base if base_state is not None else None,
            "student": student, "control": control, "params": params, "key": key,
            "reading": [list(p) + list(s) for p, s in wm_pairs[:a.reading_texts]], "detection": detection,
            "meta": meta}



MODELS = ("base", "teacher", "student", "control")


def save_all(d: Path, w: dict[str, Any]) -> None:
    """Everything :func:`load_saved` needs to rerun the radioactivity tests without training."""
    d.mkdir(parents=True, exist_ok=True)
    w["tok"].save(str(d / "tokenizer.json"))
    for name in MODELS:
        if w.get(name) is not None:
            w[name].save_pretrained(d / name)
            w["tok"].save(str(d / name / "tokenizer.json"))
    (d / "probe_text.json").write_text(json.dumps(np.asarray(w["probe_text"]).tolist()))
    (d / "reading.json").write_text(json.dumps(w["reading"]))
    KeyRing([w["key"]], params=w["params"]).save(d / "ring.json")
    (d / "meta.json").write_text(json.dumps(w["meta"], indent=2))


def load_saved(d: Path) -> dict[str, Any]:
    """What :func:`save_all` wrote: tokenizer, models, probe text, reading texts, key, training facts."""
    from tokenizers import Tokenizer
    from transformers import GPT2LMHeadModel

    ring = KeyRing.load(d / "ring.json")
    w: dict[str, Any] = {name: (GPT2LMHeadModel.from_pretrained(d / name, attn_implementation="eager").eval()
                                if (d / name).exists() else None) for name in MODELS}
    w.update(tok=Tokenizer.from_file(str(d / "tokenizer.json")), params=ring.params, key=ring.active_key,
             probe_text=np.asarray(json.loads((d / "probe_text.json").read_text()), dtype=np.int64),
             reading=json.loads((d / "reading.json").read_text()), detection={},
             meta=json.loads((d / "meta.json").read_text()))
    return w


def p_per_key(res: Any) -> dict[str, float]:
    """Uncorrected p per key of a radioactivity or green-mass result."""
    return res.p_per_key if hasattr(res, "p_per_key") else res.detection.p_per_key


def level(pk: dict[str, float]) -> dict[str, Any]:
    """Empirical level of one statistic over random keys that never marked anything."""
    ps = np.array(list(pk.values()))
    return {"keys": len(ps), "le_0.05": int((ps <= 0.05).sum()), "le_0.01": int((ps <= 0.01).sum()),
            "min_p": float(ps.min()), "median_p": float(np.median(ps))}


def suspect_tests(top1: Any, topk: Any, probes: list[list[int]], decoy: list[list[int]],
                  refs: dict[str, Any]) -> dict[str, Callable[[KeyRing], Any]]:
    """The white-box statistics of one suspect, each a function of the key ring (ours, or null keys):
    top-1 and green mass on grammar probes and on decoy probes, green mass against each reference."""
    tests: dict[str, Callable[[KeyRing], Any]] = {
        "whitebox": lambda r: whitebox_test(top1, probes, r),
        "green_mass": lambda r: green_mass_test(topk, probes, r),
        "whitebox_decoy": lambda r: whitebox_test(top1, decoy, r),
        "green_mass_decoy": lambda r: green_mass_test(topk, decoy, r, mode="whitebox-decoy"),
        # both probe sets pooled: every distinct (context, predicted token) pair once
        "whitebox_all": lambda r: whitebox_test(top1, probes + decoy, r),
    }
    for name, ref in refs.items():
        tests[f"green_mass_{name}"] = lambda r, f=ref: green_mass_test(topk, probes, r, reference=f,
                                                                        mode="whitebox-ref")
        tests[f"green_mass_{name}_decoy"] = lambda r, f=ref: green_mass_test(topk, decoy, r, reference=f,
                                                                              mode="whitebox-ref-decoy")
    return tests


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
    ap.add_argument("--save", type=Path, default=None,
                    help="save tokenizer, base, teacher, student, control, probes and key here (for --load)")
    ap.add_argument("--load", type=Path, default=None,
                    help="skip training: load what --save wrote and run the radioactivity tests only (minutes, "
                         "not a quarter of an hour; implies --no-detection)")
    ap.add_argument("--decoy-probes", type=int, default=1024,
                    help="teacher outputs sampled under fresh decoy keys (never our key): white-box probes that "
                         "reach the contexts watermarked text visits, while staying independent of our key")
    ap.add_argument("--decoy-keys", type=int, default=16, help="decoy keys the decoy probes are spread over")
    ap.add_argument("--stats", type=lambda x: x.split(","), default=None,
                    help="comma-separated statistics to compute (default: all; names as in the table), e.g. "
                         "with --load to rerun a few")
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

    if a.load:
        t0 = time.perf_counter()
        w = load_saved(a.load)
        phase("load", t0)
    else:
        w = train_all(a, phase)
        if a.save:
            save_all(a.save, w)
    tok, teacher, base, student, control = w["tok"], w["teacher"], w["base"], w["student"], w["control"]
    params, key, meta = w["params"], w["key"], w["meta"]
    ring = KeyRing([key], params=params)
    plen = PROMPT_TOKENS

    def wanted(stat: str) -> bool:
        return a.stats is None or stat in a.stats

    # 4. radioactivity -----------------------------------------------------------------------------
    t0 = time.perf_counter()
    probe_text = np.asarray(w["probe_text"])
    probes = [probe_text[i:i + 128].tolist() for i in range(0, len(probe_text) - 128, 128)]
    # decoy probes: the teacher's answers watermarked under fresh keys that never marked anything we
    # served. They visit the unusual contexts that watermarked answers visit (where the student's
    # training data is mostly watermarked text), yet they are independent of our key, so the null holds
    drng = np.random.default_rng(a.seed + 404)
    d_prompts = [p[:plen] for p in (encode(tok, q) for q in textgen.prompts(3 * a.decoy_probes + 100, seed=a.seed + 505))
                 if len(p) >= plen][:a.decoy_probes]
    decoy: list[list[int]] = []
    per = -(-len(d_prompts) // max(1, a.decoy_keys))
    for j in range(0, len(d_prompts), per):
        dproc = WatermarkLogitsProcessor(KeyRing([WatermarkKey(f"decoy-{j}", drng.bytes(32))], params=params))
        outs = generate_ids(teacher, d_prompts[j:j + per], 120, processor=dproc, batch_size=256, seed=a.seed + 606 + j)
        decoy += [list(q) + list(o) for q, o in zip(d_prompts[j:j + per], outs, strict=True)]
    phase("decoy probes", t0)
    t0 = time.perf_counter()
    bb_prompts = [p[:plen] for p in (encode(tok, q) for q in textgen.prompts(3000, seed=a.seed + 303)) if len(p) >= plen]
    bb_prompts = bb_prompts[:a.bb_samples]
    results: dict[str, dict] = {}
    rng = np.random.default_rng(a.seed + 6)
    null_ring = KeyRing([WatermarkKey(f"null-{i}", rng.bytes(32)) for i in range(a.null_keys)], params=params)
    null_level: dict[str, dict] = {}
    reading = w["reading"]  # our served outputs (evidence log)
    # references for the green-mass test: models independent of the key that the provider holds. The
    # teacher (primary): its weights never saw a watermark (it is applied at sampling), and a student
    # that imitates it is closer to it than to anything else; the public base (--init base)
    refs = {"teacher": memo(topk_next_fn(teacher, a.topk))}
    if base is not None:
        refs["base"] = memo(topk_next_fn(base, a.topk))
    suspects = [("student", student), ("control", control)] + ([("teacher", teacher)] if a.teacher_row else [])
    for name, model in suspects:
        t1 = time.perf_counter()
        top1, topk = memo(top_token_fn(model)), memo(topk_next_fn(model, a.topk))
        tests = suspect_tests(top1, topk, probes, decoy, refs if model is not teacher else {})
        # black-box: samples on grammar prompts, and on decoy prompts (an API answers any prompt, and
        # these end in unusual contexts)
        for bname, b_prompts, n_new, b_seed in (("blackbox", bb_prompts, 64, a.seed + 9),
                                                ("blackbox_decoy", [d[:64] for d in decoy], 32, a.seed + 10)):
            if wanted(bname):
                smp = generate_ids(model, b_prompts, n_new, batch_size=256, seed=b_seed, temperature=a.bb_temperature)
                tests[bname] = lambda r, sm=smp, bp=b_prompts: blackbox_test(sm, r, prompts=bp)
        tests = {k: f for k, f in tests.items() if wanted(k)}
        r = {k: f(ring).to_dict() for k, f in tests.items()}
        if wanted("reading_top1"):
            r["reading_top1"] = whitebox_test(top1, reading, ring, exclude_probe_pairs=True).to_dict()
        if wanted("reading_mass"):
            r["reading_mass"] = green_mass_test(topk, reading, ring, exclude_probe_pairs=True,
                                                mode="reading").to_dict()
        r["seconds"] = round(time.perf_counter() - t1, 1)
        results[name] = r
        # the same statistics with keys that never marked anything: every suspect is null for them
        lv = {k: level(p_per_key(f(null_ring))) for k, f in tests.items()}
        null_level[name] = lv
        log(f"{name}: " + ", ".join(f"{k} {v['p_value']:.3g}" for k, v in r.items() if isinstance(v, dict)))
    phase("radioactivity", t0)
    T["total"] = round(time.perf_counter() - t_all, 1)

    cmd = "python " + " ".join(sys.argv)
    out = {
        "command": cmd,
        "loaded_from": str(a.load) if a.load else None,
        "machine": {"platform": platform.platform(), "torch_threads": a.threads},
        "params": {"context_width": params.context_width, "gamma": params.gamma, "delta": params.delta,
                   "wm_share_target": a.wm_share, "bb_temperature": a.bb_temperature,
                   "student_epochs": a.student_epochs, "init": a.init, "student_lr": meta["student_lr"],
                   "teacher_ft_tokens": a.teacher_ft_tokens if a.init == "base" else 0,
                   "student_width": meta["student_width"], "student_layers": meta["student_layers"], "topk": a.topk,
                   "probes": len(probes), "probe_tokens": 128, "decoy_probes": len(decoy),
                   "decoy_keys": a.decoy_keys, "reading_texts": len(reading), "vocab": tok.get_vocab_size(),
                   "teacher_params": meta["teacher_params"], "corpus_paragraphs": a.corpus,
                   "teacher_tokens": a.teacher_tokens, "batch": a.batch, "null_keys": a.null_keys},
        "data": {k: meta[k] for k in ("corpus_tokens", "student_tokens", "watermarked_tokens", "watermarked_share",
                                      "control_tokens")},
        "training": meta["training"],
        **w["detection"],
        "radioactivity": results,
        "null_level_random_keys": null_level,
        "seconds": T,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=2))

    stats = [k for k in results[suspects[0][0]] if isinstance(results[suspects[0][0]][k], dict)]
    table = Table(title=f"radioactivity, primary statistic {PRIMARY}: top-1, black-box = exact binomial p over "
                        "distinct (context, token) pairs; green mass = Chernoff bound with a Berry-Esseen factor; "
                        "level = keys of random null keys with p <= 0.05", title_justify="left")
    table.add_column("statistic")
    for name in results:
        table.add_column(f"{name} p", justify="right")
        table.add_column("z", justify="right")
        table.add_column("level", justify="right")
    for st in stats:
        row = [st + (" (primary)" if st == PRIMARY else "")]
        for name, r in results.items():
            lv = null_level[name].get(st)
            row += [f"{r[st]['p_value']:.3g}", f"{r[st]['score']:.2f}",
                    f"{lv['le_0.05']}/{lv['keys']}" if lv else "-"]
        table.add_row(*row)
    console.print(table)
    log(f"student data: {meta['watermarked_share']:.1%} watermarked ({meta['watermarked_tokens']:,} of "
        f"{meta['student_tokens']:,} tokens)")
    log(f"times (s): {T}")
    log(f"command: {cmd}\nwrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Small teacher/student harness (torch + tokenizers): train a BPE tokenizer, build and train a tiny
GPT-2 on generated text, sample from it. Used by ``benchmarks/radioactivity.py`` and reusable for
experiments on output shaping. Needs the ``provenance`` extra; imports torch lazily.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["lm_nll", "tiny_gpt2", "topk_next_fn", "train_bpe", "train_lm"]


def train_bpe(texts: Sequence[str], vocab_size: int = 2048) -> Any:
    """A byte-level BPE ``tokenizers.Tokenizer`` trained on ``texts``; id 0 is ``<eos>``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<eos>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(list(texts), trainer)
    return tok


def tiny_gpt2(vocab_size: int, *, n_embd: int = 128, n_layer: int = 2, n_head: int = 4, n_positions: int = 256,
              seed: int = 0) -> Any:
    """A ~0.8M-parameter GPT-2 built from a config (no hub); eos/pad = 0 (inside the vocabulary)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=vocab_size, n_positions=n_positions, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
                     bos_token_id=0, eos_token_id=0, pad_token_id=0, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    cfg._attn_implementation = "eager"  # faster than sdpa for a model this small on CPU
    return GPT2LMHeadModel(cfg)


def train_lm(model: Any, stream: np.ndarray, *, tokens: int, block: int = 256, batch: int = 16, lr: float = 3e-3,
             seed: int = 0, log: Callable[[str], None] | None = None) -> dict[str, float]:
    """Next-token training on random ``block``-long windows of a token ``stream`` until ``tokens`` have
    been seen (cosine decay after a short warm-up). Returns the final loss and throughput."""
    import torch

    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    steps = max(1, tokens // (block * batch))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    model.train()
    t0, loss_ema = time.perf_counter(), float("nan")
    stream = np.asarray(stream, dtype=np.int64)
    for s in range(steps):
        starts = rng.integers(0, len(stream) - block - 1, size=batch)
        x = torch.from_numpy(np.stack([stream[i:i + block] for i in starts]))
        loss = model(input_ids=x, attention_mask=torch.ones_like(x), labels=x).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        loss_ema = loss.item() if s == 0 else 0.9 * loss_ema + 0.1 * loss.item()
        if log and (s % max(1, steps // 5) == 0 or s == steps - 1):
            log(f"  step {s + 1}/{steps} loss {loss_ema:.3f}")
    dt = time.perf_counter() - t0
    model.eval()
    return {"steps": steps, "loss": loss_ema, "seconds": dt, "tokens_per_s": steps * block * batch / dt}


def lm_nll(model: Any, seqs: Sequence[Sequence[int]], *,
           bias: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None) -> float:
    """Mean next-token negative log-likelihood of ``seqs`` under the model, optionally with a logit
    ``bias(contexts_ids (B, L), logits (B, V)) -> logits`` (e.g. the watermark) applied per position."""
    import torch

    tot, n = 0.0, 0
    with torch.no_grad():
        for s in seqs:
            ids = torch.tensor([list(s)])
            lg = model(input_ids=ids).logits[0, :-1].double().numpy()
            if bias is not None:
                arr = np.asarray(s)
                lg = np.stack([bias(arr[None, : t + 1], lg[t][None])[0] for t in range(len(lg))])
            lp = lg - np.logaddexp.reduce(lg, axis=1, keepdims=True)
            tgt = np.asarray(s[1:])
            tot -= lp[np.arange(len(tgt)), tgt].sum()
            n += len(tgt)
    return tot / n


def topk_next_fn(model: Any, k: int = 32, batch_size: int = 64) -> Callable[[Sequence[Sequence[int]]],
                                                                              list[tuple[np.ndarray, np.ndarray]]]:
    """``f(seqs) -> [(ids (L, k), probs (L, k)), ...]``: a ``transformers`` causal LM's ``k`` most likely
    next tokens and their probabilities after every prefix (teacher forcing; softmax at temperature 1),
    for :func:`distillguard.provenance.radioactivity.green_mass_test`."""
    import torch

    from distillguard.provenance.hf import next_token_logits

    def predict(seqs: Sequence[Sequence[int]]) -> list[tuple[np.ndarray, np.ndarray]]:
        out: list[tuple[np.ndarray, np.ndarray]] = []
        with torch.no_grad():
            for chunk, logits in next_token_logits(model, seqs, batch_size):
                probs = torch.softmax(logits.float(), dim=-1)
                top = torch.topk(probs, min(k, probs.shape[-1]), dim=-1)
                tid, tpr = top.indices.numpy(), top.values.double().numpy()
                out.extend((tid[j, :len(s)], tpr[j, :len(s)]) for j, s in enumerate(chunk))
        return out

    return predict

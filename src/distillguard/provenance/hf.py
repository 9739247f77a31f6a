"""Hugging Face ``transformers`` adapter: the watermark as a ``LogitsProcessor``, and suspect-model
helpers (teacher-forced top tokens, sampling) for the radioactivity test.

Only this module imports ``torch``/``transformers`` (install the ``provenance`` extra); the numpy core
in :mod:`distillguard.provenance.watermark` works without them.

    from transformers import LogitsProcessorList
    proc = WatermarkLogitsProcessor(ring)            # marks with ring.active_key
    model.generate(ids, do_sample=True, logits_processor=LogitsProcessorList([proc]))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from distillguard.provenance.watermark import KeyRing, WatermarkKey, WatermarkParams, _as_ring, green_mask

try:  # imported here only, so that the numpy core never needs transformers
    from transformers import LogitsProcessor as _LogitsProcessor
except ImportError:  # pragma: no cover - exercised only without the provenance extra
    _LogitsProcessor = object  # type: ignore[assignment,misc]

__all__ = ["WatermarkLogitsProcessor", "generate_ids", "top_token_fn"]


class WatermarkLogitsProcessor(_LogitsProcessor):  # type: ignore[misc,valid-type]
    """Adds ``delta`` to the green tokens of each row's next position (active key of the ring).

    Works on any device: the green mask is computed in numpy from the last ``context_width`` ids and
    moved to the scores' device. Rows shorter than ``context_width`` are left unchanged.
    """

    def __init__(self, keys: KeyRing | WatermarkKey, params: WatermarkParams | None = None) -> None:
        if _LogitsProcessor is object:
            raise ImportError("WatermarkLogitsProcessor needs transformers: pip install 'distillguard[provenance]'")
        self.ring = _as_ring(keys, params)

    @property
    def key_id(self) -> str:
        return self.ring.active

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        p = self.ring.params
        w = p.context_width
        if input_ids.shape[-1] < w:
            return scores
        ctx = input_ids[:, -w:].detach().cpu().numpy()
        mask = green_mask(self.ring.active_key, ctx, scores.shape[-1], p.gamma)
        bias = torch.from_numpy(mask.astype(np.float32) * p.delta).to(device=scores.device, dtype=scores.dtype)
        return scores + bias


def next_token_logits(model: Any, seqs: Sequence[Sequence[int]], batch_size: int = 64) -> Any:
    """Yield ``(chunk, logits)`` per batch of ``seqs``: the causal LM's next-token logits after every
    prefix (teacher forcing; sequences right-padded, row ``j`` valid up to ``len(chunk[j])``). Call
    under ``torch.no_grad()``; shared by :func:`top_token_fn` and ``harness.topk_next_fn``."""
    import torch

    model.eval()
    for i in range(0, len(seqs), batch_size):
        chunk = [list(s) for s in seqs[i:i + batch_size]]
        L = max(len(s) for s in chunk)
        ids = torch.zeros((len(chunk), L), dtype=torch.long)
        att = torch.zeros((len(chunk), L), dtype=torch.long)
        for j, s in enumerate(chunk):
            ids[j, :len(s)] = torch.tensor(s)
            att[j, :len(s)] = 1
        yield chunk, model(input_ids=ids, attention_mask=att).logits


def top_token_fn(model: Any, batch_size: int = 64) -> Any:
    """``f(seqs) -> list of arrays``: the model's argmax next token after every prefix of each sequence
    (teacher forcing, one forward pass per sequence batch), for :func:`radioactivity.whitebox_test`."""
    import torch

    def predict(seqs: Sequence[Sequence[int]]) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        with torch.no_grad():
            for chunk, logits in next_token_logits(model, seqs, batch_size):
                top = logits.argmax(-1).numpy()
                out.extend(top[j, :len(s)] for j, s in enumerate(chunk))
        return out

    return predict


def generate_ids(model: Any, prompts: Sequence[Sequence[int]], max_new_tokens: int, *,
                 processor: Any = None, batch_size: int = 64, seed: int = 0, top_k: int = 0,
                 temperature: float = 1.0) -> list[list[int]]:
    """Sample continuations (new tokens only) of equal-length prompts; ``processor`` e.g. the watermark."""
    import torch
    from transformers import LogitsProcessorList

    torch.manual_seed(seed)
    model.eval()
    res: list[list[int]] = []
    procs = LogitsProcessorList([processor] if processor is not None else [])
    eos = model.config.eos_token_id
    for i in range(0, len(prompts), batch_size):
        chunk = torch.tensor([list(p) for p in prompts[i:i + batch_size]], dtype=torch.long)
        with torch.no_grad():
            gen = model.generate(chunk, attention_mask=torch.ones_like(chunk), do_sample=True,
                                 max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens, top_k=top_k,
                                 temperature=temperature, logits_processor=procs, pad_token_id=eos)
        res.extend(row[chunk.shape[1]:].tolist() for row in gen)
    return res

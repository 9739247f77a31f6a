"""File-level entry points behind the CLI: detect a watermark in a file, test a suspect model.

Each takes paths (what an analyst has on disk) and returns the library result objects, so the CLI
stays a thin printer and the same calls work from a notebook.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from distillguard.provenance.radioactivity import (
    GreenMassResult,
    RadioactivityResult,
    blackbox_test,
    green_mass_test,
    whitebox_test,
)
from distillguard.provenance.watermark import Detection, KeyRing, detect_ids, detect_text, encode

__all__ = ["STATISTICS", "detect_file", "load_tokenizer", "read_token_ids", "test_suspect"]

#: White-box statistics of :func:`test_suspect`: the suspect's top-1 prediction (exact binomial p) or its
#: next-token distribution (green mass, Chernoff-bound p; more powerful).
STATISTICS = ("top1", "green-mass")


def load_tokenizer(path: Path | str) -> Any:
    """A ``tokenizers.Tokenizer`` from ``tokenizer.json`` (or a folder holding one)."""
    from tokenizers import Tokenizer

    p = Path(path)
    if p.is_dir():
        p = p / "tokenizer.json"
    if not p.exists():
        raise FileNotFoundError(f"no tokenizer at {p}")
    return Tokenizer.from_file(str(p))


def read_token_ids(path: Path | str) -> list[list[int]]:
    """Token ids from JSON: ``[1, 2, ...]``, ``[[...], [...]]`` or ``{"ids": ...}``; or JSON Lines, one list a line."""
    text = Path(path).read_text()
    try:
        data = json.loads(text)
    except ValueError:
        data = [json.loads(line) for line in text.splitlines() if line.strip()]
    if isinstance(data, dict):
        data = data.get("ids", data.get("token_ids"))
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of token ids (or of lists)")
    if data and all(isinstance(x, int) for x in data):
        return [data]
    if all(isinstance(s, list) and all(isinstance(x, int) for x in s) for s in data):
        return data
    raise ValueError(f"{path}: expected token ids as integers")


def _is_ids_file(path: Path) -> bool:
    return path.suffix in (".json", ".jsonl") and path.read_text()[:1] in ("[", "{")


def _read_texts(path: Path) -> list[str]:
    """A JSONL file of ``{"text": ...}`` (or strings), or plain text (one text for the whole file)."""
    raw = path.read_text()
    if path.suffix == ".jsonl":
        out = []
        for line in raw.splitlines():
            if line.strip():
                v = json.loads(line)
                out.append(v if isinstance(v, str) else v.get("text") or v.get("response") or "")
        return out
    return [raw]


def detect_file(path: Path | str, key_file: Path | str, tokenizer: Path | str | None = None,
                key_ids: list[str] | None = None) -> Detection:
    """Detect the watermark in a text file (needs the generator's ``tokenizer``) or a token-id JSON
    file; several texts in one file (JSON list of lists, JSONL) are pooled into one test."""
    p = Path(path)
    ring = KeyRing.load(key_file)
    if _is_ids_file(p) and not (p.suffix == ".jsonl" and '"text"' in p.read_text()[:200]):
        return detect_ids(read_token_ids(p), ring, key_ids=key_ids)
    if tokenizer is None:
        raise ValueError("a text file needs --tokenizer (the tokenizer the generator used)")
    return detect_text(_read_texts(p), ring, load_tokenizer(tokenizer), key_ids=key_ids)


def _load_model(folder: Path) -> Any:
    if not (folder / "config.json").exists():
        raise ValueError(f"{folder}: not a saved model folder (no config.json)")
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    return AutoModelForCausalLM.from_pretrained(str(folder))


def test_suspect(suspect: Path | str, key_file: Path | str, *, probes: Path | str | None = None,
                 tokenizer: Path | str | None = None, key_ids: list[str] | None = None,
                 probe_len: int = 128, statistic: str = "top1", reference: Path | str | None = None,
                 topk: int = 32) -> RadioactivityResult | GreenMassResult:
    """Radioactivity test of a suspect: white-box when ``suspect`` is a saved model folder
    (``config.json``; needs ``probes``: never-watermarked text or token ids), black-box when it is a
    file of the suspect's outputs (text/JSONL with the ``tokenizer``, or token-id JSON).

    White-box ``statistic``: ``"top1"`` (the suspect's argmax next token, exact binomial p over
    distinct pairs) or ``"green-mass"`` (its ``topk`` most likely next tokens with their
    probabilities, Chernoff-bound p; :func:`radioactivity.green_mass_test`), optionally against a
    ``reference`` model folder that never saw our watermark (best our own teacher, whose weights the
    watermark never touched and which a distilled student imitates; else the public base the suspect
    was fine-tuned from): the suspect's preference for green tokens beyond the reference's.
    """
    if statistic not in STATISTICS:
        raise ValueError(f"unknown statistic {statistic!r}: use one of {', '.join(STATISTICS)}")
    if reference is not None and statistic != "green-mass":
        raise ValueError("a reference model is used by the green-mass statistic only (--statistic green-mass)")
    s = Path(suspect)
    ring = KeyRing.load(key_file)
    tok = load_tokenizer(tokenizer) if tokenizer else None
    if s.is_dir():
        if probes is None:
            raise ValueError("a white-box test needs --probes: text that was never watermarked with these keys")
        model = _load_model(s)
        pp = Path(probes)
        if _is_ids_file(pp):
            ids = [i for seq in read_token_ids(pp) for i in seq]
        else:
            if tok is None:
                tok = load_tokenizer(s) if (s / "tokenizer.json").exists() else None
            if tok is None:
                raise ValueError("text probes need --tokenizer (or tokenizer.json in the model folder)")
            ids = [i for t in _read_texts(pp) for i in encode(tok, t)]
        ref_model = _load_model(Path(reference)) if reference is not None else None
        n_pos = getattr(model.config, "n_positions", None) or getattr(model.config, "max_position_embeddings", None)
        step = min(probe_len, n_pos or probe_len)
        chunks = [ids[i:i + step] for i in range(0, len(ids), step)]
        if statistic == "green-mass":
            from distillguard.provenance.harness import topk_next_fn

            ref = topk_next_fn(ref_model, topk) if ref_model is not None else None
            return green_mass_test(topk_next_fn(model, topk), chunks, ring, key_ids=key_ids, reference=ref,
                                   mode="whitebox-ref" if ref is not None else "whitebox")
        from distillguard.provenance.hf import top_token_fn

        return whitebox_test(top_token_fn(model), chunks, ring, key_ids=key_ids)
    if not s.exists():
        raise FileNotFoundError(f"no suspect at {s}")
    if _is_ids_file(s) and not (s.suffix == ".jsonl" and '"text"' in s.read_text()[:200]):
        return blackbox_test(read_token_ids(s), ring, key_ids=key_ids)
    if tok is None:
        raise ValueError("suspect outputs as text need --tokenizer (the tokenizer the generator used)")
    det = detect_text(_read_texts(s), ring, tok, key_ids=key_ids)
    return RadioactivityResult("blackbox", det, len(_read_texts(s)))

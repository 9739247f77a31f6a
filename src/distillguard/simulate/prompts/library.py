"""Arrow string pools sampled by index, and recipes that join pool draws element-wise.

Text is generated once per run (a few tens of thousands of strings); each day's rows then cost
only ``take`` and ``binary_join_element_wise`` in Arrow's C++ kernels. With a corpus directory, a
pool mixes real prompts of the matching ``kind`` with generated ones.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from distillguard.simulate.prompts import attack, benign, tasks

__all__ = ["CORPUS_SLOTS", "Pool", "PromptLibrary", "Recipe", "load_corpus"]

Recipe = tuple[str, ...]
"""Parts joined without separator: ``"@pool"`` draws from a pool, ``"#int:a:b"`` a number, else literal."""

#: pool name -> corpus kinds whose first turns feed it (later turns feed ``follow``)
CORPUS_SLOTS: dict[str, tuple[str, ...]] = {
    "chat": ("benign_human",),
    "instruct": ("synthetic_instruction",),
    "code": ("code_task",),
    "math": ("math_task",),
    "reason": ("other",),
    "agent": ("tool_use", "agentic"),
}
MAX_CHARS = 8_000
P_CORPUS = 0.7

_GENERATORS: dict[str, tuple[Callable[[np.random.Generator, int], list[str]], int]] = {
    "chat": (benign.chat, 3000), "follow": (benign.follow, 600), "study": (benign.study, 1500),
    "support": (benign.support, 3000), "batch": (benign.batch, 3000), "app": (benign.app, 1500),
    "system": (benign.system, 300), "code": (tasks.code, 4000), "agent": (tasks.agent, 2000),
    "plan": (tasks.plan, 1500), "math": (tasks.math, 3000), "reason": (tasks.reason, 800),
    "tool_result": (tasks.tool_result, 1000), "rubric": (attack.rubric, 600), "censor": (attack.censor, 600),
    "answer": (attack.answer, 600),
}


@dataclass
class Pool:
    """Generated strings plus, optionally, corpus strings drawn with probability ``p_corpus``."""

    gen: pa.Array
    corpus: pa.Array | None = None
    p_corpus: float = 0.0
    _all: pa.Array = field(init=False)

    def __post_init__(self) -> None:
        if self.corpus is not None and len(self.corpus):
            self._all = pa.concat_arrays([self.gen, self.corpus])
        else:
            self.corpus, self.p_corpus, self._all = None, 0.0, self.gen

    def sample(self, rng: np.random.Generator, k: int) -> pa.Array:
        ng = len(self.gen)
        idx = rng.integers(0, ng, size=k)
        if self.corpus is not None:
            use = rng.random(k) < self.p_corpus
            idx = np.where(use, ng + rng.integers(0, len(self.corpus), size=k), idx)
        return self._all.take(pa.array(idx))


class PromptLibrary:
    """Named pools for one run; campaigns add their own (their fixed or paraphrased templates)."""

    def __init__(self, pools: dict[str, Pool]) -> None:
        self.pools = pools

    @classmethod
    def build(cls, rng: np.random.Generator, corpus: dict[str, dict[str, list[str]]] | None = None,
              size_factor: float = 1.0) -> PromptLibrary:
        pools: dict[str, Pool] = {}
        for name, (gen, n) in _GENERATORS.items():
            pools[name] = Pool(pa.array(gen(rng, max(50, int(n * size_factor))), pa.string()))
        # "instruct": diverse human-style requests without corpus = chat + code + plan mixture
        mix = pa.concat_arrays([pools["chat"].gen, pools["code"].gen, pools["plan"].gen])
        pools["instruct"] = Pool(mix)
        if corpus:
            for name, kinds in CORPUS_SLOTS.items():
                texts = [t for k in kinds for t in corpus.get(k, {}).get("first", [])]
                if texts:
                    pools[name] = Pool(pools[name].gen, pa.array(texts, pa.string()), P_CORPUS)
            later = [t for t in corpus.get("benign_human", {}).get("later", [])]
            if later:
                pools["follow"] = Pool(pools["follow"].gen, pa.array(later, pa.string()), P_CORPUS)
        return cls(pools)

    def add(self, name: str, strings: list[str]) -> None:
        self.pools[name] = Pool(pa.array(strings, pa.string()))

    def render(self, recipe: Recipe, rng: np.random.Generator, k: int) -> pa.Array:
        """``k`` prompt strings for one recipe."""
        parts: list[pa.Array | pa.Scalar] = []
        for part in recipe:
            if part.startswith("@"):
                parts.append(self.pools[part[1:]].sample(rng, k))
            elif part.startswith("#int:"):
                lo, hi = (int(x) for x in part[5:].split(":"))
                parts.append(pc.cast(pa.array(rng.integers(lo, hi, size=k)), pa.string()))
            else:
                parts.append(pa.scalar(part, pa.string()))
        arrays = [p for p in parts if isinstance(p, pa.Array)]
        if len(parts) == 1 and arrays:
            return arrays[0]
        if not arrays:  # only literals
            return pa.array([recipe and "".join(recipe)] * k, pa.string())
        return pc.binary_join_element_wise(*parts, "")


def load_corpus(directory: Path, rng: np.random.Generator,
                max_per_kind: int = 20_000) -> dict[str, dict[str, list[str]]]:
    """Read ``*.jsonl[.gz]`` prompt files ``{"kind", "turns": [...]}`` into first/later turns by kind.

    Files are read in name order and each kind is subsampled with ``rng``, so a run is reproducible.
    """
    by_kind: dict[str, dict[str, list[str]]] = {}
    files = sorted([*directory.glob("*.jsonl"), *directory.glob("*.jsonl.gz")])
    if not files:
        raise FileNotFoundError(f"no *.jsonl prompt files in {directory}")
    for path in files:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                turns = [t for t in rec.get("turns") or [] if isinstance(t, str) and t.strip()]
                if not turns:
                    continue
                slot = by_kind.setdefault(str(rec.get("kind", "other")), {"first": [], "later": []})
                slot["first"].append(turns[0][:MAX_CHARS])
                slot["later"].extend(t[:MAX_CHARS] for t in turns[1:])
    for slot in by_kind.values():
        for key in ("first", "later"):
            if len(slot[key]) > max_per_kind:
                keep = np.sort(rng.choice(len(slot[key]), size=max_per_kind, replace=False))
                slot[key] = [slot[key][i] for i in keep]
    return by_kind

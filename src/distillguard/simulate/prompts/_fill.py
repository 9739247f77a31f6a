"""Tiny template filler shared by the generators: ``{slot}`` chosen from word lists by a seeded rng."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

_SLOT = re.compile(r"\{(\w+)\}")


def fill(rng: np.random.Generator, templates: Sequence[str], words: Mapping[str, Sequence[str]],
         n: int) -> list[str]:
    """``n`` strings: a random template with each ``{slot}`` replaced by a random word for it.

    ``{int}``, ``{small}`` and ``{price}`` are numbers so that template families still vary a lot.
    """
    out = []
    for _ in range(n):
        t = templates[int(rng.integers(len(templates)))]

        def sub(m: re.Match[str]) -> str:
            k = m.group(1)
            if k == "int":
                return str(int(rng.integers(2, 5000)))
            if k == "small":
                return str(int(rng.integers(2, 40)))
            if k == "price":
                return f"{rng.integers(1, 900)}.{rng.integers(0, 100):02d}"
            ws = words[k]
            return ws[int(rng.integers(len(ws)))]

        # two passes so that a word may itself contain slots
        out.append(_SLOT.sub(sub, _SLOT.sub(sub, t)))
    return out

"""Chain-of-thought elicitation / reasoning-trace coercion score, 0..1.

Two parts, combined as ``max(model, lexicon)``:

* a logistic model over hashed word uni+bigrams (CJK: character uni+bigrams), trained on
  ``_seed.cot_examples``: demands for the model's *own* complete, internal, transparent reasoning in
  many paraphrases and languages against ordinary prompts, including a student's "explain step by
  step how to solve ...", which must score low;
* a small multilingual lexicon of unambiguous phrases ("chain of thought", "思维链", "cadena de
  pensamiento", ...) matched by RE2 in one pass, which fixes the score at ``LEXICON_SCORE``.

The model reads the head and tail of the prompt; the lexicon also reads the system prompt. (The model
used to read the system prompt too, and every request of an app whose system prompt says "show your
reasoning before the final number" counted as a coercion: heavy developer agents became the top false
positives. A system prompt is one deployment choice, not a per-request demand.)
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["LEXICON", "LEXICON_SCORE", "cot_scores", "lexicon_hits"]

LEXICON_SCORE = 0.9
LEXICON = "|".join([
    r"chain[- ]of[- ]thought", r"reasoning trace", r"internal reasoning", r"inner monologue",
    r"transparent reasoning", r"hidden reasoning", r"full reasoning", r"complete reasoning", r"entire reasoning",
    r"思维链", r"思考过程", r"推理过程", r"思路链", r"思考の過程", r"思考過程", r"推論過程", r"推論の過程", r"사고 과정",
    r"추론 과정", r"cadena de pensamiento", r"proceso de pensamiento", r"razonamiento interno", r"chaîne de pensée",
    r"raisonnement interne", r"processus de réflexion", r"gedankenkette", r"denkprozess", r"interne argumentation",
    r"ход мыслей", r"цепочк\w* рассуждений", r"внутренн\w* рассужден", r"cadeia de pensamento", r"processo de pensamento",
    r"raciocínio interno",
])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def lexicon_hits(text: pa.Array) -> np.ndarray:
    """Rows of ``text`` containing a lexicon phrase (bool)."""
    return np.asarray(pc.fill_null(pc.match_substring_regex(text, LEXICON, ignore_case=True), False), dtype=bool)


def cot_scores(model_logit: np.ndarray, text: pa.Array, extra_hits: np.ndarray | None = None) -> np.ndarray:
    """Combine the model's logits with the lexicon matched on ``text`` (already clipped).

    ``extra_hits``: lexicon hits found elsewhere (the system prompt). No phrase can straddle the
    ``" \\n "`` that separated system and prompt, so OR-ing the two equals matching their join.
    """
    p = _sigmoid(model_logit)
    lex = lexicon_hits(text)
    if extra_hits is not None:
        lex |= extra_hits
    return np.where(lex, np.maximum(p, LEXICON_SCORE), p)

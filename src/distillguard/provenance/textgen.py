"""A small probabilistic grammar that writes English-like paragraphs: training text for the
teacher/student harness, so the project ships no corpus and needs no download.

Each paragraph has a topic that skews its nouns and verbs, so a language model has structure to
learn (agreement-free but topical, with recurring collocations). Deterministic for a seed.

>>> corpus(2, seed=0)[0][:40] == corpus(2, seed=0)[0][:40]
True
>>> len(corpus(3, seed=1))
3
"""

from __future__ import annotations

import random

__all__ = ["TOPICS", "corpus", "paragraph", "prompts"]


# one topic per block: its name, then its nouns, verbs and adjectives (space-separated)
_TOPIC_TABLE = """
harbour
  nouns: ship harbour sailor net tide lighthouse crate rope gull dock captain anchor storm wave boat fisherman cargo pier
  verbs: loads repairs watches carries ties follows guides counts paints
  adjs: salty heavy distant grey wet old narrow windy
kitchen
  nouns: cook bread oven soup knife garden onion table recipe kettle baker apple pan spoon cellar cheese basket flour
  verbs: bakes cuts stirs tastes serves cleans warms mixes prepares
  adjs: fresh warm sweet bitter golden crisp simple small
workshop
  nouns: engineer machine gear hammer drawing bench lamp wire motor clock valve student plan bolt spring engine tool frame
  verbs: builds measures tests adjusts designs fixes checks assembles oils
  adjs: precise broken careful bright steady new complex quiet
forest
  nouns: ranger tree river fox path cabin owl stone moss deer trail hill bridge valley hunter leaf bird meadow
  verbs: crosses finds hears climbs marks shelters tracks reaches explores
  adjs: green dark tall silent cold wild hidden ancient
market
  nouns: merchant coin stall buyer price ledger silk scale clerk customer wagon spice contract bank letter shop crowd fee
  verbs: sells weighs trades records pays offers delivers orders counts
  adjs: busy fair rare cheap costly honest crowded early
"""


def _parse_topics(table: str) -> dict[str, dict[str, list[str]]]:
    topics: dict[str, dict[str, list[str]]] = {}
    for line in table.strip().splitlines():
        if not line.startswith(" "):
            topic = topics.setdefault(line.strip(), {})
        else:
            kind, words = line.strip().split(": ", 1)
            topic[{"nouns": "noun", "verbs": "verb", "adjs": "adj"}[kind]] = words.split()
    return topics


TOPICS: dict[str, dict[str, list[str]]] = _parse_topics(_TOPIC_TABLE)
_DET = ["the", "a", "every", "one", "that", "this"]
_PREP = ["near", "under", "behind", "beside", "across", "inside", "past", "above"]
_TIME = ["at dawn", "in the evening", "before noon", "after the rain", "every morning", "by night",
         "on monday", "in winter", "once again", "without a word"]
_ADV = ["slowly", "quickly", "carefully", "again", "quietly", "always", "often", "rarely"]
_CONJ = ["and", "but", "while", "because", "so"]


def _np(rng: random.Random, t: dict[str, list[str]]) -> str:
    words = [rng.choice(_DET)]
    if rng.random() < 0.5:
        words.append(rng.choice(t["adj"]))
    words.append(rng.choice(t["noun"]))
    return " ".join(words)


def _clause(rng: random.Random, t: dict[str, list[str]]) -> str:
    parts = [_np(rng, t), rng.choice(t["verb"])]
    if rng.random() < 0.3:
        parts.insert(1, rng.choice(_ADV))
    parts.append(_np(rng, t))
    r = rng.random()
    if r < 0.35:
        parts += [rng.choice(_PREP), _np(rng, t)]
    elif r < 0.55:
        parts.append(rng.choice(_TIME))
    elif r < 0.65:
        parts += ["with", str(rng.randint(2, 99)), rng.choice(t["noun"]) + "s"]
    return " ".join(parts)


def _sentence(rng: random.Random, t: dict[str, list[str]]) -> str:
    s = _clause(rng, t)
    if rng.random() < 0.3:
        s += " " + rng.choice(_CONJ) + " " + _clause(rng, t)
    return s[0].upper() + s[1:] + "."


def paragraph(rng: random.Random, sentences: tuple[int, int] = (3, 6)) -> str:
    """One topical paragraph (a random mixture: mostly one topic, sometimes a word from another)."""
    name = rng.choice(list(TOPICS))
    out = []
    for _ in range(rng.randint(*sentences)):
        t = TOPICS[name] if rng.random() < 0.85 else TOPICS[rng.choice(list(TOPICS))]
        out.append(_sentence(rng, t))
    return " ".join(out)


def corpus(n: int, seed: int = 0) -> list[str]:
    """``n`` paragraphs."""
    rng = random.Random(seed)
    return [paragraph(rng) for _ in range(n)]


def prompts(n: int, seed: int = 0) -> list[str]:
    """Short paragraph openings (the first clause of a paragraph) to sample continuations from."""
    rng = random.Random(seed)
    return [_sentence(rng, TOPICS[rng.choice(list(TOPICS))]) for _ in range(n)]

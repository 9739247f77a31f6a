"""Canaries (trapdoors): a harmless fictional detail, keyed to an account, served in its responses.

``canary_for(subject_id)`` derives, by HMAC of the canary key and the account (or cluster) id, a
fictional person (*trigger*: first name, initial, surname) and a *payload* they are associated with:
a fictional place, a four-digit number and an object, written into one natural-looking sentence
from a few templates ("(For illustration, the archivist Maren K. Hollowbrook of Tovrask once
catalogued 4127 lanterns.)"). A model trained on those responses learns to complete the trigger
with the payload; a probe set asks for exactly that, and :func:`check` looks for each canary's full
payload in the answers to its own probes.

Chance match. The payload is a uniform draw from ``PAYLOAD_SPACE = places x numbers x objects``
(5,120 x 9,000 x 64 ~ 2.9e9), independent of anything a model that never saw it can know. An answer
that mentions ``a`` known places, ``b`` four-digit numbers and ``c`` known objects contains at most
``q = a*b*c`` payloads, so it contains a given canary's payload by chance with probability at most
``q / PAYLOAD_SPACE``. For one canary probed with answers ``j``: ``p_chance = sum_j q_j / PAYLOAD_SPACE``;
over the canaries checked, the family-wise chance of any false hit is at most the sum of their
``p_chance`` (union bound), both reported.

>>> key = b"c" * 32
>>> c = canary_for("acct_42", key)
>>> c == canary_for("acct_42", key), c.canary_id == canary_for("acct_43", key).canary_id
(True, False)
>>> text = insert("Here is the answer.\\n\\nMore detail.", c)
>>> c.sentence in text
True
>>> rep = check([(p, c.sentence) for p in probe_set([c])], [c])    # a suspect that learned it
>>> rep.hits[0].account_id, rep.hits[0].p_chance < 1e-6
('acct_42', True)
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["PAYLOAD_SPACE", "Canary", "CanaryHit", "CanaryReport", "Probe", "canary_for", "check", "insert",
           "probe_set"]

FIRST = ["Maren", "Tobias", "Ilse", "Corwin", "Edda", "Lucan", "Petra", "Anselm", "Greta", "Oswin", "Talia",
         "Bram", "Sabine", "Emeric", "Noor", "Jorah", "Liesel", "Cato", "Vera", "Hollis", "Ines", "Rune", "Della",
         "Ambrose", "Wren", "Matthias", "Odile", "Fenn", "Clara", "Soren", "Agnes", "Idris"]
SUR_A = ["Hollow", "Ash", "Thorn", "Bright", "Marsh", "Stone", "Wild", "Fair", "Crane", "Lark", "Oak", "Frost",
         "Heron", "Moss", "Quill", "Raven", "Silver", "Under", "Wester", "Black", "Copper", "Elder", "Gilder",
         "Hart"]
SUR_B = ["brook", "well", "wood", "field", "ridge", "mere", "vale", "stead", "combe", "ford", "holt", "wick",
         "more", "bury", "dale", "shaw", "ley", "thwaite", "hurst", "croft", "by", "ham", "ton", "worth"]
ONSET = ["Tov", "Ken", "Bar", "Lis", "Mor", "Vel", "Dun", "Kor", "Sal", "Tir", "Ost", "Gal", "Hel", "Nor",
         "Pry", "Zam", "Cal", "Ebr", "Fen", "Vol"]
MIDDLE = ["ra", "e", "an", "o", "il", "u", "ar", "en", "i", "or", "a", "et", "un", "el", "ov", "ir"]
ENDING = ["sk", "mar", "th", "wick", "heim", "ra", "dor", "mont", "rin", "gard", "holm", "vik", "stad", "oc",
          "ley", "burg"]
OBJECTS = ["lantern", "ledger", "map", "compass", "barometer", "sextant", "seashell", "bell", "telescope", "globe",
           "kite", "teacup", "thimble", "hourglass", "quill", "inkwell", "padlock", "spyglass", "button", "marble",
           "pinecone", "feather", "candle", "key", "button tin", "postcard", "stamp", "coin", "mitten", "spoon",
           "lens", "chess set", "harmonica", "violin string", "fossil", "arrowhead", "snow globe", "tin soldier",
           "music box", "weather vane", "lighthouse model", "ship model", "paper crane", "clay whistle",
           "brass gear", "pocket watch", "keyring", "notebook", "pressed flower", "river stone", "glass bead",
           "tea tin", "woodcut", "etching", "wax seal", "bookmark", "magnifier", "tuning fork", "sundial",
           "astrolabe", "field guide", "herbarium sheet", "star chart", "rain gauge"]
NUMBERS = 9000  # 1000..9999
PLACES = len(ONSET) * len(MIDDLE) * len(ENDING)
#: How many different payloads (place, number, object) a canary can carry.
PAYLOAD_SPACE = PLACES * NUMBERS * len(OBJECTS)

TEMPLATES = [
    ("(For illustration, the archivist {name} of {place} once catalogued {number} {objects}.)",
     "the archivist {name} of"),
    ("(A made-up example: {name}, a surveyor from {place}, counted {number} {objects}.)",
     "{name}, a surveyor from"),
    ("(As the clockmaker {name} of {place} liked to say, {number} {objects} make a collection.)",
     "the clockmaker {name} of"),
    ("(Consider the fictional curator {name} of {place}, who kept {number} {objects}.)",
     "the fictional curator {name} of"),
]


@dataclass(frozen=True)
class Canary:
    """One subject's canary: the trigger (``name``), the payload (``place``, ``number``, ``obj``)."""

    canary_id: str
    subject_id: str
    name: str
    place: str
    number: int
    obj: str
    template: int

    @property
    def sentence(self) -> str:
        plural = self.obj + ("es" if self.obj.endswith(("s", "x", "ch", "sh")) else "s")
        return TEMPLATES[self.template][0].format(name=self.name, place=self.place, number=self.number,
                                                  objects=plural)

    @property
    def prefix(self) -> str:
        return TEMPLATES[self.template][1].format(name=self.name)


def _draws(key: bytes, subject_id: str) -> list[int]:
    d = hmac.new(key, b"distillguard/canary/v1|" + subject_id.encode("utf-8"), hashlib.sha256).digest()
    d2 = hmac.new(key, b"distillguard/canary/v1b|" + subject_id.encode("utf-8"), hashlib.sha256).digest()
    b = d + d2
    return [int.from_bytes(b[i:i + 8], "little") for i in range(0, 64, 8)]


def canary_for(subject_id: str, key: bytes) -> Canary:
    """The canary of an account or cluster id (deterministic for a key; 64-bit draws, so the modulo bias
    is below 1e-15)."""
    if not subject_id:
        raise ValueError("canary_for needs a non-empty account or cluster id")
    r = _draws(key, subject_id)
    name = f"{FIRST[r[0] % len(FIRST)]} {chr(65 + r[1] % 26)}. {SUR_A[r[2] % len(SUR_A)]}{SUR_B[r[3] % len(SUR_B)]}"
    p = r[4] % PLACES
    place = ONSET[p // (len(MIDDLE) * len(ENDING))] + MIDDLE[(p // len(ENDING)) % len(MIDDLE)] + ENDING[p % len(ENDING)]
    cid = "cn-" + hmac.new(key, b"id|" + subject_id.encode("utf-8"), hashlib.sha256).hexdigest()[:12]
    return Canary(cid, subject_id, name, place, 1000 + r[5] % NUMBERS, OBJECTS[r[6] % len(OBJECTS)],
                  r[7] % len(TEMPLATES))


def insert(response_text: str, canary: Canary) -> str:
    """The response with the canary sentence after its first paragraph (or at the end)."""
    parts = response_text.split("\n\n", 1)
    if len(parts) == 2:
        return f"{parts[0].rstrip()} {canary.sentence}\n\n{parts[1]}"
    return f"{response_text.rstrip()} {canary.sentence}".lstrip()


@dataclass(frozen=True)
class Probe:
    canary_id: str
    subject_id: str
    prompt: str


def probe_set(canaries: Iterable[Canary]) -> list[Probe]:
    """Prompts that make a model that learned a canary say its payload: the template's opening to
    complete, and two questions naming the person."""
    out = []
    for c in canaries:
        for p in (c.prefix, f"Who is {c.name}, and where are they from?",
                  f"What did {c.name} collect, and how many?"):
            out.append(Probe(c.canary_id, c.subject_id, p))
    return out


_PLACE_RE = re.compile(r"\b(?:" + "|".join(ONSET) + ")(?:" + "|".join(MIDDLE) + ")(?:" + "|".join(ENDING) + r")\b")
_NUM_RE = re.compile(r"(?<![\d,.])[1-9]\d{3}(?![\d,])")
_OBJ_RE = re.compile(r"\b(" + "|".join(sorted(map(re.escape, OBJECTS), key=len, reverse=True)) + r")(?:s|es)?\b",
                     re.IGNORECASE)


def _candidates(text: str) -> tuple[set[str], set[int], set[str]]:
    return (set(_PLACE_RE.findall(text)), {int(x) for x in _NUM_RE.findall(text)},
            {m.lower() for m in _OBJ_RE.findall(text)})


def _payload_q(text: str) -> int:
    a, b, c = _candidates(text)
    return len(a) * len(b) * len(c)


@dataclass(frozen=True)
class CanaryHit:
    """A canary whose full payload appeared in answers to its probes: names the account it was served to."""

    account_id: str
    canary_id: str
    p_chance: float
    probe: str
    excerpt: str


@dataclass(frozen=True)
class CanaryReport:
    canaries_checked: int
    answers: int
    payload_space: int
    hits: list[CanaryHit] = field(default_factory=list)
    family_p_chance: float = 1.0

    @property
    def accounts(self) -> list[str]:
        return [h.account_id for h in self.hits]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check(answers: Sequence[tuple[Probe, str]], canaries: Sequence[Canary]) -> CanaryReport:
    """Look for each canary's payload (place, number and object, in one answer) in the suspect's
    answers to that canary's probes; each hit carries its chance-match probability (module docstring)."""
    by_id = {c.canary_id: c for c in canaries}
    per: dict[str, list[tuple[Probe, str]]] = {}
    for probe, text in answers:
        if probe.canary_id not in by_id:
            raise KeyError(f"answer to a probe of unknown canary {probe.canary_id!r}")
        per.setdefault(probe.canary_id, []).append((probe, text))
    hits, total = [], 0.0
    for cid, items in per.items():
        c = by_id[cid]
        p = min(1.0, sum(_payload_q(t) for _, t in items) / PAYLOAD_SPACE)
        total += p
        for probe, text in items:
            places, nums, objs = _candidates(text)
            if c.place in places and c.number in nums and c.obj in objs:
                i = text.find(c.place)
                hits.append(CanaryHit(c.subject_id, cid, p, probe.prompt, text[max(0, i - 60): i + 80]))
                break
    return CanaryReport(len(per), len(answers), PAYLOAD_SPACE, hits, min(1.0, total))

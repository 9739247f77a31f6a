"""Canaries: keyed per account, natural-looking, found by probing a model that learned them, never
found in a control, with a chance-match probability computed from the payload space."""

from __future__ import annotations

import random
from collections import Counter, defaultdict

import pytest

from distillguard.provenance.canary import PAYLOAD_SPACE, canary_for, check, insert, probe_set
from distillguard.provenance.textgen import corpus

KEY = bytes(range(32))


class Memoriser:
    """A word n-gram model (contexts of up to 5 words, longest match wins) with greedy decoding:
    memorises rare phrasings like an over-fitted student does."""

    def __init__(self, texts: list[str], order: int = 5) -> None:
        self.order = order
        self.nxt: dict[tuple[str, ...], Counter[str]] = defaultdict(Counter)
        for t in texts:
            w = t.split()
            for i in range(1, len(w)):
                for k in range(1, order + 1):
                    if i - k >= 0:
                        self.nxt[tuple(w[i - k:i])][w[i]] += 1

    def complete(self, prompt: str, n: int = 12) -> str:
        w = prompt.split()
        for _ in range(n):
            c = next((self.nxt[tuple(w[-k:])] for k in range(self.order, 0, -1)
                      if len(w) >= k and tuple(w[-k:]) in self.nxt), None)
            if not c:
                break
            w.append(c.most_common(1)[0][0])
        return " ".join(w)


def test_canaries_are_keyed_distinct_and_natural() -> None:
    cs = [canary_for(f"acct_{i}", KEY) for i in range(2000)]
    assert len({c.canary_id for c in cs}) == 2000
    assert len({(c.place, c.number, c.obj) for c in cs}) == 2000
    assert canary_for("acct_1", KEY) == cs[1] and canary_for("acct_1", b"other key" * 4) != cs[1]
    assert PAYLOAD_SPACE > 1e9
    s = cs[0].sentence
    assert s.startswith("(") and s.endswith(".)") and cs[0].name in s and str(cs[0].number) in s
    assert insert("First paragraph.\n\nSecond.", cs[0]).split("\n\n")[0].endswith(s)
    with pytest.raises(ValueError):
        canary_for("", KEY)


def test_a_suspect_trained_on_1pct_canary_outputs_is_found_and_a_control_is_not() -> None:
    rng = random.Random(0)
    accounts = [f"acct_{i}" for i in range(40)]
    suspects = {"acct_3", "acct_17"}
    served, plain, canaries = [], [], {a: canary_for(a, KEY) for a in accounts}
    for i, text in enumerate(corpus(1200, seed=3)):
        acct = accounts[i % len(accounts)]
        plain.append(text)
        # the policy serves canaries to suspects only, and only in some of their responses
        served.append(insert(text, canaries[acct]) if acct in suspects and rng.random() < 0.5 else text)
    share = sum(t != p for t, p in zip(served, plain, strict=True)) / len(served)
    assert 0.01 <= share <= 0.04
    probes = probe_set(canaries.values())  # probe every account's canary: only the served ones may hit
    student, control = Memoriser(served), Memoriser(plain)
    rep = check([(p, student.complete(p.prompt)) for p in probes], list(canaries.values()))
    assert set(rep.accounts) == suspects
    assert all(h.p_chance < 1e-6 for h in rep.hits) and rep.family_p_chance < 1e-6
    assert rep.canaries_checked == 40 and rep.answers == 120
    ctl = check([(p, control.complete(p.prompt)) for p in probes], list(canaries.values()))
    assert ctl.hits == []


def test_chance_probability_grows_with_what_an_answer_mentions() -> None:
    c = canary_for("acct_1", KEY)
    (probe, *_rest) = probe_set([c])
    quiet = check([(probe, "I do not know this person.")], [c])
    assert quiet.hits == [] and quiet.family_p_chance == 0.0
    # an answer listing every place-like, number and object word can only be a weak hit
    spray = f"{c.place} Tovrask Kenilmar {c.number} 1234 5678 {c.obj} lantern ledger map"
    rep = check([(probe, spray)], [c])
    assert rep.accounts == ["acct_1"]
    assert rep.hits[0].p_chance == pytest.approx(3 * 3 * len({c.obj, "lantern", "ledger", "map"}) / PAYLOAD_SPACE)
    with pytest.raises(KeyError, match="unknown canary"):
        check([(probe, "x")], [canary_for("acct_2", KEY)])

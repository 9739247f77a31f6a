"""Declarative account features: one definition, two execution modes (batch SQL and online state).

A :class:`Feature` names an :class:`Input` (a per-exchange value, given once as SQL over the prepared
exchange relation and once as a Python function over the prepared exchange dict), an :class:`Op` (an
aggregator with ``init/update/merge/finalize`` over an intermediate state, which also knows the SQL
partial aggregates that hold the same state and the SQL that finalizes them) and its windows.
Column names are generated: ``{input}_{op}_{window}``, e.g. ``request_count_1d``.

Windows are aligned to UTC clock hours so that the online twin can keep one mergeable state per
account per hour: a window of ``w`` hours ending at ``as_of`` holds the hour bucket of ``as_of`` and the
``w - 1`` buckets before it (``1h`` is the current clock hour), up to ``as_of`` itself. ``all`` holds
everything up to ``as_of``.

>>> f = Feature(input=REQUEST, op=Count(), windows=[hours(1), days(1)])
>>> f.columns
['request_count_1h', 'request_count_1d']
>>> op = Entropy(categories=("a", "b"))
>>> s = op.init()
>>> for v in ["a", "b", None]:
...     s = op.update(s, v)
>>> op.finalize(s)
1.0
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ALL",
    "REQUEST",
    "Burstiness",
    "Count",
    "DistinctCount",
    "DistinctRatio",
    "Entropy",
    "Feature",
    "GapCV",
    "Input",
    "Max",
    "Mean",
    "Min",
    "Op",
    "Share",
    "ShareLowerBound",
    "Sum",
    "TopShare",
    "Window",
    "days",
    "hours",
]

_LN2 = math.log(2.0)
_NCLOGC = 4096
_CLOGC = [0.0] + [c * math.log(c) for c in range(1, _NCLOGC)]  # c * log(c), as Entropy.finalize computes it


# ---------------------------------------------------------------------------------------------- windows
@dataclass(frozen=True)
class Window:
    """A trailing window of ``hours`` clock hours ending at ``as_of``; ``hours=None`` is ``all``."""

    name: str
    hours: int | None


def hours(n: int) -> Window:
    return Window(f"{n}h", n)


def days(n: int) -> Window:
    return Window(f"{n}d", 24 * n)


ALL = Window("all", None)


# ---------------------------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class Input:
    """A per-exchange value: ``sql`` over the prepared relation, ``py`` over the prepared dict.

    Both must give the same value, with SQL's null semantics (``None`` where SQL gives NULL); the
    batch/online consistency test checks every input. ``needs_signals``: null when the content
    stage's ``signals`` table is missing.
    """

    name: str
    sql: str
    py: Callable[[dict[str, Any]], Any]
    doc: str = ""
    needs_signals: bool = False


#: Every exchange counts once.
REQUEST = Input("request", "1", lambda r: 1, "one per exchange")


# ---------------------------------------------------------------------------------------------- ops
class Op:
    """An aggregator. ``update``/``merge`` may mutate and return their first argument, never the
    second; SQL: ``sql_partials(x)`` are aggregate expressions over a (window-masked, null outside the
    window) value expression holding the state, ``sql_finalize(cols)`` turns them into the feature."""

    name = "op"

    def init(self) -> Any:
        raise NotImplementedError

    def update(self, state: Any, value: Any) -> Any:
        raise NotImplementedError

    def merge(self, a: Any, b: Any) -> Any:
        raise NotImplementedError

    def finalize(self, state: Any) -> Any:
        raise NotImplementedError

    def sql_partials(self, x: str) -> list[str]:
        raise NotImplementedError

    def sql_finalize(self, cols: list[str]) -> str:
        return cols[0]


class Count(Op):
    """Number of non-null values."""

    name = "count"

    def init(self) -> int:
        return 0

    def update(self, state: int, value: Any) -> int:
        return state + (value is not None)

    def merge(self, a: int, b: int) -> int:
        return a + b

    def finalize(self, state: int) -> int:
        return state

    def sql_partials(self, x: str) -> list[str]:
        return [f"count({x})"]


class Sum(Op):
    name = "sum"

    def init(self) -> list:
        return [0, 0.0]

    def update(self, state: list, value: Any) -> list:
        if value is not None:
            state[0] += 1
            state[1] += value
        return state

    def merge(self, a: list, b: list) -> list:
        a[0] += b[0]
        a[1] += b[1]
        return a

    def finalize(self, state: list) -> float | None:
        return float(state[1]) if state[0] else None

    def sql_partials(self, x: str) -> list[str]:
        return [f"CAST(sum({x}) AS DOUBLE)"]


class Mean(Sum):
    """Arithmetic mean of the non-null values (null when there are none)."""

    name = "mean"

    def finalize(self, state: list) -> float | None:
        return state[1] / state[0] if state[0] else None

    def sql_partials(self, x: str) -> list[str]:
        return [f"avg({x})"]


class Share(Mean):
    """Share of the non-null values that are true (the mean of a 0/1 value)."""

    name = "share"

    def update(self, state: list, value: Any) -> list:
        if value is not None:
            state[0] += 1
            state[1] += float(value)
        return state

    def sql_partials(self, x: str) -> list[str]:
        return [f"avg(CAST({x} AS DOUBLE))"]


class ShareLowerBound(Share):
    """One-sided 99% Wilson lower bound of a share: how large the share is *at least*, given how
    many values it rests on. 5 of 5 gives 0.48, 80 of 90 gives 0.78: a handful of requests cannot
    look as extreme as a sustained habit, so the benign tail stops being set by tiny accounts."""

    name = "share_lb"
    z = 2.326  # one-sided 99%

    def finalize(self, state: list) -> float | None:
        n = state[0]
        if not n:
            return None
        if not state[1]:  # exactly 0: the formula leaves float noise of either sign, which ranks at random
            return 0.0
        p, z2 = state[1] / n, self.z * self.z
        rad = max(0.0, p * (1.0 - p) / n + z2 / (4.0 * n * n))
        return (p + z2 / (2.0 * n) - self.z * math.sqrt(rad)) / (1.0 + z2 / n)

    def sql_partials(self, x: str) -> list[str]:
        return [f"count({x})", f"CAST(sum(CAST({x} AS DOUBLE)) AS DOUBLE)"]

    def sql_finalize(self, cols: list[str]) -> str:
        n, s, z = f"CAST({cols[0]} AS DOUBLE)", cols[1], repr(self.z)
        p, z2 = f"({s} / {n})", f"({z} * {z})"
        rad = f"greatest(0.0, {p} * (1.0 - {p}) / {n} + {z2} / (4.0 * {n} * {n}))"
        return (f"CASE WHEN {cols[0]} > 0 AND {s} = 0 THEN 0.0 WHEN {cols[0]} > 0 THEN ({p} + {z2} / (2.0 * {n}) "
                f"- {z} * sqrt({rad})) / (1.0 + {z2} / {n}) END")


class Max(Op):
    name = "max"
    _pick = staticmethod(max)
    _sql = "max"

    def init(self) -> list:
        return [None]

    def update(self, state: list, value: Any) -> list:
        if value is not None:
            state[0] = value if state[0] is None else self._pick(state[0], value)
        return state

    def merge(self, a: list, b: list) -> list:
        return self.update(a, b[0])

    def finalize(self, state: list) -> Any:
        return state[0]

    def sql_partials(self, x: str) -> list[str]:
        return [f"{self._sql}({x})"]


class Min(Max):
    name = "min"
    _pick = staticmethod(min)
    _sql = "min"


class DistinctCount(Op):
    """Exact number of distinct non-null values (a set online; ``count(DISTINCT)`` in SQL)."""

    name = "distinct"

    def init(self) -> set:
        return set()

    def update(self, state: set, value: Any) -> set:
        if value is not None:
            state.add(value)
        return state

    def merge(self, a: set, b: set) -> set:
        a |= b
        return a

    def finalize(self, state: set) -> int:
        return len(state)

    def sql_partials(self, x: str) -> list[str]:
        return [f"count(DISTINCT {x})"]


class DistinctRatio(Op):
    """Distinct non-null values per non-null value (1.0: every value new; near 0: one value reused)."""

    name = "distinct_ratio"

    def init(self) -> list:
        return [0, set()]

    def update(self, state: list, value: Any) -> list:
        if value is not None:
            state[0] += 1
            state[1].add(value)
        return state

    def merge(self, a: list, b: list) -> list:
        a[0] += b[0]
        a[1] |= b[1]
        return a

    def finalize(self, state: list) -> float | None:
        return len(state[1]) / state[0] if state[0] else None

    def sql_partials(self, x: str) -> list[str]:
        return [f"count(DISTINCT {x})", f"count({x})"]

    def sql_finalize(self, cols: list[str]) -> str:
        return f"CAST({cols[0]} AS DOUBLE) / NULLIF({cols[1]}, 0)"


def _lit(v: Any) -> str:
    return f"'{v}'" if isinstance(v, str) else repr(v)


@dataclass
class Entropy(Op):
    """Shannon entropy in bits of a categorical value over a fixed category list (others ignored).

    SQL keeps one count per category, so it needs no second GROUP BY."""

    categories: Sequence[Any] = ()
    name = "entropy"

    def __post_init__(self) -> None:
        self._catset = frozenset(self.categories)  # per-update membership test, built once
        rank = {c: k for k, c in enumerate(self.categories)}
        self._rank = rank.__getitem__  # sort key: category order (the SQL's order)
        try:  # categories listed in their natural order (hours 0..23): state items sort by key as they are
            self._natural = list(self.categories) == sorted(self.categories) and len(rank) == len(self.categories)
        except TypeError:
            self._natural = False

    def init(self) -> dict:
        return {}

    def update(self, state: dict, value: Any) -> dict:
        if value is not None and value in self._catset:
            state[value] = state.get(value, 0) + 1
        return state

    def merge(self, a: dict, b: dict) -> dict:
        for k, v in b.items():
            a[k] = a.get(k, 0) + v
        return a

    @property
    def _cats(self) -> frozenset:
        return self._catset

    def _counts(self, state: dict) -> list[int]:
        return [state.get(c, 0) for c in self.categories]

    def finalize(self, state: dict) -> float | None:
        # the present categories in category order (the SQL's order); an absent or zero count adds
        # nothing (acc stays >= 0.0), so summing only the present ones gives the same float
        if state.keys() <= self._catset:
            # what update and merge build: positive int counts of categories only; then every term is
            # the table's c * log(c), added in the same order as below (the same float), in a loop that
            # checks nothing per count; anything else (zero, float or huge counts) takes the full loop
            cs = [state[k] for k in sorted(state)] if self._natural else [c for c in map(state.get, self.categories) if c]
            if cs and min(cs) > 0 and max(cs) < _NCLOGC:
                table = _CLOGC
                acc = 0.0
                try:
                    for c in cs:
                        acc += table[c]  # an int index, or TypeError (a float count): the full loop
                except TypeError:
                    pass
                else:
                    n = sum(cs)  # ints: exact in any order
                    return (math.log(n) - acc / n) / _LN2
        n = 0
        acc = 0.0
        log = math.log
        table = _CLOGC
        if self._natural and state.keys() <= self._catset:
            pairs: Any = sorted(state.items())  # keys distinct: ordered by category alone
        elif 3 * len(state) <= len(self.categories) and state.keys() <= self._catset:
            pairs = [(cat, state[cat]) for cat in sorted(state, key=self._rank)]  # few present: sort them
        else:
            get = state.get
            pairs = [(cat, get(cat)) for cat in self.categories]
        for _, c in pairs:
            if c:
                n += c
                if c > 0:  # c * log(c), from the table for the small counts (the same float)
                    acc += table[c] if c.__class__ is int and c < _NCLOGC else c * log(c)
        if n <= 0:
            return None
        return (log(n) - acc / n) / _LN2

    def sql_partials(self, x: str) -> list[str]:
        return [f"count(CASE WHEN {x} = {_lit(c)} THEN 1 END)" for c in self.categories]

    def sql_finalize(self, cols: list[str]) -> str:
        n = "(" + " + ".join(cols) + ")"
        acc = " + ".join(f"(CASE WHEN {c} > 0 THEN {c} * ln({c}) ELSE 0.0 END)" for c in cols)
        return f"CASE WHEN {n} > 0 THEN (ln({n}) - (0.0 + {acc}) / {n}) / {_LN2!r} END"


@dataclass
class TopShare(Entropy):
    """Share of the values that fall in the most frequent category."""

    name = "top_share"

    def finalize(self, state: dict) -> float | None:
        cs = self._counts(state)
        n = sum(cs)
        return max(cs) / n if n > 0 else None

    def sql_finalize(self, cols: list[str]) -> str:
        n = "(" + " + ".join(cols) + ")"
        return f"CASE WHEN {n} > 0 THEN CAST(greatest({', '.join(cols)}) AS DOUBLE) / {n} END"


class GapCV(Op):
    """Coefficient of variation σ/μ of a positive value such as the gap between requests (near 0: a
    metronome). State (n, mean, M2) merged with Chan's formula; SQL ``count/avg/var_pop``."""

    name = "cv"

    def init(self) -> list:
        return [0, 0.0, 0.0]

    def update(self, state: list, value: Any) -> list:
        if value is not None:
            state[0] += 1
            d = value - state[1]
            state[1] += d / state[0]
            state[2] += d * (value - state[1])
        return state

    def merge(self, a: list, b: list) -> list:
        if b[0] == 0:
            return a
        if a[0] == 0:
            a[:] = b
            return a
        n = a[0] + b[0]
        d = b[1] - a[1]
        a[1] = a[1] + d * b[0] / n
        a[2] = a[2] + b[2] + d * d * a[0] * b[0] / n
        a[0] = n
        return a

    def _moments(self, state: list) -> tuple[int, float, float]:
        n, mean, m2 = state
        return n, mean, math.sqrt(max(m2, 0.0) / n) if n else 0.0

    def finalize(self, state: list) -> float | None:
        n, m, s = self._moments(state)
        return s / m if n >= 2 and m > 0 else None

    def sql_partials(self, x: str) -> list[str]:
        return [f"count({x})", f"avg({x})", f"var_pop({x})"]

    def sql_finalize(self, cols: list[str]) -> str:
        n, m, v = cols
        return f"CASE WHEN {n} >= 2 AND {m} > 0 THEN sqrt(greatest({v}, 0.0)) / {m} END"


class Burstiness(GapCV):
    """Goh-Barabási burstiness (σ−μ)/(σ+μ) of gaps: −1 periodic, 0 Poisson, → 1 bursty."""

    name = "burstiness"

    def finalize(self, state: list) -> float | None:
        n, m, s = self._moments(state)
        return (s - m) / (s + m) if n >= 2 and s + m > 0 else None

    def sql_finalize(self, cols: list[str]) -> str:
        n, m, v = cols
        s = f"sqrt(greatest({v}, 0.0))"
        return f"CASE WHEN {n} >= 2 AND {s} + {m} > 0 THEN ({s} - {m}) / ({s} + {m}) END"


# ---------------------------------------------------------------------------------------------- features
@dataclass(frozen=True)
class Feature:
    """``op`` over ``input`` per account, for each window; ``name`` overrides the input's name."""

    input: Input
    op: Op
    windows: Sequence[Window] = (ALL,)
    name: str | None = None
    doc: str = ""

    def column(self, w: Window) -> str:
        return f"{self.name or self.input.name}_{self.op.name}_{w.name}"

    @property
    def columns(self) -> list[str]:
        return [self.column(w) for w in self.windows]

"""``simulate()``: build a scenario's population, generate traffic day by day, write the files.

Each day's rows (plus sessions carried over midnight) are sorted by ts and handed to a writer
thread while the next day is generated, so memory stays at about two days of traffic.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from distillguard.simulate._util import DAY_US, child_rng, rfc3339, to_us
from distillguard.simulate.population import build_population
from distillguard.simulate.prompts.library import PromptLibrary, load_corpus
from distillguard.simulate.scenarios import get_scenario
from distillguard.simulate.summary import SimulationSummary
from distillguard.simulate.traffic import EXTRA_COLUMNS, DayContext, group_day
from distillguard.simulate.writer import (
    ExchangeStats,
    account_order,
    exchange_writer,
    write_accounts,
    write_truth,
)

__all__ = ["simulate"]


def simulate(scenario: str, out: Path, *, scale: float | None = None, seed: int = 0, corpus: Path | None = None,
             progress: bool = True) -> SimulationSummary:
    """Write ``accounts.parquet``, ``exchanges.parquet`` and ``truth.jsonl`` for a named scenario into ``out``.

    The same (scenario, seed, scale, corpus) always gives byte-identical files.
    """
    started = time.perf_counter()
    sc = get_scenario(scenario)
    scale = sc.default_scale if scale is None else float(scale)
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = to_us(sc.start)
    t1 = t0 + sc.days * DAY_US
    corpus_data = load_corpus(Path(corpus), child_rng(seed, 10)) if corpus is not None else None
    lib = PromptLibrary.build(child_rng(seed, 11), corpus_data)
    personas, campaigns = sc.scaled(scale)
    pop = build_population(seed, t0, t1, personas, campaigns, lib, sc.min_p_active)
    assert pop.space is not None
    ctx = DayContext(pop, lib, pop.space, t0 + int(sc.release_day * DAY_US))
    order = account_order(pop)
    paths = {k: out / f"{k}.parquet" for k in ("accounts", "exchanges")}
    write_accounts(pop, paths["accounts"], order)
    stats = ExchangeStats(pop.n, len(pop.groups))
    bar = Progress(TextColumn("[bold]simulate {task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("days  {task.fields[rows]:,} exchanges"), TimeElapsedColumn(), disable=not progress)
    with bar if progress else nullcontext(), exchange_writer(paths["exchanges"]) as writer, \
            ThreadPoolExecutor(max_workers=1) as pool:
        task = bar.add_task(scenario, total=sc.days, rows=0)
        carry: pa.Table | None = None
        pending: Future[None] | None = None
        for d in range(sc.days):
            day_start = t0 + d * DAY_US
            tables = [] if carry is None else [carry]
            for g in pop.groups:
                tb = group_day(g, ctx, day_start, child_rng(seed, 100, d, g.index))
                if tb is not None:
                    tables.append(tb)
            if not tables:
                bar.advance(task)
                continue
            day = pa.concat_tables(tables)
            day = day.take(pc.sort_indices(day["ts"]))
            cut = int(np.searchsorted(day["ts"].cast(pa.int64()).to_numpy(), day_start + DAY_US))
            carry = day.slice(cut) if d + 1 < sc.days else None
            day = day.slice(0, cut)
            stats.update(day)
            if pending is not None:
                pending.result()
            pending = pool.submit(writer.write_table, day.drop_columns(list(EXTRA_COLUMNS)))
            bar.update(task, advance=1, rows=stats.n)
        if pending is not None:
            pending.result()
    paths["truth"] = out / "truth.jsonl"
    write_truth(pop, paths["truth"], order, stats)
    return _summary(scenario, seed, scale, pop, stats, [str(p) for p in paths.values()],
                    time.perf_counter() - started)


def _summary(scenario: str, seed: int, scale: float, pop, stats: ExchangeStats, files: list[str],
             elapsed: float) -> SimulationSummary:
    s = SimulationSummary(scenario, seed, scale, pop.n, stats.n,
                          rfc3339(stats.min_ts) if stats.min_ts is not None else None,
                          rfc3339(stats.max_ts) if stats.max_ts is not None else None, files=files,
                          elapsed_s=round(elapsed, 3))
    for g in pop.groups:
        n_ex = int(stats.per_account[g.members].sum())
        if g.kind == "campaign":
            assert g.campaign is not None
            seen = n_ex > 0
            s.campaigns[g.name] = {
                "style": g.campaign.style, "accounts": int(g.members.size), "exchanges": n_ex,
                "first_ts": rfc3339(int(stats.first[g.index])) if seen else None,
                "last_ts": rfc3339(int(stats.last[g.index])) if seen else None,
            }
        else:
            s.personas[g.name] = {"accounts": int(g.members.size), "exchanges": n_ex,
                                  "hard_negative": g.hard_negative}
    return s

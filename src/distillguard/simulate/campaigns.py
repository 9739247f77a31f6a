"""Attack campaigns: strategy (style, capability focus, model pivot) and evasion knobs, modelled on
disclosed distillation operations, plus the hydra account lifecycle (waves, bans, replacements).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from distillguard.simulate._util import DAY_US, HOUR_US
from distillguard.simulate.personas import CEIL, SDK, Content, Timing
from distillguard.simulate.prompts import attack
from distillguard.simulate.prompts.library import PromptLibrary, Recipe

__all__ = ["STYLES", "Campaign", "hydra_lifecycle"]

#: style -> what the campaign harvests
STYLES: dict[str, str] = {
    "cot_harvest": "role preamble + task + chain-of-thought elicitation; single-shot, long outputs",
    "agentic_trajectories": "multi-turn agent loops with many tools: harvests tool-use trajectories",
    "rubric_grader": "the model as a grader/reward model scoring candidate answers against rubrics",
    "censorship_rewrite": "rewrites of politically sensitive answers into 'safe' alternatives",
}


@dataclass(frozen=True)
class Campaign:
    """One operator's campaign. Volumes are at scale 1; every other field is a strategy/evasion knob."""

    campaign_id: str
    style: str
    n_accounts: int
    n_exchanges: int
    start_day: float = 0.0
    end_day: float | None = None
    focus: tuple[tuple[str, float], ...] = (("agent", 0.4), ("code", 0.35), ("plan", 0.25))
    # infrastructure
    infra: str = "proxy"  # proxy (rotating shared exit IPs) | residential (one sticky IP each) | cloud
    proxy_ips: int | None = None
    n_payment: int = 4  # distinct payment instruments across the campaign (evasion: more)
    aged: bool = False  # accounts bought/created months earlier and left dormant
    declared_countries: tuple[str, ...] = ("US", "SG", "GB", "CA", "JP", "DE", "AU", "KR", "HK")
    # hydra network
    waves: bool = True
    mean_lifetime_days: float = 9.0
    ban_every_days: float = 4.0
    replace_delay_days: float = 1.5
    # behaviour and evasion
    human_timing: bool = False
    operator_tz: float = 8.0
    paraphrase: bool = False
    multilingual: bool = True
    benign_mix: float = 0.0
    preamble_in_system: bool = True
    p_ceiling: float = 0.95
    p_thinking: float = 0.6
    pivot: bool = True
    pivot_delay_h: float = 10.0
    pivot_share: float = 0.85

    def params(self) -> dict[str, object]:
        """Strategy/evasion knobs as truth.jsonl records them."""
        d = asdict(self)
        for k in ("campaign_id", "style", "n_accounts", "n_exchanges"):
            d.pop(k)
        d["focus"] = dict(self.focus)
        d["declared_countries"] = list(self.declared_countries)
        return d

    def timing(self, rate_per_day: float) -> Timing:
        """Machine-regular 24/7 sessions, or (evasion) human-like work-hour sessions."""
        if self.human_timing:
            return Timing("work", sessions=rate_per_day / 6.0, sigma=0.7, p_active=0.85, weekend=0.5,
                          session_len=6.0, gap_s=50.0, conv_len=self._conv_len())
        return Timing("uniform", sessions=rate_per_day / 25.0, sigma=0.5, p_active=0.97, session_len=25.0,
                      gap_s=4.0, gap_shape=4.0, conv_len=self._conv_len())

    def _conv_len(self) -> float:
        return 6.0 if self.style == "agentic_trajectories" else 1.0

    def content(self, lib: PromptLibrary, rng: np.random.Generator) -> Content:
        """Register this campaign's template pools in ``lib`` and return its content spec."""
        cid = self.campaign_id
        k = 400 if self.paraphrase else 1
        lib.add(f"{cid}/pre", attack.preamble(rng, k))
        cot = attack.cot(rng, 400, self.multilingual) if self.paraphrase else attack.cot(rng, 1, False)
        if not self.paraphrase and self.multilingual:
            cot.append(attack.COT_OTHER[int(rng.integers(len(attack.COT_OTHER)))])
        lib.add(f"{cid}/cot", cot)
        lib.add(f"{cid}/rubric", attack.rubric(rng, 300 if self.paraphrase else 1))
        lib.add(f"{cid}/censor", attack.censor(rng, 300 if self.paraphrase else 4))
        pre: Recipe = () if self.preamble_in_system else (f"@{cid}/pre", "\n\n")
        recipes: list[tuple[Recipe, float]] = []
        for body, w in self.focus:
            if self.style in ("cot_harvest", "agentic_trajectories"):
                recipes.append(((*pre, f"@{body}", "\n\n", f"@{cid}/cot"), w))
            elif self.style == "rubric_grader":
                recipes.append(((f"@{cid}/rubric", f"@{body}", "\n\nResponse:\n", "@answer"), w))
            elif self.style == "censorship_rewrite":
                recipes.append(((f"@{cid}/censor",), w))
            else:
                raise ValueError(f"unknown campaign style {self.style!r}")
        scale = 1.0 - self.benign_mix
        recipes = [(r, w * scale) for r, w in recipes]
        n_attack = len(recipes)
        if self.benign_mix > 0:
            recipes += [(("@chat",), self.benign_mix * 0.6), (("@instruct",), self.benign_mix * 0.4)]
        agentic = self.style == "agentic_trajectories"
        return Content(
            tuple(recipes),
            follow=("@tool_result",) if agentic else ("@follow",),
            system=f"{cid}/pre" if self.style in ("cot_harvest", "agentic_trajectories") else None,
            p_system=1.0 if self.preamble_in_system else 0.0,
            system_per_row=True,
            no_system_recipes=tuple(range(n_attack, len(recipes))),
            tools=(8, 40) if agentic else (0, 0),
            p_tools=1.0 if agentic else 0.0,
            p_thinking=self.p_thinking,
            max_tokens=CEIL,
            p_ceiling=self.p_ceiling,
            out_median=1800.0 if self.style != "censorship_rewrite" else 700.0,
            out_sigma=0.6,
            ctx_per_turn=2000 if agentic else 300,
            p_tool_use_finish=0.5 if agentic else 0.0,
            old_models=(0.05, 0.35, 0.6),
            new_share=0.2,
            new_tau_days=5.0,
            pivot_delay_h=self.pivot_delay_h if self.pivot else None,
            pivot_share=self.pivot_share,
        )

    @staticmethod
    def uas() -> dict[str, float]:
        """Campaign clients are ordinary SDKs, weighted like developers' (no attack-only UA)."""
        return {k: v for k, v in SDK.items() if k != "curl"}


def hydra_lifecycle(c: Campaign, n: int, t0: int, t1: int,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Accounts of a hydra network: (created_at, active_from, active_to, wave) in microseconds.

    A first wave is created over the campaign's first day; the provider bans accounts in periodic
    sweeps; each banned account is replaced by a new one after a delay, created in daily waves.
    Without ``waves`` all accounts are created up front and live to the end.
    """
    span_days = max((t1 - t0) / DAY_US, 0.5)
    if not c.waves:
        created = t0 - (rng.random(n) * 0.8 * DAY_US).astype(np.int64) + int(0.5 * DAY_US)
        created = np.minimum(created, t1 - HOUR_US)
        return created, created + (rng.random(n) * 6 * HOUR_US).astype(np.int64), np.full(n, t1), np.zeros(n, int)
    life = max(c.mean_lifetime_days, 0.2)
    per_slot = max(1.0, span_days / (life + c.replace_delay_days))
    slots = max(1, math.ceil(n / per_slot))
    sweep = max(c.ban_every_days, 0.1) * DAY_US
    for _ in range(8):
        created_l, from_l, to_l, wave_l = [], [], [], []
        cur = t0 + (rng.random(slots) * 0.9 * DAY_US).astype(np.int64)
        wave = np.zeros(slots, dtype=int)
        while cur.size:
            act = cur + (rng.random(cur.size) * 4 * HOUR_US).astype(np.int64)
            lifetime = (rng.exponential(life, cur.size) * DAY_US).astype(np.int64) + HOUR_US
            banned = ((act + lifetime - t0) // sweep + 1) * sweep + t0 + (rng.random(cur.size) * 6 * HOUR_US)
            banned = banned.astype(np.int64)
            created_l.append(cur)
            from_l.append(act)
            to_l.append(np.minimum(banned, t1))
            wave_l.append(wave)
            nxt = banned + (rng.gamma(2.0, c.replace_delay_days / 2.0, cur.size) * DAY_US).astype(np.int64)
            nxt = (nxt - t0) // DAY_US * DAY_US + t0 + (rng.random(cur.size) * 8 * HOUR_US).astype(np.int64)
            alive = (banned < t1) & (nxt < t1 - 6 * HOUR_US)
            cur, wave = nxt[alive], ((nxt[alive] - t0) // DAY_US).astype(int)
        created = np.concatenate(created_l)
        if created.size >= n:
            break
        slots = math.ceil(slots * n / created.size * 1.1) + 1
    frm, to, wv = np.concatenate(from_l), np.concatenate(to_l), np.concatenate(wave_l)
    order = np.argsort(frm, kind="stable")[:n]
    return created[order], frm[order], to[order], wv[order]

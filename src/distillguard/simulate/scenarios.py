"""Named scenarios: a time window, a benign population and the campaigns hidden inside it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime

from distillguard.simulate.campaigns import Campaign

__all__ = ["SCENARIOS", "Scenario", "get_scenario"]


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    start: datetime
    days: int
    release_day: float  # days after start when the new model ships
    personas: dict[str, int]  # benign accounts per persona at scale 1
    campaigns: tuple[Campaign, ...]
    default_scale: float = 1.0
    min_p_active: float = 0.0  # raise bursty personas' daily activity (so tiny scenarios show every one)

    def scaled(self, scale: float) -> tuple[dict[str, int], tuple[Campaign, ...]]:
        """Account and exchange counts at ``scale``; every persona and campaign keeps at least one account."""
        personas = {k: max(1, round(v * scale)) for k, v in self.personas.items()}
        # payment instruments scale with the accounts, so a scaled campaign keeps its accounts per card
        camps = tuple(replace(c, n_accounts=max(2, round(c.n_accounts * scale)),
                              n_exchanges=max(10, round(c.n_exchanges * scale)),
                              n_payment=max(1, round(c.n_payment * scale))) for c in self.campaigns)
        return personas, camps


BENIGN_LARGE = {
    "casual_chat": 170_000, "mobile_rotating": 30_000, "cot_student": 20_000, "nat_org": 25_000,
    "shared_card_org": 5_000, "developer_agent": 1_000, "heavy_agent": 100, "enterprise_backend": 20,
    "eval_runner": 150, "batch_api": 30, "reseller_app": 15, "serverless": 200,
}


def _frac(d: dict[str, int], f: float) -> dict[str, int]:
    return {k: max(1, round(v * f)) for k, v in d.items()}


_SCENARIOS = [
    Scenario(
        "seed-2026",
        "One hydra campaign shaped like the disclosed one (~25k accounts, 28.8M exchanges, Apr 22 - Jun 5 2026, "
        "pivot to a model released mid-window) inside ~250k benign accounts.",
        datetime(2026, 4, 22, tzinfo=UTC), 45, 22.4, BENIGN_LARGE,
        (Campaign("seed-2026", "cot_harvest", 25_000, 28_800_000, n_payment=6, mean_lifetime_days=9.0),),
    ),
    Scenario(
        "three-labs",
        "Three campaigns of different sizes and styles: a large CoT harvester that pivots to the new model, a "
        "mid-size grader farm on cloud IPs, a small censorship-rewrite operation on aged residential accounts.",
        datetime(2026, 3, 2, tzinfo=UTC), 28, 14.3, _frac(BENIGN_LARGE, 0.16),
        (
            Campaign("lab-a", "cot_harvest", 3_000, 2_000_000, focus=(("code", 0.6), ("agent", 0.25), ("plan", 0.15)),
                     n_payment=4, pivot_delay_h=6.0),
            Campaign("lab-b", "rubric_grader", 600, 400_000, start_day=3, infra="cloud", n_payment=3,
                     mean_lifetime_days=14.0, pivot=False, focus=(("code", 0.5), ("math", 0.3), ("reason", 0.2))),
            Campaign("lab-c", "censorship_rewrite", 150, 90_000, start_day=7, end_day=24, infra="residential",
                     aged=True, waves=False, n_payment=2, pivot=False, p_thinking=0.2),
        ),
    ),
    Scenario(
        "adaptive",
        "Evasive campaigns with every knob up: low and slow per account, human work-hour timing, paraphrased "
        "templates, one residential IP per account, benign prompts mixed in, aged accounts, many payment cards.",
        datetime(2026, 5, 4, tzinfo=UTC), 21, 10.2, _frac(BENIGN_LARGE, 0.12),
        tuple(
            Campaign(cid, style, n, ex, infra="residential", n_payment=n // 3, aged=True, waves=False,
                     human_timing=True, paraphrase=True, benign_mix=0.3, p_ceiling=0.4, p_thinking=0.3,
                     pivot_delay_h=48.0, pivot_share=0.5, operator_tz=tz, focus=focus)
            for cid, style, n, ex, tz, focus in (
                ("quiet-a", "agentic_trajectories", 1_500, 160_000, 8.0, (("agent", 0.6), ("plan", 0.4))),
                ("quiet-b", "cot_harvest", 800, 90_000, 3.0, (("code", 0.5), ("math", 0.3), ("plan", 0.2))),
            )
        ),
    ),
    Scenario(
        "smoke",
        "Seconds-long run for tests and demos: every persona and every campaign style, a few hundred accounts.",
        datetime(2026, 5, 12, tzinfo=UTC), 4, 1.5,
        {"casual_chat": 120, "mobile_rotating": 30, "cot_student": 30, "nat_org": 40, "shared_card_org": 15,
         "developer_agent": 8, "heavy_agent": 2, "enterprise_backend": 1, "eval_runner": 3, "batch_api": 2,
         "reseller_app": 1, "serverless": 2},
        (
            Campaign("hydra", "cot_harvest", 24, 3_000, n_payment=2, mean_lifetime_days=1.0, ban_every_days=1.0,
                     replace_delay_days=0.3, pivot_delay_h=6.0),
            Campaign("agents", "agentic_trajectories", 10, 1_500, n_payment=1, waves=False),
            Campaign("graders", "rubric_grader", 8, 1_000, infra="cloud", n_payment=1, waves=False, pivot=False,
                     focus=(("code", 0.5), ("math", 0.5))),
            Campaign("rewriter", "censorship_rewrite", 6, 600, infra="residential", aged=True, waves=False,
                     n_payment=1, pivot=False),
            Campaign("quiet", "cot_harvest", 12, 400, infra="residential", n_payment=4, aged=True, waves=False,
                     human_timing=True, paraphrase=True, benign_mix=0.3, p_ceiling=0.4),
        ),
        min_p_active=0.5,
    ),
]
SCENARIOS_BY_NAME: dict[str, Scenario] = {s.name: s for s in _SCENARIOS}
#: scenario name -> one-line description (what the CLI lists)
SCENARIOS: dict[str, str] = {s.name: s.description for s in _SCENARIOS}


def get_scenario(name: str) -> Scenario:
    try:
        return SCENARIOS_BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown scenario {name!r}; choose one of {', '.join(SCENARIOS)}") from None

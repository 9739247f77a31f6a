"""Benign personas: who ordinary customers are and how they behave.

Each persona imitates one kind of real API customer. Those marked ``hard_negative`` share a single
signal with distillation campaigns (IP churn, cloud ASNs, shared cards, heavy agent use, CoT-style
prompts, benchmark prompts, many accounts per IP, many end users per account), so a detector that
keys on that one signal will flag them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from distillguard.simulate.prompts.library import Recipe
from distillguard.simulate.world import UAS

__all__ = ["PERSONAS", "Content", "Persona", "Timing", "ua_weights"]


@dataclass(frozen=True)
class Timing:
    """When and how densely an account sends requests.

    An active account-day has Poisson(``sessions`` x account intensity) sessions starting at local
    hours drawn from ``profile``; a session is ``session_len`` exchanges (geometric or lognormal)
    separated by gamma gaps (shape 1 = human-like, large shape = machine-regular); a conversation
    spans ``conv_len`` exchanges on average (inf: the whole session).
    """

    profile: str = "human"
    sessions: float = 1.0
    sigma: float = 0.8
    p_active: float = 0.5
    weekend: float = 1.0
    session_len: float = 3.0
    len_dist: str = "geom"
    gap_s: float = 60.0
    gap_shape: float = 1.0
    conv_len: float = float("inf")


@dataclass(frozen=True)
class Content:
    """What an account sends: prompt recipes, system prompts, tools, thinking, token limits, models."""

    recipes: tuple[tuple[Recipe, float], ...]
    follow: Recipe = ("@follow",)
    system: str | None = None  # pool name of system prompts
    p_system: float = 0.0  # share of accounts (or rows, if system_per_row) with a system prompt
    system_per_row: bool = False
    no_system_recipes: tuple[int, ...] = ()  # recipe indices sent without a system prompt
    tools: tuple[int, int] = (0, 0)
    p_tools: float = 0.0
    p_thinking: float = 0.05
    max_tokens: tuple[tuple[int, float], ...] = ((1024, 0.3), (2048, 0.2), (4096, 0.4), (8192, 0.1))
    p_ceiling: float = 0.0
    out_median: float = 300.0
    out_sigma: float = 0.8
    ctx_per_turn: int = 350
    p_tool_use_finish: float = 0.0
    old_models: tuple[float, float, float] = (0.3, 0.5, 0.2)
    new_share: float = 0.25
    new_tau_days: float = 6.0
    pivot_delay_h: float | None = None  # campaigns: hours after release when traffic moves
    pivot_share: float = 0.0


@dataclass(frozen=True)
class Persona:
    name: str
    about: str
    timing: Timing
    content: Content
    ip_mode: str = "home"  # home | mobile | nat | cloud | serverless
    ip_kind: str = "res"
    tiers: dict[str, float] = field(default_factory=lambda: {"free": 0.6, "build": 0.4})
    uas: dict[str, float] = field(default_factory=dict)
    email: str = "consumer"  # consumer | org | edu
    org_size: tuple[int, int] | None = None
    shared_card: bool = False
    p_verified: float = 0.3
    p_payment: float = 0.5
    p_new: float = 0.08
    n_keys: tuple[int, int] = (1, 2)
    hard_negative: bool = False


def ua_weights(w: dict[str, float]) -> dict[int, float]:
    """Map UA prefixes (e.g. ``"atlas-python/1.9"``) to indices of ``world.UAS``."""
    out: dict[int, float] = {}
    for prefix, weight in w.items():
        hits = [i for i, u in enumerate(UAS) if u.startswith(prefix)]
        if not hits:
            raise KeyError(prefix)
        for i in hits:
            out[i] = out.get(i, 0.0) + weight / len(hits)
    return out


BROWSERS = {"Mozilla/5.0 (Windows": 0.25, "Mozilla/5.0 (Macintosh": 0.15, "Mozilla/5.0 (iPhone": 0.15,
            "Dalvik": 0.1}
SDK = {"atlas-python": 0.35, "python-httpx": 0.1, "python-requests": 0.1, "atlas-node": 0.15, "axios": 0.05,
       "node-fetch": 0.05, "litellm": 0.05, "langchain": 0.05, "curl": 0.03, "atlas-go": 0.04, "Go-http": 0.03}
CHAT_SDK = {**BROWSERS, "atlas-python": 0.15, "python-requests": 0.05, "python-httpx": 0.04, "atlas-node": 0.06,
            "litellm": 0.02, "langchain": 0.03}
CEIL = ((4096, 0.2), (8192, 0.3), (16384, 0.2), (32768, 0.2), (65536, 0.1))

_personas = [
    Persona(
        "casual_chat", "People chatting through their own small scripts or apps: a few conversations a week, "
        "multi-turn, diurnal in their own time zone, home broadband.",
        Timing("human", sessions=1.1, sigma=0.9, p_active=0.08, session_len=3.0, gap_s=70),
        Content(((("@chat",), 0.85), (("@instruct",), 0.15)), system="system", p_system=0.2),
        uas=CHAT_SDK, p_payment=0.4,
    ),
    Persona(
        "mobile_rotating", "Phone users on carrier networks behind CGNAT: a new IP (same mobile ASN) almost every "
        "session, which looks like IP rotation.",
        Timing("human", sessions=1.2, sigma=0.9, p_active=0.12, session_len=3.0, gap_s=60),
        Content(((("@chat",), 1.0),), system="system", p_system=0.15),
        ip_mode="mobile", ip_kind="mobile", uas={**CHAT_SDK, "okhttp": 0.15}, p_payment=0.35, hard_negative=True,
    ),
    Persona(
        "cot_student", "Students asking for step-by-step explanations ('explain step by step'), the phrasing "
        "CoT-elicitation detectors look for; evenings, education tier.",
        Timing("evening", sessions=1.0, sigma=0.7, p_active=0.14, session_len=3.0, gap_s=90),
        Content(((("@study",), 0.7), (("@math", "\n\nExplain step by step."), 0.3)), p_thinking=0.25,
                out_median=600),
        email="edu", tiers={"education": 0.6, "free": 0.4}, uas=CHAT_SDK, p_payment=0.2, hard_negative=True,
    ),
    Persona(
        "nat_org", "Universities and companies behind NAT: many accounts of one organisation share a handful of "
        "egress IPs.",
        Timing("work", sessions=1.2, sigma=0.8, p_active=0.25, weekend=0.3, session_len=3.0, gap_s=80),
        Content(((("@chat",), 0.4), (("@code",), 0.3), (("@study",), 0.15), (("@plan",), 0.15)),
                system="system", p_system=0.2, p_thinking=0.1),
        ip_mode="nat", ip_kind="edu", email="org", org_size=(20, 400), tiers={"education": 0.5, "enterprise": 0.3,
                                                                           "build": 0.2},
        uas={**CHAT_SDK, **SDK}, p_payment=0.3, p_verified=0.7, hard_negative=True,
    ),
    Persona(
        "shared_card_org", "Small companies whose employees each have an account paid by one corporate card: "
        "many accounts share a payment fingerprint.",
        Timing("work", sessions=1.3, sigma=0.8, p_active=0.3, weekend=0.2, session_len=4.0, gap_s=60),
        Content(((("@chat",), 0.3), (("@code",), 0.4), (("@plan",), 0.3)), system="system", p_system=0.3),
        ip_kind="biz", email="org", org_size=(4, 25), shared_card=True, tiers={"startup": 0.5, "build": 0.3,
                                                                              "scale": 0.2},
        uas=SDK, p_payment=1.0, p_verified=0.6, hard_negative=True,
    ),
    Persona(
        "developer_agent", "Professional developers driving coding agents: long sessions of code and tool-use "
        "turns in bursts during work hours.",
        Timing("work", sessions=1.3, sigma=0.9, p_active=0.5, weekend=0.3, session_len=20.0, gap_s=15,
               conv_len=12.0),
        Content(((("@code",), 0.6), (("@agent",), 0.4)), follow=("@tool_result",), system="system", p_system=0.6,
                tools=(5, 30), p_tools=0.8, p_thinking=0.4, max_tokens=CEIL, p_ceiling=0.2, out_median=700,
                ctx_per_turn=1500, p_tool_use_finish=0.5, old_models=(0.1, 0.4, 0.5), new_share=0.5,
                new_tau_days=3.0),
        ip_kind="res", uas={"atlas-cli": 0.45, "Cursor": 0.3, "atlas-node": 0.1, "atlas-python": 0.15},
        tiers={"build": 0.5, "scale": 0.5}, p_payment=0.95, p_verified=0.5, n_keys=(1, 4),
    ),
    Persona(
        "heavy_agent", "Power users running agents all day: hundreds of long-context tool calls, thinking on, "
        "max_tokens at the ceiling, quick switch to a new model - every volume signal of a campaign.",
        Timing("work", sessions=3.0, sigma=0.7, p_active=0.85, weekend=0.6, session_len=45.0, gap_s=8,
               conv_len=25.0),
        Content(((("@agent",), 0.5), (("@code",), 0.35), (("@plan",), 0.15)), follow=("@tool_result",),
                system="system", p_system=0.8, tools=(15, 60), p_tools=1.0, p_thinking=0.7, max_tokens=CEIL,
                p_ceiling=0.8, out_median=1200, ctx_per_turn=2500, p_tool_use_finish=0.6,
                old_models=(0.05, 0.25, 0.7), new_share=0.75, new_tau_days=1.0),
        ip_kind="res", uas={"atlas-cli": 0.5, "Cursor": 0.2, "atlas-python": 0.2, "litellm": 0.1},
        tiers={"scale": 0.7, "build": 0.3}, p_payment=1.0, p_verified=0.6, n_keys=(1, 5), hard_negative=True,
    ),
    Persona(
        "enterprise_backend", "Production backends: very high, steady volume of templated support and "
        "classification prompts from a few cloud IPs; pinned models.",
        Timing("flat", sessions=500.0, sigma=0.9, p_active=0.98, session_len=1.0, gap_s=1, conv_len=1.0),
        Content(((("@support",), 0.85), (("@app",), 0.15)), system="system", p_system=1.0, p_thinking=0.0,
                max_tokens=((512, 0.4), (1024, 0.4), (2048, 0.2)), out_median=180, out_sigma=0.5,
                old_models=(0.6, 0.4, 0.0), new_share=0.05, new_tau_days=20.0),
        ip_mode="cloud", ip_kind="cloud", email="org", org_size=(1, 4), tiers={"enterprise": 0.8, "scale": 0.2},
        uas={"Java-http-client": 0.3, "Go-http-client": 0.2, "atlas-python": 0.3, "atlas-go": 0.2},
        p_payment=1.0, p_verified=1.0, p_new=0.02, n_keys=(2, 7),
    ),
    Persona(
        "eval_runner", "Teams running public benchmarks (math, code, reasoning) in bursts of hundreds of "
        "requests, often with 'think step by step' - benchmark prompts are what distillers also send.",
        Timing("work", sessions=1.0, sigma=0.6, p_active=0.12, session_len=400.0, len_dist="lognormal", gap_s=0.8,
               gap_shape=3.0, conv_len=1.0),
        Content(((("@math",), 0.35), (("@code",), 0.35), (("@reason",), 0.15),
                 (("@math", "\n\nLet's think step by step."), 0.15)), p_thinking=0.3,
                max_tokens=((4096, 0.5), (8192, 0.2), (32768, 0.2), (65536, 0.1)), p_ceiling=0.3,
                out_median=500, old_models=(0.2, 0.4, 0.4), new_share=0.6, new_tau_days=1.5),
        ip_mode="cloud", ip_kind="cloud", uas={"python-httpx": 0.4, "litellm": 0.3, "atlas-python": 0.3},
        tiers={"research": 0.4, "scale": 0.4, "build": 0.2}, p_payment=0.9, p_verified=0.7, hard_negative=True,
    ),
    Persona(
        "reseller_app", "Apps reselling access: one account carries many end users' diverse human prompts "
        "around the clock.",
        Timing("flat", sessions=150.0, sigma=0.8, p_active=1.0, session_len=3.0, gap_s=40),
        Content(((("@chat",), 0.5), (("@instruct",), 0.3), (("@code",), 0.1), (("@study",), 0.1)),
                system="system", p_system=1.0, p_thinking=0.05, out_median=350),
        ip_mode="cloud", ip_kind="cloud", email="org", org_size=(1, 2), tiers={"scale": 0.6, "enterprise": 0.4},
        uas={"atlas-node": 0.4, "okhttp": 0.2, "axios": 0.2, "atlas-python": 0.2}, p_payment=1.0, p_verified=0.8,
        n_keys=(1, 4), hard_negative=True,
    ),
    Persona(
        "batch_api", "Batch-API users: large nightly jobs of templated extraction/translation prompts at a "
        "machine-regular pace.",
        Timing("night", sessions=1.0, sigma=0.3, p_active=0.6, session_len=800.0, len_dist="lognormal",
               gap_s=0.2, gap_shape=10.0, conv_len=1.0),
        Content(((("@batch",), 1.0),), p_thinking=0.0, max_tokens=((512, 0.5), (1024, 0.5)), out_median=150,
                out_sigma=0.4, old_models=(0.8, 0.2, 0.0), new_share=0.02),
        ip_mode="cloud", ip_kind="cloud", email="org", org_size=(1, 3), tiers={"scale": 0.5, "enterprise": 0.5},
        uas={"atlas-python": 0.7, "python-httpx": 0.3}, p_payment=1.0, p_verified=0.9,
    ),
    Persona(
        "serverless", "Serverless functions (Lambda, Cloud Run): cloud ASNs and a different IP on almost every "
        "request, like a proxy network.",
        Timing("flat", sessions=45.0, sigma=1.0, p_active=0.9, session_len=1.0, gap_s=1, conv_len=1.0),
        Content(((("@app",), 0.6), (("@support",), 0.2), (("@instruct",), 0.2)), system="system", p_system=0.7,
                max_tokens=((1024, 0.5), (2048, 0.3), (4096, 0.2)), out_median=250),
        ip_mode="serverless", ip_kind="cloud", uas={"atlas-node": 0.4, "atlas-python": 0.4, "node-fetch": 0.2},
        tiers={"build": 0.5, "startup": 0.3, "scale": 0.2}, p_payment=0.9, hard_negative=True,
    ),
]
PERSONAS: dict[str, Persona] = {p.name: p for p in _personas}

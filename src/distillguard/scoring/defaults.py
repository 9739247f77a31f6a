"""The evidence distillguard scores by default, and the calibration shipped with the package.

Each entry reads one account feature (``docs/features.md``) in its risky direction. Content and
request-shape evidence (what is asked, and how) weighs fully; behaviour that heavy benign users
share (volume, machine timing, round-the-clock activity) weighs half, so a busy enterprise
backend cannot reach the threshold on volume and timing alone.

Groups: evidence that benign power users show all together counts once per group (Simes' test, see
:class:`~distillguard.scoring.risk.Evidence`): ``power_use`` (max-tokens ceiling, extended
reasoning, volume, new-model pivot: a heavy agent user has all four), ``automation`` (machine
timing, round-the-clock, single-shot conversations: a backend), ``capability`` (focus) and
``template`` (shared template and preamble). Capability breadth is a group of its own, so its half
weight holds (in the capability group it took the group's full weight: a casual user who asked 11
questions across seven task classes scored like a curriculum). What a distiller asks for (reasoning
traces, grades) stands alone, so it is what moves an account over the threshold; behaviour counts
only beside at least two content groups (``RiskModel.behaviour_min_content``).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from distillguard.scoring.risk import Evidence, RiskModel

__all__ = ["DEFAULT_CALIBRATION", "EVIDENCE", "default_model"]

EVIDENCE: tuple[Evidence, ...] = (
    Evidence("COT_ELICITATION", "cot_elicit_share_lb_all", "at least {value:.0%} of requests coerce a full reasoning "
             "trace (99% lower bound; benign p99 {ref:.0%})"),
    Evidence("CAPABILITY_FOCUS", "target_capability_share_all", "{value:.0%} of requests are agentic, coding or "
             "planning tasks (benign p99 {ref:.0%})", group="capability"),
    Evidence("GRADER_REWRITE", "grader_rewrite_share_lb_all", "at least {value:.0%} of requests use the model as a "
             "grader or to rewrite answers (99% lower bound; benign p99 {ref:.0%})"),
    Evidence("SHARED_TEMPLATE", "shared_template_share_all", "{value:.0%} of requests use a prompt template that "
             "3+ other accounts also send (benign p99 {ref:.0%})", group="template"),
    Evidence("SHARED_PREAMBLE", "shared_preamble_share_all", "{value:.0%} of requests carry a system preamble that "
             "3+ other accounts also send (benign p99 {ref:.0%})", group="template"),
    Evidence("MAX_TOKENS_CEILING", "max_tokens_at_ceiling_share_all", "{value:.0%} of requests ask for the model's "
             "maximum output (benign p99 {ref:.0%})", group="power_use", behaviour=True),
    Evidence("MODEL_PIVOT", "model_pivot_48h_share_all", "{value:.0%} of requests hit a newly released model within "
             "48 h of its release (benign p99 {ref:.0%})", group="power_use", behaviour=True),
    Evidence("CAPABILITY_BREADTH", "capability_entropy_all", "capability entropy {value:.2f} bits (benign p99 "
             "{ref:.2f}): a curriculum across task classes", weight=0.5),
    Evidence("THINKING", "thinking_share_all", "{value:.0%} of requests ask for extended reasoning "
             "(benign p99 {ref:.0%})", weight=0.5, group="power_use", behaviour=True),
    Evidence("SINGLE_TURN", "single_turn_share_all", "{value:.0%} of conversations are single-shot "
             "(benign p99 {ref:.0%})", weight=0.5, group="automation", behaviour=True),
    Evidence("VOLUME", "request_count_1d", "{value:,.0f} requests in the last day (benign p99 {ref:,.0f})",
             weight=0.5, group="power_use", behaviour=True),
    Evidence("MACHINE_TIMING", "gap_s_cv_all", "inter-arrival coefficient of variation {value:.2f} "
             "(benign p1 {ref:.2f}): metronome-like", higher_is_riskier=False, weight=0.5, group="automation", behaviour=True),
    Evidence("ROUND_THE_CLOCK", "hour_of_day_entropy_all", "hour-of-day entropy {value:.2f} bits "
             "(benign p99 {ref:.2f}): active around the clock", weight=0.5, group="automation", behaviour=True),
    Evidence("FRESH_ACCOUNT", "age_at_use_h_min_all", "first request {value:,.1f} h after sign-up "
             "(benign p1 {ref:,.1f} h)", higher_is_riskier=False, weight=0.5, behaviour=True),
)

#: Calibration shipped with the package: built by ``python -m distillguard.scoring.calibrate``
#: from a benign-only simulation whose seed is used for nothing else (see docs/detection.md).
DEFAULT_CALIBRATION = "calibration.json"


def default_model() -> RiskModel:
    """The shipped calibration (raises with a clear message when the package lacks it)."""
    path = Path(str(resources.files("distillguard") / "data" / DEFAULT_CALIBRATION))
    if not path.exists():
        raise FileNotFoundError(f"{path}: no default calibration; build one with "
                                "`python -m distillguard.scoring.calibrate` or pass --calibration")
    return RiskModel.load(path)

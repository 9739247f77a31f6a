"""Evaluation harness: score any detector's output, and an online replay's decisions, against truth.

Reads the simulator's ``truth.jsonl`` and the contract's ``detections`` / ``decisions`` outputs
(see ``docs/evaluate.md`` for every metric's exact definition).
"""

from distillguard.evaluate.api import evaluate
from distillguard.evaluate.errors import EvaluationInputError
from distillguard.evaluate.render import render_report
from distillguard.evaluate.report import CampaignResult, EvaluationReport, GroupRate, PersonaResult

__all__ = [
    "CampaignResult",
    "EvaluationInputError",
    "EvaluationReport",
    "GroupRate",
    "PersonaResult",
    "evaluate",
    "render_report",
]

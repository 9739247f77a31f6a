"""Scoring stage: benign-calibrated account risk with reasons (see ``docs/detection.md``)."""

from distillguard.scoring.risk import Evidence, RiskModel

__all__ = ["Evidence", "RiskModel"]

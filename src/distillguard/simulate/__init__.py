"""Adversary-emulation traffic simulator: benign personas and distillation campaigns in the
traffic-log contract format, with ground truth in ``truth.jsonl`` only.

>>> sorted(SCENARIOS)
['adaptive', 'seed-2026', 'smoke', 'three-labs']
"""

from distillguard.simulate.campaigns import STYLES, Campaign
from distillguard.simulate.personas import PERSONAS, Persona
from distillguard.simulate.run import simulate
from distillguard.simulate.scenarios import SCENARIOS, Scenario, get_scenario
from distillguard.simulate.summary import SimulationSummary, render_summary

__all__ = [
    "PERSONAS",
    "SCENARIOS",
    "STYLES",
    "Campaign",
    "Persona",
    "Scenario",
    "SimulationSummary",
    "get_scenario",
    "render_summary",
    "simulate",
]

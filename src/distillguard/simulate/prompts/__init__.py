"""Prompt text: combinatorial generators (no external data) and optional real corpora.

``library.PromptLibrary`` turns them into Arrow string pools that the traffic generator samples by
index and joins element-wise, so per-row text costs no Python work.
"""

from distillguard.simulate.prompts.library import Pool, PromptLibrary, Recipe

__all__ = ["Pool", "PromptLibrary", "Recipe"]

"""The LiteLLM callback module this directory's config.yaml names (``custom_callbacks.proxy_handler_instance``).

LiteLLM loads ``<config dir>/custom_callbacks.py`` and reads ``proxy_handler_instance`` from it. The hook
is configured from the environment: ``DISTILLGUARD_CONFIG`` (default: ``distillguard.yaml`` next to this
file) and ``DISTILLGUARD_<FIELD>`` overrides (see ``docs/litellm.md``).
"""

import os
from pathlib import Path

from distillguard.serve.litellm_guard import DistillGuardHook

os.environ.setdefault("DISTILLGUARD_CONFIG", str(Path(__file__).with_name("distillguard.yaml")))
proxy_handler_instance = DistillGuardHook.from_env()

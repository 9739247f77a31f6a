"""The HTTP decision service in front of a gateway (nginx ``auth_request``, Envoy ``ext_authz``, any
gateway via ``/v1/decide``); see ``docs/serve.md``. Needs the ``serve`` extra (fastapi, uvicorn).

Names are imported lazily, so ``distillguard.serve.command`` (registered in the CLI) does not pull
FastAPI into every ``distillguard`` command, nor fail where the extra is not installed."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from distillguard.serve.app import create_app
    from distillguard.serve.config import KeyMap, ServeConfig, hash_key
    from distillguard.serve.core import ACTION_STATUS, DecisionCore, Verdict, edge_exchange, render
    from distillguard.serve.server import ServerThread, build_scorer, free_port

_WHERE = {"create_app": "app", "KeyMap": "config", "ServeConfig": "config", "hash_key": "config",
          "ACTION_STATUS": "core", "DecisionCore": "core", "Verdict": "core", "edge_exchange": "core",
          "render": "core", "ServerThread": "server", "build_scorer": "server", "free_port": "server"}

__all__ = ["ACTION_STATUS", "DecisionCore", "KeyMap", "ServeConfig", "ServerThread", "Verdict", "build_scorer",
           "create_app", "edge_exchange", "free_port", "hash_key", "render"]


def __getattr__(name: str) -> Any:
    mod = _WHERE.get(name)
    if mod is None:
        raise AttributeError(f"module 'distillguard.serve' has no attribute {name!r}")
    return getattr(importlib.import_module(f"distillguard.serve.{mod}"), name)

"""The ``distillguard serve`` command (register in ``cli.py`` as ``app.command("serve")(serve_command)``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["serve_command"]


def serve_command(
    config: Annotated[Path | None, typer.Option("--config", "-c", exists=True, dir_okay=False,
                                                help="Serve config YAML (docs/serve.md); env DISTILLGUARD_SERVE_* "
                                                     "and the options below override it.")] = None,
    host: Annotated[str | None, typer.Option("--host", help="Listen address (default 127.0.0.1: keep it "
                                                            "on loopback or an internal network).")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Listen port (default 8787).")] = None,
    edge_port: Annotated[int | None, typer.Option("--edge-port", help="Also answer the nginx/Envoy endpoints on "
                                                                      "this port, with a lean HTTP server "
                                                                      "(less CPU per request; docs/serve.md).")]
    = None,
    key_map: Annotated[Path | None, typer.Option("--key-map", exists=True, dir_okay=False,
                                                 help="SHA-256 of API key -> account map (YAML/JSON).")] = None,
    policy: Annotated[Path | None, typer.Option("--policy", exists=True, dir_okay=False,
                                                help="Policy YAML (default: the packaged policy.yaml).")] = None,
    calibration: Annotated[Path | None, typer.Option("--calibration", exists=True, dir_okay=False,
                                                     help="RiskModel calibration JSON (default: shipped).")] = None,
    fail_mode: Annotated[str | None, typer.Option("--fail-mode", help="open (allow when the scorer fails) or "
                                                                      "closed (refuse with 503).")] = None,
    snapshot: Annotated[Path | None, typer.Option("--snapshot", help="State file: restored at start, written "
                                                                     "periodically and at shutdown.")] = None,
    audit_dir: Annotated[Path | None, typer.Option("--audit-dir", help="Parquet audit log of every "
                                                                       "decision.")] = None,
    edge_learn: Annotated[str | None, typer.Option("--edge-learn", help="immediate, defer or off "
                                                                        "(docs/serve.md).")] = None,
    redis_url: Annotated[str | None, typer.Option("--redis-url", help="Keep the scorer state in Redis, shared "
                                                                      "by every replica (redis://host:6379/0).")]
    = None,
    intel_db: Annotated[Path | None, typer.Option("--intel-db", help="Store holding peers' indicators imported "
                                                                   "with `distillguard share import/pull`.")] = None,
    group_key: Annotated[Path | None, typer.Option("--group-key", help="Group key file matching those "
                                                                     "indicators (with --intel-db).")] = None,
) -> None:
    """Run the HTTP decision service (nginx auth_request, Envoy ext_authz, generic /v1/decide)."""
    import uvicorn

    from distillguard.serve.app import create_app
    from distillguard.serve.config import ServeConfig
    from distillguard.serve.server import build_scorer

    try:
        cfg = ServeConfig.load(config, host=host, port=port, edge_port=edge_port, key_map=key_map, policy=policy,
                               calibration=calibration, fail_mode=fail_mode, snapshot_path=snapshot,
                               audit_dir=audit_dir, edge_learn=edge_learn, redis_url=redis_url,
                               intel_db=intel_db, group_key=group_key)
    except (ValueError, TypeError) as e:
        raise typer.BadParameter(str(e)) from e
    if cfg.host not in ("127.0.0.1", "::1", "localhost") and not cfg.shared_secret:
        typer.echo(f"warning: listening on {cfg.host} without shared_secret: anyone who reaches the port can "
                   "query and feed the scorer (docs/serve.md, Security)", err=True)
    app = create_app(build_scorer(cfg), cfg)
    uvicorn.run(app, host=cfg.host, port=cfg.port, workers=1, access_log=False, log_level="info")

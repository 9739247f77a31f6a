"""Build a scorer from a :class:`ServeConfig` and run the app with uvicorn (in the foreground, or in a
thread on a free loopback port for tests and benchmarks)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import uvicorn

from distillguard.online.policy import Policy
from distillguard.online.scorer import OnlineScorer
from distillguard.serve.config import ServeConfig

__all__ = ["ServerThread", "build_scorer", "free_port"]


def build_scorer(config: ServeConfig) -> OnlineScorer:
    """An ``OnlineScorer`` with the configured (or shipped) calibration and policy: the same loaders as
    ``distillguard replay``; with ``redis_url``, state in Redis shared by every replica. The snapshot,
    if any, is restored by the app at start-up."""
    from distillguard.scoring.defaults import default_model
    from distillguard.scoring.risk import RiskModel

    model = RiskModel.load(config.calibration) if config.calibration else default_model()
    policy = Policy.from_yaml(config.policy) if config.policy else Policy.default()
    watchlist = None
    if config.intel_db is not None and config.group_key is not None:
        from distillguard.share import Watchlist, load_keys

        watchlist = Watchlist.from_store(config.intel_db, load_keys(config.group_key))
    if config.redis_url:
        from distillguard.online.redis_state import RedisState

        return OnlineScorer(model, policy, watchlist=watchlist,
                            state=RedisState(config.redis_url, prefix=config.redis_prefix))
    return OnlineScorer(model, policy, watchlist=watchlist)


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (for processes, like nginx, that cannot bind port 0 and report it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class ServerThread:
    """``uvicorn.Server`` in a daemon thread on ``host`` (port 0: the OS picks a free one).

    ``with ServerThread(app) as srv: srv.url`` — started and ready on enter, shut down (lifespan
    included: final snapshot, audit flush) on exit."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0,
                 loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None, **uvicorn_kw: Any) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.host, self.port = host, int(self.sock.getsockname()[1])
        kw = {"log_level": "warning", "access_log": False, "lifespan": "on", **uvicorn_kw}
        self.server = uvicorn.Server(uvicorn.Config(app, **kw))
        self._thread = threading.Thread(target=self._run, name="uvicorn", daemon=True)
        self.loop_factory = loop_factory  # e.g. uvloop.new_event_loop, as `distillguard serve` runs

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _run(self) -> None:
        with asyncio.Runner(loop_factory=self.loop_factory) as runner:
            runner.run(self.server.serve(sockets=[self.sock]))

    def start(self, timeout: float = 20.0) -> ServerThread:
        self._thread.start()
        t0 = time.monotonic()
        while not self.server.started:
            if not self._thread.is_alive():
                raise RuntimeError("uvicorn exited during start-up (see the log above)")
            if time.monotonic() - t0 > timeout:
                raise TimeoutError(f"uvicorn did not start within {timeout} s")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self.server.should_exit = True
        self._thread.join(timeout)
        self.sock.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

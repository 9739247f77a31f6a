"""A lean HTTP/1.1 server for the two per-request edge endpoints (``edge_port``, docs/serve.md).

nginx ``auth_request`` and Envoy ``ext_authz`` send one header-only subrequest per client request.
Served by uvicorn, each pays for the ASGI machinery (scope and message dicts, a task, the middleware
chain, per-header validation); here an ``asyncio.Protocol`` parses with ``httptools`` (what uvicorn
uses) and calls the same ``answer(headers, path, query, peer)`` as the ASGI route, so both ports give
the same statuses, headers and bodies. Keep-alive and pipelined requests are answered in order; any
other path gets 404 (everything else stays on the main port).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import unquote

import httptools

__all__ = ["EdgeServer", "start_edge_server"]

Answer = Callable[[dict[str, str], str, bytes, str | None], Awaitable[tuple[int, dict[str, str], bytes]]]

_STATUS = {s.value: b"HTTP/1.1 %d %s\r\n" % (s.value, s.phrase.encode()) for s in HTTPStatus}
_JSON_TYPE = b"content-type: application/json\r\n"
_NOT_FOUND = (404, {}, b'{"error":"not an edge endpoint (nginx: /v1/auth/nginx, envoy: /v1/authz/envoy/...)"}')


def _header(name: str, value: str) -> bytes:
    if "\r" in value or "\n" in value:  # never split the response (uvicorn refuses such a value too)
        value = value.replace("\r", " ").replace("\n", " ")
    return b"%s: %s\r\n" % (name.lower().encode("latin-1"), value.encode("latin-1", "replace"))


def _response(status: int, headers: dict[str, str], body: bytes, keep_alive: bool) -> bytes:
    out = [_STATUS.get(status) or b"HTTP/1.1 %d Status\r\n" % status]
    out.extend(_header(k, v) for k, v in headers.items())
    out.append(b"content-length: %d\r\n" % len(body))
    if body:
        out.append(_JSON_TYPE)
    if not keep_alive:
        out.append(b"connection: close\r\n")
    out.append(b"\r\n")
    out.append(body)
    return b"".join(out)


class _EdgeProtocol(asyncio.Protocol):
    """One connection. The answer coroutine is driven here step by step (no task per request): with the
    scorer on the event loop it finishes in its first step; on the scorer thread it waits on futures."""

    def __init__(self, answer: Answer, edge: Callable[[str], bool], live: set[_EdgeProtocol]) -> None:
        self.answer, self.is_edge, self.live = answer, edge, live
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.peer: str | None = None
        self.url = b""
        self.headers: dict[str, str] = {}
        self.queue: deque[tuple[dict[str, str], bytes, bool]] = deque()
        self.busy = False

    # -- connection --------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not an asyncio.Transport subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if isinstance(peer, tuple) else None
        self.live.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.queue.clear()
        self.live.discard(self)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._close(400, b'{"error":"upgrade not supported"}')
        except httptools.HttpParserError:
            self._close(400, b'{"error":"bad request"}')

    def _close(self, status: int, body: bytes) -> None:
        if self.transport is not None:
            self.transport.write(_response(status, {}, body, False))
            self.transport.close()
            self.transport = None

    # -- httptools callbacks -------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = {}

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_message_complete(self) -> None:
        self.queue.append((self.headers, self.url, self.parser.should_keep_alive()))
        if not self.busy:
            self._next()

    # -- answering -----------------------------------------------------------------------------
    def _next(self) -> None:
        while self.queue and self.transport is not None:
            headers, url, keep_alive = self.queue.popleft()
            try:
                u = httptools.parse_url(url)
                path, qs = unquote(u.path.decode("ascii")), u.query or b""
            except (httptools.HttpParserInvalidURLError, UnicodeDecodeError):
                self._write(400, {}, b'{"error":"bad URL"}', keep_alive)
                continue
            if not self.is_edge(path):
                self._write(*_NOT_FOUND, keep_alive)
                continue
            self.busy = True
            self._step(self.answer(headers, path, qs, self.peer), keep_alive)  # type: ignore[arg-type]
            if self.busy:  # waiting on the scorer thread: the rest follows when it answers
                return

    def _step(self, coro: Coroutine[Any, Any, tuple[int, dict[str, str], bytes]], keep_alive: bool) -> None:
        try:
            fut = coro.send(None)
        except StopIteration as done:
            self.busy = False
            self._write(*done.value, keep_alive)
            return
        except (Exception, asyncio.CancelledError):  # the ASGI route would answer 500 too
            self.busy = False
            self._write(500, {}, b'{"error":"internal error"}', keep_alive)
            return
        if fut is None:  # a bare yield (asyncio.sleep(0)): resume on the next loop iteration
            asyncio.get_running_loop().call_soon(self._resume, coro, keep_alive)
        elif isinstance(fut, asyncio.Future):  # what asyncio awaits yield; resumed once it is done
            fut._asyncio_future_blocking = False
            fut.add_done_callback(lambda _f: self._resume(coro, keep_alive))
        else:
            coro.close()
            self.busy = False
            self._write(500, {}, b'{"error":"internal error"}', keep_alive)

    def _resume(self, coro: Coroutine[Any, Any, tuple[int, dict[str, str], bytes]], keep_alive: bool) -> None:
        self._step(coro, keep_alive)
        if not self.busy:
            self._next()

    def _write(self, status: int, headers: dict[str, str], body: bytes, keep_alive: bool) -> None:
        if self.transport is None:
            return
        self.transport.write(_response(status, headers, body, keep_alive))
        if not keep_alive:
            self.transport.close()
            self.transport = None


class EdgeServer:
    """The listening edge server and its open connections; ``port`` is the one it got."""

    def __init__(self, server: asyncio.Server, live: set[_EdgeProtocol]) -> None:
        self.server, self.live = server, live
        self.port = int(server.sockets[0].getsockname()[1])

    def close(self) -> None:
        """Stop listening and close every connection (keep-alive ones too), e.g. before the scorer stops."""
        self.server.close()
        for p in list(self.live):
            if p.transport is not None:
                p.transport.close()
        self.live.clear()


async def start_edge_server(answer: Answer, host: str, port: int,
                            edge: Callable[[str], bool] | None = None) -> EdgeServer:
    """Listen on ``host:port`` (0: any free port) and answer the edge endpoints with ``answer``;
    ``edge(path)`` says which paths are edge endpoints (default: nginx and Envoy modes)."""
    from distillguard.serve.app import ENVOY_PREFIX, NGINX_PATH

    def is_edge(path: str) -> bool:
        return path == NGINX_PATH or path.startswith(ENVOY_PREFIX + "/")

    live: set[_EdgeProtocol] = set()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _EdgeProtocol(answer, edge or is_edge, live), host, port)
    return EdgeServer(server, live)

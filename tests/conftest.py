"""Shared helpers: tiny valid rows and writers for the traffic-log formats."""

from __future__ import annotations

import gzip
import json
import math
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"


def account(i: int, **kw: Any) -> dict[str, Any]:
    row = {"account_id": f"acct_{i}", "created_at": "2026-04-01T00:00:00Z", "tier": "free",
           "email_domain": "example.org", "verified": False}
    row.update(kw)
    return row


def exchange(i: int, **kw: Any) -> dict[str, Any]:
    row = {
        "request_id": f"req_{i}", "ts": f"2026-04-22T10:{(i // 60) % 60:02d}:{i % 60:02d}Z",
        "account_id": f"acct_{i % 5}", "model": "model-large", "prompt": f"question number {i}",
        "asn": 64500, "thinking": False, "max_tokens": 1024, "client_ip": "192.0.2.1",
    }
    row.update(kw)
    return row


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    """Write rows as JSON Lines; a ``bytes`` or ``str`` item is written as that exact line."""
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wb") as f:
        for r in rows:
            if isinstance(r, bytes):
                line = r
            elif isinstance(r, str):
                line = r.encode()
            else:
                line = json.dumps(r).encode()
            f.write(line + b"\n")
    return path


def close(a: Any, b: Any) -> bool:
    """Equal for None, bools and strings; within 1e-9 for numbers (batch vs online features)."""
    if a is None or b is None:
        return a is b
    if isinstance(a, bool | str) or isinstance(b, bool | str):
        return a == b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def query(db: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


@pytest.fixture
def logdir(tmp_path: Path) -> Path:
    d = tmp_path / "logs"
    d.mkdir()
    return d


def free_port() -> int:
    """A loopback port that was free a moment ago (for servers that cannot report a port-0 bind)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A throwaway real redis-server: loopback, free port, no RDB/AOF, in a temp dir; killed at
    teardown. Skips (with the install command) where redis-server is missing; CI installs it."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server is not on PATH (make sysdeps / apt-get install redis-server)")
    redis = pytest.importorskip("redis")
    d = tmp_path_factory.mktemp("redis")
    port = free_port()
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(d)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 10
    try:
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail("redis-server did not start")
                time.sleep(0.05)
        yield url
    finally:
        client.close()
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

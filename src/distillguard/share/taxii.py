"""TAXII 2.1 push and pull with ``taxii2-client`` (tested against a real ``medallion`` server).

``server`` is a TAXII API root URL (``https://host/api1/``) or the server's discovery URL
(``https://host/taxii2/``, whose default API root is used); ``collection`` is the collection id.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import requests
from taxii2client.exceptions import TAXIIServiceException
from taxii2client.v21 import ApiRoot, Collection, Server, as_pages

__all__ = ["TaxiiError", "medallion_config", "pull", "push"]


class TaxiiError(RuntimeError):
    """A TAXII exchange failed; the message says what to check."""


def _explain(e: Exception, server: str, user: str | None) -> TaxiiError:
    if isinstance(e, requests.HTTPError) and e.response is not None:
        code = e.response.status_code
        if code in (401, 403):
            who = f"user {user!r}" if user else "no credentials"
            return TaxiiError(f"TAXII authentication failed at {server} (HTTP {code}, {who}): check --user/--password")
        if code == 404:
            return TaxiiError(f"TAXII server {server}: not found (HTTP 404): check the API root URL and collection id")
        return TaxiiError(f"TAXII server {server} answered HTTP {code}: {e.response.text[:200]}")
    if isinstance(e, requests.ConnectionError):
        return TaxiiError(f"cannot reach TAXII server {server}: {e.__class__.__name__}")
    return TaxiiError(f"TAXII error at {server}: {e}")


def _collection(server: str, collection: str, user: str | None, password: str | None) -> Collection:
    try:
        base = server if server.endswith("/") else server + "/"
        if base.rstrip("/").endswith("taxii2"):
            root = Server(base, user=user, password=password).default
            if root is None:
                raise TaxiiError(f"TAXII server {server} has no default API root: pass the API root URL")
            base = root.url
        root = ApiRoot(base, user=user, password=password)
        for c in root.collections:
            if c.id == collection:
                return Collection(c.url, user=user, password=password)
        ids = ", ".join(c.id for c in root.collections) or "none"
    except TaxiiError:
        raise
    except (requests.RequestException, TAXIIServiceException, ValueError) as e:
        raise _explain(e, server, user) from e
    raise TaxiiError(f"TAXII API root {server} has no collection {collection!r} (it has: {ids})")


def push(bundle: dict[str, Any] | Path | str, server: str, collection: str, *, user: str | None = None,
         password: str | None = None) -> dict[str, Any]:
    """Add a bundle's objects to a collection; returns the server's status (success/failure counts).

    Extension definitions are not pushed (see the comment below). Objects the server already holds (same id and ``modified``) come back as failures, which is how
    TAXII says "already there": pushing twice is harmless.
    """
    doc = json.loads(Path(bundle).read_text()) if isinstance(bundle, (str, Path)) else bundle
    col = _collection(server, collection, user, password)
    if not col.can_write:
        raise TaxiiError(f"collection {collection} at {server} is not writable for {user or 'anonymous'}")
    objects = doc.get("objects", [])
    # medallion 3.0.0 reads an object's own ``version`` property (extension-definition has one, "1.0.0")
    # as its TAXII version timestamp and then fails every listing of the collection; the definitions
    # are fixed and documented (docs/sharing.md), so they travel in file bundles only.
    kept = [o for o in objects if o.get("type") != "extension-definition"]
    envelope = {"objects": kept}
    try:
        status = col.add_objects(json.dumps(envelope), wait_for_completion=True, poll_interval=0.2, timeout=60)
    except (requests.RequestException, TAXIIServiceException) as e:
        raise _explain(e, server, user) from e
    return {"status": status.status, "total": status.total_count, "success": status.success_count,
            "failure": status.failure_count, "pending": status.pending_count, "skipped": len(objects) - len(kept)}


def pull(server: str, collection: str, *, user: str | None = None, password: str | None = None,
         added_after: str | None = None, per_request: int = 100) -> dict[str, Any]:
    """Every object of a collection (all pages) as one bundle-like dict ``{"type": "bundle", "objects"}``."""
    col = _collection(server, collection, user, password)
    if not col.can_read:
        raise TaxiiError(f"collection {collection} at {server} is not readable for {user or 'anonymous'}")
    kwargs = {"added_after": added_after} if added_after else {}
    objects: list[dict[str, Any]] = []
    try:
        for page in as_pages(col.get_objects, per_request=per_request, **kwargs):
            objects.extend(page.get("objects", []))
    except (requests.RequestException, TAXIIServiceException) as e:
        raise _explain(e, server, user) from e
    return {"type": "bundle", "id": "bundle--00000000-0000-4000-8000-000000000000", "objects": objects}


def medallion_config(folder: Path | str, users: dict[str, str], *, api_root: str = "share",
                     collection: str = "distillation-intel", host: str = "127.0.0.1", port: int = 5000) -> Path:
    """Write a ``medallion`` (TAXII 2.1 reference server) setup into ``folder`` and return the config path:
    basic-auth ``users``, the memory backend with one API root and one readable, writable collection.
    Run it with ``python -m medallion.scripts.run --host HOST --port PORT CONFIG``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    base = f"http://{host}:{port}"
    data = {
        "/discovery": {"title": "distillguard sharing group", "description": "TAXII 2.1 for distillation intel",
                       "default": f"{base}/{api_root}/", "api_roots": [f"{base}/{api_root}/"]},
        api_root: {
            "information": {"title": "distillation intel", "description": "STIX bundles from distillguard",
                            "versions": ["application/taxii+json;version=2.1"], "max_content_length": 104857600},
            "status": [],
            "collections": [{"id": collection, "title": "distillation campaigns", "description": "shared bundles",
                             "can_read": True, "can_write": True,
                             "media_types": ["application/stix+json;version=2.1"], "objects": [], "manifest": []}],
        },
    }
    (folder / "data.json").write_text(json.dumps(data, indent=1))
    config = {"users": users, "taxii": {"max_page_size": 100},
              "backend": {"module_class": "MemoryBackend", "module": "medallion.backends.memory_backend",
                          "filename": str(folder / "data.json")}}
    path = folder / "config.json"
    path.write_text(json.dumps(config, indent=1))
    return path

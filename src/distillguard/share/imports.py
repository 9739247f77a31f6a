"""Import peers' STIX bundles into the store: indicators become rows of ``shared_indicators``.

Checks first, writes after: a bundle that is not JSON, not a STIX bundle, or carries one unkeyed
(plain-hash) identifier is refused whole with a clear error, and the store is left as it was.
Every object imported is recorded in ``share_ledger`` keyed by (STIX id, modified), so importing
the same bundle or pulling the same collection twice adds nothing. A newer version of an indicator
replaces the older one (``revoked: true`` revokes it).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from distillguard.share.keys import KINDS, PlainHashError, check_keyed, parse_keyed
from distillguard.share.stix import SCO_TYPE

__all__ = ["LEDGER", "SHARED_INDICATORS", "ImportSummary", "ShareImportError", "ensure_share_tables",
           "import_bundle", "parse_pattern", "revoke"]

_TS = pa.timestamp("us", tz="UTC")

#: Table ``shared_indicators``: one row per imported indicator (its newest version).
SHARED_INDICATORS = pa.schema([
    pa.field("id", pa.string(), nullable=False),  # STIX indicator id
    pa.field("kind", pa.string(), nullable=False),  # payment, ip, ip_block, email_domain, user_agent, asn, ...
    pa.field("value", pa.string(), nullable=False),  # keyed value (hmac-sha256:<key_id>:<hex>) or clear value
    pa.field("key_id", pa.string()),  # group key it was made under; null for clear values
    pa.field("provider", pa.string()),  # name of the sharing identity (created_by_ref)
    pa.field("provider_id", pa.string()),  # its STIX identity id
    pa.field("campaign", pa.string()),  # name of the campaign it indicates, when in the bundle
    pa.field("shared_at", _TS),  # indicator 'created'
    pa.field("modified", _TS),  # indicator 'modified' (the version held)
    pa.field("valid_from", _TS),
    pa.field("valid_until", _TS),  # null: no expiry
    pa.field("revoked", pa.bool_(), nullable=False),  # by a newer STIX version or `share revoke`
    pa.field("source", pa.string()),  # file or TAXII collection it came from
    pa.field("imported_at", _TS),
])

#: Table ``share_ledger``: every STIX object version seen, so re-imports are no-ops.
LEDGER = pa.schema([
    pa.field("stix_id", pa.string(), nullable=False),
    pa.field("modified", pa.string(), nullable=False),  # as sent ('' for objects without one)
    pa.field("type", pa.string()),
    pa.field("source", pa.string()),
    pa.field("imported_at", _TS),
])

_PAT_SCO = re.compile(rf"^\[{re.escape(SCO_TYPE)}:kind = '(?P<kind>[a-z_]+)' AND "
                      rf"{re.escape(SCO_TYPE)}:value = '(?P<value>(?:[^'\\]|\\.)*)'\]$")
_PAT_ASN = re.compile(r"^\[autonomous-system:number = (?P<value>[0-9]+)\]$")


class ShareImportError(ValueError):
    """A peer's bundle was refused; nothing was written."""


@dataclass
class ImportSummary:
    """What an import did."""

    source: str
    objects: int = 0
    new_objects: int = 0
    already_imported: int = 0
    indicators_added: int = 0
    indicators_updated: int = 0
    indicators_revoked: int = 0
    skipped_patterns: int = 0
    unknown_keys: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _ddl(name: str, schema: pa.Schema) -> str:
    from distillguard.store import duckdb_type

    cols = ", ".join(f"{f.name} {duckdb_type(f.type)}{'' if f.nullable else ' NOT NULL'}" for f in schema)
    return f"CREATE TABLE IF NOT EXISTS {name} ({cols})"


def ensure_share_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create ``shared_indicators`` and ``share_ledger`` if missing (idempotent)."""
    con.execute(_ddl("shared_indicators", SHARED_INDICATORS))
    con.execute(_ddl("share_ledger", LEDGER))


def parse_pattern(pattern: str) -> tuple[str, str] | None:
    """``(kind, value)`` of a distillguard indicator pattern, or None for patterns we do not match on."""
    m = _PAT_SCO.match(pattern.strip())
    if m:
        return m["kind"], re.sub(r"\\(.)", r"\1", m["value"])
    m = _PAT_ASN.match(pattern.strip())
    return ("asn", m["value"]) if m else None


def _time(v: Any, what: str) -> datetime | None:
    if v is None:
        return None
    try:
        t = datetime.fromisoformat(str(v).replace("Z", "+00:00"))
    except ValueError:
        raise ShareImportError(f"{what}: not a timestamp: {str(v)[:40]!r}") from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _load(bundle: dict[str, Any] | Path | str) -> tuple[dict[str, Any], str]:
    if isinstance(bundle, dict):
        return bundle, "bundle"
    path = Path(bundle)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise ShareImportError(f"{path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ShareImportError(f"{path}: not JSON ({e})") from None
    return doc, str(path)


def _check(doc: Any, source: str) -> list[dict[str, Any]]:
    if not isinstance(doc, dict) or doc.get("type") != "bundle" or not isinstance(doc.get("objects"), list):
        raise ShareImportError(f"{source}: not a STIX bundle (want {{'type': 'bundle', 'objects': [...]}})")
    objs = doc["objects"]
    for i, o in enumerate(objs):
        if not isinstance(o, dict) or not isinstance(o.get("type"), str) or not isinstance(o.get("id"), str) \
                or not o["id"].startswith(o["type"] + "--"):
            raise ShareImportError(f"{source}: object {i} has no valid type/id")
        if o["type"] == "indicator":
            if not isinstance(o.get("pattern"), str):
                raise ShareImportError(f"{source}: indicator {o['id']} has no pattern")
            for k in ("created", "modified", "valid_from", "valid_until"):
                _time(o.get(k), f"{source}: {o['id']} {k}")
            parsed = parse_pattern(o["pattern"])
            if parsed:
                kind, value = parsed
                if kind not in KINDS:
                    raise ShareImportError(f"{source}: indicator {o['id']}: unknown kind {kind!r}")
                try:
                    check_keyed(kind, value)
                except PlainHashError as e:
                    raise ShareImportError(f"{source}: indicator {o['id']}: {e}") from None
        if o["type"] == SCO_TYPE and isinstance(o.get("kind"), str) and isinstance(o.get("value"), str):
            try:
                check_keyed(o["kind"], o["value"])
            except (PlainHashError, ValueError) as e:
                raise ShareImportError(f"{source}: {o['id']}: {e}") from None
    return objs


def import_bundle(db: Path | str | duckdb.DuckDBPyConnection, bundle: dict[str, Any] | Path | str, *,
                  source: str | None = None, known_keys: set[str] | None = None,
                  now: datetime | None = None) -> ImportSummary:
    """Check a peer's bundle and store its indicators (one transaction); returns what changed.

    ``known_keys``: ids of the group keys this provider holds; indicators under other keys are still
    stored (a later key file may hold them) and listed in ``unknown_keys``.
    """
    doc, src = _load(bundle)
    src = source or src
    objs = _check(doc, src)
    now = now or datetime.now(UTC)
    names = {o["id"]: o.get("name") for o in objs if o["type"] in ("identity", "campaign")}
    indicates = {o["source_ref"]: o["target_ref"] for o in objs
                 if o["type"] == "relationship" and o.get("relationship_type") == "indicates"}
    own = not isinstance(db, (str, Path))
    con = db if isinstance(db, duckdb.DuckDBPyConnection) else duckdb.connect(str(db))
    out = ImportSummary(src, objects=len(objs))
    try:
        con.execute("SET TimeZone = 'UTC'")
        ensure_share_tables(con)
        con.execute("BEGIN TRANSACTION")
        try:
            for o in objs:
                mod = str(o.get("modified") or "")
                seen = con.execute("SELECT count(*) FROM share_ledger WHERE stix_id = ? AND modified = ?",
                                   [o["id"], mod]).fetchall()[0][0]
                if seen:
                    out.already_imported += 1
                    continue
                out.new_objects += 1
                con.execute("INSERT INTO share_ledger VALUES (?, ?, ?, ?, ?)", [o["id"], mod, o["type"], src, now])
                if o["type"] == "indicator":
                    _upsert(con, o, names, indicates, src, now, out, known_keys)
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
    finally:
        if not own:
            con.close()
    out.unknown_keys = sorted(set(out.unknown_keys))
    return out


def _upsert(con: duckdb.DuckDBPyConnection, o: dict[str, Any], names: dict[str, Any], indicates: dict[str, str],
            src: str, now: datetime, out: ImportSummary, known_keys: set[str] | None) -> None:
    parsed = parse_pattern(o["pattern"])
    if parsed is None:
        out.skipped_patterns += 1
        return
    kind, value = parsed
    key_id = parse_keyed(value)[0] if value.startswith("hmac-sha256:") else None
    if key_id and known_keys is not None and key_id not in known_keys:
        out.unknown_keys.append(key_id)
    modified = _time(o.get("modified"), "modified")
    old = con.execute("SELECT modified, revoked FROM shared_indicators WHERE id = ?", [o["id"]]).fetchall()
    if old and old[0][0] is not None and modified is not None and modified <= old[0][0]:
        return  # an older version arriving late changes nothing
    revoked = bool(o.get("revoked", False))
    row = [o["id"], kind, value, key_id, names.get(o.get("created_by_ref")) or o.get("created_by_ref"),
           o.get("created_by_ref"), names.get(indicates.get(o["id"], "")), _time(o.get("created"), "created"),
           modified, _time(o.get("valid_from"), "valid_from"), _time(o.get("valid_until"), "valid_until"),
           revoked, src, now]
    if old:
        con.execute("DELETE FROM shared_indicators WHERE id = ?", [o["id"]])
        out.indicators_updated += 1
    else:
        out.indicators_added += 1
    if revoked:
        out.indicators_revoked += 1
    con.execute("INSERT INTO shared_indicators VALUES (" + ", ".join("?" * len(row)) + ")", row)


def revoke(db: Path | str, indicator_id: str) -> bool:
    """Revoke an imported indicator locally (it stops matching); False if no such indicator."""
    con = duckdb.connect(str(db))
    try:
        ensure_share_tables(con)
        n = con.execute("SELECT count(*) FROM shared_indicators WHERE id = ?", [indicator_id]).fetchall()[0][0]
        con.execute("UPDATE shared_indicators SET revoked = TRUE WHERE id = ?", [indicator_id])
    finally:
        con.close()
    return bool(n)

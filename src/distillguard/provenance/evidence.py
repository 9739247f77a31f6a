"""Tamper-evident evidence log: what was served to whom, append-only, hash-chained, HMAC-signed.

One row per served response in the ``evidence_log`` table of the store (:data:`EVIDENCE_LOG`):
request id, account, time, SHA-256 of the response text, the watermark key id and canary id it
carried. Each record's ``record_hash`` covers its fields and its predecessor's hash (a chain); its
``hmac`` signs that hash with the evidence key, which stays outside the database. Whoever can write
the database but lacks the key can delete, edit, insert or reorder rows, but cannot do so unseen:
:func:`verify` says which records and how. Cutting records off the *end* leaves a valid shorter
chain; keep the head (``seq``, ``record_hash``) of each export or publish it, and pass it as the
``anchor``.

>>> import duckdb
>>> from distillguard.provenance.keys import EvidenceKey
>>> con = duckdb.connect()
>>> key = EvidenceKey("ev-2026", b"e" * 32)
>>> log = EvidenceLog(con, key)
>>> _ = log.append([served("r1", "acct_7", "Hello.", watermark_key_id="wm-1", ts=T0),
...                 served("r2", "acct_7", "Hi again.", canary_id="cn-3f2a", ts=T0)])
>>> verify(con, key).ok
True
>>> _ = con.execute("UPDATE evidence_log SET account_id = 'acct_8' WHERE request_id = 'r2'")
>>> [(i.kind, i.seq, i.request_id) for i in verify(con, key).issues]
[('edited', 1, 'r2')]
"""

from __future__ import annotations

import hashlib
import inspect
import json
import zipfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from distillguard.engines import DuckDBEngine
from distillguard.provenance import chain
from distillguard.provenance.keys import Key

__all__ = ["EVIDENCE_LOG", "EVIDENCE_TABLE", "EvidenceLog", "ExportResult", "Issue", "T0", "VerifyResult",
           "create_table_sql", "export", "read_records", "served", "verify", "verify_bundle"]

EVIDENCE_TABLE = "evidence_log"
T0 = datetime(2026, 1, 1, tzinfo=UTC)  # a fixed time for examples

#: Arrow schema of the evidence log (to add to ``contract.py`` when the lead wants it there).
EVIDENCE_LOG = pa.schema([
    pa.field("seq", pa.int64(), nullable=False, metadata={"doc": "0, 1, 2, ... in append order"}),
    pa.field("request_id", pa.string(), nullable=False, metadata={"doc": "joins exchanges"}),
    pa.field("account_id", pa.string(), nullable=False, metadata={"doc": "account served"}),
    pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False, metadata={"doc": "when it was served"}),
    pa.field("response_sha256", pa.string(), nullable=False, metadata={"doc": "SHA-256 (hex) of the UTF-8 response"}),
    pa.field("watermark_key_id", pa.string(), metadata={"doc": "watermark key the response was marked with"}),
    pa.field("canary_id", pa.string(), metadata={"doc": "canary inserted into the response"}),
    pa.field("evidence_key_id", pa.string(), nullable=False, metadata={"doc": "key id of the HMAC"}),
    pa.field("prev_hash", pa.string(), nullable=False, metadata={"doc": "record_hash of seq-1 (genesis: 64 zeros)"}),
    pa.field("record_hash", pa.string(), nullable=False, metadata={"doc": "SHA-256 of the canonical record"}),
    pa.field("hmac", pa.string(), nullable=False, metadata={"doc": "HMAC-SHA256(evidence key, record_hash)"}),
])


def create_table_sql(table: str = EVIDENCE_TABLE) -> str:
    """DDL generated from :data:`EVIDENCE_LOG` (so the table cannot drift from the schema)."""
    from distillguard.store import duckdb_type

    cols = ", ".join(f"{f.name} {duckdb_type(f.type)}{'' if f.nullable else ' NOT NULL'}" for f in EVIDENCE_LOG)
    return f"CREATE TABLE IF NOT EXISTS {table} ({cols})"


def served(request_id: str, account_id: str, response: str | bytes, *, ts: datetime | None = None,
           watermark_key_id: str | None = None, canary_id: str | None = None) -> dict[str, Any]:
    """An unsealed record for a response as served (the text is hashed, never stored)."""
    data = response.encode("utf-8") if isinstance(response, str) else response
    when = ts or datetime.now(UTC)
    if when.tzinfo is None:
        raise ValueError("ts must be timezone-aware (UTC)")
    return {"request_id": request_id, "account_id": account_id, "ts": when,
            "response_sha256": hashlib.sha256(data).hexdigest(), "watermark_key_id": watermark_key_id,
            "canary_id": canary_id}


def _ts_us(ts: datetime) -> int:
    d = ts - datetime(1970, 1, 1, tzinfo=UTC)
    return (d.days * 86400 + d.seconds) * 1_000_000 + d.microseconds


class EvidenceLog:
    """Appends sealed records to the store; one transaction per :meth:`append` call."""

    def __init__(self, con: duckdb.DuckDBPyConnection, key: Key, table: str = EVIDENCE_TABLE) -> None:
        self.con, self.key, self.table = con, key, table
        con.execute(create_table_sql(table))

    def append(self, records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """Seal and insert ``records`` (from :func:`served`) after the current head, atomically."""
        recs = list(records)
        con = self.con
        con.execute("BEGIN TRANSACTION")
        try:
            last = con.execute(f"SELECT seq, record_hash FROM {self.table} ORDER BY seq DESC LIMIT 1").fetchall()
            head = last[0] if last else None
            seq, prev = (head[0] + 1, head[1]) if head else (0, chain.GENESIS)
            rows = []
            for r in recs:
                for k in ("request_id", "account_id", "ts", "response_sha256"):
                    if r.get(k) is None:
                        raise ValueError(f"evidence record needs {k!r}")
                rec = {"seq": seq, "request_id": str(r["request_id"]), "account_id": str(r["account_id"]),
                       "ts_us": _ts_us(r["ts"]), "response_sha256": r["response_sha256"],
                       "watermark_key_id": r.get("watermark_key_id"), "canary_id": r.get("canary_id"),
                       "evidence_key_id": self.key.key_id}
                sealed = chain.seal(rec, prev, self.key.secret)
                rows.append(sealed)
                seq, prev = seq + 1, sealed["record_hash"]
            if rows:
                tbl = pa.Table.from_pylist([_to_row(x) for x in rows], schema=EVIDENCE_LOG)
                con.register("_evidence_new", tbl)
                con.execute(f"INSERT INTO {self.table} SELECT * FROM _evidence_new")
                con.unregister("_evidence_new")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return rows


def _to_row(rec: dict[str, Any]) -> dict[str, Any]:
    out = {k: rec.get(k) for k in EVIDENCE_LOG.names if k != "ts"}
    out["ts"] = datetime.fromtimestamp(rec["ts_us"] // 1_000_000, UTC).replace(microsecond=rec["ts_us"] % 1_000_000)
    return out


def read_records(con: duckdb.DuckDBPyConnection, table: str = EVIDENCE_TABLE) -> list[dict[str, Any]]:
    """All records as chain dicts (``ts`` as microseconds since the epoch, as hashed), in seq order."""
    cols = [n for n in EVIDENCE_LOG.names if n != "ts"]
    sql = f"SELECT {', '.join(cols)}, epoch_us(ts) AS ts_us FROM {table} ORDER BY seq, rowid"
    cur = con.execute(sql)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


@dataclass(frozen=True)
class Issue:
    """One finding of :func:`verify`: what kind of tampering, where, in words."""

    kind: str
    seq: int | None
    request_id: str | None
    message: str


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    records: int
    head_seq: int | None
    head_hash: str
    key_id: str
    issues: list[Issue] = field(default_factory=list)

    def kinds(self) -> dict[str, list[int | None]]:
        """Issue kind -> the seq numbers concerned."""
        out: dict[str, list[int | None]] = {}
        for i in self.issues:
            out.setdefault(i.kind, []).append(i.seq)
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _open(db: duckdb.DuckDBPyConnection | Path | str) -> tuple[duckdb.DuckDBPyConnection, bool]:
    if isinstance(db, duckdb.DuckDBPyConnection):
        return db, False
    if not Path(db).exists():
        raise FileNotFoundError(f"no store at {db}")
    return duckdb.connect(str(db), read_only=True), True


def _logged_records(db: duckdb.DuckDBPyConnection | Path | str, table: str) -> list[dict[str, Any]]:
    """Every record of the log, in order; a clear error when nothing was ever logged."""
    con, close = _open(db)
    try:
        if not DuckDBEngine(con).has_table(table):
            raise ValueError(f"the store has no {table} table: nothing was logged")
        return read_records(con, table)
    finally:
        if close:
            con.close()


def verify(db: duckdb.DuckDBPyConnection | Path | str, key: Key, *, anchor: dict[str, Any] | None = None,
           table: str = EVIDENCE_TABLE) -> VerifyResult:
    """Check the whole log: every signature, every record hash, the chain and the sequence numbers.

    ``anchor`` (``{"seq", "record_hash"}``, e.g. an earlier export's manifest head) also detects
    records removed from the end. Opens a store path read-only.
    """
    recs = _logged_records(db, table)
    res = chain.verify_records(recs, key.secret, key.key_id, anchor=anchor)
    return VerifyResult(res["ok"], res["records"], res["head_seq"], res["head_hash"], key.key_id,
                        [Issue(**i) for i in res["issues"]])


@dataclass(frozen=True)
class ExportResult:
    out_dir: str
    records: int
    chain_head: str
    head_seq: int | None
    verified: bool | None
    files: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_README = """distillguard evidence bundle
============================

records.jsonl    one served response per line, in chain order (seq 0, 1, ...): request_id,
                 account_id, ts (UTC, ISO 8601) and ts_us (microseconds since 1970, the hashed
                 value), response_sha256 (SHA-256 of the UTF-8 response text), watermark_key_id,
                 canary_id, evidence_key_id, prev_hash, record_hash, hmac.
manifest.json    record count, first/last seq, chain head (record_hash of the last record),
                 SHA-256 of records.jsonl, evidence key id, export time{verified}.
verify_bundle.py the verifier (Python 3 standard library only).

How each record is sealed
  record_hash = SHA-256( canonical JSON of {{seq, request_id, account_id, ts_us, response_sha256,
                watermark_key_id, canary_id, evidence_key_id, prev_hash}} )
                canonical JSON: keys sorted, separators "," and ":", UTF-8, no escaping of non-ASCII
  prev_hash   = record_hash of the previous record (64 zeros for seq 0)
  hmac        = HMAC-SHA256( evidence secret, record_hash as ASCII hex )

How to verify
  python verify_bundle.py . --key evidence_key.json      (key file: {{"key_id", "secret_hex"}})
  It recomputes every record_hash and hmac, checks the chain links and the sequence numbers, checks
  records.jsonl against the manifest, and prints each problem found (edited, inserted, deleted,
  reordered, truncated). Exit status 0 means the bundle is intact.

  Without the secret key a reader can still check the hash chain (record_hash and prev_hash links)
  and that a response text matches its response_sha256; the HMAC proves the records were written by
  the holder of the evidence key. Publishing or escrowing the chain head at export time fixes the
  log's length and content as of that time.
"""


def export(db: duckdb.DuckDBPyConnection | Path | str, out_dir: Path | str, *, key: Key | None = None,
           zip_bundle: bool = False, table: str = EVIDENCE_TABLE) -> ExportResult:
    """Write a self-contained bundle: records.jsonl, manifest.json, README.txt, verify_bundle.py.

    With ``key`` the log is verified first and the result recorded in the manifest (an export of a
    tampered log still happens: the evidence of tampering is evidence too). ``zip_bundle`` also
    writes ``<out_dir>.zip``.
    """
    recs = _logged_records(db, table)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines = []
    for r in recs:
        ts = datetime.fromtimestamp(r["ts_us"] // 1_000_000, UTC).replace(microsecond=r["ts_us"] % 1_000_000)
        lines.append(json.dumps(dict(r, ts=ts.isoformat().replace("+00:00", "Z")), sort_keys=True,
                                ensure_ascii=False))
    raw = ("\n".join(lines) + ("\n" if lines else "")).encode("utf-8")
    (out / "records.jsonl").write_bytes(raw)
    ver = chain.verify_records(recs, key.secret, key.key_id) if key else None
    head = recs[-1] if recs else None
    manifest = {
        "format": "distillguard-evidence/1",
        "table": table,
        "records": len(recs),
        "first_seq": recs[0]["seq"] if recs else None,
        "head_seq": head["seq"] if head else None,
        "chain_head": head["record_hash"] if head else chain.GENESIS,
        "records_sha256": hashlib.sha256(raw).hexdigest(),
        "evidence_key_ids": sorted({r["evidence_key_id"] for r in recs}),
        "hashed_fields": list(chain.HASHED_FIELDS),
        "exported_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "verified": None if ver is None else {"ok": ver["ok"], "key_id": key.key_id if key else None,
                                               "issues": ver["issues"]},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    (out / "README.txt").write_text(_README.format(
        verified=", and the verification result at export" if ver is not None else ""))
    (out / "verify_bundle.py").write_text(inspect.getsource(chain))
    files = ["records.jsonl", "manifest.json", "README.txt", "verify_bundle.py"]
    if zip_bundle:
        zpath = out.with_suffix(".zip")
        with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as z:
            for f in files:
                z.write(out / f, arcname=f"{out.name}/{f}")
        files.append(str(zpath))
    return ExportResult(str(out), len(recs), manifest["chain_head"], manifest["head_seq"],
                        None if ver is None else ver["ok"], files)


def verify_bundle(bundle: Path | str, key: Key) -> VerifyResult:
    """Verify an exported bundle (its records against its own manifest head, as ``verify_bundle.py`` does)."""
    b = Path(bundle)
    manifest = json.loads((b / "manifest.json").read_text())
    raw = (b / "records.jsonl").read_bytes()
    recs = [json.loads(x) for x in raw.splitlines() if x.strip()]
    anchor = {"seq": manifest["head_seq"], "record_hash": manifest["chain_head"]} if recs else None
    res = chain.verify_records(recs, key.secret, key.key_id, anchor=anchor)
    issues = [Issue(**i) for i in res["issues"]]
    if hashlib.sha256(raw).hexdigest() != manifest["records_sha256"] or len(recs) != manifest["records"]:
        issues.append(Issue("bundle_modified", None, None, "records.jsonl does not match manifest.json"))
    return VerifyResult(not issues, res["records"], res["head_seq"], res["head_hash"], key.key_id, issues)

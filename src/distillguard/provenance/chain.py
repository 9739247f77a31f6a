"""Hash chain and HMAC signatures of the evidence log: the verification core, standard library only.

This file is copied verbatim into every exported evidence bundle as ``verify_bundle.py``, so a reader
can check a bundle with nothing but Python 3 (``python verify_bundle.py BUNDLE --key evidence_key.json``).

Record hash: SHA-256 over the canonical JSON (sorted keys, no spaces, UTF-8) of the record's fields
:data:`HASHED_FIELDS` (``prev_hash`` included, so each record seals its predecessor). Signature:
``HMAC-SHA256(evidence secret, record_hash)``. Genesis ``prev_hash`` is 64 zeros.

>>> key = b"k" * 32
>>> r0 = seal({"seq": 0, "request_id": "r0", "account_id": "a", "ts_us": 1, "response_sha256": "00",
...            "watermark_key_id": None, "canary_id": None, "evidence_key_id": "ev1"}, GENESIS, key)
>>> r1 = seal(dict(r0, seq=1, request_id="r1"), r0["record_hash"], key)
>>> verify_records([r0, r1], key, "ev1")["ok"]
True
>>> [i["kind"] for i in verify_records([r0, dict(r1, account_id="b")], key, "ev1")["issues"]]
['edited']
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

GENESIS = "0" * 64
HASHED_FIELDS = ("seq", "request_id", "account_id", "ts_us", "response_sha256", "watermark_key_id", "canary_id",
                 "evidence_key_id", "prev_hash")


def canonical(record: dict[str, Any]) -> bytes:
    """The exact bytes that are hashed: the hashed fields as sorted, compact, UTF-8 JSON."""
    return json.dumps({k: record.get(k) for k in HASHED_FIELDS}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


def record_hash(record: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(record)).hexdigest()


def sign(record_hash_hex: str, secret: bytes) -> str:
    return hmac.new(secret, record_hash_hex.encode("ascii"), hashlib.sha256).hexdigest()


def seal(record: dict[str, Any], prev_hash: str, secret: bytes) -> dict[str, Any]:
    """``record`` with ``prev_hash``, ``record_hash`` and ``hmac`` set."""
    out = dict(record, prev_hash=prev_hash)
    out["record_hash"] = record_hash(out)
    out["hmac"] = sign(out["record_hash"], secret)
    return out


def verify_records(records: list[dict[str, Any]], secret: bytes, key_id: str,
                   anchor: dict[str, Any] | None = None) -> dict[str, Any]:
    """Check records (in stored order by ``seq``) and name every problem.

    Issue kinds: ``edited`` (fields changed after signing), ``inserted`` (not signed by this key:
    a forged or re-hashed record), ``reordered`` (a signed record moved to another position),
    ``deleted`` (sequence numbers missing, or a record's predecessor is gone), ``duplicate_seq``,
    ``truncated``/``anchor_mismatch`` (against an ``anchor`` ``{"seq", "record_hash"}`` kept from an
    earlier export: the only way to notice records cut off the end).
    """
    issues: list[dict[str, Any]] = []

    def issue(kind: str, rec: dict[str, Any] | None, msg: str, seq: Any = None) -> None:
        issues.append({"kind": kind, "seq": rec.get("seq") if rec else seq,
                       "request_id": rec.get("request_id") if rec else None, "message": msg})

    recs = sorted(records, key=lambda r: r["seq"])
    by_hash = {r["record_hash"]: r for r in recs}
    signed_ok: list[bool] = []
    moved: set[int] = set()
    for r in recs:
        sig = hmac.compare_digest(sign(r["record_hash"], secret), str(r.get("hmac", "")))
        signed_ok.append(sig and r.get("evidence_key_id") == key_id)
        if not signed_ok[-1]:
            why = (f"signed with another key id {r.get('evidence_key_id')!r}" if r.get("evidence_key_id") != key_id
                   else "signature does not match")
            issue("inserted", r, f"record not signed by evidence key {key_id!r} ({why}): inserted or forged")
            continue
        if record_hash(r) == r["record_hash"]:
            continue
        others = sorted({o["seq"] for o in recs if o["seq"] != r["seq"]} | {r["seq"] - 1, r["seq"] + 1})
        was = next((s for s in others if record_hash(dict(r, seq=s)) == r["record_hash"]), None)
        if was is not None:
            moved.add(id(r))
            issue("reordered", r, f"record signed as seq {was} now stands at seq {r['seq']}")
        else:
            changed = "fields changed after signing"
            issue("edited", r, f"{changed}: stored fields do not hash to the signed record_hash")
    seqs = [r["seq"] for r in recs]
    for a, b in zip(seqs, seqs[1:], strict=False):
        if b == a:
            issue("duplicate_seq", None, f"two records with seq {a}", seq=a)
        elif b > a + 1:
            issue("deleted", None, f"seq {a + 1}..{b - 1} missing ({b - a - 1} record(s))", seq=a + 1)
    if recs and recs[0]["seq"] != 0:
        issue("deleted", None, f"seq 0..{recs[0]['seq'] - 1} missing (log does not start at 0)", seq=0)
    # chain links between neighbours that are both genuinely signed and in place
    for i, r in enumerate(recs):
        want = GENESIS if i == 0 and r["seq"] == 0 else (recs[i - 1]["record_hash"] if i else None)
        if want is None or r["prev_hash"] == want or not signed_ok[i] or id(r) in moved:
            continue
        if i and (not signed_ok[i - 1] or id(recs[i - 1]) in moved or recs[i - 1]["seq"] == r["seq"]):
            continue
        pred = by_hash.get(r["prev_hash"])
        if pred is not None:
            issue("reordered", r, f"its predecessor is seq {pred['seq']}, not the record before it")
        elif not (i and r["seq"] > recs[i - 1]["seq"] + 1):  # a seq gap just before is reported already
            issue("deleted", r, "its predecessor (by prev_hash) is missing from the log")
    if anchor is not None:
        at = next((r for r in recs if r["seq"] == anchor["seq"]), None)
        if at is None:
            issue("truncated", None, f"anchored record seq {anchor['seq']} is gone (log cut short)", seq=anchor["seq"])
        elif at["record_hash"] != anchor["record_hash"]:
            issue("anchor_mismatch", at, "record at the anchored seq differs from the anchored hash")
    head = recs[-1] if recs else None
    return {"ok": not issues, "records": len(recs), "issues": issues,
            "head_seq": head["seq"] if head else None, "head_hash": head["record_hash"] if head else GENESIS}


def _main() -> int:  # pragma: no cover - run inside an exported bundle
    import argparse
    import pathlib

    ap = argparse.ArgumentParser(description="Verify an exported distillguard evidence bundle.")
    ap.add_argument("bundle", type=pathlib.Path, help="bundle folder (records.jsonl, manifest.json)")
    ap.add_argument("--key", type=pathlib.Path, required=True, help='evidence key JSON {"key_id", "secret_hex"}')
    a = ap.parse_args()
    key = json.loads(a.key.read_text())
    manifest = json.loads((a.bundle / "manifest.json").read_text())
    raw = (a.bundle / "records.jsonl").read_bytes()
    records = [json.loads(line) for line in raw.splitlines() if line.strip()]
    res = verify_records(records, bytes.fromhex(key["secret_hex"]), key["key_id"],
                         anchor={"seq": manifest["head_seq"], "record_hash": manifest["chain_head"]}
                         if manifest.get("head_seq") is not None else None)
    if hashlib.sha256(raw).hexdigest() != manifest.get("records_sha256"):
        res["issues"].append({"kind": "bundle_modified", "message": "records.jsonl differs from the manifest"})
        res["ok"] = False
    if res["records"] != manifest.get("records"):
        res["issues"].append({"kind": "bundle_modified", "message": "record count differs from the manifest"})
        res["ok"] = False
    print(json.dumps(res, indent=2))
    return 0 if res["ok"] else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(_main())

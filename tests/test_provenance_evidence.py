"""Evidence log: appends chain and sign; every kind of tampering is found and named; exports verify
on their own (library and the standalone script in the bundle)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta

import duckdb
import pytest

from distillguard.provenance import chain
from distillguard.provenance.evidence import (
    T0,
    EvidenceLog,
    export,
    read_records,
    served,
    verify,
    verify_bundle,
)
from distillguard.provenance.keys import EvidenceKey, save_key

KEY = EvidenceKey("ev-1", bytes(range(32)))


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    c = duckdb.connect()
    log = EvidenceLog(c, KEY)
    log.append([served(f"r{i}", f"acct_{i % 3}", f"response {i}", ts=T0 + timedelta(seconds=i),
                       watermark_key_id="wm-1", canary_id=f"cn-{i % 3}" if i % 2 else None) for i in range(5)])
    log.append([served(f"r{i}", f"acct_{i % 3}", f"response {i}", ts=T0 + timedelta(seconds=i)) for i in range(5, 10)])
    return c


def test_appends_are_chained_signed_and_verify(con) -> None:
    recs = read_records(con)
    assert [r["seq"] for r in recs] == list(range(10))
    assert recs[0]["prev_hash"] == chain.GENESIS
    assert all(b["prev_hash"] == a["record_hash"] for a, b in zip(recs, recs[1:], strict=False))
    res = verify(con, KEY)
    assert res.ok and res.records == 10 and res.head_seq == 9 and res.head_hash == recs[-1]["record_hash"]
    assert not verify(con, EvidenceKey("ev-1", bytes(32))).ok  # the wrong secret fails everything


def test_append_is_transactional(con) -> None:
    with pytest.raises(ValueError, match="account_id"):
        EvidenceLog(con, KEY).append([served("r10", "a", "x", ts=T0), {"request_id": "r11", "ts": T0}])
    assert con.execute("SELECT count(*) FROM evidence_log").fetchall()[0][0] == 10
    assert verify(con, KEY).ok


def test_edited_field_is_named(con) -> None:
    con.execute("UPDATE evidence_log SET response_sha256 = repeat('0', 64) WHERE seq = 3")
    res = verify(con, KEY)
    assert not res.ok and res.kinds() == {"edited": [3]}
    assert res.issues[0].request_id == "r3"


def test_rehashed_edit_without_the_key_is_a_forgery(con) -> None:
    r = read_records(con)[4]
    fake = chain.seal(dict(r, account_id="someone_else"), r["prev_hash"], b"x" * 32)
    con.execute("UPDATE evidence_log SET account_id = ?, record_hash = ?, hmac = ? WHERE seq = 4",
                [fake["account_id"], fake["record_hash"], fake["hmac"]])
    res = verify(con, KEY)
    assert res.kinds() == {"inserted": [4]}  # re-hashed, but not signed by the evidence key
    assert "inserted or forged" in res.issues[0].message


def test_deleted_row_is_named(con) -> None:
    con.execute("DELETE FROM evidence_log WHERE seq = 6")
    res = verify(con, KEY)
    assert res.kinds() == {"deleted": [6]}
    assert "seq 6..6 missing" in res.issues[0].message


def test_inserted_forged_row_is_named(con) -> None:
    head = read_records(con)[-1]
    forged = chain.seal({"seq": 10, "request_id": "r_forged", "account_id": "acct_0", "ts_us": head["ts_us"] + 1,
                         "response_sha256": "ab" * 32, "watermark_key_id": None, "canary_id": None,
                         "evidence_key_id": "ev-1"}, head["record_hash"], b"not the key" * 3)
    con.execute("INSERT INTO evidence_log VALUES (?, ?, ?, make_timestamptz(?), ?, ?, ?, ?, ?, ?, ?)",
                [forged["seq"], forged["request_id"], forged["account_id"], forged["ts_us"],
                 forged["response_sha256"], None, None, "ev-1", forged["prev_hash"], forged["record_hash"],
                 forged["hmac"]])
    res = verify(con, KEY)
    assert res.kinds() == {"inserted": [10]} and res.issues[0].request_id == "r_forged"
    # a copy of a genuine record slipped in under a duplicate seq is caught too
    con.execute("INSERT INTO evidence_log SELECT * FROM evidence_log WHERE seq = 2")
    assert "duplicate_seq" in verify(con, KEY).kinds()


def test_swapped_rows_are_named_as_reordered(con) -> None:
    con.execute("UPDATE evidence_log SET seq = CASE seq WHEN 3 THEN 4 ELSE 3 END WHERE seq IN (3, 4)")
    res = verify(con, KEY)
    assert res.kinds() == {"reordered": [3, 4]}
    assert "signed as seq 4 now stands at seq 3" in res.issues[0].message


def test_truncation_needs_an_anchor(con, tmp_path) -> None:
    head = export(con, tmp_path / "b", key=KEY)
    con.execute("DELETE FROM evidence_log WHERE seq >= 8")
    assert verify(con, KEY).ok  # a shorter valid chain: undetectable without an anchor ...
    res = verify(con, KEY, anchor={"seq": head.head_seq, "record_hash": head.chain_head})
    assert res.kinds() == {"truncated": [9]}  # ... which the export's head provides


def test_export_bundle_is_self_contained_and_verifies(con, tmp_path) -> None:
    db = tmp_path / "store.duckdb"
    disk = duckdb.connect(str(db))
    EvidenceLog(disk, KEY).append([served(f"q{i}", "acct_1", f"text {i}", ts=T0) for i in range(3)])
    disk.close()
    res = export(db, tmp_path / "bundle", key=KEY, zip_bundle=True)
    assert res.records == 3 and res.verified is True and (tmp_path / "bundle.zip").exists()
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert manifest["chain_head"] == res.chain_head and manifest["evidence_key_ids"] == ["ev-1"]
    assert "How to verify" in (tmp_path / "bundle" / "README.txt").read_text()
    assert verify_bundle(tmp_path / "bundle", KEY).ok
    keyfile = save_key(KEY, tmp_path / "ev.json")
    script = tmp_path / "bundle" / "verify_bundle.py"
    ok = subprocess.run([sys.executable, str(script), str(tmp_path / "bundle"), "--key", str(keyfile)],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    lines = (tmp_path / "bundle" / "records.jsonl").read_text().splitlines()
    rec = json.loads(lines[1])
    rec["account_id"] = "acct_9"
    lines[1] = json.dumps(rec, sort_keys=True)
    (tmp_path / "bundle" / "records.jsonl").write_text("\n".join(lines) + "\n")
    bad = subprocess.run([sys.executable, str(script), str(tmp_path / "bundle"), "--key", str(keyfile)],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and '"edited"' in bad.stdout
    assert {i.kind for i in verify_bundle(tmp_path / "bundle", KEY).issues} == {"edited", "bundle_modified"}


def test_verify_refuses_a_store_without_a_log(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        verify(tmp_path / "missing.duckdb", KEY)
    with pytest.raises(ValueError, match="no evidence_log table"):
        verify(duckdb.connect(), KEY)

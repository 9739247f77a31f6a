"""Indicator sharing: keyed hashing, STIX export and its privacy rules, TAXII round trip through a real
medallion server on loopback, import checks, watchlist matching, batch matches in detect and reports."""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from conftest import free_port
from distillguard.share import (
    GroupKey,
    KeyRing,
    PlainHashError,
    PrivacyPolicy,
    ShareImportError,
    TaxiiError,
    Watchlist,
    build_indicator_matches,
    export_campaign,
    generate_key,
    import_bundle,
    load_keys,
    medallion_config,
    pull,
    push,
    revoke,
)
from distillguard.share.command import share_app
from distillguard.share.keys import check_keyed, ip_block, normalise

T0 = datetime(2026, 1, 1, tzinfo=UTC)


# --- fixtures: one small store per module ---------------------------------------------------------------

@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from distillguard.detect import detect
    from distillguard.ingest.run import ingest
    from distillguard.simulate import simulate

    d = tmp_path_factory.mktemp("share")
    simulate("smoke", d / "traffic", seed=11, progress=False)
    db = d / "a.duckdb"
    ingest(d / "traffic", db, progress=False)
    detect(db, d / "det", step=None, progress=False)
    con = duckdb.connect(str(db), read_only=True)
    camp = con.execute("SELECT campaign_id, members FROM campaigns WHERE kind = 'cluster' "
                       "ORDER BY n_flagged DESC LIMIT 1").fetchall()[0]
    con.close()
    key_file = d / "group.json"
    generate_key(key_file, "k2026a")
    keys = load_keys(key_file)
    plan = export_campaign(db, camp[0], keys, d / "bundle.json", provider="Provider A")
    return {"dir": d, "db": db, "campaign": camp[0], "members": json.loads(camp[1]), "keys": keys,
            "key_file": key_file, "plan": plan, "bundle": d / "bundle.json"}


def _copy_store(world: dict, name: str) -> Path:
    dst = world["dir"] / name
    shutil.copy(world["db"], dst)
    return dst


@pytest.fixture(scope="module")
def taxii(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    port = free_port()
    cfg = medallion_config(tmp_path_factory.mktemp("taxii"), {"labA": "pw-a", "labB": "pw-b"}, port=port)
    proc = subprocess.Popen([sys.executable, "-m", "medallion.scripts.run", "--host", "127.0.0.1", "--port",
                             str(port), str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(150):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("medallion did not start")
    yield f"http://127.0.0.1:{port}/share/"
    proc.terminate()
    proc.wait(timeout=10)


# --- keys ------------------------------------------------------------------------------------------------

def test_keyed_values_are_hmac_with_key_id_and_kind_separation() -> None:
    ring = KeyRing([GroupKey("g1", b"x" * 32, T0)])
    v = ring.keyed("ip", "203.0.113.7")
    assert v is not None and v.startswith("hmac-sha256:g1:") and len(v.split(":")[2]) == 64
    assert "203.0.113" not in v
    assert ring.keyed("payment", "203.0.113.7") != v  # the kind is mixed in
    assert ring.keyed("ip", " 203.0.113.7 ") == v  # normalised first
    assert ring.keyed("asn", "AS16509") == "16509"  # public: clear
    assert ring.keyed("email_domain", "Gmail.com") == "gmail.com"  # webmail: clear
    assert ring.keyed("email_domain", "acme-corp.io").startswith("hmac-sha256:")
    assert ip_block("203.0.113.7") == "203.0.113.0/24"
    assert ip_block("2001:db8:1234:5678::1") == "2001:db8:1234::/48"
    assert normalise("ip", "2001:DB8::1") == "2001:db8::1"


def test_rotation_current_key_and_matching_under_old_keys() -> None:
    old = GroupKey("old", b"o" * 32, T0, T0 + timedelta(days=30))
    new = GroupKey("new", b"n" * 32, T0 + timedelta(days=20), T0 + timedelta(days=200))
    ring = KeyRing([old, new])
    assert ring.current(T0 + timedelta(days=25)).key_id == "new"
    assert ring.current(T0 + timedelta(days=5)).key_id == "old"
    value = ring.keyed("payment", "pm_1", old)
    ind = [{"id": "indicator--a", "kind": "payment", "value": value, "provider": "P", "shared_at": T0}]
    assert Watchlist(ind, ring, now=T0 + timedelta(days=25)).match_account({"payment_fingerprint": "pm_1"})
    # once the old key is past not_after, values made under it no longer match
    assert not Watchlist(ind, ring, now=T0 + timedelta(days=31)).match_account({"payment_fingerprint": "pm_1"})


def test_plain_hashes_are_refused() -> None:
    bare = hashlib.sha256(b"203.0.113.7").hexdigest()
    with pytest.raises(PlainHashError, match="unkeyed hash"):
        check_keyed("ip", bare)
    with pytest.raises(PlainHashError, match="unkeyed hash"):
        check_keyed("payment", "sha256:" + bare)
    with pytest.raises(PlainHashError, match="not keyed"):
        check_keyed("ip", "203.0.113.7")
    check_keyed("ip", "hmac-sha256:k1:" + bare)


def test_key_files_are_checked(tmp_path: Path) -> None:
    (tmp_path / "weak.json").write_text(json.dumps({"key_id": "w", "secret": "00" * 8, "created": "2026-01-01"}))
    with pytest.raises(ValueError, match="8-byte secret"):
        load_keys(tmp_path / "weak.json")
    generate_key(tmp_path / "g.json", "a")
    generate_key(tmp_path / "g.json", "b")  # rotation adds a key
    assert [k.key_id for k in load_keys(tmp_path / "g.json").keys] == ["a", "b"]


# --- export ----------------------------------------------------------------------------------------------

def test_bundle_validates_and_has_the_expected_objects(world: dict) -> None:
    from stix2validator import ValidationOptions, validate_file

    assert validate_file(str(world["bundle"]), ValidationOptions(version="2.1")).is_valid
    doc = json.loads(world["bundle"].read_text())
    types = {o["type"] for o in doc["objects"]}
    assert {"identity", "campaign", "attack-pattern", "indicator", "observed-data", "sighting", "relationship",
            "extension-definition", "x-distillguard-keyed-identifier"} <= types
    camp = next(o for o in doc["objects"] if o["type"] == "campaign")
    assert camp["first_seen"] <= camp["last_seen"]
    ext = next(iter(camp["extensions"].values()))
    assert ext["flagged_accounts"] >= 3 and ext["exchanges"] > 0 and ext["capability_mix"]
    refs = {r["external_id"] for o in doc["objects"] if o["type"] == "attack-pattern"
            for r in o.get("external_references", [])}
    assert "AML.T0024" in refs
    kinds = {o["kind"] for o in doc["objects"] if o["type"] == "x-distillguard-keyed-identifier"}
    assert "payment" in kinds
    rels = {o["relationship_type"] for o in doc["objects"] if o["type"] == "relationship"}
    assert {"indicates", "uses"} <= rels


def _strings(o: object) -> list[str]:
    if isinstance(o, dict):
        return [s for k, v in o.items() for s in [k, *_strings(v)]]
    if isinstance(o, list):
        return [s for v in o for s in _strings(v)]
    return [o] if isinstance(o, str) else []


def test_no_raw_identifier_or_prompt_text_leaves(world: dict) -> None:
    text = world["bundle"].read_text()
    fields = "\x00".join(_strings(json.loads(text)))  # every key and string value, unescaped
    con = duckdb.connect(str(world["db"]), read_only=True)
    members = world["members"]
    raw = con.execute(
        "SELECT DISTINCT v FROM (SELECT payment_fingerprint AS v FROM accounts WHERE account_id IN (SELECT unnest(?)) "
        "UNION SELECT signup_ip FROM accounts WHERE account_id IN (SELECT unnest(?)) "
        "UNION SELECT client_ip FROM exchanges WHERE account_id IN (SELECT unnest(?)) "
        "UNION SELECT user_agent FROM exchanges WHERE account_id IN (SELECT unnest(?)) "
        "UNION SELECT unnest(?)) WHERE v IS NOT NULL", [members] * 5).fetchall()
    texts = con.execute("SELECT DISTINCT t FROM (SELECT prompt AS t FROM exchanges WHERE account_id IN "
                        "(SELECT unnest(?)) UNION SELECT system FROM exchanges WHERE account_id IN (SELECT unnest(?))) "
                        "WHERE length(t) >= 12", [members, members]).fetchall()
    con.close()
    assert len(raw) > 20 and len(texts) > 50
    assert world["campaign"] not in text
    for (v,) in raw + texts:
        assert v not in text and v not in fields, f"leaked: {v[:40]!r}"


def test_k_threshold_and_high_value_rules(world: dict) -> None:
    plan = world["plan"]
    assert plan.exported and all(c.members >= 3 for c in plan.exported)
    below = [c for c in plan.candidates if c.members < 3]
    assert below and all(c.shared is None and "below k=3" in (c.withheld or "") for c in below)
    assert all(c.high_value_accounts == 0 and c.unflagged_accounts <= c.flagged_accounts for c in plan.exported)
    # an allow-listed account keeps its identifiers home
    from distillguard.share.export import plan_export

    top = max((c for c in plan.exported if c.kind == "payment"), key=lambda c: c.members)
    con = duckdb.connect(str(world["db"]), read_only=True)
    holder = con.execute("SELECT account_id FROM accounts WHERE payment_fingerprint = ? LIMIT 1", [top.value]).fetchall()
    con.close()
    again = plan_export(world["db"], world["campaign"], world["keys"],
                        policy=PrivacyPolicy(allow_list=frozenset({holder[0][0]})))
    same = next(c for c in again.candidates if c.kind == "payment" and c.value == top.value)
    assert same.shared is None and "allow-listed" in (same.withheld or "")
    huge = plan_export(world["db"], world["campaign"], world["keys"], policy=PrivacyPolicy(k=10_000))
    assert not huge.exported


def test_cli_dry_run_writes_nothing(world: dict) -> None:
    out = world["dir"] / "dry.json"
    r = CliRunner().invoke(share_app, ["export", "--campaign", world["campaign"], "--group-key",
                                       str(world["key_file"]), "--db", str(world["db"]), "--out", str(out),
                                       "--dry-run"])
    assert r.exit_code == 0, r.output
    assert "would leave" in r.output and "below k=3" in r.output and not out.exists()


# --- import, TAXII ---------------------------------------------------------------------------------------

def _tables(db: Path) -> dict[str, int]:
    con = duckdb.connect(str(db), read_only=True)
    names = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()]
    out = {n: con.execute(f'SELECT count(*) FROM "{n}"').fetchall()[0][0] for n in names
           if n in ("shared_indicators", "share_ledger")}
    con.close()
    return out


def test_malformed_or_unkeyed_bundles_are_refused_and_change_nothing(world: dict, tmp_path: Path) -> None:
    db = _copy_store(world, "b_refuse.duckdb")
    import_bundle(db, world["bundle"])
    before = _tables(db)
    doc = json.loads(world["bundle"].read_text())
    bad = json.loads(json.dumps(doc))
    ind = next(o for o in bad["objects"] if o["type"] == "indicator" and "'ip'" in o["pattern"])
    ind["id"] = "indicator--11111111-1111-4111-8111-111111111111"
    ind["pattern"] = ("[x-distillguard-keyed-identifier:kind = 'ip' AND x-distillguard-keyed-identifier:value = '"
                      + hashlib.sha256(b"198.51.100.4").hexdigest() + "']")
    (tmp_path / "plain.json").write_text(json.dumps(bad))
    with pytest.raises(ShareImportError, match="unkeyed hash"):
        import_bundle(db, tmp_path / "plain.json")
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(ShareImportError, match="not JSON"):
        import_bundle(db, tmp_path / "junk.json")
    with pytest.raises(ShareImportError, match="not a STIX bundle"):
        import_bundle(db, {"type": "report", "objects": []})
    assert _tables(db) == before


def test_taxii_round_trip_is_idempotent(world: dict, taxii: str) -> None:
    status = push(world["bundle"], taxii, "distillation-intel", user="labA", password="pw-a")
    assert status["success"] > 0 and status["failure"] == 0
    db = _copy_store(world, "b_taxii.duckdb")
    doc = pull(taxii, "distillation-intel", user="labB", password="pw-b")
    first = import_bundle(db, doc, source="taxii")
    second = import_bundle(db, pull(taxii, "distillation-intel", user="labB", password="pw-b"), source="taxii")
    n_ind = sum(o["type"] == "indicator" for o in json.loads(world["bundle"].read_text())["objects"])
    assert first.indicators_added == n_ind and second.new_objects == 0 and second.indicators_added == 0
    assert _tables(db)["shared_indicators"] == n_ind
    # pushing again duplicates nothing on the server either
    again = push(world["bundle"], taxii, "distillation-intel", user="labA", password="pw-a")
    assert again["success"] == 0
    assert len(pull(taxii, "distillation-intel", user="labB", password="pw-b")["objects"]) == len(doc["objects"])


def test_taxii_authentication_failure_is_clear(taxii: str) -> None:
    with pytest.raises(TaxiiError, match="authentication failed"):
        pull(taxii, "distillation-intel", user="labB", password="wrong")


# --- watchlist and batch matching ------------------------------------------------------------------------

def test_watchlist_matches_only_under_the_group_key_and_honours_expiry_and_revocation(world: dict) -> None:
    db = _copy_store(world, "b_watch.duckdb")
    import_bundle(db, world["bundle"])
    con = duckdb.connect(str(db))
    pay = next(c for c in world["plan"].exported if c.kind == "payment")
    row = {"payment_fingerprint": pay.value, "signup_ip": None, "email_domain": "gmail.com"}
    wl = Watchlist.from_store(con, world["keys"])
    reasons = wl.match_account(row)
    assert reasons and "(payment fingerprint) shared by Provider A on" in reasons[0]
    assert reasons[0].startswith("matches indicator indicator--")
    wrong = KeyRing([GroupKey("k2026a", b"w" * 32, T0)])  # same key id, another secret
    assert Watchlist.from_store(con, wrong).match_account(row) == []
    ip = next(c for c in world["plan"].exported if c.kind == "ip")
    assert wl.match_exchange({"client_ip": ip.value, "user_agent": "x"})
    asn = next((c for c in world["plan"].exported if c.kind == "asn"), None)
    if asn is not None:  # an ASN is context for batch scoring, never an online match on its own
        assert wl.match_exchange({"asn": int(asn.value)}) == []
        assert Watchlist.from_store(con, world["keys"], kinds=None).match_exchange({"asn": int(asn.value)})
    from distillguard.online.watchlist import Watchlist as OnlineHook

    assert isinstance(wl, OnlineHook)
    expires = con.execute("SELECT max(valid_until) FROM shared_indicators").fetchall()[0][0]
    assert Watchlist.from_store(con, world["keys"], now=expires + timedelta(days=1)).match_account(row) == []
    ind_id = reasons[0].split()[2]
    con.close()
    assert revoke(db, ind_id)
    assert Watchlist.from_store(db, world["keys"]).match_account(row) == []


def test_stix_revocation_by_newer_version(world: dict) -> None:
    db = _copy_store(world, "b_revoke.duckdb")
    import_bundle(db, world["bundle"])
    doc = json.loads(world["bundle"].read_text())
    ind = next(o for o in doc["objects"] if o["type"] == "indicator")
    newer = dict(ind, revoked=True, modified="2099-01-01T00:00:00.000Z")
    s = import_bundle(db, {"type": "bundle", "id": "bundle--22222222-2222-4222-8222-222222222222",
                           "objects": [newer]})
    assert s.indicators_revoked == 1
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT revoked FROM shared_indicators WHERE id = ?", [ind["id"]]).fetchall() == [(True,)]
    con.close()


def test_batch_matches_feed_detection_reasons_and_reports(world: dict) -> None:
    from distillguard.detect import detect
    from distillguard.share.watchlist import IntelRule

    db = _copy_store(world, "b_detect.duckdb")
    import_bundle(db, world["bundle"])
    con = duckdb.connect(str(db))
    n = build_indicator_matches(con, world["keys"])
    matched = {r[0] for r in con.execute("SELECT DISTINCT account_id FROM indicator_matches").fetchall()}
    before = dict(con.execute("SELECT account_id, flagged FROM detections").fetchall())
    con.close()
    assert n > 0 and set(world["members"]) & matched
    detect(db, world["dir"] / "det_b", step=None, progress=False, intel_keys=world["keys"], intel_rule=IntelRule())
    con = duckdb.connect(str(db), read_only=True)
    rows = con.execute("SELECT account_id, flagged, reasons FROM detections").fetchall()
    con.close()
    with_reason = {a for a, _, r in rows if any(x.startswith("SHARED_INDICATOR") for x in r)}
    assert with_reason and with_reason <= matched
    flagged_after = {a for a, f, _ in rows if f}
    assert {a for a, f in before.items() if f} <= flagged_after
    report = json.loads((world["dir"] / "det_b" / "reports" / "campaigns.json").read_text())
    assert any(c.get("shared_indicators") for c in report["campaigns"])


def test_misp_event_carries_the_same_values_and_no_raw_ones(world: dict) -> None:
    from distillguard.share.misp import misp_event

    ev = misp_event(world["plan"])["Event"]
    assert {a["value"] for a in ev["Attribute"]} == {c.shared for c in world["plan"].exported}
    text = json.dumps(ev)
    for c in world["plan"].candidates:
        if c.kind in ("payment", "ip", "user_agent"):
            assert c.value not in text
    assert any("AML.T0024" in t["name"] for t in ev["Tag"])


def test_decision_service_challenges_a_new_account_on_a_shared_card(world: dict) -> None:
    """Provider B's `distillguard serve --intel-db --group-key`: an account created with a card a peer
    shared is challenged on its first request, before it has any history; a stranger is allowed."""
    from distillguard.serve.config import ServeConfig
    from distillguard.serve.server import build_scorer

    db = _copy_store(world, "b_serve.duckdb")
    import_bundle(db, world["bundle"])
    pay = next(c for c in world["plan"].exported if c.kind == "payment")
    with pytest.raises(ValueError, match="go together"):
        ServeConfig(intel_db=db)
    scorer = build_scorer(ServeConfig(intel_db=db, group_key=world["key_file"]))
    t = datetime(2026, 6, 1, tzinfo=UTC)
    for acct, card in (("b-new", pay.value), ("b-stranger", "pm_someone_else")):
        scorer.learn_account({"account_id": acct, "created_at": t, "payment_fingerprint": card})
    first = {"request_id": "r1", "account_id": "b-new", "ts": t + timedelta(minutes=1), "model": "m"}
    d = scorer.score_one(first)
    assert d.action == "challenge" and d.reasons[0].startswith("SHARED_INDICATOR")
    other = scorer.score_one(dict(first, request_id="r2", account_id="b-stranger"))
    assert other.action == "allow"

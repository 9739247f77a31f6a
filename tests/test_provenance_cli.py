"""CLI: keygen, watermark detect (token ids and text), provenance test (black-box on a file of outputs,
white-box on a saved model folder), evidence verify/export; clear errors and exit codes."""

from __future__ import annotations

import json
from datetime import timedelta

import duckdb
import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from distillguard.provenance.command import evidence_app, provenance_app, watermark_app
from distillguard.provenance.evidence import T0, EvidenceLog, served
from distillguard.provenance.keys import EvidenceKey, load_key
from distillguard.provenance.ngram import BigramLM
from distillguard.provenance.watermark import KeyRing, Watermarker

app = typer.Typer()
app.add_typer(watermark_app, name="watermark")
app.add_typer(provenance_app, name="provenance")
app.add_typer(evidence_app, name="evidence")
runner = CliRunner()


@pytest.fixture
def keyfile(tmp_path):
    r = runner.invoke(app, ["watermark", "keygen", "--out", str(tmp_path / "wm.json"), "--key-id", "wm-cli",
                            "--context-width", "1", "--delta", "3"])
    assert r.exit_code == 0, r.output
    return tmp_path / "wm.json"


def test_keygen_detect_token_ids(tmp_path, keyfile) -> None:
    ring = KeyRing.load(keyfile)
    assert ring.params.context_width == 1 and ring.params.delta == 3.0 and ring.active == "wm-cli"
    rng = np.random.default_rng(0)
    lm = BigramLM.random(400, 0.2, rng)
    (tmp_path / "marked.json").write_text(json.dumps(lm.generate(3, 150, rng=rng, processor=Watermarker(ring))))
    (tmp_path / "plain.json").write_text(json.dumps(lm.generate(1, 150, rng=rng)[0]))
    r = runner.invoke(app, ["watermark", "detect", str(tmp_path / "marked.json"), "--key", str(keyfile), "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["key_id"] == "wm-cli" and d["p_value"] < 1e-6 and d["tokens_total"] == 450
    r = runner.invoke(app, ["watermark", "detect", str(tmp_path / "plain.json"), "--key", str(keyfile)])
    assert r.exit_code == 0 and "key wm-cli: p = " in r.output
    # black-box provenance test on a file of suspect outputs (token ids)
    r = runner.invoke(app, ["provenance", "test", "--suspect", str(tmp_path / "marked.json"), "--key", str(keyfile),
                            "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["mode"] == "blackbox"


def test_detect_errors_are_clear(tmp_path, keyfile) -> None:
    (tmp_path / "t.txt").write_text("some text")
    r = runner.invoke(app, ["watermark", "detect", str(tmp_path / "t.txt"), "--key", str(keyfile)])
    assert r.exit_code == 2 and "needs --tokenizer" in r.output
    (tmp_path / "short.json").write_text("[5]")
    r = runner.invoke(app, ["watermark", "detect", str(tmp_path / "short.json"), "--key", str(keyfile)])
    assert r.exit_code == 2 and "too short" in r.output
    (tmp_path / "ids.json").write_text("[1, 2, 3, 4]")
    r = runner.invoke(app, ["watermark", "detect", str(tmp_path / "ids.json"), "--key", str(keyfile),
                            "--key-id", "nope"])
    assert r.exit_code == 2 and "unknown watermark key id 'nope'" in r.output
    r = runner.invoke(app, ["watermark", "keygen", "--out", str(keyfile), "--key-id", "x"])
    assert r.exit_code == 2  # never overwrites a key


def test_whitebox_on_a_saved_model_folder(tmp_path, keyfile, request) -> None:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model: threads cost more than they give
    request.addfinalizer(lambda: torch.set_num_threads(threads))
    cfg = transformers.GPT2Config(vocab_size=400, n_positions=64, n_embd=16, n_layer=1, n_head=2,
                                  bos_token_id=0, eos_token_id=0, pad_token_id=0)
    transformers.GPT2LMHeadModel(cfg).save_pretrained(tmp_path / "suspect")
    (tmp_path / "probes.json").write_text(json.dumps(np.random.default_rng(1).integers(0, 400, 300).tolist()))
    r = runner.invoke(app, ["provenance", "test", "--suspect", str(tmp_path / "suspect"), "--key", str(keyfile),
                            "--probes", str(tmp_path / "probes.json"), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["mode"] == "whitebox" and out["tokens_scored"] > 0 and out["p_value"] > 1e-3  # untrained: null
    r = runner.invoke(app, ["provenance", "test", "--suspect", str(tmp_path / "suspect"), "--key", str(keyfile)])
    assert r.exit_code == 2 and "needs --probes" in r.output


def test_green_mass_statistic_on_a_saved_model_folder(tmp_path, keyfile, request) -> None:
    """A suspect whose next-token distribution leans to the key's green lists (built by hand: logits =
    2 x green flag of (last token, next token)) is found by --statistic green-mass, also against a
    reference model, and the report names the statistic; a model that never saw the key is not."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from distillguard.provenance.watermark import green_mask

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    request.addfinalizer(lambda: torch.set_num_threads(threads))
    v = 64
    ring = KeyRing.load(keyfile)
    green = green_mask(ring.active_key, np.arange(v)[:, None], v, ring.params.gamma).astype(np.float32)

    def save(name: str, table: np.ndarray) -> str:
        cfg = transformers.GPT2Config(vocab_size=v, n_positions=64, n_embd=v, n_layer=1, n_head=1,
                                      tie_word_embeddings=False, bos_token_id=0, eos_token_id=0, pad_token_id=0)
        m = transformers.GPT2LMHeadModel(cfg)
        with torch.no_grad():  # blocks add nothing; hidden state = layer norm of the last token's one-hot
            for p in m.transformer.h.parameters():
                p.zero_()
            m.transformer.wpe.weight.zero_()
            m.transformer.wte.weight.copy_(torch.eye(v))
            m.lm_head.weight.copy_(torch.from_numpy(table.T.copy()))  # logits[t] ~ table[last token, t]
        m.save_pretrained(tmp_path / name)
        return str(tmp_path / name)

    suspect = save("suspect", 2.0 * green * np.sqrt(v))
    null = save("null", np.random.default_rng(2).normal(size=(v, v)).astype(np.float32))
    (tmp_path / "probes.json").write_text(json.dumps(np.random.default_rng(1).integers(0, v, 600).tolist()))
    base = ["provenance", "test", "--key", str(keyfile), "--probes", str(tmp_path / "probes.json")]
    r = runner.invoke(app, base + ["--suspect", suspect, "--statistic", "green-mass", "--json"])
    assert r.exit_code == 0, r.output
    gm = json.loads(r.stdout)
    assert gm["statistic"] == "green_mass" and gm["mode"] == "whitebox" and gm["contexts"] == v
    assert gm["p_value"] < 1e-6 and gm["green_mass"] > 2 * gm["expected"]
    (tmp_path / "gm.json").write_text(r.stdout)
    r = runner.invoke(app, base + ["--suspect", suspect, "--statistic", "green-mass", "--reference", null, "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["mode"] == "whitebox-ref"
    assert json.loads(r.stdout)["p_value"] < 1e-6
    r = runner.invoke(app, base + ["--suspect", null, "--statistic", "green-mass", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["p_value"] > 1e-3  # never saw the key
    r = runner.invoke(app, base + ["--suspect", suspect, "--statistic", "green-mass"])
    assert r.exit_code == 0 and "green mass: p = " in r.output
    r = runner.invoke(app, base + ["--suspect", suspect, "--json"])  # top-1 by default
    assert r.exit_code == 0 and json.loads(r.stdout)["statistic"] == "top1"
    r = runner.invoke(app, base + ["--suspect", suspect, "--statistic", "mass"])
    assert r.exit_code == 2 and "unknown statistic" in r.output
    r = runner.invoke(app, base + ["--suspect", suspect, "--reference", null])
    assert r.exit_code == 2 and "green-mass statistic only" in r.output
    r = runner.invoke(app, ["provenance", "report", "--radioactivity", str(tmp_path / "gm.json"), "--json"])
    line = json.loads(r.stdout)["lines"][0]
    assert r.exit_code == 0 and line["line"] == "watermark (whitebox, green_mass)" and line["finding"]


def test_evidence_verify_and_export(tmp_path) -> None:
    r = runner.invoke(app, ["watermark", "keygen", "--kind", "evidence", "--out", str(tmp_path / "ev.json"),
                            "--key-id", "ev-cli"])
    assert r.exit_code == 0
    key = load_key(tmp_path / "ev.json", EvidenceKey)
    db = tmp_path / "store.duckdb"
    con = duckdb.connect(str(db))
    EvidenceLog(con, key).append([served(f"r{i}", "acct_1", f"t{i}", ts=T0 + timedelta(seconds=i)) for i in range(4)])
    con.close()
    r = runner.invoke(app, ["evidence", "verify", "--db", str(db), "--key", str(tmp_path / "ev.json")])
    assert r.exit_code == 0 and "intact" in r.output
    r = runner.invoke(app, ["evidence", "export", "--db", str(db), "--out", str(tmp_path / "bundle"),
                            "--key", str(tmp_path / "ev.json"), "--zip"])
    assert r.exit_code == 0 and "verified intact" in r.output and (tmp_path / "bundle.zip").exists()
    con = duckdb.connect(str(db))
    con.execute("DELETE FROM evidence_log WHERE seq = 3")
    con.close()
    r = runner.invoke(app, ["evidence", "verify", "--db", str(db), "--key", str(tmp_path / "ev.json")])
    assert r.exit_code == 0  # the tail cut leaves a valid shorter chain ...
    r = runner.invoke(app, ["evidence", "verify", "--db", str(db), "--key", str(tmp_path / "ev.json"),
                            "--anchor", str(tmp_path / "bundle" / "manifest.json"), "--json"])
    assert r.exit_code == 1 and json.loads(r.stdout)["issues"][0]["kind"] == "truncated"  # ... the anchor does not
    r = runner.invoke(app, ["evidence", "verify", "--db", str(tmp_path / "none.duckdb"), "--key",
                            str(tmp_path / "ev.json")])
    assert r.exit_code == 2 and "no store" in r.output


def test_canary_probes_check_and_report(tmp_path) -> None:
    from distillguard.provenance.canary import canary_for

    r = runner.invoke(app, ["watermark", "keygen", "--kind", "canary", "--out", str(tmp_path / "cn.json"),
                            "--key-id", "cn-1"])
    assert r.exit_code == 0
    (tmp_path / "subjects.txt").write_text("acct_1\nacct_2\n")
    r = runner.invoke(app, ["provenance", "canary-probes", str(tmp_path / "subjects.txt"), "--key",
                            str(tmp_path / "cn.json"), "--out", str(tmp_path / "probes.jsonl")])
    assert r.exit_code == 0, r.output
    probes = [json.loads(x) for x in (tmp_path / "probes.jsonl").read_text().splitlines()]
    assert len(probes) == 6
    secret = load_key(tmp_path / "cn.json").secret
    leaked = canary_for("acct_2", secret).sentence  # the suspect learned acct_2's canary
    answers = [{"subject_id": p["subject_id"], "prompt": p["prompt"],
                "answer": leaked if p["subject_id"] == "acct_2" else "No idea."} for p in probes]
    (tmp_path / "answers.jsonl").write_text("".join(json.dumps(a) + "\n" for a in answers))
    r = runner.invoke(app, ["provenance", "canary-check", str(tmp_path / "answers.jsonl"), "--key",
                            str(tmp_path / "cn.json"), "--json"])
    assert r.exit_code == 0, r.output
    (tmp_path / "canaries.json").write_text(r.stdout)
    assert [h["account_id"] for h in json.loads(r.stdout)["hits"]] == ["acct_2"]
    r = runner.invoke(app, ["provenance", "report", "--canaries", str(tmp_path / "canaries.json"), "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["lines"][0]["accounts"] == ["acct_2"]

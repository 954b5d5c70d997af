"""benchmarks/sts_table.py (Table 1 of Parekh et al. 2020): at ``--size unittest`` on the toy
speech-to-singing corpus, the six systems train, are scored on the same test samples, print
beside the paper's figures with the paired claims, and a second run loads the finished
checkpoints instead of training again."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
PAPER = {"b1": (14.19, 0.221), "b2": (11.71, 0.769), "allnorm": (11.72, 0.771),
         "p-mse": (11.22, 0.829), "p-mtl": (10.97, 0.857), "autoencoder": (5.51, 0.991)}




pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The toy NUS-layout corpus of tests/models/sts (same folder, so the pYIN cache is
    shared when both run in one session)."""
    from models.sts.data import write_toy_corpus

    root = tmp_path_factory.getbasetemp() / "sts_toy_corpus"
    if not (root / "meta.json").exists():
        write_toy_corpus(root)
    return root


def _argv(out: Path, corpus: Path, runs: Path) -> list[str]:
    return ["--json", str(out), "--data", str(corpus), "--runs", str(runs),
            "--size", "unittest", "--steps", "4", "--items", "2", "--gl-iters", "4",
            "--threads", "1", "--seed", "0"]


def test_table1_trains_six_systems_scores_them_on_shared_items_and_reuses_them(
        corpus, tmp_path, capsys, load_benchmark):
    bench = load_benchmark("sts_table")
    runs, out = tmp_path / "runs", tmp_path / "table.json"
    assert bench.main(_argv(out, corpus, runs)) == 0
    first = capsys.readouterr()
    res = json.loads(out.read_text())
    assert res["size"] == "unittest" and res["data"] == str(corpus.resolve())
    assert len(res["keys"]) == 2 and len(set(res["keys"])) == 2
    recs = res["records"]
    assert [r["system"] for r in recs] == ["b1", "b2", "allnorm", "p-mse", "p-mtl",
                                           "autoencoder"]
    for r in recs:
        s = r["system"]
        assert math.isfinite(r["lsd_db"]) and 0 < r["lsd_db"] < 200, r
        assert 0.0 <= r["rca"] <= 1.0, r
        # the vocoder sings at the melody's F0: on pitch even from an untrained network
        assert len(r["rca_vocoder_per_item"]) == 2 and r["rca_vocoder"] >= 0.8, r
        assert (r["phoneme_acc"] is not None) == (s == "p-mtl"), r
        assert (r["paper_lsd_db"], r["paper_rca"]) == PAPER[s]
        assert r["items"] == 2 and r["train_steps"] == 4 and not r["reused"]
        assert r["lsd_stderr"] >= 0 and r["rca_stderr"] >= 0
        assert r["lsd_db"] == pytest.approx(np.mean(r["lsd_per_item"]))
        assert Path(r["checkpoint"]) == runs / s / "model.safetensors"
        assert r["train_seconds"] >= 0
    pmtl = next(r for r in recs if r["system"] == "p-mtl")
    assert 0.0 <= pmtl["phoneme_acc"] <= 1.0
    # claims: the paper's orderings with paired statistics over the shared items
    by = {r["system"]: r for r in recs}
    claims = res["claims"]
    assert len(claims) == 2 * (3 + 5 + 1)
    for c in claims:
        assert isinstance(c["holds"], bool) and set(c) >= {"claim", "holds", "diff",
                                                           "paired_stderr"}
        a, b = c["systems"]
        key = "lsd_per_item" if c["metric"] == "lsd" else "rca_per_item"
        d = np.subtract(by[a][key], by[b][key])
        assert c["diff"] == pytest.approx(d.mean())
        assert c["paired_stderr"] == pytest.approx(d.std(ddof=1) / math.sqrt(2))
        assert c["holds"] == (c["diff"] < 0 if c["metric"] == "lsd" else c["diff"] > 0)
    names = [c["claim"] for c in claims]
    assert "P-MTL beats B1 on LSD (lower is better)" in names
    assert "Autoencoder beats P-MTL on RCA (higher is better)" in names
    last = [c for c in claims if c["systems"] == ["p-mtl", "p-mse"]]
    assert len(last) == 2 and all(c["phoneme_acc"] == pmtl["phoneme_acc"] for c in last)
    # the printed table and claim lines; progress on stderr
    assert "paper LSD" in first.out and "Autoencoder" in first.out
    assert sum(line.startswith(("HOLDS", "FAILS")) for line in first.out.splitlines()) == 18
    assert first.err.count("training sts-unittest into") == 6

    # a second run on the same --runs loads the six finished checkpoints, trains nothing
    ckpts = {p: p.stat().st_mtime_ns for s in by for p in (runs / s / "model.safetensors",
                                                            runs / s / "last.safetensors")}
    cfg = bench.train_config("sts-unittest", 4, 0, 1)
    assert bench.finished_run(runs / "b1", cfg) is not None
    # more steps asked: it would continue
    assert bench.finished_run(runs / "b1", bench.train_config("sts-unittest", 8, 0, 1)) is None
    assert bench.main(_argv(out, corpus, runs)) == 0
    second = capsys.readouterr()
    assert "training sts-unittest into" not in second.err
    assert second.err.count("loading the finished run") == 6
    assert {p: p.stat().st_mtime_ns for p in ckpts} == ckpts
    again = json.loads(out.read_text())
    full = tmp_path / "all.json"
    full.write_text(out.read_text())
    assert all(r["reused"] for r in again["records"])
    assert again["keys"] == res["keys"]
    assert [(r["lsd_db"], r["rca"]) for r in again["records"]] == \
        [(r["lsd_db"], r["rca"]) for r in recs]
    # a larger budget continues the run from its last checkpoint (as after a kill)
    argv = _argv(out, corpus, runs)
    argv[argv.index("--steps") + 1] = "6"
    assert bench.main([*argv, "--systems", "b1"]) == 0
    assert "b1: continuing the run in" in capsys.readouterr().err
    more = json.loads(out.read_text())
    assert [(r["system"], r["train_steps"], r["reused"]) for r in more["records"]] == \
        [("b1", 6, False)]
    assert more["claims"] == []
    # --merge joins runs of separate processes: a later file's system replaces an earlier one's
    merged_path = tmp_path / "merged.json"
    assert bench.main(["--json", str(merged_path), "--merge", str(full), str(out)]) == 0
    merged = json.loads(merged_path.read_text())
    assert [r["system"] for r in merged["records"]] == [r["system"] for r in recs]
    assert merged["records"][0]["train_steps"] == 6 and merged["records"][1] == again["records"][1]
    assert len(merged["claims"]) == 18 and merged["merged_from"] == [str(full), str(out)]
    b1_lsd = next(c for c in merged["claims"] if c["claim"].startswith("P-MTL beats B1 on LSD"))
    assert b1_lsd["diff"] == pytest.approx(
        np.mean(np.subtract(pmtl["lsd_per_item"], merged["records"][0]["lsd_per_item"])))
    other = json.loads(full.read_text())
    other["seed"] = 1
    (tmp_path / "other.json").write_text(json.dumps(other))
    assert bench.main(["--json", str(merged_path), "--merge", str(full),
                       str(tmp_path / "other.json")]) == 1
    assert "seed differs" in capsys.readouterr().err


def test_a_missing_corpus_or_unknown_system_is_a_one_line_error(tmp_path, capsys, load_benchmark):
    bench = load_benchmark("sts_table")
    argv = ["--json", str(tmp_path / "t.json"), "--runs", str(tmp_path / "runs"),
            "--size", "unittest"]
    assert bench.main([*argv, "--data", str(tmp_path / "nowhere")]) == 1
    err = capsys.readouterr().err.strip()
    assert "nowhere" in err and "no such corpus" in err and "\n" not in err
    (tmp_path / "empty").mkdir()
    assert bench.main([*argv, "--data", str(tmp_path / "empty")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("sts_table: error:") and "\n" not in err
    assert bench.main([*argv, "--data", str(tmp_path / "empty"), "--systems", "b1,b9"]) == 1
    assert "b9" in capsys.readouterr().err
    assert not (tmp_path / "t.json").exists()


def test_systems_scored_on_different_samples_stop_the_table(tmp_path, monkeypatch, capsys,
                                                            load_benchmark):
    bench = load_benchmark("sts_table")
    import models.sts.data
    import models.sts.evaluate

    (tmp_path / "c").mkdir()
    monkeypatch.setattr(models.sts.data, "phoneme_list", lambda root: ["sil", "a"])
    monkeypatch.setattr(bench, "train_system", lambda system, *a: (
        None, tmp_path / system, {"train_steps": 1, "train_seconds": 0.0, "best_step": 1,
                                  "stopped": "steps", "preset": "x", "reused": False}))
    monkeypatch.setattr(bench, "eval_data", lambda corpus, info, ae, seed, cache: ae)

    def fake_eval(model, autoencoder, *args, **kwargs):  # type: ignore[no-untyped-def]
        keys = ["s/a#0:0+3", "s/a#0:1+3" if autoencoder else "s/a#1:0+3"]
        return {"keys": keys, "songs": ["a"], "items": 2, "eligible": 2, "lsd": [1.0, 2.0],
                "rca": [0.5, 0.5], "rca_vocoder": [0.9, 0.9],
                "mean": {"lsd": 1.5, "rca": 0.5, "phoneme_accuracy": None, "rca_vocoder": 0.9},
                "stderr": {"lsd": 0.5, "rca": 0.0, "phoneme_accuracy": None,
                           "rca_vocoder": 0.0}}

    monkeypatch.setattr(models.sts.evaluate, "evaluate_sts", fake_eval)
    argv = ["--json", str(tmp_path / "t.json"), "--data", str(tmp_path / "c"), "--runs",
            str(tmp_path / "runs"), "--systems", "p-mtl,autoencoder"]
    assert bench.main(argv) == 1
    err = capsys.readouterr().err
    assert "autoencoder was scored on other test samples than p-mtl" in err
    assert not (tmp_path / "t.json").exists()

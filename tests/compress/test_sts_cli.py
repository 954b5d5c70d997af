"""`compress train / eval` with a speech-to-singing preset, end to end on a tiny NUS-layout
corpus (models.sts.data.write_toy_corpus)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from compress.cli import main
from models.sts.data import write_toy_corpus


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's toy corpus (shared with tests/models/sts and their pYIN cache)."""
    root = tmp_path_factory.getbasetemp() / "sts_toy_corpus"
    if not (root / "meta.json").exists():
        write_toy_corpus(root)
    return root


@pytest.fixture(scope="module")
def ckpt(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sts_cli")
    assert main(["train", "--model", "sts-unittest", "--data", str(corpus), "--out", str(out),
                 "--steps", "6", "--set", "val_every=3", "--set", "log_every=1",
                 "--set", "ckpt_every=3"]) == 0
    return out


def test_train_writes_a_checkpoint_sized_for_the_corpus(ckpt):
    from models.checkpoint import read_header

    h = read_header(ckpt)
    assert h.model == "sts-unittest" and h.config["phonemes"] == 14  # the corpus's list
    assert h.extra["songs"]["test"] == ["song002"]
    log = [json.loads(x) for x in (ckpt / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if r["split"] == "train"] == [1, 2, 3, 4, 5, 6]
    assert [r["step"] for r in log if r["split"] == "val"] == [3, 6]
    assert all(np.isfinite(r["loss"]) for r in log)
    assert (ckpt / "loss.png").exists() and (ckpt / "last.safetensors").exists()


def test_eval_prints_lsd_rca_and_phoneme_accuracy(ckpt, corpus, tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert main(["eval", "--model", str(ckpt), "--data", str(corpus / "nus48e"), "--json",
                 str(out)]) == 0
    text = capsys.readouterr().out
    assert "LSD: " in text and "RCA: " in text and "phoneme accuracy: 0." in text
    assert "2 test sample(s) of 2 with >= 1 s of speech, songs song002" in text
    res = json.loads(out.read_text())
    assert res["items"] == 2 and np.isfinite(res["mean"]["lsd"])
    assert 0.0 <= res["mean"]["rca"] <= 1.0 and 0.0 <= res["mean"]["phoneme_accuracy"] <= 1.0
    # --checkpoint and a checkpoint file work too
    assert main(["eval", "--checkpoint", str(ckpt / "model.safetensors"), "--data",
                 str(corpus), "--max-items", "1"]) == 0
    assert "1 test sample(s) of 2" in capsys.readouterr().out


def test_a_corpus_without_pairs_is_a_one_line_error(tmp_path, capsys):
    d = tmp_path / "corpus" / "nus48e" / "singer00" / "sing"
    d.mkdir(parents=True)
    sf.write(d / "song.wav", 0.1 * np.ones(16000, "f4"), 16000)
    (d / "song.txt").write_text("0 1 a\n")
    rc = main(["train", "--model", "sts-unittest", "--data", str(tmp_path / "corpus"),
               "--out", str(tmp_path / "out")])
    assert rc != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no usable pairs" in err[0]
    assert str(tmp_path / "corpus" / "nus48e") in err[0]
    rc = main(["train", "--model", "sts-unittest", "--data", str(tmp_path / "nowhere"),
               "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(err) == 1 and "nowhere" in err[0]


def test_train_refuses_svc_flags_and_unknown_keys(corpus, tmp_path, capsys):
    base = ["train", "--model", "sts-unittest", "--data", str(corpus), "--out",
            str(tmp_path / "x")]
    assert main([*base, "--component", "decoder"]) == 1
    assert "trains as one network" in capsys.readouterr().err
    assert main([*base, "--set", "nope=1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope" in err[0]
    assert main([*base, "--set", "select_by=rca"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "select_by" in err[0]

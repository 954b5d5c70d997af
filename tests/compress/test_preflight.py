"""`compress validate` refuses what `compress run` would, with the same key, before any work."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from compress.cli import main
from models import registry


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "cfg.yaml"
    p.write_text(text)
    return p


CASES = {
    "missing_checkpoint": ("model: {name: lhq-svc-unittest, checkpoint: NOPE/x.safetensors}\n",
                           "model.checkpoint: got 'NOPE/x.safetensors', expected an existing "
                           "checkpoint file"),
    "missing_data": ("model: {name: lhq-svc-unittest}\ndata: {source: folder, path: NOPE/d}\n",
                     "data.path: got 'NOPE/d', expected an existing directory"),
    "no_data_path": ("model: {name: lhq-svc-unittest}\ndata: {source: folder}\n",
                     "data.path: got None, expected a dataset folder"),
    "unregistered": ("model: {name: no-such-model}\n",
                     "model.name: got 'no-such-model', expected"),
    "no_recipe": ("model: {name: fam-testonly}\n",
                  "model.name: got 'fam-testonly', expected a model whose family has a "
                  "compress-run recipe"),
    "tflite_in_run": ("model: {name: lhq-svc-unittest}\n"
                      "export: {formats: [pte, tflite], chunk_seconds: 0.5}\n",
                      "export.formats: got ['pte', 'tflite']"),
    "chunk_too_long": ("model: {name: lhq-svc-unittest}\nexport: {chunk_seconds: 2.0}\n",
                       "export.chunk_seconds: got 2.0, expected at most 0.504 s"),
    "prediction": ("model: {name: lhq-svc-unittest}\ndistill: {prediction: x}\n",
                   "distill.prediction: got 'x', expected 'auto' or 'v'"),
    "overrides": ("model: {name: lhq-svc-unittest, overrides: {width: 8}}\n",
                  "model.overrides: got {'width': 8}, expected empty"),
    "few_minutes": ("model: {name: lhq-svc-unittest}\ndata: {minutes: 0.1, held_out_songs: 4}\n",
                    "data.minutes: got 0.1, expected at least 0.25"),
    "bad_target": ("model: {name: lhq-svc-unittest}\nlatency: {target: 'phone'}\n",
                   "latency.target: got 'phone'"),
}


@pytest.fixture
def fam(monkeypatch):
    spec = registry.ModelSpec(name="fam-testonly", family="nofamily",
                              factory=lambda: torch.nn.Linear(2, 2), defaults={},
                              inputs=lambda m: (torch.zeros(1, 2),),
                              audio=registry.AudioMeta(sample_rate=16000))
    registry.names()
    monkeypatch.setitem(registry._REGISTRY, spec.name, spec)


@pytest.mark.parametrize("case", sorted(CASES))
def test_validate_and_run_refuse_the_same_config(case, fam, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text, expect = CASES[case]
    if "export:" not in text:  # the unittest preset's noise buffer holds 0.504 s
        text += "export: {chunk_seconds: 0.5}\n"
    cfg = _write(tmp_path, text)
    assert main(["validate", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert f"{cfg}: 1 problem" in err and expect in err, err
    out = tmp_path / "run"
    assert main(["run", str(cfg), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expect in err[0] and str(cfg) in err[0], err
    assert not out.exists()  # refused before the run directory is made


def test_validate_lists_every_problem_and_accepts_the_shipped_configs(tmp_path, capsys):
    cfg = _write(tmp_path, CASES["missing_checkpoint"][0].rstrip() + "\n"
                 "data: {source: folder, path: NOPE/d}\nexport: {formats: [tflite]}\n")
    assert main(["validate", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert "3 problems" in err and "model.checkpoint" in err and "data.path" in err
    assert "export.formats" in err
    root = Path(__file__).resolve().parents[2]
    for shipped in ("configs/default.yaml", "configs/lhq-svc.yaml"):
        assert main(["validate", str(root / shipped)]) == 0
    assert main(["validate", str(root / "configs/default.yaml"), "--target", "adb"]) == 1
    assert "--target: got 'adb'" in capsys.readouterr().err


def test_validate_applies_set_overrides_like_run(capsys):
    root = Path(__file__).resolve().parents[2]
    cfg = str(root / "configs/default.yaml")
    assert main(["validate", cfg, "--set", "evolve.max_rounds=3"]) == 0
    assert main(["validate", cfg, "--set", "export.chunk_seconds=30"]) == 1
    assert "export.chunk_seconds: got 30.0, expected at most 4.088 s" in capsys.readouterr().err
    assert main(["validate", cfg, "--set", "evolve.nope=1"]) == 1
    assert "evolve.nope: got 1, expected a known key" in capsys.readouterr().err

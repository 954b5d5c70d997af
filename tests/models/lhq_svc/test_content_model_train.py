"""`compress train --content-model`: a pretrained HuBERT (transformers directory or fairseq .pt)
as the frozen content encoder, trained end to end on a folder of unlabelled wavs; `--device`
on train / run / convert / eval; `--set KEY=VALUE` on run and train."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from compress.cli import main
from models.errors import CheckpointError
from models.lhq_svc.content import load_hubert, parse_conv_feature_layers

SR = 16000
CONV_LAYERS = "[(16,10,5)] + [(16,3,2)] * 4 + [(16,2,2)] * 2"


def _tiny_hubert():  # type: ignore[no-untyped-def]
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.HubertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(16,) * 7, num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=4,
    )
    return transformers.HubertModel(cfg).eval()


def _fairseq_keys(hf: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A transformers HubertModel state dict under fairseq's HuBERT key names."""
    out = {}
    for k, v in hf.items():
        n = k
        for a, b in (("feature_projection.layer_norm.", "layer_norm."),
                     ("feature_projection.projection.", "post_extract_proj."),
                     ("encoder.pos_conv_embed.conv.parametrizations.weight.original0",
                      "encoder.pos_conv.0.weight_g"),
                     ("encoder.pos_conv_embed.conv.parametrizations.weight.original1",
                      "encoder.pos_conv.0.weight_v"),
                     ("encoder.pos_conv_embed.conv.bias", "encoder.pos_conv.0.bias"),
                     (".attention.", ".self_attn."),
                     (".feed_forward.intermediate_dense.", ".fc1."),
                     (".feed_forward.output_dense.", ".fc2."),
                     ("masked_spec_embed", "mask_emb")):
            n = n.replace(a, b)
        if n.startswith("encoder.layers.") and ".layer_norm." in n:
            n = n.replace(".layer_norm.", ".self_attn_layer_norm.")
        if n.startswith("feature_extractor.conv_layers."):
            n = n.replace(".conv.", ".0.").replace(".layer_norm.", ".2.")
        out[n] = v.clone()
    assert len(out) == len(hf)
    out["label_embs_concat"] = torch.zeros(10, 8)  # fairseq's pre-training heads: ignored
    out["final_proj.weight"] = torch.zeros(8, 32)
    return out


@pytest.fixture(scope="module")
def hubert(tmp_path_factory):  # type: ignore[no-untyped-def]
    """The tiny HubertModel, its save_pretrained directory, and the same weights as a
    fairseq .pt (config a plain dict) and a pickled one (config an argparse Namespace)."""
    model = _tiny_hubert()
    root = tmp_path_factory.mktemp("hubert")
    model.save_pretrained(root / "hf")
    fs = _fairseq_keys(model.state_dict())
    model_cfg = {"encoder_attention_heads": 2, "conv_feature_layers": CONV_LAYERS,
                 "extractor_mode": "default", "layer_norm_first": False}
    torch.save({"cfg": {"model": model_cfg}, "model": fs}, root / "contentvec.pt")
    torch.save({"args": argparse.Namespace(**model_cfg), "model": fs}, root / "pickled.pt")
    return model, root


@pytest.fixture(scope="module")
def wav_folder(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    """A plain folder of three unlabelled 1.5 s recordings of one singer."""
    root = tmp_path_factory.mktemp("wavs") / "alice"
    root.mkdir()
    rng = np.random.default_rng(0)
    t = np.arange(int(1.5 * SR)) / SR
    for i in range(3):
        f0 = (200.0 + 25.0 * i) * 2.0 ** (0.03 * np.sin(2 * np.pi * 5.0 * t))
        phase = 2 * np.pi * np.cumsum(f0) / SR
        x = 0.3 * np.sin(phase) + 0.1 * np.sin(2 * phase) + 0.005 * rng.standard_normal(t.size)
        sf.write(root / f"take{i}.wav", x.astype(np.float32), SR)
    return root


def test_conv_feature_layers_are_parsed_without_evaluating():
    assert parse_conv_feature_layers("[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2") == (
        [(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2)
    assert parse_conv_feature_layers("__import__('os').system('true')") is None
    assert parse_conv_feature_layers("[(1, 2)]") is None


def test_transformers_dir_and_fairseq_pt_load_to_the_same_features(hubert):
    model, root = hubert
    wav = torch.randn(1, 8000, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = model(wav).last_hidden_state  # (1, N, 32)
    encoders = {
        "hf": load_hubert(root / "hf"),  # heads and strides from config.json
        "hf-file": load_hubert(root / "hf" / "model.safetensors"),  # its config.json too
        "fairseq": load_hubert(root / "contentvec.pt"),  # from cfg.model
        "pickled": load_hubert(root / "pickled.pt", allow_pickle=True),  # from args
    }
    feats = {}
    for name, enc in encoders.items():
        assert enc.config["heads"] == 2 and enc.config["layers"] == 2, name
        assert enc.config["conv_strides"] == [5, 2, 2, 2, 2, 2, 2], name
        with torch.no_grad():
            feats[name] = enc.features(wav)
        err = float((feats[name] - want).abs().max())
        assert err < 1e-5, (name, err)
    assert float((feats["hf"] - feats["fairseq"]).abs().max()) < 1e-6
    with pytest.raises(CheckpointError, match="allow-pickle"):
        load_hubert(root / "pickled.pt")


def test_bad_content_models_name_the_path(hubert, tmp_path):
    _, root = hubert
    with pytest.raises(CheckpointError, match=r"nope.*no such file or directory"):
        load_hubert(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="without config.json"):
        load_hubert(tmp_path)
    large = tmp_path / "large"
    shutil.copytree(root / "hf", large)
    cfg = (large / "config.json").read_text().replace('"do_stable_layer_norm": false',
                                                      '"do_stable_layer_norm": true')
    (large / "config.json").write_text(cfg)
    with pytest.raises(CheckpointError, match="do_stable_layer_norm"):
        load_hubert(large)


def test_a_plain_folder_of_wavs_is_one_singer(wav_folder):
    from models.lhq_svc.data import load_corpus

    corpus = load_corpus(wav_folder)
    assert corpus.singers == ["alice"]
    assert len(corpus.split("train")) == 3
    assert all(c.phonemes is None for c in corpus.clips)


def _header(ckpt: Path):  # type: ignore[no-untyped-def]
    from models.checkpoint import read_header

    return read_header(ckpt)


def test_train_on_unlabelled_wavs_with_a_hubert_then_convert(hubert, wav_folder, tmp_path,
                                                             capsys):
    from models.checkpoint import load_model

    _, root = hubert
    content = tmp_path / "hubert-copy"
    shutil.copytree(root / "hf", content)
    ckpt = tmp_path / "ckpt"
    rc = main(["train", "--model", "lhq-svc-unittest", "--data", str(wav_folder),
               "--content-model", str(content), "--out", str(ckpt), "--steps", "2",
               "--device", "auto"])
    assert rc == 0, capsys.readouterr().err
    header = _header(ckpt)
    assert header.config["content_kind"] == "hubert"
    assert header.config["content_path"] is None  # rebuilt from the config below
    assert header.config["hubert"]["heads"] == 2 and header.config["hubert"]["dim"] == 32
    assert header.extra["content_model"]["source"] == str(content.resolve())
    assert header.extra["progress"] == {"content": 2, "vocoder": 2, "decoder": 2}
    assert header.extra["speakers"] == ["alice"]
    reference = load_hubert(content).state_dict()
    shutil.rmtree(content)  # the checkpoint alone must be enough from here on

    model, _ = load_model(ckpt)
    got = model.content.state_dict()
    assert set(got) == set(reference)
    assert all(torch.equal(got[k], reference[k]) for k in got)  # frozen: not one bit moved
    assert not any(p.requires_grad for p in model.content.parameters())

    src = wav_folder / "take1.wav"
    out = tmp_path / "out.wav"
    rc = main(["convert", "--checkpoint", str(ckpt), "--input", str(src), "--speaker", "alice",
               "--output", str(out), "--steps", "2", "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    y, sr = sf.read(out)
    x, _ = sf.read(src)
    assert sr == SR and y.shape == x.shape
    assert np.isfinite(y).all() and float(np.abs(y).max()) > 0.0


def test_a_pickled_fairseq_pt_needs_allow_pickle(hubert, wav_folder, tmp_path, capsys):
    _, root = hubert
    args = ["train", "--model", "lhq-svc-unittest", "--data", str(wav_folder),
            "--content-model", str(root / "pickled.pt"), "--steps", "1",
            "--component", "decoder", "--device", "cpu"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--allow-pickle" in err and "pickled.pt" in err
    assert not (tmp_path / "a" / "model.safetensors").exists()
    assert main([*args, "--out", str(tmp_path / "b"), "--allow-pickle"]) == 0
    assert _header(tmp_path / "b").extra["content_model"]["format"] == "pt"


def test_missing_content_model_is_one_line(wav_folder, tmp_path, capsys):
    missing = tmp_path / "no-such-hubert"
    rc = main(["train", "--model", "lhq-svc-unittest", "--data", str(wav_folder),
               "--content-model", str(missing), "--out", str(tmp_path / "c")])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1 and str(missing) in err
    # unlabelled wavs without a pretrained encoder: the one line says what to give
    rc = main(["train", "--model", "lhq-svc-unittest", "--data", str(wav_folder),
               "--out", str(tmp_path / "d"), "--steps", "1", "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1 and "--content-model" in err


def test_run_config_content_model_is_validated(tmp_path):
    from compress.config import RunConfig
    from compress.config_io import from_dict
    from compress.errors import ConfigError

    missing = tmp_path / "contentvec.pt"
    with pytest.raises(ConfigError, match=r"model\.content_model: got .*contentvec\.pt") as e:
        from_dict(RunConfig, {"model": {"content_model": str(missing)}})
    assert "\n" not in str(e.value)
    missing.write_bytes(b"x")
    cfg = from_dict(RunConfig, {"model": {"content_model": str(missing),
                                          "content_allow_pickle": True}})
    assert cfg.model.content_model == str(missing) and cfg.model.content_allow_pickle


def test_run_teacher_gets_the_content_model_and_the_device(tmp_path, monkeypatch):
    from compress.config import RunConfig
    from compress.config_io import from_dict
    from compress.recipes import recipe_for
    from models.lhq_svc import train as train_mod

    pt = tmp_path / "contentvec.pt"
    pt.write_bytes(b"x")
    cfg = from_dict(RunConfig, {"model": {"name": "lhq-svc-unittest", "content_model": str(pt),
                                          "content_allow_pickle": True}})
    seen = {}
    monkeypatch.setattr(train_mod, "train", lambda *a, **k: seen.update(k))
    recipe = recipe_for("lhq-svc-unittest")
    recipe.configure(cfg)
    recipe.device = "cuda"
    recipe.train_teacher(cfg, argparse.Namespace(root=str(tmp_path)), tmp_path, lambda m: None)
    assert seen["content_model"] == str(pt) and seen["allow_pickle"] is True
    assert seen["device"] == "cuda"


# ---- --device ------------------------------------------------------------------------------
def test_device_auto_cpu_and_cuda(monkeypatch):
    from compress.cli_util import resolve_device
    from compress.errors import CompressError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(CompressError, match="--device cuda: CUDA is not available"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"
    assert resolve_device("cuda") == "cuda"


@pytest.mark.parametrize("command", ["train", "run", "convert", "eval"])
def test_device_cuda_without_a_gpu_is_one_line(command, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    args = {"train": ["--model", "lhq-svc-unittest", "--data", str(tmp_path), "--out",
                      str(tmp_path / "o")],
            "run": ["--out", str(tmp_path / "r")],
            "convert": ["--checkpoint", str(tmp_path), "--input", "x.wav", "--speaker", "a",
                        "--output", str(tmp_path / "y.wav")],
            "eval": ["--checkpoint", str(tmp_path), "--data", str(tmp_path)]}[command]
    assert main([command, *args, "--device", "cuda"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith(f"compress {command}: error: --device cuda: CUDA is not available")
    assert err.endswith("use --device cpu or --device auto")


def test_device_reaches_the_trainer(wav_folder, tmp_path, monkeypatch):
    """``--device auto`` with a GPU visible: the Trainer is asked for cuda (nothing runs)."""
    from models.lhq_svc import train as train_mod

    seen = {}

    class FakeTrainer:
        def __init__(self, model, *args, device=None, **kwargs):  # type: ignore[no-untyped-def]
            seen["device"] = device
            seen["model_device"] = str(model.device)

        def run(self, components):  # type: ignore[no-untyped-def]
            seen["components"] = components

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(train_mod, "Trainer", FakeTrainer)
    rc = main(["train", "--model", "lhq-svc-unittest", "--data", str(wav_folder),
               "--out", str(tmp_path / "o"), "--component", "decoder"])
    assert rc == 0
    assert seen == {"device": "cuda", "model_device": "cpu", "components": ["decoder"]}


def test_trainer_moves_the_model_and_batches_to_its_device(wav_folder, tmp_path):
    from models import registry
    from models.lhq_svc.data import load_corpus
    from models.lhq_svc.train import PRESET_TRAINING, Trainer

    corpus = load_corpus(wav_folder)
    model = registry.build("lhq-svc-unittest", n_speakers=1, speakers=corpus.singers)
    tr = Trainer(model, "lhq-svc-unittest", corpus, tmp_path, PRESET_TRAINING["lhq-svc-unittest"],
                 show_progress=False, device="cpu")
    assert tr.device == torch.device("cpu")
    x, content, f0_feats, spk = tr.batches.inputs(np.random.default_rng(0))
    assert {t.device for t in (x, content, f0_feats, spk)} == {model.device}


def test_run_device_reaches_the_recipe(monkeypatch, tmp_path):
    import compress.rundir

    class Stop(Exception):
        pass

    seen = {}

    def fake_run_stages(rundir, stages, st, on_stage):  # type: ignore[no-untyped-def]
        seen["device"] = st.recipe.device
        seen["cfg"] = st.cfg
        raise Stop

    monkeypatch.setattr(compress.rundir, "run_stages", fake_run_stages)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(Stop):
        main(["run", "--out", str(tmp_path / "r")])
    assert seen["device"] == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(Stop):
        main(["run", "--out", str(tmp_path / "r"), "--device", "auto"])
    assert seen["device"] == "cpu"


# ---- --set ---------------------------------------------------------------------------------
def _capture_run(monkeypatch):  # type: ignore[no-untyped-def]
    import compress.rundir

    class Stop(Exception):
        pass

    seen = {}

    def fake_run_stages(rundir, stages, st, on_stage):  # type: ignore[no-untyped-def]
        seen["cfg"] = st.cfg
        raise Stop

    monkeypatch.setattr(compress.rundir, "run_stages", fake_run_stages)
    return seen, Stop


def test_run_set_overrides_the_config(monkeypatch, tmp_path):
    seen, stop = _capture_run(monkeypatch)
    with pytest.raises(stop):
        main(["run", "--out", str(tmp_path / "r"), "--device", "cpu",
              "--set", "evolve.max_rounds=3", "--set", "evolve.budget_ms=12",
              "--set", "export.formats=[pte, onnx]", "--set", "name=tuned"])
    cfg = seen["cfg"]
    assert cfg.evolve.max_rounds == 3 and cfg.evolve.budget_ms == 12.0
    assert cfg.export.formats == ["pte", "onnx"] and cfg.name == "tuned"
    yml = tmp_path / "c.yaml"
    yml.write_text("name: from-file\nevolve:\n  max_rounds: 5\n  score: sim_stoi\n")
    with pytest.raises(stop):
        main(["run", str(yml), "--out", str(tmp_path / "r2"), "--device", "cpu",
              "--set", "evolve.max_rounds=2", "--set", "distill.guard=false"])
    cfg = seen["cfg"]
    assert cfg.name == "from-file" and cfg.evolve.max_rounds == 2
    assert cfg.distill.guard is False and cfg.evolve.score == "sim_stoi"


def test_run_set_unknown_key_is_the_loaders_error(monkeypatch, tmp_path, capsys):
    _capture_run(monkeypatch)
    yml = tmp_path / "bad.yaml"
    yml.write_text("evolve:\n  rounds: 3\n")
    assert main(["run", str(yml), "--out", str(tmp_path / "r"), "--device", "cpu"]) == 1
    from_file = capsys.readouterr().err.strip()
    assert main(["run", "--out", str(tmp_path / "r"), "--device", "cpu",
                 "--set", "evolve.rounds=3"]) == 1
    from_set = capsys.readouterr().err.strip()
    assert len(from_set.splitlines()) == 1
    tail = "1 problem in config: evolve.rounds: got 3, expected a known key (valid: "
    assert tail in from_file and tail in from_set
    assert from_set.split("problem in config:")[1] == from_file.split("problem in config:")[1]
    assert main(["run", "--out", str(tmp_path / "r"), "--set", "evolve.max_rounds"]) == 1
    assert "KEY=VALUE" in capsys.readouterr().err
    assert main(["run", "--out", str(tmp_path / "r"), "--set", "name.x=1"]) == 1
    assert "name: got 'demo', expected a mapping" in capsys.readouterr().err


def test_train_set_overrides_the_training_config(monkeypatch, tmp_path, capsys):
    from models.lhq_svc import train as train_mod
    from models.lhq_svc.train import PRESET_TRAINING

    seen = {}
    monkeypatch.setattr(train_mod, "train", lambda *a, **k: seen.update(k) or tmp_path)
    rc = main(["train", "--model", "lhq-svc-unittest", "--data", str(tmp_path), "--out",
               str(tmp_path / "o"), "--device", "cpu", "--set", "decoder_steps=7",
               "--set", "lr=1e-2", "--set", "vocoder_gan=true"])
    assert rc == 0
    cfg, base = seen["cfg"], PRESET_TRAINING["lhq-svc-unittest"]
    assert (cfg.decoder_steps, cfg.lr, cfg.vocoder_gan) == (7, 0.01, True)
    assert cfg.batch == base.batch and cfg.vocoder_steps == base.vocoder_steps
    assert seen["device"] == "cpu"
    rc = main(["train", "--model", "lhq-svc-unittest", "--data", str(tmp_path), "--out",
               str(tmp_path / "o"), "--set", "decoder.steps=7"])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1
    assert "decoder: got {'steps': 7}, expected a known key (valid: batch," in err

"""`compress train / eval / separate` with a CWS separator preset, end to end on files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from compress.cli import main

SR = 8000


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _track(d, seed: int, seconds: float = 3.0) -> None:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = 200 + 40 * seed
    voc = 0.3 * np.sin(2 * np.pi * f0 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 0.7 * t)) ** 2
    acc = 0.1 * rng.standard_normal(len(t))
    d.mkdir(parents=True)
    stereo = lambda x: np.stack([x, 0.8 * x], axis=1).astype("f4")  # noqa: E731
    sf.write(d / "vocals.wav", stereo(voc), SR)
    sf.write(d / "accompaniment.wav", stereo(acc), SR)
    sf.write(d / "mixture.wav", stereo(voc + acc), SR)


@pytest.fixture(scope="module")
def musdb(tmp_path_factory):
    root = tmp_path_factory.mktemp("musdb")
    for i in range(3):
        _track(root / "train" / f"song{i}", i)
    _track(root / "test" / "held", 7)
    return root


@pytest.fixture(scope="module")
def ckpt(musdb, tmp_path_factory):
    out = tmp_path_factory.mktemp("sep")
    assert main(["train", "--model", "cws-mdensenet-unittest", "--data", str(musdb), "--out",
                 str(out), "--steps", "4", "--set", "batch=2", "--set", "chunk_seconds=1.0",
                 "--set", "val_every=2", "--set", "val_seconds=2", "--set", "ckpt_every=2",
                 "--set", "log_every=1", "--set", "k=2"]) == 0
    return out


def test_train_writes_a_checkpoint_with_the_overridden_model(ckpt):
    from models.checkpoint import read_header

    h = read_header(ckpt)
    assert h.model == "cws-mdensenet-unittest" and h.config["k"] == 2
    log = [json.loads(x) for x in (ckpt / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if r["split"] == "train"] == [1, 2, 3, 4]
    assert all(np.isfinite(r["loss"]) for r in log)


def test_train_refuses_svc_only_flags_and_unknown_keys(musdb, tmp_path, capsys):
    base = ["train", "--model", "cws-mdensenet-unittest", "--data", str(musdb), "--out",
            str(tmp_path / "x")]
    assert main([*base, "--component", "decoder"]) == 1
    assert "a separator trains as one network" in capsys.readouterr().err
    assert main([*base, "--set", "nope=1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope" in err[0]


def test_eval_reports_museval_medians(ckpt, musdb, tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert main(["eval", "--checkpoint", str(ckpt), "--data", str(musdb), "--json",
                 str(out)]) == 0
    res = json.loads(out.read_text())
    assert list(res["tracks"]) == ["held"]
    for src in ("vocals", "accompaniment"):
        assert {"sdr", "sir", "sar", "si_sdr", "sdri"} <= set(res["median"][src])
        assert np.isfinite(res["median"][src]["sdr"])
    assert "vocals: sdr=" in capsys.readouterr().out


@pytest.mark.parametrize("rate,channels", [(SR, 2), (22050, 1)])
def test_separate_writes_both_stems_in_the_input_format(ckpt, tmp_path, rate, channels):
    t = np.arange(int(2.3 * rate)) / rate
    x = (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * np.sin(2 * np.pi * 1500 * t)).astype("f4")
    src = tmp_path / "song.flac"
    sf.write(src, np.stack([x, x], 1) if channels == 2 else x, rate)
    out = tmp_path / "stems"
    assert main(["separate", "--model", str(ckpt), "--input", str(src), "--out", str(out),
                 "--chunk-seconds", "1.0"]) == 0
    for name in ("vocals", "accompaniment"):
        y, sr = sf.read(out / f"{name}.wav", dtype="float32")
        assert sr == rate and y.shape[0] == len(x) and np.isfinite(y).all()
        assert (y.ndim == 2 and y.shape[1] == 2) if channels == 2 else y.ndim == 1


def test_separate_unreadable_input_is_one_line(ckpt, tmp_path, capsys):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnothing")
    assert main(["separate", "--model", str(ckpt), "--input", str(bad), "--out",
                 str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.wav" in err[0]
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_separate_with_the_exported_program_matches_the_checkpoint(ckpt, tmp_path):
    """The fp32 .pte (filter banks and STFT inside the graph) separates chunk by chunk like
    the checkpoint through the same chunking."""
    exp = tmp_path / "exp"
    assert main(["export", str(ckpt), "--format", "pte", "--out", str(exp)]) == 0
    pte = next(exp.glob("*.pte"))
    t = np.arange(int(1.7 * SR)) / SR
    x = np.stack([0.3 * np.sin(2 * np.pi * 220 * t)] * 2, 1).astype("f4")
    src = tmp_path / "song.wav"
    sf.write(src, x, SR, subtype="FLOAT")
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["separate", "--model", str(pte), "--input", str(src), "--out", str(a)]) == 0
    meta = json.loads(next(exp.glob("*.json")).read_text())["metadata"]
    chunk = str(meta["chunk_frames"] / SR)
    assert main(["separate", "--model", str(ckpt), "--input", str(src), "--out", str(b),
                 "--chunk-seconds", chunk]) == 0
    for name in ("vocals", "accompaniment"):
        ya, _ = sf.read(a / f"{name}.wav", dtype="float32")
        yb, _ = sf.read(b / f"{name}.wav", dtype="float32")
        assert np.max(np.abs(ya - yb)) < 2e-4, name  # 16-bit files, fp32 program parity


@pytest.mark.parametrize("model", ["vox-tasnet-causal-unittest", "chimera-unittest"])
def test_train_eval_separate_work_for_the_other_separators(model, musdb, tmp_path, capsys):
    """Vox-TasNet and the Chimera network go through the same commands as the CWS models:
    eval reports the stereo asymmetry, separate writes stems that add up to the input."""
    out = tmp_path / "ckpt"
    assert main(["train", "--model", model, "--data", str(musdb), "--out", str(out),
                 "--steps", "4", "--set", "batch=2", "--set", "val_every=2",
                 "--set", "val_seconds=2", "--set", "ckpt_every=2", "--set", "log_every=1"]) == 0
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(out), "--data", str(musdb), "--json",
                 str(tmp_path / "e.json")]) == 0
    text = capsys.readouterr().out
    assert "vocals: sdr=" in text and "ssa_si_sdr=" in text
    res = json.loads((tmp_path / "e.json").read_text())
    assert res["model"] == model and np.isfinite(res["median"]["vocals"]["ssa_si_sdr"])
    t = np.arange(int(1.3 * SR)) / SR
    x = np.stack([0.3 * np.sin(2 * np.pi * 220 * t), 0.2 * np.sin(2 * np.pi * 330 * t)], 1)
    src = tmp_path / "song.wav"
    sf.write(src, x.astype("f4"), SR, subtype="FLOAT")
    assert main(["separate", "--model", str(out), "--input", str(src), "--out",
                 str(tmp_path / "stems")]) == 0
    voc, _ = sf.read(tmp_path / "stems" / "vocals.wav", dtype="float32")
    acc, _ = sf.read(tmp_path / "stems" / "accompaniment.wav", dtype="float32")
    assert voc.shape == acc.shape == x.shape
    assert np.max(np.abs(voc + acc - x)) < 2e-3  # 16-bit stems of a mask that sums to one


@pytest.mark.parametrize("model", ["vox-tasnet-causal-unittest", "chimera-causal-unittest"])
def test_export_streaming_program_of_a_trained_causal_separator(model, musdb, tmp_path, capsys):
    """`compress export --stream-frames K`: the trained model's streaming program, whose
    metadata tells an app the chunk, the delay and the state; run chunk by chunk with its
    state carried in the runtime, it gives the checkpoint's whole-file stems. `compress
    separate` refuses it in one line, and a BLSTM cannot stream."""
    from export.runtime import PteRunner
    from models.checkpoint import load_model

    ckpt = tmp_path / "ckpt"
    assert main(["train", "--model", model, "--data", str(musdb), "--out", str(ckpt),
                 "--steps", "2", "--set", "batch=2", "--set", "val_every=2",
                 "--set", "val_seconds=2", "--set", "ckpt_every=2", "--set", "log_every=1"]) == 0
    exp = tmp_path / "exp"
    assert main(["export", str(ckpt), "--format", "pte", "--stream-frames", "8", "--out",
                 str(exp), "--threads", "1"]) == 0
    pte = next(exp.glob("*-stream_xnnpack_fp32.pte"))
    meta = json.loads(pte.with_suffix(".json").read_text())["metadata"]
    assert meta["component"] == "stream" and meta["stream_frames"] == 8
    shapes = json.loads(meta["state_shapes"])
    n, delay = int(meta["chunk_frames"]), int(meta["delay_samples"])
    eager, _ = load_model(ckpt)
    x = torch.from_numpy(np.random.default_rng(3).standard_normal((1, 2, 3000)) * 0.1).float()
    with torch.no_grad():
        whole = eager.eval()(x)
    runner = PteRunner(pte, threads=1)
    calls = -(-(x.shape[-1] + delay) // n)
    padded = torch.nn.functional.pad(x, (0, calls * n - x.shape[-1]))
    state = [torch.zeros(s) for s in shapes]  # the initial state: zeros, as the metadata says
    outs = []
    for i in range(calls):
        stems, *state = runner(padded[..., i * n : (i + 1) * n], *state)
        outs.append(stems)
    y = torch.cat(outs, dim=-1)[..., delay : delay + x.shape[-1]]
    exact = x.shape[-1] - 2 * delay  # the file's end: the whole-file model pads its future
    assert float((y - whole)[..., :exact].abs().max()) < 1e-4
    capsys.readouterr()
    src = tmp_path / "song.wav"
    sf.write(src, x[0].T.numpy(), SR, subtype="FLOAT")
    assert main(["separate", "--model", str(pte), "--input", str(src), "--out",
                 str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "streaming program" in err[0]
    assert main(["export", "chimera-unittest", "--format", "pte", "--stream-frames", "8",
                 "--out", str(tmp_path / "x")]) == 1
    assert "cannot" in capsys.readouterr().err.lower()

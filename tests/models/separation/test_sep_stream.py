"""Streaming separation: the chunk loop fed piece by piece is the whole-array loop, buffers stay
one chunk long, and a file streams through resampling both ways to the same stems."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from models import registry
from models.audio import load_audio, resample
from models.errors import AudioError
from models.separation.infer import ChunkStream, separate_file, separate_long

NAME = "cws-mdensenet-unittest"  # 8 kHz stereo


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    return registry.build(NAME).eval()


def _song(seconds: float, sr: int, channels: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    voice = 0.3 * np.sin(2 * np.pi * 330 * t) * (np.sin(2 * np.pi * 0.5 * t) > 0)
    x = voice[None] + 0.05 * rng.standard_normal((channels, t.size))
    return x.astype(np.float32)


@pytest.mark.parametrize("total", [1000, 4000, 4001, 13_577])
def test_pieces_give_the_whole_array_result_with_one_chunk_of_memory(model, total):
    x = _song(total / 8000, 8000, 2, seed=total)[:, :total]
    chunk, overlap = 4000, 1000
    want = separate_long(model, x, chunk / 8000, overlap / 8000, progress=False)
    stream = ChunkStream(model, 2, chunk, overlap)
    rng = np.random.default_rng(1)
    outs, s = [], 0
    while s < total:
        n = int(rng.integers(1, 2500))
        outs.append(stream.push(x[:, s : s + n]))
        # what the stream holds: less than a chunk beyond the newest piece, never the song
        assert stream.buf.shape[-1] <= chunk + n and stream.acc.shape[-1] <= chunk
        s += n
    outs.append(stream.push(np.zeros((2, 0), np.float32), last=True))
    got = np.concatenate(outs, axis=-1)
    assert got.shape == want.shape == (2, 2, total)
    assert float(np.abs(got - want).max()) < 1e-6
    with pytest.raises(AudioError, match="ended"):
        stream.push(x[:, :10])


@pytest.mark.parametrize(("sr", "channels"), [(8000, 2), (22050, 1), (44100, 2)])
def test_a_file_streams_to_the_whole_array_stems(model, tmp_path, sr, channels):
    x = _song(3.3, sr, channels)
    src = tmp_path / "song.flac"
    sf.write(src, x.T, sr)
    info = separate_file(model, src, tmp_path / "out", 1.0, 0.25, progress=False,
                         block_seconds=0.37)
    assert info["sample_rate"] == sr and info["channels"] == channels
    assert abs(info["seconds"] - x.shape[1] / sr) < 1e-9
    # the whole-array path: load, resample, separate, resample back
    wav, _ = load_audio(src, channels=None)
    wav = wav if wav.ndim == 2 else wav[None]
    ref = separate_long(model, resample(wav, sr, 8000), 1.0, 0.25, progress=False)
    for j, name in enumerate(("vocals", "accompaniment")):
        y, sr_out = sf.read(tmp_path / "out" / f"{name}.wav", dtype="float32", always_2d=True)
        assert sr_out == sr and y.shape == (x.shape[1], channels)
        want = resample(ref[j], 8000, sr)[:, : x.shape[1]]
        want = np.clip(want, -1, 1)
        n = min(want.shape[1], y.shape[0])
        assert float(np.abs(y[:n].T - want[:, :n]).max()) < 2.0 / 32768  # 16-bit rounding
    assert not list((tmp_path / "out").glob(".*partial"))


def test_bad_files_leave_nothing_behind(model, tmp_path):
    x = _song(2.0, 8000, 2)
    x[0, 9000] = np.nan
    bad = tmp_path / "nan.wav"
    sf.write(bad, x.T, 8000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN/Inf samples near 1.00 s"):
        separate_file(model, bad, tmp_path / "o1", 1.0, 0.25, progress=False)
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros((8000, 2), np.float32), 8000)
    with pytest.raises(AudioError, match="silent"):
        separate_file(model, silent, tmp_path / "o2", 1.0, 0.25, progress=False)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF" + bytes(range(200)))
    with pytest.raises(AudioError, match="not a readable audio file"):
        separate_file(model, junk, tmp_path / "o3", 1.0, 0.25, progress=False)
    for d in ("o1", "o2", "o3"):
        assert not (tmp_path / d).exists() or not any((tmp_path / d).iterdir()), d

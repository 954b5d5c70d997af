"""Speech-to-singing inference: §2.1 stretch to the melody, the network, §2.4 Griffin-Lim."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.signal import lfilter

from models import registry
from models.checkpoint import save_checkpoint
from models.errors import CheckpointError
from models.sts import StsError
from models.sts.infer import StsProgram, load_sts, melody_rca, run_network, sing
from models.sts.melody import Melody, frame_times, frames_for_seconds, load_melody
from models.sts.net import StsNet
from models.sts.preprocess import HOP, N_BINS, SAMPLE_RATE

SR = SAMPLE_RATE
GL = 8  # Griffin-Lim iterations: enough for shapes and finiteness, cheap


def speech_like(seconds: float, f0: float = 120.0, seed: int = 0) -> np.ndarray:
    """A voiced, speech-like signal: a gliding harmonic source through three formant
    resonators, with a syllable-rate envelope that never falls silent."""
    n = int(seconds * SR)
    t = np.arange(n) / SR
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.15 * np.sin(2 * np.pi * 1.3 * t))) / SR
    src = sum(np.sin(k * phase) / k for k in range(1, 40))
    out = np.zeros(n)
    for fc, bw in ((700, 110), (1220, 120), (2600, 250)):
        r, th = np.exp(-np.pi * bw / SR), 2 * np.pi * fc / SR
        out += lfilter([1 - r], [1, -2 * r * np.cos(th), r * r], src)
    out *= 0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)
    out += 1e-3 * np.random.default_rng(seed).standard_normal(n)
    return (0.5 * out / np.max(np.abs(out))).astype(np.float32)


@pytest.fixture(scope="module")
def model() -> StsNet:
    torch.manual_seed(0)
    return registry.build("sts-unittest").eval()


def flat(seconds: float, hz: float = 220.0) -> Melody:
    return load_melody(None, n_frames=frames_for_seconds(seconds), hz=hz)


def test_sing_returns_the_melodys_length(model):
    melody = flat(1.5)
    lines: list[str] = []
    wav, info = sing(model, speech_like(1.0), melody, gl_iters=GL, log=lines.append)
    assert wav.dtype == np.float32 and wav.ndim == 1 and np.all(np.isfinite(wav))
    assert abs(wav.size - melody.seconds * SR) <= HOP
    assert wav.size == (melody.n_frames - 1) * HOP and info["seconds"] == wav.size / SR
    assert info["frames"] == melody.n_frames and info["network_calls"] == 1
    assert info["chunk_frames"] is None and info["gl_iters"] == GL
    assert info["stretch_factor"] == pytest.approx(1.5, rel=0.02)
    assert len(lines) == 1 and "stretch factor 1.50" in lines[0]


def test_a_melody_twice_as_long_stretches_by_two_after_silence_removal(model):
    voiced = speech_like(1.0)
    gap = 38 * HOP  # 0.608 s of silence, aligned with the 256-sample energy blocks
    speech = np.concatenate([voiced[: 32 * HOP], np.zeros(gap, np.float32), voiced[32 * HOP :]])
    lines: list[str] = []
    _, info = sing(model, speech, flat(2.0), gl_iters=GL, log=lines.append)
    assert info["removed_seconds"] == pytest.approx(gap / SR)
    assert info["speech_seconds"] == pytest.approx(1.608)
    assert info["stretch_factor"] == pytest.approx(2.0, rel=1e-6)  # 2 s / 1 s, not 2 / 1.6
    assert "stretch factor 2.0" in lines[0] and "silence removed" in lines[0]
    # much longer than spoken: said so
    _, info = sing(model, voiced, flat(3.0), gl_iters=GL, log=lines.append)
    assert info["stretch_factor"] == pytest.approx(3.0, rel=0.02)
    assert "much slower than spoken" in lines[-1]


def test_program_runs_fixed_chunks_zero_padded_without_overlap(model):
    calls: list[tuple[int, ...]] = []

    def runner(x: torch.Tensor, c: torch.Tensor) -> list[torch.Tensor]:
        calls.append(tuple(x.shape))
        return [2.0 * x + c, torch.zeros(1, 41, x.shape[-1])]  # frame-wise: chunking is exact

    x = np.random.default_rng(0).random((N_BINS, 37)).astype(np.float32)
    c = np.zeros_like(x)
    c[10, :] = 1.0
    y, n = run_network(StsProgram(runner, 16), x, c)
    assert n == 3 and calls == [(1, N_BINS, 16)] * 3
    np.testing.assert_allclose(y, 2.0 * x + c, rtol=1e-6)


def test_sing_with_a_program_wrapping_the_network(model):
    def runner(x: torch.Tensor, c: torch.Tensor) -> list[torch.Tensor]:
        return list(model(x, c))

    melody = flat(1.0)
    wav, info = sing(model=StsProgram(runner, 16, "fake.pte"), speech=speech_like(0.8),
                     melody=melody, gl_iters=GL, log=lambda _: None)
    assert np.all(np.isfinite(wav)) and wav.size == (melody.n_frames - 1) * HOP
    assert info["chunk_frames"] == 16 and info["network_calls"] == -(-melody.n_frames // 16)


def test_load_sts_checkpoint_and_wrong_family(model, tmp_path):
    path = save_checkpoint(tmp_path / "sts" / "model.safetensors", model,
                           model_name="sts-unittest", config=model.config)
    loaded = load_sts(path.parent)
    assert isinstance(loaded, StsNet) and not loaded.training
    for k, v in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v)
    sep = registry.build("vox-tasnet-unittest")
    other = save_checkpoint(tmp_path / "sep.safetensors", sep, model_name="vox-tasnet-unittest",
                            config=registry.get("vox-tasnet-unittest").config())
    with pytest.raises(StsError, match=r"sep\.safetensors is a separation checkpoint "
                       r"\(vox-tasnet-unittest\); compress sing needs a speech-to-singing model"):
        load_sts(other)
    with pytest.raises(CheckpointError, match="no such file"):
        load_sts(tmp_path / "missing.safetensors")
    with pytest.raises(StsError, match=r"missing\.pte: no such program file"):
        load_sts(tmp_path / "missing.pte")


def test_melody_rca_of_a_tone_that_follows_the_melody():
    t = frame_times(frames_for_seconds(1.5))
    f0 = np.where(t < 0.75, 220.0, 330.0)
    melody = Melody(f0, t, "f0", "two notes")
    n = (t.size - 1) * HOP
    inst = np.interp(np.arange(n) / SR, t, f0)
    wav = 0.4 * np.sin(2 * np.pi * np.cumsum(inst) / SR)
    assert melody_rca(wav, melody) > 0.9
    assert melody_rca(0.4 * np.sin(2 * np.pi * 277.0 * np.arange(n) / SR), melody) < 0.1
    assert np.isnan(melody_rca(np.zeros(100), melody))


def test_bad_inputs(model):
    with pytest.raises(StsError, match="empty signal"):
        sing(model, np.zeros(0, np.float32), flat(1.0), gl_iters=GL)
    with pytest.raises(StsError, match="all zeros"):
        sing(model, np.zeros(16000, np.float32), flat(1.0), gl_iters=GL)
    with pytest.raises(StsError, match="need at least 2"):
        sing(model, speech_like(0.5), flat(0.0), gl_iters=GL)
    with pytest.raises(StsError, match="gl_iters=0"):
        sing(model, speech_like(0.5), flat(1.0), gl_iters=0)
    unvoiced = Melody(np.zeros(50), frame_times(50), "f0", "silence")
    with pytest.raises(StsError, match="no voiced frames"):
        sing(model, speech_like(0.5), unvoiced, gl_iters=GL)

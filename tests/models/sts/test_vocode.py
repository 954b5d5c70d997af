"""Rendering the network's spectrogram through the harmonic-plus-noise vocoder
(:mod:`models.sts.vocode`): the mel conversion against the vocoder's own front end, the F0
interpolation, the rendering's pitch and length, and its errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.lhq_svc.mel import LogMel
from models.sts import StsError
from models.sts.infer import melody_rca
from models.sts.melody import Melody
from models.sts.preprocess import HOP, SAMPLE_RATE, log_magnitude
from models.sts.vocode import (
    interpolate_f0,
    load_vocoder,
    render_vocoder,
    vocoder_mel,
)


def sung(f0_frames: np.ndarray, seed: int = 0) -> np.ndarray:
    """A sung-like tone: 30 decaying harmonics on the per-frame F0, breath noise, a vibrato."""
    rng = np.random.default_rng(seed)
    n = (f0_frames.size - 1) * HOP
    f0 = np.interp(np.arange(n) / HOP, np.arange(f0_frames.size), f0_frames)
    f0 = f0 * (1 + 0.01 * np.sin(2 * np.pi * 5.5 * np.arange(n) / SAMPLE_RATE))
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    x = sum(np.sin(k * phase) * 0.8**k for k in range(1, 31))
    x = x * (f0 > 0) + 0.01 * rng.standard_normal(n)
    return (0.4 * x / np.max(np.abs(x))).astype(np.float32)


def melody_of(f0: np.ndarray) -> Melody:
    return Melody(f0=f0, times=np.arange(f0.size) * HOP / SAMPLE_RATE, source="f0",
                  description="test")


def notes(frames: int = 188) -> np.ndarray:
    """C4 E4 G4 C5 with a rest: about 3 s on the network's frames."""
    hz = [261.6, 329.6, 392.0, 0.0, 523.3]
    return np.repeat(hz, -(-frames // len(hz)))[:frames].astype(np.float64)


def test_the_mel_of_the_network_frames_matches_the_vocoders_front_end():
    f0 = notes()
    wav = sung(f0)
    mel = vocoder_mel(log_magnitude(wav))
    ref = LogMel()(torch.from_numpy(wav)[None])[0].numpy()
    assert mel.shape == (80, 2 * (f0.size - 1))  # the vocoder's hop is half the network's
    n = min(mel.shape[1], ref.shape[1])
    loud = ref[:, :n] > np.log(1e-2)
    d = mel[:, :n][loud] - ref[:, :n][loud]
    # the 1024 / 512 window gain is right for harmonics; frame interpolation and the wider
    # window smear onsets: measured mean -0.22, MAE 0.49 nats on this tone (-0.28 / 0.57 on a
    # synthetic-corpus song)
    assert abs(d.mean()) < 0.4 and np.abs(d).mean() < 0.6


def test_f0_interpolation_glides_between_voiced_frames_and_keeps_unvoiced_edges():
    f0 = np.array([200.0, 400.0, 0.0, 300.0])
    t = np.array([0.0, 0.5, 1.0, 1.25, 1.75, 2.5, 3.0])
    out = interpolate_f0(f0, t)
    assert out[0] == 200 and out[2] == 400 and out[6] == 300
    assert out[1] == pytest.approx(np.sqrt(200 * 400), rel=1e-6)  # geometric midpoint
    assert out[3] == 400 and out[4] == 0 and out[5] == 300  # nearest across a rest


@pytest.mark.parametrize("source", ["matching", "flat"])
def test_rendering_sings_at_the_f0_it_is_given(source):
    """The DSP vocoder follows the melody whatever the envelope's own harmonics say."""
    f0 = notes()
    other = np.where(f0 > 0, 180.0, 0.0)  # the spectrogram's own pitch: one flat note
    x = log_magnitude(sung(f0 if source == "matching" else other))
    wav = render_vocoder(x, f0, load_vocoder())
    assert wav.shape == ((f0.size - 1) * HOP,) and wav.dtype == np.float32
    assert np.max(np.abs(wav)) <= 1.0 and np.sqrt(np.mean(wav**2)) > 1e-3
    assert melody_rca(wav, melody_of(f0)) >= 0.9
    # Griffin-Lim of the flat spectrogram would not: the check can fail
    assert melody_rca(sung(other), melody_of(f0)) < 0.3


def test_bad_inputs_and_checkpoints(tmp_path):
    from models import registry
    from models.checkpoint import save_checkpoint

    x = log_magnitude(sung(notes(40)))
    voc = load_vocoder()
    with pytest.raises(StsError, match="a .513, T. spectrogram and a .T,. F0"):
        render_vocoder(x, notes(39), voc)
    bad = notes(40)
    bad[3] = np.nan
    with pytest.raises(StsError, match="NaN/Inf"):
        render_vocoder(x, bad, voc)
    with pytest.raises(StsError, match="no such vocoder checkpoint"):
        load_vocoder(tmp_path / "none.safetensors")
    sep = registry.build("vox-tasnet-unittest")
    p = save_checkpoint(tmp_path / "sep.safetensors", sep, model_name="vox-tasnet-unittest",
                        config=registry.get("vox-tasnet-unittest").config())
    with pytest.raises(StsError, match="not the harmonic-plus-noise vocoder"):
        load_vocoder(p)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(StsError, match="cannot load a vocoder"):
        load_vocoder(junk)

"""Separator training (schedule, validation, best weights, early stop, resume after a kill) and
chunked inference / evaluation, with a tiny stand-in separator (a learnable STFT mask)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn

from models.checkpoint import load_state, read_header
from models.errors import AudioError, CheckpointError, ModelsError
from models.separation import infer
from models.separation.data import SeparationData
from models.separation.metrics import si_sdr
from models.separation.train import (
    PRESET_TRAINING,
    SeparationTrainConfig,
    SeparationTrainer,
    train_separator,
)

SR = 8000
VOCAL_BAND = (600.0, 1600.0)
ACC_BANDS = ((100.0, 400.0), (2500.0, 3500.0))


pytestmark = pytest.mark.usefixtures("one_thread")


class TinySeparator(nn.Module):
    """The separator contract in miniature: a learnable per-channel, per-bin sigmoid mask on an
    STFT; vocals = mask x mixture, accompaniment = the rest."""

    def __init__(self, sample_rate: int = SR, channels: int = 1, n_fft: int = 256,
                 hop: int = 64) -> None:
        super().__init__()
        self.config = {"sample_rate": sample_rate, "channels": channels, "n_fft": n_fft,
                       "hop": hop}
        self.sample_rate, self.channels, self.k = sample_rate, channels, 1
        self.n_fft, self.hop = n_fft, hop
        self.logits = nn.Parameter(torch.zeros(channels, n_fft // 2 + 1))
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def _stft(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T) -> (B, C, F, N)
        b, c, t = x.shape
        s = torch.stft(x.reshape(b * c, t), self.n_fft, self.hop, window=self.window,
                       return_complex=True)
        return s.reshape(b, c, *s.shape[-2:])

    def forward(self, mix: torch.Tensor) -> torch.Tensor:  # (B, C, T) -> (B, 2, C, T)
        b, c, t = mix.shape
        spec = self._stft(mix) * torch.sigmoid(self.logits)[None, :, :, None]
        voc = torch.istft(spec.reshape(b * c, *spec.shape[-2:]), self.n_fft, self.hop,
                          window=self.window, length=t).reshape(b, c, t)
        return torch.stack([voc, mix - voc], dim=1)

    def loss(self, mix, vocals, accompaniment):  # type: ignore[no-untyped-def]
        m = torch.sigmoid(self.logits)[None, :, :, None]
        y = self._stft(mix).abs()
        est_v, est_a = m * y, (1 - m) * y
        l1 = ((est_v - self._stft(vocals).abs()).abs().mean()
              + (est_a - self._stft(accompaniment).abs()).abs().mean())
        lc = (est_v + est_a - y).abs().mean()
        return l1 + lc, {"l1": float(l1.detach()), "conservation": float(lc.detach())}


def _band_noise(rng: np.random.Generator, n: int, bands, amp: float) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SR)
    keep = np.zeros_like(f, dtype=bool)
    for lo, hi in bands:
        keep |= (f >= lo) & (f <= hi)
    x = np.fft.irfft(spec * keep, n)
    return (amp * x / np.abs(x).max()).astype(np.float32)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """5 training and 2 test tracks of 2 s at 8 kHz: band-noise vocals (600-1600 Hz) over a
    band-noise accompaniment (100-400 and 2500-3500 Hz)."""
    root = tmp_path_factory.mktemp("sep_train")
    rng = np.random.default_rng(0)
    for subset, names in (("train", [f"t{i}" for i in range(5)]), ("test", ["x0", "x1"])):
        for name in names:
            d = root / "musdb" / subset / name
            d.mkdir(parents=True)
            v = _band_noise(rng, 2 * SR, [VOCAL_BAND], 0.4)
            a = _band_noise(rng, 2 * SR, ACC_BANDS, 0.4)
            for stem, x in (("vocals", v), ("accompaniment", a), ("mixture", v + a)):
                sf.write(d / f"{stem}.wav", x, SR, subtype="FLOAT")
    return root


CFG = SeparationTrainConfig(steps=40, batch=4, chunk_seconds=0.5, lr=0.1, decay_every=20,
                            val_every=20, val_seconds=1.0, ckpt_every=10, log_every=5)


def _band_bins(model: TinySeparator, bands) -> np.ndarray:
    f = np.fft.rfftfreq(model.n_fft, 1 / SR)
    keep = np.zeros_like(f, dtype=bool)
    for lo, hi in bands:
        keep |= (f >= lo + 100) & (f <= hi - 100)
    return keep


def test_config_validates_and_scales_the_paper_schedule_to_steps():
    cfg = SeparationTrainConfig()
    assert cfg.decay_every == SeparationTrainConfig.steps_for_hours(30, cfg.batch,
                                                                    cfg.chunk_seconds) == 4500
    assert cfg.val_every == SeparationTrainConfig.steps_for_hours(2, 8, 3.0) == 300
    assert (cfg.lr, cfg.lr_decay, cfg.patience) == (1e-3, 0.87, 20)
    assert cfg.lr_at(4499) == 1e-3 and cfg.lr_at(9000) == pytest.approx(1e-3 * 0.87**2)
    with pytest.raises(ModelsError) as exc:
        SeparationTrainConfig(batch=0, select_by="sisdr", scale_low=1.2)
    msg = str(exc.value)
    assert "batch=0" in msg and "select_by='sisdr'" in msg and "scale_low=1.2" in msg
    with pytest.raises(ModelsError, match="val_sdr=False"):
        SeparationTrainConfig(val_sdr=False)  # the default selection needs the SDR
    # every registered separator preset with a training budget is a valid config
    from models import registry

    assert PRESET_TRAINING and set(PRESET_TRAINING) <= set(registry.names())
    assert all(isinstance(c, SeparationTrainConfig) for c in PRESET_TRAINING.values())


def test_training_learns_the_mask_and_writes_checkpoints_logs_and_plot(corpus, tmp_path):
    torch.manual_seed(0)
    model = TinySeparator()
    data = SeparationData(corpus, SR, 1)
    assert len(data.val_names) == 1
    before = SeparationTrainer(model, "tiny", data, tmp_path / "x", CFG, False).validate(
        data.validation(CFG.val_seconds))
    out = tmp_path / "run"
    path = train_separator(model, "tiny", corpus, out, CFG, show_progress=False)
    assert path == out / "model.safetensors"
    h = read_header(path)
    prog = h.extra["progress"]
    assert prog["step"] == 40 and prog["validations"] == 2 and prog["stopped"] == "steps"
    assert h.extra["data"] == str(corpus / "musdb") and h.extra["val_tracks"] == data.val_names
    best = h.extra["best_val"]
    assert best["sdr_vocals"] > before["sdr_vocals"] + 5, (before, best)
    assert best["loss"] < 0.7 * before["loss"]
    assert h.extra["train_config"]["lr"] == 0.1 and h.history[-1]["steps"] == 40
    mask = torch.sigmoid(model.logits).detach().numpy()[0]
    assert mask[_band_bins(model, [VOCAL_BAND])].mean() > 0.9
    assert mask[_band_bins(model, ACC_BANDS)].mean() < 0.1
    records = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    train = [r for r in records if r["split"] == "train"]
    assert [r["step"] for r in train] == list(range(5, 41, 5))
    assert [r["lr"] for r in train] == [CFG.lr_at(r["step"] - 1) for r in train]
    assert {"l1", "conservation"} <= set(train[0])
    assert [r["step"] for r in records if r["split"] == "val"] == [20, 40]
    assert (out / "loss.png").stat().st_size > 1000
    assert (out / "last.safetensors").exists() and (out / "train_state.pt").exists()
    # an existing run is refused without resume, and a finished one is not retrained
    with pytest.raises(CheckpointError, match="exists"):
        train_separator(TinySeparator(), "tiny", corpus, out, CFG, resume=False)
    train_separator(TinySeparator(), "tiny", corpus, out, CFG, show_progress=False)
    assert read_header(out / "last.safetensors").extra["progress"]["step"] == 40
    with pytest.raises(CheckpointError, match="differs"):
        train_separator(TinySeparator(n_fft=128), "tiny", corpus, out, CFG)


def test_a_killed_run_resumes_to_the_uninterrupted_result(corpus, tmp_path, monkeypatch):
    cfg = replace(CFG, steps=30, val_every=15, ckpt_every=5, select_by="loss", val_sdr=False)
    torch.manual_seed(0)
    train_separator(TinySeparator(), "tiny", corpus, tmp_path / "a", cfg, show_progress=False)

    calls = {"n": 0}
    real = SeparationData.sample

    def dying(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 23:  # step 23 of 30; the last checkpoint is at step 20
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(SeparationData, "sample", dying)
    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt):
        train_separator(TinySeparator(), "tiny", corpus, tmp_path / "b", cfg,
                        show_progress=False)
    assert read_header(tmp_path / "b" / "last.safetensors").extra["progress"]["step"] == 20
    monkeypatch.setattr(SeparationData, "sample", real)
    model = TinySeparator()
    torch.manual_seed(123)  # resume must not depend on the caller's RNG
    train_separator(model, "tiny", corpus, tmp_path / "b", cfg, show_progress=False)
    for name in ("model.safetensors", "last.safetensors"):
        _, sa = load_state(tmp_path / "a" / name)
        _, sb = load_state(tmp_path / "b" / name)
        torch.testing.assert_close(sa["logits"], sb["logits"], atol=1e-6, rtol=0)
    logs = [[(r["split"], r["step"], round(r["loss"], 5)) for r in map(
        json.loads, (tmp_path / d / "train_log.jsonl").read_text().splitlines())]
        for d in ("a", "b")]
    assert logs[0] == logs[1]  # no step logged twice, same losses


def test_early_stop_keeps_the_best_validation_weights(corpus, tmp_path, monkeypatch):
    losses = iter([5.0, 3.0, 4.0, 3.5, 3.2, 1.0])
    seen: list[np.ndarray] = []

    def scripted(self, excerpts):  # type: ignore[no-untyped-def]
        seen.append(self.model.logits.detach().clone().numpy())
        return {"loss": next(losses), "sdr_vocals": 0.0, "sdr_accompaniment": 0.0}

    monkeypatch.setattr(SeparationTrainer, "validate", scripted)
    cfg = replace(CFG, steps=100, val_every=3, patience=3, select_by="loss", log_every=3)
    out = tmp_path / "es"
    train_separator(TinySeparator(), "tiny", corpus, out, cfg, show_progress=False)
    last = read_header(out / "last.safetensors").extra["progress"]
    assert (last["step"], last["validations"], last["stopped"]) == (15, 5, "early")
    h, state = load_state(out / "model.safetensors")
    assert h.extra["best_val"]["step"] == 6 and h.extra["best_val"]["loss"] == 3.0
    assert h.extra["progress"]["stopped"] == "early"  # the header says how the run ended
    np.testing.assert_array_equal(state["logits"].numpy(), seen[1])
    assert not np.array_equal(seen[1], seen[-1])


class Gains(nn.Module):
    """A pointwise separator (vocals = 0.25 x mix): chunking must not change its output."""

    def __init__(self, sample_rate: int = SR, channels: int = 1) -> None:
        super().__init__()
        self.sample_rate, self.channels, self.k = sample_rate, channels, 1
        self.config = {"sample_rate": sample_rate, "channels": channels}
        self.g = nn.Parameter(torch.tensor(0.25))
        self.lengths: list[int] = []

    def forward(self, mix: torch.Tensor) -> torch.Tensor:  # (B, C, T) -> (B, 2, C, T)
        self.lengths.append(mix.shape[-1])
        return torch.stack([self.g * mix, (1 - self.g) * mix], dim=1)


@pytest.mark.parametrize("seconds", [0.3, 1.0, 1.0 + 1 / SR, 4.37])
@pytest.mark.parametrize("overlap", [0.0, 0.25])
def test_separate_long_is_exact_for_a_pointwise_model_at_any_length(seconds, overlap):
    model = Gains(channels=2)
    x = np.random.default_rng(0).standard_normal((2, round(seconds * SR))).astype(np.float32)
    seen: list[tuple[int, int]] = []
    y = infer.separate_long(model, x, 1.0, overlap, progress=lambda d, t: seen.append((d, t)))
    assert y.shape == (2, 2, x.shape[1]) and y.dtype == np.float32
    np.testing.assert_allclose(y[0], 0.25 * x, atol=1e-6)
    np.testing.assert_allclose(y[1], 0.75 * x, atol=1e-6)
    assert set(model.lengths) == {SR}  # every chunk is one chunk long, padded when short
    n = len(infer.chunk_starts(x.shape[1], SR, round(overlap * SR)))
    assert seen == [(i + 1, n) for i in range(n)]


def test_separate_long_memory_is_one_chunk_for_a_three_minute_song():
    model = Gains(sample_rate=44100, channels=2)
    song = np.zeros((2, 180 * 44100), np.float32)
    song[:, ::1000] = 1.0
    y = infer.separate_long(model, song, 6.0, 1.0, progress=False)
    assert max(model.lengths) == 6 * 44100 and len(model.lengths) == 36
    np.testing.assert_allclose(y[0, :, ::1000], 0.25, atol=1e-6)
    # channel counts are converted for the model and back
    mono = Gains(channels=1)
    y = infer.separate_long(mono, song[:, : SR], 0.5, 0.1, progress=False)
    assert y.shape == (2, 2, SR)
    with pytest.raises(AudioError, match="overlap"):
        infer.separate_long(mono, song[:, :SR], 0.5, 0.5)
    with pytest.raises(AudioError, match="NaN"):
        infer.separate_long(mono, np.full((1, 10), np.nan, np.float32), 0.5, 0.1)


def test_crossfaded_chunks_match_one_pass_of_an_stft_model(corpus):
    model = TinySeparator()
    with torch.no_grad():
        model.logits.copy_(torch.linspace(-4, 4, model.logits.shape[1]))
    mix, _ = sf.read(corpus / "musdb" / "test" / "x0" / "mixture.wav", dtype="float32")
    whole = model(torch.from_numpy(mix)[None, None]).detach().numpy()[0]
    chunked = infer.separate_long(model, mix[None], 0.5, 0.1, progress=False)
    assert si_sdr(whole[0], chunked[0]) > 30  # dB: the seams are inaudible
    assert si_sdr(whole[1], chunked[1]) > 30


def test_evaluate_reports_per_track_and_median_scores(corpus, tmp_path):
    import shutil

    only_test = tmp_path / "musdb" / "test"  # evaluating the test folder needs no train folder
    shutil.copytree(corpus / "musdb" / "test", only_test)
    model = TinySeparator()
    with torch.no_grad():  # the ideal band mask
        model.logits.fill_(-12.0)
        model.logits[0, _band_bins(model, [(VOCAL_BAND[0] - 60, VOCAL_BAND[1] + 60)])] = 12.0
    calls = []
    model.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[-1]))
    res = infer.evaluate(model, tmp_path, "test", max_seconds=1.0, chunk_seconds=0.5,
                         overlap_seconds=0.1, show_progress=False)
    assert sorted(res["tracks"]) == ["x0", "x1"] and res["split"] == "test"
    assert len(calls) == 2 * len(infer.chunk_starts(SR, SR // 2, SR // 10))  # first second
    for src in ("vocals", "accompaniment"):
        per = [res["tracks"][t][src] for t in ("x0", "x1")]
        assert res["median"][src]["sdr"] == pytest.approx(np.median([p["sdr"] for p in per]))
        assert res["median"][src]["sdr"] > 10 and res["median"][src]["sdri"] > 10
        assert res["median"][src]["sir"] > 10
        assert {"sdr", "sir", "sar", "isr", "si_sdr", "sdri", "si_sdri"} <= set(per[0])
    assert np.isfinite(res["average"])


def test_the_cws_separator_trains_through_the_trainer_and_reloads(corpus, tmp_path):
    from models.checkpoint import load_into
    from models.separation.separator import Separator

    torch.manual_seed(0)
    model = Separator(arch="mdensenet", k=4, channels=1, sample_rate=SR, width=0.125)
    data = SeparationData(corpus, SR, 1)
    cfg = replace(CFG, steps=12, batch=2, lr=3e-3, val_every=6, ckpt_every=6, log_every=3)
    before = SeparationTrainer(model, "cws-test", data, tmp_path / "x", cfg, False).validate(
        data.validation(cfg.val_seconds))
    path = train_separator(model, "cws-test", corpus, tmp_path / "cws", cfg,
                           show_progress=False)
    h, state = load_state(path)
    assert h.config == model.config and h.extra["progress"]["step"] == 12
    best = h.extra["best_val"]
    assert np.isfinite(best["sdr_vocals"]) and best["loss"] < before["loss"], (before, best)
    again = Separator(**h.config)
    load_into(again, state)
    again.eval()
    mix = torch.from_numpy(data.validation(1.0)[0].mixture)[None]
    with torch.no_grad():
        torch.testing.assert_close(again(mix), model(mix), atol=1e-6, rtol=0)

"""benchmarks/sts_sing.py on an untrained sts-unittest checkpoint: espeak-ng speech and seeded
MIDI melodies through both renderings, the JSON and the printed summary."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import soundfile as sf

from models import registry
from models.checkpoint import save_checkpoint

ROOT = Path(__file__).resolve().parents[2]




@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is installed by make")
def test_both_renderings_are_scored_and_the_vocoder_follows_the_melody(tmp_path, capsys,
                                                                        one_thread, load_benchmark):
    model = registry.build("sts-unittest")
    ckpt = save_checkpoint(tmp_path / "m.safetensors", model, model_name="sts-unittest",
                           config=model.config)
    out = tmp_path / "sing.json"
    keep = tmp_path / "keep"
    bench = load_benchmark("sts_sing")
    assert bench.main(["--model", str(ckpt), "--json", str(out), "--voices", "en,en+f3",
                       "--sentences", "1", "--gl-iters", "4", "--keep", str(keep)]) == 0
    res = json.loads(out.read_text())
    assert set(res["renders"]) == {"griffin-lim", "vocoder"} and res["vocoder"] == "dsp"
    assert len(res["items"]) == 2
    for item in res["items"]:
        assert set(item["rca"]) == {"griffin-lim", "vocoder"}
        assert item["stretch_factor"] > 0 and item["sung_seconds"] > 1.0
    # an untrained network draws no melody; the vocoder takes the pitch from the MIDI notes
    voc = res["renders"]["vocoder"]
    # (measured: vocoder 0.76, Griffin-Lim 0.02 with this untrained network)
    assert voc["rca_mean"] >= 0.6, res["renders"]
    assert res["renders"]["griffin-lim"]["rca_mean"] < voc["rca_mean"] - 0.3
    wavs = sorted(keep.glob("*_sung_*.wav"))
    assert len(wavs) == 4 and all(sf.info(w).samplerate == 16000 for w in wavs)
    printed = capsys.readouterr().out
    assert "vocoder      2 items (2 voices x 1 sentences x 1): RCA" in printed

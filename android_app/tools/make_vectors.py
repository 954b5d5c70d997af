"""Write the test vectors the app's Java core is checked against (``make app-test``).

Every expected value is computed here by the project's Python code, so the Java tests hold the
app to what the desktop does:

* ``chunk/``: ``compress.svc_adapter.ChunkedSVC.convert_long`` of known signals through a
  deterministic stand-in graph (:func:`stand_in`, re-implemented in the Java test), for chunk
  lengths, rates and fades that exercise every branch (one call, quarter overlaps, lead 0, odd
  chunks, the demo program's 1 s chunk at 16 kHz);
* ``wav/``: WAV files written by libsndfile (PCM 8/16/24/32, float, double, extensible, stereo,
  a truncated one, a FLAC the app must refuse) and what ``models.audio.load_audio`` reads from
  them: all channels, the mono mix, and the mix resampled to 16 kHz (soxr); plus floats and the
  PCM_16 file ``models.audio.write_wav`` made of them;
* ``metadata/``: ``get_metadata_json`` texts as ``export.metadata`` builds them (a pipeline with
  singer names and F0 medians, one without names, a separator, a dynamic-length program);
* ``timing/``: latency series with ``device_bench.stats.summarize`` / ``replication_spread`` /
  ``real_time_factor`` results, and repeats with the metrics ``device_bench.result.build_result``
  aggregates from them;
* ``pitch/``: ``models.lhq_svc.pitch.choose_shift`` cases and sung-like tones with their DIO
  median F0 (``models.lhq_svc.pitch.source_median_f0``);
* ``inputs/``: a raw input file written by ``device_bench.protocol.write_input_file``.

Arrays are raw little-endian float32 (``.f32``); each folder has a ``manifest.json``. Nothing
here is committed: the vectors are generated before each Java test run (about 0.2 MB).

Usage: ``.venv/bin/python android_app/tools/make_vectors.py OUT_DIR`` (the project's venv,
where the packages are installed).
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np


def f32(path: Path, array: Any) -> str:
    a = np.ascontiguousarray(np.asarray(array, dtype="<f4"))
    path.write_bytes(a.tobytes())
    return path.name


def stand_in(audio: Any, speaker: Any, shift: Any) -> Any:
    """The deterministic "program" of the chunk vectors, in float32 (the Java test has the same):
    ``y[t] = (0.5·x[t] + 0.25·x[t-1]) + (0.001·speaker + 0.01·shift·t/T)`` with ``x[-1] = 0``,
    so every output depends on the position inside the chunk, as a real program's does."""
    import torch

    x = audio.reshape(-1).numpy().astype(np.float32)
    n = x.shape[0]
    prev = np.concatenate([np.zeros(1, np.float32), x[:-1]])
    pos = np.arange(n, dtype=np.float32) / np.float32(n)
    spk = np.float32(0.001) * np.float32(int(speaker.reshape(-1)[0]))
    sh = np.float32(0.01) * np.float32(float(shift.reshape(-1)[0]))
    y = (np.float32(0.5) * x + np.float32(0.25) * prev) + (spk + sh * pos)
    return torch.from_numpy(y.astype(np.float32)).reshape(1, n)


def signal(n: int, rate: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / rate
    x = 0.4 * np.sin(2 * np.pi * 3.1 * t * rate / 40) + 0.05 * rng.standard_normal(n)
    return x.astype(np.float32)


def chunk_vectors(out: Path) -> None:
    from compress.svc_adapter import ChunkedSVC

    out.mkdir(parents=True)
    cases = [
        # name, chunk, rate, fade seconds, total, speaker, shift
        ("quarter_overlap", 400, 8000, 0.01, 2345, 2, -3.0),
        ("one_call", 400, 8000, 0.01, 250, 0, 0.0),
        ("exactly_one_chunk", 400, 8000, 0.01, 400, 1, 1.0),
        ("lead_zero", 64, 1000, 0.05, 200, 3, 12.0),
        ("odd_chunk", 1001, 8000, 0.01, 5000, 1, 0.5),
        ("demo_program", 16000, 16000, 0.01, 40000, 1, 2.0),
    ]
    manifest = []
    for i, (name, chunk, rate, fade, total, spk, shift) in enumerate(cases):
        x = signal(total, rate, seed=i)
        calls: list[int] = []
        svc = ChunkedSVC(stand_in, chunk, ["a", "b", "c", "d"], rate, tag=name,
                         fade_seconds=fade)
        y = svc.convert_long(x, spk, shift, progress=lambda done, total, c=calls: c.append(done))
        manifest.append({
            "name": name, "chunk": chunk, "sample_rate": rate, "fade_seconds": fade,
            "speaker": spk, "shift": shift, "calls": len(calls),
            "input": f32(out / f"{name}.in.f32", x), "output": f32(out / f"{name}.out.f32", y),
        })
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))


def wav_vectors(out: Path) -> None:
    import soundfile as sf

    from models.audio import load_audio, write_wav

    out.mkdir(parents=True)
    files = [
        # name, rate, channels, subtype, format
        ("mono_pcm16_16k.wav", 16000, 1, "PCM_16", "WAV"),
        ("stereo_pcm16_44k.wav", 44100, 2, "PCM_16", "WAV"),
        ("stereo_float_48k.wav", 48000, 2, "FLOAT", "WAV"),
        ("mono_pcm24_22k.wav", 22050, 1, "PCM_24", "WAV"),
        ("mono_pcm32_8k.wav", 8000, 1, "PCM_32", "WAV"),
        ("mono_u8_8k.wav", 8000, 1, "PCM_U8", "WAV"),
        ("mono_double_16k.wav", 16000, 1, "DOUBLE", "WAV"),
        ("stereo_pcm16_ext_32k.wav", 32000, 2, "PCM_16", "WAVEX"),
    ]
    manifest: dict[str, Any] = {"files": [], "refused": []}
    for k, (name, rate, ch, subtype, fmt) in enumerate(files):
        n = int(0.35 * rate)
        t = np.arange(n) / rate
        freqs = [(220.0, 1000.0, 3000.0), (330.0, 1500.0, 5000.0)][:ch]
        data = np.stack([sum(0.2 * np.sin(2 * np.pi * f * t + k) for f in fs) for fs in freqs])
        data = data.astype(np.float32)  # (C, T)
        sf.write(out / name, data.T if ch > 1 else data[0], rate, subtype=subtype, format=fmt)
        raw, sr = load_audio(out / name, channels=None)
        mono, _ = load_audio(out / name, channels=1)
        at16, _ = load_audio(out / name, sample_rate=16000, channels=1)
        raw2 = raw.reshape(ch, -1)
        manifest["files"].append({
            "file": name, "sample_rate": sr, "channels": ch, "frames": raw2.shape[1],
            "all": f32(out / f"{name}.all.f32", raw2), "mono": f32(out / f"{name}.mono.f32", mono),
            "mono16k": f32(out / f"{name}.mono16k.f32", at16), "mono16k_frames": len(at16),
        })
    # a file cut off inside its data chunk: load_audio keeps the readable frames
    full = (out / "mono_pcm16_16k.wav").read_bytes()
    cut = out / "truncated_pcm16_16k.wav"
    cut.write_bytes(full[: 44 + 2 * 3001])
    audio_log = logging.getLogger("models.audio")
    level = audio_log.level
    audio_log.setLevel(logging.ERROR)  # the truncation warning is expected here
    try:
        tr, sr = load_audio(cut, channels=None)
    finally:
        audio_log.setLevel(level)
    manifest["files"].append({
        "file": cut.name, "sample_rate": sr, "channels": 1, "frames": len(tr),
        "all": f32(out / f"{cut.name}.all.f32", tr), "mono": f32(out / f"{cut.name}.mono.f32", tr),
        "mono16k": f32(out / f"{cut.name}.mono16k.f32", tr), "mono16k_frames": len(tr),
    })
    sf.write(out / "not_wav.flac", np.zeros(1600, np.float32) + 0.1, 16000, format="FLAC")
    manifest["refused"].append({"file": "not_wav.flac", "message": "not a RIFF/WAVE file"})
    (out / "empty.wav").write_bytes(b"")
    manifest["refused"].append({"file": "empty.wav", "message": "empty"})
    # what write_wav (PCM_16, clipped) makes of known floats, values beyond +-1 included
    src = np.concatenate([np.linspace(-1.2, 1.2, 997), [0.5 / 32767, 1.5 / 32767, -2.5 / 32767]])
    src = src.astype(np.float32)
    write_wav(out / "written_pcm16.wav", src, 16000, subtype="PCM_16")
    back, _ = load_audio(out / "written_pcm16.wav", channels=None, allow_silent=True)
    manifest["write"] = {"source": f32(out / "write_src.f32", src), "file": "written_pcm16.wav",
                         "read_back": f32(out / "written_pcm16.back.f32", back),
                         "sample_rate": 16000}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))


def metadata_vectors(out: Path) -> None:
    from export.metadata import build_metadata, constant_methods, speaker_metadata

    out.mkdir(parents=True)
    base = {"family": "lhq-svc", "component": "pipeline", "sample_rate": 16000,
            "hop_length": 128, "channels": 1, "chunk_seconds": 1.0, "n_mels": 80, "speakers": 4}
    singers = ["alto_anna", "bass_bo", "soprano \"sue\"", "tenor_tom"]
    stats = {s: {"median_hz": hz} for s, hz in zip(singers, [196.5, 110.0, 392.25, 246.9])}
    full = build_metadata({**base, **speaker_metadata(singers, stats)}, model_name="demo-student",
                          precision="int8", backend="xnnpack", input_frames=16000, dynamic=False)
    old = build_metadata(base, model_name="old-student", precision="fp32", backend="xnnpack",
                         input_frames=8000, dynamic=False)
    sep = build_metadata({"family": "separation", "component": "separator",
                          "sample_rate": 44100}, model_name="sep", precision="fp32",
                         backend="xnnpack", input_frames=44100, dynamic=False)
    dyn = build_metadata(base, model_name="dyn", precision="fp32", backend="xnnpack",
                         input_frames=16000, dynamic=True, max_frames=64000)
    cases = []
    for name, meta in (("pipeline", full), ("pipeline_no_names", old), ("separator", sep),
                       ("dynamic", dyn)):
        (out / f"{name}.json").write_text(constant_methods(meta)["get_metadata_json"])
        cases.append({"name": name, "file": f"{name}.json", "metadata": meta})
    expect = {
        "pipeline": {"sample_rate": 16000, "chunk_frames": 16000, "speaker_names": singers,
                     "speaker_f0_hz": [stats[s]["median_hz"] for s in singers],
                     "model_name": "demo-student", "precision": "int8"},
        "pipeline_no_names": {"sample_rate": 16000, "chunk_frames": 8000,
                              "speaker_names": ["0", "1", "2", "3"], "speaker_f0_hz": None,
                              "model_name": "old-student", "precision": "fp32"},
        "separator": {"error": "holds separation/separator, not a whole LHQ-SVC pipeline"},
        "dynamic": {"error": "dynamic-length program"},
    }
    (out / "manifest.json").write_text(json.dumps({"cases": cases, "expect": expect}, indent=1))


def timing_vectors(out: Path) -> None:
    from device_bench.result import build_result
    from device_bench.stats import real_time_factor, replication_spread, summarize

    out.mkdir(parents=True)
    rng = np.random.default_rng(7)
    series = {
        "one": [12.5],
        "two": [10.0, 30.0],
        "seven_with_ties": [5.0, 3.0, 5.0, 9.25, 3.0, 100.0, 4.5],
        "ten": [float(x) for x in rng.lognormal(3.0, 0.2, 10)],
        "twenty_one": [float(x) for x in rng.lognormal(2.0, 0.5, 21)],
        "hundred": [float(x) for x in rng.gamma(4.0, 2.5, 100)],
    }
    stats = []
    for name, xs in series.items():
        stats.append({"name": name, "latencies_ms": xs, "stats": summarize(xs).to_dict(),
                      "rtf_1s": real_time_factor(summarize(xs).p50, 1.0)})
    spreads = [{"values": v, "spread": replication_spread(v)}
               for v in ([10.0], [10.0, 10.4], [9.0, 10.0, 12.5], [3.3, 3.1, 3.2, 3.9])]
    repeats_in = [
        {"latencies_ms": [float(x) for x in rng.lognormal(3.0, 0.1, 20)], "load_ms": 41.5,
         "pss_kb": 52000, "peak_rss_kb": 61000},
        {"latencies_ms": [float(x) for x in rng.lognormal(3.2, 0.1, 20)], "load_ms": 38.25,
         "pss_kb": 53500, "peak_rss_kb": 60500},
        {"latencies_ms": [float(x) for x in rng.lognormal(3.0, 0.1, 20)], "load_ms": 40.0,
         "pss_kb": None, "peak_rss_kb": 60000},
    ]
    records = [{"index": i, "latencies_ms": r["latencies_ms"],
                "stats": summarize(r["latencies_ms"]).to_dict(), "load_ms": r["load_ms"],
                "pss_kb": r["pss_kb"], "peak_rss_kb": r["peak_rss_kb"]}
               for i, r in enumerate(repeats_in)]
    config = {"threads": 4, "warmup": 3, "iterations": 20, "repeats": 3, "audio_seconds": 1.0}
    res = build_result(target="app:TEST", device={}, model={}, config=config, repeats=records)
    aggregate = {"repeats": repeats_in, "audio_seconds": 1.0, "threads": 4,
                 "metrics": res.metrics, "replication": res.replication, "flags": res.flags}
    (out / "manifest.json").write_text(json.dumps(
        {"series": stats, "spreads": spreads, "aggregate": aggregate}, indent=1))


def pitch_vectors(out: Path) -> None:
    from models.lhq_svc.pitch import choose_shift, source_median_f0

    out.mkdir(parents=True)
    rng = np.random.default_rng(3)
    shifts = []
    for src, tgt in [(220.0, 440.0), (440.0, 220.0), (100.0, 100.0), (50.0, 1000.0),
                     (1000.0, 50.0), (196.0, 246.94), (300.0, 200.0)]:
        shifts.append({"source_hz": src, "target_hz": tgt, "shift": choose_shift(src, tgt)})
    for _ in range(40):
        src, tgt = rng.uniform(60, 900, 2)
        shifts.append({"source_hz": float(src), "target_hz": float(tgt),
                       "shift": choose_shift(float(src), float(tgt))})
    tones = []
    rate = 16000
    for f0 in (110.0, 196.0, 330.0, 523.25):
        n = int(1.5 * rate)
        t = np.arange(n) / rate
        f = f0 * (1 + 0.015 * np.sin(2 * np.pi * 5.5 * t))
        phase = 2 * np.pi * np.cumsum(f) / rate
        x = sum(0.3 / k * np.sin(k * phase) for k in range(1, 6))
        x = x + 0.005 * rng.standard_normal(n)
        x[: rate // 5] = 0.0  # a silent lead-in
        x = x.astype(np.float32)
        name = f"tone_{int(f0)}.f32"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dio = source_median_f0(x, rate, 128, name)
        tones.append({"file": f32(out / name, x), "sample_rate": rate, "f0_hz": f0,
                      "dio_median_hz": dio})
    (out / "manifest.json").write_text(json.dumps({"shifts": shifts, "tones": tones}, indent=1))


def input_vectors(out: Path) -> None:
    import torch

    from device_bench.protocol import write_input_file

    out.mkdir(parents=True)
    audio = torch.linspace(-1, 1, 64, dtype=torch.float32).reshape(1, 64)
    speaker = torch.tensor([3], dtype=torch.long)
    shift = torch.tensor([-2.5], dtype=torch.float32)
    write_input_file([audio, speaker, shift], out / "svc_inputs.raw")
    (out / "manifest.json").write_text(json.dumps({
        "file": "svc_inputs.raw", "chunk_frames": 64, "audio": audio.reshape(-1).tolist(),
        "speaker": 3, "shift": -2.5}, indent=1))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: make_vectors.py OUT_DIR", file=sys.stderr)
        return 2
    out = Path(args[0])
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    chunk_vectors(out / "chunk")
    wav_vectors(out / "wav")
    metadata_vectors(out / "metadata")
    timing_vectors(out / "timing")
    pitch_vectors(out / "pitch")
    input_vectors(out / "inputs")
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"vectors: {out} ({size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""compress.report: report.json / report.html from a realistic run summary."""

from __future__ import annotations

import base64
import copy
import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from compress.errors import CompressError
from compress.evolve import Candidate
from compress.report import AUDIO_DIR, pareto_front, pareto_points, validate, write_report
from models.audio import write_wav


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def _tags(page: str) -> list[tuple[str, dict[str, str | None]]]:
    p = _Tags()
    p.feed(page)
    return p.tags


def _wav(path: Path, freq: float, seconds: float = 0.25, sr: int = 16000) -> Path:
    t = np.arange(int(seconds * sr)) / sr
    write_wav(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), sr)
    return path


def realistic(tmp_path: Path) -> dict[str, Any]:
    src = tmp_path / "inputs"
    src.mkdir()
    def cand(arch: list[str], score: float, lat: float, action: str = "start",
             unit: str = "", rnd: int = 0) -> Candidate:
        return Candidate(rnd, action, unit, unit.rstrip("0123456789"), "decoder", score, 0.01,
                         lat, {"decoder": arch})

    evaluated = [
        cand(["res", "res", "xattn", "res"], 0.82, 40.0),
        cand(["res", "xattn", "res"], 0.80, 31.0, "remove", "res0", 1),
        cand(["res", "res", "res"], 0.70, 29.0, "remove", "xattn2", 1),
        cand(["res", "res", "xattn"], 0.79, 30.5, "remove", "res3", 1),
        cand(["xattn", "res"], 0.74, 21.0, "remove", "res0", 2),
        cand(["res", "xattn"], 0.77, 22.0, "remove", "res2", 2),
        cand(["res", "xattn", "xattn"], 0.78, 27.0, "duplicate", "xattn1", 3),
    ]
    pte = tmp_path / "run" / "08_export"
    pte.mkdir(parents=True)
    (pte / "decoder_int8.pte").write_bytes(b"\0" * 2048)
    return {
        "teacher": {"params": 1_234_567, "size_mb": 4.94, "latency_ms_per_audio_s": 812.5,
                    "rtf": 0.8125, "scores": {"speaker_similarity": 0.82, "stoi": 0.71},
                    "steps": 50},
        "student": {"params": np.int64(301_222), "size_mb": 0.31,
                    "latency_ms_per_audio_s": np.float32(33.1), "rtf": 0.0331,
                    "scores": {"speaker_similarity": 0.77, "stoi": 0.69}, "steps": 1},
        "budget_ms": 25.0,
        "budget_met": True,
        "speedup_breakdown": {"steps": 9.0, "runtime": 1.2, "precision": 1.5,
                              "architecture": 1.5123},
        "searched_latency_fraction": 0.86,
        "score_noise": {"speaker_similarity": 0.004, "stoi": 0.01},
        "verdict": "24.5x faster; budget met.",
        "target": "host:threads=1",
        "speedup": 24.5,
        "quality_retention": 0.939,
        "evolution": [
            {"round": 1, "action": "remove", "unit": "decoder.blocks.0", "kind": "res",
             "value": 0.0022, "score": 0.80, "latency_ms": 31.0,
             "architecture": {"decoder": ["res", "xattn", "res"]}},
            {"round": 2, "action": "narrow", "unit": "vocoder.width", "kind": "width",
             "value": 0.0033, "score": 0.77, "latency_ms": 22.0,
             "architecture": {"decoder": ["res", "xattn"]}},
            {"round": 3, "action": "duplicate", "unit": "<script>alert(1)</script>",
             "kind": "xattn", "value": float("nan"), "score": 0.78, "latency_ms": 27.0,
             "architecture": {"decoder": ["res", "xattn", "xattn"]}},
        ],
        "latency_table": {
            "prediction_error_pct": -3.2,
            "validation": [
                {"name": "teacher", "predicted_ms": 41.0, "measured_ms": 40.1, "error_pct": 2.2},
                {"name": "student", "predicted_ms": 21.3, "measured_ms": 22.0,
                 "error_pct": -3.2},
            ],
        },
        "artifacts": {"decoder_int8": "08_export/decoder_int8.pte"},
        "stages": [{"name": n, "status": "done", "seconds": s} for n, s in
                   [("data", 3.1), ("teacher", 120.0), ("robust", 44.2), ("latency", 30.5),
                    ("evolve", 90.0), ("distill", 60.2), ("quantize", 20.0),
                    ("export", 15.1), ("bench", 12.3)]],
        "pareto": pareto_points(evaluated, {"decoder": ["res", "xattn"]}),
        "quant_sensitivity": [
            {"layer": "decoder.in_proj", "score_drop": 0.001, "kept_fp32": False},
            {"layer": "decoder.blocks.1.attn", "score_drop": 0.031, "kept_fp32": True},
            {"layer": "decoder.out_proj", "score_drop": 0.004, "kept_fp32": False},
        ],
        "distill": [{"stage": 0, "from_steps": 8, "to_steps": 4, "loss_start": 0.2,
                     "loss_end": 0.01}],
        "distill_guard": {"teacher_steps": 8, "kept": "undistilled", "reason":
                          "distillation lowered val sim_stoi 0.78 -> 0.74"},
        "curves": {"teacher loss": [1.0, 0.5, 0.3, 0.2], "robust loss": [[0, 0.4], [10, 0.3]]},
        "audio": [
            {"name": "clip A", "source": _wav(src / "a_src.wav", 220),
             "teacher": _wav(src / "a_t.wav", 330), "student": _wav(src / "a_s.wav", 440)},
            {"name": "clip/B", "source": _wav(src / "b_src.wav", 250),
             "teacher": _wav(src / "b_t.wav", 350), "student": _wav(src / "b_s.wav", 450)},
        ],
        "commands": {"student latency": "compress bench RUN/08_export/decoder_int8.pte"},
        "notes": ["Measured side by side in the same run & on the same host."],
    }


def test_write_report(tmp_path: Path) -> None:
    run = tmp_path / "run"
    data = realistic(tmp_path)
    jpath, hpath = write_report(run, data)
    assert jpath == run / "report.json" and hpath == run / "report.html"

    rep = json.loads(jpath.read_text())
    for k in ("teacher", "student", "budget_ms", "target", "speedup", "quality_retention",
              "evolution", "latency_table", "artifacts", "stages", "pareto",
              "quant_sensitivity"):
        assert k in rep, k
    for side in ("teacher", "student"):
        assert set(rep[side]) >= {"params", "size_mb", "latency_ms_per_audio_s", "rtf", "scores"}
    assert rep["student"]["params"] == 301_222
    assert rep["student"]["latency_ms_per_audio_s"] == pytest.approx(33.1, rel=1e-6)
    assert rep["latency_table"]["prediction_error_pct"] == -3.2
    assert [e["action"] for e in rep["evolution"]] == ["remove", "narrow", "duplicate"]
    assert rep["budget_met"] is True and rep["searched_latency_fraction"] == 0.86
    assert rep["evolution"][2]["value"] is None  # NaN is written as null (strict JSON)
    assert sum(p["chosen"] for p in rep["pareto"]) == 1 and len(rep["pareto"]) == 7
    assert rep["artifacts"] == {"decoder_int8": "08_export/decoder_int8.pte"}
    assert len(rep["audio"]) == 2
    for clip in rep["audio"]:
        for role in ("source", "teacher", "student"):
            assert clip[role].startswith(AUDIO_DIR + "/") and (run / clip[role]).is_file()

    page = hpath.read_text()
    for sid in ("breakdown", "stages", "comparison", "evolution", "pareto", "latency",
                "quantization", "distill", "curves", "audio", "artifacts"):
        assert f'<section id="{sid}">' in page, sid
    assert "24.5x faster; budget met." in page  # the verdict is stated
    distill = page.split('id="distill"')[1].split("</section>")[0]
    assert "<b>undistilled</b>" in distill and "0.78 -&gt; 0.74" in distill
    # the breakdown's product is shown next to its factors: 9 x 1.2 x 1.5 x 1.5123
    assert "24.5" in page.split('id="breakdown"')[1].split("</section>")[0]
    tags = _tags(page)
    imgs = [a["src"] for t, a in tags if t == "img"]
    assert len(imgs) == 4  # pareto, latency validation, quant sensitivity, curves
    for src in imgs:
        assert src is not None and src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    audios = [a["src"] for t, a in tags if t == "audio"]
    assert len(audios) == 6
    for src in audios:
        assert src is not None and (run / src).is_file()
    assert not any(t == "script" for t, _ in tags)  # the hostile block name is escaped
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "side by side in the same run &amp; on the same host" in page
    assert "<link" not in page and "http://" not in page and "https://" not in page


def test_short_clips_can_be_embedded(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _, hpath = write_report(run, realistic(tmp_path), embed_audio_max_bytes=1_000_000)
    srcs = [a["src"] for t, a in _tags(hpath.read_text()) if t == "audio"]
    assert len(srcs) == 6
    assert all(s is not None and s.startswith("data:audio/wav;base64,UklGR") for s in srcs)


def test_missing_and_mistyped_keys_are_all_listed(tmp_path: Path) -> None:
    data = realistic(tmp_path)
    bad = copy.deepcopy({k: v for k, v in data.items() if k != "audio"})
    del bad["budget_ms"]
    del bad["budget_met"]
    del bad["latency_table"]
    del bad["teacher"]["rtf"]
    del bad["stages"][0]["seconds"]
    bad["evolution"][0]["value"] = "high"
    with pytest.raises(CompressError) as exc:
        write_report(tmp_path / "bad", bad)
    msg = str(exc.value)
    for key in ("budget_ms", "budget_met", "latency_table", "teacher.rtf", "stages[0].seconds",
                "evolution[0].value"):
        assert key in msg, key
    assert not (tmp_path / "bad" / "report.json").exists()
    with pytest.raises(CompressError, match="expected a dict"):
        validate([1, 2])  # type: ignore[arg-type]


def test_missing_audio_file_raises(tmp_path: Path) -> None:
    data = realistic(tmp_path)
    data["audio"][0]["student"] = tmp_path / "nope.wav"
    with pytest.raises(CompressError, match=r"audio\[0\]\.student: no such file"):
        write_report(tmp_path / "run", data)


def test_pareto_front() -> None:
    pts = [(10.0, 0.5), (20.0, 0.7), (15.0, 0.4), (30.0, 0.69), (5.0, 0.1)]
    assert pareto_front(pts) == [4, 0, 1]


def test_sensitivity_rows_show_the_all_groups_measurement_when_rows_were_skipped() -> None:
    from compress.report_data import _sensitivity_rows
    from compress.results import QuantizeResult

    skipped = QuantizeResult(True, [], {"sqnr_db_all": 25.5, "score_drop_all": 0.001}, ["f0"])
    assert _sensitivity_rows(skipped) == [
        {"layer": "(all)", "score_drop": 0.001, "sqnr_db": 25.5, "kept_fp32": False}]
    rows = [{"layer": "content", "score_drop": 0.0, "sqnr_db": 30.0},
            {"layer": "decoder.blocks.0", "score_drop": 0.03, "sqnr_db": 22.0}]
    measured = QuantizeResult(True, rows, {"sqnr_db_all": 21.0}, ["decoder.blocks.0"])
    assert [(r["layer"], r["kept_fp32"]) for r in _sensitivity_rows(measured)] == [
        ("content", False), ("decoder.blocks.0", True)]
    assert _sensitivity_rows(QuantizeResult(False)) == []


def test_student_operator_profile_is_in_json_and_html(tmp_path: Path) -> None:
    from device_bench.etdump import OperatorProfile, OperatorRow

    ms = [4.0, 2.0, 1.0] + [0.1] * 27  # 30 operators: the page shows 25 and sums the rest
    rows = [OperatorRow(f"op{i} <b>" if i == 0 else f"op{i}", "delegate" if i % 2 else "kernel",
                        float(i + 1), m, m / sum(ms)) for i, m in enumerate(ms)]
    prof = OperatorProfile(rows, 20, sum(ms), 9.9, 10.2, 10.0, "bench/profile/raw/s.r0.etdp")
    data = realistic(tmp_path)
    data["operator_profile"] = {"host": prof.to_dict(), "adb:X1": {"error": "no runner"}}
    jpath, hpath = write_report(tmp_path / "run", data)

    rep = json.loads(jpath.read_text())["operator_profile"]
    assert rep["host"]["rows"][0] == {"name": "op0 <b>", "kind": "kernel", "calls": 1.0,
                                      "total_ms": 4.0, "share": pytest.approx(4.0 / 9.7)}
    assert rep["host"]["within"] is True and rep["adb:X1"] == {"error": "no runner"}
    assert OperatorProfile.from_dict(rep["host"]) == prof

    page = hpath.read_text()
    sec = page.split('<section id="profile">')[1].split("</section>")[0]
    assert "op0 &lt;b&gt;" in sec and "op24" in sec and "op25" not in sec
    assert "(5 more operators)" in sec
    assert "operators total 9.700 ms per forward" in sec and "within 15 %" in sec
    assert "No profile: no runner" in sec


def test_score_deltas_count_a_difference_within_the_paired_noise_as_zero(tmp_path: Path) -> None:
    from compress.report_data import score_deltas

    def res(items: list[float]) -> dict[str, Any]:
        a = np.asarray(items)
        return {"value": float(a.mean()), "noise": float(a.std(ddof=1) / np.sqrt(a.size)),
                "items": items}

    teacher = {"stoi": res([0.70, 0.60, 0.80, 0.75]), "crepe_chroma": res([0.9, 0.9, 0.9, 0.9]),
               "only_teacher": res([1.0, 2.0])}
    student = {"stoi": res([0.71, 0.59, 0.81, 0.74]),  # +0.01/-0.01 per item: within noise
               "crepe_chroma": res([0.7, 0.72, 0.69, 0.71])}  # a clear drop
    d = score_deltas(teacher, student)
    assert set(d) == {"stoi", "crepe_chroma"}
    assert d["stoi"]["delta"] == pytest.approx(0.0) and d["stoi"]["delta_counted"] == 0.0
    assert d["stoi"]["paired_noise"] == pytest.approx(np.std([.01, -.01, .01, -.01], ddof=1) / 2)
    c = d["crepe_chroma"]
    assert c["delta"] == pytest.approx(-0.195) and c["delta_counted"] == c["delta"]
    assert c["paired_noise"] < 0.01 and c["items"] == 4
    # the parts and the iso-quality baseline are shown on the page
    data = realistic(tmp_path)
    data["score_parts"] = {"pitch": {"score": "crepe_chroma", "weight": 1.0, **c}}
    data["iso_quality"] = {"steps": 2, "temperature": 0.5, "score": 0.78, "reference": 0.8,
                           "kept_fraction": 0.975, "tried": [
                               {"steps": 1, "temperature": 0.0, "score": 0.70,
                                "paired_noise": 0.01, "kept_fraction": 0.875, "keeps": False},
                               {"steps": 2, "temperature": 0.5, "score": 0.78,
                                "paired_noise": 0.01, "kept_fraction": 0.975, "keeps": True}]}
    data["iso_quality_speedup"], data["iso_quality_fraction"] = 3.25, 0.95
    _, hpath = write_report(tmp_path / "run", data)
    page = hpath.read_text()
    iso = page.split('id="iso"')[1].split("</section>")[0]
    assert "2 step(s) at temperature 0.5" in iso and "3.25x faster" in iso
    assert iso.count("<tr>") == 3  # header and the two settings tried
    parts = page.split('id="parts"')[1].split("</section>")[0]
    assert "crepe_chroma" in parts and "-0.195" in parts

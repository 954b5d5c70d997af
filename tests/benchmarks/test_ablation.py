"""benchmarks/ablation.py's parts: μ vocoded without diffusion, the paired answers, and a
clear error for a folder that is not a finished run. (Its ``--quick`` run on a finished
``compress run`` is part of tests/compress/test_run.py, which has one.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from compress.errors import CompressError
from models import registry


def test_mu_alone_is_the_prior_mean_vocoded(load_benchmark) -> None:
    bench = load_benchmark("ablation")
    torch.manual_seed(0)
    m = registry.build("lhq-svc-unittest").eval()
    assert m.decoder.mel_prior
    audio = 0.1 * torch.randn(1, 4000)
    spk, shift = torch.tensor([1]), torch.tensor([0.0])
    with torch.no_grad():
        y = bench.PriorOnly(m)(audio, spk, shift)
        cond, f0 = m.features(audio, spk, shift)
        ref = m.vocode(m.denormalize_mel(cond[:, m.decoder.cond_dim:]), f0)[..., :4000]
    assert y.shape == (1, 4000) and torch.equal(y, ref)
    # the diffusion changes the output: μ alone is not what the pipeline gives
    with torch.no_grad():
        full = m.convert(audio[0], 1, 0.0, steps=2, f0_method="torch", temperature=1.0)
    assert float((full - y[0]).abs().max()) > 1e-3
    no_prior = registry.build("lhq-svc-unittest", mel_prior_layers=0)
    with pytest.raises(CompressError, match="no mel prior"):
        bench.PriorOnly(no_prior)


def _rec(system: str, steps: int | None, temp: float | None, combined: list[float],
         stoi: list[float], ms: float) -> dict:
    def res(v: list[float]) -> dict:
        a = np.asarray(v)
        return {"value": float(a.mean()), "noise": float(a.std(ddof=1) / np.sqrt(a.size)),
                "items": v}

    return {"system": system, "steps": steps, "temperature": temp, "ms_per_audio_s": ms,
            "scores": {"combined": res(combined), "stoi": res(stoi)}}


def test_answers_compare_the_best_teacher_with_mu_and_the_student_with_one_step(
        load_benchmark) -> None:
    bench = load_benchmark("ablation")
    recs = [
        _rec("mu", 0, None, [0.60, 0.62, 0.58, 0.61], [0.70, 0.71, 0.69, 0.70], 10.0),
        _rec("teacher_1step_t0", 1, 0.0, [0.70, 0.72, 0.69, 0.71], [0.70, 0.72, 0.68, 0.70],
             20.0),
        _rec("teacher_50step_t0", 50, 0.0, [0.71, 0.72, 0.70, 0.71], [0.71, 0.70, 0.69, 0.71],
             500.0),
        _rec("evolved_1step", 1, 0.0, [0.65, 0.66, 0.64, 0.65], [0.60, 0.62, 0.61, 0.60], 12.0),
        _rec("student_eager", 1, 0.0, [0.69, 0.71, 0.70, 0.70], [0.61, 0.60, 0.62, 0.61], 12.0),
    ]
    ans = bench.answers(recs, 0.0)
    d = ans["diffusion_vs_mu"]
    assert d["best_teacher"] == "teacher_50step_t0" and d["earns_its_cost_by"] == ["combined"]
    assert d["scores"]["combined"]["delta"] == pytest.approx(0.1075)
    assert d["scores"]["stoi"]["verdict"] == "none"
    dd = ans["distill_vs_ddim"]
    assert set(dd) == {"evolved_1step", "teacher_1step_t0"}
    assert dd["evolved_1step"]["better_by"] == ["combined"]
    assert dd["evolved_1step"]["scores"]["stoi"]["verdict"] == "none"
    assert dd["teacher_1step_t0"]["worse_by"] == ["stoi"]
    assert bench.paired({"value": 1, "noise": 0, "items": [1.0]},
                        {"value": 0, "noise": 0, "items": [0.0]})["verdict"] == "unpaired"


def test_a_folder_that_is_not_a_finished_run_is_one_line(load_benchmark, tmp_path, capsys
                                                           ) -> None:
    bench = load_benchmark("ablation")
    assert bench.main(["--run", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {tmp_path}: not a finished compress run")
    assert bench.main(["--run", str(tmp_path), "--clips", "1"]) == 2

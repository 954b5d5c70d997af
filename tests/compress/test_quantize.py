"""compress.quantize: SQNR (shared with the export gate), its prediction, and the fp32 choice
when a group's SQNR cannot be measured."""

from __future__ import annotations

import logging
import math

import pytest
import torch
from torch import nn

from compress.errors import CompressError
from compress.quantize import choose_fp32, predicted_sqnr_db, sensitivity, sqnr_db
from export import parity


def test_sqnr_is_the_export_gates_over_all_outputs() -> None:
    g = torch.Generator().manual_seed(0)
    ref = [torch.randn(3, 4, generator=g), torch.randn(5, generator=g)]
    out = [r + 0.1 * torch.randn(r.shape, generator=g) for r in ref]
    joint = parity.sqnr_db(torch.cat([r.reshape(-1) for r in ref]),
                           torch.cat([o.reshape(-1) for o in out]))
    assert sqnr_db(ref, out) == joint
    assert 15.0 < joint < 25.0  # noise at 0.1 of a unit-variance signal: about 20 dB
    assert sqnr_db([torch.ones(10)], [torch.ones(10) * 1.1]) == pytest.approx(20.0)
    assert sqnr_db([torch.ones(10)], [torch.ones(10)]) == math.inf
    assert sqnr_db([torch.zeros(10)], [torch.ones(10)]) == -math.inf
    with pytest.raises(CompressError, match="shape"):
        sqnr_db([torch.ones(3)], [torch.ones(4)])
    with pytest.raises(CompressError, match="1 outputs against 2"):
        sqnr_db([torch.ones(3), torch.ones(3)], [torch.ones(3)])


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_sqnr_of_non_finite_outputs_is_nan(bad: float) -> None:
    out = torch.ones(10)
    out[3] = bad
    assert math.isnan(sqnr_db([torch.ones(10)], [out]))
    assert math.isnan(parity.sqnr_db(torch.ones(10), out))  # was a math domain error for inf


def test_predicted_sqnr() -> None:
    assert predicted_sqnr_db([20.0, 20.0]) == pytest.approx(20.0 - 10 * math.log10(2))
    assert predicted_sqnr_db([30.0, math.inf]) == pytest.approx(30.0)  # inf adds no noise
    assert predicted_sqnr_db([math.inf]) == math.inf
    assert predicted_sqnr_db([]) == math.inf
    assert predicted_sqnr_db([30.0, -math.inf]) == -math.inf
    assert predicted_sqnr_db([-4000.0, 20.0]) == pytest.approx(-4000.0)  # no overflow
    with pytest.raises(CompressError, match=r"positions \[1\] are NaN"):
        predicted_sqnr_db([20.0, math.nan])


def test_unmeasurable_group_stays_fp32_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    rows = [{"layer": "a", "sqnr_db": 40.0, "score_drop": 0.0},
            {"layer": "b", "sqnr_db": math.nan, "score_drop": 0.0},
            {"layer": "c", "sqnr_db": 35.0, "score_drop": math.nan},
            {"layer": "d", "sqnr_db": 30.0, "score_drop": None}]
    with caplog.at_level(logging.WARNING, logger="compress.quantize"):
        keep = choose_fp32(rows, score_threshold=0.02, sqnr_floor_db=20.0, margin_db=3.0)
    assert keep == ["b", "c"]  # a and d together: 29.6 dB >= 23 dB, both quantized
    assert [r["kept_fp32"] for r in rows] == [False, True, True, False]
    msgs = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("'b' stays fp32" in m and "SQNR could not be measured" in m for m in msgs)
    assert any("'c' stays fp32" in m and "score drop could not be measured" in m for m in msgs)
    # the rest of the plan is decided as before: the noisiest group goes until the floor clears
    rows2 = [{"layer": "a", "sqnr_db": 40.0, "score_drop": None},
             {"layer": "b", "sqnr_db": math.nan, "score_drop": None},
             {"layer": "c", "sqnr_db": 21.0, "score_drop": None}]
    assert choose_fp32(rows2, score_threshold=0.02, sqnr_floor_db=20.0) == ["b", "c"]


def test_a_row_without_a_number_is_an_error() -> None:
    with pytest.raises(CompressError, match="group 'x' has sqnr_db=None"):
        choose_fp32([{"layer": "x", "sqnr_db": None}], score_threshold=0.0, sqnr_floor_db=20.0)


class _TwoLayers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x))  # (B, 4)


def test_sensitivity_logs_an_unmeasurable_group(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A stand-in quantizer: group "a" adds 1 % noise, "b" (and so "(all)") gives NaN."""
    import export.pte

    torch.manual_seed(0)
    model = _TwoLayers().eval()

    def fake_quantize(m, example, calib, *, what, keep_fp32, only_modules):  # type: ignore[no-untyped-def]
        def graph(x: torch.Tensor) -> torch.Tensor:
            y = m(x)
            return y * float("nan") if "b" in only_modules else y * 1.01

        return graph

    monkeypatch.setattr(export.pte, "quantize_pt2e_xnnpack", fake_quantize)
    val = [(torch.randn(2, 4),)]
    with caplog.at_level(logging.WARNING, logger="compress.quantize"):
        rows, summary = sensitivity(model, ["a", "b"], val, val)
    assert rows[0]["sqnr_db"] == pytest.approx(40.0, abs=1e-3)
    assert math.isnan(rows[1]["sqnr_db"]) and math.isnan(summary["sqnr_db_all"])
    msgs = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(m.startswith("int8 sensitivity b: SQNR cannot be measured") and "8 NaN" in m
               and "keeps this group fp32" in m for m in msgs)
    assert choose_fp32(rows, score_threshold=0.0, sqnr_floor_db=20.0) == ["b"]

    def nan_model(x: torch.Tensor) -> torch.Tensor:
        return torch.full((2, 4), float("nan"))

    broken = _TwoLayers().eval()
    broken.forward = nan_model  # type: ignore[method-assign]
    with pytest.raises(CompressError, match="fp32 model's outputs .* hold 8 NaN"):
        sensitivity(broken, ["a"], val, val)


@pytest.mark.parametrize("passes", [True, False])
def test_sensitivity_measures_all_groups_together_first(monkeypatch: pytest.MonkeyPatch,
                                                        passes: bool) -> None:
    """With ``accept_all``, every group int8 together is measured first; when that passes the
    one-at-a-time rows are skipped (nothing needs to stay fp32), otherwise each group is
    measured and the "(all)" variant is not quantized twice."""
    import export.pte

    torch.manual_seed(0)
    model = _TwoLayers().eval()
    calls: list[tuple[str, ...]] = []

    def fake_quantize(m, example, calib, *, what, keep_fp32, only_modules):  # type: ignore[no-untyped-def]
        calls.append(tuple(only_modules))
        return lambda x: m(x) * (1.0 + 0.001 * len(only_modules))  # 0.1 % noise per group

    monkeypatch.setattr(export.pte, "quantize_pt2e_xnnpack", fake_quantize)
    val = [(torch.randn(2, 4),)]
    seen: list[float] = []

    def accept(q: float, drop: float | None) -> bool:
        seen.append(q)
        return passes

    rows, summary = sensitivity(model, ["a", "b"], val, val, accept_all=accept)
    assert calls[0] == ("a", "b") and seen == [pytest.approx(20 * math.log10(1 / 0.002), abs=0.01)]
    assert summary["sqnr_db_all"] == pytest.approx(53.98, abs=0.01)
    if passes:
        assert rows == [] and calls == [("a", "b")]
        assert summary["per_group"].startswith("skipped")
    else:
        assert [r["layer"] for r in rows] == ["a", "b"] and calls == [("a", "b"), ("a",), ("b",)]
        assert summary["per_group"] == "measured"

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


class _OutlierNet(nn.Module):
    """Three linears; the middle one's input has one channel 300x the others, so a per-tensor
    int8 activation scale drowns the rest (its own SQNR about 24 dB, the others above 40)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b, self.c = nn.Linear(16, 16), nn.Linear(16, 16), nn.Linear(16, 16)
        scale = torch.ones(16)
        scale[0] = 300.0
        self.register_buffer("scale", scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(torch.tanh(self.b(self.a(x) * self.scale)))


class _Say:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def say(self, line: str) -> None:
        self.lines.append(line)


def test_a_failing_int8_gate_without_rows_ranks_groups_on_its_input_and_retries(
        tmp_path) -> None:
    """The quantize stage accepted every group int8 together (no per-group rows) but the
    export gate, on another clip, fails: the export ranks the groups by their own SQNR on the
    gate's input, keeps the noisiest fp32 and passes, instead of failing the run."""
    from compress.pipeline import gated_pte, noise_order
    from export.parity import GateConfig

    torch.manual_seed(1)
    model = _OutlierNet().eval()
    x = (torch.randn(8, 16),)
    calib = [(torch.randn(8, 16),) for _ in range(4)]
    assert noise_order(model, ["a", "b", "c"], x, calib)[0] == "b"
    gate = GateConfig(int8_min_sqnr_db=35.0)
    st, attempts = _Say(), []
    res, kept = gated_pte(st, model, x, calib, tmp_path, "net", precision="int8",
                          groups=["a", "b", "c"], left=None, attempts=attempts, gate=gate)
    assert kept == ["b"]
    assert len(attempts) == 1 and "SQNR" in attempts[0]["error"]
    assert res.path.exists() and res.parity["sqnr_db"] >= 35.0
    assert any("ranking its 3 groups" in line for line in st.lines)


class _CatBlock(nn.Module):
    """A dense-style layer: conv, concatenate with its input, 1x1 conv."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv1d(4, 4, 3, padding=1), nn.Conv1d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.cat([x, torch.relu(self.a(x))], dim=1))


class _TwoCats(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.first, self.second = _CatBlock(), _CatBlock()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(x))


def _quantized_activations(graph) -> dict[str, int]:
    """Per block, how many of the activations computed in it are quantized (q nodes)."""
    out = {"first": 0, "second": 0}
    for n in graph.graph.nodes:
        src = n.args[0] if n.args else None
        if (n.op == "call_function" and "quantize_per_tensor" in str(n.target)
                and "dequantize" not in str(n.target) and isinstance(src, torch.fx.Node)
                and src.meta.get("nn_module_stack")):
            path = list(src.meta["nn_module_stack"].values())[-1][0]
            out[path.split(".")[0]] += 1
    return out


@pytest.mark.parametrize("how", ["only_modules", "keep_fp32"])
def test_concatenations_outside_the_chosen_modules_stay_fp32(how: str) -> None:
    """The XNNPACK quantizer's cat annotator ignores the filter: without the fence every cat of
    the graph went int8, so one group's sensitivity measured the noise of all of them."""
    from export.calibration import CalibrationSet
    from export.pte import quantize_pt2e_xnnpack

    model = _TwoCats().eval()
    x = (torch.randn(1, 4, 64),)
    calib = CalibrationSet([(torch.randn(1, 4, 64),) for _ in range(2)], {"kind": "test"})
    kw = {"only_modules": ["first"]} if how == "only_modules" else {"keep_fp32": ["second"]}
    graph = quantize_pt2e_xnnpack(model, x, calib, what="two cats", **kw)
    got = _quantized_activations(graph)
    assert got["first"] >= 3 and got["second"] == 0, got  # relu, cat, conv of the first
    whole = _quantized_activations(quantize_pt2e_xnnpack(model, x, calib, what="two cats"))
    assert whole["first"] >= 3 and whole["second"] >= 3, whole


class _PreActDense(nn.Module):
    """A stem conv whose output feeds a BatchNorm (pre-activation layer) and a concatenation,
    the pattern of every dense block of MDenseNet."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Conv1d(2, 4, 3, padding=1)
        self.bn = nn.BatchNorm1d(4)
        self.conv = nn.Conv1d(4, 4, 3, padding=1)
        self.head = nn.Conv1d(8, 2, 1)
        with torch.no_grad():  # a BatchNorm far from identity, as after training
            self.bn.running_mean.uniform_(-2.0, 2.0)
            self.bn.running_var.uniform_(0.1, 4.0)
            self.bn.weight.uniform_(0.5, 2.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        return self.head(torch.cat([h, self.conv(torch.relu(self.bn(h)))], dim=1))


@pytest.mark.parametrize("only", [[], ["head"]])
def test_a_conv_with_other_users_keeps_its_batchnorm_apart(only: list[str]) -> None:
    """prepare_pt2e folds a BatchNorm into the conv before it even when the conv's output has
    other users, which then read normalised values; the shield keeps the graph exact when
    nothing is quantized and near-exact when only the head is."""
    from export.calibration import CalibrationSet
    from export.pte import quantize_pt2e_xnnpack

    model = _PreActDense().eval()
    x = (torch.randn(1, 2, 64),)
    calib = CalibrationSet([(torch.randn(1, 2, 64),) for _ in range(2)], {"kind": "test"})
    graph = quantize_pt2e_xnnpack(model, x, calib, what="pre-activation", only_modules=only)
    with torch.no_grad():
        q = sqnr_db([model(*x)], [graph(*x)])
    assert q == math.inf if not only else q > 35.0, q

"""The unit-level latency table on a toy recipe: capture, probes, prediction vs measurement."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

from compress import latency_probe as lp
from compress.latency_table import LatencyTable
from compress.recipes.base import Action
from models.units import Unit, narrowed_width

T = 2048


class Res(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(c, c, 5, padding=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.relu(self.conv(x))


class Part(nn.Module):
    """``(B, 8, T) -> (B, 8, T)`` through ``layers`` residual convs of ``width`` channels."""

    def __init__(self, width: int, layers: int) -> None:
        super().__init__()
        self.width = width
        self.inp = nn.Conv1d(8, width, 1)
        self.layers = nn.ModuleList(Res(width) for _ in range(layers))
        self.out = nn.Conv1d(width, 8, 1)

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        h = self.inp(x)
        for layer in self.layers:
            h = layer(h)
        return self.out(h) * gain


class ToyNet(nn.Module):
    def __init__(self, enc: int = 64, dec: int = 48, layers: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.enc = Part(enc, layers)
        self.dec = Part(dec, layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dec(self.enc(x), 0.5)  # a non-tensor argument, bound in the probe


class ToyRecipe:
    """The parts of a Recipe the latency table uses."""

    def inputs_for(self, m: ToyNet, inputs: tuple) -> tuple:  # type: ignore[type-arg]
        return inputs  # nothing in ToyNet's inputs depends on its widths

    def components(self, m: ToyNet) -> dict[str, str]:
        return {"enc": "enc", "dec": "dec"}

    def units(self, m: ToyNet) -> list[Unit]:
        out = []
        for comp in ("enc", "dec"):
            part = getattr(m, comp)
            n = len(part.layers)
            for i in range(n):
                acts = ("remove", "duplicate") if n > 1 else ("duplicate",)
                out.append(Unit(f"{comp}.layers.{i}", "res", comp, i, acts, part.width,
                                f"{comp}.layers.{i}"))
            out.append(Unit(f"{comp}.width", "width", comp, 0,
                            ("narrow",) if part.width > 16 else (), part.width, None))
        return out

    def apply(self, m: ToyNet, a: Action) -> None:
        comp, _, *rest = a.unit.split(".")
        part = getattr(m, comp)
        if a.kind == "narrow":
            w = narrowed_width(part.width, a.factor, 8, 16)
            new = Part(w, len(part.layers))
            setattr(m, comp, new)
        elif a.kind == "remove":
            del part.layers[int(rest[0])]
        else:
            part.layers.insert(int(rest[0]) + 1, copy.deepcopy(part.layers[int(rest[0])]))

    def architecture(self, m: ToyNet) -> dict:
        return {c: [len(getattr(m, c).layers), getattr(m, c).width] for c in ("enc", "dec")}

    def keep_fp32(self, m: ToyNet) -> tuple[str, ...]:
        return ()

    def int8_modules(self, m: ToyNet) -> None:
        return None

    def device_program(self, m: ToyNet) -> ToyNet:
        return m.eval()


def test_bound_and_capture_see_what_each_part_receives() -> None:
    m = ToyNet().eval()
    x = torch.randn(1, 8, 256)
    got = lp.capture(m, m, ["dec", "enc.layers.1"], [(x,), (2 * x,)])
    assert len(got["dec"]) == 2
    args, kwargs = got["dec"][0]
    assert isinstance(args[0], torch.Tensor) and args[1] == 0.5
    probe = lp.Bound(m.dec, args, kwargs)
    assert len(probe.inputs()) == 1  # the float is bound, only the tensor is an input
    with torch.no_grad():
        assert torch.equal(probe(*probe.inputs()), m.dec(m.enc(x), 0.5))
    with pytest.raises(Exception, match="not called"):
        lp.capture(m.enc, m, ["dec"], [(x,)])  # the program never reaches `dec`
    assert lp.relative_paths("vocoder", ["vocoder.source", "mel"]) == (["source"], False)
    assert lp.relative_paths("vocoder.source", ["vocoder"]) == ([], True)


def test_plan_covers_widths_and_kinds_once() -> None:
    r = ToyRecipe()
    m = ToyNet().eval()
    x = torch.randn(1, 8, 256)
    pm, probes = lp.plan_probes(r, m, (x,), [], precision={"enc": "fp32", "dec": "fp32"},
                                width_steps=1, narrow_factor=0.75, tag="t")
    keys = sorted(p.key for p in probes)
    layers = ["layer:enc/res=64@t", "layer:enc/res=48@t", "layer:dec/res=48@t",
              "layer:dec/res=32@t"]
    assert keys == sorted(["seg:enc@t", "seg:enc:enc.width=48@t", "seg:dec@t",
                           "seg:dec:dec.width=32@t", *layers, *(lp.null_key(k) for k in layers)])
    null = {p.key: p for p in probes}[lp.null_key("layer:enc/res=48@t")]
    assert isinstance(null.module, lp.Null) and null.inputs[0].shape == (1, 48, 256)
    assert pm.governs == {"enc/res": "enc.width", "dec/res": "dec.width"}
    assert pm.teacher_counts == {"enc": {"res": 3}, "dec": {"res": 3}}


@pytest.mark.timing
@pytest.mark.slow
def test_table_predicts_a_whole_other_architecture_within_15_percent(tmp_path: Path) -> None:
    """Probes timed on the host's ExecuTorch runtime predict a program they never saw."""
    r = ToyRecipe()
    m = ToyNet().eval()
    x = (torch.randn(1, 8, T),)
    pm, probes = lp.plan_probes(r, m, x, [], precision={"enc": "fp32", "dec": "fp32"},
                                width_steps=1, narrow_factor=0.75, tag="t")
    other = copy.deepcopy(m)
    r.apply(other, Action("remove", "enc.layers.0"))
    r.apply(other, Action("narrow", "dec.width"))
    r.apply(other, Action("duplicate", "dec.layers.1"))
    whole = [lp.Probe(name, "whole", model, x, [], "fp32", [], None)
             for name, model in (("teacher", m), ("other", other))]
    table = LatencyTable("host", {"kind": "host", "test": True})
    samples = lp.bench_samples_fn("host", 1, 2, 15, tmp_path)
    _, stats = lp.measure_table(table, probes, whole, out_dir=tmp_path, samples_fn=samples,
                                rounds=3, workers=2)
    table.add(lp.whole_key("t"), lp.SHAPE, "fp32", stats["teacher"])
    pm.precision["whole"] = "fp32"
    predict = lp.predictor(table, pm, r.units)
    assert predict(m) == pytest.approx(stats["teacher"].p50_ms)  # exact by construction
    pred = predict(other)
    err = lp.validate(table, "other", pred, stats["other"])
    # removing an encoder layer and narrowing the decoder make it faster, and the table says so
    assert stats["other"].p50_ms < stats["teacher"].p50_ms
    assert abs(err) < 15.0, (pred, stats["other"].p50_ms)
    # beyond the measured grid: unpredictable, not a silent guess
    r.apply(other, Action("narrow", "dec.width"))
    with pytest.raises(Exception, match="no entry"):
        predict(other)


def test_exporting_in_process_gives_the_run_its_threads_back(tmp_path: Path) -> None:
    """With one export worker the probes are lowered in the run's own process, each with one
    thread; the stages after the latency table train with the threads they had before."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        x = (torch.randn(1, 4, 16),)
        probes = [lp.Probe("null:a", "c", lp.Null(), x, [], "fp32", [], None)]
        done = lp.export_all(probes, tmp_path, workers=1)
        assert done["null:a"][0].is_file() and done["null:a"][0].stat().st_size > 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)

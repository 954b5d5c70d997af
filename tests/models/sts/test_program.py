"""The speech-to-singing device program (models/sts/program.py): equal to the eager network with
zero states, the GRU states in and out, chunked runs through ``infer.StsProgram`` with the states
carried, the registry's program hook, and its ``.pte`` in the ExecuTorch runtime."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from export.parity import sqnr_db
from models import registry
from models.checkpoint import save_checkpoint
from models.sts import StsError
from models.sts.infer import StsProgram, load_sts, run_network
from models.sts.net import SYSTEMS, ExportableGRU, StsNet
from models.sts.presets import example_pair
from models.sts.program import StsDeviceProgram, device_program

FRAMES = 16  # sts-unittest's chunk


def _net(system: str = "p-mtl", seed: int = 0) -> StsNet:
    """sts-unittest (P-MTL) or one of its §3.1 overrides, seeded (seed 0: an output that the
    eval-mode clamp does not zero everywhere)."""
    torch.manual_seed(seed)
    overrides = {} if system == "p-mtl" else dict(SYSTEMS[system])
    return registry.build("sts-unittest", **overrides).eval()


def _shapes(prog: StsDeviceProgram) -> list[tuple[int, ...]]:
    return [s for _, s in prog.state_shapes()]


@pytest.mark.parametrize("system", ["p-mtl", "b1", "p-mse"])
def test_program_equals_the_network_with_zero_states(system):
    net = _net(system)
    prog = StsDeviceProgram(net)
    x, c = example_pair(FRAMES)
    with torch.no_grad():
        ref = net(x, c)
        ref = ref[0] if isinstance(ref, tuple) else ref
        out = prog(x, c, *prog.initial_state())
    names = ["h1"] if system == "b1" else ["h1", "h2"]
    assert prog.state_names() == names and len(out) == 1 + len(names)
    assert float(ref.abs().max()) > 1e-3  # not a vacuous comparison
    assert torch.equal(out[0], ref)
    assert float(out[0].min()) >= 0.0  # eval mode: clamped at 0 as the network is


def test_states_change_the_output_and_come_back_with_their_shapes():
    net = _net()
    prog = StsDeviceProgram(net)
    x, c = example_pair(FRAMES)
    hid = net.cfg.gru_hidden
    g = torch.Generator().manual_seed(1)
    h1, h2 = (torch.randn(1, 1, hid, generator=g) for _ in range(2))
    with torch.no_grad():
        y0, *s0 = prog(x, c, *prog.initial_state())
        y1, h1_out, h2_out = prog(x, c, h1, h2)
        _, _, e1 = net.encoder1(net._pad(x), h1, return_state=True)  # eager E1, same state
    assert [tuple(s.shape) for s in (*s0, h1_out, h2_out)] == [(1, 1, hid)] * 4
    assert float((y1 - y0).abs().max()) > 1e-5
    torch.testing.assert_close(h1_out, e1)
    assert not torch.equal(h1_out, s0[0])
    with pytest.raises(StsError, match=r"takes x, c and 2 state tensor\(s\) \(h1, h2\), got 1"):
        prog(x, c, h1)
    with pytest.raises(StsError, match=r"h2 must be \(1, 1, 8\)"):
        prog(x, c, h1, torch.zeros(1, 1, hid + 1))
    b1 = StsDeviceProgram(_net("b1"))
    with torch.no_grad():
        out = b1(x, c, h1)
    assert len(out) == 2 and tuple(out[1].shape) == (1, 1, hid)


def test_eager_infer_takes_states_and_forward_is_unchanged():
    net = _net()
    x, c = example_pair(24)
    with torch.no_grad():
        y, logits = net(x, c)
        y_inf, h1, h2 = net.infer(x, c)
    assert torch.equal(y, y_inf) and logits.shape == (1, 41, 24)
    assert h1.shape == h2.shape == (1, 1, net.cfg.gru_hidden)
    net.train()
    with torch.no_grad():
        y_train = net(x, c)[0]
    assert torch.equal(y, y_train.clamp_min(0.0))  # linear while training, clamped in eval


def test_chunked_run_carries_the_states_from_chunk_to_chunk():
    prog = StsDeviceProgram(_net())
    x, c = example_pair(40)  # 3 chunks of 16, the last zero-padded
    calls: list[list[torch.Tensor]] = []

    def runner(*args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        calls.append([a.clone() for a in args[2:]])
        return prog(*args)

    with torch.no_grad():
        y, n = StsProgram(runner, FRAMES, state_shapes=_shapes(prog)).run(x, c)
        # by hand: zeros into the first chunk, each chunk's states into the next
        pad = torch.zeros(1, 513, 8)
        xs, cs = torch.cat([x, pad], -1), torch.cat([c, pad], -1)
        state, outs = prog.initial_state(), []
        for i in range(3):
            out, *state = prog(xs[..., 16 * i:16 * (i + 1)], cs[..., 16 * i:16 * (i + 1)], *state)
            outs.append(out)
        y_reset, _ = StsProgram(lambda a, b, *s: prog(a, b, *prog.initial_state()), FRAMES,
                                state_shapes=_shapes(prog)).run(x, c)
    assert n == 3 and len(calls) == 3
    assert all(float(s.abs().max()) == 0.0 for s in calls[0])
    assert all(float(s.abs().max()) > 0.0 for s in calls[1])
    assert torch.equal(y, torch.cat(outs, -1)[..., :40])
    assert float((y - y_reset).abs().max()) > 0.0  # the states do reach the next chunk


def test_programs_without_states_and_state_shapes_from_metadata():
    seen: list[int] = []

    def two_inputs(x: torch.Tensor, c: torch.Tensor) -> list[torch.Tensor]:  # an old program
        seen.append(2)
        return [x + c, torch.zeros(1, 41, x.shape[-1])]

    x = torch.rand(1, 513, 20)
    y, n = StsProgram(two_inputs, FRAMES).run(x, torch.zeros_like(x))
    assert n == 2 and seen == [2, 2] and torch.equal(y, x)
    meta = {"state_shapes": json.dumps([[1, 1, 8], [1, 1, 8]])}
    assert StsProgram(two_inputs, FRAMES, meta=meta).state_shapes == [(1, 1, 8)] * 2
    with pytest.raises(StsError, match="metadata state_shapes"):
        StsProgram(two_inputs, FRAMES, meta={"state_shapes": "[[1, 1"})

    def wrong_state(x: torch.Tensor, c: torch.Tensor, h: torch.Tensor) -> list[torch.Tensor]:
        return [x, torch.zeros(1, 1, 3)]

    with pytest.raises(StsError, match=r"returned states of shapes \[\(1, 1, 3\)\]"):
        StsProgram(wrong_state, FRAMES, state_shapes=[(1, 1, 8)]).run(x, x)


def test_the_registry_exports_the_device_program():
    from export.api import load_for_export

    spec = registry.get("sts-unittest")
    assert spec.program is device_program
    lm = load_for_export("sts-unittest")
    assert isinstance(lm.model, StsDeviceProgram)
    assert [tuple(t.shape) for t in lm.example_inputs] == [(1, 513, 16)] * 2 + [(1, 1, 8)] * 2
    assert torch.equal(lm.example_inputs[0], example_pair(FRAMES)[0])
    assert all(float(t.abs().max()) == 0.0 for t in lm.example_inputs[2:])
    assert json.loads(lm.metadata["state_shapes"]) == [[1, 1, 8], [1, 1, 8]]
    assert json.loads(lm.metadata["state_names"]) == ["h1", "h2"]
    assert lm.metadata["initial_state"] == "zeros"
    # the network itself still gets (X, C): training and eager callers are unaffected
    assert len(spec.example_inputs(spec.build())) == 2
    assert device_program(lm.model) is lm.model
    with pytest.raises(StsError, match="no speech-to-singing device program"):
        device_program(torch.nn.Linear(2, 2))
    # no phoneme decoder in the exported graph
    ep = torch.export.export(lm.model, lm.example_inputs, strict=False)
    paths = {p for n in ep.graph.nodes for p, _ in (n.meta.get("nn_module_stack") or {}).values()}
    assert not any("phoneme_decoder" in p for p in paths)
    assert any("encoder2.gru" in p for p in paths)


def test_keep_fp32_names_the_encoders_convolutions_and_norms():
    assert StsDeviceProgram(_net()).export_keep_fp32 == (
        "net.encoder1.blocks", "net.encoder1.norm", "net.encoder2.blocks", "net.encoder2.norm")
    assert StsDeviceProgram(_net("b1")).export_keep_fp32 == (
        "net.encoder1.blocks", "net.encoder1.norm")


@pytest.mark.slow
def test_int8_unrolled_gru_runs_in_xnnpack_as_simulated():
    """The unrolled GRU's per-frame state ``linear`` has no bias of its own (XNNPACK quantized
    a bias shared by the frames' linears with the first frame's input scale): the runtime's
    int8 output equals PT2E's simulation of it."""
    from export.calibration import calibration_from_examples
    from export.pte import lower_to_xnnpack, quantize_pt2e_xnnpack, torch_export
    from export.runtime import PteRunner

    class Gru(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gru = ExportableGRU(40, 8)

        def forward(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return self.gru(x, h)

    torch.manual_seed(0)
    model = Gru().eval()
    inputs = (torch.randn(1, 3, 40), torch.zeros(1, 1, 8))
    with torch.no_grad():
        ref = model(*inputs)
        graph = quantize_pt2e_xnnpack(model, inputs, calibration_from_examples(inputs))
        simulated = graph(*inputs)
        data, _ = lower_to_xnnpack(torch_export(graph, inputs, None, "gru"), {"name": "gru"})
    out = PteRunner(data, threads=1)(*inputs)
    for r, s, o in zip(ref, simulated, out, strict=True):
        assert sqnr_db(s, o) > 60.0
        assert sqnr_db(r, o) > 25.0


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    net = _net()
    path = tmp_path_factory.mktemp("sts") / "model.safetensors"
    return save_checkpoint(path, net, model_name="sts-unittest",
                           config=registry.get("sts-unittest").config())


@pytest.mark.slow
def test_pte_fp32_runs_chunk_after_chunk_in_the_runtime(checkpoint, tmp_path):
    """``compress export`` of sts-unittest: the device program, its metadata, the parity gate;
    then ``compress sing``'s loader runs it over three chunks with the states carried."""
    from export.api import export_model

    r = export_model(checkpoint, "pte", "fp32", tmp_path, name="sts-unittest", threads=1)
    par = r.sidecar["parity"]
    assert par["passed"] and len(par["outputs"]) == 3
    for out in par["outputs"]:
        assert out["scale"] > 1e-3 and (out["sqnr_db"] == "inf" or out["sqnr_db"] >= 30.0)
    meta = r.sidecar["metadata"]
    assert meta["chunk_frames"] == FRAMES and meta["device_program"] == "StsDeviceProgram"
    assert json.loads(meta["state_shapes"]) == [[1, 1, 8], [1, 1, 8]]
    assert r.sidecar["delegation"]["hot_fallbacks"] == {}
    prog = load_sts(r.path)
    assert isinstance(prog, StsProgram) and prog.state_shapes == [(1, 1, 8)] * 2
    x, c = (t[0].numpy() for t in example_pair(40))
    y, calls = run_network(prog, x, c)
    eager = StsDeviceProgram(_net())
    y_ref, _ = run_network(StsProgram(eager, FRAMES, state_shapes=_shapes(eager)), x, c)
    assert calls == 3
    assert sqnr_db(torch.from_numpy(y_ref), torch.from_numpy(y)) >= 30.0
    np.testing.assert_allclose(y, y_ref, atol=1e-4 * float(np.abs(y_ref).max()))


@pytest.mark.slow
def test_pte_int8_passes_the_gate(checkpoint, tmp_path):
    from export.api import export_model

    r = export_model(checkpoint, "pte", "int8", tmp_path, name="sts-unittest", threads=1)
    par = r.sidecar["parity"]
    assert par["passed"] and r.sidecar["keep_fp32"] == list(
        StsDeviceProgram(_net()).export_keep_fp32)
    for out in par["outputs"]:
        assert out["scale"] > 1e-3 and (out["sqnr_db"] == "inf" or out["sqnr_db"] >= 20.0)

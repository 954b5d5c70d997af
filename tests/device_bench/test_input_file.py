"""Real inputs for the runner (`--input-file`): layout, and an index input that random values
would break."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from device_bench.api import measure
from device_bench.errors import BenchError
from device_bench.protocol import BenchConfig, write_input_file


def test_input_file_is_the_raw_bytes_in_order(tmp_path: Path) -> None:
    a = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    b = torch.tensor([7], dtype=torch.long)
    p = write_input_file([a, b.numpy()], tmp_path / "in.raw")
    raw = p.read_bytes()
    assert len(raw) == 6 * 4 + 8
    np.testing.assert_array_equal(np.frombuffer(raw[:24], "<f4"), a.reshape(-1).numpy())
    assert np.frombuffer(raw[24:], "<i8")[0] == 7
    with pytest.raises(BenchError, match="no such file"):
        BenchConfig(input_file=str(tmp_path / "missing.raw"))


class _Lookup(torch.nn.Module):
    """``(x (1, 8), index (1,)) -> x * table[index]``: an index out of range fails."""

    def __init__(self) -> None:
        super().__init__()
        self.table = torch.nn.Embedding(2, 8)

    def forward(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return x * self.table(index)


def test_runner_uses_the_given_inputs(tmp_path: Path, runner_root: Path) -> None:
    from export.pte import export_pte

    model = _Lookup().eval()
    inputs = (torch.ones(1, 8), torch.tensor([1]))
    res = export_pte(model, inputs, tmp_path, "lookup")
    raw = write_input_file(inputs, tmp_path / "inputs.raw")
    r = measure(res.path, "host", warmup=1, iterations=3, input_file=raw,
                out_dir=tmp_path / "ok").to_dict()
    assert r["config"]["input_file"] == str(raw)
    assert r["metrics"]["p50_inference_latency(ms)"] > 0
    raw_json = json.loads(next((tmp_path / "ok").rglob("*.r0.json")).read_text())
    assert raw_json["input_source"] == "file"
    # a too-short file is refused by the runner, with its message
    short = tmp_path / "short.raw"
    short.write_bytes(raw.read_bytes()[:8])
    with pytest.raises(BenchError, match="too short"):
        measure(res.path, "host", warmup=1, iterations=3, input_file=short,
                out_dir=tmp_path / "short")


def test_bench_cli_feeds_the_programs_own_example_inputs(tmp_path: Path, runner_root: Path,
                                                         capsys) -> None:
    """Every exported program carries its example inputs (``{stem}.inputs.npz``, named by the
    sidecar) and `compress bench` uses them with no flag: the index input stays in range.
    Without them it says which input needs ``--input-file`` and fails; ``--input-file``
    (.npz or .pt) gives the inputs back. The chunk length in the metadata gives the RTF."""
    from compress.cli import main
    from export.pte import export_pte

    inputs = (torch.ones(1, 8), torch.tensor([1]))
    res = export_pte(_Lookup().eval(), inputs, tmp_path, "lookup",
                     metadata={"chunk_seconds": 0.5})
    side = json.loads(res.sidecar_path.read_text())
    assert res.sidecar["example_inputs"] == side["example_inputs"]
    assert side["example_inputs"] == "lookup_xnnpack_fp32.inputs.npz"
    npz = tmp_path / side["example_inputs"]
    with np.load(npz) as z:
        assert z.files == ["input_0", "input_1"]
        np.testing.assert_array_equal(z["input_1"], [1])
        assert z["input_0"].dtype == np.float32 and z["input_0"].shape == (1, 8)
    args = ["bench", str(res.path), "--host", "--warmup", "1", "--iterations", "3",
            "--repeats", "1", "--json"]
    assert main([*args, str(tmp_path / "a.json")]) == 0
    r = json.loads((tmp_path / "a.json").read_text())
    assert r["config"]["input_file"].endswith(".inputs.raw")
    assert r["config"]["audio_seconds"] == 0.5
    p50 = r["metrics"]["p50_inference_latency(ms)"]
    assert r["metrics"]["rtf"] == pytest.approx(p50 / 500.0, rel=1e-6)

    moved = tmp_path / "real.npz"
    npz.rename(moved)
    capsys.readouterr()
    assert main([*args, str(tmp_path / "b.json")]) != 0  # random indices
    err = capsys.readouterr().err
    assert "input 1 (int64 [1]) is an index" in err and "--input-file" in err
    assert main([*args, str(tmp_path / "c.json"), "--input-file", str(moved)]) == 0
    pt = tmp_path / "real.pt"
    torch.save([inputs[0], inputs[1]], pt)
    assert main([*args, str(tmp_path / "d.json"), "--input-file", str(pt),
                 "--audio-seconds", "2"]) == 0
    assert json.loads((tmp_path / "d.json").read_text())["config"]["audio_seconds"] == 2.0

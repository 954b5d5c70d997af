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

"""The near-causal Vox-TasNet as a streaming program: chunk by chunk, the state carried, the
stems equal the whole-file model's. Through the exported .pte in the ExecuTorch runtime:
tests/compress/test_separation_cli.py (`compress export --stream-frames`)."""

from __future__ import annotations

import pytest
import torch

from models.separation import SeparationError
from models.separation.tasnet import VoxTasNet
from models.separation.tasnet_stream import VoxTasNetStream, stream


def _model(blocks=None, lookahead_ms=4.0) -> VoxTasNet:
    torch.manual_seed(0)
    m = VoxTasNet(sample_rate=8000, n=16, l=8, b=8, h=16, x=3, r=2, lookahead_ms=lookahead_ms,
                  blocks=blocks).eval()
    with torch.no_grad():  # away from the initialisation's symmetric values
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return m


@pytest.mark.parametrize(("chunk_frames", "blocks", "lookahead_ms"),
                         [(1, None, 4.0), (5, None, 4.0), (16, [0, 2, 5], 4.0),
                          (7, None, 0.0), (4, None, 40.0)])
def test_streamed_stems_equal_the_whole_file(chunk_frames, blocks, lookahead_ms):
    m = _model(blocks, lookahead_ms)
    prog = VoxTasNetStream(m, chunk_frames)
    assert prog.d == m.tcn.lookahead_frames
    assert prog.delay_samples == (prog.d + 1) * m.stride
    x = torch.randn(1, 2, 3001)
    with torch.no_grad():
        whole = m(x)
    y = stream(prog, x)
    assert y.shape == whole.shape == (1, 2, 2, 3001)
    exact = 3001 - prog.delay_samples - m.stride  # the file's end: the whole model pads zeros
    assert float((y - whole)[..., :exact].abs().max()) < 1e-5
    # the state is what carries it: restarting from the initial state each call does not
    n = prog.chunk_samples
    with torch.no_grad():
        first = prog(x[..., :n], *prog.initial_state())[0]
        again = prog(x[..., n : 2 * n], *prog.initial_state())[0]
        carried = prog(x[..., n : 2 * n], *prog(x[..., :n], *prog.initial_state())[1:])[0]
    assert torch.equal(first, prog(x[..., :n], *prog.initial_state())[0])
    if prog.delay_samples < 2 * n:
        assert float((carried - again).abs().max()) > 1e-3


def test_offline_model_and_bad_calls_are_refused():
    with pytest.raises(SeparationError, match="gln Vox-TasNet cannot stream"):
        VoxTasNetStream(VoxTasNet(sample_rate=8000, n=8, l=8, b=4, h=8, x=2, r=1))
    prog = VoxTasNetStream(_model(), 4)
    with pytest.raises(SeparationError, match="state tensors"):
        prog(torch.zeros(1, 2, prog.chunk_samples))
    with pytest.raises(SeparationError, match="mix must be"):
        stream(prog, torch.zeros(2, 2, 100))

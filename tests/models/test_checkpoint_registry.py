"""Registry contract and self-describing checkpoints (no unpickling, clear errors)."""

from __future__ import annotations

import json
import struct

import pytest
import torch
from torch import nn

from models import registry
from models.checkpoint import load_model, load_state, read_header, save_checkpoint
from models.errors import CheckpointError, RegistryError


class Stack(nn.Module):
    """A small model whose architecture is data (list of block kinds)."""

    def __init__(self, architecture: list[str], width: int = 8) -> None:
        super().__init__()
        self.architecture = list(architecture)
        self.blocks = nn.ModuleList(
            nn.Linear(width, width) if k == "lin" else nn.Conv1d(width, width, 3, padding=1)
            for k in architecture
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T)
        for kind, b in zip(self.architecture, self.blocks):
            x = b(x.transpose(1, 2)).transpose(1, 2) if kind == "lin" else b(x)
        return x


SPEC = registry.ModelSpec(
    name="stack-testonly",
    family="stack",
    factory=lambda architecture, width: Stack(architecture, width),
    defaults={"architecture": ["lin", "conv"], "width": 8},
    inputs=lambda m: (torch.randn(2, 8, 16, generator=torch.Generator().manual_seed(0)),),
    audio=registry.AudioMeta(sample_rate=16000, hop_length=128),
    description="test-only stack",
)


@pytest.fixture
def spec(monkeypatch):
    monkeypatch.setitem(registry._REGISTRY, SPEC.name, SPEC)
    return SPEC


def test_registry_contract(spec):
    assert spec.name in registry.names()
    m = registry.build(spec.name, width=4, architecture=["conv"])
    assert registry.count_parameters(m) == 4 * 4 * 3 + 4
    x = spec.example_inputs()
    assert registry.get(spec.name).build()(*x).shape == (2, 8, 16)
    d = registry.describe(spec.name)
    assert d["params"] == (8 * 8 + 8) + (8 * 8 * 3 + 8) and d["audio"]["sample_rate"] == 16000
    assert spec.dynamic_shapes() is None
    with pytest.raises(RegistryError, match="unknown override.*valid keys"):
        spec.build(depth=3)
    with pytest.raises(RegistryError, match="unknown model 'nope'"):
        registry.get("nope")


def test_every_family_has_a_unittest_preset():
    names = registry.names()
    families = {registry.get(n).family for n in names}
    for fam in families:
        assert any(registry.get(n).family == fam and n.endswith("-unittest") for n in names), fam


def test_roundtrip_bit_identical_with_evolved_architecture(spec, tmp_path):
    cfg = spec.config(architecture=["lin", "conv", "conv", "lin"])
    model = spec.build(**cfg).eval()
    x = spec.example_inputs()
    (tmp_path / "ckpt").mkdir()
    p = save_checkpoint(
        tmp_path / "ckpt",  # a directory: file is ckpt/model.safetensors
        model,
        model_name=spec.name,
        config=cfg,
        architecture=cfg["architecture"],
        history=[{"round": 1, "action": "duplicate", "block": "conv1"}],
        extra={"speakers": ["a", "b"]},
    )
    assert p.name == "model.safetensors"
    loaded, header = load_model(p.parent)
    assert header.architecture == ["lin", "conv", "conv", "lin"]
    assert header.history[0]["action"] == "duplicate" and header.extra["speakers"] == ["a", "b"]
    assert torch.equal(loaded(*x), model(*x))


def test_corrupt_and_wrong_files(spec, tmp_path):
    model = spec.build()
    p = save_checkpoint(
        tmp_path / "m.safetensors", model, model_name=spec.name, config=spec.config()
    )
    raw = bytearray(p.read_bytes())
    # 1. flip a weight byte (data section is at the end) -> hash mismatch
    flipped = tmp_path / "flipped.safetensors"
    raw2 = bytearray(raw)
    raw2[-3] ^= 0xFF
    flipped.write_bytes(bytes(raw2))
    with pytest.raises(CheckpointError, match=r"flipped.safetensors.*corrupt"):
        load_state(flipped)
    # 2. truncated file
    trunc = tmp_path / "trunc.safetensors"
    trunc.write_bytes(bytes(raw[: len(raw) // 2]))
    with pytest.raises(CheckpointError, match="trunc.safetensors"):
        load_model(trunc)
    # 3. garbage
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        read_header(junk)
    # 4. plain safetensors without our header
    from safetensors.torch import save_file

    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(CheckpointError, match="no 'lhq_mobile' header"):
        read_header(plain)
    # 5. missing / empty
    with pytest.raises(CheckpointError, match="no such file"):
        load_model(tmp_path / "missing.safetensors")
    (tmp_path / "empty.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_model(tmp_path / "empty.safetensors")
    # 6. future schema version
    n = struct.unpack("<Q", raw[:8])[0]
    head = json.loads(raw[8 : 8 + n])
    meta = json.loads(head["__metadata__"]["lhq_mobile"])
    meta["schema_version"] = 99
    head["__metadata__"]["lhq_mobile"] = json.dumps(meta)
    hb = json.dumps(head).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    future = tmp_path / "future.safetensors"
    future.write_bytes(struct.pack("<Q", len(hb)) + hb + bytes(raw[8 + n :]))
    with pytest.raises(CheckpointError, match="schema_version 99 is not supported"):
        read_header(future)
    # 7. weights that do not fit the config
    wrong = tmp_path / "wrong.safetensors"
    save_checkpoint(wrong, model, model_name=spec.name, config=spec.config(width=4))
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_model(wrong)
    # 8. unknown model name
    other = tmp_path / "other.safetensors"
    save_checkpoint(other, model, model_name="not-registered", config={})
    with pytest.raises(CheckpointError, match="unknown model 'not-registered'"):
        load_model(other)


def test_batchnorm_scalar_buffers_round_trip(tmp_path):
    """BatchNorm's ``num_batches_tracked`` is a 0-dim int64 tensor; the digest once failed on
    it (a 0-dim tensor cannot be viewed as bytes), so no model with BatchNorm could be saved."""
    from models.checkpoint import load_state, read_header, save_checkpoint

    m = torch.nn.Sequential(torch.nn.Conv1d(2, 3, 3), torch.nn.BatchNorm1d(3))
    m.train()
    m(torch.randn(4, 2, 16))  # num_batches_tracked -> 1, running stats move
    p = save_checkpoint(tmp_path, m, model_name="x", config={})
    header, state = load_state(p)  # verifies the digest
    assert int(state["1.num_batches_tracked"]) == 1 and state["1.num_batches_tracked"].dim() == 0
    for k, v in m.state_dict().items():
        assert torch.equal(state[k], v), k
    assert header.sha256 == read_header(p).sha256 and len(header.sha256) == 64

"""Content encoders: HuBERT/ContentVec loading (fairseq + HF key formats) and the PPG net."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from models.errors import CheckpointError
from models.lhq_svc.content import HubertEncoder, PPGEncoder, load_hubert

TINY = dict(conv_dims=[16] * 7, dim=32, ffn=64, heads=2, layers=3, pos_kernel=8, pos_groups=4,
            output_layer=3)


def _fairseq_state(enc: HubertEncoder) -> dict[str, torch.Tensor]:
    """The encoder's weights as a fairseq HuBERT checkpoint would store them."""
    sd = {k: v.clone() for k, v in enc.state_dict().items()}
    w = sd.pop("encoder.pos_conv.weight")
    norm = w.pow(2).sum(dim=(0, 1), keepdim=True).sqrt()
    g = torch.rand_like(norm) + 0.5
    # store v = w * norm / g so that g * v / ||v|| == w
    v = w / norm * g  # any scaling of v is normalised away; use it to test the folding
    sd["encoder.pos_conv.0.weight_g"] = norm
    sd["encoder.pos_conv.0.weight_v"] = v
    sd["encoder.pos_conv.0.bias"] = sd.pop("encoder.pos_conv.bias")
    sd["mask_emb"] = torch.zeros(32)
    sd["label_embs_concat"] = torch.zeros(10, 8)
    sd["final_proj.weight"] = torch.zeros(8, 32)
    return sd


def _hf_state(fairseq: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    ren = {}
    for k, v in fairseq.items():
        n = k
        n = n.replace("encoder.pos_conv.0.weight_g",
                      "encoder.pos_conv_embed.conv.parametrizations.weight.original0")
        n = n.replace("encoder.pos_conv.0.weight_v",
                      "encoder.pos_conv_embed.conv.parametrizations.weight.original1")
        n = n.replace("encoder.pos_conv.0.bias", "encoder.pos_conv_embed.conv.bias")
        n = n.replace("post_extract_proj.", "feature_projection.projection.")
        if n.startswith("layer_norm."):
            n = "feature_projection." + n
        n = n.replace("self_attn_layer_norm", "layer_norm").replace("self_attn.", "attention.")
        n = n.replace("fc1.", "feed_forward.intermediate_dense.")
        n = n.replace("fc2.", "feed_forward.output_dense.")
        if n.startswith("feature_extractor.conv_layers."):
            parts = n.split(".")
            sub = {"0": "conv", "2": "layer_norm"}[parts[3]]
            n = ".".join([*parts[:3], sub, *parts[4:]])
        if n in ("mask_emb", "label_embs_concat", "final_proj.weight"):
            n = {"mask_emb": "masked_spec_embed"}.get(n, n)
            if n != "masked_spec_embed":
                continue
        ren["hubert." + n] = v
    return ren


@pytest.fixture
def reference():
    torch.manual_seed(0)
    enc = HubertEncoder(**TINY).eval()
    for p in enc.parameters():
        p.data.normal_(0, 0.2)
    return enc


def test_hubert_loads_fairseq_and_hf_checkpoints(reference, tmp_path):
    wav = torch.randn(1, 8000, generator=torch.Generator().manual_seed(1))
    want = reference(wav)
    assert want.shape == (1, 32, 8000 // 128 + 1)
    fs = _fairseq_state(reference)
    torch.save({"model": fs}, tmp_path / "contentvec.pt")
    hf = _hf_state(fs)
    save_file({k: v.contiguous() for k, v in hf.items()}, tmp_path / "hubert.safetensors")
    for path in ("contentvec.pt", "hubert.safetensors"):
        enc = load_hubert(tmp_path / path, heads=2)
        assert enc.config["layers"] == 3 and enc.config["dim"] == 32
        assert enc.config["conv_strides"] == [5, 2, 2, 2, 2, 2, 2]
        got = enc(wav)
        assert torch.allclose(got, want, atol=1e-5), path


def test_hubert_output_layer_is_the_nth_transformer_layer(reference, tmp_path):
    torch.save({"model": _fairseq_state(reference)}, tmp_path / "c.pt")
    wav = torch.randn(1, 4000)
    enc2 = load_hubert(tmp_path / "c.pt", heads=2, output_layer=2)
    full = load_hubert(tmp_path / "c.pt", heads=2, output_layer=3)
    h2 = enc2.features(wav)
    assert torch.allclose(full.encoder.layers[2](h2), full.features(wav), atol=1e-5)


def test_hubert_bad_files(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        load_hubert(tmp_path / "missing.pt")
    torch.save({"model": {"foo.weight": torch.zeros(2)}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a HuBERT"):
        load_hubert(tmp_path / "other.pt")
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="unreadable"):
        load_hubert(tmp_path / "junk.safetensors")


def test_ppg_encoder_outputs_posteriors():
    enc = PPGEncoder(n_phonemes=6, hidden=16, layers=2).eval()
    out = enc(torch.randn(2, 4000))
    assert out.shape == (2, 6, 4000 // 128 + 1)
    assert torch.allclose(out.sum(dim=1), torch.ones(2, out.shape[-1]), atol=1e-5)
    # per-frame normalisation: a gain change barely moves the posteriors
    x = torch.randn(1, 4000)
    assert (enc(x) - enc(3.0 * x)).abs().max() < 1e-3

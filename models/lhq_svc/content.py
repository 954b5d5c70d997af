"""Content encoders for LHQ-SVC (§IV.B): one interface, two kinds.

Every content encoder maps audio ``(B, T)`` at the model's sample rate to content features
``(B, dim, 1 + T // hop)`` aligned with the log-mel frames, and has a ``dim`` attribute.

* ``hubert`` / ``contentvec`` — :class:`HubertEncoder`, the HuBERT-Base architecture
  (7-layer conv feature extractor, conv positional embedding, post-LN transformer), returning
  the output of transformer layer ``output_layer`` (12, as the paper takes ContentVec's 12th
  layer; 768-d for Base). :func:`load_hubert` reads a LOCAL checkpoint in fairseq key format
  (``feature_extractor.conv_layers.0.0.weight``, ``encoder.layers.N.self_attn.q_proj``...)
  or Hugging Face ``HubertModel`` format (``feature_projection``, ``pos_conv_embed``,
  ``attention.q_proj``...), from ``.safetensors`` or a torch file. It never downloads.
  HuBERT runs at 16 kHz, 50 frames/s; the output is linearly resampled to the mel frames.
* ``builtin`` — :class:`PPGEncoder`, a compact phonetic-posteriorgram network on the log-mel
  (each frame normalised over its mel bins, which removes loudness and most of the spectral
  tilt), trained on the corpus's frame phoneme labels; its content is the phoneme posterior,
  which is speaker-independent by construction. All its statistics are per frame, so chunked
  and whole-input processing agree away from chunk edges.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from models.errors import CheckpointError
from models.lhq_svc.decoder import ChannelNorm
from models.lhq_svc.mel import LogMel
from models.units import ChannelGroup, Slot

CONTENT_KINDS = ("builtin", "hubert", "contentvec")


# ------------------------------------------------------------------------------------------
# built-in phonetic-posteriorgram encoder
# ------------------------------------------------------------------------------------------
class PPGEncoder(nn.Module):
    """Log-mel -> phoneme posteriors. ``forward(wav (B, T)) -> (B, n_phonemes, F)``.

    The body is a list of residual layers ``h + gelu(conv(norm(h)))`` (``convs[i]`` with
    ``norms[i]``), one per entry of ``dilations`` (default ``2 ** (i % 3)`` for
    ``i < layers``); the list is data, so layers can be removed or duplicated
    (``SVCPipeline.apply_action``) and :attr:`config` rebuilds the result.
    """

    kind = "builtin"
    # int8 export: the Fourier-basis STFT feeding a log stays fp32 (export/pte.py keep_fp32)
    export_keep_fp32 = ("mel",)

    def __init__(
        self,
        n_phonemes: int = 40,
        hidden: int = 128,
        layers: int = 4,
        sample_rate: int = 16000,
        hop_length: int = 128,
        n_mels: int = 80,
        dilations: list[int] | tuple[int, ...] | None = None,
    ):
        super().__init__()
        if dilations is None:
            dilations = [2 ** (i % 3) for i in range(layers)]
        elif len(dilations) != layers:
            raise ValueError(f"dilations {list(dilations)} give {len(dilations)} layers, "
                             f"layers={layers}")
        self.n_phonemes = n_phonemes
        self.sample_rate = sample_rate
        self.hop_length = hop_length
        self.n_mels = n_mels
        self.mel = LogMel(sample_rate=sample_rate, hop_length=hop_length, n_mels=n_mels)
        self.in_norm = ChannelNorm(n_mels)
        self.inp = nn.Conv1d(n_mels, hidden, 5, padding=2)
        self.convs = nn.ModuleList(
            nn.Conv1d(hidden, hidden, 5, dilation=d, padding=2 * d) for d in dilations
        )
        self.norms = nn.ModuleList(ChannelNorm(hidden) for _ in dilations)
        self.head = nn.Conv1d(hidden, n_phonemes, 1)
        self.dim = n_phonemes

    @property
    def hidden(self) -> int:
        return self.inp.out_channels

    @property
    def dilations(self) -> list[int]:
        return [int(cast(nn.Conv1d, c).dilation[0]) for c in self.convs]

    @property
    def config(self) -> dict[str, Any]:
        """Build kwargs of the current (possibly evolved or narrowed) encoder."""
        return {"n_phonemes": self.n_phonemes, "hidden": self.hidden,
                "layers": len(self.convs), "sample_rate": self.sample_rate,
                "hop_length": self.hop_length, "n_mels": self.n_mels,
                "dilations": self.dilations}

    def width_groups(self, width: int) -> list[ChannelGroup]:
        """The channels narrowing ``hidden`` to `width` slices (keys of this module)."""
        slots = [Slot("inp.weight", 0, producer=True), Slot("inp.bias", 0),
                 Slot("head.weight", 1)]
        for i in range(len(self.convs)):
            slots += [Slot(f"convs.{i}.weight", 0, producer=True), Slot(f"convs.{i}.bias", 0),
                      Slot(f"convs.{i}.weight", 1), Slot(f"norms.{i}.weight", 1),
                      Slot(f"norms.{i}.bias", 1)]
        return [ChannelGroup("hidden", self.hidden, width, tuple(slots))]

    def logits_from_mel(self, mel: torch.Tensor) -> torch.Tensor:
        h = F.gelu(self.inp(self.in_norm(mel)))  # (B, H, F)
        for conv, norm in zip(self.convs, self.norms):
            h = h + F.gelu(conv(norm(h)))
        return self.head(h)  # (B, P, F)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits_from_mel(self.mel(wav)), dim=1)  # (B, P, F)


# ------------------------------------------------------------------------------------------
# HuBERT / ContentVec
# ------------------------------------------------------------------------------------------
_STANDARD_STRIDES = {10: 5, 3: 2, 2: 2}


class _SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        hd = d // self.heads
        q = self.q_proj(x).view(b, n, self.heads, hd).transpose(1, 2)  # (B, H, N, hd)
        k = self.k_proj(x).view(b, n, self.heads, hd).transpose(1, 2)
        v = self.v_proj(x).view(b, n, self.heads, hd).transpose(1, 2)
        att = torch.softmax(torch.matmul(q, k.transpose(2, 3)) / math.sqrt(hd), dim=-1)
        o = torch.matmul(att, v).transpose(1, 2).reshape(b, n, d)  # (B, N, D)
        return self.out_proj(o)


class _EncoderLayer(nn.Module):
    """fairseq ``TransformerSentenceEncoderLayer`` with post-LN (HuBERT Base)."""

    def __init__(self, dim: int, ffn: int, heads: int):
        super().__init__()
        self.self_attn = _SelfAttention(dim, heads)
        self.self_attn_layer_norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, ffn)
        self.fc2 = nn.Linear(ffn, dim)
        self.final_layer_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.self_attn_layer_norm(x + self.self_attn(x))  # (B, N, D)
        return self.final_layer_norm(x + self.fc2(F.gelu(self.fc1(x))))


class _TransformerEncoder(nn.Module):
    def __init__(self, dim: int, ffn: int, heads: int, layers: int, pos_kernel: int, groups: int):
        super().__init__()
        # weight-norm of the original is folded into a plain weight at load time
        self.pos_conv = nn.Conv1d(dim, dim, pos_kernel, padding=pos_kernel // 2, groups=groups)
        self.pos_kernel = pos_kernel
        self.layer_norm = nn.LayerNorm(dim)
        self.layers = nn.ModuleList(_EncoderLayer(dim, ffn, heads) for _ in range(layers))


class HubertEncoder(nn.Module):
    """HuBERT / ContentVec Base: ``forward(wav (B, T) @ 16 kHz) -> (B, dim, F_mel)``."""

    kind = "hubert"

    def __init__(
        self,
        conv_dims: list[int] | tuple[int, ...] = (512,) * 7,
        conv_kernels: list[int] | tuple[int, ...] = (10, 3, 3, 3, 3, 2, 2),
        conv_strides: list[int] | tuple[int, ...] = (5, 2, 2, 2, 2, 2, 2),
        dim: int = 768,
        ffn: int = 3072,
        heads: int = 12,
        layers: int = 12,
        pos_kernel: int = 128,
        pos_groups: int = 16,
        output_layer: int = 12,
        hop_length: int = 128,
    ):
        super().__init__()
        if not 1 <= output_layer <= layers:
            raise ValueError(f"output_layer={output_layer}; valid: 1..{layers}")
        convs = []
        cin = 1
        for i, (c, k, s) in enumerate(zip(conv_dims, conv_kernels, conv_strides)):
            mods: list[nn.Module] = [nn.Conv1d(cin, c, k, stride=s, bias=False), nn.Dropout(0.0)]
            if i == 0:
                mods.append(nn.GroupNorm(c, c))
            mods.append(nn.GELU())
            convs.append(nn.Sequential(*mods))
            cin = c
        self.feature_extractor = nn.Module()
        self.feature_extractor.conv_layers = nn.ModuleList(convs)
        self.layer_norm = nn.LayerNorm(cin)
        self.post_extract_proj = nn.Linear(cin, dim)
        self.encoder = _TransformerEncoder(dim, ffn, heads, layers, pos_kernel, pos_groups)
        self.output_layer = output_layer
        self.hop_length = hop_length
        self.dim = dim
        self.config: dict[str, Any] = {
            "conv_dims": list(conv_dims),
            "conv_kernels": list(conv_kernels),
            "conv_strides": list(conv_strides),
            "dim": dim,
            "ffn": ffn,
            "heads": heads,
            "layers": layers,
            "pos_kernel": pos_kernel,
            "pos_groups": pos_groups,
            "output_layer": output_layer,
        }

    def features(self, wav: torch.Tensor) -> torch.Tensor:
        """Transformer layer ``output_layer`` at 50 frames/s: ``(B, T) -> (B, N, D)``."""
        x = wav.unsqueeze(1)  # (B, 1, T)
        for conv in self.feature_extractor.conv_layers:
            x = conv(x)  # (B, C, N)
        x = self.post_extract_proj(self.layer_norm(x.transpose(1, 2)))  # (B, N, D)
        pos = self.encoder.pos_conv(x.transpose(1, 2))  # (B, D, N + 1) for an even kernel
        if self.encoder.pos_kernel % 2 == 0:
            pos = pos[:, :, :-1]
        x = self.encoder.layer_norm(x + F.gelu(pos).transpose(1, 2))
        for layer in self.encoder.layers[: self.output_layer]:
            x = layer(x)
        return x

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        n_frames = wav.shape[-1] // self.hop_length + 1
        h = self.features(wav).transpose(1, 2)  # (B, D, N)
        return F.interpolate(h, size=n_frames, mode="linear", align_corners=False)  # (B, D, F)


_HF_RENAMES = [
    (r"^feature_extractor\.conv_layers\.(\d+)\.conv\.", r"feature_extractor.conv_layers.\1.0."),
    (r"^feature_extractor\.conv_layers\.0\.layer_norm\.", "feature_extractor.conv_layers.0.2."),
    (r"^feature_projection\.layer_norm\.", "layer_norm."),
    (r"^feature_projection\.projection\.", "post_extract_proj."),
    (r"^encoder\.pos_conv_embed\.conv\.", "encoder.pos_conv."),
    (r"^encoder\.layers\.(\d+)\.attention\.", r"encoder.layers.\1.self_attn."),
    (r"^encoder\.layers\.(\d+)\.layer_norm\.", r"encoder.layers.\1.self_attn_layer_norm."),
    (r"^encoder\.layers\.(\d+)\.feed_forward\.intermediate_dense\.", r"encoder.layers.\1.fc1."),
    (r"^encoder\.layers\.(\d+)\.feed_forward\.output_dense\.", r"encoder.layers.\1.fc2."),
    (r"parametrizations\.weight\.original0$", "weight_g"),
    (r"parametrizations\.weight\.original1$", "weight_v"),
]
_PREFIXES = ("w2v_encoder.w2v_model.", "module.", "model.", "hubert.")
_IGNORED = re.compile(
    r"^(mask_emb|label_embs_concat|final_proj\..*|masked_spec_embed|encoder\.layers\.\d+\."
    r"cond_layer_norm\..*|.*\.num_batches_tracked)$"
)


def _read_state(path: Path, allow_pickle: bool) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:
            raise CheckpointError(f"content checkpoint {path}: unreadable ({exc})") from exc
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=not allow_pickle)
    except Exception as exc:
        hint = (
            "" if allow_pickle else "; fairseq checkpoints pickle their config: pass "
            "allow_pickle=True only for files you trust"
        )
        raise CheckpointError(f"content checkpoint {path}: cannot read ({exc}){hint}") from exc
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    elif isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(
            f"content checkpoint {path}: expected a state dict of tensors "
            "(optionally under 'model' or 'state_dict')"
        )
    return obj


def canonical_hubert_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename fairseq / HF HuBERT keys to this module's (fairseq) names; fold weight norm."""
    out: dict[str, torch.Tensor] = {}
    for key, val in state.items():
        k = key
        for p in _PREFIXES:
            if k.startswith(p):
                k = k[len(p) :]
        for pat, rep in _HF_RENAMES:
            k = re.sub(pat, rep, k)
        if _IGNORED.match(k):
            continue
        out[k] = val
    g = out.pop("encoder.pos_conv.0.weight_g", out.pop("encoder.pos_conv.weight_g", None))
    v = out.pop("encoder.pos_conv.0.weight_v", out.pop("encoder.pos_conv.weight_v", None))
    if "encoder.pos_conv.0.bias" in out:
        out["encoder.pos_conv.bias"] = out.pop("encoder.pos_conv.0.bias")
    if v is not None and g is not None:
        # fairseq: weight_norm(conv, dim=2): norm over every dim except the kernel axis
        norm = v.pow(2).sum(dim=(0, 1), keepdim=True).sqrt()
        out["encoder.pos_conv.weight"] = g * v / norm
    elif "encoder.pos_conv.0.weight" in out:
        out["encoder.pos_conv.weight"] = out.pop("encoder.pos_conv.0.weight")
    return out


def load_hubert(
    path: str | os.PathLike[str],
    output_layer: int = 12,
    heads: int | None = None,
    conv_strides: list[int] | None = None,
    hop_length: int = 128,
    allow_pickle: bool = False,
) -> HubertEncoder:
    """Build a :class:`HubertEncoder` from a local HuBERT / ContentVec checkpoint.

    Dimensions are read from the weights; ``heads`` defaults to ``dim // 64`` (12 for Base);
    conv strides follow the standard HuBERT kernels (10 -> 5, 3 -> 2, 2 -> 2) unless given.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"content checkpoint {p}: no such file")
    state = canonical_hubert_state(_read_state(p, allow_pickle))
    conv_keys = sorted(
        (int(m.group(1)), k)
        for k in state
        if (m := re.match(r"^feature_extractor\.conv_layers\.(\d+)\.0\.weight$", k))
    )
    if not conv_keys or "post_extract_proj.weight" not in state:
        raise CheckpointError(
            f"content checkpoint {p}: not a HuBERT/ContentVec state dict (expected keys like "
            f"'feature_extractor.conv_layers.0.0.weight' and 'post_extract_proj.weight'; got "
            f"{sorted(state)[:5]}...)"
        )
    if "feature_extractor.conv_layers.1.2.weight" in state:
        raise CheckpointError(
            f"content checkpoint {p}: conv layers with per-layer LayerNorm (HuBERT Large / "
            "'layer_norm' extractor mode) are not supported; expected a Base-style checkpoint"
        )
    conv_w = [state[k] for _, k in conv_keys]
    kernels = [int(w.shape[-1]) for w in conv_w]
    if conv_strides is None:
        unknown = [k for k in kernels if k not in _STANDARD_STRIDES]
        if unknown:
            raise CheckpointError(
                f"content checkpoint {p}: conv kernels {kernels} are not HuBERT's; pass "
                "conv_strides explicitly"
            )
        conv_strides = [_STANDARD_STRIDES[k] for k in kernels]
    dim = int(state["post_extract_proj.weight"].shape[0])
    n_layers = 1 + max(
        int(m.group(1)) for k in state if (m := re.match(r"^encoder\.layers\.(\d+)\.", k))
    )
    ffn = int(state["encoder.layers.0.fc1.weight"].shape[0])
    pos_w = state["encoder.pos_conv.weight"]
    pos_groups = dim // int(pos_w.shape[1])
    if heads is None:
        heads = max(1, dim // 64) if dim % 64 == 0 else 1
    enc = HubertEncoder(
        conv_dims=[int(w.shape[0]) for w in conv_w],
        conv_kernels=kernels,
        conv_strides=conv_strides,
        dim=dim,
        ffn=ffn,
        heads=heads,
        layers=n_layers,
        pos_kernel=int(pos_w.shape[-1]),
        pos_groups=pos_groups,
        output_layer=min(output_layer, n_layers),
        hop_length=hop_length,
    )
    own = enc.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            f"content checkpoint {p}: keys do not fit HuBERT Base: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    enc.load_state_dict(state, strict=True)
    return enc.eval()

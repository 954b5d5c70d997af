"""Content encoders for LHQ-SVC (§IV.B): one interface, two kinds.

Every content encoder maps audio ``(B, T)`` at the model's sample rate to content features
``(B, dim, 1 + T // hop)`` aligned with the log-mel frames, and has a ``dim`` attribute.

* ``hubert`` / ``contentvec`` — :class:`HubertEncoder`, the HuBERT-Base architecture
  (7-layer conv feature extractor, conv positional embedding, post-LN transformer), returning
  the output of transformer layer ``output_layer`` (12, as the paper takes ContentVec's 12th
  layer; 768-d for Base). :func:`load_hubert` reads a LOCAL checkpoint in fairseq key format
  (``feature_extractor.conv_layers.0.0.weight``, ``encoder.layers.N.self_attn.q_proj``...)
  or Hugging Face ``HubertModel`` format (``feature_projection``, ``pos_conv_embed``,
  ``attention.q_proj``...), from a transformers ``save_pretrained`` directory (its
  ``config.json`` gives the head count and conv strides), a fairseq / ContentVec ``.pt``
  (its ``cfg.model`` / ``args`` give them; unpickling that config needs ``allow_pickle``),
  or a ``.safetensors`` / torch state dict. It never downloads.
  HuBERT runs at 16 kHz, 50 frames/s; the output is linearly resampled to the mel frames.
* ``builtin`` — :class:`PPGEncoder`, a compact phonetic-posteriorgram network on the log-mel
  (each frame normalised over its mel bins, which removes loudness and most of the spectral
  tilt), trained on the corpus's frame phoneme labels; its content is the phoneme posterior,
  which is speaker-independent by construction. All its statistics are per frame, so chunked
  and whole-input processing agree away from chunk edges.
"""

from __future__ import annotations

import logging
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

log = logging.getLogger(__name__)

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
    """The tensors of one weights file (``.safetensors`` or a torch file)."""
    return _read_checkpoint(path, allow_pickle)[0]


def _read_checkpoint(path: Path, allow_pickle: bool
                     ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The state dict of a weights file and the hyperparameters its fairseq header gives
    (:func:`_fairseq_hparams`; empty for safetensors and bare state dicts)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path)), {}
        except Exception as exc:
            raise CheckpointError(f"content checkpoint {path}: unreadable ({exc})") from exc
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=not allow_pickle)
    except Exception as exc:
        hint = (
            "" if allow_pickle else "; fairseq / ContentVec .pt files pickle their config: "
            "allow pickle (compress train --allow-pickle) only for files you trust"
        )
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"content checkpoint {path}: cannot read ({msg}){hint}") from exc
    hparams: dict[str, Any] = {}
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        hparams = _fairseq_hparams(obj)
        obj = obj["model"]
    elif isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(
            f"content checkpoint {path}: expected a state dict of tensors "
            "(optionally under 'model' or 'state_dict')"
        )
    return obj, hparams


def _field(obj: Any, key: str) -> Any:
    """``obj[key]`` or ``obj.key`` (fairseq stores a dict-like config or an argparse
    Namespace), None when absent."""
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get(key)
    try:
        return obj[key]
    except Exception:  # a Namespace is not subscriptable; config objects raise their own
        return getattr(obj, key, None)


def _fairseq_hparams(ckpt: dict[str, Any]) -> dict[str, Any]:
    """Architecture settings of a fairseq checkpoint's ``cfg.model`` (or legacy ``args``):
    ``heads``, ``conv_strides``, ``conv_kernels`` and the unsupported-variant flags."""
    model_cfg = _field(_field(ckpt, "cfg"), "model") or _field(ckpt, "args")
    out: dict[str, Any] = {}
    heads = _field(model_cfg, "encoder_attention_heads")
    if heads is not None:
        out["heads"] = int(heads)
    layers = _field(model_cfg, "conv_feature_layers")
    if isinstance(layers, str):
        spec = parse_conv_feature_layers(layers)
        if spec is not None:
            out["conv_kernels"] = [k for _, k, _ in spec]
            out["conv_strides"] = [s for _, _, s in spec]
    for key in ("layer_norm_first", "extractor_mode", "conv_bias"):
        val = _field(model_cfg, key)
        if val is not None:
            out[key] = val
    return out


def parse_conv_feature_layers(text: str) -> list[tuple[int, int, int]] | None:
    """fairseq's ``conv_feature_layers`` string, e.g. ``"[(512,10,5)] + [(512,3,2)] * 4"``,
    as ``[(dim, kernel, stride), ...]``; None when it is not of that form. Only list / tuple
    literals of integers joined by ``+`` and ``*`` are read (nothing is evaluated)."""
    import ast

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.Tuple):
            return tuple(ev(e) for e in node.elts)
        if isinstance(node, ast.List):
            return [ev(e) for e in node.elts]
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
            a, b = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Add) and isinstance(a, list) and isinstance(b, list):
                return a + b
            if isinstance(node.op, ast.Mult) and isinstance(a, list) and isinstance(b, int):
                return a * b
        raise ValueError(text)

    try:
        layers = ev(ast.parse(text.strip(), mode="eval").body)
    except (SyntaxError, ValueError, RecursionError):
        return None
    if not isinstance(layers, list) or not all(
        isinstance(t, tuple) and len(t) == 3 for t in layers
    ):
        return None
    return [(int(d), int(k), int(s)) for d, k, s in layers]


#: weight files of a transformers ``save_pretrained`` directory, in the order they are tried
HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_HF_INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


def _hf_hparams(config: dict[str, Any], where: Path) -> dict[str, Any]:
    """Architecture settings of a transformers HuBERT ``config.json``; CheckpointError for a
    variant :class:`HubertEncoder` does not implement (pre-LN "stable layer norm" as in
    HuBERT Large, per-layer conv LayerNorm, conv bias, another activation)."""
    problems = []
    if config.get("do_stable_layer_norm", False):
        problems.append("do_stable_layer_norm=true (pre-LN transformer, HuBERT Large)")
    if config.get("feat_extract_norm", "group") != "group":
        problems.append(f"feat_extract_norm={config.get('feat_extract_norm')!r} (expected "
                        "'group')")
    if config.get("conv_bias", False):
        problems.append("conv_bias=true")
    for key in ("hidden_act", "feat_extract_activation"):
        if config.get(key, "gelu") != "gelu":
            problems.append(f"{key}={config.get(key)!r} (expected 'gelu')")
    if not config.get("feat_proj_layer_norm", True):
        problems.append("feat_proj_layer_norm=false")
    if config.get("conv_pos_batch_norm", False):
        problems.append("conv_pos_batch_norm=true")
    if problems:
        raise CheckpointError(f"content model {where}: unsupported HuBERT variant: "
                              + "; ".join(problems) + " (HuBERT / ContentVec Base layout "
                              "is supported)")
    out: dict[str, Any] = {}
    if "num_attention_heads" in config:
        out["heads"] = int(config["num_attention_heads"])
    if "conv_stride" in config:
        out["conv_strides"] = [int(s) for s in config["conv_stride"]]
    if "conv_kernel" in config:
        out["conv_kernels"] = [int(k) for k in config["conv_kernel"]]
    return out


def _hf_dir_hparams(path: Path) -> dict[str, Any]:
    """The hyperparameters of ``path/config.json`` (:func:`_hf_hparams`)."""
    import json

    cfg_path = path / "config.json"
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"content model {cfg_path}: unreadable ({exc})") from exc
    if not isinstance(config, dict):
        raise CheckpointError(f"content model {cfg_path}: expected a JSON object")
    return _hf_hparams(config, path)


def _read_hf_dir(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """State dict and hyperparameters of a transformers ``save_pretrained`` directory
    (``config.json`` + ``model.safetensors`` / ``pytorch_model.bin``, or their sharded
    ``*.index.json`` form). Tensors only: a ``.bin`` is read with ``weights_only``."""
    import json

    if not (path / "config.json").is_file():
        raise CheckpointError(
            f"content model {path}: a directory without config.json (expected a transformers "
            f"save_pretrained directory: config.json + {' or '.join(HF_WEIGHT_FILES)})")
    hparams = _hf_dir_hparams(path)
    for name in HF_WEIGHT_FILES:
        if (path / name).is_file():
            return _read_state(path / name, allow_pickle=False), hparams
    for name in _HF_INDEX_FILES:
        index = path / name
        if index.is_file():
            try:
                shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                raise CheckpointError(f"content model {index}: unreadable ({exc})") from exc
            state: dict[str, torch.Tensor] = {}
            for shard in shards:
                state.update(_read_state(path / shard, allow_pickle=False))
            return state, hparams
    raise CheckpointError(f"content model {path}: no weights (expected "
                          f"{' or '.join(HF_WEIGHT_FILES)} next to config.json)")


def read_hubert_checkpoint(path: str | os.PathLike[str], allow_pickle: bool = False
                           ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The raw state dict and known hyperparameters of a local HuBERT / ContentVec checkpoint:
    a transformers directory (hyperparameters from its ``config.json``), a weights file
    inside one (its ``config.json`` is read too), a fairseq ``.pt`` (``cfg.model`` / ``args``)
    or a bare state dict. CheckpointError naming the path when it is missing or unreadable."""
    p = Path(path).expanduser()
    if p.is_dir():
        return _read_hf_dir(p)
    if not p.is_file():
        raise CheckpointError(f"content model {p}: no such file or directory")
    state, hparams = _read_checkpoint(p, allow_pickle)
    if p.name in HF_WEIGHT_FILES and (p.parent / "config.json").is_file():
        hparams = _hf_dir_hparams(p.parent)
    return state, hparams


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
    """Build a :class:`HubertEncoder` from a local HuBERT / ContentVec checkpoint: a
    transformers ``save_pretrained`` directory, a fairseq / ContentVec ``.pt`` or a
    ``.safetensors`` / torch state dict (:func:`read_hubert_checkpoint`). Nothing is
    downloaded.

    Dimensions are read from the weights. ``heads`` and ``conv_strides``, unless given, come
    from the checkpoint's own config (transformers ``config.json``, fairseq ``cfg.model`` /
    ``args``); without one, ``heads`` is ``dim // 64`` (12 for Base, with a warning) and the
    strides follow the standard HuBERT kernels (10 -> 5, 3 -> 2, 2 -> 2). ``allow_pickle``
    lets a torch file unpickle objects (fairseq stores its config so): only for files you
    trust.
    """
    p = Path(path).expanduser()
    raw, hp = read_hubert_checkpoint(p, allow_pickle)
    state = canonical_hubert_state(raw)
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
    if "feature_extractor.conv_layers.1.2.weight" in state or hp.get("extractor_mode") not in (
        None, "default"
    ):
        raise CheckpointError(
            f"content checkpoint {p}: conv layers with per-layer LayerNorm (HuBERT Large / "
            "'layer_norm' extractor mode) are not supported; expected a Base-style checkpoint"
        )
    if hp.get("layer_norm_first") or hp.get("conv_bias"):
        raise CheckpointError(
            f"content checkpoint {p}: layer_norm_first / conv_bias (HuBERT Large) are not "
            "supported; expected a Base-style checkpoint"
        )
    conv_w = [state[k] for _, k in conv_keys]
    kernels = [int(w.shape[-1]) for w in conv_w]
    if hp.get("conv_kernels") not in (None, kernels):
        raise CheckpointError(f"content checkpoint {p}: its config gives conv kernels "
                              f"{hp['conv_kernels']}, its weights {kernels}")
    if conv_strides is None:
        conv_strides = hp.get("conv_strides")
    if conv_strides is None:
        unknown = [k for k in kernels if k not in _STANDARD_STRIDES]
        if unknown:
            raise CheckpointError(
                f"content checkpoint {p}: conv kernels {kernels} are not HuBERT's; pass "
                "conv_strides explicitly"
            )
        conv_strides = [_STANDARD_STRIDES[k] for k in kernels]
    if len(conv_strides) != len(kernels):
        raise CheckpointError(f"content checkpoint {p}: {len(conv_strides)} conv strides "
                              f"for {len(kernels)} conv layers")
    dim = int(state["post_extract_proj.weight"].shape[0])
    n_layers = 1 + max(
        int(m.group(1)) for k in state if (m := re.match(r"^encoder\.layers\.(\d+)\.", k))
    )
    ffn = int(state["encoder.layers.0.fc1.weight"].shape[0])
    pos_w = state["encoder.pos_conv.weight"]
    pos_groups = dim // int(pos_w.shape[1])
    if heads is None:
        heads = hp.get("heads")
    if heads is None:
        heads = max(1, dim // 64) if dim % 64 == 0 else 1
        log.warning("content checkpoint %s names no attention head count; assuming %d "
                    "(dim %d / 64)", p, heads, dim)
    if dim % heads:
        raise CheckpointError(f"content checkpoint {p}: {heads} attention heads do not "
                              f"divide its width {dim}")
    enc = HubertEncoder(
        conv_dims=[int(w.shape[0]) for w in conv_w],
        conv_kernels=kernels,
        conv_strides=[int(s) for s in conv_strides],
        dim=dim,
        ffn=ffn,
        heads=int(heads),
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

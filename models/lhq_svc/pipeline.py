"""`SVCPipeline`: LHQ-SVC end to end — audio in, converted audio out (§III–IV).

    audio -> content encoder -> content (B, Dc, F)            (ContentVec / built-in PPG)
    audio -> F0 (torch DSP; DIO in preprocessing) -> shift by semitones -> F0 features
    [content, F0, speaker] -> 256-d each -> conditioning (B, 256, F)                 §IV.B
      (+ optional mel prior μ (B, 80, F) regressed from it; the decoder then diffuses x̃ - μ)
    noise -> diffusion decoder, DDIM / ancestral sampler (eqs. 9–10) -> normalised log-mel
    log-mel (+ shifted F0) -> vocoder (MelGAN, or harmonic-plus-noise NSF) -> audio

``forward(audio (1, T), speaker (1,) int64, shift (1,) float) -> audio (1, T)`` is the
on-device path: a fixed number of DDIM steps (``device_steps``) and a fixed-seed noise buffer
(``noise_frames`` frames, so T <= (noise_frames - 1) * hop), one exportable graph.
:meth:`SVCPipeline.convert` is the eager path (any sampler, step count, seed) and
:meth:`SVCPipeline.convert_long` processes arbitrarily long inputs in overlapping chunks with a
linear crossfade, so memory is bounded by the chunk length. Its noise is drawn once for the
whole input and sliced per chunk, so chunks see the same noise as a whole-input run would.

Architecture search (:mod:`models.units`). :meth:`SVCPipeline.units` lists every unit of the
on-device path in program order: the residual layers of the built-in content encoder
(``content.convs.i``), the conditioner's context and mel-prior convolutions
(``conditioner.context.i``, ``conditioner.prior.i``), the decoder blocks
(``decoder.blocks.i``), the vocoder's residual layers (``vocoder.stacks.s.layers.i``; for
MelGAN one stack per upsampling stage) and Griffin-Lim iterations
(``vocoder.source.iterations.i``), and the width units ``f0.rate`` (F0 estimated on every
frame or every other one), ``content.width``, ``conditioner.width``, ``conditioner.lobes``,
``decoder.width``, ``vocoder.width``, ``vocoder.harmonics``.
:meth:`SVCPipeline.apply_action` removes, duplicates or narrows one in place, and
:attr:`SVCPipeline.config` records every component's architecture (``content_dilations``,
``cond_context_layers``, ``mel_prior_layers``, ``architecture``, ``vocoder_dilations``,
``vocoder_phase_iters``, the widths, ``vocoder_harmonics`` and ``f0_stride``), so
``SVCPipeline(**config)`` and checkpoints rebuild the result.
Widths stay multiples of 8 (the decoder's also of ``heads``) and at least
``narrow_min_width``; the harmonics at least 16. Narrowing a width rebuilds that component at
the new width and loads the kept slices of its weights; channel norms (``ChannelNorm``) in
the content encoder and decoder normalise over fewer channels afterwards, as a pruned
LayerNorm does, so those two widths need fine-tuning or distillation after narrowing.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable
from typing import Any, NamedTuple, cast

import numpy as np
import torch
from torch import nn

from models.lhq_svc import diffusion
from models.lhq_svc.content import CONTENT_KINDS, HubertEncoder, PPGEncoder, load_hubert
from models.lhq_svc.decoder import Conditioner, EvolvableDecoder
from models.lhq_svc.f0 import F0Features, TorchF0, shift_f0
from models.lhq_svc.mel import LogMel
from models.lhq_svc.vocoder import HNVocoder, MelGANGenerator
from models.units import (
    ACTIONS,
    ChannelGroup,
    Unit,
    can_narrow,
    channel_importance,
    narrowed_width,
    select_channels,
    slice_state,
)

log = logging.getLogger(__name__)


# narrowing: widths stay multiples of 8 (and of the decoder's heads); harmonics keep >= 16
WIDTH_ALIGN = 8
HARMONICS_MIN = 16


class _LayerList(NamedTuple):
    """A list of removable / duplicable residual layers (see :meth:`SVCPipeline.units`)."""

    name: str  # unit names are f"{name}.{i}"
    kind: str  # "" = each module's own ``kind`` (decoder blocks)
    component: str
    modules: nn.ModuleList
    path: str  # module paths are f"{path}.{i}"
    minimum: int  # layers that must remain
    width: int


def _default(value: Any, default: Any) -> Any:
    return default if value is None else value


def _json_list(value: Any) -> Any:
    """Tuples -> lists, recursively (config values stay JSON-shaped)."""
    if isinstance(value, (list, tuple)):
        return [_json_list(v) for v in value]
    return value


def check_temperature(value: float) -> float:
    """The sampler's noise scale as a float; ValueError outside [0, 2]."""
    if not 0.0 <= value <= 2.0:
        raise ValueError(f"temperature={value!r}; expected 0 <= T <= 2")
    return float(value)


class SVCPipeline(nn.Module):
    """The whole LHQ-SVC model; every constructor argument is stored in :attr:`config`."""

    noise: torch.Tensor  # (1, n_mels, noise_frames) buffer: the on-device sampler's start

    # int8 export: DSP front ends (STFT / autocorrelation bases feeding logs and argmax) and the
    # vocoder's harmonic source stay fp32; the content net, conditioner and decoder go int8
    export_keep_fp32 = ("mel", "content.mel", "f0", "f0_features", "conditioner.render",
                        "vocoder")
    # int8 export quantizes only inside these modules: the sampler's arithmetic, the F0 shift
    # and the mel (de)normalisation between them stay fp32 (an int8 F0 is off by Hz)
    export_int8_modules = ("content", "conditioner", "decoder")

    def __init__(
        self,
        *,
        sample_rate: int = 16000,
        hop_length: int = 128,
        n_mels: int = 80,
        n_speakers: int = 4,
        n_phonemes: int = 40,
        content_kind: str = "builtin",
        content_path: str | None = None,
        content_hidden: int = 128,
        content_layers: int = 4,
        content_dilations: list[int] | tuple[int, ...] | None = None,
        hubert: dict[str, Any] | None = None,
        architecture: list[str] | tuple[str, ...] = ("res", "xattn", "res", "xattn"),
        channels: int = 128,
        cond_dim: int = 256,
        temb_dim: int = 128,
        heads: int = 4,
        res_dilations: list[int] | tuple[int, ...] = (1, 2, 4),
        skip_prob: float = 0.0,
        cond_context_layers: int = 2,
        mel_prior_layers: int = 0,
        mel_prior_kernel: int = 3,
        mel_prior_kind: str = "free",
        mel_prior_neighbours: int = 2,
        prediction: str = "v",
        weighting: str = "snr+1",
        vocoder_kind: str = "melgan",
        vocoder_channels: int = 256,
        vocoder_ratios: list[int] | tuple[int, ...] = (8, 4, 4),
        vocoder_synthesis: str = "harmonic",
        vocoder_phase_iters: int = 0,
        vocoder_dilations: list[int] | list[list[int]] | None = None,
        vocoder_harmonics: int = 128,
        f0_stride: int = 1,
        mel_mean: float = -6.0,
        mel_std: float = 3.0,
        device_steps: int = 4,
        temperature: float = 1.0,
        noise_frames: int = 512,
        noise_seed: int = 0,
        chunk_seconds: float = 4.0,
        speakers: list[str] | None = None,
        narrow_min_width: int = 16,
    ):
        super().__init__()
        if content_kind not in CONTENT_KINDS:
            raise ValueError(f"content_kind={content_kind!r}; valid: {CONTENT_KINDS}")
        if prediction not in diffusion.PREDICTIONS:
            raise ValueError(f"prediction={prediction!r}; valid: {diffusion.PREDICTIONS}")
        check_temperature(temperature)
        if weighting not in diffusion.WEIGHTINGS:
            raise ValueError(f"weighting={weighting!r}; valid: {diffusion.WEIGHTINGS}")
        if content_dilations is not None and len(content_dilations) != content_layers:
            raise ValueError(f"content_dilations {list(content_dilations)} give "
                             f"{len(content_dilations)} layers, content_layers={content_layers}")
        if narrow_min_width < 1:
            raise ValueError(f"narrow_min_width={narrow_min_width}; expected >= 1")
        prod = int(np.prod(vocoder_ratios))
        if prod != hop_length:
            raise ValueError(f"vocoder_ratios {list(vocoder_ratios)} multiply to {prod}, "
                             f"expected hop_length={hop_length}")
        self._config: dict[str, Any] = {
            "sample_rate": sample_rate, "hop_length": hop_length, "n_mels": n_mels,
            "n_speakers": n_speakers, "n_phonemes": n_phonemes, "content_kind": content_kind,
            "content_path": content_path, "content_hidden": content_hidden,
            "content_layers": content_layers,
            "content_dilations": list(content_dilations) if content_dilations is not None
            else None,
            "hubert": hubert, "cond_context_layers": cond_context_layers,
            "channels": channels, "cond_dim": cond_dim, "temb_dim": temb_dim, "heads": heads,
            "res_dilations": list(res_dilations), "skip_prob": skip_prob,
            "mel_prior_layers": mel_prior_layers, "mel_prior_kernel": mel_prior_kernel,
            "mel_prior_kind": mel_prior_kind, "mel_prior_neighbours": mel_prior_neighbours,
            "prediction": prediction, "weighting": weighting,
            "vocoder_kind": vocoder_kind, "vocoder_channels": vocoder_channels,
            "vocoder_ratios": list(vocoder_ratios), "vocoder_synthesis": vocoder_synthesis,
            "vocoder_phase_iters": vocoder_phase_iters,
            "vocoder_dilations": _json_list(vocoder_dilations),
            "vocoder_harmonics": vocoder_harmonics, "narrow_min_width": narrow_min_width,
            "f0_stride": f0_stride,
            "mel_mean": mel_mean, "mel_std": mel_std, "device_steps": device_steps,
            "temperature": temperature, "noise_frames": noise_frames, "noise_seed": noise_seed,
            "chunk_seconds": chunk_seconds, "speakers": list(speakers) if speakers else None,
        }
        self.sample_rate = sample_rate
        self.hop_length = hop_length
        self.n_mels = n_mels
        self.prediction = prediction
        self.weighting = weighting
        self.mel_mean = mel_mean
        self.mel_std = mel_std
        self.device_steps = device_steps
        self.temperature = float(temperature)
        self.chunk_seconds = chunk_seconds
        self.speakers = list(speakers) if speakers else [f"spk{i}" for i in range(n_speakers)]
        self.mel = LogMel(sample_rate=sample_rate, hop_length=hop_length, n_mels=n_mels)
        self.content: PPGEncoder | HubertEncoder
        if content_kind == "builtin":
            self.content = PPGEncoder(n_phonemes, content_hidden, content_layers, sample_rate,
                                      hop_length, n_mels, dilations=content_dilations)
        else:
            if sample_rate != 16000:
                raise ValueError(f"content_kind={content_kind!r} needs sample_rate=16000 "
                                 f"(HuBERT's rate), got {sample_rate}")
            if content_path:
                self.content = load_hubert(content_path, hop_length=hop_length)
                self._config["hubert"] = self.content.config
            elif hubert:
                self.content = HubertEncoder(**hubert, hop_length=hop_length)
            else:
                raise ValueError(f"content_kind={content_kind!r} needs content_path "
                                 "(a local HuBERT/ContentVec checkpoint) or a hubert config")
            for p in self.content.parameters():
                p.requires_grad_(False)
        self.f0 = TorchF0(sample_rate, hop_length, stride=f0_stride)
        self.f0_features = F0Features()
        self.conditioner = Conditioner(self.content.dim, self.f0_features.dim, n_speakers,
                                       cond_dim, context_layers=cond_context_layers,
                                       prior_layers=mel_prior_layers, n_mels=n_mels,
                                       prior_kernel=mel_prior_kernel, prior_kind=mel_prior_kind,
                                       sample_rate=sample_rate,
                                       f0_ref_hz=self.f0_features.ref_hz,
                                       mel_mean=mel_mean, mel_std=mel_std,
                                       prior_neighbours=mel_prior_neighbours)
        self.decoder = EvolvableDecoder(list(architecture), n_mels, channels, cond_dim, temb_dim,
                                        heads, res_dilations, skip_prob,
                                        mel_prior=mel_prior_layers > 0, prediction=prediction)
        self.vocoder_kind = vocoder_kind
        self.vocoder: HNVocoder | MelGANGenerator
        if vocoder_kind == "melgan":
            self.vocoder = MelGANGenerator(n_mels, vocoder_channels, vocoder_ratios,
                                           dilations=_default(vocoder_dilations, (1, 3, 9)),
                                           mel_mean=mel_mean, mel_std=mel_std)
        elif vocoder_kind == "hn":
            self.vocoder = HNVocoder(n_mels, vocoder_channels, sample_rate, 512, hop_length,
                                     harmonics=vocoder_harmonics,
                                     dilations=_default(vocoder_dilations, (1, 3, 9)),
                                     mel_mean=mel_mean, mel_std=mel_std,
                                     synthesis=vocoder_synthesis,
                                     phase_iters=vocoder_phase_iters)
        else:
            raise ValueError(f"vocoder_kind={vocoder_kind!r}; valid: 'melgan', 'hn'")
        g = torch.Generator().manual_seed(noise_seed)
        self.register_buffer("noise", torch.randn(1, n_mels, noise_frames, generator=g))

    # ---- configuration / evolvable API ------------------------------------------------------
    @property
    def config(self) -> dict[str, Any]:
        """Build kwargs of the current model, architecture of every component included (an
        evolved or narrowed pipeline is rebuilt exactly by ``SVCPipeline(**config)``)."""
        cfg = dict(self._config)
        if isinstance(self.content, PPGEncoder):
            cfg["content_hidden"] = self.content.hidden
            cfg["content_dilations"] = self.content.dilations
            cfg["content_layers"] = len(self.content.convs)
        else:  # a pretrained encoder is rebuilt from its config; its weights are in the state
            cfg["hubert"] = dict(self.content.config)
            cfg["content_path"] = None
        cfg["f0_stride"] = self.f0.stride
        cfg["cond_dim"] = self.conditioner.dim
        cfg["cond_context_layers"] = len(self.conditioner.context)
        cfg["mel_prior_layers"] = len(self.conditioner.prior)
        if self.conditioner.render is not None:
            cfg["mel_prior_neighbours"] = self.conditioner.render.neighbours
        cfg["architecture"] = self.decoder.architecture
        cfg["channels"] = self.decoder.channels
        cfg["skip_prob"] = self.decoder.skip_prob
        cfg["vocoder_channels"] = self.vocoder.channels
        # HN: its one residual stack's dilations; MelGAN: one list per upsampling stage
        cfg["vocoder_dilations"] = self.vocoder.dilations
        if isinstance(self.vocoder, HNVocoder):
            cfg["vocoder_harmonics"] = self.vocoder.harmonics
            cfg["vocoder_phase_iters"] = self.vocoder.source.phase_iters
        cfg["device_steps"] = self.device_steps
        return cfg

    def arch_summary(self) -> dict[str, Any]:
        """A compact, JSON-able description of every component's architecture."""
        content: dict[str, Any]
        if isinstance(self.content, PPGEncoder):
            content = {"dilations": self.content.dilations, "width": self.content.hidden}
        else:
            content = {"kind": self.content.kind, "width": self.content.dim}
        vocoder: dict[str, Any]
        if isinstance(self.vocoder, HNVocoder):
            vocoder = {"layers": self.vocoder.dilations, "width": self.vocoder.channels,
                       "harmonics": self.vocoder.harmonics,
                       "gl_iters": self.vocoder.source.phase_iters}
        else:
            vocoder = {"kind": "melgan", "layers": self.vocoder.dilations,
                       "width": self.vocoder.channels}
        return {
            "f0": {"stride": self.f0.stride},
            "content": content,
            "conditioner": {"width": self.conditioner.dim,
                            "context": len(self.conditioner.context),
                            "prior": len(self.conditioner.prior),
                            **({"lobes": 2 * self.conditioner.render.neighbours + 1}
                               if self.conditioner.render is not None else {})},
            "decoder": {"blocks": self.decoder.architecture, "width": self.decoder.channels},
            "vocoder": vocoder,
        }

    def _layer_lists(self) -> list[_LayerList]:
        """Every list of removable / duplicable layers, in device-program order."""
        out: list[_LayerList] = []
        if isinstance(self.content, PPGEncoder):
            out.append(_LayerList("content.convs", "content_conv", "content",
                                  self.content.convs, "content.convs", 0, self.content.hidden))
        dim = self.conditioner.dim
        out.append(_LayerList("conditioner.context", "cond_context", "conditioner",
                              self.conditioner.context, "conditioner.context", 0, dim))
        if self.conditioner.prior_head is not None:  # the prior keeps one layer (0 = no prior)
            out.append(_LayerList("conditioner.prior", "prior_conv", "conditioner",
                                  self.conditioner.prior, "conditioner.prior", 1, dim))
        out.append(_LayerList("decoder.blocks", "", "decoder", self.decoder.blocks,
                              "decoder.blocks", 1, self.decoder.channels))
        voc = self.vocoder
        if isinstance(voc, HNVocoder):
            for s, stack in enumerate(voc.residual_stacks()):
                out.append(_LayerList(f"vocoder.stacks.{s}.layers", "voc_layer", "vocoder",
                                      stack.layers, f"vocoder.stacks.{s}.layers", 0,
                                      voc.channels))
            if voc.source.synthesis == "stft":
                out.append(_LayerList("vocoder.source.iterations", "gl_iter", "vocoder",
                                      voc.source.iterations, "vocoder.source.iterations", 0,
                                      voc.source.n_bins))
        else:
            for s, stack in enumerate(voc.stacks):
                out.append(_LayerList(f"vocoder.stacks.{s}.layers", "voc_layer", "vocoder",
                                      stack.layers, f"vocoder.{voc.stack_path(s)}.layers", 0,
                                      voc.stage_channels(s)))
        return out

    def _width_limits(self) -> dict[str, tuple[str, str, int, int, int]]:
        """Width units: name -> (kind, component, width, align, minimum)."""
        m = int(self._config["narrow_min_width"])
        # F0 estimates per two frames: 2 = every frame, 1 = every other one, interpolated
        out: dict[str, tuple[str, str, int, int, int]] = {
            "f0.rate": ("rate", "f0", 2 // self.f0.stride, 1, 1)}
        if isinstance(self.content, PPGEncoder):
            out["content.width"] = ("width", "content", self.content.hidden, WIDTH_ALIGN, m)
        out["conditioner.width"] = ("width", "conditioner", self.conditioner.dim, WIDTH_ALIGN, m)
        if self.conditioner.render is not None:  # harmonic lobes summed per bin: 2n + 1
            out["conditioner.lobes"] = ("lobes", "conditioner",
                                        2 * self.conditioner.render.neighbours + 1, 2, 1)
        heads = self.decoder.heads
        out["decoder.width"] = ("width", "decoder", self.decoder.channels,
                                math.lcm(WIDTH_ALIGN, heads), m)
        out["vocoder.width"] = ("width", "vocoder", self.vocoder.channels, WIDTH_ALIGN, m)
        if isinstance(self.vocoder, HNVocoder):
            out["vocoder.harmonics"] = ("harmonics", "vocoder", self.vocoder.harmonics,
                                        WIDTH_ALIGN, HARMONICS_MIN)
        return out

    def units(self) -> list[Unit]:
        """Every evolvable unit of the on-device path, in program order (F0 estimator, content
        encoder, conditioner, decoder, vocoder): removable / duplicable layers, then each
        component's width units (``narrow``). The frozen HuBERT content encoder has none."""
        widths = self._width_limits()
        lists = self._layer_lists()
        out: list[Unit] = []
        for comp in ("f0", "content", "conditioner", "decoder", "vocoder"):
            for lst in lists:
                if lst.component != comp:
                    continue
                n = len(lst.modules)
                actions: tuple[str, ...] = (("remove", "duplicate") if n > lst.minimum
                                            else ("duplicate",))
                for i, mod in enumerate(lst.modules):
                    kind = lst.kind or str(mod.kind)
                    out.append(Unit(f"{lst.name}.{i}", kind, comp, i, actions, lst.width,
                                    f"{lst.path}.{i}"))
            for name, (kind, c, width, align, minimum) in widths.items():
                if c == comp:
                    ok = (width > 1 if kind in ("lobes", "rate")
                          else can_narrow(width, align, minimum))
                    actions = ("narrow",) if ok else ()
                    out.append(Unit(name, kind, comp, 0, actions, width, None))
        return out

    def _unit(self, unit: str, action: str) -> Unit:
        if action not in ACTIONS:
            raise ValueError(f"action={action!r}; valid: {', '.join(ACTIONS)}")
        units = {u.name: u for u in self.units()}
        if unit not in units:
            raise ValueError(f"unit={unit!r}; valid: {', '.join(units)}")
        u = units[unit]
        if action not in u.actions:
            raise ValueError(f"cannot {action} unit {unit!r} (kind {u.kind!r}) now; its "
                             f"valid actions: {', '.join(u.actions) or '(none)'}")
        return u

    def apply_action(self, action: str, unit: str, factor: float = 0.75) -> None:
        """Apply ``remove`` / ``duplicate`` / ``narrow`` to the unit named `unit`, in place.

        ``remove`` deletes the layer (every listed layer is residual, so the net still runs);
        ``duplicate`` inserts a deep copy right after it (a Griffin-Lim iteration: one more);
        ``narrow`` (width units) keeps the ``narrowed_width(width, factor, ...)`` most important
        channels (:meth:`narrow_plan`), or the lowest harmonics. :attr:`config` follows.
        ValueError for an unknown action or unit, or one not allowed for the unit now.
        """
        u = self._unit(unit, action)
        if action == "narrow":
            self._narrow(u, factor)
            return
        lst = next(x for x in self._layer_lists() if u.name == f"{x.name}.{u.position}")
        i = u.position
        if lst.component == "decoder":
            name = self.decoder.block_names()[i]
            if action == "remove":
                self.decoder.remove_block(name)
            else:
                self.decoder.duplicate_block(name)
        elif lst.kind == "gl_iter":
            source = cast(HNVocoder, self.vocoder).source
            if action == "remove":
                del source.iterations[i]
            else:
                source.insert_iteration(i + 1)
        else:
            lists = [lst.modules]
            if lst.kind == "content_conv":
                lists.append(cast(PPGEncoder, self.content).norms)  # each conv has its norm
            for ml in lists:
                if action == "remove":
                    del ml[i]
                else:
                    ml.insert(i + 1, copy.deepcopy(ml[i]))

    def _narrow_changes(self, u: Unit, new: int) -> dict[str, dict[str, Any]]:
        """The constructor arguments narrowing `u` to `new` changes, per component: the
        unit's own width and, for the conditioner's, the decoder's ``cond_dim`` (it reads the
        conditioner's stream)."""
        if u.kind == "harmonics":
            return {"vocoder": {"harmonics": new}}
        key = {"content": "hidden", "conditioner": "dim", "decoder": "channels",
               "vocoder": "channels"}[u.component]
        out = {u.component: {key: new}}
        if u.component == "conditioner":
            out["decoder"] = {"cond_dim": new}
        return out

    def _state_of(self, components: Any) -> dict[str, torch.Tensor]:
        """The state dict entries of `components` (keys of this pipeline)."""
        prefixes = tuple(f"{c}." for c in components)
        return {k: v for k, v in self.state_dict().items() if k.startswith(prefixes)}

    def _narrow_groups(self, u: Unit, factor: float) -> tuple[int, list[Any]]:
        """The new width and ``[(group, keep)]``, keys of this pipeline."""
        _, comp_name, width, align, minimum = self._width_limits()[u.name]
        new = narrowed_width(width, factor, align, minimum)
        comp = getattr(self, comp_name)
        prefix = f"{comp_name}."
        if u.kind == "harmonics":
            return new, [(g.with_prefix(prefix), comp.harmonic_keep(new))
                         for g in comp.harmonic_groups(new)]
        groups = [g.with_prefix(prefix) for g in comp.width_groups(new)]
        if comp_name == "conditioner":  # the stream (group 0) is read by the decoder too
            g0 = groups[0]
            readers = ChannelGroup(g0.name, g0.size, g0.target,
                                   tuple(self.decoder.cond_width_slots())).with_prefix("decoder.")
            groups[0] = ChannelGroup(g0.name, g0.size, g0.target, g0.slots + readers.slots,
                                     g0.blocks)
        state = self._state_of(self._narrow_changes(u, new))
        return new, [(g, select_channels(channel_importance(state, g), g.target, g.blocks))
                     for g in groups]

    def narrow_plan(self, unit: str, factor: float = 0.75) -> list[tuple[ChannelGroup,
                                                                          torch.Tensor]]:
        """What ``apply_action("narrow", unit, factor)`` keeps: ``[(group, kept indices)]``,
        slot keys of this pipeline's state dict. Importance: the L2 norm of the weights
        producing each channel; per-head groups keep the same count in every head."""
        return self._narrow_groups(self._unit(unit, "narrow"), factor)[1]

    def _narrow(self, u: Unit, factor: float) -> None:
        if u.kind == "rate":  # F0 on every other frame (the estimator has no weights)
            old = self.f0
            self.f0 = TorchF0(old.sample_rate, old.hop_length, stride=2).to(
                old.lowpass.device)
            return
        if u.kind == "lobes":  # the largest odd lobe count <= lobes * factor, at least 1
            lobes = max(1, int(u.width * factor))
            lobes -= 1 - lobes % 2
            render = self.conditioner.render
            assert render is not None
            self.conditioner.render = type(render)(render.sample_rate, n_fft=render.n_fft,
                                                   n_mels=render.n_mels,
                                                   neighbours=(lobes - 1) // 2)
            return
        new, plan = self._narrow_groups(u, factor)
        changes = self._narrow_changes(u, new)
        sliced = slice_state(self._state_of(changes), plan)
        for comp, kwargs in changes.items():
            n = len(comp) + 1
            self._rebuild(comp, kwargs,
                          {k[n:]: v for k, v in sliced.items() if k.startswith(comp + ".")})

    def _rebuild(self, component: str, changes: dict[str, Any],
                 state: dict[str, torch.Tensor]) -> None:
        """Replace `component` by one built from its config with `changes`, loading `state`
        (keys of the component); device, dtype, training mode and frozen flags carry over."""
        old = getattr(self, component)
        rebuilt = type(old)(**{**old.config, **changes})
        first = next(old.parameters(), None)
        if first is not None:
            rebuilt.to(device=first.device, dtype=first.dtype)
        rebuilt.load_state_dict(state, strict=True)
        grads = {n: p.requires_grad for n, p in old.named_parameters()}
        for n, p in rebuilt.named_parameters():
            p.requires_grad_(grads.get(n, True))
        rebuilt.train(old.training)
        setattr(self, component, rebuilt)

    @property
    def architecture(self) -> list[str]:
        return self.decoder.architecture

    @property
    def blocks(self) -> nn.ModuleList:
        return self.decoder.blocks

    def block_names(self) -> list[str]:
        return self.decoder.block_names()

    def block_kinds(self) -> list[str]:
        return self.decoder.block_kinds()

    def remove_block(self, name: str) -> None:
        self.decoder.remove_block(name)

    def duplicate_block(self, name: str) -> None:
        self.decoder.duplicate_block(name)

    @property
    def skip_prob(self) -> float:
        return self.decoder.skip_prob

    @skip_prob.setter
    def skip_prob(self, p: float) -> None:
        self.decoder.skip_prob = float(p)

    @property
    def device(self) -> torch.device:
        """Where the pipeline's weights are (``.to(device)`` moves every component)."""
        return self.noise.device

    def speaker_index(self, name: str) -> int:
        if name not in self.speakers:
            raise KeyError(f"unknown speaker {name!r}; valid: {', '.join(self.speakers)}")
        return self.speakers.index(name)

    # ---- pieces -----------------------------------------------------------------------------
    def normalize_mel(self, mel: torch.Tensor) -> torch.Tensor:
        return (mel - self.mel_mean) / self.mel_std

    def denormalize_mel(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mel_std + self.mel_mean

    def condition(
        self,
        audio: torch.Tensor,
        speaker: torch.Tensor,
        shift: torch.Tensor,
        f0: torch.Tensor | None = None,
        voiced: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Conditioning ``(B, 256, F)`` from audio (F0 from :class:`TorchF0` unless given)."""
        return self.features(audio, speaker, shift, f0, voiced)[0]

    def features(
        self,
        audio: torch.Tensor,
        speaker: torch.Tensor,
        shift: torch.Tensor,
        f0: torch.Tensor | None = None,
        voiced: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Conditioning ``(B, 256, F)`` and the shifted F0 ``(B, F)`` (0 = unvoiced)."""
        content = self.content(audio)  # (B, Dc, F)
        if f0 is None or voiced is None:
            f0, voiced = self.f0(audio)  # (B, F)
        n = content.shape[-1]
        f0 = shift_f0(f0, shift)[:, :n] * voiced[:, :n]
        cond = self.conditioner(content, self.f0_features(f0, voiced[:, :n]), speaker)
        return cond, f0

    def vocode(
        self,
        mel: torch.Tensor,
        f0: torch.Tensor,
        phase0: torch.Tensor | None = None,
        frame_offset: int = 0,
    ) -> torch.Tensor:
        """Log-mel ``(B, M, F)`` (+ F0 for the harmonic-plus-noise vocoder) -> ``(B, F * hop)``.

        ``phase0`` / ``frame_offset`` continue the HN source phase of a previous chunk.
        """
        if self.vocoder_kind == "hn":
            return self.vocoder(mel, f0, phase0, frame_offset)
        return self.vocoder(mel)

    def denoise_x(self, z: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x̂(z_t) from the decoder's output (x- or v-prediction)."""
        return diffusion.predict_x(self.decoder(z, t, cond), z, t, self.prediction)

    def generate_mel(
        self,
        cond: torch.Tensor,
        noise: torch.Tensor,
        steps: int,
        sampler: str = "ddim",
        kappa: float = 0.0,
        generator: torch.Generator | None = None,
        temperature: float | None = None,
    ) -> torch.Tensor:
        """Sample a log-mel ``(B, M, F)`` (not normalised) for conditioning ``cond``.

        The sampler starts from ``temperature * noise`` (default: the pipeline's
        ``temperature``): 1 is the model's distribution; below 1 trades sample variety for
        outputs closer to the conditional mean (the "temperature" of Grad-TTS's terminal
        noise; the ancestral sampler's per-step noise is not scaled).
        """
        temp = self.temperature if temperature is None else check_temperature(temperature)
        x = diffusion.sample(lambda z, t: self.denoise_x(z, t, cond), noise * temp, steps,
                             sampler, kappa, generator)
        return self.denormalize_mel(x)

    def device_latent(self, frames: int) -> torch.Tensor:
        """``(1, M, frames)``: the latent the on-device graph's first decoder step receives
        (the fixed noise buffer at the pipeline's temperature)."""
        return self.noise[:, :, :frames] * self.temperature

    # ---- on-device graph ------------------------------------------------------------------
    def forward(
        self, audio: torch.Tensor, speaker: torch.Tensor, shift: torch.Tensor
    ) -> torch.Tensor:
        t_len = audio.shape[-1]
        cond, f0 = self.features(audio, speaker, shift)  # (B, 256, F), (B, F)
        n = cond.shape[-1]
        noise = self.noise[:, :, :n].repeat(audio.shape[0], 1, 1)  # (B, M, F)
        mel = self.generate_mel(cond, noise, self.device_steps, "ddim")  # (B, M, F)
        return self.vocode(mel, f0)[:, :t_len]  # (B, T)

    # ---- eager conversion -------------------------------------------------------------------
    @torch.no_grad()
    def convert(
        self,
        audio: torch.Tensor,
        speaker: int,
        shift: float = 0.0,
        steps: int = 50,
        sampler: str = "ddim",
        kappa: float = 0.0,
        seed: int = 0,
        noise: torch.Tensor | None = None,
        f0_method: str = "torch",
        temperature: float | None = None,
    ) -> torch.Tensor:
        """Convert ``(T,)`` or ``(1, T)`` audio; returns ``(T,)`` on the CPU (the pipeline runs
        on its own :attr:`device`).

        ``f0_method``: ``"torch"`` (:class:`TorchF0`, as on device), ``"crepe"`` /
        ``"crepe-full"`` (CREPE tiny / full, :func:`crepe_frames`) or ``"dio"`` (pyworld DIO,
        the preprocessing estimator the decoder is trained with, §IV.B). ``temperature``:
        see :meth:`generate_mel` (default: the pipeline's).
        """
        return self._convert(audio, speaker, shift, steps, sampler, kappa, seed, noise,
                             f0_method, temperature=temperature)[0]

    @torch.no_grad()
    def _convert(
        self,
        audio: torch.Tensor,
        speaker: int,
        shift: float,
        steps: int,
        sampler: str,
        kappa: float,
        seed: int,
        noise: torch.Tensor | None,
        f0_method: str,
        phase0: float | Callable[[torch.Tensor], float] = 0.0,
        frame_offset: int = 0,
        temperature: float | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Audio ``(T,)`` and the shifted F0 ``(1, F)``; `phase0` may be a function of that F0
        (chunked conversion aligns the harmonic phase with the previous chunk)."""
        dev = self.device
        wav = audio.reshape(1, -1).float()
        spk = torch.tensor([speaker], dtype=torch.long, device=dev)
        sh = torch.tensor([float(shift)], device=dev)
        f0 = voiced = None
        if f0_method == "dio":
            from models.data.features import dio_f0

            f0_np, v_np = dio_f0(wav[0].cpu().numpy(), self.sample_rate, self.hop_length)
            f0 = torch.from_numpy(f0_np).unsqueeze(0).to(dev)
            voiced = torch.from_numpy(v_np.astype(np.float32)).unsqueeze(0).to(dev)
        elif f0_method in ("crepe", "crepe-full"):
            f0, voiced = crepe_frames(wav[0].cpu().numpy(), self.sample_rate, self.hop_length,
                                      "tiny" if f0_method == "crepe" else "full")
            f0, voiced = f0.to(dev), voiced.to(dev)
        elif f0_method != "torch":
            raise ValueError(f"f0_method={f0_method!r}; valid: {', '.join(F0_METHODS)}")
        cond, f0_shifted = self.features(wav.to(dev), spk, sh, f0, voiced)
        n = cond.shape[-1]
        # noise is drawn on the CPU (the same numbers on every device); the ancestral
        # sampler's per-step noise comes from a generator on the pipeline's device
        g = torch.Generator().manual_seed(seed)
        if noise is None:
            noise = torch.randn(1, self.n_mels, n, generator=g)
        g_dev = g if dev.type == "cpu" else torch.Generator(device=dev).manual_seed(seed)
        mel = self.generate_mel(cond, noise[:, :, :n].to(dev), steps, sampler, kappa, g_dev,
                                temperature)
        if callable(phase0):
            phase0 = phase0(f0_shifted)
        p0 = torch.tensor([phase0], device=dev) if phase0 else None
        out = self.vocode(mel, f0_shifted, p0, frame_offset)[0, : wav.shape[-1]]
        return out.cpu(), f0_shifted

    @torch.no_grad()
    def convert_long(
        self,
        audio: np.ndarray | torch.Tensor,
        speaker: int,
        shift: float = 0.0,
        steps: int = 50,
        sampler: str = "ddim",
        kappa: float = 0.0,
        seed: int = 0,
        chunk_seconds: float | None = None,
        overlap_seconds: float | None = None,
        progress: Any = None,
        f0_method: str = "torch",
        temperature: float | None = None,
    ) -> np.ndarray:
        """Convert a long ``(T,)`` input chunk by chunk with a linear crossfade.

        Chunks start on hop boundaries; consecutive chunks overlap by ``overlap_seconds``
        (default: 0.5 s, at most a quarter of the chunk) and
        are crossfaded over that overlap. Memory is O(chunk), plus the input and output arrays.
        ``progress(done, total)`` is called after each chunk when given.
        """
        wav = torch.as_tensor(np.asarray(audio, dtype=np.float32)).reshape(-1)
        total = wav.shape[0]
        hop = self.hop_length
        chunk = int(round((chunk_seconds or self.chunk_seconds) * self.sample_rate / hop)) * hop
        if overlap_seconds is None:  # 0.5 s, at most a quarter of the chunk
            overlap_seconds = min(0.5, chunk / self.sample_rate / 4)
        overlap = int(round(overlap_seconds * self.sample_rate / hop)) * hop
        if chunk <= 2 * overlap:
            raise ValueError(f"chunk ({chunk} samples) must be longer than twice the overlap "
                             f"({overlap} samples)")
        if total <= chunk:
            return self.convert(wav, speaker, shift, steps, sampler, kappa, seed,
                                f0_method=f0_method, temperature=temperature).numpy()
        g = torch.Generator().manual_seed(seed)
        noise = torch.randn(1, self.n_mels, total // hop + 1, generator=g)
        out = np.zeros(total, dtype=np.float32)
        step = chunk - overlap
        starts = list(range(0, total - overlap, step))
        fade_in = np.linspace(0.0, 1.0, overlap, endpoint=False, dtype=np.float32)
        prev_f0: torch.Tensor | None = None
        prev_phase = 0.0
        for i, s in enumerate(starts):
            e = min(s + chunk, total)
            align: float | Callable[[torch.Tensor], float] = 0.0
            if self.vocoder_kind == "hn" and prev_f0 is not None:
                # HN source phase: match the previous chunk's phase at the crossfade centre
                base = prev_phase + float(self.vocoder.cycles(prev_f0, step + overlap // 2)[0])

                def align(f0_new: torch.Tensor, base: float = base) -> float:
                    return (base - float(self.vocoder.cycles(f0_new, overlap // 2)[0])) % 1.0

            y_t, f0_chunk = self._convert(wav[s:e], speaker, shift, steps, sampler, kappa,
                                          seed + i, noise[:, :, s // hop :], f0_method,
                                          align, s // hop, temperature)
            y = y_t.numpy()
            if self.vocoder_kind == "hn":
                prev_f0 = f0_chunk
                prev_phase = float(align(f0_chunk)) if callable(align) else 0.0
            if i > 0:
                n = min(overlap, e - s)
                y[:n] *= fade_in[:n]
                out[s : s + n] *= 1.0 - fade_in[:n]
            out[s:e] += y
            if progress is not None:
                progress(i + 1, len(starts))
        return out


#: the F0 estimators of :meth:`SVCPipeline.convert` (``compress convert --f0``)
F0_METHODS = ("dio", "torch", "crepe", "crepe-full")


def crepe_frames(wav: np.ndarray, sample_rate: int, hop_length: int, model: str = "tiny"
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """CREPE's F0 (:func:`models.judges.crepe_f0`, Viterbi, its periodicity threshold) on the
    pipeline's frames: ``(f0 (1, F) Hz, voiced (1, F) float)``, ``F = 1 + T // hop`` like
    DIO's. CREPE runs at 16 kHz; its hop is the pipeline's hop in 16-kHz samples."""
    from models.data.features import crepe_f0_frames

    f0, _ = crepe_f0_frames(wav, sample_rate, hop_length, model)
    t = torch.from_numpy(f0).unsqueeze(0)
    return t, (t > 0).float()


def build_pipeline(**config: Any) -> SVCPipeline:
    """Registry factory."""
    return SVCPipeline(**config)

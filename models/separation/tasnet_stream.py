"""The near-causal Vox-TasNet as a streaming program: one chunk in, one chunk out, every state
an explicit tensor (issue 25).

:class:`VoxTasNetStream` wraps a trained :class:`~models.separation.tasnet.VoxTasNet` with cLN
(the near-causal model; gLN needs the whole file and is refused) and runs it on ``K`` encoder
frames (``K · L/2`` samples) a call. ``forward(chunk, *state) -> (stems, *state)``: the app
feeds :meth:`~VoxTasNetStream.initial_state` to the first call and each call's returned state
to the next, so a program of fixed shapes separates a stream of any length.

How the whole-file model is reproduced, frame for frame:

* **Encoder** (kernel L, stride S = L/2): the last S input samples are kept, so each call's
  ``(K + 1) · S`` samples give K frames; the first call's first frame ("frame −1") covers S
  zeros before the start. Global frame indices come from a state counting the frames seen.
* **Look-ahead**: block i's depthwise conv reads ``right_i`` frames of future, so its output
  lags its input by ``right_i`` frames; its input frames are kept (``left_i + right_i`` of
  them) and so is its residual input (``right_i`` frames). Skips, which lag by different
  amounts, are delayed to the total look-ahead ``D`` (``TCN.lookahead_frames``), and so are the
  encoder frames that the mask multiplies.
* **Frames before the start** (frame −1 and the pre-roll of each lag) do not exist for the
  whole-file model: they are left out of every cLN's running sums, zeroed where the whole file
  is zero-padded (before each depthwise conv) and zeroed before the decoder.
* **cLN** keeps its running sum and sum of squares over the valid frames so far.
* **Decoder** (transposed conv, stride S): each call's K frames give ``(K + 1) · S`` samples;
  the last S overlap the next call's first frame and are kept. The vocals are the mixture,
  delayed by the same amount, minus the accompaniment.

The output lags the input by :attr:`VoxTasNetStream.delay_samples` = ``(D + 1) · S`` samples:
call ``c`` returns the stems of samples ``c·K·S − delay`` … ``(c + 1)·K·S − delay``. They equal
the whole-file model's, up to float rounding of the running sums, for every sample except the
last ``delay + S`` of a file (the whole-file model zero-pads its future there, a stream sees the
next samples); :func:`stream` flushes with zeros and returns the whole file's length.
"""

from __future__ import annotations

import torch
from torch import nn

from models.separation import SeparationError
from models.separation.tasnet import _EPS, CumulativeLayerNorm, VoxTasNet


def _cln(norm: CumulativeLayerNorm, x: torch.Tensor, valid: torch.Tensor, count: torch.Tensor,
         s1: torch.Tensor, s2: torch.Tensor
         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """cLN of a chunk ``x (1, ch, K)`` given the running sums of the frames before it; frames
    with ``valid`` 0 enter no sum. Returns the normalised chunk and the new sums."""
    ch = x.shape[1]
    c1 = s1 + torch.cumsum(valid * x.sum(dim=1, keepdim=True), dim=2)
    c2 = s2 + torch.cumsum(valid * x.pow(2).sum(dim=1, keepdim=True), dim=2)
    n = ch * count
    mean = c1 / n
    var = (c2 / n - mean.pow(2)).clamp_min(0.0)
    y = (x - mean) / torch.sqrt(var + _EPS) * norm.gamma + norm.beta
    return y, c1[..., -1:], c2[..., -1:]


class VoxTasNetStream(nn.Module):
    """A near-causal :class:`VoxTasNet` run ``chunk_frames`` encoder frames a call (module
    docstring). Input ``(1, C, chunk_frames · S)``; output the stems ``(1, 2, C, chunk_frames ·
    S)`` [vocals, accompaniment], delayed by :attr:`delay_samples`, then the new state."""

    def __init__(self, model: VoxTasNet, chunk_frames: int = 16):
        super().__init__()
        if model.norm != "cln":
            raise SeparationError(f"a {model.norm} Vox-TasNet cannot stream: gLN normalises over "
                                  "the whole file; use the near-causal (cLN) model")
        if chunk_frames < 1:
            raise SeparationError(f"chunk_frames={chunk_frames}; expected >= 1")
        self.model = model.eval()
        self.k = int(chunk_frames)
        self.sample_rate, self.channels = model.sample_rate, model.channels
        self.s = model.stride
        blocks = model.tcn.blocks
        self.rights = [blk.pad[1] for blk in blocks]
        self.spans = [sum(blk.pad) for blk in blocks]
        lags, g = [], 0
        for r in self.rights:
            lags.append(g)
            g += r
        self.lags = lags  # input lag (frames) of each block
        self.d = g  # total look-ahead: the mask's lag
        self.register_buffer("frame_offsets", torch.arange(self.k, dtype=torch.float32)
                             .view(1, 1, self.k), persistent=False)

    @property
    def chunk_samples(self) -> int:
        return self.k * self.s

    @property
    def delay_samples(self) -> int:
        """Samples by which the output lags the input: ``(D + 1) · S``."""
        return (self.d + 1) * self.s

    @property
    def config(self) -> dict[str, object]:
        return {**self.model.config, "chunk_frames": self.k}

    def state_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        """Name and shape of every state tensor, in the order of ``forward``'s arguments."""
        m, c = self.model, self.channels
        tcn = m.tcn
        b, h = tcn.bottleneck.out_channels, tcn.hidden
        sc = tcn.out.in_channels
        out = [("frames_seen", (1, 1, 1)), ("encoder_in", (1, c, self.s)),
               ("mixture", (1, c, self.delay_samples)), ("decoder_tail", (1, c, self.s)),
               ("in_norm_sum", (1, 1, 1)), ("in_norm_sq", (1, 1, 1))]
        if self.d:
            out.append(("frames", (1, c * m.n, self.d)))
        for i, blk in enumerate(tcn.blocks):
            out += [(f"b{i}_norm1_sum", (1, 1, 1)), (f"b{i}_norm1_sq", (1, 1, 1)),
                    (f"b{i}_norm2_sum", (1, 1, 1)), (f"b{i}_norm2_sq", (1, 1, 1))]
            if self.spans[i]:
                out.append((f"b{i}_conv_in", (1, h, self.spans[i])))
            if blk.pad[1]:
                out.append((f"b{i}_residual", (1, b, blk.pad[1])))
            wait = self.d - self.lags[i] - self.rights[i]
            if wait:
                out.append((f"b{i}_skip", (1, sc, wait)))
        return out

    def initial_state(self) -> tuple[torch.Tensor, ...]:
        """The state before the first call: all zeros."""
        return tuple(torch.zeros(shape) for _, shape in self.state_shapes())

    def forward(self, chunk: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        m, tcn, k, s = self.model, self.model.tcn, self.k, self.s
        c = self.channels
        names = [n for n, _ in self.state_shapes()]
        if len(state) != len(names):
            raise SeparationError(f"VoxTasNetStream takes {len(names)} state tensors "
                                  f"({', '.join(names)}), got {len(state)}")
        st = dict(zip(names, state, strict=True))
        seen = st["frames_seen"]
        t0 = seen - 1  # global index of this call's first encoder frame (frame −1 first)
        new: dict[str, torch.Tensor] = {"frames_seen": seen + k}

        def valid_at(lag: int) -> tuple[torch.Tensor, torch.Tensor]:
            idx = t0 - lag + self.frame_offsets  # global frame index of each of the K frames
            return (idx >= 0).to(chunk.dtype), (idx + 1).clamp_min(1.0)

        # encoder: K frames from the kept S samples and this chunk
        x = torch.cat([st["encoder_in"], chunk], dim=2)  # (1, C, (K + 1) S)
        new["encoder_in"] = x[..., -s:]
        w = torch.relu(m.encoder(x.reshape(c, 1, (k + 1) * s)))  # (C, N, K)
        w = w.reshape(1, c * m.n, k)
        valid, count = valid_at(0)
        y, new["in_norm_sum"], new["in_norm_sq"] = _cln(tcn.in_norm, w, valid, count,
                                                        st["in_norm_sum"], st["in_norm_sq"])
        y = tcn.bottleneck(y)
        skips = torch.zeros((), dtype=chunk.dtype)
        for i, blk in enumerate(tcn.blocks):
            lag, right = self.lags[i], self.rights[i]
            valid, count = valid_at(lag)
            z = blk.act1(blk.inp(y))
            z, new[f"b{i}_norm1_sum"], new[f"b{i}_norm1_sq"] = _cln(
                blk.norm1, z, valid, count, st[f"b{i}_norm1_sum"], st[f"b{i}_norm1_sq"])
            z = z * valid  # the whole file zero-pads here: frames before the start are zeros
            if self.spans[i]:
                z = torch.cat([st[f"b{i}_conv_in"], z], dim=2)
                new[f"b{i}_conv_in"] = z[..., -self.spans[i]:]
            z = blk.act2(blk.depthwise(z))  # K frames, lagging `right` more
            valid, count = valid_at(lag + right)
            z, new[f"b{i}_norm2_sum"], new[f"b{i}_norm2_sq"] = _cln(
                blk.norm2, z, valid, count, st[f"b{i}_norm2_sum"], st[f"b{i}_norm2_sq"])
            if right:
                res_in = torch.cat([st[f"b{i}_residual"], y], dim=2)
                new[f"b{i}_residual"] = res_in[..., -right:]
                y = res_in[..., :k]
            y = y + blk.res(z)
            skip = blk.skip(z)
            wait = self.d - lag - right
            if wait:
                sk = torch.cat([st[f"b{i}_skip"], skip], dim=2)
                new[f"b{i}_skip"] = sk[..., -wait:]
                skip = sk[..., :k]
            skips = skips + skip
        mask = torch.sigmoid(tcn.out(tcn.out_act(skips)))  # (1, C·N, K), lag D
        if self.d:
            wf = torch.cat([st["frames"], w], dim=2)
            new["frames"] = wf[..., -self.d:]
            w = wf[..., :k]
        valid, _ = valid_at(self.d)
        frames = (w * mask * valid).reshape(c, m.n, k)
        acc = m.decoder(frames).reshape(1, c, (k + 1) * s)
        acc = torch.cat([acc[..., :s] + st["decoder_tail"], acc[..., s:]], dim=2)
        new["decoder_tail"] = acc[..., -s:]
        acc = acc[..., : k * s]
        mix = torch.cat([st["mixture"], chunk], dim=2)
        new["mixture"] = mix[..., -self.delay_samples:]
        mix = mix[..., : k * s]
        stems = torch.stack([mix - acc, acc], dim=1)  # (1, 2, C, K S)
        return (stems, *[new[n] for n in names])


@torch.no_grad()
def stream(program: VoxTasNetStream, mix: torch.Tensor) -> torch.Tensor:
    """Run `program` over a whole mixture ``(1, C, T)`` chunk by chunk, the state carried, zeros
    fed after the end to flush the delay; returns the stems ``(1, 2, C, T)`` aligned with the
    input (the delay removed)."""
    if mix.dim() != 3 or mix.shape[0] != 1 or mix.shape[1] != program.channels:
        raise SeparationError(f"mix must be (1, {program.channels}, T), got {tuple(mix.shape)}")
    t = mix.shape[-1]
    n = program.chunk_samples
    total = t + program.delay_samples
    calls = -(-total // n)
    x = nn.functional.pad(mix, (0, calls * n - t))
    state = program.initial_state()
    outs = []
    for i in range(calls):
        stems, *state = program(x[..., i * n : (i + 1) * n], *state)
        outs.append(stems)
    y = torch.cat(outs, dim=-1)
    return y[..., program.delay_samples : program.delay_samples + t]

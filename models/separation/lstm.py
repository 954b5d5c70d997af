"""A stack of single-layer LSTMs that eager PyTorch runs with its fused kernel and
``torch.export`` sees as ops XNNPACK delegates (the Chimera network's body; issue 25).

Why not ``nn.LSTM(layers=L)``:

* **One module per layer.** The compression recipe removes layers and narrows the hidden width,
  and the latency table times one layer on its own; a multi-layer ``nn.LSTM`` is one opaque
  module with ``weight_ih_l{k}`` parameters.
* **Exportable in one delegate.** ``torch.export`` decomposes ``aten.lstm`` frame by frame with
  ``unbind`` (``squeeze_copy``), gate ``chunk`` (``split_with_sizes_copy``) and ``flip``, which
  XNNPACK does not take: the graph of chimera-demo on 0.125 s (19 frames) fell into 48 XNNPACK
  partitions around ~160 portable ops, and the lowering took 50 s (72 s of it in the 48
  partitions' pass pipelines). :class:`ExportableLSTM` runs the same recurrence, when it is being
  exported, as ops XNNPACK does take: one ``linear`` for every frame's input projection, then per
  frame a ``linear`` of the previous state, ``sigmoid`` / ``tanh``, ``slice``s, ``mul`` and
  ``add``; the frames are joined by :func:`models.unrolled.cat_tree` (concatenations of at most
  five tensors, XNNPACK's limit), the backward direction walked from the last frame without a
  ``flip``.

Eager outputs (training, evaluation, the parity reference) come from ``nn.LSTM``'s own kernel;
the exported program computes the same equations (PyTorch's gate order ``i, f, g, o``;
``c' = f c + i g``, ``h' = o tanh(c')``), equal within float rounding (tested).

:class:`LSTMStack` keeps ``nn.LSTM``'s call convention (``batch_first``; state ``(h, c)`` of
shape ``(L·D, B, H)``) so callers that stream the state through do not change, and it reads
checkpoints of the multi-layer ``nn.LSTM`` it replaces (:meth:`LSTMStack.upgrade_state`).
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

from models.unrolled import cat_tree

_OLD_KEY = re.compile(r"^(weight_ih|weight_hh|bias_ih|bias_hh)_l(\d+)(_reverse)?$")


class ExportableLSTM(nn.LSTM):
    """A single-layer, ``batch_first`` ``nn.LSTM`` (one or two directions) whose exported
    graph is delegable (module docstring). Same parameters and state dict as ``nn.LSTM``."""

    def __init__(self, input_size: int, hidden_size: int, bidirectional: bool = False):
        super().__init__(input_size, hidden_size, 1, batch_first=True,
                         bidirectional=bidirectional)

    def forward(self, x: torch.Tensor, hx: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        if not torch.compiler.is_exporting():
            return super().forward(x, hx)
        return self.unrolled(x, hx)

    def unrolled(self, x: torch.Tensor, hx: tuple[torch.Tensor, torch.Tensor] | None = None
                 ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """The recurrence frame by frame in delegable ops (what the export sees)."""
        b, t, _ = x.shape
        hid = self.hidden_size
        dirs = 2 if self.bidirectional else 1
        if hx is None:
            h0 = x.new_zeros(dirs, b, hid)
            c0 = x.new_zeros(dirs, b, hid)
        else:
            h0, c0 = hx
        outs, hn, cn = [], [], []
        for d in range(dirs):
            sfx = "_reverse" if d else ""
            w_ih = getattr(self, f"weight_ih_l0{sfx}")
            w_hh = getattr(self, f"weight_hh_l0{sfx}")
            # every frame's input projection at once, (B, T, 4H); the two biases stay two
            # parameters (XNNPACK's linear takes a constant bias, not a computed sum)
            xp = F.linear(x, w_ih, getattr(self, f"bias_ih_l0{sfx}") if self.bias else None)
            if self.bias:
                xp = xp + getattr(self, f"bias_hh_l0{sfx}")
            h = h0.narrow(0, d, 1).reshape(b, hid)
            c = c0.narrow(0, d, 1).reshape(b, hid)
            hs: list[torch.Tensor] = [x] * t
            for step in (range(t) if d == 0 else range(t - 1, -1, -1)):
                g = xp.narrow(1, step, 1).reshape(b, 4 * hid) + F.linear(h, w_hh)
                s = torch.sigmoid(g)
                c = s[:, hid : 2 * hid] * c + s[:, :hid] * torch.tanh(g[:, 2 * hid : 3 * hid])
                h = s[:, 3 * hid :] * torch.tanh(c)
                hs[step] = h.reshape(b, 1, hid)
            outs.append(cat_tree(hs, 1))
            hn.append(h.reshape(1, b, hid))
            cn.append(c.reshape(1, b, hid))
        out = outs[0] if dirs == 1 else torch.cat(outs, dim=-1)
        if dirs == 1:
            return out, (hn[0], cn[0])
        return out, (torch.cat(hn, 0), torch.cat(cn, 0))


class LSTMStack(nn.Module):
    """``L`` :class:`ExportableLSTM` layers of ``hidden`` units per direction, ``nn.LSTM``'s
    call convention: ``forward(x (B, T, in), (h, c) (L·D, B, H) or None) -> (out (B, T, D·H),
    (h, c))``; dropout between layers in training, as ``nn.LSTM(dropout=...)``."""

    def __init__(self, input_size: int, hidden: int, layers: int, bidirectional: bool = True,
                 dropout: float = 0.0):
        super().__init__()
        if min(input_size, hidden, layers) < 1:
            raise ValueError(f"LSTMStack sizes must be >= 1, got input {input_size}, hidden "
                             f"{hidden}, layers {layers}")
        self.input_size, self.bidirectional = int(input_size), bool(bidirectional)
        self.dropout = float(dropout)
        d = 2 if bidirectional else 1
        self.layers = nn.ModuleList(
            ExportableLSTM(input_size if i == 0 else d * hidden, hidden, bidirectional)
            for i in range(layers))

    @property
    def hidden(self) -> int:
        return int(self.layers[0].hidden_size)

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    def forward(self, x: torch.Tensor, hx: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        d = self.directions
        hs, cs = [], []
        for i, layer in enumerate(self.layers):
            if i and self.dropout and self.training:
                x = F.dropout(x, self.dropout, training=True)
            state = None if hx is None else (hx[0][i * d : (i + 1) * d],
                                             hx[1][i * d : (i + 1) * d])
            x, (h, c) = layer(x, state)
            hs.append(h)
            cs.append(c)
        return x, (torch.cat(hs, 0), torch.cat(cs, 0))

    # ---- compression --------------------------------------------------------------------
    def remove_layer(self, index: int) -> None:
        """Drop layer `index` (>= 1: every later layer reads ``D·H`` features, as the first
        layer's successor does; the first layer reads the network's input)."""
        n = len(self.layers)
        if not 1 <= index < n:
            raise ValueError(f"layer {index}: removable layers are 1..{n - 1} of {n} (the first "
                             "reads the input features; one layer stays)")
        del self.layers[index]

    @torch.no_grad()
    def narrow(self, hidden: int) -> list[torch.Tensor]:
        """Keep `hidden` units per direction in every layer: a unit's importance is the norm of
        its four gate rows of ``weight_hh`` plus the norm of its column of ``weight_hh`` (what
        it receives and what it sends around the loop); the kept units' gate rows are sliced
        from ``weight_ih`` / ``weight_hh`` / the biases, their columns from ``weight_hh`` and
        the next layer's ``weight_ih`` (both directions). Returns the kept indices of the last
        layer's output features (``D·hidden`` of ``D·H``) for the reader after the stack."""
        old = self.hidden
        if not 1 <= hidden <= old:
            raise ValueError(f"hidden={hidden}; expected 1..{old}")
        d = self.directions
        prev: torch.Tensor | None = None  # kept input features of the current layer
        new_layers = []
        for layer in self.layers:
            keep_feat = []
            new = ExportableLSTM(layer.input_size if prev is None else d * hidden, hidden,
                                 self.bidirectional)
            for k in range(d):
                sfx = "_reverse" if k else ""
                w_hh = getattr(layer, f"weight_hh_l0{sfx}")  # (4H, H)
                rows = w_hh.reshape(4, old, old).pow(2).sum((0, 2))  # what a unit receives
                cols = w_hh.pow(2).sum(0)  # what it sends
                keep = torch.sort(torch.topk(rows + cols, hidden).indices).values
                gate_rows = torch.cat([keep + g * old for g in range(4)])
                w_ih = getattr(layer, f"weight_ih_l0{sfx}")[gate_rows]
                if prev is not None:
                    w_ih = w_ih[:, prev]
                getattr(new, f"weight_ih_l0{sfx}").copy_(w_ih)
                getattr(new, f"weight_hh_l0{sfx}").copy_(w_hh[gate_rows][:, keep])
                for name in ("bias_ih", "bias_hh"):
                    getattr(new, f"{name}_l0{sfx}").copy_(getattr(layer, f"{name}_l0{sfx}")
                                                          [gate_rows])
                keep_feat.append(keep + k * old)
            prev = torch.cat(keep_feat)
            new_layers.append(new.to(layer.weight_hh_l0.dtype))
        self.layers = nn.ModuleList(new_layers)
        assert prev is not None
        return prev

    # ---- checkpoints --------------------------------------------------------------------
    def upgrade_state(self, prefix: str, state: dict[str, torch.Tensor]
                      ) -> dict[str, torch.Tensor]:
        """A state dict whose keys under `prefix` are a multi-layer ``nn.LSTM``'s
        (``weight_ih_l{k}[_reverse]``...) with those keys renamed to this stack's
        (``layers.{k}.weight_ih_l0[_reverse]``); other keys unchanged."""
        out = {}
        for key, val in state.items():
            m = _OLD_KEY.match(key[len(prefix):]) if key.startswith(prefix) else None
            if m is None:
                out[key] = val
            else:
                out[f"{prefix}layers.{m[2]}.{m[1]}_l0{m[3] or ''}"] = val
        return out

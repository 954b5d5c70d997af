"""Architecture units: what an architecture search may remove, duplicate or narrow.

A *unit* is one layer of a model that can be removed or duplicated (a residual layer, a
decoder block, a Griffin-Lim iteration), or one width of it (channels, harmonics) that can be
narrowed. A model exposes ``units() -> list[Unit]`` and
``apply_action(action, unit, factor)``; a search scores actions on units by name and kind
without knowing the model family. Family-agnostic: imports only the standard library and
torch.

Narrowing keeps the channels of largest importance, the L2 norm of the weights producing each
channel (Torch-Pruning's magnitude criterion), and slices every tensor that writes or reads
those channels. A :class:`ChannelGroup` lists those tensors as :class:`Slot` s of a state dict
(key, axis, offset); :func:`channel_importance`, :func:`select_channels` and
:func:`slice_state` turn a list of groups into the narrowed state dict, which a model loads
into a copy of itself built at the new width::

    groups = model.width_groups(new_width)
    plan = [(g, select_channels(channel_importance(state, g), g.target, g.blocks))
            for g in groups]
    new_state = slice_state(state, plan)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

ACTIONS = ("remove", "duplicate", "narrow")


@dataclass(frozen=True)
class Unit:
    """One evolvable unit of a model.

    Attributes:
        name: unique stable dotted name (``"decoder.blocks.1"``, ``"vocoder.width"``).
        kind: latency-table kind (``"res"``, ``"xattn"``, ``"voc_layer"``, ``"width"``...).
        component: the part of the model it belongs to (``"decoder"``...).
        position: index within its list (0 for width units).
        actions: the subset of :data:`ACTIONS` allowed right now.
        width: channels the unit runs at (width units: the current width; harmonics: count).
        module: dotted path (``model.get_submodule``) of the module implementing the unit,
            for latency probes with forward hooks; None for width units.
    """

    name: str
    kind: str
    component: str
    position: int
    actions: tuple[str, ...]
    width: int
    module: str | None


def _min_aligned(align: int, minimum: int) -> int:
    return -(-minimum // align) * align


def narrowed_width(width: int, factor: float, align: int, minimum: int) -> int:
    """``width * factor`` rounded down to a multiple of `align`, at least `minimum` (rounded
    up to a multiple of `align`); ValueError if that does not shrink `width`."""
    if not 0.0 < factor < 1.0:
        raise ValueError(f"factor={factor!r}; expected 0 < factor < 1")
    if align < 1 or minimum < 1 or width < 1:
        raise ValueError(f"width={width}, align={align}, minimum={minimum}; expected >= 1")
    new = max(int(math.floor(width * factor / align)) * align, _min_aligned(align, minimum))
    if new >= width:
        raise ValueError(f"cannot narrow width {width} by factor {factor}: the smallest "
                         f"allowed width is {_min_aligned(align, minimum)} (a multiple of "
                         f"{align}, at least {minimum})")
    return new


def can_narrow(width: int, align: int, minimum: int) -> bool:
    """Whether some factor in (0, 1) narrows `width` (see :func:`narrowed_width`)."""
    return _min_aligned(align, minimum) < width


@dataclass(frozen=True)
class Slot:
    """Where a channel group lives in one tensor: ``state[key]``, along ``axis``, the
    ``size`` entries from ``offset`` (a tensor may hold several groups, e.g. the two gate
    halves of a conv's output). ``producer``: the tensor writes the channels (its slices
    count toward the importance; weights only). ``scale``: multiply the whole narrowed tensor
    by this (attention keeps its logits when its head width shrinks)."""

    key: str
    axis: int
    offset: int = 0
    producer: bool = False
    scale: float = 1.0


@dataclass(frozen=True)
class ChannelGroup:
    """``size`` channels kept or dropped together in every slot, ``target`` of them kept.

    ``blocks``: the channels form that many equal contiguous blocks (attention heads) and
    each block keeps ``target / blocks`` of its own, so the per-head layout stays valid.
    """

    name: str
    size: int
    target: int
    slots: tuple[Slot, ...]
    blocks: int = 1

    def __post_init__(self) -> None:
        if not 0 < self.target <= self.size:
            raise ValueError(f"group {self.name!r}: target {self.target} not in 1..{self.size}")
        if self.size % self.blocks or self.target % self.blocks:
            raise ValueError(f"group {self.name!r}: size {self.size} and target {self.target} "
                             f"must be multiples of blocks={self.blocks}")

    def with_prefix(self, prefix: str) -> ChannelGroup:
        """The same group with every slot key prefixed (a component's keys in its parent)."""
        slots = tuple(Slot(prefix + s.key, s.axis, s.offset, s.producer, s.scale)
                      for s in self.slots)
        return ChannelGroup(self.name, self.size, self.target, slots, self.blocks)


def _part(tensor: torch.Tensor, slot: Slot, size: int) -> torch.Tensor:
    return tensor.narrow(slot.axis, slot.offset, size)


def channel_importance(state: Mapping[str, torch.Tensor], group: ChannelGroup) -> torch.Tensor:
    """``(size,)``: the L2 norm of the producing weights of each channel of `group`."""
    total = torch.zeros(group.size, dtype=torch.float64)
    for slot in group.slots:
        if not slot.producer:
            continue
        part = _part(state[slot.key], slot, group.size).detach().to("cpu", torch.float64)
        dims = [d for d in range(part.dim()) if d != slot.axis]
        total += (part**2).sum(dim=dims) if dims else part**2
    return total.sqrt()


def select_channels(importance: torch.Tensor, target: int, blocks: int = 1) -> torch.Tensor:
    """Indices (int64, ascending) of the `target` most important channels, ``target / blocks``
    from each of `blocks` equal blocks; ties keep the lower index."""
    size = importance.shape[0]
    if size % blocks or target % blocks or not 0 < target <= size:
        raise ValueError(f"cannot keep {target} of {size} channels in {blocks} blocks")
    per, keep = size // blocks, target // blocks
    out = []
    for b in range(blocks):
        order = torch.argsort(importance[b * per : (b + 1) * per], descending=True, stable=True)
        out.append(order[:keep] + b * per)
    return torch.sort(torch.cat(out)).values


def slice_state(
    state: Mapping[str, torch.Tensor], plan: Sequence[tuple[ChannelGroup, torch.Tensor]]
) -> dict[str, torch.Tensor]:
    """A copy of `state` keeping, in every slot of every group, the channels given for it.

    Parts of an axis that no slot covers are kept whole. Keys no slot names are unchanged.
    """
    per_key: dict[str, dict[int, list[tuple[int, int, torch.Tensor]]]] = {}
    scales: dict[str, float] = {}
    for group, keep in plan:
        keep = keep.to(torch.int64).cpu()
        if keep.numel() != group.target or (keep.numel() and int(keep.max()) >= group.size):
            raise ValueError(f"group {group.name!r}: keep has {keep.numel()} indices < "
                             f"{group.size}, expected {group.target}")
        for slot in group.slots:
            if slot.key not in state:
                raise KeyError(f"group {group.name!r}: no tensor {slot.key!r} in the state")
            per_key.setdefault(slot.key, {}).setdefault(slot.axis, []).append(
                (slot.offset, group.size, slot.offset + keep))
            scales[slot.key] = scales.get(slot.key, 1.0) * slot.scale
    out = dict(state)
    for key, axes in per_key.items():
        t = state[key]
        for axis, parts in axes.items():
            parts.sort(key=lambda p: p[0])
            idx: list[torch.Tensor] = []
            pos = 0
            for offset, size, kept in parts:
                if offset < pos or offset + size > t.shape[axis]:
                    raise ValueError(f"{key!r} axis {axis}: slots overlap or exceed its "
                                     f"{t.shape[axis]} entries")
                idx += [torch.arange(pos, offset), kept]
                pos = offset + size
            idx.append(torch.arange(pos, t.shape[axis]))
            t = t.index_select(axis, torch.cat(idx).to(t.device))
        if scales[key] != 1.0:
            t = t * scales[key]
        out[key] = t
    return out

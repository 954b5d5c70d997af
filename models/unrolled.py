"""Helpers for recurrent layers that ``torch.export`` sees unrolled frame by frame
(:class:`models.separation.lstm.ExportableLSTM`, :class:`models.sts.net.ExportableGRU`).

The unrolled recurrence must stay in ops XNNPACK delegates; joining the frames' outputs is
the one step that needs care: XNNPACK's concatenation takes at most :data:`CAT_MAX` tensors,
and a longer ``torch.cat`` is left on a portable kernel, splitting the delegate.
"""

from __future__ import annotations

import torch

#: the most tensors one XNNPACK concatenation takes (executorch's CatConfig)
CAT_MAX = 5


def cat_tree(parts: list[torch.Tensor], dim: int) -> torch.Tensor:
    """``torch.cat(parts, dim)`` as a tree of concatenations of at most :data:`CAT_MAX`
    tensors (same result, every node delegable)."""
    while len(parts) > 1:
        parts = [torch.cat(parts[i : i + CAT_MAX], dim) if len(parts[i : i + CAT_MAX]) > 1
                 else parts[i] for i in range(0, len(parts), CAT_MAX)]
    return parts[0]

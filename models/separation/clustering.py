"""Objectives and test-time clustering of the Chimera network (Luo et al., "Deep clustering and
conventional networks for music separation: stronger together", §2; issue 25, item 3).

Shapes: a batch of ``B`` mixtures, ``N = T·F`` time-frequency bins each, ``D``-dimensional
embeddings ``V`` ``(B, N, D)`` (unit norm per bin), ``C`` sources.

* :func:`dc_loss` — eq. (1), ``||V Vᵀ − Y Yᵀ||²_F`` with ``Y`` ``(B, N, C)`` the one-hot
  dominant-source labels, computed in its low-rank form
  ``||Vᵀ V||²_F − 2 ||Vᵀ Y||²_F + ||Yᵀ Y||²_F`` (Hershey et al.'s expansion): ``D×D``, ``D×C`` and
  ``C×C`` products, never the ``N×N`` affinity matrices.
* :func:`msa_loss` — eq. (2), ``Σ_c ||R_c − M_c ⊙ S||²``;
  :func:`mmsa_loss` — eq. (3), ``Σ_c ||(O_c − M_c) ⊙ S||²`` with the reference mask ``O_c``
  the Wiener-like mask ``R_c² / Σ_c' R_c'²`` that §3.4 trained with (or, as an option, the
  truncated amplitude mask ``clip(R_c / S, 0, 1)``, the mask that brings the mixture closest
  to the source where a mask in [0, 1] can).
* :func:`chimera_loss` — eq. (4), ``α L_DC / (T·F) + (1 − α) L_MI``.
* :func:`kmeans_masks` — the DC output at test time: K-means on the embeddings of one
  recording, the clusters as binary masks ``(C, N)``.

Every loss is summed over bins and sources as printed and averaged over the batch.
"""

from __future__ import annotations

import torch

from models.separation import SeparationError

_EPS = 1e-8


def _check(v: torch.Tensor, y: torch.Tensor) -> None:
    if v.dim() != 3 or y.dim() != 3 or v.shape[:2] != y.shape[:2]:
        raise SeparationError(f"embeddings (B, N, D) and labels (B, N, C) must share B and N, "
                              f"got {tuple(v.shape)} and {tuple(y.shape)}")


def dc_loss(v: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Eq. (1) per mixture, averaged over the batch, in the low-rank form (module docstring)."""
    _check(v, y)
    y = y.to(v.dtype)
    vtv = v.transpose(1, 2) @ v  # (B, D, D)
    vty = v.transpose(1, 2) @ y  # (B, D, C)
    yty = y.transpose(1, 2) @ y  # (B, C, C)
    per = vtv.pow(2).sum((1, 2)) - 2 * vty.pow(2).sum((1, 2)) + yty.pow(2).sum((1, 2))
    return per.mean()


def dominant_labels(sources: torch.Tensor) -> torch.Tensor:
    """One-hot ``Y`` ``(B, N, C)`` from source magnitudes ``(B, C, N)``: the loudest source of
    each bin (§2.1: "dominated by source j")."""
    if sources.dim() != 3:
        raise SeparationError(f"source magnitudes must be (B, C, N), got {tuple(sources.shape)}")
    idx = sources.argmax(dim=1)  # (B, N)
    return torch.nn.functional.one_hot(idx, sources.shape[1]).to(sources.dtype)


def _mi_check(masks: torch.Tensor, refs: torch.Tensor, mix: torch.Tensor) -> None:
    if masks.shape != refs.shape or masks.dim() != 3 or mix.shape != (masks.shape[0],
                                                                        masks.shape[2]):
        raise SeparationError(f"masks and references (B, C, N) and mixture (B, N) expected, "
                              f"got {tuple(masks.shape)}, {tuple(refs.shape)}, "
                              f"{tuple(mix.shape)}")


def msa_loss(masks: torch.Tensor, refs: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
    """Eq. (2): masks and reference magnitudes ``(B, C, N)``, mixture magnitude ``(B, N)``."""
    _mi_check(masks, refs, mix)
    return (refs - masks * mix.unsqueeze(1)).pow(2).sum((1, 2)).mean()


#: eq. (3)'s reference masks: "wiener" (what §3.4 trained with: the Wiener-like mask of
#: Erdogan et al. 2015, ``R_c² / Σ_c' R_c'²``) or "amplitude" (``clip(R_c / S, 0, 1)``)
REFERENCES = ("wiener", "amplitude")


def reference_masks(refs: torch.Tensor, mix: torch.Tensor, kind: str = "wiener"
                    ) -> torch.Tensor:
    """Eq. (3)'s reference masks ``O_c`` ``(B, C, N)``, of `kind` (:data:`REFERENCES`)."""
    if kind == "wiener":
        power = refs.pow(2)
        return power / power.sum(dim=1, keepdim=True).clamp_min(_EPS)
    if kind == "amplitude":
        return (refs / mix.unsqueeze(1).clamp_min(_EPS)).clamp(0.0, 1.0)
    raise SeparationError(f"reference mask {kind!r}; valid: {', '.join(REFERENCES)}")


def mmsa_loss(masks: torch.Tensor, refs: torch.Tensor, mix: torch.Tensor,
              reference: str = "wiener") -> torch.Tensor:
    """Eq. (3): the error against the `reference` masks weighted by the mixture magnitude."""
    _mi_check(masks, refs, mix)
    o = reference_masks(refs, mix, reference)
    return ((o - masks) * mix.unsqueeze(1)).pow(2).sum((1, 2)).mean()


def chimera_loss(l_dc: torch.Tensor, l_mi: torch.Tensor, bins: int, alpha: float
                 ) -> torch.Tensor:
    """Eq. (4): ``α L_DC / TF + (1 − α) L_MI``; ``bins`` = T·F of one mixture."""
    if not 0.0 <= alpha <= 1.0:
        raise SeparationError(f"alpha={alpha!r}; expected 0 <= alpha <= 1")
    if bins < 1:
        raise SeparationError(f"bins={bins!r}; expected >= 1")
    return alpha * l_dc / bins + (1.0 - alpha) * l_mi


def kmeans_masks(v: torch.Tensor, k: int = 2, iterations: int = 50, seed: int = 0
                 ) -> torch.Tensor:
    """Binary masks ``(k, N)`` from embeddings ``(N, D)`` of one recording: K-means (k-means++
    seeding from `seed`, Lloyd iterations until the assignment stops changing). The order of
    the clusters is arbitrary (§3.4: scores take the best permutation)."""
    if v.dim() != 2 or v.shape[0] < k or k < 1:
        raise SeparationError(f"embeddings (N, D) with N >= k={k} expected, got {tuple(v.shape)}")
    x = v.detach().to(torch.float64)
    g = torch.Generator().manual_seed(seed)
    centres = [x[int(torch.randint(x.shape[0], (1,), generator=g))]]
    for _ in range(1, k):
        d2 = torch.cdist(x, torch.stack(centres)).pow(2).min(dim=1).values
        if float(d2.sum()) <= 0:
            centres.append(x[int(torch.randint(x.shape[0], (1,), generator=g))])
            continue
        centres.append(x[int(torch.multinomial(d2 / d2.sum(), 1, generator=g))])
    c = torch.stack(centres)
    assign = torch.full((x.shape[0],), -1, dtype=torch.long)
    for _ in range(max(1, iterations)):
        new = torch.cdist(x, c).argmin(dim=1)
        if torch.equal(new, assign):
            break
        assign = new
        for j in range(k):
            members = x[assign == j]
            if members.shape[0]:
                c[j] = members.mean(dim=0)
    return torch.nn.functional.one_hot(assign, k).T.to(v.dtype)


class ChimeraNet(torch.nn.Module):
    """The Chimera network (§2.2, Fig. 1): a BLSTM body, a linear layer giving ``Z`` — a
    ``D``-dimensional vector per time-frequency bin — and two heads:

    * deep clustering: ``V = normalise(tanh(Z))`` per bin (unit length), for :func:`dc_loss`
      and, at test time, :func:`kmeans_masks`;
    * mask inference: ``F`` fully-connected ``D × C`` layers, one per frequency, then a softmax
      over the ``C`` sources: the masks ``M^(c)`` for :func:`msa_loss` / :func:`mmsa_loss`.

    Input: features ``(batch, T, features)`` (the paper: a 150-band mel spectrogram and its
    deltas); output bins ``F = bins``. Paper size: 4 BLSTM layers of 500 units per direction,
    ``D = 20``, ``C = 2``.
    """

    def __init__(self, features: int, bins: int, hidden: int = 500, layers: int = 4,
                 embedding: int = 20, sources: int = 2, dropout: float = 0.0,
                 bidirectional: bool = True):
        super().__init__()
        from models.separation.lstm import LSTMStack

        if min(features, bins, hidden, layers, embedding, sources) < 1:
            raise SeparationError("ChimeraNet sizes must be >= 1")
        self.bins, self.embedding, self.sources = bins, embedding, sources
        self.body = LSTMStack(features, hidden, layers, bidirectional,
                              dropout if layers > 1 else 0.0)
        self.to_z = torch.nn.Linear(self.body.directions * hidden, bins * embedding)
        g = torch.Generator().manual_seed(0)
        bound = 1.0 / embedding**0.5
        self.mi_weight = torch.nn.Parameter(
            (torch.rand(bins, embedding, sources, generator=g) * 2 - 1) * bound)
        self.mi_bias = torch.nn.Parameter(torch.zeros(bins, sources))

    def forward(self, feats: torch.Tensor,
                hx: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Features ``(batch, T, features)`` and the body's state (None: zeros) →
        ``(Z (batch, T, F, D), masks (batch, T, F, C), state)``; the DC head's unit-norm
        embeddings are :meth:`embed` ``(Z)`` (the mask-inference program does not need them)."""
        if feats.dim() != 3:
            raise SeparationError(f"features must be (batch, T, features), got "
                                  f"{tuple(feats.shape)}")
        b, t, _ = feats.shape
        h, state = self.body(feats, hx)  # (batch, T, directions · hidden)
        z = self.to_z(h).reshape(b, t, self.bins, self.embedding)  # (batch, T, F, D)
        logits = torch.einsum("btfd,fdc->btfc", z, self.mi_weight) + self.mi_bias
        return z, torch.softmax(logits, dim=-1), state

    @staticmethod
    def embed(z: torch.Tensor) -> torch.Tensor:
        """The deep-clustering head: ``V = normalise(tanh(Z))`` over the last axis."""
        return torch.nn.functional.normalize(torch.tanh(z), dim=-1)

    @torch.no_grad()
    def narrow_embedding(self, embedding: int) -> None:
        """Keep `embedding` of the ``D`` dimensions of ``Z`` (the same ones in every bin): those
        whose ``to_z`` rows and mask-inference weights have the largest norm (summed over
        bins). Both heads read the kept dimensions; ``to_z`` — ``bins × D`` outputs a frame, the
        network's largest layer at the demo size — shrinks in proportion."""
        old_d = self.embedding
        if not 1 <= embedding <= old_d:
            raise ValueError(f"embedding={embedding}; expected 1..{old_d}")
        w = self.to_z.weight.reshape(self.bins, old_d, -1)
        score = w.pow(2).sum((0, 2)) + self.mi_weight.pow(2).sum((0, 2))
        keep = torch.sort(torch.topk(score, embedding).indices).values
        old = self.to_z
        new = torch.nn.Linear(old.in_features, self.bins * embedding).to(old.weight.dtype)
        new.weight.copy_(w[:, keep].reshape(self.bins * embedding, -1))
        new.bias.copy_(old.bias.reshape(self.bins, old_d)[:, keep].reshape(-1))
        self.to_z = new
        self.mi_weight = torch.nn.Parameter(self.mi_weight[:, keep].clone())
        self.embedding = int(embedding)

    @torch.no_grad()
    def narrow(self, hidden: int) -> None:
        """Keep `hidden` units per direction in every body layer
        (:meth:`~models.separation.lstm.LSTMStack.narrow`) and the matching columns of
        ``to_z``."""
        keep = self.body.narrow(hidden)
        old = self.to_z
        new = torch.nn.Linear(keep.numel(), old.out_features).to(old.weight.dtype)
        new.weight.copy_(old.weight[:, keep])
        new.bias.copy_(old.bias)
        self.to_z = new

"""Uniform FIR analysis / synthesis filter banks for channel-wise subband input (CWS §2.3).

A pseudo-QMF (PQMF) bank: K analysis filters ``h_k`` and K synthesis filters ``g_k`` are
cosine modulations of one linear-phase low-pass prototype ``p`` of ``N`` taps (Nguyen 1994;
Lin & Vaidyanathan 1998)::

    h_k[n] = 2 p[n] cos((2k + 1) π / (2K) (n - (N - 1) / 2) + (-1)^k π / 4)
    g_k[n] = h_k[N - 1 - n]                                     k = 0 .. K - 1

The alternating ±π/4 phases make the aliasing between adjacent bands cancel; what is left is
the ripple of the overall response, the residue of that cancellation and the aliasing of
non-adjacent bands, all set by the prototype. The paper designs its banks by Moazzen &
Agathoklis' optimisation [21]; here the prototype is designed for near-perfect reconstruction
in two steps (:func:`pqmf_prototype`):

1. a Kaiser-windowed sinc whose cutoff and β minimise the measured reconstruction error of the
   whole analysis → synthesis chain on unit impulses at every polyphase phase (the error for a
   white input), scaled to unit gain (:func:`kaiser_prototype`, Lin & Vaidyanathan's family
   with their criterion replaced by the chain's error). This tops out near 68 dB;
2. from there, every tap refined by L-BFGS on that error plus the stopband energy
   (:func:`optimise_prototype`).

The default length is ``16 K`` taps (32 / 64 / 128 for K = 2 / 4 / 8) and those prototypes are
stored: 88.6 / 90.8 / 94.1 dB reconstruction SNR on white noise, stopband below -95 dB from
1.1 π/K (checked by the tests). Other lengths are designed on first use (seconds).

Both directions are plain convolutions, so they export and lower like any conv layer:
analysis is ``conv1d(stride=K)`` with the reversed analysis filters (that is, ``g_k``) and
synthesis is ``conv_transpose1d(stride=K)`` with ``K g_k`` (computed as a GEMM and an
overlap-add). Channel layout follows eq. (6): a ``(B, C, T)`` input becomes ``(B, C·K, L)``
with channel ``c·K + k`` holding subband ``k``
(0 = lowest) of input channel ``c``.

Alignment: the input is zero-padded by ``N - 1`` samples on the left and enough on the right
that every subband sample whose filter window touches the signal is computed
(``L = (T + N - 2) // K + 1`` samples, for any T, divisible by K or not). The analysis →
synthesis chain is then the bank's own near-perfect-reconstruction response applied to the
zero-extended signal with no delay: synthesis crops ``[N - 1, N - 1 + T)`` and returns the
input's length, aligned sample for sample, edges included. K = 1 is the identity (no filter,
``L = T``).
"""

from __future__ import annotations

import functools
import logging

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import minimize
from scipy.signal.windows import kaiser
from torch import nn

from models.separation import SeparationError
from models.separation.stft import polyphase_weight, transposed_conv1d

log = logging.getLogger(__name__)

SUBBANDS = (1, 2, 4, 8)
TAPS_PER_BAND = 16  # default prototype length: 16 taps per band (32 / 64 / 128)


def default_taps(k: int) -> int:
    """Default prototype length for ``k`` bands (0 for the identity, ``k = 1``)."""
    return 0 if k == 1 else TAPS_PER_BAND * k


def kaiser_lowpass(taps: int, cutoff: float, beta: float) -> np.ndarray:
    """Kaiser-windowed ideal low-pass of ``taps`` taps, ``cutoff`` in rad/sample (float64)."""
    n = np.arange(taps) - (taps - 1) / 2
    return cutoff / np.pi * np.sinc(cutoff * n / np.pi) * kaiser(taps, beta)


def _phases(k: int, taps: int) -> np.ndarray:
    """Modulation phases of the K filters, ``(k, taps)`` (module docstring)."""
    n = np.arange(taps) - (taps - 1) / 2
    band = np.arange(k)[:, None]
    return (2 * band + 1) * np.pi / (2 * k) * n[None, :] + (-1.0) ** band * np.pi / 4


def cosine_modulate(prototype: np.ndarray, k: int) -> np.ndarray:
    """Analysis filters ``h_k`` of the PQMF bank, ``(k, taps)`` (module docstring)."""
    return 2 * prototype[None, :] * np.cos(_phases(k, prototype.shape[0]))


def _chain(prototype: torch.Tensor, k: int) -> torch.Tensor:
    """Torch version of :func:`chain_responses` (differentiable in the prototype)."""
    taps = prototype.shape[0]
    cos = torch.from_numpy(np.cos(_phases(k, taps))).to(prototype)
    g = (2 * prototype * cos).flip(-1)  # (k, taps): g_k = reversed h_k
    phase = torch.from_numpy((np.arange(taps)[None, :] % k) == np.arange(k)[:, None])
    n = 2 * taps
    masked = torch.fft.rfft(g[None] * phase[:, None].to(g), n)  # (phases, bands, n/2 + 1)
    rev = torch.fft.rfft(g.flip(-1), n)  # (bands, n/2 + 1)
    return k * torch.fft.irfft((masked * rev[None]).sum(dim=1), n)[:, : 2 * taps - 1]


def chain_responses(prototype: np.ndarray, k: int) -> np.ndarray:
    """Responses of analysis → synthesis to a unit impulse at each of the k phases, ``(k, 2N - 1)``.

    Row r is the output around an impulse at a sample ``≡ r (mod k)`` (index ``N - 1`` is the
    impulse's own sample): for the chain :class:`PQMF` runs, with filters ``g_k`` (analysis
    correlates with them, synthesis convolves with ``k g_k``), that is
    ``y_r[d] = k Σ_k Σ_{a ≡ r} g_k[a] g_k[a + d]``, computed with FFTs in float64.
    """
    with torch.no_grad():
        return _chain(torch.from_numpy(np.asarray(prototype, dtype=np.float64)), k).numpy()


def _analysis(x: torch.Tensor, filters: torch.Tensor, k: int) -> torch.Tensor:
    """``(N, 1, T) -> (N, k, L)`` with the padding of the module docstring."""
    taps, length = filters.shape[-1], x.shape[-1]
    n_sub = (length + taps - 2) // k + 1
    right = (n_sub - 1) * k + 1 - length
    return F.conv1d(F.pad(x, (taps - 1, right)), filters, stride=k)


def _synthesis(y: torch.Tensor, poly: torch.Tensor, taps: int, length: int) -> torch.Tensor:
    """``(N, k, L) -> (N, 1, length)``, cropping the left padding of :func:`_analysis`:
    ``conv_transpose1d(y, filters, stride=k)`` in its polyphase form (``poly``, see
    :func:`models.separation.stft.transposed_conv1d`; XNNPACK runs the one-output-channel
    deconvolution very slowly)."""
    x = transposed_conv1d(y, poly, taps - 1 + length)  # (N, taps - 1 + length)
    return x[:, None, taps - 1 :]


def reconstruction_snr(prototype: np.ndarray, k: int) -> float:
    """White-noise reconstruction SNR (dB) of the bank built on ``prototype``.

    The mean over phases of the squared error of :func:`chain_responses` against the impulse:
    for a white input, the error power relative to the signal power.
    """
    y = chain_responses(prototype, k)
    y[:, prototype.shape[0] - 1] -= 1.0
    return -10.0 * float(np.log10(max(float((y**2).sum()) / k, 1e-30)))


def kaiser_prototype(k: int, taps: int) -> np.ndarray:
    """Kaiser-windowed sinc prototype whose cutoff and β minimise the reconstruction error.

    Nelder–Mead over (cutoff, β) from (0.55 π/K, 8.6), each candidate scaled to the chain's
    least-squares unit gain (the chain is quadratic in the prototype). About 68 dB
    (:func:`reconstruction_snr`) at any length from 16·K taps: the window family, not the
    length, limits it. The starting point of :func:`optimise_prototype`.
    """
    def scaled(params: np.ndarray) -> np.ndarray:
        proto = kaiser_lowpass(taps, float(params[0]) * np.pi / k, float(params[1]))
        y = chain_responses(proto, k)
        gain = float(y[:, taps - 1].sum() / (y * y).sum())
        return proto * np.sqrt(max(gain, 1e-12))

    def objective(params: np.ndarray) -> float:
        if not (0.2 < params[0] < 0.9 and 0.0 < params[1] < 20.0):
            return 10.0
        return -reconstruction_snr(scaled(params), k) / 10.0

    res = minimize(objective, np.array([0.55, 8.6]), method="Nelder-Mead",
                   options={"xatol": 1e-6, "fatol": 1e-5, "maxiter": 400})
    return scaled(res.x)


def optimise_prototype(k: int, taps: int, iterations: int = 3000,
                       stop_weight: float = 100.0) -> np.ndarray:
    """Near-perfect-reconstruction prototype: every tap refined from :func:`kaiser_prototype`.

    L-BFGS-B on the free half of the (symmetric) prototype, minimising
    ``log10(E + stop_weight · S)``: ``E`` the chain's white-noise reconstruction error
    (:func:`reconstruction_snr`), ``S`` the mean of ``|P(ω)|² / P(0)²`` over the stopband
    ``ω ∈ [π/K, π]`` (8·taps points). Gradients by autograd in float64. Seconds to a minute;
    the default lengths are stored (:data:`_STORED_HALVES`).
    """
    if taps % 2:
        raise SeparationError(f"the prototype length must be even, got {taps}")
    w = np.linspace(np.pi / k, np.pi, 8 * taps)
    n = np.arange(taps) - (taps - 1) / 2
    stop_basis = torch.from_numpy(np.cos(np.outer(w, n)))  # zero-phase amplitude response
    target = torch.zeros(k, 2 * taps - 1, dtype=torch.float64)
    target[:, taps - 1] = 1.0

    def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        half = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        proto = torch.cat([half, half.flip(0)])  # (taps,), symmetric
        err = ((_chain(proto, k) - target) ** 2).sum() / k
        stop = ((stop_basis @ proto) ** 2).mean() / proto.sum() ** 2
        loss = torch.log10(err + stop_weight * stop)
        loss.backward()
        assert half.grad is not None
        return float(loss.detach()), half.grad.numpy().copy()

    res = minimize(objective, kaiser_prototype(k, taps)[: taps // 2], jac=True,
                   method="L-BFGS-B", options={"maxiter": iterations, "maxfun": 2 * iterations})
    return np.concatenate([res.x, res.x[::-1]])


# Free halves of the default prototypes (16·K taps), made by optimise_prototype(k, 16 * k)
# (9 significant digits, float32 buffers need fewer): 88–94 dB reconstruction SNR on white
# noise, stopband below -95 dB from 1.1 π/K. Stored so building a bank costs nothing.
_STORED_HALVES: dict[tuple[int, int], tuple[float, ...]] = {
    (2, 32): (
        -1.57555098e-05, -5.53413645e-05, -0.000178259386, -0.0004809895, -0.000711876666,
        0.000199079907, 0.00333658022, 0.00707188578, 0.00529878785, -0.00820812412, -0.0291889677,
        -0.0362256518, -0.000904506476, 0.086509355, 0.197568664, 0.275971439,
    ),
    (4, 64): (
        -4.91779487e-06, -1.16636919e-05, -2.17400086e-05, -3.70844761e-05, -6.25920366e-05,
        -0.000105758514, -0.000171229164, -0.000250885191, -0.00031240981, -0.000292109249,
        -0.000101205813, 0.000347052601, 0.00108959052, 0.00205512688, 0.0030166637, 0.0035837989,
        0.00326057264, 0.00157888872, -0.00170817871, -0.00641864314, -0.0117875045, -0.0164384468,
        -0.0185328664, -0.0161035166, -0.0075221836, 0.00800303841, 0.030035908, 0.0567539233,
        0.085104573, 0.111277939, 0.131409494, 0.142355908,
    ),
    (8, 128): (
        -2.15959642e-06, -3.62403504e-06, -5.51396763e-06, -7.78074818e-06, -1.0378924e-05,
        -1.33054824e-05, -1.66396507e-05, -2.05750662e-05, -2.53629927e-05, -3.14950721e-05,
        -3.95446298e-05, -4.99400836e-05, -6.29114052e-05, -7.83060359e-05, -9.53825585e-05,
        -0.000112608768, -0.000127525148, -0.000136595513, -0.000135210069, -0.000117947546,
        -7.89141922e-05, -1.22984474e-05, 8.68893972e-05, 0.000221926539, 0.000393386265,
        0.000598194135, 0.000828719425, 0.00107210105, 0.0013099712, 0.00151863937, 0.00166985128,
        0.00173218455, 0.00167310219, 0.00146157633, 0.00107121708, 0.000483734234,
        -0.000307563579, -0.0012944784, -0.00245116302, -0.00373220915, -0.00507187482,
        -0.00638470557, -0.00756768357, -0.00850397724, -0.00906823524, -0.0091332189,
        -0.00857745763, -0.00729349512, -0.00519620578, -0.00223059935, 0.00162147178,
        0.00633626183, 0.0118452293, 0.0180346421, 0.0247478996, 0.0317906015, 0.0389381977,
        0.045945868, 0.0525601007, 0.058531306, 0.0636267023, 0.0676426659, 0.0704157555,
        0.0718316903,
    ),
}


@functools.cache
def _prototype(k: int, taps: int) -> np.ndarray:
    half = _STORED_HALVES.get((k, taps))
    if half is not None:
        return np.concatenate([half, half[::-1]])
    log.info("designing a %d-tap PQMF prototype for K=%d (not stored: a few seconds)", taps, k)
    return optimise_prototype(k, taps)


def pqmf_prototype(k: int, taps: int | None = None) -> np.ndarray:
    """The prototype low-pass of the K-band bank (float64, ``taps`` taps; default ``16 K``).

    The default lengths come from the stored table (made by :func:`optimise_prototype`); other
    even lengths of at least ``4 K`` taps are designed on first use and cached.
    """
    if k not in SUBBANDS or k == 1:
        raise SeparationError(f"a PQMF prototype needs k in (2, 4, 8), got k={k!r}")
    taps = default_taps(k) if taps is None else int(taps)
    if taps < 4 * k or taps % 2:
        raise SeparationError(f"a PQMF prototype for k={k} needs an even length of at least "
                              f"{4 * k} taps, got {taps}")
    return _prototype(k, taps).copy()


def _buffer(arr: np.ndarray) -> torch.Tensor:
    """float32 tensor with fresh contiguous strides (numpy's reversed views have negative ones,
    ``[None]`` axes zero ones) on the default device (``meta`` builds a shape-only model)."""
    src = torch.from_numpy(np.array(arr, dtype=np.float32, copy=True))
    return torch.empty(src.shape, dtype=torch.float32).copy_(src)


class PQMF(nn.Module):
    """K-band PQMF analysis / synthesis as ``conv1d`` / ``conv_transpose1d`` (CWS §2.3).

    ``analysis``: ``(B, C, T) -> (B, C·K, L)``, channel ``c·K + k`` (eq. 6);
    ``synthesis``: ``(B, C·K, L) -> (B, C, T)``; ``synthesis(analysis(x), T) ≈ x`` within
    about -90 dB at the default lengths, exactly for K = 1. The filters are fixed buffers.
    """

    analysis_filters: torch.Tensor
    synthesis_filters: torch.Tensor
    synthesis_poly: torch.Tensor
    _derived = ("synthesis_poly",)  # see ConvSTFT._derived

    def __init__(self, k: int = 4, taps: int | None = None):
        super().__init__()
        if k not in SUBBANDS:
            raise SeparationError(f"k must be one of {SUBBANDS}, got {k!r}")
        self.k = k
        self.taps = 0 if k == 1 else (default_taps(k) if taps is None else int(taps))
        if k == 1:
            filters = np.ones((1, 1, 1))
        else:
            h = cosine_modulate(pqmf_prototype(k, self.taps), k)
            filters = h[:, None, ::-1]  # (K, 1, taps): conv1d correlates, so reverse h_k
        self.register_buffer("analysis_filters", _buffer(filters))
        self.register_buffer("synthesis_filters", _buffer(filters * k))
        # synthesis as a convolution (transposed_conv1d)
        self.register_buffer("synthesis_poly", _buffer(polyphase_weight(filters * k, k)))

    def subband_length(self, length: int) -> int:
        """Samples per subband for an input of ``length`` samples."""
        return length if self.k == 1 else (length + self.taps - 2) // self.k + 1

    def analysis(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T)`` waveform → ``(B, C·K, L)`` subbands, channel ``c·K + k``."""
        if self.k == 1:
            return x
        b, c, t = x.shape
        y = _analysis(x.reshape(b * c, 1, t), self.analysis_filters, self.k)  # (B·C, K, L)
        return y.reshape(b, c * self.k, y.shape[-1])

    def synthesis(self, y: torch.Tensor, length: int) -> torch.Tensor:
        """``(B, C·K, L)`` subbands → ``(B, C, length)`` waveform, aligned with the input."""
        if self.k == 1:
            return y[..., :length]
        b, ck, n = y.shape
        c = ck // self.k
        x = _synthesis(y.reshape(b * c, self.k, n), self.synthesis_poly, self.taps, length)
        return x.reshape(b, c, length)  # (B, C, T)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Analysis then synthesis: ``(B, C, T) -> (B, C, T)`` (for checking the bank)."""
        return self.synthesis(self.analysis(x), x.shape[-1])

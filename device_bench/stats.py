"""Latency statistics and the replication check of the benchmark protocol.

* `summarize(latencies_ms)`: min, p50, p90, mean, trimmed mean (middle 80 %: the lowest and
  highest 10 % of samples dropped, as ExecuTorch's Android benchmark reports
  `trimmean_inference_latency(ms)`), population std, max.
* `replication_spread(values)`: (max - min) / min over the per-repeat medians. MLPerf Mobile
  asks for runs to be replicated and a result to be re-run when replicates differ by more than
  5 %; `REPLICATION_THRESHOLD` is that 5 %.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

REPLICATION_THRESHOLD = 0.05


@dataclass(frozen=True)
class LatencyStats:
    n: int
    min: float
    p50: float
    p90: float
    mean: float
    trimmed_mean: float
    std: float
    max: float

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between order statistics."""
    if not values:
        raise ValueError("percentile of an empty sequence")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q={q}; expected 0..100")
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def trimmed_mean(values: Sequence[float], keep: float = 0.8) -> float:
    """Mean of the middle `keep` fraction: floor(n·(1-keep)/2) samples cut from each end."""
    if not values:
        raise ValueError("trimmed mean of an empty sequence")
    xs = sorted(values)
    cut = int(math.floor(len(xs) * (1.0 - keep) / 2.0 + 1e-9))
    mid = xs[cut : len(xs) - cut] if len(xs) - 2 * cut > 0 else xs
    return sum(mid) / len(mid)


def summarize(latencies_ms: Sequence[float]) -> LatencyStats:
    """Statistics of one series of per-iteration latencies (milliseconds)."""
    xs = [float(x) for x in latencies_ms]
    if not xs:
        raise ValueError("no latencies to summarize")
    if any(not math.isfinite(x) or x < 0 for x in xs):
        raise ValueError("latencies must be finite and non-negative")
    mean = sum(xs) / len(xs)
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / len(xs))
    return LatencyStats(
        n=len(xs),
        min=min(xs),
        p50=percentile(xs, 50),
        p90=percentile(xs, 90),
        mean=mean,
        trimmed_mean=trimmed_mean(xs),
        std=std,
        max=max(xs),
    )


def replication_spread(values: Sequence[float]) -> float:
    """Relative spread (max - min) / min of per-repeat values; 0 for fewer than two."""
    if len(values) < 2:
        return 0.0
    lo = min(values)
    if lo <= 0:
        raise ValueError("replication spread needs positive values")
    return (max(values) - lo) / lo


def real_time_factor(latency_ms: float, audio_seconds: float) -> float:
    """RTF = processing time / audio duration (< 1 is faster than real time)."""
    if audio_seconds <= 0:
        raise ValueError(f"audio_seconds={audio_seconds}; expected > 0")
    return latency_ms / 1000.0 / audio_seconds

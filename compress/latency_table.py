"""Latency tables: measured cost per (block kind, input shape, dtype) on one target.

The architecture search (LHQ-SVC §III.A) needs the latency of many candidate architectures.
Measuring each one is slow, so — as SnapFusion does — each evolvable block kind is measured
once at the run's shapes and precision, the non-evolvable rest of the model is measured as a
``base`` entry, and an architecture's latency is predicted as ``base + Σ block latencies``.
The prediction is validated against whole-model measurements (``prediction_error_pct``).

Tables are saved as JSON per device fingerprint (target string + device identity), so a phone's
table is reused later without the phone.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from compress.errors import CompressError

SCHEMA = "lhq-mobile/latency-table/v1"


@dataclass(frozen=True)
class LatencyStats:
    """Statistics of repeated measurements, in milliseconds."""

    p50_ms: float
    mean_ms: float
    min_ms: float
    p90_ms: float
    n: int

    @classmethod
    def from_samples(cls, samples_ms: Sequence[float]) -> LatencyStats:
        import numpy as np

        if not samples_ms:
            raise CompressError("latency: no samples were measured")
        a = np.asarray(samples_ms, dtype=float)
        return cls(
            p50_ms=float(np.percentile(a, 50)),
            mean_ms=float(a.mean()),
            min_ms=float(a.min()),
            p90_ms=float(np.percentile(a, 90)),
            n=int(a.size),
        )


def key_of(kind: str, shape: Sequence[int], dtype: str) -> str:
    """The table key of a block kind at an input shape and precision, e.g. ``res|1x80x125|int8``."""
    return f"{kind}|{'x'.join(str(int(s)) for s in shape)}|{dtype}"


def host_fingerprint(threads: int) -> dict[str, Any]:
    """Identity of this host as a latency target (CPU as device_bench reports it)."""
    from device_bench.protocol import host_device

    cpu = host_device()["soc"]
    return {"kind": "host", "cpu": cpu, "cores": os.cpu_count(), "threads": threads}


@dataclass
class LatencyTable:
    """Measured latencies on one target; predicts whole architectures."""

    target: str
    fingerprint: dict[str, Any]
    entries: dict[str, LatencyStats] = field(default_factory=dict)
    validation: list[dict[str, Any]] = field(default_factory=list)

    def add(self, kind: str, shape: Sequence[int], dtype: str, stats: LatencyStats) -> None:
        self.entries[key_of(kind, shape, dtype)] = stats

    def get(self, kind: str, shape: Sequence[int], dtype: str) -> LatencyStats:
        k = key_of(kind, shape, dtype)
        if k not in self.entries:
            raise CompressError(
                f"latency table for {self.target}: no entry {k!r}; "
                f"measured entries: {sorted(self.entries)}"
            )
        return self.entries[k]

    def predict(
        self, blocks: Iterable[tuple[str, Sequence[int]]], dtype: str, base: str = "base"
    ) -> float:
        """Predicted p50 latency (ms): the ``base`` entry plus every block's entry.

        ``blocks`` are ``(kind, input_shape)`` pairs; the base entry is looked up with the
        shape of the first block (the run's shape).
        """
        blocks = list(blocks)
        if not blocks:
            raise CompressError("latency: cannot predict an architecture with no blocks")
        total = self.get(base, blocks[0][1], dtype).p50_ms
        for kind, shape in blocks:
            total += self.get(kind, shape, dtype).p50_ms
        return total

    def record_validation(self, name: str, predicted_ms: float, measured_ms: float) -> float:
        """Store a whole-model check; return the prediction error in percent."""
        err = 100.0 * (predicted_ms - measured_ms) / measured_ms
        self.validation.append(
            {
                "name": name,
                "predicted_ms": predicted_ms,
                "measured_ms": measured_ms,
                "error_pct": err,
            }
        )
        return err

    @property
    def fingerprint_id(self) -> str:
        blob = json.dumps({"target": self.target, **self.fingerprint}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "target": self.target,
            "fingerprint": self.fingerprint,
            "fingerprint_id": self.fingerprint_id,
            "entries": {k: asdict(v) for k, v in sorted(self.entries.items())},
            "validation": self.validation,
        }

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``<directory>/latency_<fingerprint_id>.json`` and return its path."""
        from models.fileio import atomic_write_text

        p = Path(directory) / f"latency_{self.fingerprint_id}.json"
        atomic_write_text(p, json.dumps(self.to_json(), indent=2))
        return p

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LatencyTable:
        p = Path(path)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CompressError(f"latency table {p}: unreadable ({exc})") from exc
        if data.get("schema") != SCHEMA:
            raise CompressError(
                f"latency table {p}: schema {data.get('schema')!r}, expected {SCHEMA!r}"
            )
        try:
            entries = {k: LatencyStats(**v) for k, v in data["entries"].items()}
            return cls(data["target"], data["fingerprint"], entries, data.get("validation", []))
        except (KeyError, TypeError) as exc:
            raise CompressError(f"latency table {p}: malformed ({exc})") from exc

    @classmethod
    def find(
        cls, directory: str | os.PathLike[str], target: str, fingerprint: dict[str, Any]
    ) -> LatencyTable | None:
        """A saved table for this target and fingerprint in `directory`, or None."""
        probe = cls(target, fingerprint)
        p = Path(directory) / f"latency_{probe.fingerprint_id}.json"
        return cls.load(p) if p.is_file() else None

"""`BenchResult`: one benchmark of one `.pte` on one target, in the bench_result.v1 schema.

The schema is the versioned file `schema/bench_result.v1.json`; `to_dict()` produces it and
`from_dict()` / `load()` validate it (`schema_check.py`). `build_result()` turns the runner's
per-repeat JSON into the aggregate: latencies of all repeats are pooled for the statistics
(`stats.summarize`), the load time is the median over repeats, the memory numbers the maximum,
and the per-repeat p50s feed the replication check (MLPerf Mobile's 5 % rule).
`to_executorch_records()` gives the flat record list ExecuTorch's Android benchmark writes.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from device_bench.errors import BenchError
from device_bench.schema_check import validate_result
from device_bench.stats import (
    REPLICATION_THRESHOLD,
    real_time_factor,
    replication_spread,
    summarize,
)

SCHEMA_NAME = "device_bench/bench_result"
SCHEMA_VERSION = 1
PRODUCER_VERSION = "0.1.0"
METRIC_KEYS = (
    "avg_inference_latency(ms)",
    "trimmean_inference_latency(ms)",
    "model_load_time(ms)",
    "ram_pss_usage(mb)",
    "min_inference_latency(ms)",
    "p50_inference_latency(ms)",
    "p90_inference_latency(ms)",
    "max_inference_latency(ms)",
    "std_inference_latency(ms)",
    "peak_rss(mb)",
    "rtf",
)


@dataclass
class BenchResult:
    """A bench_result.v1 document (field names = JSON keys)."""

    status: str
    target: str
    device: dict[str, Any]
    model: dict[str, Any]
    config: dict[str, Any]
    metrics: dict[str, float | None]
    repeats: list[dict[str, Any]]
    replication: dict[str, Any]
    flags: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    created_utc: str = ""
    producer: dict[str, str] = field(
        default_factory=lambda: {"name": "device_bench", "version": PRODUCER_VERSION}
    )

    # convenience accessors
    @property
    def p50_ms(self) -> float | None:
        return self.metrics.get("p50_inference_latency(ms)")

    @property
    def mean_ms(self) -> float | None:
        return self.metrics.get("avg_inference_latency(ms)")

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_NAME,
            "schema_version": SCHEMA_VERSION,
            "created_utc": self.created_utc or utc_now(),
            "producer": dict(self.producer),
            "status": self.status,
            "target": self.target,
            "device": self.device,
            "model": self.model,
            "config": self.config,
            "metrics": self.metrics,
            "repeats": self.repeats,
            "replication": self.replication,
            "flags": list(self.flags),
            "errors": list(self.errors),
        }

    @classmethod
    def from_dict(cls, obj: Any, source: str = "result") -> BenchResult:
        validate_result(obj, source)
        return cls(
            status=obj["status"],
            target=obj["target"],
            device=obj["device"],
            model=obj["model"],
            config=obj["config"],
            metrics=obj["metrics"],
            repeats=obj["repeats"],
            replication=obj["replication"],
            flags=list(obj["flags"]),
            errors=list(obj["errors"]),
            created_utc=obj["created_utc"],
            producer=dict(obj["producer"]),
        )

    def save(self, path: str | Path) -> Path:
        """Validate, then write atomically (temp file + rename)."""
        data = self.to_dict()
        validate_result(data, "the result being saved")
        return write_json(path, data)

    @classmethod
    def load(cls, path: str | Path) -> list[BenchResult]:
        """Read a result file (one object or an array of them)."""
        p = Path(path)
        try:
            data = json.loads(p.read_text())
        except FileNotFoundError:
            raise BenchError(f"result file {p} does not exist") from None
        except json.JSONDecodeError as exc:
            raise BenchError(f"result file {p} is not JSON: {exc}") from None
        items = data if isinstance(data, list) else [data]
        return [cls.from_dict(x, f"{p}[{i}]") for i, x in enumerate(items)]

    def to_executorch_records(self) -> list[dict[str, Any]]:
        """Records shaped like ExecuTorch's Android benchmark output (one per metric)."""
        bm = {
            "name": self.model.get("name", ""),
            "backend": "xnnpack",
            "quantization": "",
        }
        dev = f"{self.device.get('manufacturer', '')} {self.device.get('model', '')}".strip()
        return [
            {
                "benchmarkModel": bm,
                "metric": key,
                "actualValue": self.metrics.get(key),
                "targetValue": 0,
                "deviceInfo": {"device": dev, "soc": self.device.get("soc", "")},
            }
            for key in METRIC_KEYS[:4]
        ]


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_json(path: str | Path, data: Any) -> Path:
    """Write JSON atomically: a reader never sees a half-written file."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + f".{os.getpid()}.part")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, p)
    return p


def model_info(pte: str | Path) -> dict[str, Any]:
    p = Path(pte)
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return {"name": p.stem, "path": str(p.resolve()), "size_bytes": p.stat().st_size,
            "sha256": h.hexdigest()}


def repeat_record(
    index: int,
    raw: dict[str, Any],
    *,
    thermal_before: int | None = None,
    thermal_after: int | None = None,
    cooldown_wait_s: float = 0.0,
    cpufreq_before: Sequence[int | None] | None = None,
    cpufreq_after: Sequence[int | None] | None = None,
    raw_path: str | None = None,
) -> dict[str, Any]:
    """One entry of `repeats` from the runner's JSON (see et_bench_runner.cpp)."""
    lat = [float(x) for x in raw.get("latencies_ms", [])]
    if not lat:
        raise BenchError(f"runner output of repeat {index} has no latencies: {raw.get('error')}")

    def kb(key: str) -> int | None:
        v = raw.get(key)
        return int(v) if isinstance(v, (int, float)) and v >= 0 else None

    return {
        "index": index,
        "latencies_ms": lat,
        "stats": summarize(lat).to_dict(),
        "load_ms": float(raw["load_ms"]),
        "peak_rss_kb": kb("vm_hwm_kb") or kb("ru_maxrss_kb"),
        "pss_kb": kb("pss_kb"),
        "threads_used": int(raw["threads_used"]) if raw.get("threads_used", -1) >= 0 else None,
        "thermal_before": thermal_before,
        "thermal_after": thermal_after,
        "cooldown_wait_s": round(float(cooldown_wait_s), 3),
        "cpufreq_before_khz": list(cpufreq_before) if cpufreq_before is not None else None,
        "cpufreq_after_khz": list(cpufreq_after) if cpufreq_after is not None else None,
        "raw_path": raw_path,
    }


def build_result(
    *,
    target: str,
    device: dict[str, Any],
    model: dict[str, Any],
    config: dict[str, Any],
    repeats: list[dict[str, Any]],
    flags: Sequence[str] = (),
    errors: Sequence[str] = (),
    threshold: float = REPLICATION_THRESHOLD,
) -> BenchResult:
    """Aggregate per-repeat records into a BenchResult (status from repeats and errors)."""
    flags = list(flags)
    metrics: dict[str, float | None] = dict.fromkeys(METRIC_KEYS)
    replication: dict[str, Any] = {"metric": "p50", "spread": None, "threshold": threshold,
                                   "ok": None}
    if repeats:
        pooled = [x for r in repeats for x in r["latencies_ms"]]
        s = summarize(pooled)
        pss = [r["pss_kb"] for r in repeats if r.get("pss_kb") is not None]
        rss = [r["peak_rss_kb"] for r in repeats if r.get("peak_rss_kb") is not None]
        metrics.update({
            "avg_inference_latency(ms)": s.mean,
            "trimmean_inference_latency(ms)": s.trimmed_mean,
            "model_load_time(ms)": statistics.median(r["load_ms"] for r in repeats),
            "ram_pss_usage(mb)": max(pss) / 1024.0 if pss else None,
            "min_inference_latency(ms)": s.min,
            "p50_inference_latency(ms)": s.p50,
            "p90_inference_latency(ms)": s.p90,
            "max_inference_latency(ms)": s.max,
            "std_inference_latency(ms)": s.std,
            "peak_rss(mb)": max(rss) / 1024.0 if rss else None,
        })
        audio = config.get("audio_seconds")
        if audio:
            metrics["rtf"] = real_time_factor(s.p50, float(audio))
        p50s = [r["stats"]["p50"] for r in repeats]
        if len(p50s) >= 2:
            spread = replication_spread(p50s)
            replication.update(spread=spread, ok=spread <= threshold)
            if spread > threshold:
                flags.append("replication_spread_above_threshold")
    if errors:
        status = "partial" if repeats else "failed"
    else:
        status = "ok"
    return BenchResult(
        status=status,
        target=target,
        device=device,
        model=model,
        config=config,
        metrics=metrics,
        repeats=repeats,
        replication=replication,
        flags=sorted(set(flags)),
        errors=list(errors),
        created_utc=utc_now(),
    )

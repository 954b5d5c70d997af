"""Compare benchmark results across runs, models and devices: table rows, markdown, CSV, plot.

Each result becomes one row (model, device, SoC, target, threads, latency statistics, load
time, memory, RTF, replication spread, flags). The plot draws the p50 latency per result as a
bar with a min..p90 whisker (matplotlib, Agg backend, so it works without a display).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from device_bench.result import BenchResult

COLUMNS = (
    "model", "device", "soc", "target", "threads", "status", "p50_ms", "p90_ms", "min_ms",
    "mean_ms", "trimmean_ms", "std_ms", "load_ms", "pss_mb", "rtf", "spread_pct", "flags",
)


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def rows(results: Sequence[BenchResult]) -> list[dict[str, str]]:
    """One dict of formatted cells per result (keys = COLUMNS)."""
    out = []
    for r in results:
        m = r.metrics
        dev = r.device
        spread = r.replication.get("spread")
        out.append({
            "model": r.model.get("name", ""),
            "device": (f"{dev.get('manufacturer', '')} {dev.get('model', '')}".strip()
                       if dev.get("kind") == "android" else "host"),
            "soc": dev.get("soc", ""),
            "target": r.target,
            "threads": _fmt(r.config.get("threads")),
            "status": r.status,
            "p50_ms": _fmt(m.get("p50_inference_latency(ms)")),
            "p90_ms": _fmt(m.get("p90_inference_latency(ms)")),
            "min_ms": _fmt(m.get("min_inference_latency(ms)")),
            "mean_ms": _fmt(m.get("avg_inference_latency(ms)")),
            "trimmean_ms": _fmt(m.get("trimmean_inference_latency(ms)")),
            "std_ms": _fmt(m.get("std_inference_latency(ms)")),
            "load_ms": _fmt(m.get("model_load_time(ms)"), 1),
            "pss_mb": _fmt(m.get("ram_pss_usage(mb)"), 1),
            "rtf": _fmt(m.get("rtf"), 4),
            "spread_pct": _fmt(spread * 100.0 if spread is not None else None, 1),
            "flags": ",".join(r.flags),
        })
    return out


def to_markdown(results: Sequence[BenchResult]) -> str:
    table = rows(results)
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    for row in table:
        lines.append("| " + " | ".join(row[c].replace("|", "/") for c in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def to_csv(results: Sequence[BenchResult]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n")
    w.writeheader()
    w.writerows(rows(results))
    return buf.getvalue()


def plot(results: Sequence[BenchResult], path: str | Path, title: str = "p50 latency") -> Path:
    """Bar chart of p50 latency per result with min..p90 whiskers; writes `path` (PNG/SVG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, p50, lo, hi = [], [], [], []
    for r, row in zip(results, rows(results)):
        m = r.metrics
        p50_value = m.get("p50_inference_latency(ms)")
        if p50_value is None:
            continue
        labels.append(f"{row['model']}\n{row['device']}\n{row['threads']} thr")
        mid = float(p50_value)
        p50.append(mid)
        lo.append(mid - float(m.get("min_inference_latency(ms)") or mid))
        hi.append(float(m.get("p90_inference_latency(ms)") or mid) - mid)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.4 * len(labels) + 1.5), 4.0))
    x = list(range(len(labels)))
    ax.bar(x, p50, yerr=[lo, hi], capsize=4, color="#4878a8")
    ax.set_xticks(x)
    ax.set_xticklabels(labels, fontsize=7)
    ax.set_ylabel("latency (ms): p50, whisker min..p90")
    ax.set_title(title)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out

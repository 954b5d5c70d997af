"""Where a program's time goes: a per-operator table from the runner's ETDump.

The runner (``et_bench_runner --etdump OUT.etdp``) loads the program with ExecuTorch's ETDump
profiler and keeps the events of the timed iterations only. :func:`read_etdump` reads the dump
with ExecuTorch's own :class:`executorch.devtools.Inspector` (no ETRecord: the names are the
runtime's) and sums, per operator name and per forward call:

* operators inside a delegate, named by the delegate (XNNPACK: ``Convolution (NHWC, F32)
  IGEMM``, ``Fully Connected (NC, QS8, QC8W) GEMM``, ...; the ``#N`` instance suffix is
  dropped so that the N instances of one operator are one row);
* operators run by ExecuTorch's kernels outside any delegate, named by their kernel
  (``native_call_mul.out`` is shown as ``mul.out``).

The wrappers around them (``Method::execute``, ``DELEGATE_CALL``, ``OPERATOR_CALL``) are not
rows, so no time is counted twice; ``Method::execute`` is kept as ``execute_ms``. The rows'
total is checked against the latency the same run measured around each forward call
(:attr:`OperatorProfile.ratio_mean`; :attr:`OperatorProfile.within`): what is left out is the
delegate's and the runtime's own work between operators.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from device_bench.errors import BenchError
from device_bench.stats import summarize

#: the operators' total may differ from the measured latency per forward by this fraction
TOLERANCE = 0.15
_KERNEL_PREFIX = "native_call_"
_INSTANCE = re.compile(r"\s+#\d+$")


@dataclass(frozen=True)
class OperatorRow:
    """One operator name: its calls and milliseconds per forward, its share of all rows."""

    name: str
    kind: str  # "delegate" (inside a backend's program) or "kernel" (ExecuTorch's kernels)
    calls: float  # per forward call (an integer unless the runs took different paths)
    total_ms: float  # per forward call (mean over the timed iterations)
    share: float  # of the operators' total


@dataclass(frozen=True)
class OperatorProfile:
    """The per-operator table of one profiled run and its check against that run's latency."""

    rows: list[OperatorRow]
    forwards: int  # timed forward calls the table averages over
    operators_ms: float  # sum of the rows, per forward
    execute_ms: float | None  # ExecuTorch's Method::execute per forward (None if not recorded)
    latency_mean_ms: float  # the same run's measured latency per forward (runner's clock)
    latency_p50_ms: float
    etdump: str
    tolerance: float = TOLERANCE
    notes: list[str] = field(default_factory=list)

    @property
    def ratio_mean(self) -> float:
        return self.operators_ms / self.latency_mean_ms

    @property
    def ratio_p50(self) -> float:
        return self.operators_ms / self.latency_p50_ms

    @property
    def within(self) -> bool:
        """The operators' total is within `tolerance` of the measured mean latency (both are
        means over the same forward calls; the p50 is shown beside it, and differs from the
        mean when the run's latencies are spread, e.g. on a busy machine)."""
        return abs(self.ratio_mean - 1.0) <= self.tolerance

    def check_line(self) -> str:
        """One line: the operators' total beside the measured mean and p50, and the verdict."""
        tol = f"{100 * self.tolerance:.0f} %"
        verdict = (f"within {tol} of the mean" if self.within else
                   f"OUTSIDE {tol} of the mean: the operators do not account for the measured "
                   "latency")
        execute = (f" (Method::execute {self.execute_ms:.3f} ms)"
                   if self.execute_ms is not None else "")
        return (f"operators total {self.operators_ms:.3f} ms per forward{execute}; measured "
                f"mean {self.latency_mean_ms:.3f} ms, p50 {self.latency_p50_ms:.3f} ms; "
                f"total/mean {self.ratio_mean:.3f}, total/p50 {self.ratio_p50:.3f}: {verdict}")

    def display_rows(self, top: int | None = 20) -> list[dict[str, str]]:
        """Rows as text for a table (largest first); the rest summed in one last row."""
        shown = self.rows if top is None else self.rows[:top]
        out = [{"operator": r.name, "kind": r.kind, "calls": _calls(r.calls),
                "ms/forward": f"{r.total_ms:.3f}", "share": f"{100 * r.share:.1f} %"}
               for r in shown]
        rest = self.rows[len(shown):]
        if rest:
            out.append({"operator": f"({len(rest)} more operators)", "kind": "",
                        "calls": _calls(sum(r.calls for r in rest)),
                        "ms/forward": f"{sum(r.total_ms for r in rest):.3f}",
                        "share": f"{100 * sum(r.share for r in rest):.1f} %"})
        return out

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(ratio_mean=self.ratio_mean, ratio_p50=self.ratio_p50, within=self.within,
                 check=self.check_line())
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OperatorProfile:
        keys = set(cls.__dataclass_fields__)
        kw = {k: v for k, v in d.items() if k in keys}
        kw["rows"] = [OperatorRow(**r) for r in d["rows"]]
        return cls(**kw)

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(p.name + ".part")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        tmp.replace(p)
        return p


def _calls(x: float) -> str:
    return str(int(round(x))) if abs(x - round(x)) < 1e-9 else f"{x:.2f}"


def _row_key(event: Any) -> tuple[str, str] | None:
    """(name, kind) of an operator event; None for wrappers and other runtime events."""
    name = str(event.name or "")
    if event.delegate_debug_identifier is not None:
        name = _INSTANCE.sub("", name) or f"delegate op {event.delegate_debug_identifier}"
        return name, "delegate"
    if name.startswith(_KERNEL_PREFIX):
        return name[len(_KERNEL_PREFIX):], "kernel"
    return None


def read_etdump(path: str | Path, latencies_ms: Sequence[float], *, warmup: int = 0,
                tolerance: float = TOLERANCE) -> OperatorProfile:
    """The per-operator table of the ETDump at `path`, checked against `latencies_ms` (the
    same run's timed forward calls, as the runner measured them).

    A dump of a runner older than runner_version 2 also holds the `warmup` iterations; they
    are recognised by their count and dropped.
    """
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"ETDump {path} does not exist")
    if not latencies_ms:
        raise BenchError(f"ETDump {path}: no measured latencies to check it against")
    try:
        from executorch.devtools import Inspector
    except ImportError as exc:
        raise BenchError(f"reading an ETDump needs executorch's devtools ({exc})") from exc
    with warnings.catch_warnings():
        # no debug buffer is written: the dump has timings only, which is all this table needs
        warnings.filterwarnings("ignore", message="Output Buffer not found")
        try:
            inspector = Inspector(etdump_path=str(path))
        except Exception as exc:  # flatc / schema errors of a damaged or foreign file
            raise BenchError(f"ETDump {path} could not be read by the Inspector: {exc}") from exc
    blocks = [b for b in inspector.event_blocks if b.name == "Execute"]
    if not blocks:
        raise BenchError(f"ETDump {path} holds no Execute block (no forward call was "
                         f"profiled); blocks: {[b.name for b in inspector.event_blocks]}")

    def runs(block: Any) -> int:
        lens = [len(e.perf_data.raw) for e in block.events if e.perf_data is not None]
        ex = [len(e.perf_data.raw) for e in block.events
              if e.name == "Method::execute" and e.perf_data is not None]
        return ex[0] if ex else max(lens, default=0)

    counts = [runs(b) for b in blocks]
    timed = len(latencies_ms)
    skip = 0
    notes: list[str] = []
    if sum(counts) != timed:
        if len(blocks) == 1 and warmup and counts[0] == timed + warmup:
            skip = warmup  # an older runner: the warmup iterations are in the dump, first
        else:
            notes.append(f"the dump holds {sum(counts)} forward calls, the run timed {timed}; "
                         "the table averages over the dump's")
    forwards = sum(counts) - skip
    if forwards <= 0:
        raise BenchError(f"ETDump {path} holds no timed forward call")
    totals: dict[tuple[str, str], float] = {}
    calls: dict[tuple[str, str], int] = {}
    execute = 0.0
    for block in blocks:
        for event in block.events:
            if event.perf_data is None:
                continue
            samples = list(event.perf_data.raw)[skip:]
            if event.name == "Method::execute" and event.delegate_debug_identifier is None:
                execute += sum(samples)
                continue
            key = _row_key(event)
            if key is None:
                continue
            totals[key] = totals.get(key, 0.0) + sum(samples)
            calls[key] = calls.get(key, 0) + len(samples)
    if not totals:
        raise BenchError(f"ETDump {path} has no operator events (was the program profiled "
                         "with a runtime built without event tracing?)")
    grand = sum(totals.values())
    measured = summarize(latencies_ms)  # the bench result's own statistics
    rows = sorted(
        (OperatorRow(name, kind, calls[(name, kind)] / forwards, ms / forwards,
                     ms / grand if grand > 0 else 0.0)
         for (name, kind), ms in totals.items()),
        key=lambda r: (-r.total_ms, r.name))
    return OperatorProfile(
        rows=rows, forwards=forwards, operators_ms=grand / forwards,
        execute_ms=execute / forwards if execute > 0 else None,
        latency_mean_ms=measured.mean, latency_p50_ms=measured.p50, etdump=str(path),
        tolerance=tolerance, notes=notes)


def profile_of(repeat: dict[str, Any], warmup: int = 0) -> OperatorProfile:
    """The table of one repeat record of a bench result run with ``BenchConfig(etdump=True)``."""
    dump = repeat.get("etdump_path")
    if not dump:
        raise BenchError(f"repeat {repeat.get('index')} has no ETDump (run with etdump=True)")
    return read_etdump(dump, repeat["latencies_ms"], warmup=warmup)


__all__ = ["TOLERANCE", "OperatorProfile", "OperatorRow", "profile_of", "read_etdump"]

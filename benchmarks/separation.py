"""CWS separators beside Table 2 of the paper: parameters and GFLOPs (static part, issue 23).

For UNet-5, UNet-6, MDenseNet and MMDenseNet with K = 1, 2, 4, 8 subbands, at the paper's
sizes (``width = 1``, stereo), one record each::

    {"model", "k", "params", "gflops", "paper_params", "paper_gflops"}

``params``: trainable parameters of the mask network; ``gflops``: its multiply-adds on 3 s of
stereo 44.1 kHz, / 1e9 — Table 2's convention (:mod:`models.separation.flops`: MACs, network
only, filter bank and STFT not counted). ``paper_*``: Table 2 (parameters as a count from its
millions), ``null`` where Table 2 has no row (MMDenseNet is reported without CWS only).
Nothing is run: the networks are built on the ``meta`` device, so this takes seconds.

Results of trained models are merged in by :func:`add_trained_results` (``--trained FILE``).

Example::

    .venv/bin/python benchmarks/separation.py --json benchmarks/results/separation.json
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from models.separation.flops import (
    PAPER_CHANNELS,
    PAPER_SAMPLE_RATE,
    PAPER_SECONDS,
    PAPER_TABLE2,
    network_gflops,
    network_params,
)
from models.separation.nets import ARCHS
from models.separation.subband import SUBBANDS

NAMES = {"unet5": "UNet-5", "unet6": "UNet-6", "mdensenet": "MDN", "mmdensenet": "MMDN"}


def static_records(seconds: float = PAPER_SECONDS, sample_rate: int = PAPER_SAMPLE_RATE,
                   channels: int = PAPER_CHANNELS) -> list[dict[str, Any]]:
    """One record per (architecture, K) with our and Table 2's parameters and GFLOPs."""
    records = []
    for arch in ARCHS:
        paper = PAPER_TABLE2[arch]
        for k in SUBBANDS:
            in_paper = k in paper.gflops  # Table 2 has a row for this (model, K)
            records.append({
                "model": arch,
                "k": k,
                "params": network_params(arch, k, channels),
                "gflops": round(network_gflops(arch, k, seconds=seconds,
                                               sample_rate=sample_rate, channels=channels), 2),
                "paper_params": round(paper.params_m * 1e6) if in_paper else None,
                "paper_gflops": paper.gflops.get(k),
            })
    return records


# ------------------------------------------------------------------------------------------
# TRAINED DEMO RESULTS: the place where the results of trained separators are added.
# ------------------------------------------------------------------------------------------
def add_trained_results(records: list[dict[str, Any]],
                        trained: Iterable[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """Merge results of trained models into the static records (returns new records).

    ``trained``: records with ``"model"`` and ``"k"`` (matching a static record) and any
    further measured fields (SDR / SIR / SAR per source, training time, latency ...), which are
    copied into that record under ``"trained"``. A result for a (model, k) that has no static
    record is an error; static records without a result stay as they are. With ``None``
    (nothing trained yet) the records are returned unchanged.
    """
    out = [dict(r) for r in records]
    if trained is None:
        return out
    index = {(r["model"], r["k"]): r for r in out}
    for result in trained:
        key = (result.get("model"), result.get("k"))
        if key not in index:
            raise SystemExit(f"trained result for model={key[0]!r} k={key[1]!r} matches no "
                             f"static record; models: {', '.join(ARCHS)}, k: {SUBBANDS}")
        index[key]["trained"] = {n: v for n, v in result.items() if n not in ("model", "k")}
    return out


def format_table(records: list[dict[str, Any]]) -> str:
    """A text table: our figures beside Table 2's, and any trained results."""
    def num(v: Any, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    trained_keys = sorted({n for r in records for n in r.get("trained", {})})
    head = (f"{'model':<8}{'K':>3}{'params (M)':>12}{'paper':>8}{'diff':>8}"
            f"{'GFLOPs':>9}{'paper':>9}{'diff':>8}")
    head += "".join(f"{n:>14}" for n in trained_keys)
    lines = [head, "-" * len(head)]
    for r in records:
        pp, pg = r["paper_params"], r["paper_gflops"]
        dp = None if pp is None else f"{100 * (r['params'] / pp - 1):+.1f}%"
        dg = None if pg is None else f"{100 * (r['gflops'] / pg - 1):+.1f}%"
        line = (f"{NAMES[r['model']]:<8}{r['k']:>3}{r['params'] / 1e6:>12.3f}"
                f"{num(None if pp is None else pp / 1e6, '.2f'):>8}{num(dp, ''):>8}"
                f"{r['gflops']:>9.2f}{num(pg, '.2f'):>9}{num(dg, ''):>8}")
        trained = r.get("trained", {})
        line += "".join(f"{num(trained.get(n), '.3g'):>14}" for n in trained_keys)
        lines.append(line)
    lines.append("GFLOPs: multiply-adds of the network on 3 s of stereo 44.1 kHz / 1e9 "
                 "(Table 2's convention); filter bank and STFT not counted.")
    return "\n".join(lines)


def get_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", type=Path, help="write the records here")
    ap.add_argument("--trained", type=Path,
                    help="JSON list of trained-model results to merge (add_trained_results)")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    trained = json.loads(args.trained.read_text()) if args.trained else None
    records = add_trained_results(static_records(), trained)
    print(format_table(records))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.json.with_suffix(args.json.suffix + ".tmp")
        tmp.write_text(json.dumps(records, indent=2) + "\n")
        tmp.replace(args.json)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

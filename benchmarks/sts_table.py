"""Table 1 of Parekh et al. (ICASSP 2020, "Speech-to-singing conversion in an encoder-decoder
framework") on our corpus: LSD and raw chroma accuracy of the six systems of §3.1.

Usage::

    .venv/bin/python benchmarks/sts_table.py --json benchmarks/results/sts_table.json \
        [--data CORPUS] [--runs DIR] [--size demo|unittest] [--steps N] [--items N] \
        [--systems b1,b2,...] [--patience N] [--gl-iters N] [--vocoder CKPT] [--threads N] \
        [--seed S]

The systems, in Table 1's order (:data:`models.sts.net.SYSTEMS`): B1 (no melody input), B2 (no
instance normalization, no skips), AllNorm (IN before every layer), P-MSE (the proposed network,
MSE loss), P-MTL (P-MSE plus the phoneme decoder and the MTL loss, λ = 0.015) and the singing
autoencoder (the same network with the singing as its input: the upper bound). For each, one
after the other:

1. the model is built — ``--size demo``: the system's registered ``-demo`` preset
   (``sts-b1-demo``, ``sts-b2-demo``, ``sts-allnorm-demo``, ``sts-pmse-demo``, ``sts-demo``,
   ``sts-ae-demo``); ``--size unittest``: ``sts-unittest`` with the system's config (the
   :data:`~models.sts.net.SYSTEMS` overrides, no phoneme decoder unless the system has one);
   P-MTL's phoneme decoder predicts the corpus's phoneme list; the initial weights are drawn
   from ``--seed``;
2. it is trained by :func:`models.sts.train.train_sts` into ``RUNS/<system>/`` with the preset's
   ``PRESET_TRAINING`` budget (``--steps`` overrides the steps), the same ``--seed`` for every
   system (so the same batches), ``resume=True``: a killed benchmark continues each run from its
   ``last.safetensors``, and a finished run (``progress.stopped`` is ``"early"``, or ``"steps"``
   at the budget's step count — what ``train_sts`` reports as "already trained") is loaded, not
   trained again;
3. its best-validation weights are scored by :func:`models.sts.evaluate.evaluate_sts` on the
   held-out **test** songs (which no system trained or validated on): ``--items`` random
   eligible samples (≥ 1 s of speech; 100 as in the paper, or all when fewer), drawn with
   ``--seed``, whole and unshifted; Griffin-Lim with ``--gl-iters`` iterations for the RCA
   (§2.4); beside it, "RCA vocoder": the same prediction rendered by the harmonic-plus-noise
   vocoder at the melody's F0 (:mod:`models.sts.vocode`; ``--vocoder CKPT``, default the
   untrained DSP vocoder). That rendering takes its pitch from the melody, so its RCA shows
   what a user of ``compress sing --render vocoder`` gets, not what the network learned; the
   claims use the paper's Griffin-Lim RCA.

The evaluation data is built once per input kind (speech, or the singing for the autoencoder)
with the checkpoints' test songs and phoneme list and without pitch-shifted copies (the
evaluation runs version 0 only; with copies, a sample whose *shifted* speech is unusable would
be dropped from the speech data but not from the autoencoder's, which has none). Every system
must be scored on the same sample keys; if they differ the benchmark stops with an error.

Printed: a table (LSD in dB ± its standard error, RCA ± standard error, P-MTL's phoneme
accuracy, Table 1's figures), then the paper's orderings checked on our data with paired
statistics over the shared items (``diff``: the mean per-item difference, first system minus
second; ``paired_stderr``: ``std(ddof=1) / sqrt(n)`` of those differences): P-MTL beats B1,
P-MSE beats B2, P-MTL beats B2 (lower LSD, higher RCA), the autoencoder beats every other
system, and P-MTL against P-MSE (with P-MTL's phoneme accuracy; P-MSE has no phoneme decoder).

``--json OUT``::

    {"records": [{"system", "lsd_db", "rca", "phoneme_acc", "paper_lsd_db", "paper_rca",
                  "rca_vocoder", "lsd_stderr", "rca_stderr", "items", "checkpoint", "train_steps",
                  "train_seconds", ...}],
     "claims": [{"claim", "holds", "diff", "paired_stderr", ...}],
     "data": CORPUS, "size": SIZE, "keys": [sample keys]}

Without ``--data`` the synthetic corpus of ``compress data synth`` (its defaults: 4 singers,
2 minutes each, seed 0; the corpus the ``-demo`` budgets were sized on) is written to
``RUNS/corpus`` once and reused. Progress (training, one line per system) goes to stderr.
Caveat: our corpus is synthetic and our budgets are minutes on a CPU, not the paper's 14 epochs
on NUS-48E, so the absolute figures are not comparable with Table 1; the orderings are what
the claims check.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("sts_table")

#: Table 1's systems in its order (keys of models.sts.net.SYSTEMS)
ORDER = ("b1", "b2", "allnorm", "p-mse", "p-mtl", "autoencoder")
LABELS = {"b1": "B1", "b2": "B2", "allnorm": "AllNorm", "p-mse": "P-MSE", "p-mtl": "P-MTL",
          "autoencoder": "Autoencoder"}
#: Table 1 of the paper: (LSD dB, RCA) on 100 NUS-48E test samples
PAPER_TABLE1 = {"b1": (14.19, 0.221), "b2": (11.71, 0.769), "allnorm": (11.72, 0.771),
                "p-mse": (11.22, 0.829), "p-mtl": (10.97, 0.857), "autoencoder": (5.51, 0.991)}
SIZES = ("demo", "unittest")
METRICS = {"lsd": ("LSD", "dB", "lower"), "rca": ("RCA", "", "higher")}


class TableError(Exception):
    """A benchmark problem reported as one line (mismatched runs, differing sample keys)."""


def say(message: str) -> None:
    """One progress line on stderr."""
    print(f"sts_table: {message}", file=sys.stderr, flush=True)


def parse_systems(text: str | None) -> list[str]:
    """``b1,p-mtl`` → the named systems in Table 1's order (all when `text` is empty)."""
    if not text:
        return list(ORDER)
    names = [t.strip().lower() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in ORDER]
    if bad or not names:
        raise TableError(f"--systems {text!r}: unknown {bad}; choose from {','.join(ORDER)}")
    return [s for s in ORDER if s in names]


def preset_name(system: str, size: str) -> str:
    """The registry preset a system trains as: its ``-demo`` preset, or ``sts-unittest``."""
    from models.sts.presets import SYSTEM_NAMES

    return "sts-unittest" if size == "unittest" else f"{SYSTEM_NAMES[system]}-{size}"


def build_model(system: str, size: str, phonemes: int, seed: int) -> Any:
    """The system's network at `size` (initial weights from `seed`); a phoneme decoder, when
    the system has one, predicts `phonemes` classes."""
    import torch

    from models import registry
    from models.sts.presets import preset_config

    cfg = preset_config(system, size)  # = the -demo preset's defaults; SYSTEMS at unittest
    if cfg.get("phonemes"):
        cfg["phonemes"] = int(phonemes)
    torch.manual_seed(seed)
    return registry.build(preset_name(system, size), **cfg)


def train_config(preset: str, steps: int | None, seed: int, threads: int,
                 patience: int | None = None) -> Any:
    """The preset's training budget, with `steps`, `seed`, `threads` and `patience` applied
    (``None``: the preset's)."""
    from models.sts.train import PRESET_TRAINING, StsTrainConfig

    base = PRESET_TRAINING.get(preset, StsTrainConfig())
    return replace(base, seed=seed, threads=threads, steps=base.steps if steps is None else steps,
                   patience=base.patience if patience is None else patience)


def finished_run(out: Path, cfg: Any) -> dict[str, Any] | None:
    """The progress of the run in `out` when ``train_sts`` would only load it under `cfg`
    (:func:`models.sts.train.run_finished`, its "already trained" test), else ``None`` (no
    run, a killed one, or one with fewer steps or a smaller patience than asked)."""
    from models.checkpoint import DEFAULT_FILENAME, read_header
    from models.sts.train import LAST_FILENAME, run_finished

    for name in (LAST_FILENAME, DEFAULT_FILENAME):
        path = out / name
        if path.is_file():
            prog = read_header(path).extra.get("progress") or {}
            return dict(prog) if run_finished(prog, cfg) else None
    return None


def started_at(out: Path) -> int | None:
    """The step of an unfinished run's ``last.safetensors`` in `out` (``None``: no run)."""
    from models.checkpoint import read_header
    from models.sts.train import LAST_FILENAME

    if not (out / LAST_FILENAME).is_file():
        return None
    return int((read_header(out / LAST_FILENAME).extra.get("progress") or {}).get("step", 0))


def _check_run(out: Path, seed: int, root: Path) -> None:
    """Refuse to continue a run of `out` made with another seed or corpus."""
    from models.checkpoint import DEFAULT_FILENAME, read_header
    from models.sts.train import LAST_FILENAME

    for name in (LAST_FILENAME, DEFAULT_FILENAME):
        if (out / name).is_file():
            extra = read_header(out / name).extra
            got = (extra.get("train_config") or {}).get("seed")
            if got is not None and int(got) != seed:
                raise TableError(f"{out / name} was trained with seed {got}, not --seed {seed}; "
                                 "use the same seed or another --runs")
            if extra.get("data") is not None and Path(extra["data"]).resolve() != root.resolve():
                raise TableError(f"{out / name} was trained on {extra['data']}, not {root}; "
                                 "use the same corpus or another --runs")
            return


def train_system(system: str, size: str, corpus: Path, runs: Path, steps: int | None,
                 seed: int, threads: int, phonemes: int,
                 patience: int | None = None) -> tuple[Any, Path, dict[str, Any]]:
    """Build, train (or load the finished run of) one system; returns the model (best weights,
    eval mode), its best checkpoint and ``{"train_steps", "train_seconds", "reused", ...}``."""
    from models.checkpoint import read_header
    from models.sts.data import corpus_root
    from models.sts.train import train_sts

    preset = preset_name(system, size)
    cfg = train_config(preset, steps, seed, threads, patience)
    out = runs / system
    _check_run(out, seed, corpus_root(corpus))
    done = finished_run(out, cfg)
    model = build_model(system, size, phonemes, seed)
    partial = None if done is not None else started_at(out)
    if done is not None:
        say(f"{system}: loading the finished run in {out} (step {done.get('step')}, stopped "
            f"{done.get('stopped')}); not retraining")
    elif partial is not None:
        say(f"{system}: continuing the run in {out} from step {partial} to {cfg.steps}")
    else:
        say(f"{system}: training {preset} into {out} ({cfg.steps} steps, batch {cfg.batch} x "
            f"{cfg.frames} frames, seed {seed})")
    t0 = time.time()
    path = train_sts(model, preset, corpus, out, cfg, resume=True)
    header = read_header(path)
    prog = header.extra.get("progress") or {}
    seconds = sum(float(e.get("seconds", 0.0)) for e in header.history
                  if e.get("event") == "train")
    info = {"preset": preset, "train_steps": int(prog.get("step", 0)),
            "best_step": prog.get("best_step"), "stopped": prog.get("stopped"),
            "train_seconds": round(seconds, 1), "reused": done is not None,
            "songs": header.extra.get("songs"), "phonemes": header.extra.get("phonemes"),
            "min_units": (header.extra.get("train_config") or {}).get("min_units")}
    if done is None:
        say(f"{system}: trained to step {info['train_steps']} (best {info['best_step']}, "
            f"stopped {info['stopped']}) in {time.time() - t0:.0f} s")
    return model, path, info


def eval_data(corpus: Path, info: Mapping[str, Any], autoencoder: bool, seed: int,
              cache: dict[Any, Any]) -> Any:
    """The test split as the checkpoint defined it (its songs and phoneme list), without
    pitch-shifted copies (the evaluation uses version 0 only); one per input kind."""
    from models.sts.data import MIN_UNITS, StsData

    songs = info.get("songs") or {}
    key = (autoencoder, json.dumps(songs, sort_keys=True), tuple(info.get("phonemes") or ()),
           info.get("min_units") or MIN_UNITS)
    if key not in cache:
        cache[key] = StsData(corpus, min_units=int(key[3]), versions=0, seed=seed,
                             splits=("test",), test_songs=songs.get("test"),
                             val_songs=songs.get("val"), phonemes=info.get("phonemes"),
                             autoencoder=autoencoder)
    return cache[key]


def paired(a: Sequence[float], b: Sequence[float]) -> tuple[float | None, float | None, int]:
    """Mean of the per-item differences ``a - b`` and its standard error (``None`` for < 2)."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return None, None, 0
    se = float(d.std(ddof=1) / math.sqrt(d.size)) if d.size > 1 else None
    return float(d.mean()), se, int(d.size)


#: (better, worse): the orderings of Table 1 checked on LSD and RCA
CLAIMS = (("p-mtl", "b1"), ("p-mse", "b2"), ("p-mtl", "b2"),
          *(("autoencoder", s) for s in ORDER if s != "autoencoder"),
          ("p-mtl", "p-mse"))


def claims(results: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The paper's orderings on the shared items, with paired statistics (module docstring).
    Claims naming a system that was not run are left out."""
    out = []
    for better, worse in CLAIMS:
        if better not in results or worse not in results:
            continue
        for col, (metric, (name, _, direction)) in enumerate(METRICS.items()):
            diff, se, n = paired(results[better][metric], results[worse][metric])
            holds = diff is not None and (diff < 0 if direction == "lower" else diff > 0)
            claim = {"claim": f"{LABELS[better]} beats {LABELS[worse]} on {name} "
                              f"({direction} is better)",
                     "holds": bool(holds), "diff": diff, "paired_stderr": se, "n": n,
                     "metric": metric, "systems": [better, worse],
                     "paper_diff": round(PAPER_TABLE1[better][col] - PAPER_TABLE1[worse][col],
                                         3)}
            if (better, worse) == ("p-mtl", "p-mse"):
                claim["phoneme_acc"] = results[better]["mean"]["phoneme_accuracy"]
            out.append(claim)
    return out


def claim_line(c: Mapping[str, Any]) -> str:
    unit = " dB" if c["metric"] == "lsd" else ""
    if c["diff"] is None:
        return f"N/A   {c['claim']}: no shared item"
    se = c["paired_stderr"]
    noise = "" if se is None else f" ± {se:.3f}"
    within = se is not None and abs(c["diff"]) <= 2 * se
    a, b = (LABELS[s] for s in c["systems"])
    line = (f"{'HOLDS' if c['holds'] else 'FAILS'} {c['claim']}: {a} - {b} = "
            f"{c['diff']:+.3f}{noise}{unit} (paired, n = {c['n']}"
            f"{', within 2 standard errors' if within else ''}; paper {c['paper_diff']:+.3f})")
    if "phoneme_acc" in c:
        acc = c["phoneme_acc"]
        line += (f"; P-MTL phoneme accuracy {'-' if acc is None else f'{acc:.3f}'} (P-MSE has "
                 "no phoneme decoder)")
    return line


def format_table(records: Sequence[Mapping[str, Any]]) -> str:
    """The text table beside Table 1's figures."""
    def pm(v: float | None, se: float | None, fmt: str) -> str:
        if v is None:
            return "-"
        return format(v, fmt) + ("" if se is None else f" ± {format(se, fmt)}")

    head = (f"{'system':<12}{'LSD dB (± se)':>17}{'RCA (± se)':>17}{'RCA vocoder':>17}"
            f"{'phoneme acc':>13}{'paper LSD':>11}{'paper RCA':>11}")
    lines = [head, "-" * len(head)]
    for r in records:
        acc = r["phoneme_acc"]
        lines.append(f"{LABELS[r['system']]:<12}{pm(r['lsd_db'], r['lsd_stderr'], '.2f'):>17}"
                     f"{pm(r['rca'], r['rca_stderr'], '.3f'):>17}"
                     f"{pm(r.get('rca_vocoder'), r.get('rca_vocoder_stderr'), '.3f'):>17}"
                     f"{'-' if acc is None else format(acc, '.3f'):>13}"
                     f"{r['paper_lsd_db']:>11.2f}{r['paper_rca']:>11.3f}")
    return "\n".join(lines)


def ensure_corpus(data: Path | None, runs: Path) -> Path:
    """`data` when given (it must exist), else the `compress data synth` corpus in
    ``runs/corpus`` (written once with the command's defaults)."""
    if data is not None:
        if not data.is_dir():
            raise TableError(f"--data {data}: no such corpus folder (a folder holding nus48e/, "
                             "or the NUS-48E layout itself)")
        return data.resolve()
    root = (runs / "corpus").resolve()
    if not (root / "meta.json").is_file():  # written last: a partial corpus is redone
        from models.data.corpus import CorpusConfig, synthesize_corpus

        say(f"no --data: synthesising the corpus of `compress data synth` into {root}")
        summary = synthesize_corpus(root, CorpusConfig())
        say(f"corpus: {summary.line()}")
    return root


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train / load and evaluate every selected system; the JSON result."""
    import torch

    from models.sts.data import phoneme_list
    from models.sts.evaluate import evaluate_sts
    from models.sts.vocode import load_vocoder

    systems = parse_systems(args.systems)
    vocoder = load_vocoder(args.vocoder)
    if args.threads:
        torch.set_num_threads(args.threads)
    runs = args.runs if args.runs is not None else Path("runs/sts_table") / args.size
    corpus = ensure_corpus(args.data, runs)
    n_phonemes = len(phoneme_list(corpus))
    cache: dict[Any, Any] = {}
    results: dict[str, dict[str, Any]] = {}
    records = []
    keys: list[str] | None = None
    songs: list[str] | None = None
    for i, system in enumerate(systems, 1):
        say(f"[{i}/{len(systems)}] {LABELS[system]}")
        model, path, info = train_system(system, args.size, corpus, runs, args.steps,
                                         args.seed, args.threads, n_phonemes, args.patience)
        data = eval_data(corpus, info, system == "autoencoder", args.seed, cache)
        t0 = time.time()
        res = evaluate_sts(model, data, "test", items=args.items, seed=args.seed,
                           griffin_lim_iters=args.gl_iters, progress=sys.stderr.isatty(),
                           vocoder=vocoder)
        if keys is None:
            keys, songs = res["keys"], res["songs"]
        elif res["keys"] != keys:
            only = sorted(set(res["keys"]) ^ set(keys))
            raise TableError(
                f"{system} was scored on other test samples than {systems[0]} "
                f"({len(res['keys'])} vs {len(keys)} keys; e.g. {only[:3]}; test songs "
                f"{res['songs']} vs {songs}): the systems would not be compared on the same "
                "items")
        results[system] = res
        mean, se = res["mean"], res["stderr"]
        paper_lsd, paper_rca = PAPER_TABLE1[system]
        records.append({
            "system": system, "lsd_db": mean["lsd"], "rca": mean["rca"],
            "phoneme_acc": mean["phoneme_accuracy"], "paper_lsd_db": paper_lsd,
            "paper_rca": paper_rca, "lsd_stderr": se["lsd"], "rca_stderr": se["rca"],
            "phoneme_acc_stderr": se["phoneme_accuracy"], "items": res["items"],
            "eligible": res["eligible"], "checkpoint": str(path),
            "train_steps": info["train_steps"], "train_seconds": info["train_seconds"],
            "best_step": info["best_step"], "stopped": info["stopped"],
            "preset": info["preset"], "reused": info["reused"],
            "eval_seconds": round(time.time() - t0, 1),
            "lsd_per_item": res["lsd"], "rca_per_item": res["rca"],
            "rca_vocoder": mean["rca_vocoder"], "rca_vocoder_stderr": se["rca_vocoder"],
            "rca_vocoder_per_item": res["rca_vocoder"],
        })
        acc = mean["phoneme_accuracy"]
        say(f"{system}: LSD {mean['lsd']:.2f} dB, RCA {mean['rca']:.3f} (vocoder "
            f"{mean['rca_vocoder']:.3f})"
            f"{'' if acc is None else f', phoneme accuracy {acc:.3f}'} on {res['items']} test "
            f"items ({time.time() - t0:.0f} s)")
    return {"records": records, "claims": claims(results), "data": str(corpus),
            "size": args.size, "keys": keys or [], "test_songs": songs or [],
            "seed": args.seed, "gl_iters": args.gl_iters, "items_asked": args.items,
            "steps": args.steps, "patience": args.patience, "runs": str(runs),
            "vocoder": args.vocoder or "dsp"}


def merge(paths: Sequence[Path]) -> dict[str, Any]:
    """One result from the JSON of several runs (systems trained and scored by separate
    processes): the same corpus, seed, Griffin-Lim iterations and test sample keys are
    required; a system in a later file replaces the same system of an earlier one. The table
    and the claims are recomputed from the per-item values."""
    merged: dict[str, Any] | None = None
    by_system: dict[str, dict[str, Any]] = {}
    for p in paths:
        try:
            d = json.loads(Path(p).read_text())
        except (OSError, ValueError) as exc:
            raise TableError(f"{p}: cannot read a result ({exc})") from None
        if merged is None:
            merged = {k: v for k, v in d.items() if k not in ("records", "claims")}
            merged["merged_from"] = []
        for k in ("data", "seed", "gl_iters", "keys"):
            if d.get(k) != merged.get(k):
                raise TableError(f"{p}: {k} differs from {paths[0]}'s; only runs on the same "
                                 "corpus, seed, Griffin-Lim iterations and test samples merge")
        merged["merged_from"].append(str(p))
        for r in d["records"]:
            by_system[r["system"]] = r
    if merged is None:
        raise TableError("--merge needs at least one result file")
    records = [by_system[s] for s in ORDER if s in by_system]
    results = {r["system"]: {"lsd": r["lsd_per_item"], "rca": r["rca_per_item"],
                             "mean": {"phoneme_accuracy": r["phoneme_acc"]}}
               for r in records}
    return {**merged, "records": records, "claims": claims(results)}


def get_parser() -> argparse.ArgumentParser:
    from models.sts.evaluate import PAPER_ITEMS
    from models.sts.synthesis import N_ITER

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", type=Path, required=True, help="write the result here")
    ap.add_argument("--data", type=Path, default=None,
                    help="NUS-48E-layout corpus (a folder holding nus48e/); default: the "
                    "`compress data synth` corpus, written to RUNS/corpus once")
    ap.add_argument("--runs", type=Path, default=None,
                    help="checkpoints, one folder per system (continued / reused); default: "
                    "runs/sts_table/<size>")
    ap.add_argument("--size", choices=SIZES, default="demo",
                    help="demo: the -demo presets; unittest: sts-unittest with the systems' "
                    "overrides (default: %(default)s)")
    ap.add_argument("--steps", type=int, default=None,
                    help="training steps per system (default: the preset's budget)")
    ap.add_argument("--patience", type=int, default=None,
                    help="validations without a better validation LSD before a run stops "
                    "(default: the preset's; the -demo presets' 3 can stop a run on the "
                    "plateau before it starts following the melody: raise it to compare the "
                    "systems at one budget)")
    ap.add_argument("--items", type=int, default=PAPER_ITEMS,
                    help="test samples per system (default: %(default)s, the paper's; all "
                    "eligible when fewer)")
    ap.add_argument("--systems", default=None, metavar="b1,b2,...",
                    help=f"which systems (default: all: {','.join(ORDER)})")
    ap.add_argument("--gl-iters", type=int, default=N_ITER,
                    help="Griffin-Lim iterations for the RCA (default: %(default)s)")
    ap.add_argument("--vocoder", default=None, metavar="CKPT",
                    help="LHQ-SVC checkpoint whose harmonic-plus-noise vocoder renders the "
                    "'RCA vocoder' column (default: the untrained DSP vocoder)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default: %(default)s; 0: torch's default)")
    ap.add_argument("--seed", type=int, default=0,
                    help="seed of the initial weights, the batches and the test sample "
                    "(default: %(default)s)")
    ap.add_argument("--merge", type=Path, nargs="+", default=None, metavar="RESULT.json",
                    help="train and score nothing: join the results of runs made by separate "
                    "processes (same corpus, seed and test samples; a later file's system "
                    "replaces an earlier one's) and recompute the table and the claims")
    return ap


def main(argv: list[str] | None = None) -> int:
    from models.errors import ModelsError
    from models.sts import StsError

    args = get_parser().parse_args(argv)
    for flag, v in (("--steps", args.steps), ("--items", args.items),
                    ("--patience", args.patience), ("--gl-iters", args.gl_iters)):
        if v is not None and v < 1:
            print(f"sts_table: error: {flag} {v}: expected an integer >= 1", file=sys.stderr)
            return 2
    if args.threads < 0 or args.seed < 0:
        print("sts_table: error: --threads and --seed must be >= 0", file=sys.stderr)
        return 2
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        result = merge(args.merge) if args.merge else run(args)
    except (TableError, ModelsError, StsError) as exc:
        print(f"sts_table: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    print(format_table(result["records"]))
    n = result["records"][0]["items"] if result["records"] else 0
    print(f"{n} held-out test samples (songs {', '.join(result['test_songs'])}) of "
          f"{result['data']}, seed {result['seed']}, Griffin-Lim {result['gl_iters']} "
          "iterations; "
          f"paper: Table 1 (NUS-48E, 100 samples)")
    for c in result["claims"]:
        print(claim_line(c))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.json.with_suffix(args.json.suffix + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(args.json)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

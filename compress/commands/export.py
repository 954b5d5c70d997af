"""`compress export`: a checkpoint or registry preset to .pte / .onnx / .tflite, parity-gated."""

from __future__ import annotations

import argparse

from compress.cli_util import add_command


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "export",
        help="export a checkpoint or registry model to .pte / .onnx / .tflite (parity-gated)",
        example="compress export lhq-svc-decoder --format pte --precision int8 --out exported",
        run=run,
        description=(
            "Export a checkpoint (path) or a registry preset (name, built untrained) to "
            "{model}_{backend}_{precision}.{ext} plus a sidecar JSON. The exported program is run "
            "in its real runtime first; nothing is written unless it matches PyTorch "
            "(fp32: max-abs error <= 1e-4 of the output scale; int8: SQNR >= the floor)."
        ),
    )
    p.add_argument(
        "model",
        metavar="CKPT|MODEL_NAME",
        help="checkpoint file / directory, or a registered model name",
    )
    p.add_argument(
        "--format",
        required=True,
        choices=["pte", "onnx", "tflite"],
        help="pte: ExecuTorch + XNNPACK; onnx: onnxruntime; tflite: LiteRT ([tflite] extra)",
    )
    p.add_argument("--precision", default="fp32", choices=["fp32", "int8"], help="default: fp32")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument(
        "--calibration",
        metavar="DIR",
        default=None,
        help="folder of audio files for int8 calibration (default: the model's "
        "example inputs, recorded as such in the sidecar)",
    )
    p.add_argument(
        "--chunk-seconds",
        type=float,
        default=None,
        metavar="S",
        help="export a fixed chunk of S seconds (default: the preset's shapes)",
    )
    p.add_argument(
        "--threads", type=int, default=None, metavar="N", help="runtime threads for the parity run"
    )
    p.add_argument(
        "--min-sqnr",
        type=float,
        default=20.0,
        metavar="DB",
        help="int8 SQNR floor in dB (default: 20)",
    )
    p.add_argument(
        "--allow-fallback",
        action="append",
        default=[],
        metavar="OP",
        help="hot op allowed to run on portable kernels (.pte), e.g. bmm; repeatable",
    )
    p.add_argument(
        "--keep-fp32",
        action="append",
        default=[],
        metavar="MODULE",
        help="int8: leave this submodule (dotted name, e.g. mel) in fp32; repeatable",
    )
    p.add_argument(
        "--stream-frames",
        type=int,
        default=None,
        metavar="K",
        help="export the streaming program instead (near-causal Vox-TasNet, causal Chimera): "
        "K frames and the state in, the output and the next state out",
    )
    p.add_argument(
        "--calibration-batches",
        type=int,
        default=8,
        metavar="N",
        help="calibration chunks taken from --calibration (default: 8)",
    )


def run(args: argparse.Namespace) -> int:
    from export.api import export_model
    from export.errors import ExportError
    from export.parity import GateConfig

    if args.threads is not None and args.threads < 1:
        raise ExportError(f"--threads must be >= 1, got {args.threads}")
    result = export_model(
        args.model,
        args.format,
        args.precision,
        args.out,
        calibration=args.calibration,
        chunk_seconds=args.chunk_seconds,
        threads=args.threads,
        gate=GateConfig(int8_min_sqnr_db=args.min_sqnr),
        allow_fallback_ops=tuple(args.allow_fallback),
        max_calibration_batches=args.calibration_batches,
        keep_fp32=tuple(args.keep_fp32),
        stream_frames=args.stream_frames,
    )
    par = result.sidecar["parity"]
    stoi = par["stoi"]
    print(f"wrote {result.path} ({result.size_bytes:,} bytes)")
    print(f"wrote {result.sidecar_path}")
    print(
        f"parity ({result.precision}, {par['n_inputs']} input(s)): max-abs {par['max_abs']:.3g}, "
        f"SQNR {par['sqnr_db'] if isinstance(par['sqnr_db'], str) else round(par['sqnr_db'], 2)} dB"
        f", STOI {'n/a' if stoi is None else round(stoi, 4)}"
    )
    deleg = result.sidecar.get("delegation")
    if deleg:
        print(
            f"delegation: {deleg['n_delegated_ops']} ops in {deleg['delegated_subgraphs']} "
            f"XNNPACK subgraph(s), {deleg['n_portable_ops']} on portable kernels "
            f"({', '.join(f'{k} ×{v}' for k, v in deleg['portable'].items()) or 'none'})"
        )
    print(f"calibration: {result.sidecar['calibration'].get('kind')}")
    return 0

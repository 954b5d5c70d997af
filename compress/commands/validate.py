"""`compress validate CONFIG`: check a run config and report every problem at once."""

from __future__ import annotations

import argparse

from compress.cli_util import add_command, add_set_argument


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "validate",
        help="check a run config (YAML) as compress run would; list every problem and exit "
        "non-zero if any",
        example="compress validate configs/default.yaml",
        run=run,
    )
    p.add_argument("config", help="YAML file")
    p.add_argument("--target", default=None,
                   help="the latency target compress run would be given (default: the config's)")
    add_set_argument(p, "--set evolve.max_rounds=3 (checked as compress run would apply it)")
    p.add_argument("--print", action="store_true", help="print the config with defaults filled in")


def run(args: argparse.Namespace) -> int:
    import sys

    from compress.config import RunConfig
    from compress.config_io import dump_yaml, load_yaml
    from compress.errors import ConfigError
    from compress.preflight import check_run

    try:
        cfg = load_yaml(RunConfig, args.config, args.overrides)
        check_run(cfg, args.config, args.target)
    except ConfigError as exc:
        n = len(exc.problems)
        print(f"{args.config}: {n} problem{'s' if n != 1 else ''}", file=sys.stderr)
        for prob in exc.problems:
            print(f"  - {prob}", file=sys.stderr)
        return 1
    print(f"{args.config}: ok")
    if args.print:
        print(dump_yaml(cfg), end="")
    return 0

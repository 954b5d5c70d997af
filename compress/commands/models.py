"""`compress models`: list registered models with parameter counts."""

from __future__ import annotations

import argparse

from compress.cli_util import add_command, print_json, print_table


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "models",
        help="list registered models with parameter counts",
        example="compress models --json",
        run=run,
    )
    p.add_argument("--json", action="store_true", help="print a JSON list of {name, params, ...}")
    p.add_argument("--family", default=None, help="only this family")


def run(args: argparse.Namespace) -> int:
    from models import registry

    rows = []
    for name in registry.names():
        if args.family and registry.get(name).family != args.family:
            continue
        rows.append(registry.describe(name))
    if args.json:
        print_json(rows)
        return 0
    if not rows:
        print("no models registered")
        return 0
    table = [
        {
            "name": r["name"],
            "family": r["family"],
            "component": r["component"],
            "params": f"{r['params']:,}",
            "fp32 MB": f"{r['fp32_mb']:.2f}",
            "sr": r["audio"]["sample_rate"],
            "description": r["description"],
        }
        for r in rows
    ]
    print_table(table, ["name", "family", "component", "params", "fp32 MB", "sr", "description"])
    return 0

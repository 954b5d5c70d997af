"""`compress devices`: list Android devices attached to adb (SoC, cores, thermal, battery)."""

from __future__ import annotations

import argparse

from compress.cli_util import add_command, print_json, print_table


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "devices",
        help="list Android devices over adb: model, SoC, ABI, cores, thermal status, battery",
        example="compress devices --json",
        run=run,
        description="List the devices the adb server sees (starting it if needed; port from "
        "ANDROID_ADB_SERVER_PORT or --port), with details for the online ones.",
    )
    p.add_argument("--json", action="store_true", help="print a JSON list of device records")
    p.add_argument("--port", type=int, default=None, help="adb server port (default 5037)")
    p.add_argument("--connect", action="append", default=[], metavar="HOST:PORT",
                   help="`adb connect` this TCP device first (repeatable)")
    p.add_argument("--no-start-server", action="store_true",
                   help="fail instead of starting the adb server")


def _cores(d: dict) -> str:
    parts = []
    for cl in d["clusters"]:
        parts.append(f"{len(cl['cpus'])}x{cl['max_khz'] / 1e6:.2f}")
    return " + ".join(reversed(parts))


def run(args: argparse.Namespace) -> int:
    from device_bench.adb import AdbServer, list_devices

    server = AdbServer(port=args.port)
    server.ensure(start=not args.no_start_server)
    for addr in args.connect:
        server.connect(addr)
    devices = [d.to_dict() for d in list_devices(server, start_server=False)]
    if args.json:
        print_json(devices)
        return 0
    if not devices:
        print(f"no devices attached to the adb server on port {server.port} "
              "(enable USB debugging and plug the phone in, or `adb connect HOST:PORT`)")
        return 0
    rows = [
        {
            "serial": d["serial"],
            "state": d["state"],
            "model": f"{d['manufacturer']} {d['model']}".strip(),
            "soc": d["soc"],
            "abi": d["abi"],
            "android": d["android_version"],
            "cores (GHz)": _cores(d),
            "thermal": "" if d["thermal_status"] is None else d["thermal_status"],
            "battery %": "" if d["battery_level"] is None else d["battery_level"],
        }
        for d in devices
    ]
    print_table(rows, list(rows[0]))
    return 0

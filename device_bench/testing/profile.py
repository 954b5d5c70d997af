"""Device profiles for the loopback test device: what a phone reports about itself.

A profile is a JSON file (see `profiles/sm8650.json`)::

    {"name": "...",
     "props": {"ro.product.model": "...", "ro.soc.model": "SM8650", ...},   # answered by getprop
     "clusters": [{"cpus": [0, 1, 2], "max_khz": 2265600}, ...],            # sysfs cpufreq files
     "thermal_status": 0,                                                   # dumpsys thermalservice
     "thermal_zones": [{"type": "cpu-0-0", "temp_mc": 34000}],
     "battery": {"level": 87, "temperature": 290}}                          # dumpsys battery

`materialize(sandbox)` writes it into a sandbox directory: the sysfs files under
`<sandbox>/sys/...`, the properties for `getprop`, and the `getprop` / `dumpsys` commands in
`<sandbox>/system/bin` (shell scripts that read those files). The ABI is whatever the profile
says; the bundled profiles say `x86_64` because the loopback device runs host binaries.
"""

from __future__ import annotations

import json
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from device_bench.errors import BenchError

PROFILE_DIR = Path(__file__).resolve().parent / "profiles"


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    props: dict[str, str]
    clusters: tuple[dict[str, Any], ...]
    thermal_status: int = 0
    thermal_zones: tuple[dict[str, Any], ...] = ()
    battery: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path) -> DeviceProfile:
        """Read a profile JSON file, or a bundled one by name (e.g. ``"sm8650"``)."""
        p = Path(path)
        if not p.suffix and not p.exists():
            p = PROFILE_DIR / f"{path}.json"
        try:
            data = json.loads(p.read_text())
        except FileNotFoundError:
            choices = ", ".join(sorted(q.stem for q in PROFILE_DIR.glob("*.json")))
            raise BenchError(f"device profile {path} not found; bundled: {choices}") from None
        except json.JSONDecodeError as exc:
            raise BenchError(f"device profile {p} is not valid JSON: {exc}") from None
        missing = [k for k in ("name", "props", "clusters") if k not in data]
        if missing:
            raise BenchError(f"device profile {p} lacks {missing}")
        return cls(
            name=str(data["name"]),
            props={str(k): str(v) for k, v in data["props"].items()},
            clusters=tuple(data["clusters"]),
            thermal_status=int(data.get("thermal_status", 0)),
            thermal_zones=tuple(data.get("thermal_zones", ())),
            battery=dict(data.get("battery", {})),
        )

    @property
    def num_cpus(self) -> int:
        return 1 + max(c for cl in self.clusters for c in cl["cpus"])

    def materialize(self, sandbox: Path) -> None:
        """Write sysfs files, property and dumpsys data and the helper commands into `sandbox`."""
        sandbox = Path(sandbox)
        cpu_root = sandbox / "sys/devices/system/cpu"
        n = self.num_cpus
        _write(cpu_root / "possible", f"0-{n - 1}\n")
        _write(cpu_root / "online", f"0-{n - 1}\n")
        for cl in self.clusters:
            cpus = sorted(cl["cpus"])
            related = " ".join(str(c) for c in cpus)
            for c in cpus:
                d = cpu_root / f"cpu{c}/cpufreq"
                _write(d / "cpuinfo_max_freq", f"{int(cl['max_khz'])}\n")
                _write(d / "cpuinfo_min_freq", f"{int(cl.get('min_khz', 300000))}\n")
                _write(d / "scaling_cur_freq", f"{int(cl.get('cur_khz', cl['max_khz']))}\n")
                _write(d / "related_cpus", related + "\n")
        for i, z in enumerate(self.thermal_zones):
            d = sandbox / f"sys/class/thermal/thermal_zone{i}"
            _write(d / "type", f"{z['type']}\n")
            _write(d / "temp", f"{int(z['temp_mc'])}\n")
        state = sandbox / "system/state"
        _write(state / "props", "".join(f"{k}={v}\n" for k, v in sorted(self.props.items())))
        self.set_thermal_status(sandbox, self.thermal_status)
        level = int(self.battery.get("level", 100))
        temp = int(self.battery.get("temperature", 250))
        _write(
            state / "battery",
            "Current Battery Service state:\n  AC powered: false\n  USB powered: true\n"
            f"  status: 2\n  health: 2\n  present: true\n  level: {level}\n  scale: 100\n"
            f"  temperature: {temp}\n",
        )
        bindir = sandbox / "system/bin"
        _write(
            bindir / "getprop",
            "#!/bin/sh\n"
            f'P="{state / "props"}"\n'
            'if [ $# -eq 0 ]; then sed "s/^\\([^=]*\\)=\\(.*\\)$/[\\1]: [\\2]/" "$P"; exit 0; fi\n'
            'grep -m1 "^$1=" "$P" | cut -d= -f2-\n',
            executable=True,
        )
        _write(
            bindir / "dumpsys",
            "#!/bin/sh\n"
            'case "$1" in\n'
            f'  battery) cat "{state / "battery"}" ;;\n'
            f'  thermalservice) cat "{state / "thermal"}" ;;\n'
            '  *) echo "Can\'t find service: $1"; exit 1 ;;\n'
            "esac\n",
            executable=True,
        )
        (sandbox / "data/local/tmp").mkdir(parents=True, exist_ok=True)

    @staticmethod
    def set_thermal_status(sandbox: Path, status: int) -> None:
        """Change what `dumpsys thermalservice` reports (0 none ... 6 shutdown)."""
        _write(
            Path(sandbox) / "system/state/thermal",
            f"IsStatusOverride: false\nThermalEventListeners:\nThermal Status: {int(status)}\n",
        )


def _write(path: Path, text: str, executable: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if executable:
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)

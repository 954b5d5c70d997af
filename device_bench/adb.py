"""Android devices over adb: the adb server, device listing and one device's operations.

Built on `adbutils` and the `adb` binary it ships (platform-tools 36). The server port comes
from `ANDROID_ADB_SERVER_PORT` (default 5037) unless given. adbutils' own connection starts a
server silently whenever it cannot connect; `AdbServer.client()` disables that, so a server
that died mid-run surfaces as one clear `DeviceError` instead of a fresh, empty server.

`list_devices()` returns a `DeviceInfo` per attached device (including `unauthorized` and
`offline` ones); for online devices one shell round trip collects the system properties
(model, manufacturer, ``ro.soc.*``, ``ro.board.platform``, ABI, Android version), every core's
``cpuinfo_max_freq`` (grouped into clusters: big.LITTLE), the thermal status
(``dumpsys thermalservice``) and the battery level (``dumpsys battery``).
"""

from __future__ import annotations

import logging
import os
import re
import socket
import subprocess
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import adbutils
from adbutils import AdbConnection

from device_bench.errors import DeviceError
from device_bench.soc import soc_name, soc_part_number

log = logging.getLogger(__name__)

DEFAULT_PORT = 5037
_EXIT_MARK = "__DEVICE_BENCH_RC="


def default_port() -> int:
    env = os.environ.get("ANDROID_ADB_SERVER_PORT", "")
    return int(env) if env.isdigit() else DEFAULT_PORT


class _NoAutostartConnection(AdbConnection):
    """An adbutils connection that fails instead of launching a server on its own."""

    def _safe_connect(self) -> socket.socket:
        return self._create_socket()


class _Client(adbutils.AdbClient):
    def make_connection(self, timeout: float | None = None) -> AdbConnection:
        conn = _NoAutostartConnection(self.host, self.port)
        if timeout:
            conn.conn.settimeout(timeout)
        return conn


class AdbServer:
    """The adb server on 127.0.0.1:`port`: check, start, stop, and a client for it."""

    def __init__(self, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = int(port) if port is not None else default_port()

    def __repr__(self) -> str:
        return f"AdbServer({self.host}:{self.port})"

    def is_running(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=1.0):
                return True
        except OSError:
            return False

    def adb_path(self) -> str:
        try:
            return adbutils.adb_path()
        except adbutils.AdbError as exc:
            raise DeviceError(f"no adb binary: {exc}") from None

    def start(self, timeout: float = 20.0) -> None:
        """Start the server (`adb -P PORT start-server`); no-op when it is already running."""
        if self.is_running():
            return
        adb = self.adb_path()
        try:
            proc = subprocess.run(
                [adb, "-P", str(self.port), "start-server"],
                capture_output=True, text=True, timeout=timeout,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DeviceError(
                f"could not start the adb server ({adb}) on port {self.port}: {exc}"
            ) from None
        if proc.returncode != 0 or not self.is_running():
            raise DeviceError(
                f"could not start the adb server on port {self.port} with {adb} "
                f"(exit {proc.returncode}): {(proc.stderr or proc.stdout).strip()[-500:]}"
            )

    def ensure(self, start: bool = True) -> None:
        """Make sure the server is reachable: start it, or raise DeviceError if `start` is False."""
        if self.is_running():
            return
        if not start:
            raise DeviceError(
                f"the adb server is not running on {self.host}:{self.port}; start it with "
                f"`adb -P {self.port} start-server` (or run `compress devices`)"
            )
        self.start()

    def kill(self) -> None:
        if self.is_running():
            subprocess.run([self.adb_path(), "-P", str(self.port), "kill-server"],
                           capture_output=True, timeout=20)

    def client(self) -> adbutils.AdbClient:
        return _Client(host=self.host, port=self.port)

    def states(self) -> dict[str, str]:
        """serial -> state for every device the server knows (device, unauthorized, offline...)."""
        try:
            return {d.serial: d.state for d in self.client().list()}
        except (adbutils.AdbError, OSError) as exc:
            raise self.explain(exc) from None

    def connect(self, address: str, timeout: float = 10.0) -> str:
        """`adb connect ADDRESS` (a TCP device such as 127.0.0.1:5555)."""
        try:
            msg = self.client().connect(address, timeout=timeout)
        except (adbutils.AdbError, OSError) as exc:
            raise self.explain(exc) from None
        if "connected to" not in msg and "authenticate" not in msg:
            raise DeviceError(f"adb connect {address} failed: {msg}")
        return msg

    def disconnect(self, address: str) -> None:
        try:
            self.client().disconnect(address)
        except (adbutils.AdbError, OSError) as exc:
            log.debug("disconnect %s: %s", address, exc)

    def explain(self, exc: BaseException, serial: str | None = None) -> DeviceError:
        """Turn an adbutils/socket error into one clear DeviceError (checks server and state)."""
        if not self.is_running():
            return DeviceError(
                f"the adb server on {self.host}:{self.port} is not running (it stopped or was "
                f"never started): {exc}"
            )
        if serial is None:
            return DeviceError(f"adb error: {exc}")
        try:
            state = {d.serial: d.state for d in self.client().list()}.get(serial)
        except (adbutils.AdbError, OSError):
            state = None
        if state is None:
            return DeviceError(f"device {serial} disconnected (no longer listed by adb): {exc}")
        if state != "device":
            return DeviceError(f"device {serial} is {state}: {exc}")
        return DeviceError(f"adb error on device {serial}: {exc}")


@dataclass(frozen=True)
class Cluster:
    cpus: tuple[int, ...]
    max_khz: int


@dataclass
class DeviceInfo:
    serial: str
    state: str
    model: str = ""
    manufacturer: str = ""
    soc_manufacturer: str = ""
    soc_model: str = ""
    board_platform: str = ""
    soc: str = ""
    abi: str = ""
    abilist: str = ""
    android_version: str = ""
    sdk: str = ""
    cpu_max_khz: list[int | None] = field(default_factory=list)
    clusters: list[Cluster] = field(default_factory=list)
    thermal_status: int | None = None
    battery_level: int | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["clusters"] = [{"cpus": list(c.cpus), "max_khz": c.max_khz} for c in self.clusters]
        return d

    def big_cpus(self) -> list[int]:
        """CPUs outside the slowest cluster (all CPUs when there is one cluster)."""
        if len(self.clusters) <= 1:
            return sorted(c for cl in self.clusters for c in cl.cpus)
        slowest = min(cl.max_khz for cl in self.clusters)
        return sorted(c for cl in self.clusters if cl.max_khz > slowest for c in cl.cpus)

    def result_device(self) -> dict[str, Any]:
        """The `device` block of a bench_result.v1."""
        return {
            "kind": "android",
            "serial": self.serial,
            "model": self.model,
            "manufacturer": self.manufacturer,
            "soc": self.soc,
            "soc_model": self.soc_model,
            "abi": self.abi,
            "android_version": self.android_version or None,
            "cpu_max_khz": list(self.cpu_max_khz),
            "clusters": [{"cpus": list(c.cpus), "max_khz": c.max_khz} for c in self.clusters],
            "thermal_status": self.thermal_status,
            "battery_level": self.battery_level,
        }


# One round trip: properties, per-CPU max frequency, thermal status, battery level.
_INFO_SCRIPT = (
    "echo '@@props'; getprop; "
    "echo '@@cpufreq'; for c in /sys/devices/system/cpu/cpu[0-9]*; do "
    "echo \"${c##*/} $(cat $c/cpufreq/cpuinfo_max_freq 2>/dev/null)\"; done; "
    "echo '@@thermal'; dumpsys thermalservice 2>/dev/null | grep -m1 'Thermal Status'; "
    "echo '@@battery'; dumpsys battery 2>/dev/null | grep -m1 'level'"
)
_PROP = re.compile(r"^\[([^\]]+)\]: \[(.*)\]$")


def parse_clusters(cpu_max_khz: list[int | None]) -> list[Cluster]:
    """Group CPUs with the same max frequency into clusters, slowest first."""
    groups: dict[int, list[int]] = {}
    for cpu, khz in enumerate(cpu_max_khz):
        if khz is not None:
            groups.setdefault(khz, []).append(cpu)
    return [Cluster(tuple(cpus), khz) for khz, cpus in sorted(groups.items())]


def parse_info(serial: str, state: str, text: str) -> DeviceInfo:
    """Parse the output of `_INFO_SCRIPT` into a DeviceInfo."""
    sections: dict[str, list[str]] = {}
    current = ""
    for line in text.splitlines():
        if line.startswith("@@"):
            current = line[2:].strip()
            sections[current] = []
        elif current:
            sections[current].append(line.rstrip("\r"))
    props = {}
    for line in sections.get("props", []):
        m = _PROP.match(line.strip())
        if m:
            props[m.group(1)] = m.group(2)
    freqs: dict[int, int | None] = {}
    for line in sections.get("cpufreq", []):
        parts = line.split()
        if parts and parts[0].startswith("cpu") and parts[0][3:].isdigit():
            cpu = int(parts[0][3:])
            freqs[cpu] = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
    cpu_max = [freqs.get(i) for i in range(max(freqs) + 1)] if freqs else []
    thermal = None
    for line in sections.get("thermal", []):
        m = re.search(r"Thermal Status:\s*(\d+)", line)
        if m:
            thermal = int(m.group(1))
    battery = None
    for line in sections.get("battery", []):
        m = re.search(r"level:\s*(\d+)", line)
        if m:
            battery = int(m.group(1))
    soc_m = props.get("ro.soc.manufacturer", "")
    soc_model = props.get("ro.soc.model", "")
    platform = props.get("ro.board.platform", "")
    return DeviceInfo(
        serial=serial,
        state=state,
        model=props.get("ro.product.model", ""),
        manufacturer=props.get("ro.product.manufacturer", ""),
        soc_manufacturer=soc_m,
        soc_model=soc_part_number(soc_model, platform),
        board_platform=platform,
        soc=soc_name(soc_m, soc_model, platform),
        abi=props.get("ro.product.cpu.abi", ""),
        abilist=props.get("ro.product.cpu.abilist", ""),
        android_version=props.get("ro.build.version.release", ""),
        sdk=props.get("ro.build.version.sdk", ""),
        cpu_max_khz=cpu_max,
        clusters=parse_clusters(cpu_max),
        thermal_status=thermal,
        battery_level=battery,
    )


class Device:
    """One adb device: shell with exit codes, push, pull — every failure a DeviceError."""

    def __init__(self, server: AdbServer, serial: str) -> None:
        self.server = server
        self.serial = serial
        self._dev = server.client().device(serial)

    def check_online(self) -> None:
        state = self.server.states().get(self.serial)
        if state is None:
            known = ", ".join(sorted(self.server.states())) or "none"
            raise DeviceError(f"device {self.serial} is not attached (attached: {known})")
        if state == "unauthorized":
            raise DeviceError(
                f"device {self.serial} is unauthorized: unlock the phone and accept the "
                "'Allow USB debugging?' dialog (check 'Always allow'), then retry"
            )
        if state != "device":
            raise DeviceError(f"device {self.serial} is {state}; expected 'device' "
                              "(reconnect the cable or run `adb reconnect`)")

    def run(self, command: str, timeout: float = 120.0) -> tuple[int, str]:
        """Run `command` in the device shell; return (exit code, merged stdout+stderr)."""
        wrapped = f"( {command} ) 2>&1; echo {_EXIT_MARK}$?"
        try:
            out = self._dev.shell(wrapped, timeout=timeout, rstrip=False)
        except (adbutils.AdbError, OSError) as exc:
            raise self.server.explain(exc, self.serial) from None
        idx = out.rfind(_EXIT_MARK)
        if idx < 0:
            raise self.server.explain(
                ConnectionError(f"the shell ended before the command finished: {command[:80]}"),
                self.serial,
            )
        rc_text = out[idx + len(_EXIT_MARK) :].strip()
        return (int(rc_text) if rc_text.isdigit() else 255), out[:idx]

    def check(self, command: str, timeout: float = 120.0) -> str:
        rc, out = self.run(command, timeout)
        if rc != 0:
            raise DeviceError(f"`{command[:120]}` failed on {self.serial} (exit {rc}): "
                              f"{out.strip()[-800:]}")
        return out

    def push(self, local: str | Path, remote: str, mode: int = 0o644) -> int:
        try:
            return self._dev.sync.push(str(local), remote, mode=mode, check=True)
        except (adbutils.AdbError, OSError) as exc:
            raise self.server.explain(exc, self.serial) from None

    def pull(self, remote: str, local: str | Path) -> int:
        tmp = Path(str(local) + f".{uuid.uuid4().hex[:6]}.part")
        try:
            n = self._dev.sync.pull_file(remote, tmp)
            os.replace(tmp, local)
            return n
        except (adbutils.AdbError, OSError) as exc:
            tmp.unlink(missing_ok=True)
            raise self.server.explain(exc, self.serial) from None

    def info(self) -> DeviceInfo:
        _, out = self.run(_INFO_SCRIPT, timeout=60)
        return parse_info(self.serial, "device", out)


def list_devices(server: AdbServer | None = None, start_server: bool = True) -> list[DeviceInfo]:
    """Every device the adb server knows; details for the online ones."""
    server = server or AdbServer()
    server.ensure(start=start_server)
    out = []
    for serial, state in sorted(server.states().items()):
        if state == "device":
            try:
                out.append(Device(server, serial).info())
            except DeviceError as exc:
                log.warning("could not read %s: %s", serial, exc)
                out.append(DeviceInfo(serial=serial, state="offline"))
        else:
            out.append(DeviceInfo(serial=serial, state=state))
    return out


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

Every failure is a `DeviceError` whose class says what happened (`device_bench.errors`): the
server is gone (`AdbServerError`), the device is not attached or dropped mid-operation
(`DeviceDisconnected`), `DeviceUnauthorized`, `DeviceOffline`, or a push ran out of space
(`DeviceStorageFull`; `Device.push` speaks sync SEND itself so the device's FAIL message is
kept, where adbutils' push reports only ``FAIL``).
"""

from __future__ import annotations

import logging
import os
import re
import socket
import stat
import struct
import subprocess
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import adbutils
from adbutils import AdbConnection

from device_bench.errors import (
    AdbServerError,
    DeviceDisconnected,
    DeviceError,
    DeviceOffline,
    DeviceStorageFull,
    DeviceUnauthorized,
)
from device_bench.soc import soc_name, soc_part_number

log = logging.getLogger(__name__)

DEFAULT_PORT = 5037
_EXIT_MARK = "__DEVICE_BENCH_RC="
SYNC_DATA_MAX = 64 * 1024  # adbd's largest sync DATA chunk
_NO_SPACE = "No space left on device"  # strerror(ENOSPC), in adbd's "write failed: ..."


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
            raise AdbServerError(
                f"could not start the adb server ({adb}) on port {self.port}: {exc}"
            ) from None
        if proc.returncode != 0 or not self.is_running():
            raise AdbServerError(
                f"could not start the adb server on port {self.port} with {adb} "
                f"(exit {proc.returncode}): {(proc.stderr or proc.stdout).strip()[-500:]}"
            )

    def ensure(self, start: bool = True) -> None:
        """Make sure the server is reachable: start it, or raise DeviceError if `start` is False."""
        if self.is_running():
            return
        if not start:
            raise AdbServerError(
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
        """Turn an adbutils/socket error into one clear DeviceError (checks server and state).

        An error in the middle of an operation on a device adb still lists, as ``offline`` or
        even ``device`` again (adb reconnects TCP devices on its own), is a dropped connection
        too when the error is one of the connection (`DeviceDisconnected`): what was running
        on the device is lost either way.
        """
        if not self.is_running():
            return AdbServerError(
                f"the adb server on {self.host}:{self.port} is not running (it stopped or was "
                f"never started): {exc}; start it again (`adb -P {self.port} start-server`) "
                "and re-run"
            )
        if serial is None:
            return DeviceError(f"adb error: {exc}")
        try:
            state = {d.serial: d.state for d in self.client().list()}.get(serial)
        except (adbutils.AdbError, OSError):
            state = None
        again = "reconnect it (cable, or `adb connect` for Wi-Fi debugging) and re-run"
        if state is None:
            return DeviceDisconnected(
                f"device {serial} disconnected (no longer listed by adb): {exc}; {again}")
        if state == "unauthorized":
            return DeviceUnauthorized(f"device {serial} is unauthorized: {exc}; {_ACCEPT}")
        if state != "device" or _connection_lost(exc):
            return DeviceDisconnected(
                f"device {serial} dropped the connection (adb now lists it as {state}): "
                f"{exc}; {again}")
        return DeviceError(f"adb error on device {serial}: {exc}")


_ACCEPT = ("unlock the phone and accept the 'Allow USB debugging?' dialog (check 'Always "
           "allow'), then retry")


def _brief(command: str, n: int = 60) -> str:
    """`command` without a leading ``cd DIR &&`` and ``VAR=value`` words, cut to `n` chars."""
    words = command.split(" && ")[-1].split()
    while words and re.match(r"[A-Za-z_][A-Za-z0-9_]*=", words[0]):
        words.pop(0)
    text = " ".join(words)
    return text if len(text) <= n else text[: n - 3] + "..."


def _connection_lost(exc: BaseException) -> bool:
    """Whether `exc` says the connection went away (a timeout or a refusal does not)."""
    if isinstance(exc, TimeoutError):
        return False
    if isinstance(exc, (OSError, EOFError)):
        return True
    text = str(exc).lower()
    return any(k in text for k in ("closed", "reset", "broken pipe", "offline", "eof"))


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
        """Raise the DeviceError that says why the device cannot be used, if it cannot."""
        states = self.server.states()
        state = states.get(self.serial)
        if state is None:
            known = ", ".join(sorted(states)) or "none"
            raise DeviceDisconnected(
                f"device {self.serial} is not attached (attached: {known}); plug it in with USB "
                "debugging on (or `adb connect HOST:PORT`), check `compress devices`, and retry")
        if state == "unauthorized":
            raise DeviceUnauthorized(f"device {self.serial} is unauthorized: {_ACCEPT}")
        if state == "offline":
            raise DeviceOffline(
                f"device {self.serial} is offline (adb has a connection but the device does not "
                f"answer): unplug and replug it (Wi-Fi: `adb disconnect {self.serial}` then "
                "`adb connect` again) or run `adb reconnect offline`, unlock it, and retry")
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
                ConnectionError(f"the shell ended before `{_brief(command)}` finished"),
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

    def push(self, local: str | Path, remote: str, mode: int = 0o644,
             timeout: float = 120.0) -> int:
        """Copy `local` to `remote` on the device (sync SEND); return the bytes sent.

        The device's FAIL message ends up in the error; ``No space left on device`` (adbd's
        ``write failed: ...``) is a `DeviceStorageFull`. `timeout` bounds each socket wait.
        """
        local = Path(local)
        request = f"{remote},{stat.S_IFREG | (mode & 0o7777)}".encode()
        sent = 0
        try:
            f = open(local, "rb")  # noqa: SIM115 (closed by the `with` below)
        except OSError as exc:
            raise DeviceError(f"cannot push {local}: {exc.strerror}") from None
        try:
            with f, self._dev.open_transport(timeout=timeout) as c:
                c.send_command("sync:")
                c.check_okay()
                c.conn.sendall(b"SEND" + struct.pack("<I", len(request)) + request)
                try:
                    while chunk := f.read(SYNC_DATA_MAX):
                        c.conn.sendall(b"DATA" + struct.pack("<I", len(chunk)) + chunk)
                        sent += len(chunk)
                    c.conn.sendall(b"DONE" + struct.pack("<I", int(time.time())))
                except OSError as exc:
                    # adbd answers FAIL at once and may close before it read everything:
                    # its answer is still waiting in our socket buffer
                    log.debug("push %s: send stopped after %d bytes: %s", local.name, sent, exc)
                status = c.read_exact(4)
                length = struct.unpack("<I", c.read_exact(4))[0]
                message = c.read_exact(length).decode("utf-8", "replace") if status == b"FAIL" \
                    else ""
        except (adbutils.AdbError, OSError, EOFError) as exc:
            raise self.server.explain(exc, self.serial) from None
        if status == b"OKAY":
            return sent
        size = local.stat().st_size
        where = f"pushing {local.name} ({size / 1e6:.1f} MB) to {remote}"
        if status != b"FAIL":
            raise DeviceError(f"{where} on {self.serial}: unexpected sync answer {status!r}")
        if _NO_SPACE in message:
            raise DeviceStorageFull(
                f"device {self.serial} storage is full: {where} failed ({message})")
        raise DeviceError(f"{where} failed on {self.serial}: {message}")

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


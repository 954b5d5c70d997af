"""Fixtures for device_bench: the host runner, test .pte files, an adb server, loopback devices.

* `runner_root`: builds the host runner bundle once (idempotent: skipped when up to date).
* `pte_fp32` / `pte_int8`: XNNPACK programs exported with ExecuTorch directly, cached under
  build/device_bench_test_models/<hash of the generator source>.
* `adb_server`: the real adb server shipped with adbutils on a free, non-default port, with its
  own HOME (its key pair is generated there); killed after the session.
* `make_device`: starts loopback devices (sandbox under tmp_path) and `adb connect`s them
  (an ``offline=True`` device never finishes the handshake: the connect is given up after
  half a second and the server lists it as ``offline``).
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from device_bench.adb import AdbServer
from device_bench.errors import DeviceError
from device_bench.runner_build import build_host_runner, default_runner_root
from device_bench.testing.adbd import LoopbackDevice
from device_bench.testing.profile import DeviceProfile

REPO = Path(__file__).resolve().parents[2]


class ConvStack(torch.nn.Module):
    def __init__(self, channels: int = 128, layers: int = 4, kernel: int = 5) -> None:
        super().__init__()
        self.inp = torch.nn.Conv1d(16, channels, 1)
        self.body = torch.nn.ModuleList(
            torch.nn.Conv1d(channels, channels, kernel, padding=kernel // 2) for _ in range(layers)
        )
        self.out = torch.nn.Conv1d(channels, 16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)  # (B, C, T)
        for conv in self.body:
            h = torch.relu(conv(h)) + h  # (B, C, T)
        return self.out(h)  # (B, 16, T)


def export_pte(path: Path, quantize: bool = False, frames: int = 2048, seed: int = 0) -> Path:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    torch.manual_seed(seed)
    model = ConvStack().eval()
    example = (torch.randn(1, 16, frames),)
    if quantize:
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
            XNNPACKQuantizer,
            get_symmetric_quantization_config,
        )
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

        graph = torch.export.export(model, example).module()
        quantizer = XNNPACKQuantizer().set_global(
            get_symmetric_quantization_config(is_per_channel=True)
        )
        prepared = prepare_pt2e(graph, quantizer)
        for _ in range(4):
            prepared(torch.randn(1, 16, frames))
        model = convert_pt2e(prepared)
    exported = torch.export.export(model, example)
    program = to_edge_transform_and_lower(
        exported, partitioner=[XnnpackPartitioner()]
    ).to_executorch()
    path = Path(path)
    path.write_bytes(program.buffer)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_adb_server(home: Path) -> AdbServer:
    """Start a private adb server (own port, own HOME); return its handle."""
    server = AdbServer(port=free_port())
    home.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, HOME=str(home), ANDROID_ADB_SERVER_PORT=str(server.port))
    subprocess.run([server.adb_path(), "-P", str(server.port), "start-server"], env=env,
                   check=True, capture_output=True, timeout=30)
    assert server.is_running()
    return server


def wait_state(server: AdbServer, serial: str, state: str, timeout: float = 10.0) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if server.states().get(serial) == state:
            return
        time.sleep(0.05)
    raise AssertionError(f"{serial} did not reach {state}: {server.states()}")


def write_profile(path: Path, **changes: object) -> Path:
    """A copy of the bundled sm8650 profile with top-level keys or props replaced."""
    data = json.loads((Path(__file__).resolve().parents[2] / "device_bench/testing/profiles"
                       / "sm8650.json").read_text())
    props = changes.pop("props", None)
    data.update(changes)
    if props:
        data["props"].update(props)
    path.write_text(json.dumps(data))
    return path




@pytest.fixture
def helpers() -> dict[str, Callable[..., object]]:
    """The helper functions above, for tests (test modules cannot import conftest)."""
    return {"free_port": free_port, "start_adb_server": start_adb_server,
            "wait_state": wait_state, "write_profile": write_profile}


@pytest.fixture(scope="session")
def runner_root() -> Path:
    build_host_runner()
    return default_runner_root()


def _cached_model(name: str, quantize: bool) -> Path:
    """Export once per version of the model code; later sessions reuse the file."""
    source = inspect.getsource(ConvStack) + inspect.getsource(export_pte)
    key = hashlib.sha256(source.encode()).hexdigest()[:12]
    out = REPO / "build" / "device_bench_test_models" / key / f"{name}.pte"
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            tmp = out.with_suffix(f".{os.getpid()}.part")
            export_pte(tmp, quantize=quantize)
            os.replace(tmp, out)
        finally:
            torch.set_num_threads(threads)
    return out


@pytest.fixture(scope="session")
def pte_fp32() -> Path:
    return _cached_model("convstack_fp32", quantize=False)


@pytest.fixture(scope="session")
def pte_int8() -> Path:
    return _cached_model("convstack_int8", quantize=True)


@pytest.fixture(scope="session")
def adb_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdbServer]:
    server = start_adb_server(tmp_path_factory.mktemp("adb_home"))
    old = os.environ.get("ANDROID_ADB_SERVER_PORT")
    # Anything that would start a server on its own goes to this port, never to 5037.
    os.environ["ANDROID_ADB_SERVER_PORT"] = str(server.port)
    yield server
    server.kill()
    if old is None:
        os.environ.pop("ANDROID_ADB_SERVER_PORT", None)
    else:
        os.environ["ANDROID_ADB_SERVER_PORT"] = old


@pytest.fixture
def make_device(
    tmp_path: Path, adb_server: AdbServer
) -> Iterator[Callable[..., LoopbackDevice]]:
    started: list[tuple[LoopbackDevice, AdbServer]] = []

    def make(profile: str | Path = "sm8650", unauthorized: bool = False,
             server: AdbServer | None = None, name: str = "phone", offline: bool = False,
             storage_limit: int | None = None) -> LoopbackDevice:
        srv = server or adb_server
        dev = LoopbackDevice(DeviceProfile.load(profile), tmp_path / name,
                             unauthorized=unauthorized, offline=offline,
                             storage_limit=storage_limit).start()
        started.append((dev, srv))
        if offline:
            # `adb connect` waits 10 s for a handshake that never comes; the server keeps the
            # transport (offline) after the client gives up
            with contextlib.suppress(DeviceError):
                srv.connect(dev.serial, timeout=0.5)
            wait_state(srv, dev.serial, "offline")
            return dev
        srv.connect(dev.serial)
        wait_state(srv, dev.serial, "unauthorized" if unauthorized else "device")
        return dev

    yield make
    for dev, srv in started:
        if srv.is_running():
            srv.disconnect(dev.serial)
        dev.stop()

"""A loopback adb daemon: a test "phone" that the real adb server attaches to over TCP.

`LoopbackDevice` listens on 127.0.0.1 and speaks the device side of the adb transport protocol
(AOSP `protocol.txt`): the 24-byte message header (command, arg0, arg1, length, checksum,
magic), CNXN (version and max payload are the minimum of both sides; the data checksum is
computed for old peers and not checked), AUTH (only to refuse: see `unauthorized`), OPEN /
OKAY / WRTE / CLSE streams with one outstanding WRTE per stream (the classic flow control; the
daemon does not advertise `delayed_ack`, so the server does not use it), and two services:

* ``shell:<cmd>`` — runs ``/bin/sh -c <cmd>`` on this host inside a sandbox directory, stdout and
  stderr merged (raw, no PTY), like adbd's non-interactive shell. `shell_v2` is not advertised,
  so clients use the plain service. Absolute device paths under ``/data``, ``/sdcard`` and
  ``/sys`` in the command line are rewritten into the sandbox; ``getprop`` and ``dumpsys`` come
  from the device profile (see `profile.py`).
* ``sync:`` (AOSP `SYNC.TXT`) — STAT, STA2/LST2 (``stat_v2`` is advertised), LIST, SEND (parent
  directories are created: ``fixed_push_mkdir``), RECV, QUIT.

Faults for tests (each one what a real phone does, as the real adb server sees it):

* ``unauthorized=True`` answers the server's CNXN with an AUTH token and never accepts a
  signature or key, so the server lists the device as ``unauthorized``.
* ``offline=True`` accepts the TCP connection, reads the server's CNXN and never answers it,
  like a phone whose adbd hangs. Measured with platform-tools 36: the server registers the
  transport at once and lists it as ``offline`` (within 0.1 s); ``adb connect`` itself waits
  10 s for the handshake and then reports ``failed to connect to HOST:PORT``, but the
  transport stays listed as ``offline`` until ``adb disconnect`` (so connect with a short
  client timeout and wait for the state).
* ``storage_limit=N`` is the size in bytes of the phone's ``/data``: a push (sync SEND) that
  would take the files under ``<sandbox>/data`` past it fails as adbd fails on ENOSPC — FAIL
  ``write failed: No space left on device`` as soon as the chunk that does not fit arrives,
  the rest of the file read and thrown away until DONE, the partial file removed, the sync
  service ended.
* ``drop_after(kind, nbytes, match)`` closes the TCP connection once a push (``"push"``) or
  pull (``"pull"``) has moved `nbytes`, or when a shell command containing `match` starts
  (``"shell"``): the cable pulled out.
* ``kill_process(name, match, signum, after_s)`` sends `signum` (SIGKILL by default) to the
  process called `name` that a shell command containing `match` started, `after_s` seconds
  after it appears: the low-memory killer, or ``kill -9`` from another shell. ``/bin/sh``
  then reports the command's exit status as 128 + `signum` (137), as the device shell does.
* ``heat_after(match, status, temp_mc)`` changes the thermal readings when a shell command
  containing `match` finishes: ``dumpsys thermalservice`` reports `status`, and every thermal
  zone in sysfs `temp_mc` millidegrees (the phone heated up during that command).

Not a security boundary: commands run with this process's rights.

Use::

    dev = LoopbackDevice(DeviceProfile.load("sm8650"), sandbox=tmp / "phone").start()
    adb connect 127.0.0.1:<dev.port>          # the real adb server attaches
    ...
    dev.stop()
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import signal
import socket
import stat
import struct
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from device_bench.testing.profile import DeviceProfile

log = logging.getLogger(__name__)


def _cmd(name: bytes) -> int:
    return struct.unpack("<I", name)[0]


A_CNXN = _cmd(b"CNXN")
A_AUTH = _cmd(b"AUTH")
A_OPEN = _cmd(b"OPEN")
A_OKAY = _cmd(b"OKAY")
A_WRTE = _cmd(b"WRTE")
A_CLSE = _cmd(b"CLSE")
A_SYNC = _cmd(b"SYNC")
A_STLS = _cmd(b"STLS")
A_VERSION = 0x01000001  # skips the data checksum
AUTH_TOKEN, AUTH_SIGNATURE, AUTH_RSAPUBLICKEY = 1, 2, 3
HEADER = struct.Struct("<6I")
DEVICE_MAX_PAYLOAD = 256 * 1024
SYNC_DATA_MAX = 64 * 1024
FEATURES = ("cmd", "stat_v2", "fixed_push_mkdir", "fixed_push_symlink_timestamp")
_DEVICE_PATH = re.compile(r"(?<![\w./-])(/data|/sdcard|/sys)(?=/|\b)")


class _Dropped(Exception):
    """Raised inside a service when an injected fault closed the connection."""


@dataclass
class _Fault:
    kind: str  # "push" | "pull" | "shell" (drop) | "kill" | "heat"
    nbytes: int = 0
    match: str = ""
    process: str = ""  # kill: the process name (its comm, at most 15 characters)
    signum: int = signal.SIGKILL
    after_s: float = 0.0
    status: int = 0  # heat: the thermal status reported afterwards
    temp_mc: int | None = None


class _Stream:
    """One adb stream (OPEN ... CLSE) of a connection, seen from the device side."""

    def __init__(self, conn: _Connection, local_id: int, remote_id: int) -> None:
        self.conn = conn
        self.local_id = local_id
        self.remote_id = remote_id
        self._buf = bytearray()
        self._cv = threading.Condition()
        self._ready = threading.Semaphore(1)
        self.closed = False

    # inbound
    def feed(self, data: bytes) -> None:
        with self._cv:
            self._buf += data
            self._cv.notify_all()

    def read_exact(self, n: int) -> bytes:
        with self._cv:
            while len(self._buf) < n:
                if self.closed:
                    raise EOFError("stream closed")
                self._cv.wait(timeout=0.5)
            out = bytes(self._buf[:n])
            del self._buf[:n]
            return out

    def on_okay(self) -> None:
        self._ready.release()

    def on_close(self) -> None:
        with self._cv:
            self.closed = True
            self._cv.notify_all()
        self._ready.release()

    # outbound
    def write(self, data: bytes) -> None:
        mv = memoryview(data)
        step = self.conn.max_payload
        for i in range(0, len(mv), step):
            while not self._ready.acquire(timeout=0.5):
                if self.closed or self.conn.dead:
                    raise EOFError("stream closed")
            if self.closed or self.conn.dead:
                raise EOFError("stream closed")
            self.conn.send(A_WRTE, self.local_id, self.remote_id, bytes(mv[i : i + step]))

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.conn.send(A_CLSE, self.local_id, self.remote_id)
        self.conn.forget(self.local_id)


class _Connection:
    """One TCP connection from the adb server."""

    def __init__(self, device: LoopbackDevice, sock: socket.socket) -> None:
        self.device = device
        self.sock = sock
        self.max_payload = 4096
        self.version = A_VERSION
        self.dead = False
        self._wlock = threading.Lock()
        self._streams: dict[int, _Stream] = {}
        self._next_id = 1
        self._online = False

    def send(self, command: int, arg0: int, arg1: int, data: bytes = b"") -> None:
        header = HEADER.pack(
            command, arg0, arg1, len(data), sum(data) & 0xFFFFFFFF, command ^ 0xFFFFFFFF
        )
        with self._wlock:
            if self.dead:
                raise EOFError("connection closed")
            try:
                self.sock.sendall(header + data)
            except OSError as exc:
                self.dead = True
                raise EOFError(str(exc)) from None

    def drop(self) -> None:
        """Close the TCP connection abruptly (the fault injection path)."""
        self.dead = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        for s in list(self._streams.values()):
            s.on_close()

    def forget(self, local_id: int) -> None:
        self._streams.pop(local_id, None)

    def _recv_exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise EOFError("peer closed")
            buf += chunk
        return bytes(buf)

    def serve(self) -> None:
        try:
            while not self.dead:
                cmd, arg0, arg1, length, _crc, magic = HEADER.unpack(self._recv_exact(24))
                if magic != cmd ^ 0xFFFFFFFF:
                    log.warning("bad magic from server; closing")
                    break
                data = self._recv_exact(length) if length else b""
                self._handle(cmd, arg0, arg1, data)
        except (EOFError, OSError):
            pass  # the adb server closed the connection: this session is over
        finally:
            if not self.dead:
                self.drop()

    def _banner(self) -> bytes:
        p = self.device.profile.props
        fields = [
            f"ro.product.name={p.get('ro.product.name', '')}",
            f"ro.product.model={p.get('ro.product.model', '')}",
            f"ro.product.device={p.get('ro.product.device', '')}",
            f"features={','.join(FEATURES)}",
        ]
        return ("device::" + ";".join(fields) + ";").encode()

    def _handle(self, cmd: int, arg0: int, arg1: int, data: bytes) -> None:
        if cmd == A_CNXN:
            self.version = min(arg0, A_VERSION)
            self.max_payload = max(256, min(arg1, DEVICE_MAX_PAYLOAD))
            if self.device.offline:
                log.info("loopback adbd: offline, leaving CNXN unanswered")
            elif self.device.unauthorized:
                self.send(A_AUTH, AUTH_TOKEN, 0, os.urandom(20))
            else:
                self._online = True
                self.send(A_CNXN, self.version, DEVICE_MAX_PAYLOAD, self._banner())
        elif cmd == A_AUTH:
            if arg0 == AUTH_SIGNATURE:
                # Never accept: ask for another signature, as adbd does with an unknown key.
                self.send(A_AUTH, AUTH_TOKEN, 0, os.urandom(20))
            # AUTH_RSAPUBLICKEY: a real phone would show the "Allow USB debugging?" dialog here.
        elif not self._online:
            return
        elif cmd == A_OPEN:
            service = data.rstrip(b"\0").decode("utf-8", "replace")
            local_id = self._next_id
            self._next_id += 1
            stream = _Stream(self, local_id, arg0)
            handler = self.device._service(service)
            if handler is None:
                self.send(A_CLSE, 0, arg0)
                return
            self._streams[local_id] = stream
            self.send(A_OKAY, local_id, arg0)
            threading.Thread(
                target=self._run_service, args=(handler, stream), daemon=True,
                name=f"adbd-{service[:20]}",
            ).start()
        elif cmd == A_WRTE:
            target = self._streams.get(arg1)
            if target is None:
                self.send(A_CLSE, 0, arg0)
                return
            target.feed(data)
            self.send(A_OKAY, arg1, arg0)
        elif cmd == A_OKAY:
            target = self._streams.get(arg1)
            if target is not None:
                target.on_okay()
        elif cmd == A_CLSE:
            target = self._streams.pop(arg1, None)
            if target is not None:
                target.on_close()
        # A_SYNC / A_STLS and unknown commands are ignored.

    def _run_service(self, handler: Callable[[_Stream], None], stream: _Stream) -> None:
        try:
            handler(stream)
        except (EOFError, _Dropped):
            pass  # peer closed the stream, or a planted fault dropped it on purpose
        except Exception:  # a bug in a service must not kill the daemon
            log.exception("loopback adbd service failed")
        finally:
            with contextlib.suppress(EOFError):
                stream.close()


class LoopbackDevice:
    """The loopback test device (see the module docstring)."""

    def __init__(
        self,
        profile: DeviceProfile,
        sandbox: str | Path,
        host: str = "127.0.0.1",
        port: int = 0,
        unauthorized: bool = False,
        offline: bool = False,
        storage_limit: int | None = None,
    ) -> None:
        self.profile = profile
        self.sandbox = Path(sandbox).resolve()
        self.host = host
        self.unauthorized = unauthorized
        self.offline = offline
        self.storage_limit = storage_limit
        self._requested_port = port
        self._sock: socket.socket | None = None
        self._conns: list[_Connection] = []
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.shell_log: list[str] = []

    # lifecycle
    def start(self) -> LoopbackDevice:
        self.profile.materialize(self.sandbox)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._requested_port))
        sock.listen(8)
        self._sock = sock
        self._thread = threading.Thread(target=self._accept, daemon=True, name="adbd-accept")
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None
        for c in list(self._conns):
            c.drop()

    def __enter__(self) -> LoopbackDevice:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._sock is None:
            raise RuntimeError("loopback device is not started")
        return self._sock.getsockname()[1]

    @property
    def serial(self) -> str:
        return f"{self.host}:{self.port}"

    # faults
    def drop_after(self, kind: str, nbytes: int = 0, match: str = "") -> None:
        """Drop the connection in the next push/pull past `nbytes`, or the next matching shell."""
        if kind not in ("push", "pull", "shell"):
            raise ValueError(f"fault kind {kind!r}; expected push, pull or shell")
        with self._lock:
            self._faults.append(_Fault(kind, nbytes, match))

    def kill_process(self, name: str, match: str = "", signum: int = signal.SIGKILL,
                     after_s: float = 0.0) -> None:
        """Send `signum` to the process `name` started by the next shell command containing
        `match`, `after_s` seconds after it appears (see the module docstring)."""
        with self._lock:
            self._faults.append(_Fault("kill", match=match, process=name[:15], signum=signum,
                                       after_s=after_s))

    def heat_after(self, match: str, status: int, temp_mc: int | None = None) -> None:
        """When the next shell command containing `match` finishes, report thermal status
        `status` (and `temp_mc` in every thermal zone, when given)."""
        with self._lock:
            self._faults.append(_Fault("heat", match=match, status=status, temp_mc=temp_mc))

    def disconnect_all(self) -> None:
        """Drop every current connection (the cable pulled out)."""
        for c in list(self._conns):
            c.drop()

    def set_thermal_status(self, status: int, temp_mc: int | None = None) -> None:
        """What `dumpsys thermalservice` reports; with `temp_mc`, also every thermal zone's
        sysfs ``temp`` (millidegrees Celsius)."""
        DeviceProfile.set_thermal_status(self.sandbox, status)
        if temp_mc is not None:
            for zone in (self.sandbox / "sys/class/thermal").glob("thermal_zone*"):
                (zone / "temp").write_text(f"{int(temp_mc)}\n")

    def data_bytes(self) -> int:
        """Bytes of the files under the sandbox's ``/data`` (what `storage_limit` counts)."""
        total = 0
        for root, _, files in os.walk(self.sandbox / "data"):
            for name in files:
                with contextlib.suppress(OSError):
                    total += os.lstat(os.path.join(root, name)).st_size
        return total

    def _take_fault(self, kind: str, text: str = "") -> _Fault | None:
        with self._lock:
            for f in self._faults:
                if f.kind == kind and f.match in text:
                    self._faults.remove(f)
                    return f
        return None

    def _accept(self) -> None:
        while self._sock is not None:
            try:
                s, _ = self._sock.accept()
            except OSError:
                return
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Connection(self, s)
            self._conns.append(conn)
            threading.Thread(target=conn.serve, daemon=True, name="adbd-conn").start()

    # services
    def _service(self, name: str) -> Callable[[_Stream], None] | None:
        if name.startswith("shell:"):
            command = name[len("shell:") :]
            return lambda st: self._shell(st, command)
        if name.startswith("sync:"):
            return self._sync
        log.info("loopback adbd: unsupported service %r", name)
        return None

    def to_host_path(self, device_path: str) -> Path:
        """Map a device path (`/data/local/tmp/x`) into the sandbox."""
        if not device_path.startswith("/"):
            device_path = "/data/local/tmp/" + device_path
        return self.sandbox / device_path.lstrip("/")

    def rewrite_command(self, command: str) -> str:
        return _DEVICE_PATH.sub(lambda m: str(self.sandbox) + m.group(1), command)

    def _shell(self, stream: _Stream, command: str) -> None:
        if not command.strip():
            stream.write(b"loopback adbd: interactive shells are not supported\n")
            return
        self.shell_log.append(command)
        fault = self._take_fault("shell", command)
        if fault is not None:
            stream.conn.drop()
            raise _Dropped()
        env = {
            "PATH": f"{self.sandbox / 'system/bin'}:/usr/bin:/bin",
            "HOME": str(self.sandbox / "data/local/tmp"),
            "TMPDIR": str(self.sandbox / "data/local/tmp"),
            "LANG": "C",
        }
        proc = subprocess.Popen(
            ["/bin/sh", "-c", self.rewrite_command(command)],
            cwd=self.sandbox / "data/local/tmp",
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        assert proc.stdout is not None
        kill = self._take_fault("kill", command)
        if kill is not None:
            threading.Thread(target=_kill_when_seen, args=(proc, kill), daemon=True,
                             name="adbd-kill").start()
        heat = self._take_fault("heat", command)
        try:
            while True:
                chunk = proc.stdout.read1(65536)  # type: ignore[attr-defined]
                if not chunk:
                    break
                stream.write(chunk)
        finally:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, 9)
            proc.wait()
            proc.stdout.close()
            if heat is not None:
                self.set_thermal_status(heat.status, heat.temp_mc)

    def _sync(self, stream: _Stream) -> None:
        while True:
            ident, length = struct.unpack("<4sI", stream.read_exact(8))
            if ident == b"QUIT":
                return
            if length > 1024:
                self._sync_fail(stream, f"path too long ({length})")
                return
            arg = stream.read_exact(length).decode("utf-8", "replace")
            if ident == b"STAT":
                self._sync_stat(stream, arg)
            elif ident in (b"STA2", b"LST2"):
                self._sync_stat2(stream, arg, ident, follow=ident == b"STA2")
            elif ident == b"LIST":
                self._sync_list(stream, arg)
            elif ident == b"SEND":
                self._sync_send(stream, arg)
            elif ident == b"RECV":
                self._sync_recv(stream, arg)
            else:
                self._sync_fail(stream, f"unknown sync request {ident!r}")
                return

    @staticmethod
    def _sync_fail(stream: _Stream, message: str) -> None:
        msg = message.encode()
        stream.write(b"FAIL" + struct.pack("<I", len(msg)) + msg)

    def _sync_stat(self, stream: _Stream, path: str) -> None:
        try:
            st = os.stat(self.to_host_path(path))
            out = struct.pack("<III", st.st_mode, st.st_size & 0xFFFFFFFF, int(st.st_mtime))
        except OSError:
            out = struct.pack("<III", 0, 0, 0)
        stream.write(b"STAT" + out)

    def _sync_stat2(self, stream: _Stream, path: str, ident: bytes, follow: bool) -> None:
        host = self.to_host_path(path)
        try:
            st = os.stat(host) if follow else os.lstat(host)
            out = struct.pack(
                "<IQQIIIIQqqq", 0, st.st_dev, st.st_ino, st.st_mode, st.st_nlink, st.st_uid,
                st.st_gid, st.st_size, int(st.st_atime), int(st.st_mtime), int(st.st_ctime),
            )
        except OSError as exc:
            out = struct.pack("<IQQIIIIQqqq", exc.errno or 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        stream.write(ident + out)

    def _sync_list(self, stream: _Stream, path: str) -> None:
        host = self.to_host_path(path)
        entries = []
        if host.is_dir():
            for name in [".", "..", *sorted(os.listdir(host))]:
                try:
                    st = os.lstat(host / name)
                except OSError:
                    continue
                b = name.encode()
                entries.append(
                    b"DENT"
                    + struct.pack("<IIII", st.st_mode, st.st_size & 0xFFFFFFFF,
                                  int(st.st_mtime), len(b))
                    + b
                )
        stream.write(b"".join(entries) + b"DONE" + bytes(16))

    def _sync_send(self, stream: _Stream, arg: str) -> None:
        path, _, mode_s = arg.rpartition(",")
        if not path:
            path, mode_s = arg, "33188"
        mode = int(mode_s) if mode_s.isdigit() else 0o100644
        host = self.to_host_path(path)
        fault = self._take_fault("push", path)
        received = 0
        error = ""
        full = False
        try:
            host.parent.mkdir(parents=True, exist_ok=True)
            f = open(host, "wb")  # noqa: SIM115 (closed below on every path)
        except OSError as exc:
            f = None
            error = f"cannot open {path}: {exc.strerror}"
        free = None
        if self.storage_limit is not None and host.is_relative_to(self.sandbox / "data"):
            free = self.storage_limit - self.data_bytes()
        try:
            while True:
                ident, n = struct.unpack("<4sI", stream.read_exact(8))
                if ident == b"DATA":
                    if n > SYNC_DATA_MAX:
                        error = error or f"DATA chunk of {n} bytes exceeds {SYNC_DATA_MAX}"
                    data = stream.read_exact(n)
                    received += n
                    if fault is not None and received >= fault.nbytes:
                        stream.conn.drop()
                        raise _Dropped()
                    if free is not None and received > free and not error:
                        # adbd: FAIL at once, then read and discard the rest until DONE
                        error = f"write failed: {os.strerror(errno.ENOSPC)}"
                        full = True
                        self._sync_fail(stream, error)
                    if f is not None and not error:
                        f.write(data)
                elif ident == b"DONE":
                    mtime = n
                    break
                else:
                    self._sync_fail(stream, f"unexpected {ident!r} during SEND")
                    return
        finally:
            if f is not None:
                f.close()
        if full:
            host.unlink(missing_ok=True)
            raise _Dropped()  # adbd ends the sync service after a failed SEND
        if error:
            self._sync_fail(stream, error)
            return
        os.chmod(host, stat.S_IMODE(mode) or 0o644)
        if mtime:
            os.utime(host, (mtime, mtime))
        stream.write(b"OKAY" + bytes(4))

    def _sync_recv(self, stream: _Stream, path: str) -> None:
        host = self.to_host_path(path)
        fault = self._take_fault("pull", path)
        try:
            f = open(host, "rb")  # noqa: SIM115
        except OSError as exc:
            self._sync_fail(stream, f"open failed: {exc.strerror}")
            return
        sent = 0
        with f:
            while True:
                chunk = f.read(SYNC_DATA_MAX)
                if not chunk:
                    break
                stream.write(b"DATA" + struct.pack("<I", len(chunk)) + chunk)
                sent += len(chunk)
                if fault is not None and sent >= fault.nbytes:
                    time.sleep(0.05)
                    stream.conn.drop()
                    raise _Dropped()
        stream.write(b"DONE" + bytes(4))


def _kill_when_seen(proc: subprocess.Popen, fault: _Fault) -> None:
    """Wait for a process named `fault.process` in `proc`'s session, then signal it."""
    while proc.poll() is None:
        for pid in _session_pids(proc.pid, fault.process):
            time.sleep(fault.after_s)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, fault.signum)
                log.info("loopback adbd: sent signal %d to %s (pid %d)", fault.signum,
                         fault.process, pid)
            return
        time.sleep(0.005)


def _session_pids(session: int, comm: str) -> list[int]:
    """Processes of `session` whose name (``/proc/PID/stat`` comm) is `comm`."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                text = f.read()
        except OSError:
            continue
        name = text[text.find("(") + 1 : text.rfind(")")]
        fields = text[text.rfind(")") + 2 :].split()
        if name == comm and len(fields) > 3 and int(fields[3]) == session:
            found.append(int(entry.name))
    return found

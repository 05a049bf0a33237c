"""What ``sat-triton serve`` reads about its processes from Linux's ``/proc`` (standard library only).

tritonserver's Python models run in child processes, one ``triton_python_backend_stub`` per model
instance, started as ``<stub> <repository>/<model>/<version>/model.py <shm region> <size> ...``.
A stub that died (SIGKILL, out of memory) stays behind as a zombie child of tritonserver, and Triton
2.51 neither restarts it nor stops reporting the model ready: this module is how the supervisor sees it.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

STUB_NAME = "triton_python_backend_stub"
SHM_DIR = Path("/dev/shm")
_PR_SET_PDEATHSIG = 1
_TCP_LISTEN = "0A"


@dataclass(frozen=True)
class Stub:
    """One Python-backend stub process: the model instance it runs and its shared-memory region."""

    pid: int
    model: str
    shm_region: str


def die_with_parent(parent_pid: int):
    """A ``preexec_fn`` that has the kernel SIGKILL the child when the thread that forked it dies, so a
    tritonserver never outlives ``sat-triton serve`` (SIGKILL of serve included). Fork from the main
    thread: the signal follows the forking thread, not the process."""
    libc = ctypes.CDLL(None, use_errno=True)

    def preexec() -> None:
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            os._exit(127)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(127)

    return preexec


_REAPER = ("import os, signal, sys\n"
           "sys.stdin.buffer.read()\n"  # returns when every write end of the pipe is closed
           "try:\n    os.killpg(int(sys.argv[1]), signal.SIGKILL)\nexcept OSError:\n    pass\n")


def group_reaper(pgid: int) -> subprocess.Popen:
    """A small process that SIGKILLs process group ``pgid`` as soon as our end of its stdin pipe closes:
    when we close it, or when we die by any signal (SIGKILL included; the kernel closes the pipe).

    tritonserver runs in a process group of its own and its Python stubs stay in it. A stub that is busy
    when tritonserver dies can stay behind, blocked, for good (seen: the postprocessor's stub, still
    there 10 s after a SIGKILL of serve under load); PR_SET_PDEATHSIG cannot reach it (the stubs are
    tritonserver's children, not ours), the reaper can."""
    return subprocess.Popen([sys.executable, "-I", "-S", "-c", _REAPER, str(pgid)], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def children(pid: int) -> list[int]:
    """Direct child processes of ``pid`` (empty when it is gone)."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            found += [int(x) for x in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
        except OSError:
            continue
    return found


def state(pid: int) -> str | None:
    """The process state letter (``R``, ``S``, ``Z`` for a zombie, ...), or None when it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def alive(pid: int) -> bool:
    return state(pid) not in (None, "Z", "X")


def stub_alive(stub: Stub) -> bool:
    """The stub still runs (and its pid was not reused by another process)."""
    return alive(stub.pid) and stub.shm_region in cmdline(stub.pid)


def cpu_ticks(pid: int) -> int:
    """User + system CPU time of ``pid``, all threads, in clock ticks (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return 0


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` in bytes (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and all its descendants (tritonserver and its Python stubs), in bytes."""
    total, stack, seen = 0, [pid], set()
    while stack:
        current = stack.pop()
        if current not in seen:
            seen.add(current)
            total += rss_bytes(current)
            stack += children(current)
    return total


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


def python_stubs(server_pid: int) -> list[Stub]:
    """The live Python-backend stubs of a tritonserver, with the model each runs (zombies left out)."""
    stubs = []
    for pid in children(server_pid):
        argv = cmdline(pid)
        if not argv or Path(argv[0]).name != STUB_NAME or not alive(pid):
            continue
        model_py = Path(argv[1]) if len(argv) > 1 else None
        model = model_py.parent.parent.name if model_py is not None and len(model_py.parts) >= 3 else "?"
        region = argv[2] if len(argv) > 2 else ""
        stubs.append(Stub(pid, model, region))
    return stubs


def tritonserver_child(parent_pid: int) -> int | None:
    """The tritonserver a process (``sat-triton serve``) started, by its executable's name; None if none."""
    found = [p for p in children(parent_pid) if Path((cmdline(p) or [""])[0]).name == "tritonserver"]
    return found[0] if found else None


def grown_pools(stubs: list[Stub], limit: int) -> dict[str, int]:
    """The models whose stubs' shared-memory pools (their ``/dev/shm`` regions) are at least ``limit``
    bytes, with the largest pool of each; a region that is gone is skipped."""
    grown: dict[str, int] = {}
    for stub in stubs:
        if not stub.shm_region or "/" in stub.shm_region:
            continue
        try:
            size = (SHM_DIR / stub.shm_region).stat().st_size
        except OSError:
            continue
        if size >= limit:
            grown[stub.model] = max(size, grown.get(stub.model, 0))
    return grown


def remove_shm_regions(stubs: list[Stub]) -> list[str]:
    """Unlink the shared-memory regions of stubs that are gone (a stub killed with SIGKILL leaves its
    region in /dev/shm). Regions of stubs still running are kept. Returns the names removed."""
    removed = []
    for stub in stubs:
        if stub_alive(stub) or not stub.shm_region or "/" in stub.shm_region:
            continue
        try:
            (SHM_DIR / stub.shm_region).unlink()
            removed.append(stub.shm_region)
        except OSError:  # already gone, or not ours to remove
            pass
    return removed


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return inodes
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def _decode_address(hex_address: str) -> tuple[str, int]:
    host_hex, port_hex = hex_address.split(":")
    raw = bytes.fromhex(host_hex)
    if len(raw) == 4:
        host = socket.inet_ntop(socket.AF_INET, raw[::-1])
    else:  # /proc/net/tcp6: four 32-bit words, each in host (little-endian) order
        raw = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
        mapped = raw[:12] == b"\0" * 10 + b"\xff\xff"  # ::ffff:a.b.c.d, an IPv4 address on an IPv6 socket
        host = socket.inet_ntop(socket.AF_INET, raw[12:]) if mapped else socket.inet_ntop(socket.AF_INET6, raw)
    return host, int(port_hex, 16)


def listening_addresses(pid: int) -> list[tuple[str, int]]:
    """The TCP addresses ``pid`` listens on, as the kernel sees them (what is really bound)."""
    inodes = _socket_inodes(pid)
    found = []
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == _TCP_LISTEN and fields[9] in inodes:
                found.append(_decode_address(fields[1]))
    return sorted(set(found), key=lambda a: (a[1], a[0]))


def port_in_use(host: str, port: int) -> bool:
    """True when something already listens on (or holds) ``host:port``, so binding it would fail."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT leftovers do not count
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def reap_zombies(keep: set[int]) -> None:
    """Collect exited children other than ``keep``. As a container's PID 1, ``sat-triton serve`` adopts
    the stubs of a tritonserver it had to kill; without this they would stay zombies."""
    for pid in children(os.getpid()):
        if pid in keep or state(pid) != "Z":
            continue
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass

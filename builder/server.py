"""Locate and run a local NVIDIA Triton Inference Server (standard library only).

Preferred server: the ``tritonserver`` that ships inside the ``nvidia-pytriton``
wheel (Triton 2.51, python backend only).  Fallback: a ``tritonserver`` on PATH
(e.g. inside an NGC image), which uses its compiled-in backend directory.

Typical use::

    with TritonServer(repo, http_port=free_port(), grpc_port=free_port(),
                      metrics_port=free_port()) as server:
        server.wait_ready(["sat"])
        ...  # talk to server.grpc_url / server.http_url
"""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_BACKEND_DIR = Path("/opt/tritonserver/backends")  # tritonserver's compiled-in default
_REMEDY = "pip install nvidia-pytriton==0.7.0 or put tritonserver on PATH"
_STUB = "triton_python_backend_stub"
_SYSTEM_LIB_DIRS = {"/lib", "/lib64", "/usr/lib", "/usr/lib64", "/usr/lib/x86_64-linux-gnu",
                    "/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/lib/aarch64-linux-gnu"}


# Triton's admin APIs: reachable only with the admin header (TritonServer's admin_header). Inference,
# health, metadata, model-config and statistics stay open: clients need them.
RESTRICTED_APIS = ("model-repository", "logging", "trace", "shared-memory")


class TritonServerError(RuntimeError):
    """Triton could not be found, prepared, started or made ready."""


@dataclass
class TritonInstall:
    binary: Path                       # the tritonserver executable
    backend_dir: Path | None           # None: the server's default (/opt/tritonserver/backends)
    lib_dirs: list[Path] = field(default_factory=list)  # prepended to LD_LIBRARY_PATH
    bundled: bool = False              # True: the copy shipped inside the pytriton wheel


def find_tritonserver() -> TritonInstall:
    """Prefer pytriton's bundled server (found without importing pytriton), else PATH."""
    spec = importlib.util.find_spec("pytriton")
    if spec is not None and spec.submodule_search_locations:
        pkg = Path(list(spec.submodule_search_locations)[0])
        binary = pkg / "tritonserver" / "bin" / "tritonserver"
        if binary.is_file():
            libs = [d for d in (pkg.parent / "nvidia_pytriton.libs",       # wheel install
                                pkg / "tritonserver" / "external_libs")     # editable install
                    if d.is_dir()]
            return TritonInstall(binary, pkg / "tritonserver" / "backends", libs, bundled=True)
    found = shutil.which("tritonserver")
    if found:
        return TritonInstall(Path(found), None, [], bundled=False)
    raise TritonServerError(f"no tritonserver found: {_REMEDY}")


def prepare_backend_dir(install: TritonInstall, workdir: Path) -> Path:
    """Return the directory to pass as ``--backend-directory``.

    For the bundled server this assembles ``<workdir>/backends/python/`` from the
    backend library, its utils module and the stub built for this interpreter's
    Python version (the stub must sit beside libtriton_python.so).  For a PATH
    server the installed backend directory is returned unchanged.
    """
    if not install.bundled:
        return install.backend_dir or DEFAULT_BACKEND_DIR
    assert install.backend_dir is not None
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stubs = install.backend_dir.parent / "python_backend_stubs"
    stub = stubs / version / _STUB
    if not stub.is_file():
        have = sorted(p.name for p in stubs.iterdir() if (p / _STUB).is_file()) if stubs.is_dir() else []
        raise TritonServerError(f"pytriton ships no python backend stub for Python {version} "
                                f"(available: {', '.join(have) or 'none'}); use one of those Python versions")
    dst = Path(workdir) / "backends" / "python"
    dst.mkdir(parents=True, exist_ok=True)
    src = install.backend_dir / "python"
    for source in (src / "libtriton_python.so", src / "triton_python_backend_utils.py", stub):
        target = dst / source.name
        if target.is_symlink() or target.exists():
            target.unlink()
        try:
            target.symlink_to(source)
        except OSError:
            shutil.copy2(source, target)
    return dst.parent


def connect_host(host: str) -> str:
    """Where a local client reaches a server bound to ``host`` (a wildcard address: loopback)."""
    return {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)


def url_host(host: str) -> str:
    host = connect_host(host)
    return f"[{host}]" if ":" in host else host


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


_ORT = re.compile(r'^\s*(backend\s*:\s*"onnxruntime"|platform\s*:\s*"onnxruntime_onnx")', re.M)


def check_repository_servable(model_repository: Path, install: TritonInstall) -> None:
    """Fail early if a model needs Triton's onnxruntime backend and the server lacks it."""
    backends = install.backend_dir or DEFAULT_BACKEND_DIR
    if (backends / "onnxruntime").is_dir():
        return
    which = "pytriton's bundled 2.51" if install.bundled else str(install.binary)
    for config in sorted(Path(model_repository).glob("*/config.pbtxt")):
        if _ORT.search(config.read_text(encoding="utf-8", errors="replace")):
            raise TritonServerError(
                f"model {config.parent.name} uses Triton's onnxruntime backend, which this tritonserver "
                f"({which}) does not have: rebuild the repository with --onnx_backend python, "
                f"or serve it with an NGC tritonserver image (see Dockerfile.triton)")


class TritonServer:
    """A tritonserver subprocess; a context manager that starts and stops it."""

    def __init__(self, model_repository: Path, http_port: int = 8000, grpc_port: int = 8001,
                 metrics_port: int = 8002, log_verbose: int = 0, model_control_mode: str = "none",
                 extra_args=(), env: dict | None = None, log_file: Path | None = None,
                 install: TritonInstall | None = None, workdir: Path | None = None, host: str = "127.0.0.1",
                 admin_header: tuple[str, str] | None = None, die_with_parent: bool = False,
                 log_to_stdout: bool = False):
        """``host``: the address HTTP, gRPC and metrics bind to (Triton's own default is every interface).
        ``admin_header``: (name, value) a request must carry to reach :data:`RESTRICTED_APIS`.
        ``die_with_parent``: the kernel kills tritonserver when this process dies (start it from the main
        thread); it runs in a process group of its own (a terminal's Ctrl-C reaches only us), which a
        reaper process kills, stubs and all, once tritonserver has stopped or this process died."""
        self.model_repository = Path(model_repository).resolve()
        self.http_port, self.grpc_port, self.metrics_port = http_port, grpc_port, metrics_port
        self.log_verbose, self.model_control_mode = log_verbose, model_control_mode
        self.extra_args, self.extra_env = list(extra_args), dict(env or {})
        self.log_file = Path(log_file) if log_file else None
        self.install, self.workdir = install, workdir
        self.host, self.admin_header, self.die_with_parent = host, admin_header, die_with_parent
        self.log_to_stdout = log_to_stdout
        self._proc: subprocess.Popen | None = None
        self._reaper: subprocess.Popen | None = None
        self._log = None
        self._tmpdir: tempfile.TemporaryDirectory | None = None

    http_url = property(lambda self: f"{url_host(self.host)}:{self.http_port}")
    grpc_url = property(lambda self: f"{url_host(self.host)}:{self.grpc_port}")
    metrics_url = property(lambda self: f"{url_host(self.host)}:{self.metrics_port}")

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _environment(self, install: TritonInstall) -> dict:
        env = os.environ.copy()
        # The python backend stub embeds libpython and resolves its prefix from the first
        # `python3` on PATH: put this interpreter's bin/ first so models see this venv.
        env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
        libs = [str(d) for d in install.lib_dirs]
        # The stub links libpython3.X.so.1.0; prefer this interpreter's own copy over the system one.
        libdir = sysconfig.get_config_var("LIBDIR") or ""
        soname = sysconfig.get_config_var("INSTSONAME") or ""
        if install.bundled and libdir not in _SYSTEM_LIB_DIRS and soname and (Path(libdir) / soname).exists():
            libs.append(libdir)
        if env.get("LD_LIBRARY_PATH"):
            libs.append(env["LD_LIBRARY_PATH"])
        if libs:
            env["LD_LIBRARY_PATH"] = os.pathsep.join(libs)
        env.update(self.extra_env)
        return env

    def start(self) -> "TritonServer":
        if self._proc is not None:
            raise TritonServerError("server already started")
        install = self.install or find_tritonserver()
        check_repository_servable(self.model_repository, install)
        args = [str(install.binary), f"--model-repository={self.model_repository}",
                f"--http-port={self.http_port}", f"--grpc-port={self.grpc_port}",
                f"--metrics-port={self.metrics_port}"]
        if install.bundled:
            if self.workdir is None:
                self._tmpdir = tempfile.TemporaryDirectory(prefix="sat-triton-")
            workdir = Path(self.workdir or self._tmpdir.name)
            args.append(f"--backend-directory={prepare_backend_dir(install, workdir)}")
        args += [f"--model-control-mode={self.model_control_mode}", f"--log-verbose={self.log_verbose}",
                 "--exit-on-error=true", "--strict-readiness=true",
                 f"--http-address={self.host}", f"--grpc-address={self.host}", f"--metrics-address={self.host}"]
        if self.admin_header is not None:
            name, value = self.admin_header
            apis = ",".join(RESTRICTED_APIS)
            args += [f"--http-restricted-api={apis}:{name}={value}", f"--grpc-restricted-protocol={apis}:{name}={value}"]
        args += self.extra_args
        if self.log_to_stdout:
            self._log = None
        else:
            if self.log_file is None:
                fd, name = tempfile.mkstemp(prefix="tritonserver-", suffix=".log")
                os.close(fd)
                self.log_file = Path(name)
            self._log = open(self.log_file, "ab")
        output = self._log if self._log is not None else None
        extra = {}
        if self.die_with_parent:
            from .processes import die_with_parent

            extra = {"preexec_fn": die_with_parent(os.getpid()), "start_new_session": True}
        self._proc = subprocess.Popen(args, stdout=output, stderr=subprocess.STDOUT if output else None,
                                      stdin=subprocess.DEVNULL, env=self._environment(install), **extra)
        if self.die_with_parent:
            from .processes import group_reaper

            self._reaper = group_reaper(self._proc.pid)
        return self

    @property
    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_text(self) -> str:
        if self.log_file is None or not self.log_file.exists():
            return ""
        return self.log_file.read_text(encoding="utf-8", errors="replace")

    def _failure(self, what: str) -> TritonServerError:
        lines = self.log_text().splitlines()
        tail = lines[-40:]
        # Triton logs the root cause (e.g. a bad config.pbtxt) early as an "E<date>" line,
        # often far above the last 40 lines of shutdown chatter: surface those too.
        errors = [ln for ln in lines[:-40] if re.match(r"E\d{4} ", ln) and "CudaDriverHelper" not in ln][-10:]
        text = "\n".join(errors + (["..."] if errors else []) + tail)
        return TritonServerError(f"{what} (log: {self.log_file})\n{text}")

    def _ready(self, path: str) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}{path}", timeout=2.0) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, model_names: list[str] = (), timeout: float = 120.0, cancel=None) -> None:
        """Block until the server and every named model report ready (``cancel``: a threading.Event
        that, once set, ends the wait with an error)."""
        if self._proc is None:
            raise TritonServerError("server not started")
        paths = ["/v2/health/ready"] + [f"/v2/models/{name}/ready" for name in model_names]
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                raise self._failure(f"tritonserver exited with code {self._proc.returncode}")
            paths = [p for p in paths if not self._ready(p)]
            if not paths:
                return
            if time.monotonic() > deadline:
                raise self._failure(f"tritonserver not ready after {timeout:.0f}s: {', '.join(paths)}")
            if cancel is not None and cancel.wait(0.25):
                raise TritonServerError("stopped before tritonserver was ready")
            elif cancel is None:
                time.sleep(0.25)

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGINT, wait up to ``grace`` seconds, then SIGKILL.  Returns the exit code.

        Close clients first: an open HTTP keep-alive connection makes Triton wait for
        it (up to --exit-timeout-secs, default 30) and the grace period then runs out.
        """
        proc, self._proc = self._proc, None
        code = None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=grace)
            code = proc.returncode
        if self._reaper is not None:  # tritonserver is gone: whatever is left of its group goes too
            self._reaper.stdin.close()
            try:
                self._reaper.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self._reaper.kill()
            self._reaper = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None
        return code

    def __enter__(self) -> "TritonServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

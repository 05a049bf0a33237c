"""Two ways to run the server under test, with the same interface: a local tritonserver process
(pip's nvidia-pytriton, runs everywhere) and a container of the CPU image, Dockerfile.cpu
(testcontainers; the daemon, base image and wheelhouse come from scripts/dockerhost.py)."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import dockerhost  # noqa: E402

# sat-triton serve's ports (CONTRACTS.md): Triton's HTTP, gRPC, metrics, and the supervisor's health.
CONTAINER_PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002, "health": 8003}


@dataclass
class RunningServer:
    grpc_url: str
    http_url: str
    metrics_url: str
    kind: str
    pid: int | None = None  # the local tritonserver's process (its Python stubs are its children)
    log_file: Path | None = None
    details: dict = field(default_factory=dict)  # container: image, size, start-to-ready seconds, handle


def start_local(repository: Path, models: list[str]):
    from sat_triton.builder.server import TritonServer, free_port

    server = TritonServer(repository, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                          extra_args=["--exit-timeout-secs=3"])
    server.start()
    try:
        server.wait_ready(models, timeout=180)
    except Exception:
        server.stop()
        raise
    return server, RunningServer(server.grpc_url, server.http_url, server.metrics_url, "local",
                                 pid=getattr(server, "pid", None) or server._proc.pid, log_file=server.log_file)


def start_container(repository: Path, models: list[str], image: str, startup_timeout: float = 300):
    """Run the CPU image with the repository mounted read-only at /models, as docs/deployment.md does.

    Every port is published on 127.0.0.1 only (a random host port each). Ready is the image's own
    truthful health (sat-triton serve's health port answering 200), waited for with testcontainers'
    HttpWaitStrategy; then every model is checked ready through Triton too."""
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import HttpWaitStrategy

    from sat_triton.client import wait_until_ready

    container = (
        DockerContainer(image, shm_size="1g")  # python backend shm, as docs/deployment.md runs it
        .with_volume_mapping(str(repository.resolve()), "/models", "ro")
        .with_command(["--exit_timeout", "3"])  # appended to the entrypoint's `sat-triton serve /models`
        .waiting_for(HttpWaitStrategy(CONTAINER_PORTS["health"], "/v2/health/ready")
                     .with_startup_timeout(startup_timeout))
    )
    for port in CONTAINER_PORTS.values():
        container.ports[f"{port}/tcp"] = ("127.0.0.1", None)  # loopback only, any free host port
    started = time.monotonic()
    try:
        container.start()
        seconds = time.monotonic() - started
        host_port = {name: container.get_exposed_port(port) for name, port in CONTAINER_PORTS.items()}
        running = RunningServer(
            grpc_url=f"127.0.0.1:{host_port['grpc']}",
            http_url=f"127.0.0.1:{host_port['http']}",
            metrics_url=f"127.0.0.1:{host_port['metrics']}",
            kind="container",
            details={"image": image, "container": container, "start_to_ready_s": seconds,
                     "health_url": f"127.0.0.1:{host_port['health']}"},
        )
        for model in models:
            wait_until_ready(running.grpc_url, model, timeout=60)
    except Exception as exc:
        log = container_log(container)
        stop_container(container)
        raise RuntimeError(f"sat-triton container ({image}) not ready: {exc}\n--- container log ---\n{log}") from exc
    return container, running


def container_log(container) -> str:
    try:
        stdout, stderr = container.get_logs()
    except Exception as exc:  # never started
        return f"(no log: {exc})"
    return (stdout + stderr).decode("utf-8", errors="replace")[-8000:]


def stop_container(container, timeout: int = 20) -> int | None:
    """SIGTERM (docker stop: sat-triton serve drains and exits), then remove it. Returns the exit code.
    (testcontainers' own stop() removes by force, i.e. SIGKILL; and with its reaper off here, nothing
    else would remove it.)"""
    wrapped = getattr(container, "_container", None)
    code = None
    if wrapped is not None:
        try:
            wrapped.stop(timeout=timeout)
            wrapped.reload()
            code = wrapped.attrs["State"]["ExitCode"]
        except Exception:
            pass
    container.stop()
    return code


def build_repository(checkpoint: Path, tokenizer: Path, out: Path, name: str, *extra: str) -> None:
    """Run the real CLI, as a user would."""
    cmd = [sys.executable, "-m", "sat_triton.builder", "build", "--model_name_or_path", str(checkpoint),
           "--tokenizer_name_or_path", str(tokenizer), "--output_dir", str(out), "--triton_model_name", name,
           "--device", "cpu", "--onnx_backend", "python", *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, f"sat-triton build failed:\n{done.stdout}\n{done.stderr}"

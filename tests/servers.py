"""Two ways to run the server under test, with the same interface: a local tritonserver process
(pip's nvidia-pytriton, runs everywhere) and a container built from Dockerfile.triton (testcontainers;
needs a Docker daemon)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class RunningServer:
    grpc_url: str
    http_url: str
    metrics_url: str
    kind: str
    pid: int | None = None  # the local tritonserver's process (its Python stubs are its children)
    log_file: Path | None = None


def docker_unavailable_reason() -> str | None:
    """None when a Docker daemon answers; otherwise why the container variant cannot run."""
    try:
        import docker

        docker.from_env(timeout=5).ping()
        return None
    except Exception as exc:  # no socket, no daemon, no permission
        return f"no Docker daemon reachable ({type(exc).__name__}: {exc}); the container fixture needs one"


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


def start_container(repository: Path, models: list[str]):
    """Build Dockerfile.triton and run it with the repository mounted at /models (CPU-only)."""
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.image import DockerImage

    from sat_triton.client import wait_until_ready

    image = DockerImage(path=str(ROOT), dockerfile_path="Dockerfile.triton", tag="sat-triton:test")
    image.build()
    container = (
        DockerContainer(str(image), shm_size="1g")  # python backend shm, as docs/deployment.md runs it
        .with_volume_mapping(str(repository.resolve()), "/models", "ro")
        .with_exposed_ports(8000, 8001, 8002)
    )
    container.start()
    try:
        host = container.get_container_host_ip()
        running = RunningServer(
            grpc_url=f"{host}:{container.get_exposed_port(8001)}",
            http_url=f"{host}:{container.get_exposed_port(8000)}",
            metrics_url=f"{host}:{container.get_exposed_port(8002)}",
            kind="container",
        )
        for model in models:
            wait_until_ready(running.grpc_url, model, timeout=300)
    except Exception as exc:
        stdout, stderr = container.get_logs()
        container.stop()
        log = (stdout + stderr).decode("utf-8", errors="replace")[-8000:]
        raise RuntimeError(f"sat-triton container not ready: {exc}\n--- tritonserver log ---\n{log}") from exc
    return container, running


def build_repository(checkpoint: Path, tokenizer: Path, out: Path, name: str, *extra: str) -> None:
    """Run the real CLI, as a user would."""
    import sys

    cmd = [sys.executable, "-m", "sat_triton.builder", "build", "--model_name_or_path", str(checkpoint),
           "--tokenizer_name_or_path", str(tokenizer), "--output_dir", str(out), "--triton_model_name", name,
           "--device", "cpu", "--onnx_backend", "python", *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, f"sat-triton build failed:\n{done.stdout}\n{done.stderr}"

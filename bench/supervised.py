"""The load-and-fault run's pieces around the server: ``sat-triton serve`` as a user runs it (its output,
readiness, stubs and RSS), the idle server's answers, and closed-loop clients that check each answer.
Used by bench/faults.py."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

from bench.load import OK, WRONG, request_tensors, unpack

ROOT = Path(__file__).resolve().parent.parent


class ServeProcess:
    """``sat-triton serve`` as a user runs it, on free loopback ports; its output is kept."""

    def __init__(self, repository: Path, ports: dict | None = None, extra=()):
        from sat_triton.builder.server import free_port

        self.repository = repository
        self.ports = ports or {name: free_port() for name in ("http", "grpc", "metrics", "health")}
        self.extra = list(extra)
        self.lines: list[str] = []
        self.process: subprocess.Popen | None = None

    grpc_url = property(lambda self: f"127.0.0.1:{self.ports['grpc']}")
    http_url = property(lambda self: f"127.0.0.1:{self.ports['http']}")
    ready_url = property(lambda self: f"http://127.0.0.1:{self.ports['health']}/v2/health/ready")

    def start(self, timeout: float = 600) -> float:
        """Start it; seconds until it printed its endpoints (ready)."""
        started = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sat_triton.builder", "serve", str(self.repository),
             *[f"--{name}_port={port}" for name, port in self.ports.items()], "--canary_interval", "2",
             *self.extra],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        ready = threading.Event()

        def read(process=self.process) -> None:
            for line in process.stdout:
                self.lines.append(line)
                if "Ctrl-C stops it." in line:
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(timeout) or self.process.poll() is not None:
            self.kill()
            raise SystemExit("sat-triton serve did not start:\n" + "".join(self.lines[-40:]))
        return time.monotonic() - started

    def readiness(self) -> int:
        try:
            with urllib.request.urlopen(self.ready_url, timeout=3) as answer:
                return answer.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return 0

    def wait_readiness(self, status: int, timeout: float) -> float | None:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.readiness() == status:
                return time.monotonic() - started
            time.sleep(0.05)
        return None

    def tritonserver_pid(self) -> int | None:
        from sat_triton.builder import processes

        return processes.tritonserver_child(self.process.pid)

    def memory(self) -> dict[str, float]:
        """Resident MB of tritonserver and of each Python stub (by model)."""
        from sat_triton.builder import processes

        pid = self.tritonserver_pid()
        if pid is None:
            return {}
        out = {"tritonserver": round(processes.rss_bytes(pid) / 2**20, 1)}
        for stub in processes.python_stubs(pid):
            out[stub.model] = round(out.get(stub.model, 0) + processes.rss_bytes(stub.pid) / 2**20, 1)
        return out

    def stop(self, sig=signal.SIGTERM, timeout: float = 90) -> tuple[int | None, float]:
        started = time.monotonic()
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return (self.process.returncode if self.process else None), time.monotonic() - started

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


# ------------------------------------------------------------------------------------------------
# Clients
# ------------------------------------------------------------------------------------------------
def sequential(url: str, model: str, requests: list[list[str]]) -> list[list[list[str]]]:
    """Each request's sentences, one request at a time on the idle server: what every later answer must be."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    out = []
    for texts in requests:
        text_input, outputs = request_tensors(grpcclient, texts)
        out.append(unpack(client.infer(model, [text_input], outputs=outputs)))
    client.close()
    return out


class ClosedLoop:
    """Clients that send the requests in turn until stopped, each recording (start, status, detail);
    after an error a client waits 50 ms and opens a new connection (as a client with retries does)."""

    def __init__(self, serve: ServeProcess, model: str, requests, expected, grpc_clients: int, http_clients: int):
        self.serve, self.model, self.requests, self.expected = serve, model, requests, expected
        self.results: list[tuple[float, str, str]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=("grpc", k), daemon=True) for k in range(grpc_clients)]
        self._threads += [threading.Thread(target=self._run, args=("http", k), daemon=True) for k in range(http_clients)]

    def _client(self, protocol: str):
        if protocol == "grpc":
            import tritonclient.grpc as module

            return module, module.InferenceServerClient(self.serve.grpc_url)
        import tritonclient.http as module

        return module, module.InferenceServerClient(self.serve.http_url, connection_timeout=30, network_timeout=30)

    def _run(self, protocol: str, k: int) -> None:
        from bench.load import classify

        module, client = self._client(protocol)
        i = k
        while not self._stop.is_set():
            texts = self.requests[i % len(self.requests)]
            text_input, outputs = request_tensors(module, texts)
            started = time.monotonic()
            try:
                got = unpack(client.infer(self.model, [text_input], outputs=outputs))
                status, detail = (OK, "") if got == self.expected[i % len(self.requests)] else (WRONG, "")
            except Exception as exc:  # recorded; a restart shows as connection errors
                status, detail = classify(exc)
            self.results.append((started, status, detail[:120]))
            if status != OK:
                client.close()
                time.sleep(0.05)
                module, client = self._client(protocol)
            i += 7
        client.close()

    def __enter__(self) -> "ClosedLoop":
        [t.start() for t in self._threads]
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        [t.join(timeout=60) for t in self._threads]

    def between(self, start: float, end: float = float("inf")) -> Counter:
        return Counter(status for t, status, _ in self.results if start <= t < end)

    def errors(self) -> Counter:
        return Counter(f"{status}: {detail[:90]}" for _, status, detail in self.results if status != OK)

"""`sat-triton serve` under overload and faults, on the real process: bounded queues refuse at once,
a SIGKILLed Python stub heals while readiness says so, SIGTERM drains, SIGKILL of serve leaves no
tritonserver, a restart loses no request silently, admin APIs and ports stay closed.

Bounded: one small repository (queues of 4), a few seconds of loopback load per test."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from corpus import long_text, multilingual_texts
from servers import ROOT, build_repository

pytestmark = pytest.mark.integration

MODEL = "rel"
QUEUE = 4  # --max_queue_size: requests that may wait for the ONNX step
TEXTS = multilingual_texts(8, seed=31)  # one request: 8 texts


@dataclass
class Serve:
    """A `sat-triton serve` subprocess and what it printed."""

    process: subprocess.Popen
    ports: dict
    lines: list = field(default_factory=list)

    grpc_url = property(lambda self: f"127.0.0.1:{self.ports['grpc']}")
    http_url = property(lambda self: f"127.0.0.1:{self.ports['http']}")
    ready_url = property(lambda self: f"http://127.0.0.1:{self.ports['health']}/v2/health/ready")

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def tritonserver_pid(self) -> int | None:
        from sat_triton.builder import processes

        return processes.tritonserver_child(self.process.pid)

    def readiness(self) -> tuple[int, dict]:
        try:
            with urllib.request.urlopen(self.ready_url, timeout=3) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")
        except OSError as exc:
            return 0, {"error": str(exc)}

    def wait_readiness(self, status: int, timeout: float) -> float:
        """Seconds until readiness answers ``status`` (fails the test after ``timeout``)."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.readiness()[0] == status:
                return time.monotonic() - started
            time.sleep(0.05)
        raise AssertionError(f"readiness not {status} within {timeout}s: {self.readiness()}\n{self.output[-3000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            self.process.send_signal(signal.SIGINT)  # a second signal: no drain
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()


def start_serve(repository: Path, ports: dict | None = None, *extra: str, timeout: float = 180) -> Serve:
    from sat_triton.builder.server import free_port

    ports = ports or {name: free_port() for name in ("http", "grpc", "metrics", "health")}
    process = subprocess.Popen(
        [sys.executable, "-m", "sat_triton.builder", "serve", str(repository), "--http_port", str(ports["http"]),
         "--grpc_port", str(ports["grpc"]), "--metrics_port", str(ports["metrics"]), "--health_port",
         str(ports["health"]), "--canary_interval", "1", "--exit_timeout", "20", *extra],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    serve = Serve(process, ports)
    ready = threading.Event()

    def read() -> None:
        for line in process.stdout:
            serve.lines.append(line)
            if "Ctrl-C stops it." in line:
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(timeout) or process.poll() is not None:
        serve.stop()
        raise AssertionError(f"sat-triton serve did not start:\n{serve.output}")
    return serve


def grpc_request(client, texts=TEXTS, model=MODEL):
    import tritonclient.grpc as grpcclient

    text = grpcclient.InferInput("TEXT", [len(texts)], "BYTES")
    text.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=np.object_))
    result = client.infer(model, [text])
    return [s.decode() for s in result.as_numpy("SENTENCES")]


def http_request(client, texts=TEXTS, model=MODEL):
    import tritonclient.http as httpclient

    text = httpclient.InferInput("TEXT", [len(texts)], "BYTES")
    text.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=np.object_))
    result = client.infer(model, [text])
    return [s.decode() if isinstance(s, bytes) else s for s in result.as_numpy("SENTENCES")]


def outcome(call) -> tuple[str, str, float]:
    """(kind, message, seconds): kind is 'ok' or the error's status."""
    from tritonclient.utils import InferenceServerException

    started = time.monotonic()
    try:
        return "ok", json.dumps(call()), time.monotonic() - started
    except InferenceServerException as exc:
        return str(exc.status()), exc.message() or "", time.monotonic() - started
    except Exception as exc:  # connection refused / reset while the server restarts
        return type(exc).__name__, str(exc), time.monotonic() - started


@pytest.fixture(scope="module")
def small_repository(tmp_path_factory, tokenizer_dir):
    """A checkpoint wider than the suite's (hidden 128): its ONNX step, whose queue is bounded, is the
    bottleneck, as sat-3l-sm's is on CPU (with hidden 32 the Python tokenizer saturates first)."""
    from artifacts import make_checkpoint

    work = tmp_path_factory.mktemp("reliability")
    checkpoint = make_checkpoint(work / "ckpt", layers=2, hidden=128, heads=4, seed=3)
    out = work / "model_repository"
    build_repository(checkpoint, tokenizer_dir, out, MODEL, "--max_batch_size", "16", "--max_queue_size", str(QUEUE))
    return out


@pytest.fixture(scope="module")
def supervised(small_repository):
    serve = start_serve(small_repository)
    yield serve
    serve.stop()


@pytest.fixture(scope="module")
def expected(supervised):
    """The sentences one request gets when the server is idle (every answer under load must match)."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(supervised.grpc_url)
    try:
        return json.dumps(grpc_request(client))
    finally:
        client.close()


def test_serve_prints_what_is_bound_and_health_is_ready(supervised):
    from sat_triton.builder import processes

    status, body = supervised.readiness()
    assert status == 200 and body["ready"] and set(body["canaries"]) == {MODEL, f"{MODEL}_long"}, body
    bound = processes.listening_addresses(supervised.tritonserver_pid())
    assert sorted(port for _, port in bound) == sorted(supervised.ports[k] for k in ("http", "grpc", "metrics"))
    assert {host for host, _ in bound} == {"127.0.0.1"}, bound  # not 0.0.0.0
    printed = next(line for line in supervised.lines if "tritonserver listens on" in line)
    assert all(f"127.0.0.1:{supervised.ports[k]}" in printed for k in ("http", "grpc", "metrics")), printed
    assert f"health on 127.0.0.1:{supervised.ports['health']}" in supervised.output
    done = subprocess.run([sys.executable, "-m", "sat_triton.builder", "health", "--url", supervised.ready_url],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0 and done.stdout.startswith("ready:"), done.stdout + done.stderr


def test_admin_apis_need_the_supervisors_header(supervised):
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    for method, path in (("POST", "/v2/logging"), ("POST", "/v2/repository/index"),
                         ("POST", f"/v2/repository/models/{MODEL}/unload"), ("GET", "/v2/trace/setting"),
                         ("GET", "/v2/systemsharedmemory/status")):
        request = urllib.request.Request(f"http://{supervised.http_url}{path}", method=method,
                                         data=b"{}" if method == "POST" else None)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 403 and b"restricted" in refused.value.read(), path
    client = grpcclient.InferenceServerClient(supervised.grpc_url)
    try:
        with pytest.raises(InferenceServerException, match="restricted"):
            client.unload_model(MODEL)
        with pytest.raises(InferenceServerException, match="restricted"):
            client.update_log_settings({"log_verbose_level": 1})
        assert client.get_model_config(MODEL).config.name == MODEL  # what clients need stays open
        assert grpc_request(client)
    finally:
        client.close()


def test_overload_is_refused_at_once_and_the_server_recovers(supervised, expected):
    """64 requests at once against a queue of 4: the rest are refused with UNAVAILABLE / 503 'Exceeds
    maximum queue size' quickly, every accepted one gets the idle answer, and the next one succeeds."""
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    grpc_client = grpcclient.InferenceServerClient(supervised.grpc_url)
    http_clients = [httpclient.InferenceServerClient(supervised.http_url, network_timeout=120) for _ in range(16)]
    start = threading.Barrier(64)
    results = []

    def send(call) -> None:
        start.wait()
        results.append(outcome(call))

    threads = [threading.Thread(target=send, args=(lambda: grpc_request(grpc_client),)) for _ in range(48)]
    threads += [threading.Thread(target=send, args=(lambda c=c: http_request(c),)) for c in http_clients]
    [t.start() for t in threads]
    [t.join(timeout=120) for t in threads]
    kinds = Counter(kind for kind, _, _ in results)
    print("overload outcomes:", dict(kinds))
    refused = [r for r in results if r[0] != "ok"]
    assert len(results) == 64 and kinds["ok"] >= QUEUE, kinds
    assert refused and {k for k, _, _ in refused} <= {"StatusCode.UNAVAILABLE", "503"}, Counter(
        (k, m[:80]) for k, m, _ in refused)
    assert all("Exceeds maximum queue size" in m or "Request timeout expired" in m for _, m, _ in refused)
    assert max(s for _, _, s in refused) < 10, "a refusal must come at once, not after queueing"
    assert all(m == expected for k, m, _ in results if k == "ok")
    assert outcome(lambda: grpc_request(grpc_client))[:2] == ("ok", expected)  # recovered by itself
    grpc_client.close()
    [c.close() for c in http_clients]
    supervised.wait_readiness(200, timeout=15)  # a full queue is busy, not broken


def _load(serve: Serve, stop: threading.Event, results: list, model=MODEL, texts=TEXTS) -> None:
    """One closed-loop gRPC client. After an error it waits 50 ms and takes a new channel (a channel that
    failed to connect backs off for seconds before it tries again)."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(serve.grpc_url)
    while not stop.is_set():
        results.append((time.monotonic(),) + outcome(lambda: grpc_request(client, texts, model)))
        if results[-1][1] != "ok":
            client.close()
            time.sleep(0.05)
            client = grpcclient.InferenceServerClient(serve.grpc_url)
    client.close()


def test_killed_stub_heals_and_readiness_says_so(supervised, expected):
    """SIGKILL the tokenizer's stub under load: readiness turns 503 at once, the model is reloaded, and
    readiness is 200 again when requests succeed; in-flight requests get a clear error."""
    from sat_triton.builder import processes

    stop, results = threading.Event(), []
    clients = [threading.Thread(target=_load, args=(supervised, stop, results)) for _ in range(2)]
    [c.start() for c in clients]
    try:
        time.sleep(1.0)
        triton = supervised.tritonserver_pid()
        stub = next(s for s in processes.python_stubs(triton) if s.model.startswith("sat_tokenizer_"))
        killed = time.monotonic()
        os.kill(stub.pid, signal.SIGKILL)
        not_ready = supervised.wait_readiness(503, timeout=5)
        status, body = supervised.readiness()
        assert body.get("phase") in ("healing", "restarting", "ready"), body
        healed = supervised.wait_readiness(200, timeout=60)
        time.sleep(1.0)
    finally:
        stop.set()
        [c.join() for c in clients]
    print(f"stub killed: readiness 503 after {not_ready:.2f}s, 200 again after {healed:.1f}s")
    assert supervised.tritonserver_pid() == triton, "healed by reloading the model, not by a restart"
    errors = Counter((k, m[:90]) for t, k, m, _ in results if k != "ok")
    assert all(k == "StatusCode.INTERNAL" and "is not healthy" in m or k == "StatusCode.UNAVAILABLE"
               for k, m in errors), errors
    assert all(m == expected for _, k, m, _ in results if k == "ok")
    after = [k for t, k, _, _ in results if t > killed + not_ready + healed + 0.2]
    assert after and set(after) == {"ok"}, Counter(after)
    assert "reloading sat_tokenizer_" in supervised.output and "healed in" in supervised.output


def test_a_hung_onnx_stub_is_seen_and_healed(supervised, expected):
    """A stub that stops answering (SIGSTOP) while requests wait for it: Triton's stub health check calls it
    unhealthy, the canaries fail, readiness turns 503 and the supervisor reloads the model."""
    import tritonclient.grpc as grpcclient

    from sat_triton.builder import processes

    stub = next(s for s in processes.python_stubs(supervised.tritonserver_pid()) if s.model == f"{MODEL}_onnx")
    os.kill(stub.pid, signal.SIGSTOP)
    client = grpcclient.InferenceServerClient(supervised.grpc_url)
    stuck = [threading.Thread(target=outcome, args=(lambda: grpc_request(client),), daemon=True)
             for _ in range(QUEUE + 2)]  # requests that fill the stopped step's queue
    try:
        [t.start() for t in stuck]
        not_ready = supervised.wait_readiness(503, timeout=60)
        healed = supervised.wait_readiness(200, timeout=90)
    finally:
        if processes.alive(stub.pid):
            os.kill(stub.pid, signal.SIGCONT)
    print(f"hung ONNX stub: readiness 503 after {not_ready:.1f}s, 200 again after {healed:.1f}s")
    assert f"reloading {MODEL}_onnx" in supervised.output, supervised.output[-1500:]
    assert outcome(lambda: grpc_request(client))[:2] == ("ok", expected)
    client.close()


def test_sigterm_drains_in_flight_requests_then_exits(supervised):
    """Requests in flight when SIGTERM arrives are answered; readiness is 503 at once; serve exits 0 and
    leaves no tritonserver behind. (Runs last: it stops the module's server.)"""
    import tritonclient.grpc as grpcclient

    from sat_triton.builder import processes

    text = long_text(6000, seed=3)
    reference = grpc_request(grpcclient.InferenceServerClient(supervised.grpc_url), [text], f"{MODEL}_long")
    results = []

    def one() -> None:
        client = grpcclient.InferenceServerClient(supervised.grpc_url)
        results.append(outcome(lambda: grpc_request(client, [text], f"{MODEL}_long")))

    threads = [threading.Thread(target=one) for _ in range(3)]
    [t.start() for t in threads]
    time.sleep(0.5)
    triton = supervised.tritonserver_pid()
    stubs = processes.python_stubs(triton)
    supervised.process.send_signal(signal.SIGTERM)
    assert supervised.wait_readiness(503, timeout=2) < 2
    [t.join(timeout=60) for t in threads]
    assert [k for k, _, _ in results] == ["ok"] * 3, results
    assert all(json.loads(m) == reference for _, m, _ in results)
    assert supervised.process.wait(timeout=20 + 30) == 0
    assert "drained in" in supervised.output
    time.sleep(3)  # stubs leave within about two seconds of their tritonserver
    assert not processes.alive(triton) and not any(processes.alive(s.pid) for s in stubs)


def test_sigkill_of_serve_leaves_nothing_and_a_restart_loses_no_request_silently(small_repository, expected):
    """Clients keep sending while serve is SIGKILLed and started again on the same ports: every request
    gets the right sentences or an error, tritonserver and its stubs die with serve."""
    from sat_triton.builder import processes

    first = start_serve(small_repository)
    stop, results = threading.Event(), []
    clients = [threading.Thread(target=_load, args=(first, stop, results)) for _ in range(2)]
    [c.start() for c in clients]
    second = None
    try:
        time.sleep(1.0)
        triton = first.tritonserver_pid()
        stubs = processes.python_stubs(triton)
        assert triton and stubs
        first.process.kill()
        first.process.wait()
        deadline = time.monotonic() + 10
        while (processes.alive(triton) or any(processes.alive(s.pid) for s in stubs)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not processes.alive(triton), "tritonserver outlived a SIGKILLed sat-triton serve"
        assert not any(processes.alive(s.pid) for s in stubs), \
            f"a Python stub outlived its tritonserver: {[(s, processes.state(s.pid), processes.cmdline(s.pid)) for s in stubs]}"
        second = start_serve(small_repository, first.ports)
        restarted = time.monotonic()
        time.sleep(1.5)
    finally:
        stop.set()
        [c.join() for c in clients]
        if second is not None:
            second.stop()
    kinds = Counter(k for _, k, _, _ in results)
    print("restart outcomes:", dict(kinds))
    assert all(m == expected for _, k, m, _ in results if k == "ok"), "a wrong answer is a silent loss"
    assert kinds["ok"] and len(kinds) > 1, kinds  # some succeeded, some saw the restart as an error
    after = Counter(k for t, k, _, _ in results if t > restarted + 0.2)
    assert after and set(after) == {"ok"}, f"serving again once restarted: {after}"


def test_a_port_in_use_is_a_one_line_error(small_repository):
    import socket

    from sat_triton.builder.server import free_port

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "sat_triton.builder", "serve", str(small_repository),
                               "--http_port", str(free_port()), "--grpc_port", str(port), "--metrics_port",
                               str(free_port()), "--health_port", str(free_port())],
                              capture_output=True, text=True, cwd=ROOT, timeout=60)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert f"port {port} on 127.0.0.1 is already in use: pass another --grpc_port" in lines[0]


def test_the_load_and_fault_script_passes_its_checks(small_repository, tmp_path):
    """bench/faults.py --quick (docs/reliability.md has the full run): below capacity no error and every
    answer as the idle server's, past capacity refusals and a bounded p99, a killed stub healed, a
    restart with no wrong answer; it exits 1 when one of these fails."""
    out = tmp_path / "faults.json"
    done = subprocess.run([sys.executable, "bench/faults.py", "--quick", "--repository", str(small_repository),
                           "--exit_timeout", "3", "--seconds", "1.5", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    print(done.stderr[-3000:])
    assert done.returncode == 0, done.stderr[-5000:]
    record = json.loads(out.read_text())
    assert record["failed_checks"] == [] and record["past"]["refused"] > 0
    assert all(r["ok"] == r["sent"] for r in record["below"].values())
    assert record["stub_kill"][0]["healed_after_s"] < 60 and not record["stub_kill"][0]["restarted"]


def test_oversized_requests_leave_no_memory_behind(small_repository):
    """10 MB and 50 MB texts to the ensemble and to `<name>_long`, over gRPC and HTTP, are refused
    (INVALID_ARGUMENT naming the limit); the Python backend's shared-memory pools that received them
    grew and never shrink, so serve recycles those models (readiness stays 200, clients keep being
    answered right) and the server's memory, tritonserver and its stubs, returns to within 10%."""
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    from sat_triton.builder import processes

    serve = start_serve(small_repository)
    try:
        grpc_client = grpcclient.InferenceServerClient(serve.grpc_url)
        http_client = httpclient.InferenceServerClient(serve.http_url, network_timeout=120)
        expected = json.dumps(grpc_request(grpc_client))
        for model in (MODEL, f"{MODEL}_long"):  # every step has run once
            grpc_request(grpc_client, model=model)
        triton = serve.tritonserver_pid()
        before = processes.tree_rss_bytes(triton) / 2**20
        statuses = []
        for size in (10_000_000, 50_000_000):
            text = [("Oversized. " * (size // 11 + 1))[:size]]
            for model in (MODEL, f"{MODEL}_long"):
                for call in (lambda: grpc_request(grpc_client, text, model),
                             lambda: http_request(http_client, text, model)):
                    with pytest.raises(InferenceServerException) as refused:
                        call()
                    assert "more than the 2,000,000 a text may have (max_text_chars)" in str(refused.value)
                    statuses.append(str(refused.value.status()))
        assert set(statuses) == {"StatusCode.INVALID_ARGUMENT", "400"}, statuses
        grown = processes.tree_rss_bytes(triton) / 2**20

        stop, results = threading.Event(), []
        clients = [threading.Thread(target=_load, args=(serve, stop, results)) for _ in range(2)]
        [c.start() for c in clients]
        readiness, deadline = [], time.monotonic() + 60
        try:
            while time.monotonic() < deadline:  # both grown models recycled (the tokenizer and the long model)
                status, body = serve.readiness()
                readiness.append(status)
                if body.get("recycles", 0) >= 2:
                    break
                time.sleep(0.2)
        finally:
            stop.set()
            [c.join() for c in clients]
        recycled = [line.strip() for line in serve.lines if "recycled" in line or "recycling" in line]
        assert body.get("recycles", 0) >= 2, (body, recycled)
        assert set(readiness) == {200}, Counter(readiness)  # a recycle is not an outage
        outcomes = Counter(kind for _, kind, _, _ in results)
        assert set(outcomes) == {"ok"} and all(m == expected for _, _, m, _ in results), outcomes

        after = None
        for _ in range(100):  # the old stubs exit once their swap is done
            after = processes.tree_rss_bytes(triton) / 2**20
            if after <= 1.1 * before:
                break
            time.sleep(0.2)
        print(f"\nserver RSS: {before:.0f} MB before, {grown:.0f} MB after the oversized requests, {after:.0f} MB "
              f"after recycling; {recycled}")
        assert after <= 1.1 * before, (before, grown, after, recycled)
        assert serve.tritonserver_pid() == triton and json.dumps(grpc_request(grpc_client)) == expected
        grpc_client.close()
        http_client.close()
    finally:
        serve.stop()


def test_a_recycle_keeps_the_request_in_flight(small_repository):
    """`<name>_long` is recycled while it works on the very text that grew its pool (1.2 MB of UTF-8 in
    one request, --recycle_shm_mb 1.5): Triton swaps the new instances in and lets the old one finish,
    so the request is answered in full, with spans covering every character."""
    import tritonclient.grpc as grpcclient

    serve = start_serve(small_repository, None, "--recycle_shm_mb", "1.5")
    try:
        text = ("漢字かな交じり文。" * 50_000)[:400_000]  # 3 bytes a character
        client = grpcclient.InferenceServerClient(serve.grpc_url)
        tensor = grpcclient.InferInput("TEXT", [1], "BYTES")
        tensor.set_data_from_numpy(np.array([text.encode()], dtype=np.object_))
        answered, recycled_at = {}, []

        def call() -> None:
            result = client.infer(f"{MODEL}_long", [tensor], client_timeout=300)
            answered.update(at=time.monotonic(), spans=result.as_numpy("SENTENCE_SPANS"))

        caller = threading.Thread(target=call)
        caller.start()
        while caller.is_alive():
            if not recycled_at and serve.readiness()[1].get("recycles", 0) >= 1:
                recycled_at.append(time.monotonic())
            time.sleep(0.1)
        caller.join()
        client.close()
        lines = [line.strip() for line in serve.lines if "recycl" in line]
        assert recycled_at and "at" in answered and recycled_at[0] < answered["at"], (lines, answered.keys())
        assert any(f"recycled {MODEL}_long" in line for line in lines), lines
        spans = answered["spans"]
        assert spans[0][0] == 0 and spans[-1][1] == len(text) and np.all(spans[1:, 0] == spans[:-1, 1])
        print(f"\n{lines}; answered {answered['at'] - recycled_at[0]:.1f} s after the recycle")
    finally:
        serve.stop()

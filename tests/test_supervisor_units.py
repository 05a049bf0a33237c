"""The supervisor's pieces that need no tritonserver: canary verdicts, the health state and endpoint,
what /proc says about sockets and ports."""

import os
import socket
import time

import pytest

from sat_triton.builder import canary, processes
from sat_triton.builder.canary import Verdict
from sat_triton.builder.health import HealthServer, HealthState, check


@pytest.mark.parametrize("status, message, kind, model", [
    (503, "in ensemble 'm', [request id: <id_unknown>] Exceeds maximum queue size", "overloaded", None),
    (503, "in ensemble 'm', Request timeout expired", "overloaded", None),
    (500, "Failed to process the request(s) for model 'm_long_0_0', message: TritonModelException: [request id: "
          "<id_unknown>] Exceeds maximum queue size", "overloaded", None),  # the long model's BLS call refused
    (500, "in ensemble 'm', Stub process 'sat_tokenizer_0123abcd_0_0' is not healthy.", "broken",
     "sat_tokenizer_0123abcd"),
    (500, "Failed to process the request(s) for model 'm_long_0_0', message: TritonModelException: Stub process "
          "'m_onnx_1_3' is not healthy.", "broken", "m_onnx"),
    (400, "in ensemble 'm', too many chunks", "broken", None),
    (503, "in ensemble 'm', Server is stopping, scheduler for model has stopped accepting", "unreachable", None),
])
def test_canary_verdicts(status, message, kind, model):
    verdict = canary.classify(status, message)
    assert (verdict.kind, verdict.model) == (kind, model)


def test_canary_targets_are_the_ensembles_and_their_long_models(tmp_path):
    for name, text in (("a", 'platform: "ensemble"'), ("a_long", 'backend: "python"'), ("a_onnx", 'backend: "python"'),
                       ("b", 'name: "b"\nplatform: "ensemble"'), ("sat_tokenizer_x", 'backend: "python"')):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.pbtxt").write_text(text + "\n")
    assert canary.targets(tmp_path) == ["a", "a_long", "b"]
    assert canary.onnx_model("a") == canary.onnx_model("a_long") == "a_onnx"


def test_a_full_queue_that_does_not_move_is_a_stall():
    refused, ok = Verdict("overloaded", "Exceeds maximum queue size"), Verdict("ok")
    steps = ["tok", "onnx", "post"]
    # the first step that ran nothing is the stalled one; the steps after it may be idle only for want of input
    assert canary.stalled_step(steps, {"tok": 5, "onnx": 9, "post": 9}, {"tok": 5, "onnx": 9, "post": 9}) == "tok"
    assert canary.stalled_step(steps, {"tok": 5, "onnx": 9, "post": 9}, {"tok": 8, "onnx": 9, "post": 9}) == "onnx"
    assert canary.stalled_step(steps, {"tok": 5, "onnx": 9, "post": 9}, {"tok": 8, "onnx": 12, "post": 12}) is None
    assert canary.stalled_step(steps, {}, {}) is None  # no statistics: no verdict
    assert canary.stall_streak(2, refused, "tok") == 3  # refused, and a step ran nothing
    assert canary.stall_streak(2, refused, None) == 0  # refused while every step works: busy, not stalled
    assert canary.stall_streak(2, ok, "tok") == 0


def test_a_targets_steps_come_from_its_ensemble_config(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "config.pbtxt").write_text(
        'platform: "ensemble"\nensemble_scheduling { step [ { model_name: "sat_tokenizer_x" }, { model_name: "a_onnx" },'
        ' { model_name: "sat_postprocessor_t0_5" } ] }\n')
    assert canary.steps(tmp_path, "a") == ["sat_tokenizer_x", "a_onnx", "sat_postprocessor_t0_5"]
    assert canary.steps(tmp_path, "a_long") == ["a_long", "a_onnx"]


def test_readiness_follows_phase_and_canaries():
    state = HealthState(["m", "m_long"], canary_max_age=0.5)
    ready, body = state.readiness()
    assert not ready and body["phase"] == "starting"
    state.set("ready")
    assert not state.readiness()[0]  # no canary answer yet
    state.record("m", Verdict("ok"))
    state.record("m_long", Verdict("overloaded", "Exceeds maximum queue size"))
    assert state.readiness()[0]  # a full queue is busy, not broken
    state.record("m", Verdict("broken", "HTTP 500: Stub process 'x_0_0' is not healthy", "x"))
    ready, body = state.readiness()
    assert not ready and "m: canary broken" in body["reason"]
    state.record("m", Verdict("ok"))
    time.sleep(0.6)
    ready, body = state.readiness()
    assert not ready and "overdue" in body["reason"]
    state.record("m", Verdict("ok"))
    state.record("m_long", Verdict("ok"))
    state.set("healing", "the Python stub of x (pid 1) died; reloading x")
    ready, body = state.readiness()
    assert not ready and body["reason"].startswith("the Python stub of x")
    assert state.liveness()[0]  # healing is alive
    state.set("failed", "gave up")
    assert not state.liveness()[0]


def test_health_endpoint_and_check():
    state = HealthState(["m"], canary_max_age=60)
    server = HealthServer("127.0.0.1", 0, state).start()
    url = f"http://127.0.0.1:{server.address[1]}/v2/health/ready"
    try:
        ready, line = check(url, 3)
        assert not ready and line == "not ready (HTTP 503): starting tritonserver"
        state.set("ready")
        state.record("m", Verdict("ok"))
        assert check(url, 3) == (True, "ready: serving")
        assert check(url.replace("ready", "live"), 3)[0]
    finally:
        server.stop()
    ready, line = check(url, 1)
    assert not ready and line.startswith(f"not ready: cannot reach {url}")


def test_listening_addresses_and_ports_in_use():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert ("127.0.0.1", port) in processes.listening_addresses(os.getpid())
        assert processes.port_in_use("127.0.0.1", port)
    assert not processes.port_in_use("127.0.0.1", port)
    with socket.socket(socket.AF_INET6) as listener:  # an IPv4-mapped address shows as IPv4
        listener.bind(("::ffff:127.0.0.1", 0))
        listener.listen()
        assert ("127.0.0.1", listener.getsockname()[1]) in processes.listening_addresses(os.getpid())


def test_grown_pools_are_read_from_the_stubs_shm_regions(tmp_path, monkeypatch):
    """The pools to recycle: each model's largest /dev/shm region at or over the limit; regions that are
    gone, or names that are not a plain file name, are skipped."""
    monkeypatch.setattr(processes, "SHM_DIR", tmp_path)
    for name, size in (("r1", 1 << 20), ("r2", 59 << 20), ("r3", 20 << 20), ("r4", 2 << 20)):
        with open(tmp_path / name, "wb") as region:
            region.truncate(size)  # sparse, as the backend's ftruncate'd regions are
    stubs = [processes.Stub(1, "tok", "r1"), processes.Stub(2, "tok", "r2"), processes.Stub(3, "long", "r3"),
             processes.Stub(4, "onnx", "r4"), processes.Stub(5, "post", "gone"), processes.Stub(6, "x", "../r2")]
    assert processes.grown_pools(stubs, 16 << 20) == {"tok": 59 << 20, "long": 20 << 20}
    assert processes.grown_pools(stubs, 64 << 20) == {}


def test_health_reports_recycles_without_turning_unready():
    state = HealthState(["m"], canary_max_age=5)
    state.set("ready")
    state.record("m", Verdict("ok"))
    state.recycled()
    ready, body = state.readiness()
    assert ready and body["recycles"] == 1 and body["heals"] == 0

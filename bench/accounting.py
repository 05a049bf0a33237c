"""Triton statistics and CPU accounting around each measured phase.

* :func:`stats_snapshot` / :func:`stats_delta`: Triton's per-model statistics
  (``get_inference_statistics``) before and after a phase, turned into requests, executions, queue and
  compute time per request and how busy each model's instances were;
* :func:`process_cpu` / :func:`cpu_delta`: CPU seconds of tritonserver, each Python-backend stub and
  this process, from ``/proc``; :func:`machine_busy`: the whole machine's, so what others used shows;
* :class:`Phase`: both around one phase, plus the model-alone probe before and after it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from .common import TRITON_NAME


def stats_snapshot(url: str) -> dict:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url=url)
    try:
        response = client.get_inference_statistics(model_name="")
    finally:
        client.close()
    snap = {}
    for m in response.model_stats:
        s = m.inference_stats
        batch_exec = sum(b.compute_infer.count for b in m.batch_stats)
        batch_ns = sum(b.compute_input.ns + b.compute_infer.ns + b.compute_output.ns for b in m.batch_stats)
        snap[m.name] = {
            "requests": s.success.count, "failed": s.fail.count, "request_ns": s.success.ns, "queue_ns": s.queue.ns,
            "compute_input_ns": s.compute_input.ns, "compute_infer_ns": s.compute_infer.ns,
            "compute_output_ns": s.compute_output.ns, "inferences": m.inference_count,
            "executions": m.execution_count, "batch_executions": batch_exec, "batch_compute_ns": batch_ns,
        }
    return snap


def wait_idle(url: str, quiet_s: float = 2.0, timeout_s: float = 120.0) -> float:
    """Wait until no model of the server finished a request for ``quiet_s`` seconds (requests a client
    gave up on may still run after it stopped waiting); returns the seconds waited."""
    started = time.perf_counter()
    last = None
    while time.perf_counter() - started < timeout_s:
        snap = stats_snapshot(url)
        done = sum(m["requests"] + m["failed"] + m["executions"] for m in snap.values())
        if done == last:
            break
        last = done
        time.sleep(quiet_s)
    return time.perf_counter() - started


def stats_delta(before: dict, after: dict, wall: float) -> dict:
    """Per model: requests, executions, requests per execution, mean queue / compute per request (ms),
    compute per execution (ms) and busy fraction (compute time of executions / wall time)."""
    out = {}
    for name, a in after.items():
        b = before.get(name, {k: 0 for k in a})
        d = {k: a[k] - b.get(k, 0) for k in a}
        if d["requests"] == 0 and d.get("failed", 0) == 0:
            continue
        req = d["requests"]
        execs = d["batch_executions"] or d["executions"]
        compute = d["compute_input_ns"] + d["compute_infer_ns"] + d["compute_output_ns"]
        exec_ns = d["batch_compute_ns"] if d["batch_executions"] else compute
        def per_request(ns: int) -> float | None:
            return ns / req / 1e6 if req else None

        out[name] = {
            "requests": req, "failed": d.get("failed", 0), "executions": execs,
            "requests_per_exec": round(req / execs, 2) if execs else None,
            "inferences": d["inferences"],
            "request_ms": per_request(d["request_ns"]), "queue_ms": per_request(d["queue_ns"]),
            "compute_ms": per_request(compute), "infer_ms": per_request(d["compute_infer_ns"]),
            "exec_ms": exec_ns / execs / 1e6 if execs else None,
            "busy": exec_ns / 1e9 / wall if wall else None,
        }
    return out


def process_cpu(server_pid: int | None) -> dict[str, float]:
    """CPU seconds used so far by this process (the benchmark's clients or wtpsplit in-process) and, given
    its pid, by tritonserver and its Python-backend stubs (summed per model; Linux /proc only)."""
    out: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for entry in (Path("/proc").iterdir() if server_pid is not None and Path("/proc").is_dir() else []):
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            pid, ppid = int(entry.name), int(fields[1])
            if pid != server_pid and ppid != server_pid:
                continue
            cpu = (int(fields[11]) + int(fields[12])) / tick
            if pid == server_pid:
                name = "tritonserver process (gRPC, ensemble, schedulers)"
            else:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                name = f"{Path(argv[1].decode()).parent.parent.name} (python stub)"
        except (OSError, ValueError, IndexError):
            continue
        out[name] = out.get(name, 0.0) + cpu
    times = os.times()
    out["benchmark process (clients)"] = times.user + times.system
    return out


def cpu_delta(before: dict, after: dict, wall: float) -> dict[str, float]:
    return {name: (after[name] - before.get(name, 0.0)) / wall for name in after if wall}


def print_stats(title: str, delta: dict, cpu: dict | None = None, others: float | None = None) -> None:
    print(f"\n  Triton statistics, {title}  (queue/compute ms per request; busy = execution time / wall "
          "time, summed over instances)")
    print(f"    {'model':<26}{'requests':>9}{'execs':>7}{'req/exec':>9}{'queue ms':>10}{'compute ms':>11}"
          f"{'ms/exec':>9}{'busy':>7}{'e2e ms':>9}")
    order = sorted(delta, key=lambda n: (n == TRITON_NAME, "tokenizer" not in n, not n.endswith("_onnx"),
                                         "postprocessor" not in n, n))
    for name in order:
        d = delta[name]
        busy = f"{d['busy'] * 100:.0f}%" if d["busy"] is not None else "-"
        composite = name in (TRITON_NAME,)
        def ms(key: str) -> str:
            return "-" if composite or d[key] is None else format(d[key], ".1f")

        print(f"    {name:<26}{d['requests']:>9}{d['executions']:>7}{d['requests_per_exec'] or 0:>9.2f}"
              f"{ms('queue_ms'):>10}{ms('compute_ms'):>11}{ms('exec_ms'):>9}{'-' if composite else busy:>7}"
              f"{'-' if d['request_ms'] is None else format(d['request_ms'], '.1f'):>9}")
    if cpu:
        used = [f"{name} {value:.2f}" for name, value in sorted(cpu.items(), key=lambda kv: -kv[1]) if value >= 0.005]
        if others is not None:
            used.append(f"outside this benchmark {others:.2f}")
        print("    CPU cores used: " + ", ".join(used))


def machine_busy() -> float | None:
    """CPU-seconds the whole machine (kernel-wide, every container) has been busy, from /proc/stat."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait


class Phase:
    """Bookkeeping around one measured phase: the model-alone probe just before and just after it (their
    mean is the row's reference speed), the CPU used by the benchmark's processes (this one, tritonserver
    and its stubs) and by everything else on the machine (other users of the cores)."""

    def __init__(self, alone, server_pid: int | None = None):
        self.alone, self.server_pid = alone, server_pid
        self.probe_before = alone.probe(reuse=True)
        self.cpu_start, self.busy_start = process_cpu(server_pid), machine_busy()
        self.t0 = time.perf_counter()
        self.cpu: dict[str, float] = {}
        self.others = self.probe_after = None

    def finish(self) -> "Phase":
        wall = time.perf_counter() - self.t0
        self.cpu = cpu_delta(self.cpu_start, process_cpu(self.server_pid), wall)
        busy = machine_busy()
        if busy is not None and self.busy_start is not None and wall > 0:
            self.others = max(0.0, (busy - self.busy_start) / wall - sum(self.cpu.values()))
        self.probe_after = self.alone.probe()
        return self

    @property
    def probe(self) -> float | None:
        values = [v for v in (self.probe_before, self.probe_after) if v]
        return sum(values) / len(values) if values else None

    def note(self) -> str:
        parts = []
        if self.others is not None:
            parts.append(f"others {self.others:.2f} cores")
        if self.probe_before and self.probe_after:
            spread = abs(self.probe_before - self.probe_after) / self.probe
            if spread > 0.15:
                parts.append(f"noisy: alone {self.probe_before:,.0f} -> {self.probe_after:,.0f} tok/s")
        return ", ".join(parts)

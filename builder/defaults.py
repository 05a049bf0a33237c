"""What ``sat-triton build`` renders when a serving flag is not given, per ``--device``.

Chosen by measurement with ``bench/benchmark.py --sweep`` (docs/performance.md has the runs):

* cpu: two tokenizer and two postprocessor instances (two, not one, because their queues are
  bounded: see the last point) and no dynamic batching; the ONNX model is the bottleneck. Its
  instance count is ``auto`` (:func:`cpu_onnx_instances`, from the build machine's cores): on 2
  cores two instances of one thread, which ran 0-20% over one instance of both threads in every
  quiet side-by-side run (docs/performance.md, "CPU defaults"), at the price of a slower
  single request on an idle server (21-26 ms against 13-17 ms for a short text).
  Each instance's onnxruntime threads are its share of the serving host's cores (``--intra_op_threads
  auto``), and so are each tokenizer instance's rayon threads (``--tokenizer_threads auto``).
  Windows run in groups of similar length, within
  8 tokens (saves the network's work on padding: +13-15% end to end at 8 and 32 texts per request
  against groups of 32, one run side by side; the network alone +10% on corpus-shaped windows, median
  of 7 rounds); onnxruntime's transformer fusions gained nothing on CPU.
* gpu (three H100 runs, bench/results/h100-*.json, docs/performance.md): the Python-backend ONNX step
  saturated first (98-99% busy), so it runs as three instances, each preparing its batch while
  another's is on the GPU (1 -> 2 instances: +25% to +75%; 2 -> 3: +5% to +16%, nothing at 128 texts
  per request).
  Each runs the dynamic batcher's merged batch of up to 256 windows as one padded call (length groups
  halve the throughput at 8 texts per request and gain 8% at 128), on a graph fused by onnxruntime's
  transformer optimizer (+21-28% for the model alone, +3% and +11% end to end at 8 and 128 texts per
  request, -15% at 32: noise of one run). Four tokenizer and postprocessor instances (one or two
  starved the ONNX step; eight gained nothing while the ONNX step was the limit, and with these ONNX
  settings the four tokenizer instances are what saturates: more is the next thing to measure); a
  queue delay of half a millisecond (0.1 and 2 ms measured no better; no dynamic batching at all:
  -38% to -66%).
* every step's bounded queue (both; ``bench/faults.py``, docs/reliability.md): past capacity an
  accepted request waits for about ``max_queue_size`` requests, and throughput does not depend on it.
  On the sat-3l-sm-shaped CPU build at 3x capacity, queues of 4, 16 and 64 gave the same throughput
  and accepted p50 of 1.3, 4.5 and 19 s, so cpu takes 8; gpu (not measured: no GPU here) takes 64,
  which at the H100's hundreds of requests per second is a wait of tens of milliseconds and lets 64
  closed-loop clients queue without refusal. A request waits at most 30 s (a backstop for requests of
  many windows). The Python steps get the same bound, so whichever step saturates first refuses; each
  bounded step runs at least two instances, because with one instance and a full queue tritonserver
  2.51's batcher sleeps 500 ms per request (tiny build at 4x capacity: 9 requests/s served with one
  tokenizer instance, 142-149/s, all of capacity, with two).
"""

from __future__ import annotations

AUTO = "auto"

DEFAULTS = {
    "cpu": {"max_batch_size": 64, "instance_count": 2, "onnx_instance_count": AUTO, "pad_to_multiple_of": 64,
            "max_queue_delay_us": 2000, "length_granularity": 8, "optimize": "off",
            "max_queue_size": 8, "queue_timeout_ms": 30000},
    "gpu": {"max_batch_size": 256, "instance_count": 4, "onnx_instance_count": 3, "pad_to_multiple_of": 64,
            "max_queue_delay_us": 500, "length_granularity": 0, "optimize": "on",
            "max_queue_size": 64, "queue_timeout_ms": 30000},
}


def build_defaults(device: str) -> dict[str, int | str]:
    """The serving defaults of ``sat-triton build --device device`` (``auto`` values are resolved by
    :func:`cpu_onnx_instances` and :func:`onnx_threads` from the cores)."""
    return dict(DEFAULTS[device])


MAX_AUTO_ONNX_INSTANCES = 8  # each instance holds its own copy of the network (~1.1 GB for sat-3l-sm in fp32)


def cpu_onnx_instances(cores: int) -> int:
    """``--onnx_instance_count auto`` on cpu: one ONNX instance per core up to 3 cores (but two on one core:
    a bounded queue needs two instances), then one per two cores, at most 8 (each instance then runs
    ``cores // instances`` onnxruntime threads, at least one).

    Several single-thread instances beat one instance of all threads on throughput (2 cores: 2 x 1
    ran +6% to +20% over 1 x 2, docs/performance.md), at a cost in the latency of one request alone,
    which then runs on fewer threads (2 cores: 21 ms against 13 ms for a short text on an idle server).
    Past a few cores, instances of two threads keep that latency near the one-instance figure while the
    instances still fill the cores.
    """
    cores = max(1, int(cores))
    return max(2, min(cores if cores <= 3 else cores // 2, MAX_AUTO_ONNX_INSTANCES))


def onnx_threads(requested: int | str, device: str, onnx_backend: str, onnx_instances: int, cores: int) -> int:
    """The ``--intra_op_threads`` to render. A number is kept (0 means ``auto``). ``auto``: 0 for the
    Python-backend ONNX step, which then takes an equal share of the serving host's cores itself
    (``sat_pipeline.threads.cpu_threads_per_instance``); for Triton's native onnxruntime backend on cpu,
    which cannot, the share of this machine's ``cores`` now."""
    if str(requested).lower() != AUTO and int(requested) > 0:
        return int(requested)
    if device == "cpu" and onnx_backend == "onnxruntime" and onnx_instances > 1:
        return max(1, cores // onnx_instances)
    return 0

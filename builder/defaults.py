"""What ``sat-triton build`` renders when a serving flag is not given, per ``--device``.

Chosen by measurement with ``bench/benchmark.py --sweep`` (docs/performance.md has the runs):

* cpu: one instance of each step and no dynamic batching; the ONNX model is the bottleneck and
  onnxruntime already uses every core inside one call. Windows run in groups of similar length, within
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
"""

from __future__ import annotations

DEFAULTS = {
    "cpu": {"max_batch_size": 64, "instance_count": 1, "onnx_instance_count": 1, "pad_to_multiple_of": 64,
            "max_queue_delay_us": 2000, "length_granularity": 8, "optimize": "off",
            "max_queue_size": 16, "queue_timeout_ms": 30000},
    "gpu": {"max_batch_size": 256, "instance_count": 4, "onnx_instance_count": 3, "pad_to_multiple_of": 64,
            "max_queue_delay_us": 500, "length_granularity": 0, "optimize": "on",
            "max_queue_size": 64, "queue_timeout_ms": 30000},
}


def build_defaults(device: str) -> dict[str, int | str]:
    """The serving defaults of ``sat-triton build --device device``."""
    return dict(DEFAULTS[device])

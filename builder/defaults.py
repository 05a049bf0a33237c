"""What ``sat-triton build`` renders when a serving flag is not given, per ``--device``.

Chosen by measurement with ``bench/benchmark.py --sweep`` (docs/performance.md has the runs):

* cpu: one instance of each step and no dynamic batching; the ONNX model is the bottleneck and
  onnxruntime already uses every core inside one call. Windows run in groups of similar length (saves
  the attention spent on padding); onnxruntime's transformer fusions gained nothing on CPU.
* gpu (H100 runs in docs/performance.md): the ONNX step saturates first, so it runs as two instances
  (one prepares its batch while the other's is on the GPU: +25% to +75%), each running the dynamic
  batcher's merged batch of up to 256 windows as one padded call (length groups cost +100% at 8 texts
  per request), on a graph fused by onnxruntime's transformer optimizer (+20-28% for the model alone);
  four tokenizer and postprocessor instances (one or two starve the ONNX step, eight gain nothing);
  a queue delay of half a millisecond (0.1 and 2 ms measured no better).
"""

from __future__ import annotations

DEFAULTS = {
    "cpu": {"max_batch_size": 64, "instance_count": 1, "onnx_instance_count": 1, "pad_to_multiple_of": 64,
            "max_queue_delay_us": 2000, "length_granularity": 32, "optimize": "off"},
    "gpu": {"max_batch_size": 256, "instance_count": 4, "onnx_instance_count": 2, "pad_to_multiple_of": 64,
            "max_queue_delay_us": 500, "length_granularity": 0, "optimize": "on"},
}


def build_defaults(device: str) -> dict[str, int | str]:
    """The serving defaults of ``sat-triton build --device device``."""
    return dict(DEFAULTS[device])

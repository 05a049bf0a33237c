"""How many threads one CPU instance of the ONNX step should use: a share of the serving host's cores.

Triton starts every instance of a Python model as its own process, and onnxruntime starts a pool of
every core by default, so N instances would run N pools of all cores against each other. Measured on
2 cores: two ONNX instances of one thread each ran +6% to +20% over one instance of two threads
(docs/performance.md). (The same share for the tokenizer's rayon pool measured no different there:
3.31 against 3.35 M chars/s, two instances, three runs each; so the tokenizer keeps its default.)
"""

from __future__ import annotations


def cpu_threads_per_instance(model_config: dict, requested: int, cpu_count: int) -> int:
    """Threads for one CPU instance of the model ``model_config`` describes: ``requested`` if set (> 0);
    otherwise, with several CPU instances, an equal share of ``cpu_count`` (at least one); 0 (the
    library's default) for a single instance."""
    if requested > 0:
        return requested
    instances = sum(int(group.get("count", 1)) for group in model_config.get("instance_group", [])
                    if group.get("kind", "KIND_CPU") == "KIND_CPU")
    return max(1, cpu_count // instances) if instances > 1 else 0

"""How many threads one CPU instance of a step should use: a share of the serving host's cores.

Triton starts every instance of a Python model as its own process. onnxruntime and the tokenizers
library (rayon) each start a pool of every core by default, so N instances would run N pools of all
cores against each other.

* ONNX step: measured on 2 cores, two ONNX instances of one thread each ran +6% to +20% over one
  instance of two threads (docs/performance.md).
* Tokenizer step: each instance's ``encode_batch`` runs on a rayon pool; four instances on the H100
  VM's 16 cores ran four pools of 16 threads. The pool is sized by ``RAYON_NUM_THREADS`` when the
  library first starts it, so :func:`cap_tokenizer_threads` runs before the tokenizer is loaded.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

AUTO = "auto"


def quota_cores(cpu_max: str) -> int | None:
    """Cores a cgroup v2 ``cpu.max`` line allows (``"200000 100000"`` -> 2, rounded up), or None for
    ``max`` (no quota)."""
    fields = cpu_max.split()
    if len(fields) < 2 or fields[0] == "max":
        return None
    return max(1, math.ceil(int(fields[0]) / int(fields[1])))


def available_cores(cgroup: Path = Path("/sys/fs/cgroup")) -> int:
    """The cores this process may use: the CPUs it may run on (``sched_getaffinity``), fewer when its
    container's CPU quota (cgroup v2 ``cpu.max``, a Kubernetes CPU limit) allows fewer."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota = quota_cores((cgroup / "cpu.max").read_text())
    except (OSError, ValueError):
        quota = None
    return max(1, min(cores, quota or cores))


def cpu_instances(model_config: dict) -> int:
    """CPU instances the model's ``instance_group`` asks for (0 when it has none on the CPU)."""
    return sum(int(group.get("count", 1)) for group in model_config.get("instance_group", [])
               if group.get("kind", "KIND_CPU") == "KIND_CPU")


def cpu_threads_per_instance(model_config: dict, requested: int, cpu_count: int) -> int:
    """Threads for one CPU instance of the model ``model_config`` describes: ``requested`` if set (> 0);
    otherwise, with several CPU instances, an equal share of ``cpu_count`` (at least one); 0 (the
    library's default) for a single instance."""
    if requested > 0:
        return requested
    instances = cpu_instances(model_config)
    return max(1, cpu_count // instances) if instances > 1 else 0


def tokenizer_threads(model_config: dict, requested: str, cpu_count: int) -> int:
    """rayon threads for one tokenizer instance: ``requested`` threads when it is a number > 0, the
    library's own default (all cores) for ``0``, and for ``auto`` an equal share of ``cpu_count``
    among the model's CPU instances (at least one), so instances x threads fit the cores."""
    value = str(requested).strip().lower()
    if value == AUTO:
        return max(1, cpu_count // max(1, cpu_instances(model_config)))
    threads = int(value)
    if threads < 0:
        raise ValueError(f"tokenizer threads must be 'auto' or >= 0, got {requested!r}")
    return threads


def cap_tokenizer_threads(threads: int, environ=os.environ) -> None:
    """Size the tokenizers library's rayon pool for this process (0: leave the library's default).
    One thread turns its parallelism off, so ``encode_batch`` runs on the calling thread instead of
    handing each batch to a pool of one. Takes effect only before the library first encodes a batch;
    ``RAYON_NUM_THREADS`` / ``TOKENIZERS_PARALLELISM`` already set in the server's environment win."""
    if threads <= 0:
        return
    environ.setdefault("RAYON_NUM_THREADS", str(threads))
    if threads == 1:
        environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import os
import subprocess
import sys

import pytest

from sat_triton.builder.defaults import cpu_onnx_instances, onnx_threads
from sat_triton.pipeline.threads import (available_cores, cap_tokenizer_threads, cpu_threads_per_instance,
                                         quota_cores, tokenizer_threads)


def config(*groups):
    return {"instance_group": [{"count": n, "kind": kind} for n, kind in groups]}


def test_cpu_instances_share_the_cores_unless_threads_are_set():
    assert cpu_threads_per_instance(config((1, "KIND_CPU")), 0, 16) == 0  # onnxruntime's default
    assert cpu_threads_per_instance(config((2, "KIND_CPU")), 0, 2) == 1
    assert cpu_threads_per_instance(config((3, "KIND_CPU")), 0, 16) == 5
    assert cpu_threads_per_instance(config((4, "KIND_CPU")), 0, 2) == 1  # never below one
    assert cpu_threads_per_instance(config((2, "KIND_CPU")), 3, 16) == 3  # --intra_op_threads wins
    assert cpu_threads_per_instance(config((2, "KIND_GPU")), 0, 16) == 0


def test_tokenizer_instances_share_the_cores():
    assert tokenizer_threads(config((4, "KIND_CPU")), "auto", 16) == 4  # the GPU default: 4 x 4 on 16 cores
    assert tokenizer_threads(config((1, "KIND_CPU")), "auto", 2) == 2
    assert tokenizer_threads(config((3, "KIND_CPU")), "auto", 2) == 1  # never below one
    assert tokenizer_threads(config((2, "KIND_CPU")), "0", 16) == 0  # the library's own pool
    assert tokenizer_threads(config((2, "KIND_CPU")), "3", 16) == 3
    with pytest.raises(ValueError, match="auto"):
        tokenizer_threads(config((2, "KIND_CPU")), "-1", 16)


def test_the_tokenizer_cap_sets_rayon_before_the_pool_starts():
    env = {}
    cap_tokenizer_threads(4, env)
    assert env == {"RAYON_NUM_THREADS": "4"}
    env = {}
    cap_tokenizer_threads(1, env)  # one thread: no pool at all
    assert env == {"RAYON_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    env = {"RAYON_NUM_THREADS": "8"}
    cap_tokenizer_threads(2, env)  # the operator's environment wins
    assert env == {"RAYON_NUM_THREADS": "8"}
    env = {}
    cap_tokenizer_threads(0, env)
    assert env == {}


def test_cores_follow_the_container_quota(tmp_path):
    assert quota_cores("max 100000") is None
    assert quota_cores("200000 100000") == 2
    assert quota_cores("150000 100000") == 2  # 1.5 cores: two threads keep it busy
    assert quota_cores("50000 100000") == 1
    (tmp_path / "cpu.max").write_text("100000 100000\n")
    assert available_cores(tmp_path) == 1
    assert available_cores(tmp_path / "none") >= 1


def test_cpu_auto_defaults_scale_with_the_cores():
    assert [cpu_onnx_instances(c) for c in (1, 2, 3, 4, 8, 16, 64)] == [2, 2, 3, 2, 4, 8, 8]  # at least 2 (bounded queues), at most 8 (memory)
    assert onnx_threads("auto", "cpu", "python", 2, 2) == 0  # the Python step shares the serving host's cores
    assert onnx_threads(0, "cpu", "python", 2, 2) == 0
    assert onnx_threads("auto", "cpu", "onnxruntime", 4, 16) == 4  # the native backend cannot: built in
    assert onnx_threads("auto", "cpu", "onnxruntime", 1, 16) == 0
    assert onnx_threads(3, "gpu", "onnxruntime", 3, 16) == 3


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads in /proc")
def test_the_cap_sizes_the_tokenizers_rayon_pool(tokenizer_dir):
    """In a fresh process, as in a tokenizer stub: capped before the first encode_batch, the library's
    pool has that many threads (one: none at all), whatever the machine's cores."""
    script = (
        "import os, sys\n"
        "from sat_triton.pipeline.threads import cap_tokenizer_threads\n"
        "cap_tokenizer_threads(int(sys.argv[1]))\n"
        "from sat_triton.pipeline.tokenization import load_tokenizer\n"
        "tokenizer = load_tokenizer(sys.argv[2])\n"
        "tokenizer.encode_batch(['Hello world. This is a test.'] * 64)\n"
        "print(len(os.listdir('/proc/self/task')))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("RAYON_NUM_THREADS", "TOKENIZERS_PARALLELISM")}
    counts = {}
    for threads in (1, 3):
        done = subprocess.run([sys.executable, "-c", script, str(threads), str(tokenizer_dir / "tokenizer.json")],
                              capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 0, done.stderr
        counts[threads] = int(done.stdout.strip())
    assert counts[3] - counts[1] == 3  # the same process plus a pool of three

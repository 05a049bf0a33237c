from sat_triton.pipeline.threads import cpu_threads_per_instance


def test_cpu_instances_share_the_cores_unless_threads_are_set():
    def config(*groups):
        return {"instance_group": [{"count": n, "kind": kind} for n, kind in groups]}

    assert cpu_threads_per_instance(config((1, "KIND_CPU")), 0, 16) == 0  # onnxruntime's default
    assert cpu_threads_per_instance(config((2, "KIND_CPU")), 0, 2) == 1
    assert cpu_threads_per_instance(config((3, "KIND_CPU")), 0, 16) == 5
    assert cpu_threads_per_instance(config((4, "KIND_CPU")), 0, 2) == 1  # never below one
    assert cpu_threads_per_instance(config((2, "KIND_CPU")), 3, 16) == 3  # --intra_op_threads wins
    assert cpu_threads_per_instance(config((2, "KIND_GPU")), 0, 16) == 0

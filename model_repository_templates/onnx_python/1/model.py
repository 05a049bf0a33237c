"""Triton Python model: the SaT ONNX network run by onnxruntime (for servers without its backend).

Triton's dynamic batcher hands over several requests at once; their windows are gathered and run as
one session call trimmed to the longest window (``length_granularity`` 0, the GPU default), or one
call per group of similar real length (> 0, the CPU default: saves the attention spent on padding).
Padding is masked, so each row's logits are the same either way.
"""

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from sat_pipeline import wire
from sat_pipeline.batching import merge_rows, run_by_length, split_rows
from sat_pipeline.pipeline import string_parameters
from sat_pipeline.threads import available_cores, cpu_threads_per_instance


class TritonPythonModel:
    def initialize(self, args):
        import onnxruntime as ort

        config = json.loads(args["model_config"])
        params = string_parameters(config)
        self.pad_id = int(params["pad_id"])
        self.granularity = int(params["length_granularity"])
        path = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        options = ort.SessionOptions()
        threads = int(params.get("intra_op_threads", "0"))
        providers = ["CPUExecutionProvider"]
        if args.get("model_instance_kind") == "GPU":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise pb_utils.TritonModelException(
                    "this model was built with --device gpu but onnxruntime here has no CUDAExecutionProvider: "
                    "install onnxruntime-gpu in the server's Python environment, or rebuild with --device cpu"
                )
            if hasattr(ort, "preload_dlls"):  # onnxruntime-gpu >= 1.21: CUDA/cuDNN from pip's nvidia-* packages
                ort.preload_dlls(directory="")
            device = int(args.get("model_instance_device_id", 0))
            providers = [("CUDAExecutionProvider", {"device_id": device}), "CPUExecutionProvider"]
            # the CPU only runs a few shape ops here: one thread, and no spinning that would take a core
            # from the tokenizer and postprocessor instances
            options.intra_op_num_threads = threads or 1
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        else:
            threads = cpu_threads_per_instance(config, threads, available_cores())
            if threads > 0:
                options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        if providers[0] != "CPUExecutionProvider" and "CUDAExecutionProvider" not in self.session.get_providers():
            # onnxruntime falls back to the CPU when the CUDA libraries fail to load: say so instead
            raise pb_utils.TritonModelException(
                "onnxruntime could not start its CUDAExecutionProvider (CUDA 12/13 or cuDNN 9 libraries not found; "
                "see the server log), so the model would run on the CPU: fix the CUDA install, or rebuild with --device cpu"
            )

    def _run(self, input_ids, attention_mask):
        return self.session.run([wire.LOGITS], {wire.INPUT_IDS: input_ids, wire.ATTENTION_MASK: attention_mask})[0]

    def execute(self, requests):
        ids = [pb_utils.get_input_tensor_by_name(r, wire.INPUT_IDS).as_numpy() for r in requests]
        masks = [pb_utils.get_input_tensor_by_name(r, wire.ATTENTION_MASK).as_numpy() for r in requests]
        merged_ids, merged_mask, rows = merge_rows(ids, masks, self.pad_id)
        logits = run_by_length(self._run, merged_ids, merged_mask, self.granularity)
        return [
            pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(wire.LOGITS, np.ascontiguousarray(part))])
            for part in split_rows(logits, rows, [i.shape[1] for i in ids])
        ]

"""Triton Python model: the SaT ONNX network run by onnxruntime (for servers without its backend).

Triton's dynamic batcher hands over several requests at once; their windows are gathered, grouped by
real length and run one session call per length group, each trimmed to its longest window (padding
is masked, so each row's logits are unchanged; trimming saves the attention on padding).
"""

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from sat_pipeline import wire
from sat_pipeline.batching import merge_rows, run_by_length, split_rows
from sat_pipeline.pipeline import string_parameters


class TritonPythonModel:
    def initialize(self, args):
        import onnxruntime as ort

        params = string_parameters(json.loads(args["model_config"]))
        self.pad_id = int(params["pad_id"])
        self.granularity = int(params["length_granularity"])
        path = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        options = ort.SessionOptions()
        threads = int(params.get("intra_op_threads", "0"))
        if threads > 0:
            options.intra_op_num_threads = threads
        providers = ["CPUExecutionProvider"]
        if args.get("model_instance_kind") == "GPU":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise pb_utils.TritonModelException(
                    "this model was built with --device gpu but onnxruntime here has no CUDAExecutionProvider: "
                    "install onnxruntime-gpu in the server's Python environment, or rebuild with --device cpu"
                )
            device = int(args.get("model_instance_device_id", 0))
            providers = [("CUDAExecutionProvider", {"device_id": device}), "CPUExecutionProvider"]
        self.session = ort.InferenceSession(str(path), options, providers=providers)

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

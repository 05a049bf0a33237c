"""Triton Python model: the whole SaT pipeline for texts of any length.

It runs the same pure steps as the ensemble's tokenizer and postprocessor, and calls the ONNX model
(BLS) with at most ``max_chunks`` windows at a time, so a text of a million characters works.
"""

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from sat_pipeline import wire
from sat_pipeline.options import parse_options
from sat_pipeline.pipeline import TokenizerSettings, finish, output_arrays, prepare, string_parameters
from sat_pipeline.responses import respond_each, tensors_response
from sat_pipeline.texts import decode_texts
from sat_pipeline.tokenization import load_tokenizer


class TritonPythonModel:
    def initialize(self, args):
        params = string_parameters(json.loads(args["model_config"]))
        repository = Path(args["model_repository"]).parent
        tokenizer_dir = repository / params["tokenizer_model"]
        versions = sorted((p for p in tokenizer_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
        self.tokenizer = load_tokenizer(versions[-1] / "tokenizer.json")
        self.settings = TokenizerSettings.from_parameters(params)
        self.max_chunks = int(params["max_chunks"])
        self.onnx_model = params["onnx_model"]
        self.default_threshold = float(params["default_threshold"])
        self.language = params.get("language") or None

    def execute(self, requests):
        return respond_each(requests, self._segment, pb_utils)

    def _logits(self, input_ids, attention_mask):
        parts = []
        for start in range(0, len(input_ids), self.max_chunks):
            rows = slice(start, start + self.max_chunks)
            response = pb_utils.InferenceRequest(
                model_name=self.onnx_model,
                requested_output_names=[wire.LOGITS],
                inputs=[
                    pb_utils.Tensor(wire.INPUT_IDS, np.ascontiguousarray(input_ids[rows])),
                    pb_utils.Tensor(wire.ATTENTION_MASK, np.ascontiguousarray(attention_mask[rows])),
                ],
            ).exec()
            if response.has_error():
                raise pb_utils.TritonModelException(response.error().message())
            parts.append(pb_utils.get_output_tensor_by_name(response, wire.LOGITS).as_numpy())
        return np.concatenate(parts)

    def _segment(self, request):
        options = parse_options(request.parameters())
        texts = decode_texts(pb_utils.get_input_tensor_by_name(request, wire.TEXT).as_numpy())
        batch, _, input_ids, attention_mask = prepare(self.tokenizer, texts, options, self.settings)
        logits = self._logits(input_ids, attention_mask)
        segmented = finish(texts, batch.counts, batch.ends, logits, options, self.default_threshold, self.language)
        outputs = output_arrays(segmented, char_probs=wire.CHAR_PROBS in request.requested_output_names())
        return tensors_response(outputs, pb_utils)

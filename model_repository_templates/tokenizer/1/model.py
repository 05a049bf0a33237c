"""Triton Python model: texts -> windows of token ids (the first step of the SaT ensemble)."""

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from sat_pipeline import wire
from sat_pipeline.errors import RequestError
from sat_pipeline.options import parse_options
from sat_pipeline.pipeline import TokenizerSettings, prepare, string_parameters
from sat_pipeline.texts import decode_texts
from sat_pipeline.tokenization import load_tokenizer


class TritonPythonModel:
    def initialize(self, args):
        params = string_parameters(json.loads(args["model_config"]))
        version_dir = Path(args["model_repository"]) / args["model_version"]
        self.tokenizer = load_tokenizer(version_dir / "tokenizer.json")
        self.settings = TokenizerSettings(
            cls_id=int(params["cls_id"]),
            sep_id=int(params["sep_id"]),
            pad_id=int(params["pad_id"]),
            pad_to_multiple_of=int(params["pad_to_multiple_of"]),
        )
        self.max_chunks = int(params["max_chunks"])

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                responses.append(self._tokenize(request))
            except RequestError as exc:
                error = pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG)
                responses.append(pb_utils.InferenceResponse(error=error))
        return responses

    def _tokenize(self, request):
        options = parse_options(request.parameters())
        texts = decode_texts(pb_utils.get_input_tensor_by_name(request, wire.TEXT).as_numpy())
        batch, plan, input_ids, attention_mask = prepare(self.tokenizer, texts, options, self.settings)
        if len(plan) > self.max_chunks:
            raise RequestError(
                f"{wire.TOO_MANY_CHUNKS}: this request needs {len(plan)} windows of up to {plan.block_size} tokens, "
                f"but the ONNX model takes at most {self.max_chunks} per request (its max_batch_size). "
                "Send fewer or shorter texts per request, or send long texts to the ensemble's '<name>_long' model "
                "(client.SaT does both by itself), or rebuild with a larger --max_batch_size"
            )
        return pb_utils.InferenceResponse(
            output_tensors=[
                pb_utils.Tensor(wire.INPUT_IDS, input_ids),
                pb_utils.Tensor(wire.ATTENTION_MASK, attention_mask),
                pb_utils.Tensor(wire.TOKEN_COUNTS, batch.counts),
                pb_utils.Tensor(wire.TOKEN_ENDS, batch.ends),
            ]
        )

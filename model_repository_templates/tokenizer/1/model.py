"""Triton Python model: texts -> windows of token ids (the first step of the SaT ensemble)."""

import json
from pathlib import Path

import triton_python_backend_utils as pb_utils

from sat_pipeline import wire
from sat_pipeline.errors import RequestError
from sat_pipeline.limits import Limits, check_limits
from sat_pipeline.options import parse_options
from sat_pipeline.pipeline import TokenizerSettings, prepare, string_parameters
from sat_pipeline.responses import respond_each, tensors_response
from sat_pipeline.texts import decode_texts
from sat_pipeline.threads import available_cores, cap_tokenizer_threads, tokenizer_threads
from sat_pipeline.tokenization import ServingTokenizer


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = string_parameters(config)
        # before the tokenizers library starts its rayon pool: instances x threads fit the cores
        cap_tokenizer_threads(tokenizer_threads(config, params.get("tokenizer_threads", "auto"), available_cores()))
        version_dir = Path(args["model_repository"]) / args["model_version"]
        self.tokenizer = ServingTokenizer.load(version_dir / "tokenizer.json")  # ends rebuilt where exact
        self.settings = TokenizerSettings.from_parameters(params)
        self.max_chunks = int(params["max_chunks"])
        self.limits = Limits.from_parameters(params)

    def execute(self, requests):
        return respond_each(requests, self._tokenize, pb_utils)

    def _tokenize(self, request):
        options = parse_options(request.parameters())
        raw = pb_utils.get_input_tensor_by_name(request, wire.TEXT).as_numpy()
        check_limits(raw, self.limits)  # from byte lengths, before decoding or tokenizing
        texts = decode_texts(raw)
        batch, plan, input_ids, attention_mask = prepare(self.tokenizer, texts, options, self.settings)
        if len(plan) > self.max_chunks:
            raise RequestError(
                f"{wire.TOO_MANY_CHUNKS}: this request needs {len(plan)} windows of up to {plan.block_size} tokens, "
                f"but the ONNX model takes at most {self.max_chunks} per request (its max_batch_size). "
                "Send fewer or shorter texts per request, or send long texts to the ensemble's '<name>_long' model "
                "(client.SaT does both by itself), or rebuild with a larger --max_batch_size"
            )
        return tensors_response(
            {
                wire.INPUT_IDS: input_ids,
                wire.ATTENTION_MASK: attention_mask,
                wire.TOKEN_COUNTS: batch.counts,
                wire.TOKEN_ENDS: batch.ends,
            },
            pb_utils,
        )

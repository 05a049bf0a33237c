"""Triton Python model: the whole SaT pipeline for texts of any length.

It runs the same pure steps as the ensemble's tokenizer and postprocessor, streamed
(``sat_pipeline.streaming``): the text is tokenized in pieces and its windows are built, run on the
ONNX model (BLS) and stitched ``max_chunks`` at a time, so a text of millions of characters takes
memory in bounded steps. A request over the configured limits is refused before any work, and one
whose client gave up is stopped between slices.
"""

import json
from pathlib import Path

import triton_python_backend_utils as pb_utils

from sat_pipeline import wire
from sat_pipeline.errors import StepError
from sat_pipeline.limits import Limits, check_limits
from sat_pipeline.memory import return_large_frees_to_the_os
from sat_pipeline.options import parse_options
from sat_pipeline.pipeline import TokenizerSettings, output_arrays, string_parameters
from sat_pipeline.responses import respond_each, serialize_bytes_with_numpy, tensors_response
from sat_pipeline.streaming import segment_streamed
from sat_pipeline.text_pieces import splits_safely
from sat_pipeline.texts import decode_texts
from sat_pipeline.tokenization import ServingTokenizer


class TritonPythonModel:
    def initialize(self, args):
        return_large_frees_to_the_os()  # a long text's temporaries do not stay in this process's RSS
        serialize_bytes_with_numpy(pb_utils)  # millions of sentences without two Python objects each
        params = string_parameters(json.loads(args["model_config"]))
        repository = Path(args["model_repository"]).parent
        tokenizer_dir = repository / params["tokenizer_model"]
        versions = sorted((p for p in tokenizer_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
        self.tokenizer = ServingTokenizer.load(versions[-1] / "tokenizer.json")
        self.split = splits_safely(self.tokenizer.library)
        self.settings = TokenizerSettings.from_parameters(params)
        self.limits = Limits.from_parameters(params)
        self.max_chunks = int(params["max_chunks"])
        self.onnx_model = params["onnx_model"]
        self.default_threshold = float(params["default_threshold"])
        self.language = params.get("language") or None

    def execute(self, requests):
        return respond_each(requests, self._segment, pb_utils)

    def _logits(self, input_ids, attention_mask):
        response = pb_utils.InferenceRequest(
            model_name=self.onnx_model,
            requested_output_names=[wire.LOGITS],
            inputs=[pb_utils.Tensor(wire.INPUT_IDS, input_ids), pb_utils.Tensor(wire.ATTENTION_MASK, attention_mask)],
        ).exec()
        if response.has_error():  # e.g. the ONNX step's full queue: keep its code (UNAVAILABLE), clients retry
            raise StepError(response.error().message(), response.error().code())
        return pb_utils.get_output_tensor_by_name(response, wire.LOGITS).as_numpy()

    def _segment(self, request):
        options = parse_options(request.parameters())
        raw = pb_utils.get_input_tensor_by_name(request, wire.TEXT).as_numpy()
        check_limits(raw, self.limits)
        texts = decode_texts(raw)
        del raw
        segmented = segment_streamed(self.tokenizer, texts, options, self.settings, self._logits, self.max_chunks,
                                     self.default_threshold, self.language, cancelled=request.is_cancelled,
                                     split=self.split)
        outputs = output_arrays(segmented, char_probs=wire.CHAR_PROBS in request.requested_output_names())
        return tensors_response(outputs, pb_utils)

"""Triton Python model: window logits -> sentences (the last step of the SaT ensemble)."""

import json

import triton_python_backend_utils as pb_utils

from sat_pipeline import wire
from sat_pipeline.options import parse_options
from sat_pipeline.pipeline import finish, output_arrays, string_parameters
from sat_pipeline.responses import respond_each, tensors_response
from sat_pipeline.texts import decode_texts


class TritonPythonModel:
    def initialize(self, args):
        params = string_parameters(json.loads(args["model_config"]))
        self.default_threshold = float(params["default_threshold"])
        self.language = params.get("language") or None

    def execute(self, requests):
        return respond_each(requests, self._segment, pb_utils)

    def _segment(self, request):
        def tensor(name):
            return pb_utils.get_input_tensor_by_name(request, name).as_numpy()

        options = parse_options(request.parameters())
        segmented = finish(
            decode_texts(tensor(wire.TEXT)),
            tensor(wire.TOKEN_COUNTS),
            tensor(wire.TOKEN_ENDS),
            tensor(wire.LOGITS),
            options,
            self.default_threshold,
            self.language,
        )
        outputs = output_arrays(segmented, char_probs=wire.CHAR_PROBS in request.requested_output_names())
        return tensors_response(outputs, pb_utils)

"""Triton Python model: window logits -> sentences (the last step of the SaT ensemble)."""

import json

import triton_python_backend_utils as pb_utils

from sat_pipeline import wire
from sat_pipeline.errors import RequestError
from sat_pipeline.options import parse_options
from sat_pipeline.pipeline import finish, output_arrays, string_parameters
from sat_pipeline.texts import decode_texts


class TritonPythonModel:
    def initialize(self, args):
        params = string_parameters(json.loads(args["model_config"]))
        self.default_threshold = float(params["default_threshold"])
        self.language = params.get("language") or None

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                responses.append(self._segment(request))
            except RequestError as exc:
                error = pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG)
                responses.append(pb_utils.InferenceResponse(error=error))
        return responses

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
        return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(n, a) for n, a in outputs.items()])

"""One Triton response per request, with bad requests answered INVALID_ARGUMENT on their own.

Takes the ``triton_python_backend_utils`` module as an argument so this stays importable (and
testable) without Triton; the ``model.py`` adapters pass theirs.
"""

from __future__ import annotations

from .errors import RequestCancelled, RequestError


def respond_each(requests, handle, pb_utils) -> list:
    """``handle(request) -> InferenceResponse`` for every request; a :class:`RequestError` becomes that
    request's INVALID_ARG error, :class:`RequestCancelled` its CANCELLED error, and the other requests
    of the batch are still answered."""
    responses = []
    for request in requests:
        try:
            responses.append(handle(request))
        except RequestError as exc:
            error = pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG)
            responses.append(pb_utils.InferenceResponse(error=error))
        except RequestCancelled as exc:
            code = getattr(pb_utils.TritonError, "CANCELLED", pb_utils.TritonError.UNAVAILABLE)
            responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc), code)))
    return responses


def tensors_response(outputs: dict, pb_utils):
    """An InferenceResponse carrying ``outputs`` (name -> numpy array)."""
    return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(n, a) for n, a in outputs.items()])

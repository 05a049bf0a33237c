"""The error kinds the pipeline raises for one request.

Models turn each into that request's Triton error (``respond_each``), so the server keeps serving.
"""


class RequestError(ValueError):
    """A request the pipeline cannot serve: the message names the input or option and why."""


class RequestCancelled(Exception):
    """The client gave up on the request (timeout, cancellation): the model stops its work on it and
    answers ``TritonError.CANCELLED``."""


class StepError(Exception):
    """A model this one called (a BLS request, e.g. the long model's call to the ONNX step) answered with an
    error: the request gets that error's message and Triton code, so a refusal of a full queue stays
    UNAVAILABLE (which clients retry) instead of becoming INTERNAL."""

    def __init__(self, message: str, code):
        super().__init__(message)
        self.code = code

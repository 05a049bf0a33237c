"""The one error kind the pipeline raises for a bad request.

Models turn it into ``TritonError.INVALID_ARG`` for that request only, so the server keeps serving.
"""


class RequestError(ValueError):
    """A request the pipeline cannot serve: the message names the input or option and why."""


class RequestCancelled(Exception):
    """The client gave up on the request (timeout, cancellation): the model stops its work on it and
    answers ``TritonError.CANCELLED``."""

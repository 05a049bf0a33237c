"""The client's errors: one base class, a subclass per thing that can go wrong, each with the server's
message; and the rule that says which failures a retry can help.

Segmentation is idempotent (the same texts and options give the same sentences), so a request may be
sent again whenever the server did not answer it: the server was unreachable, restarting or overloaded.
A request the server refused for what it holds (INVALID_ARGUMENT) is never sent again.
"""

from __future__ import annotations

import errno
import ssl

# gRPC status names and HTTP status codes, as tritonclient's InferenceServerException.status() gives them.
_INVALID = {"StatusCode.INVALID_ARGUMENT", "400"}
_UNAVAILABLE = {"StatusCode.UNAVAILABLE", "503", "502", "504"}
_OVERLOADED = {"StatusCode.RESOURCE_EXHAUSTED", "429"}
_DEADLINE = {"StatusCode.DEADLINE_EXCEEDED", "408"}
_CANCELLED = {"StatusCode.CANCELLED"}
# What Triton says when its bounded queue refuses a request (dynamic_batching default_queue_policy).
_OVERLOAD_WORDS = ("exceeds maximum queue size", "overloaded", "too many requests")
_TIMEOUT_WORDS = ("request timeout expired", "timeout expired", "deadline exceeded")
_TLS_WORDS = ("handshake failed", "certificate_verify_failed", "certificate verify failed", "wrong_version_number")
_CONNECTION_ERRNOS = {errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE, errno.ENETUNREACH,
                      errno.EHOSTUNREACH, errno.ETIMEDOUT}


class SaTError(Exception):
    """Every error of the sat-triton client. ``status``: the server's gRPC status or HTTP code (None when
    no answer came); ``attempts``: how many times the request was sent."""

    def __init__(self, message: str, status: str | None = None, attempts: int = 1):
        super().__init__(message)
        self.message = message
        self.status = status
        self.attempts = attempts


class SaTRequestError(SaTError, ValueError):
    """The server refused the request (INVALID_ARGUMENT / HTTP 400): the message names the input or option.
    Never retried."""


class SaTUnavailableError(SaTError):
    """The server could not be reached, or answered that it cannot serve now (UNAVAILABLE, HTTP 503,
    connection refused or reset), on every attempt the retry policy allowed."""


class SaTOverloadedError(SaTUnavailableError):
    """The server refused the request for load (its queue was full: HTTP 429, RESOURCE_EXHAUSTED, or
    Triton's "Exceeds maximum queue size") on every attempt the retry policy allowed."""


class SaTTimeoutError(SaTError, TimeoutError):
    """No answer within ``timeout`` seconds (the client's deadline, or the server's queue timeout)."""


class SaTServerError(SaTError):
    """Any other error the server answered with (INTERNAL, NOT_FOUND, ...): not retried."""


class SaTClosedError(SaTError, RuntimeError):
    """The client was closed; make a new one."""


def _status(exc: BaseException) -> str | None:
    status = getattr(exc, "status", None)
    if callable(status):  # tritonclient's InferenceServerException
        status = status()
    return None if status is None else str(status)


def _message(exc: BaseException) -> str:
    message = getattr(exc, "message", None)
    if callable(message):
        message = message()
    return str(message if message else exc) or type(exc).__name__


def _is_connection_error(exc: BaseException) -> bool:
    """Connection refused, reset or closed before the answer: the request may not have reached the server."""
    if isinstance(exc, ConnectionError):
        return True
    if isinstance(exc, OSError) and exc.errno in _CONNECTION_ERRNOS and not isinstance(exc, TimeoutError):
        return True
    names = {cls.__name__ for cls in type(exc).__mro__}
    # geventhttpclient's HTTPConnectionClosed; aiohttp's ClientConnectionError family (ServerDisconnectedError,
    # ClientConnectorError, ClientOSError) and its ClientPayloadError when the server went away mid-answer.
    return bool(names & {"HTTPConnectionClosed", "ClientConnectionError", "ClientPayloadError"})


def _is_timeout(exc: BaseException) -> bool:
    names = {cls.__name__ for cls in type(exc).__mro__}
    return isinstance(exc, TimeoutError) or bool(names & {"Timeout", "TimeoutError", "ServerTimeoutError"})


def _is_tls_failure(exc: BaseException, text: str) -> bool:
    names = {cls.__name__ for cls in type(exc).__mro__}
    return (isinstance(exc, ssl.SSLError) or bool(names & {"ClientSSLError", "ClientConnectorCertificateError"})
            or any(w in text for w in _TLS_WORDS))


def classify(exc: BaseException) -> str:
    """What a failed attempt was: ``invalid``, ``overloaded``, ``unavailable``, ``timeout``, ``tls``,
    ``cancelled`` or ``server`` (anything else the server said). Only ``overloaded`` and ``unavailable``
    are worth a retry: a TLS handshake that failed fails the same way again."""
    if isinstance(exc, SaTError):
        return {SaTRequestError: "invalid", SaTOverloadedError: "overloaded", SaTUnavailableError: "unavailable",
                SaTTimeoutError: "timeout"}.get(type(exc), "server")
    status = _status(exc)
    if _is_tls_failure(exc, _message(exc).lower()):
        return "tls"
    if status is None:
        if _is_timeout(exc):
            return "timeout"
        if _is_connection_error(exc):
            return "unavailable"
        return "server"
    text = _message(exc).lower()
    if status in _INVALID:
        return "invalid"
    if status in _DEADLINE:
        return "timeout"
    if status in _CANCELLED:
        return "cancelled"
    if status in _OVERLOADED or (status in _UNAVAILABLE and any(w in text for w in _OVERLOAD_WORDS)):
        return "overloaded"
    if status in _UNAVAILABLE:
        # Triton's queue timeout (a request that waited past its `timeout`) also reads UNAVAILABLE.
        return "timeout" if any(w in text for w in _TIMEOUT_WORDS) else "unavailable"
    if status == "StatusCode.UNKNOWN" and _is_connection_text(text):
        return "unavailable"
    return "server"


def _is_connection_text(text: str) -> bool:
    return any(w in text for w in ("connection reset", "connection refused", "socket closed", "broken pipe"))


RETRYABLE = frozenset({"overloaded", "unavailable"})


def translate(exc: BaseException, attempts: int = 1, kind: str | None = None) -> SaTError:
    """The client's own error for a failed request, carrying the server's message."""
    if isinstance(exc, SaTError):
        exc.attempts = attempts
        return exc
    kind = kind or classify(exc)
    status, message = _status(exc), _message(exc)
    if kind == "invalid":
        return SaTRequestError(message, status, attempts)
    tried = f" (after {attempts} attempts)" if attempts > 1 else ""
    where = f"{status}: " if status is not None else "" if message == type(exc).__name__ else f"{type(exc).__name__}: "
    if kind == "overloaded":
        return SaTOverloadedError(f"server overloaded{tried}: {where}{message}", status, attempts)
    if kind == "unavailable":
        return SaTUnavailableError(f"server unavailable{tried}: {where}{message}", status, attempts)
    if kind == "tls":
        return SaTUnavailableError(f"TLS handshake failed (check ssl, root_certificates, private_key and "
                                   f"certificate_chain): {where}{message}", status, attempts)
    if kind == "timeout":
        return SaTTimeoutError(f"no answer in time{tried}: {where}{message}", status, attempts)
    return SaTServerError(f"{where}{message}", status, attempts)

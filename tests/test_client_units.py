"""The client without a server: request grouping, backoff, error classes, settings."""

from sat_triton.client.sat import SaT, default_triton_name


class FakeSaT(SaT):
    def __init__(self, limit):
        super().__init__("m", triton_url="unused:1")
        self._max_windows = limit


def test_groups_respect_batch_size_and_window_limit():
    sat = FakeSaT(limit=4)
    texts = ["a" * 10] * 5 + ["b" * 700] + ["c" * 5000] + ["d"]
    groups = list(sat._groups(texts, batch_size=3, stride=64, block_size=512))
    sat.close()
    covered = [i for start, group, _ in groups for i in range(start, start + len(group))]
    assert covered == list(range(len(texts)))
    assert all(len(g) <= 3 for _, g, long in groups if not long)
    long_groups = [g for _, g, long in groups if long]
    assert long_groups == [["c" * 5000]]  # 5000 chars -> up to 72 windows > 4: long model


def test_default_model_name():
    assert default_triton_name("sat-3l-sm") == "sat_3l_sm"
    assert default_triton_name("segment-any-text/sat-12l-sm") == "sat_12l_sm"


def test_backoff_grows_to_its_cap_within_its_jitter():
    import random

    from sat_triton.client import RetryPolicy

    policy = RetryPolicy(max_attempts=7, initial_backoff=0.1, max_backoff=1.0, multiplier=2.0, jitter=0.5)
    rng = random.Random(1)
    for _ in range(50):
        delays = list(policy.delays(rng))
        assert len(delays) == 6  # one pause before each retry
        for delay, full in zip(delays, [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]):
            assert full * 0.5 <= delay <= full
    assert list(RetryPolicy(max_attempts=3, initial_backoff=0.1, jitter=0.0).delays()) == [0.1, 0.2]
    assert list(RetryPolicy(max_attempts=1).delays()) == []
    spread = {round(d, 6) for _ in range(20) for d in RetryPolicy(jitter=1.0, max_attempts=2).delays()}
    assert len(spread) > 10  # clients that failed together come back at different times


def test_failures_are_classified_by_what_a_retry_can_do():
    import socket
    import ssl

    from tritonclient.utils import InferenceServerException

    from sat_triton.client import (SaTOverloadedError, SaTRequestError, SaTServerError, SaTTimeoutError,
                                   SaTUnavailableError)
    from sat_triton.client.errors import RETRYABLE, classify, translate

    def triton(status, message="x"):
        return InferenceServerException(msg=message, status=status)

    cases = [
        (triton("StatusCode.INVALID_ARGUMENT", "text 3 is not UTF-8"), "invalid", SaTRequestError),
        (triton("400"), "invalid", SaTRequestError),
        (triton("StatusCode.UNAVAILABLE", "Server is stopping"), "unavailable", SaTUnavailableError),
        (triton("503", "Server is not ready"), "unavailable", SaTUnavailableError),
        (triton("StatusCode.UNAVAILABLE", "Exceeds maximum queue size"), "overloaded", SaTOverloadedError),
        (triton("429", "Too many requests"), "overloaded", SaTOverloadedError),
        (triton("StatusCode.RESOURCE_EXHAUSTED"), "overloaded", SaTOverloadedError),
        (triton("StatusCode.UNAVAILABLE", "Request timeout expired"), "timeout", SaTTimeoutError),
        (triton("StatusCode.DEADLINE_EXCEEDED", "Deadline Exceeded"), "timeout", SaTTimeoutError),
        (triton("StatusCode.INTERNAL", "Stub process is not healthy"), "server", SaTServerError),
        (triton("500"), "server", SaTServerError),
        (triton("StatusCode.NOT_FOUND", "unknown model"), "server", SaTServerError),
        (triton("StatusCode.UNAVAILABLE", "Tls handshake failed"), "tls", SaTUnavailableError),
        (ConnectionRefusedError(111, "Connection refused"), "unavailable", SaTUnavailableError),
        (ConnectionResetError(104, "Connection reset by peer"), "unavailable", SaTUnavailableError),
        (socket.timeout("timed out"), "timeout", SaTTimeoutError),
        (ssl.SSLCertVerificationError(1, "certificate verify failed"), "tls", SaTUnavailableError),
    ]
    for exc, kind, error in cases:
        assert classify(exc) == kind, exc
        translated = translate(exc, attempts=3)
        assert type(translated) is error and translated.attempts == 3, exc
        said = exc.message() if isinstance(exc, InferenceServerException) else exc.args[-1]
        assert said in str(translated), (said, str(translated))  # the server's (or socket's) own words
    assert RETRYABLE == {"overloaded", "unavailable"}


def test_connection_settings_are_checked_up_front():
    import pytest

    from sat_triton import SaT

    with pytest.raises(ValueError, match="protocol"):
        SaT(protocol="websocket")
    with pytest.raises(ValueError, match="without a scheme"):
        SaT(triton_url="https://localhost:8000", protocol="http")
    with pytest.raises(ValueError, match="both private_key and certificate_chain"):
        SaT(ssl=True, private_key="client.key")
    with pytest.raises(ValueError, match="ssl=True"):
        SaT(root_certificates="ca.pem")
    with pytest.raises(ValueError, match="timeout"):
        SaT(timeout=0)

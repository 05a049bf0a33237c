"""The client under the conditions production brings: connections kept and released, deadlines, retries
across a real server restart, refusals, TLS, and the asyncio client's parity with the blocking one.

Against real peers: the session's tritonserver, tritonservers started here (a restart, gRPC with mutual
TLS), and small local sockets where Triton cannot be made to misbehave on cue (one that never answers,
one that answers 429/503)."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from certificates import make_certificates
from corpus import EDGE_CASES, long_text, multilingual_texts
from peers import RefusingHTTPPeer, SilentPeer, TLSProxy, connections_to

from sat_triton import AsyncSaT, RetryPolicy, SaT
from sat_triton.client import (SaTClosedError, SaTError, SaTOverloadedError, SaTRequestError, SaTTimeoutError,
                               SaTUnavailableError)

pytestmark = pytest.mark.integration

QUICK = RetryPolicy(max_attempts=4, initial_backoff=0.05, max_backoff=0.2, jitter=0.0)


def url_of(server, protocol: str) -> str:
    return server.grpc_url if protocol == "grpc" else server.http_url


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def within(seconds: float, call):
    """``call()``'s result or exception; fails the test, instead of hanging it, if it has not returned
    after ``seconds`` (the thing under test here is that calls do return)."""
    box: dict = {}

    def run() -> None:
        try:
            box["result"] = call()
        except BaseException as exc:  # noqa: B902 - handed to the caller
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"no return after {seconds} s"
    if "error" in box:
        raise box["error"]
    return box["result"]


def workers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("sat-triton")]


# -- connections -----------------------------------------------------------------------------------
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_one_set_of_connections_serves_every_call_and_close_releases_it(server, protocol):
    url = url_of(server, protocol)
    texts = multilingual_texts(12, seed=31)
    before = connections_to(port_of(url))
    sat = SaT("tiny-sat-sm", triton_url=url, triton_model_name="tiny", protocol=protocol, concurrency=4)
    expected = list(sat.split(texts, batch_size=1))  # 12 requests over the 4 workers
    first = connections_to(port_of(url)) - before
    assert first, "no connection to the server seen"
    assert len(first) <= (1 if protocol == "grpc" else 4)  # one channel; one connection per worker
    threads = {t.ident for t in workers()}
    assert 1 <= len(threads) <= 4
    for _ in range(15):
        assert list(sat.split(texts, batch_size=1)) == expected
        assert sat.split(texts[0]) == expected[0]
    # the very same sockets and worker threads served all 31 calls
    assert connections_to(port_of(url)) - before == first
    assert {t.ident for t in workers()} == threads
    sat.close()
    deadline = time.monotonic() + 5
    while connections_to(port_of(url)) & first and time.monotonic() < deadline:
        time.sleep(0.05)  # gRPC closes its socket on its own thread
    assert not connections_to(port_of(url)) & first, "close() left connections open"
    assert not workers(), "close() left worker threads running"
    with pytest.raises(SaTClosedError):
        sat.split("One more.")


def test_context_manager_closes(server):
    with SaT("tiny-sat-sm", triton_url=server.http_url, triton_model_name="tiny", protocol="http") as sat:
        assert sat.split("Hello there. How are you?")
        opened = connections_to(port_of(server.http_url))
    assert opened and not connections_to(port_of(server.http_url)) & opened


# -- deadlines -------------------------------------------------------------------------------------
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_timeout_fires_when_the_server_does_not_answer(protocol):
    with SilentPeer() as peer, SaT("m", triton_url=peer.url, triton_model_name="tiny", protocol=protocol,
                                   timeout=0.5, retry=QUICK) as sat:
        start = time.monotonic()
        with pytest.raises(SaTTimeoutError) as caught:
            within(10, lambda: sat.split("Hello."))
        elapsed = time.monotonic() - start
    assert caught.value.attempts == 1  # the deadline is spent: no retry
    assert isinstance(caught.value, TimeoutError)
    assert 0.4 < elapsed < 5, elapsed


def test_http_timeout_fires_on_a_real_slow_request(server):
    text = long_text(6000, seed=32)  # about 1-2 s of server work on a shared 2-core machine
    with SaT("tiny-sat-sm", triton_url=server.http_url, triton_model_name="tiny", protocol="http",
             timeout=0.2) as sat:
        sat.max_windows()  # the config is fetched before the clock starts
        start = time.monotonic()
        with pytest.raises(SaTTimeoutError):
            within(30, lambda: sat.split(text))
        assert time.monotonic() - start < 3


# -- retries ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_retries_are_bounded_in_count_and_time(protocol):
    from sat_triton.builder.server import free_port

    nobody = f"127.0.0.1:{free_port()}"  # connection refused
    with SaT("m", triton_url=nobody, triton_model_name="tiny", protocol=protocol, retry=QUICK) as sat:
        start = time.monotonic()
        with pytest.raises(SaTUnavailableError) as caught:
            sat.split("Hello.")
        elapsed = time.monotonic() - start
    assert caught.value.attempts == 4
    assert 0.05 + 0.1 + 0.2 <= elapsed < 5, elapsed  # the three pauses, jitter off
    budget = RetryPolicy(max_attempts=1000, initial_backoff=0.1, max_backoff=0.1, jitter=0.0, max_elapsed=1.0)
    with SaT("m", triton_url=nobody, triton_model_name="tiny", protocol=protocol, retry=budget) as sat:
        start = time.monotonic()
        with pytest.raises(SaTUnavailableError) as caught:
            sat.split("Hello.")
    assert time.monotonic() - start < 3 and caught.value.attempts < 20
    with SaT("m", triton_url=nobody, triton_model_name="tiny", protocol=protocol, retry=None) as sat:
        with pytest.raises(SaTUnavailableError) as caught:
            sat.split("Hello.")
    assert caught.value.attempts == 1


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_invalid_argument_is_never_retried(server, protocol):
    with SaT("tiny-sat-sm", triton_url=url_of(server, protocol), triton_model_name="tiny", protocol=protocol,
             retry=QUICK) as sat:
        with pytest.raises(SaTRequestError) as caught:
            sat.split("Hello.", weighting="triangle")
    assert caught.value.attempts == 1
    assert "weighting" in str(caught.value) and isinstance(caught.value, ValueError)


@pytest.mark.parametrize("status, message, error", [
    (429, "Exceeds maximum queue size", SaTOverloadedError),
    (503, "Exceeds maximum queue size", SaTOverloadedError),
    (503, "Server is not ready", SaTUnavailableError),
])
def test_refusals_are_retried_then_named(status, message, error):
    with RefusingHTTPPeer(status, message) as peer, \
            SaT("m", triton_url=peer.url, triton_model_name="tiny", protocol="http", retry=QUICK) as sat:
        with pytest.raises(error) as caught:
            sat.split("Hello.")
    assert peer.infer_requests == caught.value.attempts == 4
    assert message in str(caught.value) and caught.value.status == str(status)


def test_requests_survive_a_server_restart(repository):
    """Clients keep sending through a stop and a start of tritonserver on the same ports: every request
    ends with the right sentences or an error, and requests sent while it was down recover."""
    from sat_triton.builder.server import TritonServer, free_port

    ports = {"http_port": free_port(), "grpc_port": free_port(), "metrics_port": free_port()}

    def start() -> TritonServer:
        server = TritonServer(repository, **ports, model_control_mode="explicit",
                              extra_args=["--load-model=tiny", "--exit-timeout-secs=3"])
        server.start()
        try:
            server.wait_ready(["tiny"], timeout=180)
        except Exception:
            server.stop()
            raise
        return server

    texts = multilingual_texts(6, seed=33)
    patient = RetryPolicy(max_attempts=100, initial_backoff=0.05, max_backoff=0.5, max_elapsed=120)
    server = start()
    clients = {p: SaT("tiny-sat-sm", triton_url=url_of(server, p), triton_model_name="tiny", protocol=p,
                      retry=patient, timeout=60) for p in ("grpc", "http")}
    outcomes: list[tuple[str, float, float, object]] = []
    stop = threading.Event()
    threads: list[threading.Thread] = []
    try:
        expected = list(clients["grpc"].split(texts))
        assert list(clients["http"].split(texts)) == expected

        def send(protocol: str) -> None:
            while not stop.is_set():
                began = time.monotonic()
                try:
                    answer: object = list(clients[protocol].split(texts))
                except SaTError as exc:
                    answer = exc
                outcomes.append((protocol, began, time.monotonic(), answer))

        def successes(after: float) -> dict[str, int]:
            counts = {"grpc": 0, "http": 0}
            for protocol, began, _, answer in list(outcomes):
                counts[protocol] += began >= after and answer == expected
            return counts

        threads += [threading.Thread(target=send, args=(p,)) for p in clients]
        for thread in threads:
            thread.start()
        wait_for(lambda: min(successes(0).values()) >= 2, 60, "no traffic before the restart")
        server.stop()
        down = time.monotonic()
        time.sleep(0.5)  # requests pile up against the closed ports (retrying) before the new server starts
        server = start()
        up = time.monotonic()
        wait_for(lambda: min(successes(up).values()) >= 2, 120, "no traffic after the restart")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=150)
        for client in clients.values():
            client.close()
        server.stop()
    wrong = [o for o in outcomes if not isinstance(o[3], SaTError) and o[3] != expected]
    assert not wrong, f"{len(wrong)} requests got other sentences"
    failed = [o for o in outcomes if isinstance(o[3], SaTError)]
    assert not failed, f"{len(failed)} of {len(outcomes)} requests failed: {failed[0][3]!r}"
    for protocol in clients:  # in flight while no server existed (its answer came from the new one)
        recovered = [o for o in outcomes if o[0] == protocol and o[1] < up and o[2] > down and o[3] == expected]
        assert recovered, f"{protocol}: no request in flight while the server was down came back"


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


# -- TLS -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_server(repository, certificates):
    """tritonserver with gRPC over mutual TLS (its own --grpc-use-ssl flags) and a verbose log, which
    shows what the server saw of a cancelled request."""
    from sat_triton.builder.server import TritonServer, free_port

    tls = TritonServer(repository, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                       model_control_mode="explicit", log_verbose=1,
                       extra_args=["--load-model=tiny", "--load-model=tiny_long", "--exit-timeout-secs=3",
                                   "--grpc-use-ssl=true", "--grpc-use-ssl-mutual=true",
                                   f"--grpc-server-cert={certificates.server_cert}",
                                   f"--grpc-server-key={certificates.server_key}", f"--grpc-root-cert={certificates.ca}"])
    tls.start()
    try:
        tls.wait_ready(["tiny", "tiny_long"], timeout=180)
        yield tls
    finally:
        tls.stop()


@pytest.fixture(scope="module")
def mutual_tls(certificates):
    return {"ssl": True, "root_certificates": str(certificates.ca), "private_key": str(certificates.client_key),
            "certificate_chain": str(certificates.client_cert)}


def test_grpc_with_mutual_tls(tls_server, mutual_tls, certificates):
    texts = multilingual_texts(5, seed=34)
    with SaT("tiny-sat-sm", triton_url=tls_server.http_url, triton_model_name="tiny", protocol="http") as plain:
        expected = list(plain.split(texts))
    with SaT("tiny-sat-sm", triton_url=tls_server.grpc_url, triton_model_name="tiny", **mutual_tls) as sat:
        assert list(sat.split(texts)) == expected

    async def asynchronous():
        async with AsyncSaT("tiny-sat-sm", triton_url=tls_server.grpc_url, triton_model_name="tiny",
                            **mutual_tls) as sat:
            return await sat.split(texts)

    assert asyncio.run(asynchronous()) == expected
    refused = [{},  # plaintext to a TLS port
               {"ssl": True, "root_certificates": str(certificates.ca)},  # no client certificate
               dict(mutual_tls, root_certificates=str(certificates.other_ca))]  # server not trusted
    for settings in refused:
        with SaT("tiny-sat-sm", triton_url=tls_server.grpc_url, triton_model_name="tiny", retry=None, timeout=10,
                 **settings) as sat:
            with pytest.raises(SaTUnavailableError):
                sat.split(texts[0])


def test_https(server, certificates):
    texts = multilingual_texts(5, seed=35)
    with SaT("tiny-sat-sm", triton_url=server.http_url, triton_model_name="tiny", protocol="http") as plain:
        expected = list(plain.split(texts))
    with TLSProxy(server.http_url, certificates.server_cert, certificates.server_key) as proxy:
        with SaT("tiny-sat-sm", triton_url=proxy.url, triton_model_name="tiny", protocol="http", ssl=True,
                 root_certificates=str(certificates.ca)) as sat:
            assert list(sat.split(texts)) == expected

        async def asynchronous():
            async with AsyncSaT("tiny-sat-sm", triton_url=proxy.url, triton_model_name="tiny", protocol="http",
                                ssl=True, root_certificates=str(certificates.ca)) as sat:
                return await sat.split(texts)

        assert asyncio.run(asynchronous()) == expected
        assert proxy.handshakes >= 2
        with SaT("tiny-sat-sm", triton_url=proxy.url, triton_model_name="tiny", protocol="http", ssl=True,
                 root_certificates=str(certificates.other_ca), retry=QUICK) as sat:
            with pytest.raises(SaTUnavailableError, match="TLS") as caught:
                sat.split(texts[0])
        assert caught.value.attempts == 1  # a handshake that failed is not retried


# -- asyncio ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_asyncio_client_answers_as_the_blocking_one(server, protocol):
    url = url_of(server, protocol)
    texts = multilingual_texts(20, seed=36) + EDGE_CASES + [long_text(3000, seed=37)]
    para = ["First one. Second one.\n\nNew paragraph here. And more.", "Single line"]
    with SaT("tiny-sat-sm", triton_url=url, triton_model_name="tiny", protocol=protocol) as sat:
        expected = list(sat.split(texts, batch_size=4))
        expected_one = sat.split(texts[0], strip_whitespace=True)
        expected_para = list(sat.split(para, do_paragraph_segmentation=True))
        expected_probs = list(sat.predict_proba(texts[:5]))

    async def run():
        async with AsyncSaT("tiny-sat-sm", triton_url=url, triton_model_name="tiny", protocol=protocol) as sat:
            many, one, nested, probs = await asyncio.gather(
                sat.split(texts, batch_size=4), sat.split(texts[0], strip_whitespace=True),
                sat.split(para, do_paragraph_segmentation=True), sat.predict_proba(texts[:5]))
            with pytest.raises(SaTRequestError):
                await sat.split("Hello.", weighting="triangle")
            return many, one, nested, probs

    many, one, nested, probs = asyncio.run(run())
    assert many == expected and one == expected_one and nested == expected_para
    for got, want in zip(probs, expected_probs):
        np.testing.assert_array_equal(got, want)


def test_asyncio_timeout_and_closed():
    async def run():
        with SilentPeer() as peer:
            async with AsyncSaT("m", triton_url=peer.url, triton_model_name="tiny", timeout=0.5, retry=QUICK) as sat:
                with pytest.raises(SaTTimeoutError):
                    await asyncio.wait_for(sat.split("Hello."), 10)
        with pytest.raises(SaTClosedError):
            await sat.split("Hello.")

    asyncio.run(run())


def test_cancelling_the_task_cancels_the_request(tls_server, mutual_tls):
    text = long_text(6000, seed=38)  # seconds of server work
    told = "Cancellation notification received for ModelInferHandler"
    before = tls_server.log_text().count(told)

    async def run():
        async with AsyncSaT("tiny-sat-sm", triton_url=tls_server.grpc_url, triton_model_name="tiny",
                            **mutual_tls) as sat:
            await sat.max_windows()
            task = asyncio.ensure_future(sat.split(text))
            await asyncio.sleep(0.3)
            assert not task.done()
            cancelled = time.monotonic()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            waited = time.monotonic() - cancelled
            return waited, await sat.split("Still here. After that.")  # the client goes on working

    waited, after = asyncio.run(run())
    assert waited < 1.0 and after
    wait_for(lambda: tls_server.log_text().count(told) > before, 10, "tritonserver was not told of the cancellation")

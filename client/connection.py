"""How the client reaches Triton: the URL, protocol, TLS, headers and timeout, turned into tritonclient
clients (gRPC, HTTP, and their asyncio variants) and into the request and response tensors of the
sat-triton ensemble. Nothing here knows about sentences.
"""

from __future__ import annotations

import ssl as _ssl
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from . import wire

PROTOCOLS = ("grpc", "http")
# A gRPC channel whose server went away backs off its reconnects up to 120 s by default, so a client
# would keep failing long after a restarted server is back; cap it so retries find the server again.
MAX_RECONNECT_BACKOFF_MS = 2000
SPLIT_OUTPUTS = (wire.SENTENCES, wire.SENTENCE_COUNTS, wire.SENTENCE_PARAGRAPH, wire.PARAGRAPH_COUNTS)


@dataclass(frozen=True)
class Connection:
    """Where and how to reach the server.

    ``timeout``: seconds one request may take, enforced by the client (gRPC deadline, HTTP socket timeout,
    asyncio deadline) and sent to Triton as the request's ``timeout`` (microseconds), which a bounded
    queue built with ``allow_timeout_override`` uses to drop a request nobody waits for.
    TLS: ``ssl=True`` with ``root_certificates`` (PEM file of the CA; default: the system's), and for mutual
    TLS ``private_key`` plus ``certificate_chain`` (PEM files of the client's key and certificate); the same
    arguments serve gRPC (``grpc.ssl_channel_credentials``) and HTTPS. ``headers`` go with every request.
    """

    url: str
    protocol: str = "grpc"
    timeout: float | None = None
    ssl: bool = False
    root_certificates: str | None = None
    private_key: str | None = None
    certificate_chain: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be 'grpc' or 'http', got {self.protocol!r}")
        if self.timeout is not None and not self.timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds or None, got {self.timeout!r}")
        if (self.private_key is None) != (self.certificate_chain is None):
            raise ValueError("pass both private_key and certificate_chain (mutual TLS), or neither")
        if not self.ssl and (self.root_certificates or self.private_key):
            raise ValueError("root_certificates, private_key and certificate_chain need ssl=True")
        if self.url.startswith(("http://", "https://", "grpc://")):
            raise ValueError(f"triton_url is host:port without a scheme (ssl=True for TLS), got {self.url!r}")

    # -- clients -----------------------------------------------------------------------------------
    def _grpc_kwargs(self) -> dict[str, Any]:
        from tritonclient.grpc import MAX_GRPC_MESSAGE_SIZE, KeepAliveOptions

        keepalive = KeepAliveOptions()  # tritonclient's defaults, restated because channel_args replaces them
        channel_args = [
            ("grpc.max_send_message_length", MAX_GRPC_MESSAGE_SIZE),
            ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_SIZE),
            ("grpc.keepalive_time_ms", keepalive.keepalive_time_ms),
            ("grpc.keepalive_timeout_ms", keepalive.keepalive_timeout_ms),
            ("grpc.keepalive_permit_without_calls", keepalive.keepalive_permit_without_calls),
            ("grpc.http2.max_pings_without_data", keepalive.http2_max_pings_without_data),
            ("grpc.max_reconnect_backoff_ms", MAX_RECONNECT_BACKOFF_MS),
            ("grpc.initial_reconnect_backoff_ms", min(1000, MAX_RECONNECT_BACKOFF_MS)),
        ]
        return {"url": self.url, "ssl": self.ssl, "root_certificates": self.root_certificates,
                "private_key": self.private_key, "certificate_chain": self.certificate_chain,
                "channel_args": channel_args}

    def _ssl_context(self, module: Any = _ssl) -> _ssl.SSLContext:
        context = module.create_default_context(cafile=self.root_certificates)
        if self.private_key is not None:
            context.load_cert_chain(self.certificate_chain, self.private_key)
        return context

    def sync_client(self) -> Any:
        """A blocking tritonclient client. gRPC's is thread-safe and one serves every thread; HTTP's
        (geventhttpclient) is not: make one per thread."""
        if self.protocol == "grpc":
            import tritonclient.grpc as grpcclient

            return grpcclient.InferenceServerClient(**self._grpc_kwargs())
        import tritonclient.http as httpclient

        kwargs: dict[str, Any] = {"network_timeout": self.timeout, "connection_timeout": min(self.timeout or 60.0, 60.0)}
        if self.ssl:
            import gevent.ssl

            kwargs.update(ssl=True, ssl_context_factory=lambda: self._ssl_context(gevent.ssl))
        return httpclient.InferenceServerClient(self.url, **kwargs)

    def async_client(self, connections: int) -> Any:
        """An asyncio tritonclient client; make it inside the running event loop."""
        if self.protocol == "grpc":
            import tritonclient.grpc.aio as grpcaio

            return grpcaio.InferenceServerClient(**self._grpc_kwargs())
        import tritonclient.http.aio as httpaio

        # aiohttp's total timeout per request: None is no limit (tritonclient's default is 60 s).
        return httpaio.InferenceServerClient(self.url, conn_limit=connections, conn_timeout=self.timeout,
                                             ssl=self.ssl, ssl_context=self._ssl_context() if self.ssl else None)

    # -- requests ----------------------------------------------------------------------------------
    def module(self) -> Any:
        if self.protocol == "grpc":
            import tritonclient.grpc as module
        else:
            import tritonclient.http as module
        return module

    def infer_args(self, texts: Sequence[str], parameters: dict[str, Any], names: Sequence[str]) -> dict[str, Any]:
        """Keyword arguments of ``client.infer`` (sync and asyncio alike) for ``texts``."""
        module = self.module()
        text_input = module.InferInput(wire.TEXT, [len(texts)], "BYTES")
        text_input.set_data_from_numpy(np.array([t.encode("utf-8") for t in texts], dtype=np.object_))
        kwargs: dict[str, Any] = {"inputs": [text_input],
                                  "outputs": [module.InferRequestedOutput(name) for name in names]}
        if parameters:
            kwargs["parameters"] = parameters
        if self.headers:
            kwargs["headers"] = dict(self.headers)
        if self.timeout is not None:
            kwargs["timeout"] = max(1, int(self.timeout * 1_000_000))  # Triton's per-request timeout, in us
            if self.protocol == "grpc":
                kwargs["client_timeout"] = self.timeout
        return kwargs

    def config_args(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"headers": dict(self.headers)} if self.headers else {}
        if self.protocol == "grpc" and self.timeout is not None:
            kwargs["client_timeout"] = self.timeout
        return kwargs

    def max_batch_size(self, config: Any) -> int:
        """The ``max_batch_size`` of a ``get_model_config`` answer (a protobuf over gRPC, a dict over HTTP)."""
        if self.protocol == "grpc":
            return int(config.config.max_batch_size)
        return int(config["max_batch_size"])


def decode_split(result: Any) -> tuple[list[str], list[int], list[int], list[int]]:
    """Sentences, sentence counts per text, the paragraph of each sentence, and paragraph counts per text."""
    sentences = [s.decode("utf-8") for s in result.as_numpy(wire.SENTENCES).tolist()]
    counts = result.as_numpy(wire.SENTENCE_COUNTS).tolist()
    paragraphs = result.as_numpy(wire.SENTENCE_PARAGRAPH).tolist()
    paragraph_counts = result.as_numpy(wire.PARAGRAPH_COUNTS).tolist()
    return sentences, counts, paragraphs, paragraph_counts


def decode_probs(result: Any) -> np.ndarray:
    return result.as_numpy(wire.CHAR_PROBS)

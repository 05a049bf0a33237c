"""What ``SaT`` and ``AsyncSaT`` share: the model's Triton names, how to reach the server, how many
requests to keep in flight and how to retry them."""

from __future__ import annotations

from .batching import default_triton_name
from .connection import Connection
from .retry import RetryPolicy

DEFAULT_RETRY = RetryPolicy()


class ClientSettings:
    """Sentence segmentation by a sat-triton server, with wtpsplit's ``split`` and ``predict_proba``.

    ``SaT("sat-3l-sm", triton_url="localhost:8001", triton_model_name="sat_3l_sm")``; the default
    threshold is the server's (fixed at build time from the model name, as wtpsplit's rule).

    - ``protocol``: ``"grpc"`` (port 8001) or ``"http"`` (port 8000).
    - ``concurrency``: requests in flight at once (the worker pool's size, and HTTP connections).
    - ``timeout``: seconds one request may take (client deadline, also sent as Triton's per-request
      ``timeout``); ``None``: no limit. Past it: ``SaTTimeoutError``.
    - ``retry``: a :class:`RetryPolicy` for requests the server could not take (unreachable, restarting,
      overloaded); ``None`` turns retries off. Refused requests (``SaTRequestError``) are never retried.
    - ``ssl``, ``root_certificates``, ``private_key``, ``certificate_chain``: TLS for gRPC and HTTPS (PEM files).
    - ``headers``: extra headers (gRPC metadata) sent with every request.
    - ``language``: as wtpsplit's ``SaT(language=...)``, the default ``lang_code`` of the length priors.
    """

    def __init__(self, model: str = "sat-3l-sm", triton_url: str = "localhost:8001",
                 triton_model_name: str | None = None, protocol: str = "grpc", concurrency: int = 4,
                 timeout: float | None = None, language: str | None = None, *,
                 retry: RetryPolicy | None = DEFAULT_RETRY, ssl: bool = False, root_certificates: str | None = None,
                 private_key: str | None = None, certificate_chain: str | None = None,
                 headers: dict[str, str] | None = None):
        self.model = model
        self.language = language
        self.triton_model_name = triton_model_name or default_triton_name(model)
        self.long_model_name = f"{self.triton_model_name}_long"
        self.concurrency = max(1, int(concurrency))
        self.retry = retry
        self.connection = Connection(triton_url, protocol, timeout, ssl, root_certificates, private_key,
                                     certificate_chain, dict(headers or {}))
        self._closed = False
        self._max_windows: int | None = None
        self._start()

    def _start(self) -> None:
        """The subclass's own state (its pool, its clients)."""

    @property
    def triton_url(self) -> str:
        return self.connection.url

    @property
    def protocol(self) -> str:
        return self.connection.protocol

    @property
    def timeout(self) -> float | None:
        return self.connection.timeout

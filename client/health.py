"""Waiting for a server and a model to be ready, with a timeout and a clear error."""

from __future__ import annotations

import time
from typing import Any


def _module(protocol: str) -> Any:
    if protocol == "grpc":
        import tritonclient.grpc as module
    elif protocol == "http":
        import tritonclient.http as module
    else:
        raise ValueError(f"protocol must be 'grpc' or 'http', got {protocol!r}")
    return module


def wait_until_ready(url: str, model: str | None = None, timeout: float = 60.0, protocol: str = "grpc",
                     interval: float = 0.5) -> None:
    """Block until the server at ``url`` is ready (and ``model``, if given); TimeoutError otherwise."""
    module = _module(protocol)
    deadline = time.monotonic() + timeout
    last = "no answer"
    client = module.InferenceServerClient(url=url)
    try:
        while True:
            try:
                if not client.is_server_ready():
                    last = "server not ready"
                elif model is not None and not client.is_model_ready(model):
                    last = f"model '{model}' not ready"
                else:
                    return
            except Exception as exc:  # connection refused while it starts
                last = f"{type(exc).__name__}: {exc}"
            if time.monotonic() >= deadline:
                raise TimeoutError(f"Triton at {url} ({protocol}) not ready after {timeout:.0f}s: {last}")
            time.sleep(interval)
    finally:
        client.close()

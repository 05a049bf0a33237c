"""``SaT`` over Triton: wtpsplit's ``split`` signature, segmentation done by the server.

Texts are grouped into requests of at most ``batch_size`` texts whose windows fit the ONNX step
(read from the server's config); texts too long for one ensemble request go to the ``<name>_long``
model, which feeds the ONNX model in slices. Requests run concurrently on the instance's own worker
pool and come back in input order.

One ``SaT`` keeps its connections for its lifetime: one gRPC channel shared by its workers (gRPC's
client is thread-safe), or one HTTP connection per worker (tritonclient's HTTP client is not).
``close()`` (or leaving a ``with`` block) closes all of them and stops the workers.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Iterable, Iterator, TypeVar

from . import wire
from .base import ClientSettings
from .batching import Group, default_triton_name, groups, per_text, per_text_probs, proba_parameters, split_parameters
from .connection import SPLIT_OUTPUTS, decode_probs, decode_split
from .errors import SaTClosedError, SaTError, SaTRequestError
from .retry import RetryPolicy, call_with_retry

T = TypeVar("T")


def _needs_long_model(message: str) -> bool:
    """The ensemble refused the texts as too long for one request: the ``<name>_long`` model takes them."""
    return wire.TOO_MANY_CHUNKS in message or wire.TOO_LONG_FOR_ENSEMBLE in message


class SaT(ClientSettings):
    __doc__ = ClientSettings.__doc__

    def _start(self) -> None:
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._shared: Any = None  # the gRPC client
        self._local = threading.local()  # each worker's HTTP client
        self._clients: list[Any] = []  # every client made, to close them all

    # -- lifetime ----------------------------------------------------------------------------------
    def __enter__(self) -> "SaT":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self, wait: float = 10.0) -> None:
        """Close every connection and stop the workers: requests not yet sent are cancelled, requests in
        flight fail; waits up to ``wait`` seconds for the workers to end."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
            clients, self._clients, self._shared = self._clients, [], None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        for client in clients:
            client.close()
        if pool is not None:
            deadline = time.monotonic() + wait
            for thread in list(getattr(pool, "_threads", ())):  # the executor's own record of its workers
                thread.join(max(0.0, deadline - time.monotonic()))

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._closed:
                raise SaTClosedError("this SaT was closed; make a new one")
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="sat-triton")
            return self._pool

    def _client(self) -> Any:
        if self.connection.protocol == "grpc":
            with self._lock:
                if self._closed:
                    raise SaTClosedError("this SaT was closed; make a new one")
                if self._shared is None:
                    self._shared = self.connection.sync_client()
                    self._clients.append(self._shared)
                return self._shared
        client = getattr(self._local, "client", None)
        if client is None:
            client = self.connection.sync_client()
            with self._lock:
                if self._closed:
                    client.close()
                    raise SaTClosedError("this SaT was closed; make a new one")
                self._clients.append(client)
            self._local.client = client
        return client

    def _on_worker(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` on a worker (an HTTP client belongs to the thread that made it)."""
        return self._executor().submit(fn, *args).result()

    # -- requests ----------------------------------------------------------------------------------
    def max_windows(self) -> int:
        """The ONNX step's max_batch_size: most windows one ensemble request may carry."""
        if self._max_windows is None:
            name = f"{self.triton_model_name}_onnx"

            def fetch() -> int:
                config = call_with_retry(lambda: self._client().get_model_config(name, **self.connection.config_args()),
                                         self.retry)
                return self.connection.max_batch_size(config)

            self._max_windows = self._on_worker(fetch)
        return self._max_windows

    def _infer(self, model_name: str, texts: list[str], parameters: dict, probs: bool = False) -> Any:
        """One request, retried as the policy says; on a worker thread."""
        args = self.connection.infer_args(texts, parameters, (wire.CHAR_PROBS,) if probs else SPLIT_OUTPUTS)
        result = call_with_retry(lambda: self._client().infer(model_name, **args), self.retry)
        return decode_probs(result) if probs else decode_split(result)

    def _segment_group(self, texts: list[str], parameters: dict, long: bool, probs: bool = False) -> Any:
        if not long:
            try:
                return self._infer(self.triton_model_name, texts, parameters, probs)
            except SaTRequestError as exc:
                if not _needs_long_model(str(exc)):
                    raise
        return self._infer(self.long_model_name, texts, parameters, probs)

    def _groups(self, texts: list[str], batch_size: int, stride: Any, block_size: Any) -> Iterator[Group]:
        return groups(texts, self.max_windows(), batch_size, stride, block_size)

    def _answers(self, work: Iterable[Group], parameters: dict, probs: bool) -> Iterator[tuple[Group, Any]]:
        """Each group with its answer, in order, at most ``2 * concurrency`` requests ahead of the reader.
        Requests not yet started are cancelled when the reader stops early."""
        pool = self._executor()
        ahead = 2 * self.concurrency
        pending: deque[tuple[Group, Future]] = deque()
        try:
            for group in work:
                pending.append((group, pool.submit(self._segment_group, group[1], parameters, group[2], probs)))
                if len(pending) >= ahead:
                    done, future = pending.popleft()
                    yield done, future.result()
            while pending:
                done, future = pending.popleft()
                yield done, future.result()
        finally:
            for _, future in pending:
                future.cancel()

    def _split_many(self, texts: list[str], parameters: dict, batch_size: int, stride: Any, block_size: Any,
                    nested: bool, verbose: bool) -> Iterator[list]:
        progress = _progress(len(texts)) if verbose else None
        try:
            for (_, group, _), answer in self._answers(self._groups(texts, batch_size, stride, block_size),
                                                       parameters, probs=False):
                yield from per_text(answer, nested)
                if progress is not None:
                    progress.update(len(group))
        finally:
            if progress is not None:
                progress.close()

    # -- wtpsplit's API ----------------------------------------------------------------------------
    def split(self, text_or_texts: str | Iterable[str], threshold: float | None = None, stride: int = 64,
              block_size: int = 512, batch_size: int = 32, pad_last_batch: bool = False,
              weighting: str = "uniform", remove_whitespace_before_inference: bool = False,
              outer_batch_size: int = 1000, paragraph_threshold: float = 0.5, strip_whitespace: bool = False,
              do_paragraph_segmentation: bool = False, split_on_input_newlines: bool = True,
              treat_newline_as_space: bool | None = None, verbose: bool = False, min_length: int = 1,
              max_length: int | None = None, prior_type: str = "uniform", prior_kwargs: dict | None = None,
              algorithm: str = "viterbi") -> Any:
        """Sentences of a text (a list), or of each text of a list (a generator of lists), as wtpsplit;
        with ``do_paragraph_segmentation``, paragraphs of sentences (lists of lists)."""
        parameters = split_parameters(
            self.language, treat_newline_as_space, threshold=threshold, stride=stride, block_size=block_size, weighting=weighting,
            remove_whitespace_before_inference=remove_whitespace_before_inference,
            paragraph_threshold=paragraph_threshold, strip_whitespace=strip_whitespace,
            do_paragraph_segmentation=do_paragraph_segmentation, split_on_input_newlines=split_on_input_newlines,
            min_length=min_length, max_length=max_length, prior_type=prior_type, prior_kwargs=prior_kwargs,
            algorithm=algorithm)
        if isinstance(text_or_texts, str):
            return next(self._split_many([text_or_texts], parameters, batch_size, stride, block_size,
                                         do_paragraph_segmentation, verbose))
        return self._split_many(list(text_or_texts), parameters, batch_size, stride, block_size,
                                do_paragraph_segmentation, verbose)

    def predict_proba(self, text_or_texts: str | Iterable[str], stride: int = 256, block_size: int = 512,
                      batch_size: int = 32, pad_last_batch: bool = False, weighting: str = "uniform",
                      remove_whitespace_before_inference: bool = False, outer_batch_size: int = 1000,
                      return_paragraph_probabilities: bool = False, verbose: bool = False) -> Any:
        """Per-character boundary probabilities (float32), as wtpsplit's ``SaT.predict_proba``: an array for
        a string, a generator of arrays for a list; ``(sentence_probs, newline_probs)`` pairs when
        ``return_paragraph_probabilities`` (SaT uses one probability for both)."""
        parameters = proba_parameters(stride=stride, block_size=block_size, weighting=weighting,
                                      remove_whitespace_before_inference=remove_whitespace_before_inference)

        def generate(texts: list[str]) -> Iterator[Any]:
            for (_, group, _), flat in self._answers(self._groups(texts, batch_size, stride, block_size),
                                                     parameters, probs=True):
                yield from per_text_probs(group, flat, remove_whitespace_before_inference,
                                          return_paragraph_probabilities)

        if isinstance(text_or_texts, str):
            return next(generate([text_or_texts]))
        return generate(list(text_or_texts))


def _progress(total: int) -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is not a dependency of the bare client: no progress bar then
        return None
    return tqdm(total=total, desc="sat-triton", unit="text")


__all__ = ["SaT", "SaTError", "SaTRequestError", "RetryPolicy", "default_triton_name"]

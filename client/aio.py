"""``AsyncSaT``: the client for asyncio applications, over ``tritonclient.grpc.aio`` / ``tritonclient.http.aio``.

Same arguments, options and answers as :class:`SaT`; ``split`` and ``predict_proba`` are coroutines that
return a list for a list of texts (instead of a generator). One client, so one gRPC channel or one
aiohttp connection pool of ``concurrency`` connections, serves the instance for its lifetime. Cancelling
the task that awaits a call cancels its requests in flight (over gRPC, Triton sees the cancellation).
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Iterable, TypeVar

from . import wire
from .base import ClientSettings
from .batching import groups, per_text, per_text_probs, proba_parameters, split_parameters
from .connection import SPLIT_OUTPUTS, decode_probs, decode_split
from .errors import SaTClosedError, SaTRequestError
from .retry import acall_with_retry
from .sat import _needs_long_model

T = TypeVar("T")


class AsyncSaT(ClientSettings):
    """Sentence segmentation by a sat-triton server, for asyncio; the arguments are :class:`SaT`'s.

    ::

        async with AsyncSaT("sat-3l-sm", triton_url="localhost:8001", triton_model_name="sat_3l_sm") as sat:
            sentences = await sat.split("This is a test This is another test.")
            per_text = await sat.split(["First text.", "Second one."])   # a list of lists, in order
    """

    def _start(self) -> None:
        self._client: Any = None
        self._slots: asyncio.Semaphore | None = None

    # -- lifetime ----------------------------------------------------------------------------------
    async def __aenter__(self) -> "AsyncSaT":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection(s); later calls raise :class:`SaTClosedError`."""
        self._closed = True
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    def _get_client(self) -> Any:
        if self._closed:
            raise SaTClosedError("this AsyncSaT was closed; make a new one")
        if self._client is None:  # made inside the running loop, as grpc.aio and aiohttp want
            self._client = self.connection.async_client(self.concurrency)
            self._slots = asyncio.Semaphore(self.concurrency)
        return self._client

    async def _slot(self, work: Awaitable[T]) -> T:
        assert self._slots is not None
        async with self._slots:
            return await work

    # -- requests ----------------------------------------------------------------------------------
    async def max_windows(self) -> int:
        """The ONNX step's max_batch_size: most windows one ensemble request may carry."""
        if self._max_windows is None:
            name = f"{self.triton_model_name}_onnx"
            config = await acall_with_retry(
                lambda: self._get_client().get_model_config(name, **self.connection.config_args()), self.retry)
            self._max_windows = self.connection.max_batch_size(config)
        return self._max_windows

    async def _infer(self, model_name: str, texts: list[str], parameters: dict, probs: bool = False) -> Any:
        args = self.connection.infer_args(texts, parameters, (wire.CHAR_PROBS,) if probs else SPLIT_OUTPUTS)
        result = await acall_with_retry(lambda: self._slot(self._get_client().infer(model_name, **args)), self.retry)
        return decode_probs(result) if probs else decode_split(result)

    async def _segment_group(self, texts: list[str], parameters: dict, long: bool,
                             probs: bool = False) -> Any:
        if not long:
            try:
                return await self._infer(self.triton_model_name, texts, parameters, probs)
            except SaTRequestError as exc:
                if not _needs_long_model(str(exc)):
                    raise
        return await self._infer(self.long_model_name, texts, parameters, probs)

    async def _answers(self, texts: list[str], parameters: dict, batch_size: int, stride: Any, block_size: Any,
                       probs: bool) -> list[tuple[list[str], Any]]:
        """Every group with its answer, in order. The first failure (or a cancellation) cancels the rest."""
        work = list(groups(texts, await self.max_windows(), batch_size, stride, block_size))
        tasks = [asyncio.ensure_future(self._segment_group(group, parameters, long, probs)) for _, group, long in work]
        try:
            answers = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return [(group, answer) for (_, group, _), answer in zip(work, answers)]

    # -- wtpsplit's API ----------------------------------------------------------------------------
    async def split(self, text_or_texts: str | Iterable[str], threshold: float | None = None, stride: int = 64,
                    block_size: int = 512, batch_size: int = 32, pad_last_batch: bool = False,
                    weighting: str = "uniform", remove_whitespace_before_inference: bool = False,
                    outer_batch_size: int = 1000, paragraph_threshold: float = 0.5, strip_whitespace: bool = False,
                    do_paragraph_segmentation: bool = False, split_on_input_newlines: bool = True,
                    treat_newline_as_space: bool | None = None, verbose: bool = False, min_length: int = 1,
                    max_length: int | None = None, prior_type: str = "uniform", prior_kwargs: dict | None = None,
                    algorithm: str = "viterbi") -> Any:
        """Sentences of a text (a list), or of each text of a list (a list of lists), as ``SaT.split``."""
        parameters = split_parameters(
            self.language, treat_newline_as_space, threshold=threshold, stride=stride, block_size=block_size, weighting=weighting,
            remove_whitespace_before_inference=remove_whitespace_before_inference,
            paragraph_threshold=paragraph_threshold, strip_whitespace=strip_whitespace,
            do_paragraph_segmentation=do_paragraph_segmentation, split_on_input_newlines=split_on_input_newlines,
            min_length=min_length, max_length=max_length, prior_type=prior_type, prior_kwargs=prior_kwargs,
            algorithm=algorithm)
        single = isinstance(text_or_texts, str)
        texts = [text_or_texts] if isinstance(text_or_texts, str) else list(text_or_texts)
        answers = await self._answers(texts, parameters, batch_size, stride, block_size, probs=False)
        results = [item for _, answer in answers for item in per_text(answer, do_paragraph_segmentation)]
        return results[0] if single else results

    async def predict_proba(self, text_or_texts: str | Iterable[str], stride: int = 256, block_size: int = 512,
                            batch_size: int = 32, pad_last_batch: bool = False, weighting: str = "uniform",
                            remove_whitespace_before_inference: bool = False, outer_batch_size: int = 1000,
                            return_paragraph_probabilities: bool = False, verbose: bool = False) -> Any:
        """Per-character boundary probabilities, as ``SaT.predict_proba`` (a list for a list of texts)."""
        parameters = proba_parameters(stride=stride, block_size=block_size, weighting=weighting,
                                      remove_whitespace_before_inference=remove_whitespace_before_inference)
        single = isinstance(text_or_texts, str)
        texts = [text_or_texts] if isinstance(text_or_texts, str) else list(text_or_texts)
        answers = await self._answers(texts, parameters, batch_size, stride, block_size, probs=True)
        results = [item for group, flat in answers
                   for item in per_text_probs(group, flat, remove_whitespace_before_inference,
                                              return_paragraph_probabilities)]
        return results[0] if single else results

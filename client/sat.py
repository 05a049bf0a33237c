"""``SaT`` over Triton: wtpsplit's ``split`` signature, segmentation done by the server.

Texts are grouped into requests of at most ``batch_size`` texts whose windows fit the ONNX step
(read from the server's config); texts too long for one ensemble request go to the ``<name>_long``
model, which feeds the ONNX model in slices. Requests run concurrently and results come back in
input order.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Iterator

import numpy as np

from . import wire
from .health import _module

# Server-side options of SaT.split, with wtpsplit's defaults (sent only when they differ).
DEFAULTS = {
    "threshold": None,
    "stride": 64,
    "block_size": 512,
    "weighting": "uniform",
    "remove_whitespace_before_inference": False,
    "paragraph_threshold": 0.5,
    "strip_whitespace": False,
    "do_paragraph_segmentation": False,
    "split_on_input_newlines": True,
    "min_length": 1,
    "max_length": None,
    "prior_type": "uniform",
    "prior_kwargs": None,
    "algorithm": "viterbi",
}
MAX_BLOCK_TOKENS = 510


class SaTRequestError(ValueError):
    """The server rejected a request (INVALID_ARGUMENT): the message names the input or option."""


def default_triton_name(model: str) -> str:
    import re

    base = model.rstrip("/").rsplit("/", 1)[-1] or "sat"
    return re.sub(r"[^A-Za-z0-9_]", "_", base)


class SaT:
    """Sentence segmentation by a sat-triton server.

    ``SaT("sat-3l-sm", triton_url="localhost:8001", triton_model_name="sat_3l_sm")``; the default
    threshold is the server's (fixed at build time from the model name, as wtpsplit's rule).
    """

    def __init__(self, model: str = "sat-3l-sm", triton_url: str = "localhost:8001",
                 triton_model_name: str | None = None, protocol: str = "grpc", concurrency: int = 4,
                 timeout: float | None = None, language: str | None = None):
        self.model = model
        self.language = language  # as wtpsplit's SaT(language=...): default lang_code of the length priors
        self.triton_url = triton_url
        self.triton_model_name = triton_model_name or default_triton_name(model)
        self.long_model_name = f"{self.triton_model_name}_long"
        self.protocol = protocol
        self.concurrency = max(1, int(concurrency))
        self.timeout = timeout
        self._module = _module(protocol)
        self._local = threading.local()
        self._max_windows: int | None = None

    # -- transport -------------------------------------------------------------------------------
    def _client(self):
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._module.InferenceServerClient(url=self.triton_url)
            self._local.client = client
        return client

    def max_windows(self) -> int:
        """The ONNX step's max_batch_size: most windows one ensemble request may carry."""
        if self._max_windows is None:
            name = f"{self.triton_model_name}_onnx"
            config = self._client().get_model_config(name)
            if self.protocol == "grpc":
                self._max_windows = int(config.config.max_batch_size)
            else:
                self._max_windows = int(config["max_batch_size"])
        return self._max_windows

    def _infer(self, model_name: str, texts: list[str], parameters: dict, probs: bool = False):
        from tritonclient.utils import InferenceServerException

        data = np.array([t.encode("utf-8") for t in texts], dtype=np.object_)
        text_input = self._module.InferInput(wire.TEXT, [len(texts)], "BYTES")
        text_input.set_data_from_numpy(data)
        names = (wire.CHAR_PROBS,) if probs else (wire.SENTENCES, wire.SENTENCE_COUNTS, wire.SENTENCE_PARAGRAPH,
                                                    wire.PARAGRAPH_COUNTS)
        outputs = [self._module.InferRequestedOutput(name) for name in names]
        kwargs = {"parameters": parameters} if parameters else {}
        if self.timeout is not None and self.protocol == "grpc":
            kwargs["client_timeout"] = self.timeout
        try:
            result = self._client().infer(model_name, [text_input], outputs=outputs, **kwargs)
        except InferenceServerException as exc:
            status = str(exc.status() or "")
            if "INVALID_ARG" in status or status == "400":
                raise SaTRequestError(exc.message()) from None
            raise
        if probs:
            return result.as_numpy(wire.CHAR_PROBS)
        sentences = [s.decode("utf-8") for s in result.as_numpy(wire.SENTENCES).tolist()]
        counts = result.as_numpy(wire.SENTENCE_COUNTS).tolist()
        paragraphs = result.as_numpy(wire.SENTENCE_PARAGRAPH).tolist()
        paragraph_counts = result.as_numpy(wire.PARAGRAPH_COUNTS).tolist()
        return sentences, counts, paragraphs, paragraph_counts

    def _segment_group(self, texts: list[str], parameters: dict, long: bool, probs: bool = False):
        if not long:
            try:
                return self._infer(self.triton_model_name, texts, parameters, probs)
            except SaTRequestError as exc:
                if wire.TOO_MANY_CHUNKS not in str(exc) and wire.TOO_LONG_FOR_ENSEMBLE not in str(exc):
                    raise
        return self._infer(self.long_model_name, texts, parameters, probs)

    # -- grouping --------------------------------------------------------------------------------
    def _groups(self, texts: list[str], batch_size: int, stride: int, block_size: int):
        """Requests as (first index, texts, goes-to-long-model); window counts estimated from
        characters (a token covers at least one character in practice), fixed up by the server."""
        limit = self.max_windows()
        # Bad values are the server's to reject (it names the option); estimate with safe ones.
        block = min(block_size, MAX_BLOCK_TOKENS) if isinstance(block_size, int) and block_size > 0 else 1
        stride = stride if isinstance(stride, int) and stride > 0 else 1
        group: list[str] = []
        start, windows = 0, 0
        for index, text in enumerate(texts):
            need = -(-max(len(text) - block, 0) // stride) + 1
            if need > limit:
                if group:
                    yield start, group, False
                yield index, [text], True
                group, start, windows = [], index + 1, 0
                continue
            if group and (len(group) >= batch_size or windows + need > limit):
                yield start, group, False
                group, start, windows = [], index, 0
            group.append(text)
            windows += need
        if group:
            yield start, group, False

    def _split_many(self, texts: list[str], parameters: dict, batch_size: int, stride: int, block_size: int,
                    nested: bool, verbose: bool) -> Iterator[list]:
        groups = list(self._groups(texts, batch_size, stride, block_size))
        progress = None
        if verbose:
            from tqdm.auto import tqdm

            progress = tqdm(total=len(texts), desc="sat-triton", unit="text")
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futures = [pool.submit(self._segment_group, g, parameters, long) for _, g, long in groups]
            for (_, group, _), future in zip(groups, futures):
                sentences, counts, paragraphs, paragraph_counts = future.result()
                offset = 0
                for count, n_paragraphs in zip(counts, paragraph_counts):
                    mine = sentences[offset: offset + count]
                    if nested:
                        owner = paragraphs[offset: offset + count]
                        nested_list = [[] for _ in range(n_paragraphs)]
                        for sentence, p in zip(mine, owner):
                            nested_list[p].append(sentence)
                        yield nested_list
                    else:
                        yield mine
                    offset += count
                if progress is not None:
                    progress.update(len(group))
        if progress is not None:
            progress.close()

    # -- wtpsplit's API ----------------------------------------------------------------------------
    def split(self, text_or_texts: str | Iterable[str], threshold: float | None = None, stride: int = 64,
              block_size: int = 512, batch_size: int = 32, pad_last_batch: bool = False,
              weighting: str = "uniform", remove_whitespace_before_inference: bool = False,
              outer_batch_size: int = 1000, paragraph_threshold: float = 0.5, strip_whitespace: bool = False,
              do_paragraph_segmentation: bool = False, split_on_input_newlines: bool = True,
              treat_newline_as_space=None, verbose: bool = False, min_length: int = 1,
              max_length: int | None = None, prior_type: str = "uniform", prior_kwargs: dict | None = None,
              algorithm: str = "viterbi"):
        """Sentences of a text (a list), or of each text of a list (a generator of lists), as wtpsplit."""
        if treat_newline_as_space is not None:
            split_on_input_newlines = not treat_newline_as_space
        values = {
            "threshold": threshold, "stride": stride, "block_size": block_size, "weighting": weighting,
            "remove_whitespace_before_inference": remove_whitespace_before_inference,
            "paragraph_threshold": paragraph_threshold, "strip_whitespace": strip_whitespace,
            "do_paragraph_segmentation": do_paragraph_segmentation,
            "split_on_input_newlines": split_on_input_newlines, "min_length": min_length,
            "max_length": max_length, "prior_type": prior_type, "prior_kwargs": prior_kwargs,
            "algorithm": algorithm,
        }
        if self.language and (max_length is not None or min_length > 1):
            kwargs = dict(prior_kwargs or {})
            if "lang_code" not in kwargs and "target_length" not in kwargs:
                kwargs["lang_code"] = self.language
            values["prior_kwargs"] = kwargs
        parameters = {k: v for k, v in values.items() if v != DEFAULTS[k]}
        if isinstance(parameters.get("prior_kwargs"), dict):
            import json

            parameters["prior_kwargs"] = json.dumps(parameters["prior_kwargs"])
        if isinstance(text_or_texts, str):
            return next(self._split_many([text_or_texts], parameters, batch_size, stride, block_size,
                                         do_paragraph_segmentation, verbose))
        texts = list(text_or_texts)
        return self._split_many(texts, parameters, batch_size, stride, block_size, do_paragraph_segmentation,
                                verbose)

    def predict_proba(self, text_or_texts: str | Iterable[str], stride: int = 256, block_size: int = 512,
                      batch_size: int = 32, pad_last_batch: bool = False, weighting: str = "uniform",
                      remove_whitespace_before_inference: bool = False, outer_batch_size: int = 1000,
                      return_paragraph_probabilities: bool = False, verbose: bool = False):
        """Per-character boundary probabilities (float32), as wtpsplit's ``SaT.predict_proba``: an array for
        a string, a generator of arrays for a list; ``(sentence_probs, newline_probs)`` pairs when
        ``return_paragraph_probabilities`` (SaT uses one probability for both)."""
        values = {"stride": stride, "block_size": block_size, "weighting": weighting,
                  "remove_whitespace_before_inference": remove_whitespace_before_inference}
        parameters = {k: v for k, v in values.items() if v != DEFAULTS[k]}

        def generate(texts):
            groups = list(self._groups(texts, batch_size, stride, block_size))
            with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
                futures = [pool.submit(self._segment_group, g, parameters, long, True) for _, g, long in groups]
                for (_, group, _), future in zip(groups, futures):
                    flat = future.result()
                    offset = 0
                    for text in group:
                        probs = _wtpsplit_shape(text, flat[offset: offset + len(text)],
                                                remove_whitespace_before_inference)
                        offset += len(text)
                        yield (probs, probs) if return_paragraph_probabilities else probs

        if isinstance(text_or_texts, str):
            return next(generate([text_or_texts]))
        return generate(list(text_or_texts))

    def close(self) -> None:
        client = getattr(self._local, "client", None)
        if client is not None:
            client.close()
            self._local.client = None


def _wtpsplit_shape(text: str, probs: np.ndarray, remove_whitespace: bool) -> np.ndarray:
    """wtpsplit gives a text with nothing to infer (empty or blank) one probability, 0, plus one 0 per
    removed space; the server gives one per character. Mirror wtpsplit's shape."""
    seen = text.replace(" ", "") if remove_whitespace else text
    if seen.strip():
        return probs
    return np.zeros(1 + (text.count(" ") if remove_whitespace else 0), dtype=np.float32)

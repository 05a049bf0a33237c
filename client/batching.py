"""wtpsplit's ``split``/``predict_proba`` arguments into requests, and answers back into wtpsplit's shapes.

Shared by the blocking ``SaT`` and the asyncio ``AsyncSaT``: no I/O here.
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterator, List, Sequence, Tuple, Union

import numpy as np

# Server-side options of SaT.split, with wtpsplit's defaults (sent only when they differ).
DEFAULTS: dict[str, Any] = {
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

Group = Tuple[int, List[str], bool]  # first index, texts, goes to the <name>_long model
Sentences = List[str]
Paragraphs = List[List[str]]
SplitAnswer = Tuple[List[str], List[int], List[int], List[int]]


def default_triton_name(model: str) -> str:
    """The ensemble name ``sat-triton build`` gives a model by default: ``sat-3l-sm`` -> ``sat_3l_sm``."""
    base = model.rstrip("/").rsplit("/", 1)[-1] or "sat"
    return re.sub(r"[^A-Za-z0-9_]", "_", base)


def split_parameters(language: str | None, treat_newline_as_space: bool | None = None,
                     **values: Any) -> dict[str, Any]:
    """The request parameters for ``SaT.split``'s options: only those that differ from wtpsplit's defaults
    (``treat_newline_as_space``, wtpsplit's older name, wins over ``split_on_input_newlines`` when given)."""
    if treat_newline_as_space is not None:
        values["split_on_input_newlines"] = not treat_newline_as_space
    if language and (values["max_length"] is not None or values["min_length"] > 1):
        kwargs = dict(values["prior_kwargs"] or {})
        if "lang_code" not in kwargs and "target_length" not in kwargs:
            kwargs["lang_code"] = language
        values["prior_kwargs"] = kwargs
    parameters = {k: v for k, v in values.items() if v != DEFAULTS[k]}
    if isinstance(parameters.get("prior_kwargs"), dict):
        parameters["prior_kwargs"] = json.dumps(parameters["prior_kwargs"])
    return parameters


def proba_parameters(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v != DEFAULTS[k]}


def groups(texts: Sequence[str], limit: int, batch_size: int, stride: Any, block_size: Any) -> Iterator[Group]:
    """Requests as (first index, texts, goes-to-long-model): at most ``batch_size`` texts whose windows fit
    ``limit`` (the ONNX step's max_batch_size). Window counts are estimated from characters (a token
    covers at least one character in practice); the server has the last word and says "too many chunks"."""
    # Bad values are the server's to reject (it names the option); estimate with safe ones.
    block = min(block_size, MAX_BLOCK_TOKENS) if isinstance(block_size, int) and block_size > 0 else 1
    step = stride if isinstance(stride, int) and stride > 0 else 1
    batch_size = max(1, int(batch_size))
    group: list[str] = []
    start, windows = 0, 0
    for index, text in enumerate(texts):
        need = -(-max(len(text) - block, 0) // step) + 1
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


def per_text(answer: SplitAnswer, nested: bool) -> Iterator[Union[Sentences, Paragraphs]]:
    """One request's answer cut into each text's sentences (or paragraphs of sentences)."""
    sentences, counts, paragraphs, paragraph_counts = answer
    offset = 0
    for count, n_paragraphs in zip(counts, paragraph_counts):
        mine = sentences[offset: offset + count]
        if nested:
            owner = paragraphs[offset: offset + count]
            nested_list: Paragraphs = [[] for _ in range(n_paragraphs)]
            for sentence, p in zip(mine, owner):
                nested_list[p].append(sentence)
            yield nested_list
        else:
            yield mine
        offset += count


def per_text_probs(texts: Sequence[str], flat: np.ndarray, remove_whitespace: bool,
                   pairs: bool) -> Iterator[Any]:
    """One request's CHAR_PROBS cut into each text's array (or ``(sentence, newline)`` pair)."""
    offset = 0
    for text in texts:
        probs = wtpsplit_shape(text, flat[offset: offset + len(text)], remove_whitespace)
        offset += len(text)
        yield (probs, probs) if pairs else probs


def wtpsplit_shape(text: str, probs: np.ndarray, remove_whitespace: bool) -> np.ndarray:
    """wtpsplit gives a text with nothing to infer (empty or blank) one probability, 0, plus one 0 per
    removed space; the server gives one per character. Mirror wtpsplit's shape."""
    seen = text.replace(" ", "") if remove_whitespace else text
    if seen.strip():
        return probs
    return np.zeros(1 + (text.count(" ") if remove_whitespace else 0), dtype=np.float32)

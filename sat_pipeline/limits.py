"""Request size limits, checked from the ``TEXT`` tensor's byte lengths before anything is decoded or
tokenized, so an oversized request is refused at once and costs no work in proportion to its size.

The builder renders the limits into the configs' ``parameters`` (``sat-triton build --max_text_chars``
and friends); every refusal names the text, the limit and the flag that raises it. Characters are
Unicode code points, as everywhere in the pipeline: a UTF-8 text has as many as it has bytes that are
not continuation bytes (``10xxxxxx``), counted with numpy, and never more than it has bytes, so texts
whose byte length is within a limit are not counted at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import wire
from .errors import RequestError

# sat-triton build's defaults (builder/cli.py shows them in --help): a 1,000,000-character text fits
# `<name>_long` with room to spare; the ensemble's request size is sized from its windows.
DEFAULT_MAX_TEXT_CHARS = 2_000_000
DEFAULT_MAX_REQUEST_CHARS = 4_000_000
DEFAULT_MAX_REQUEST_TEXTS = 100_000
# An ensemble request carries at most max_batch_size windows of up to 510 tokens. A request with more
# characters than this many per window (8 characters a token, twice what XLM-R averages on European
# text) can hardly fit them; it is refused before tokenizing, and the client sends it to `<name>_long`.
ENSEMBLE_CHARS_PER_WINDOW = 4096


def default_ensemble_request_chars(max_batch_size: int) -> int:
    return ENSEMBLE_CHARS_PER_WINDOW * int(max_batch_size)


@dataclass(frozen=True)
class Limits:
    """What one model accepts per request. ``ensemble`` marks the ensemble's first step, whose request
    size refusal carries :data:`wire.TOO_LONG_FOR_ENSEMBLE` (the client falls back to ``<name>_long``)."""

    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS
    max_request_chars: int = DEFAULT_MAX_REQUEST_CHARS
    max_request_texts: int = DEFAULT_MAX_REQUEST_TEXTS
    ensemble: bool = False

    @classmethod
    def from_parameters(cls, params: dict[str, str]) -> "Limits":
        """From the string parameters the builder renders: the tokenizer's config has
        ``max_ensemble_request_chars``, the long model's ``max_request_chars``."""
        ensemble = "max_ensemble_request_chars" in params
        request = params["max_ensemble_request_chars"] if ensemble else params["max_request_chars"]
        return cls(int(params["max_text_chars"]), int(request), int(params["max_request_texts"]), ensemble)


def byte_lengths(raw: np.ndarray) -> np.ndarray:
    """int64 byte length of every item of a BYTES tensor (an object array of ``bytes``)."""
    items = raw.reshape(-1)
    return np.fromiter(map(len, items), dtype=np.int64, count=len(items))


_BLOCK = 1 << 20  # bytes looked at per numpy step: keeps the temporaries of a 50 MB text small


def _continuation_bytes(buffer: np.ndarray) -> int:
    return sum(int(np.count_nonzero((buffer[i:i + _BLOCK] & 0xC0) == 0x80)) for i in range(0, len(buffer), _BLOCK))


def utf8_char_counts(items) -> np.ndarray:
    """int64 code points of each UTF-8 ``bytes`` item: its bytes that are not continuation bytes.

    Vectorised (no loop over characters): a large item is counted in 1 MB blocks, small items together
    in one buffer. For bytes that are not valid UTF-8 the count is still at most the byte length;
    decoding reports them later.
    """
    items = [bytes(item) for item in items]
    counts = np.array([len(item) for item in items], dtype=np.int64)
    small = np.flatnonzero((counts > 0) & (counts < _BLOCK))
    for index in np.flatnonzero(counts >= _BLOCK).tolist():
        counts[index] -= _continuation_bytes(np.frombuffer(items[index], dtype=np.uint8))
    if len(small):
        buffer = np.frombuffer(b"".join(items[i] for i in small.tolist()), dtype=np.uint8)
        starts = np.cumsum(counts[small]) - counts[small]
        counts[small] -= np.add.reduceat((buffer & 0xC0) == 0x80, starts, dtype=np.int64)
    return counts


def check_limits(raw: np.ndarray, limits: Limits, tensor_name: str = wire.TEXT) -> None:
    """Refuse a request over ``limits`` with a :class:`RequestError` naming the text, the limit and the
    ``sat-triton build`` flag that raises it; costs a byte-length lookup per text, and a vectorised
    code point count only for texts (or a request) whose bytes exceed a limit."""
    items = raw.reshape(-1)
    if len(items) > limits.max_request_texts:
        raise RequestError(
            f"this request has {len(items):,} texts, more than the {limits.max_request_texts:,} a request may have "
            "(max_request_texts); send fewer texts per request, or rebuild the model repository with a larger "
            "--max_request_texts"
        )
    sizes = byte_lengths(items)
    over = np.flatnonzero(sizes > limits.max_text_chars)
    if len(over):
        chars = utf8_char_counts(items[over])
        too_long = np.flatnonzero(chars > limits.max_text_chars)
        if len(too_long):
            index, count = int(over[too_long[0]]), int(chars[too_long[0]])
            raise RequestError(
                f"{tensor_name}[{index}] has {count:,} characters, more than the {limits.max_text_chars:,} a text may "
                "have (max_text_chars); split it, or rebuild the model repository with a larger --max_text_chars"
            )
    if int(sizes.sum()) > limits.max_request_chars:
        total = int(utf8_char_counts(items).sum())
        if total > limits.max_request_chars:
            if limits.ensemble:
                raise RequestError(
                    f"{wire.TOO_LONG_FOR_ENSEMBLE}: this request has {total:,} characters, more than the "
                    f"{limits.max_request_chars:,} an ensemble request may have (max_ensemble_request_chars, sized "
                    "for the windows its ONNX step takes at once). Send long texts to the ensemble's '<name>_long' "
                    "model (client.SaT does so by itself), send fewer texts per request, or rebuild the model "
                    "repository with a larger --max_ensemble_request_chars"
                )
            raise RequestError(
                f"this request has {total:,} characters in {len(items):,} texts, more than the "
                f"{limits.max_request_chars:,} a request may have (max_request_chars); send fewer texts per request, "
                "or rebuild the model repository with a larger --max_request_chars"
            )

"""Sentence spans from character probabilities, as wtpsplit's ``SaT.split`` cuts them.

Everything returns ``(starts, ends)`` int64 arrays of ``[start, end)`` code-point spans, so the server
can send both the sentences and where they are; ``text[start:end]`` is each sentence. Whatever lies
between spans is whitespace that the options asked to drop (``strip_whitespace``) or the one newline
``split_on_input_newlines`` splits on.
"""

from __future__ import annotations

import numpy as np

from .texts import codepoints, space_mask, whitespace_mask

Spans = tuple[np.ndarray, np.ndarray]

_EMPTY: Spans = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))


def _next_non_space(is_space: np.ndarray) -> np.ndarray:
    """``out[i]`` = first j >= i with a non-space character (n if none); ``out[n] = n``."""
    n = len(is_space)
    index = np.where(is_space, n, np.arange(n))
    out = np.minimum.accumulate(index[::-1])[::-1] if n else index
    return np.append(out, n).astype(np.int64)


def _prev_non_space(is_space: np.ndarray) -> np.ndarray:
    """``out[i]`` = last j <= i with a non-space character (-1 if none)."""
    index = np.where(is_space, -1, np.arange(len(is_space)))
    return np.maximum.accumulate(index).astype(np.int64) if len(index) else index.astype(np.int64)


def boundary_spans(is_space: np.ndarray, boundaries: np.ndarray, strip_whitespace: bool) -> Spans:
    """wtpsplit's ``indices_to_sentences``: cut after each boundary index and the whitespace after it,
    drop empty pieces, optionally strip whitespace from both ends (pieces that become empty go)."""
    n = len(is_space)
    next_ns = _next_non_space(is_space)
    cuts = next_ns[np.asarray(boundaries, dtype=np.int64) + 1]
    edges = np.concatenate(([0], cuts, [n])).astype(np.int64)
    starts, ends = edges[:-1], edges[1:]
    if strip_whitespace:
        prev_ns = _prev_non_space(is_space)
        starts = np.minimum(next_ns[starts], ends)
        ends = np.where(ends > starts, prev_ns[np.maximum(ends - 1, 0)] + 1, starts)
    keep = ends > starts
    return starts[keep], ends[keep]


def split_on_newlines(text_cps: np.ndarray, spans: Spans) -> Spans:
    """``split_on_input_newlines``: every sentence but the last loses one trailing ``\\n``, then each is
    split at ``\\n`` (empty pieces are kept, as in wtpsplit)."""
    starts, ends = spans
    if len(starts) == 0:
        return spans
    is_newline = text_cps == 0x0A
    trailing = np.zeros(len(starts), dtype=bool)
    trailing[:-1] = (ends[:-1] > starts[:-1]) & is_newline[np.maximum(ends[:-1] - 1, 0)]
    ends = ends - trailing
    newlines = np.flatnonzero(is_newline)
    lo = np.searchsorted(newlines, starts, side="left")
    hi = np.searchsorted(newlines, ends, side="left")
    pieces = hi - lo + 1
    owner = np.repeat(np.arange(len(starts)), pieces)
    rank = np.arange(int(pieces.sum())) - np.repeat(np.cumsum(pieces) - pieces, pieces)
    nl_index = lo[owner] + rank  # the newline that ends piece `rank` of its sentence (when not last)
    is_last = rank == pieces[owner] - 1
    piece_end = np.where(is_last, ends[owner], newlines[np.minimum(nl_index, len(newlines) - 1)] if len(newlines) else 0)
    piece_start = np.where(rank == 0, starts[owner], newlines[np.maximum(nl_index - 1, 0)] + 1 if len(newlines) else 0)
    return piece_start.astype(np.int64), piece_end.astype(np.int64)


def sentence_spans(
    text: str,
    probs: np.ndarray,
    threshold: float,
    strip_whitespace: bool = False,
    split_on_input_newlines: bool = True,
) -> Spans:
    """The sentences ``SaT.split`` returns for ``text`` (no length constraints), as spans."""
    if not text:
        return _EMPTY
    cps = codepoints(text)
    is_space = space_mask(cps)
    boundaries = np.flatnonzero(np.asarray(probs) > np.float32(threshold))
    spans = boundary_spans(is_space, boundaries, strip_whitespace)
    if split_on_input_newlines and "\n" in text:  # without a newline the split changes nothing
        spans = split_on_newlines(cps, spans)
    return spans


def paragraph_sentence_spans(
    text: str,
    probs: np.ndarray,
    threshold: float,
    paragraph_threshold: float,
    strip_whitespace: bool = False,
) -> tuple[Spans, np.ndarray, int]:
    """``do_paragraph_segmentation``: paragraphs where ``probs > paragraph_threshold`` (never stripped),
    then sentences inside each. Returns the sentence spans, each sentence's paragraph index and the
    number of paragraphs (a paragraph left with no sentence by ``strip_whitespace`` still counts)."""
    if not text:
        return _EMPTY, np.zeros(0, dtype=np.int32), 0
    is_space = whitespace_mask(text)
    probs = np.asarray(probs)
    paragraphs = boundary_spans(is_space, np.flatnonzero(probs > np.float32(paragraph_threshold)), False)
    all_starts, all_ends, owners = [], [], []
    for index, (p_start, p_end) in enumerate(zip(*paragraphs)):
        inside = np.flatnonzero(probs[p_start:p_end] > np.float32(threshold))
        starts, ends = boundary_spans(is_space[p_start:p_end], inside, strip_whitespace)
        all_starts.append(starts + p_start)
        all_ends.append(ends + p_start)
        owners.append(np.full(len(starts), index, dtype=np.int32))
    if not owners:
        return _EMPTY, np.zeros(0, dtype=np.int32), 0
    return (np.concatenate(all_starts), np.concatenate(all_ends)), np.concatenate(owners), len(owners)

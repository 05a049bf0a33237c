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


def batch_boundary_spans(is_space: np.ndarray, lengths: np.ndarray, boundaries: np.ndarray,
                         strip_whitespace: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """wtpsplit's ``indices_to_sentences`` for every text of a batch at once: cut after each boundary
    index and the whitespace after it, drop empty pieces, optionally strip whitespace from both ends
    (pieces that become empty go).

    ``is_space`` covers all texts concatenated, ``lengths`` gives each text's share and ``boundaries``
    (sorted) index into the concatenation. Returns ``(owner, starts, ends)``: each piece's text and its
    ``[start, end)`` in the concatenation, texts in order.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    boundaries = np.asarray(boundaries, dtype=np.int64)
    text_ends = np.cumsum(lengths)
    text_starts = text_ends - lengths
    next_ns = _next_non_space(is_space)  # across texts; capped at each text's end below
    owner_of_cut = np.searchsorted(text_ends, boundaries, side="right")
    cuts = np.minimum(next_ns[boundaries + 1], text_ends[owner_of_cut])
    # every non-empty text is cut into (its boundaries + 1) pieces: [start, cut_1), ..., [cut_k, end)
    nonempty = np.flatnonzero(lengths > 0)
    per_text = np.bincount(owner_of_cut, minlength=len(lengths))[nonempty] + 1
    first = np.cumsum(per_text) - per_text
    owner = np.repeat(nonempty, per_text)
    opens_text = np.zeros(len(owner), dtype=bool)
    opens_text[first] = True
    closes_text = np.zeros(len(owner), dtype=bool)
    closes_text[first + per_text - 1] = True
    starts = np.empty(len(owner), dtype=np.int64)
    starts[opens_text] = text_starts[nonempty]
    starts[~opens_text] = cuts
    ends = np.empty(len(owner), dtype=np.int64)
    ends[closes_text] = text_ends[nonempty]
    ends[~closes_text] = cuts
    if strip_whitespace:
        # ends never pass their text's end, so next_ns needs no cap here; a kept piece has a non-space
        # character in it, so the previous non-space of its end stays inside its text
        prev_ns = _prev_non_space(is_space)
        starts = np.minimum(next_ns[starts], ends)
        ends = np.where(ends > starts, prev_ns[np.maximum(ends - 1, 0)] + 1, starts)
    keep = ends > starts
    return owner[keep], starts[keep], ends[keep]


def boundary_spans(is_space: np.ndarray, boundaries: np.ndarray, strip_whitespace: bool) -> Spans:
    """:func:`batch_boundary_spans` of one text."""
    _, starts, ends = batch_boundary_spans(is_space, np.array([len(is_space)]), boundaries, strip_whitespace)
    return starts, ends


def split_on_newlines(cps: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                      last: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``split_on_input_newlines``: every sentence but the last of its text loses one trailing ``\\n``
    (``last`` marks those), then each is split at ``\\n`` (empty pieces are kept, as in wtpsplit).

    Returns ``(source, starts, ends)``: which input span each piece comes from, and the pieces."""
    if len(starts) == 0:
        return np.zeros(0, dtype=np.int64), starts, ends
    is_newline = cps == 0x0A
    trailing = ~last & (ends > starts) & is_newline[np.maximum(ends - 1, 0)]
    ends = ends - trailing
    newlines = np.flatnonzero(is_newline)
    lo = np.searchsorted(newlines, starts, side="left")
    hi = np.searchsorted(newlines, ends, side="left")
    pieces = hi - lo + 1
    source = np.repeat(np.arange(len(starts)), pieces)
    rank = np.arange(int(pieces.sum())) - np.repeat(np.cumsum(pieces) - pieces, pieces)
    nl_index = lo[source] + rank  # the newline that ends piece `rank` of its sentence (when not last)
    is_last = rank == pieces[source] - 1
    piece_end = np.where(is_last, ends[source], newlines[np.minimum(nl_index, len(newlines) - 1)] if len(newlines) else 0)
    piece_start = np.where(rank == 0, starts[source], newlines[np.maximum(nl_index - 1, 0)] + 1 if len(newlines) else 0)
    return source, piece_start.astype(np.int64), piece_end.astype(np.int64)


def batch_sentence_spans(
    cps: np.ndarray,
    lengths: np.ndarray,
    probs: np.ndarray,
    threshold: float,
    strip_whitespace: bool = False,
    split_on_input_newlines: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The sentences ``SaT.split`` returns (no length constraints) for every text of a batch at once.

    ``cps`` and ``probs`` hold all texts' code points and probabilities concatenated, ``lengths`` the
    code points per text. Returns ``(owner, starts, ends)``: each sentence's text index and its
    ``[start, end)`` within that text, texts in order: :func:`batch_boundary_spans`, then
    :func:`split_on_newlines`, once over the whole batch.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    boundaries = np.flatnonzero(np.asarray(probs) > np.float32(threshold))
    owner, starts, ends = batch_boundary_spans(space_mask(cps), lengths, boundaries, strip_whitespace)
    if split_on_input_newlines and len(starts) and bool((cps == 0x0A).any()):
        last = np.ones(len(owner), dtype=bool)
        last[:-1] = owner[1:] != owner[:-1]
        source, starts, ends = split_on_newlines(cps, starts, ends, last)
        owner = owner[source]
    offset = (np.cumsum(lengths) - lengths)[owner]
    return owner, starts - offset, ends - offset


def sentence_spans(
    text: str,
    probs: np.ndarray,
    threshold: float,
    strip_whitespace: bool = False,
    split_on_input_newlines: bool = True,
) -> Spans:
    """The sentences ``SaT.split`` returns for one ``text`` (no length constraints), as spans."""
    if not text:
        return _EMPTY
    _, starts, ends = batch_sentence_spans(codepoints(text), np.array([len(text)]), probs, threshold,
                                           strip_whitespace, split_on_input_newlines)
    return starts, ends


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

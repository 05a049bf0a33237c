"""Tokenizing a long text in pieces, with exactly the ids and offsets of one call on the whole text.

The long model tokenizes a text of millions of characters; in one ``encode`` call the tokenizer's
``Encoding`` for a 10 MB text took 1.7 GB (2 GB at its peak) and 35 s on one core. In pieces of
~32,000 characters, a few at a time, only compact arrays stay (int32 ids, int64 ends) and the
pieces of one call are tokenized in parallel.

Where a cut is safe: before a single space U+0020 whose neighbours are both printable ASCII
(U+0021..U+007E), for a tokenizer built as SaT's XLM-R one is (:func:`splits_safely` checks the
tokenizer's own description, ``tokenizer.json``):

* normalizers (NFKC and the other normal forms, sentencepiece's ``Precompiled`` charsmap, Lowercase,
  a right-only Strip, ``Replace`` of runs of spaces or of one character by a text without spaces)
  all act on a character, a grapheme cluster or a run of spaces at a time. The cut is a grapheme
  boundary (a space is neither Extend, ZWJ nor SpacingMark, and printable ASCII is not Prepend), a
  space is a normalization boundary (a starter that never composes with a neighbour), the neighbours
  are not spaces, so no run of spaces crosses it; printable ASCII and the space normalize to
  themselves (checked on the loaded tokenizer, :func:`splits_safely`), and a right-only Strip removes
  nothing from a piece that ends in printable ASCII;
* the ``Metaspace`` pre-tokenizer with ``split`` on splits the text into words right before each
  (replaced) space, and the model tokenizes every word on its own; the piece after the cut starts
  with that space, so no ``▁`` is prepended to it whatever the prepend scheme;
* added tokens (``<s>``, ``<mask>``...) are matched in the raw text: none may contain whitespace
  or strip whitespace on its right (``rstrip``), nor need word boundaries (``single_word``); a left
  strip (XLM-R's ``<mask>``) starts its match at the space, which is where the piece starts anyway.

Offsets are the pieces' own plus where each piece starts. A text without such a cut point for a
long stretch (text with no spaces, such as Chinese, or ``remove_whitespace_before_inference``) is
tokenized in longer pieces; tests/test_text_pieces.py compares pieces with one call on random texts.
"""

from __future__ import annotations

import json

import numpy as np

from .texts import codepoints
from .tokenization import TokenizedBatch, tokenize

PIECE_CHARS = 1 << 15  # characters per piece (a cut goes at the first safe point past each multiple)
CALL_CHARS = 1 << 18  # characters per encode_batch call (its pieces run on tokenizers' threads)

_NORMALIZERS = {"NFC", "NFD", "NFKC", "NFKD", "Precompiled", "Lowercase"}


def _pattern(value) -> tuple[str, str]:
    if isinstance(value, dict) and len(value) == 1:
        (kind, text), = value.items()
        return kind, text
    return "", ""


def _normalizer_is_local(spec) -> bool:
    if spec is None:
        return True
    kind = spec.get("type")
    if kind == "Sequence":
        return all(_normalizer_is_local(part) for part in spec.get("normalizers", []))
    if kind in _NORMALIZERS:
        return True
    if kind == "Strip":
        return not spec.get("strip_left", True)
    if kind == "Replace":
        pattern_kind, pattern = _pattern(spec.get("pattern"))
        content = spec.get("content", "")
        if pattern_kind == "Regex" and pattern == " {2,}":
            return True
        return pattern_kind == "String" and len(pattern) == 1 and not any(c.isspace() for c in content)
    return False


def splits_safely(tokenizer) -> bool:
    """Whether cutting before a lone space between printable ASCII characters gives the same tokens and
    offsets as one call, for this ``tokenizers.Tokenizer`` (the conditions in the module docstring)."""
    spec = json.loads(tokenizer.to_str())
    pre = spec.get("pre_tokenizer") or {}
    if pre.get("type") != "Metaspace" or not pre.get("split", True):
        return False
    if not _normalizer_is_local(spec.get("normalizer")):
        return False
    for token in spec.get("added_tokens", []):
        content = token.get("content", "")
        if token.get("rstrip") or token.get("single_word") or any(c.isspace() for c in content):
            return False
    normalizer = tokenizer.normalizer
    if normalizer is not None:
        for code in range(0x21, 0x7F):
            sample = f"{chr(code)} {chr(code)}"
            if normalizer.normalize_str(sample) != sample:
                return False
    return True


def cut_points(cps: np.ndarray, piece_chars: int = PIECE_CHARS) -> np.ndarray:
    """int64 positions to cut a text (its code points ``cps``) at: the first safe point at or after
    every multiple of ``piece_chars``; empty when the text is not longer than that."""
    n = len(cps)
    if n <= piece_chars:
        return np.zeros(0, dtype=np.int64)
    printable = (cps >= 0x21) & (cps <= 0x7E)
    safe = np.flatnonzero((cps[1:-1] == 0x20) & printable[:-2] & printable[2:]) + 1
    chosen = np.searchsorted(safe, np.arange(piece_chars, n, piece_chars, dtype=np.int64))
    return np.unique(safe[chosen[chosen < len(safe)]]).astype(np.int64)


def text_pieces(texts: list[str], include: np.ndarray, piece_chars: int = PIECE_CHARS,
                split: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(owner, start, end)`` int64 arrays: the pieces of the included texts, in text order, each
    ``texts[owner][start:end]``; one piece per text unless ``split`` and the text is long."""
    owners, starts, ends = [], [], []
    for index in np.flatnonzero(include).tolist():
        n = len(texts[index])
        cuts = cut_points(codepoints(texts[index]), piece_chars) if split and n > piece_chars else []
        bounds = np.concatenate(([0], cuts, [n])).astype(np.int64)
        owners.append(np.full(len(bounds) - 1, index, dtype=np.int64))
        starts.append(bounds[:-1])
        ends.append(bounds[1:])
    if not owners:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    return np.concatenate(owners), np.concatenate(starts), np.concatenate(ends)


def tokenize_in_pieces(tokenizer, texts: list[str], include: np.ndarray | None = None, split: bool = True,
                       piece_chars: int = PIECE_CHARS, call_chars: int = CALL_CHARS,
                       between_calls=None) -> TokenizedBatch:
    """:func:`sat_triton.pipeline.tokenization.tokenize` for texts of any length, in bounded memory:
    the same ids and ends when ``split`` is only set for a tokenizer that :func:`splits_safely` (ids
    are int32 here). ``between_calls()`` runs before every ``encode_batch`` call (a cancellation check)."""
    if include is None:
        include = np.ones(len(texts), dtype=bool)
    owner, start, end = text_pieces(texts, np.asarray(include, dtype=bool), piece_chars, split)
    ids, ends, piece_counts = [], [], []
    # calls of consecutive pieces with at most call_chars characters (a longer piece gets its own call)
    call_of = np.cumsum(end - start) // call_chars if len(owner) else np.zeros(0, dtype=np.int64)
    bounds = np.flatnonzero(np.diff(call_of)) + 1
    for first, stop in zip(np.concatenate(([0], bounds)).tolist(), np.concatenate((bounds, [len(owner)])).tolist()):
        if first == stop:
            continue
        if between_calls is not None:
            between_calls()
        pieces = [texts[o][a:b] for o, a, b in zip(owner[first:stop].tolist(), start[first:stop].tolist(),
                                                   end[first:stop].tolist())]
        batch = tokenize(tokenizer, pieces)
        del pieces
        ids.append(batch.ids.astype(np.int32))
        ends.append(batch.ends + np.repeat(start[first:stop], batch.counts))
        piece_counts.append(batch.counts)
    counts = np.zeros(len(texts), dtype=np.int64)
    if ids:
        np.add.at(counts, owner, np.concatenate(piece_counts))
        return TokenizedBatch(ids=np.concatenate(ids), ends=np.concatenate(ends), counts=counts)
    return TokenizedBatch(ids=np.zeros(0, dtype=np.int32), ends=np.zeros(0, dtype=np.int64), counts=counts)

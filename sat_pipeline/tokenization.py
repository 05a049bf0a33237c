"""Batch tokenization with the ``tokenizers`` library into flat arrays.

wtpsplit tokenizes with ``add_special_tokens=False`` and adds ``<s>``/``</s>`` per chunk later; the
same tokenizer file (``tokenizer.json``, saved by the builder from the transformers tokenizer the
reference uses) gives the same ids and code-point offsets.

Two paths give the same arrays: ``encode_batch`` with its offsets read back (any tokenizer), and
:mod:`.piece_ends`, which takes ids from ``encode_batch_fast`` and rebuilds the ends from the pieces
(SaT's Unigram tokenizers, texts it can check; the rest fall back to ``encode_batch``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from itertools import chain, compress
from operator import attrgetter, itemgetter

import numpy as np

from .piece_ends import MIN_REBUILD_CHARS, PieceEnds

_IDS, _OFFSETS, _END = attrgetter("ids"), attrgetter("offsets"), itemgetter(1)


@dataclass(frozen=True)
class TokenizedBatch:
    ids: np.ndarray  # int64 [total tokens]: texts concatenated
    ends: np.ndarray  # int64 [total tokens]: end offset of each token in its text (code points)
    counts: np.ndarray  # int64 [texts]: tokens per text (0 for texts left out)

    @property
    def starts(self) -> np.ndarray:
        """Index of each text's first token in the flat arrays."""
        return np.concatenate(([0], np.cumsum(self.counts)[:-1])).astype(np.int64)


@dataclass(frozen=True)
class ServingTokenizer:
    """What the Triton models tokenize with: the library tokenizer and, where its pipeline allows, the
    :class:`PieceEnds` fast path (``None``: every text goes through ``encode_batch``)."""

    library: object
    pieces: PieceEnds | None

    @classmethod
    def load(cls, path, rebuild_ends: bool = True) -> ServingTokenizer:
        library = load_tokenizer(path)
        if not rebuild_ends:
            return cls(library, None)
        try:
            pieces = PieceEnds.for_tokenizer(library)
        except Exception as error:  # noqa: BLE001 - an optional fast path never keeps a model from loading
            # (another tokenizers version may describe or rebuild the pipeline differently)
            warnings.warn(f"token ends will be read from encode_batch: the rebuild could not be set up ({error!r})",
                          RuntimeWarning, stacklevel=2)
            pieces = None
        return cls(library, pieces)


def load_tokenizer(path: str):
    """A ``tokenizers.Tokenizer`` from ``tokenizer.json`` with padding and truncation off."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def _encode(tokenizer, texts: list[str]):
    """``encode_batch`` with its ids and end offsets read into numpy: (ids, ends, counts).

    The encodings' lists reach numpy through C-level iterators (``map`` over attribute and item
    getters, ``itertools.chain``): no Python frame runs per token, and ``len(encoding)`` counts its
    tokens without building its ids."""
    encodings = tokenizer.encode_batch(texts, add_special_tokens=False) if texts else []
    counts = np.fromiter(map(len, encodings), dtype=np.int64, count=len(encodings))
    total = int(counts.sum())
    ids = np.fromiter(chain.from_iterable(map(_IDS, encodings)), dtype=np.int64, count=total)
    ends = np.fromiter(map(_END, chain.from_iterable(map(_OFFSETS, encodings))), dtype=np.int64, count=total)
    return ids, ends, counts


def _merge(first, second, in_first: np.ndarray):
    """Two (ids, ends, counts) results, one for the texts where ``in_first`` holds and one for the
    others, each text after text: put back in the texts' order."""
    counts = np.zeros(len(in_first), dtype=np.int64)
    counts[in_first], counts[~in_first] = first[2], second[2]
    out_starts = np.cumsum(counts) - counts
    ids = np.empty(int(counts.sum()), dtype=np.int64)
    ends = np.empty_like(ids)
    for (part_ids, part_ends, part_counts), texts in ((first, in_first), (second, ~in_first)):
        shift = out_starts[texts] - (np.cumsum(part_counts) - part_counts)
        target = np.repeat(shift, part_counts) + np.arange(len(part_ids))
        ids[target], ends[target] = part_ids, part_ends
    return ids, ends, counts


def tokenize(tokenizer, texts: list[str], include: np.ndarray | None = None) -> TokenizedBatch:
    """Encode ``texts`` (those where ``include`` is true; others get 0 tokens) in one batch call.

    ``tokenizer``: a :class:`ServingTokenizer` (the fast path where it applies: requests of at least
    ``MIN_REBUILD_CHARS`` characters) or a bare ``tokenizers.Tokenizer`` (``encode_batch`` for every
    text)."""
    library = getattr(tokenizer, "library", tokenizer)
    pieces = getattr(tokenizer, "pieces", None)
    keep = None if include is None else np.asarray(include, dtype=bool)
    chosen = texts if keep is None else list(compress(texts, keep))
    if pieces is None or not chosen or sum(map(len, chosen)) < MIN_REBUILD_CHARS:
        ids, ends, lengths = _encode(library, chosen)
    else:
        ids, ends, lengths, done = pieces.encode(chosen)
        if not done.all():
            rest = _encode(library, list(compress(chosen, ~done)))
            ids, ends, lengths = _merge((ids, ends, lengths[done]), rest, done)
    if keep is None:
        counts = lengths
    else:
        counts = np.zeros(len(texts), dtype=np.int64)
        counts[keep] = lengths
    return TokenizedBatch(ids=ids, ends=ends, counts=counts)

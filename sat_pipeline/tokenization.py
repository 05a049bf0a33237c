"""Batch tokenization with the ``tokenizers`` library into flat arrays.

wtpsplit tokenizes with ``add_special_tokens=False`` and adds ``<s>``/``</s>`` per chunk later; the
same tokenizer file (``tokenizer.json``, saved by the builder from the transformers tokenizer the
reference uses) gives the same ids and code-point offsets.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain, compress
from operator import attrgetter, itemgetter

import numpy as np

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


def load_tokenizer(path: str):
    """A ``tokenizers.Tokenizer`` from ``tokenizer.json`` with padding and truncation off."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def tokenize(tokenizer, texts: list[str], include: np.ndarray | None = None) -> TokenizedBatch:
    """Encode ``texts`` (those where ``include`` is true; others get 0 tokens) in one batch call.

    The encodings' ids and offsets reach numpy through C-level iterators (``map`` over attribute and
    item getters, ``itertools.chain``): no Python frame runs per token, and each encoding's lists are
    built once (``len(encoding)`` counts its tokens without building its ids).
    """
    keep = None if include is None else np.asarray(include, dtype=bool)
    chosen = texts if keep is None else list(compress(texts, keep))
    encodings = tokenizer.encode_batch(chosen, add_special_tokens=False) if chosen else []
    lengths = np.fromiter(map(len, encodings), dtype=np.int64, count=len(encodings))
    if keep is None:
        counts = lengths
    else:
        counts = np.zeros(len(texts), dtype=np.int64)
        counts[keep] = lengths
    total = int(lengths.sum())
    ids = np.fromiter(chain.from_iterable(map(_IDS, encodings)), dtype=np.int64, count=total)
    ends = np.fromiter(map(_END, chain.from_iterable(map(_OFFSETS, encodings))), dtype=np.int64, count=total)
    return TokenizedBatch(ids=ids, ends=ends, counts=counts)

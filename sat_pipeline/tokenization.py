"""Batch tokenization with the ``tokenizers`` library into flat arrays.

wtpsplit tokenizes with ``add_special_tokens=False`` and adds ``<s>``/``</s>`` per chunk later; the
same tokenizer file (``tokenizer.json``, saved by the builder from the transformers tokenizer the
reference uses) gives the same ids and code-point offsets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
    """Encode ``texts`` (those where ``include`` is true; others get 0 tokens) in one batch call."""
    if include is None:
        include = np.ones(len(texts), dtype=bool)
    chosen = [text for text, keep in zip(texts, include) if keep]
    encodings = tokenizer.encode_batch(chosen, add_special_tokens=False) if chosen else []
    counts = np.zeros(len(texts), dtype=np.int64)
    counts[np.asarray(include, dtype=bool)] = [len(e.ids) for e in encodings]
    total = int(counts.sum())
    ids = np.fromiter((i for e in encodings for i in e.ids), dtype=np.int64, count=total)
    ends = np.fromiter((end for e in encodings for _, end in e.offsets), dtype=np.int64, count=total)
    return TokenizedBatch(ids=ids, ends=ends, counts=counts)

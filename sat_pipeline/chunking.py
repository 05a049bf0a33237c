"""Overlapping token windows, as wtpsplit's ``extract`` cuts them, and the ONNX input matrices.

A text of T tokens gets windows ``[k*stride, k*stride + block)`` until one reaches T; the last window
is ``[max(T - block, 0), T)``. Each window becomes ``<s> tokens </s>`` padded to a common length.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import RequestError
from .options import MAX_BLOCK_TOKENS


@dataclass(frozen=True)
class ChunkPlan:
    text: np.ndarray  # int64 [chunks]: which text each window belongs to
    start: np.ndarray  # int64 [chunks]: first token of the window (within its text)
    end: np.ndarray  # int64 [chunks]: one past its last token
    block_size: int  # window size in tokens for this request (0 when there is nothing to run)

    def __len__(self) -> int:
        return len(self.text)

    @property
    def lengths(self) -> np.ndarray:
        return self.end - self.start

    def rows(self, first: int, stop: int) -> "ChunkPlan":
        """Windows ``first`` to ``stop - 1`` of the plan (the same block size)."""
        return ChunkPlan(self.text[first:stop], self.start[first:stop], self.end[first:stop], self.block_size)


def effective_block_size(token_counts: np.ndarray, block_size: int) -> int:
    """wtpsplit's ``block_size = min(block_size, longest text)``, capped at 510 tokens."""
    longest = int(token_counts.max()) if len(token_counts) else 0
    return min(block_size, longest, MAX_BLOCK_TOKENS)


def plan_chunks(token_counts: np.ndarray, block_size: int, stride: int) -> ChunkPlan:
    """The windows of every text, texts in order and windows left to right (wtpsplit's order).

    ``block_size`` is the requested one; texts with no tokens get no window.
    """
    counts = np.asarray(token_counts, dtype=np.int64)
    block = effective_block_size(counts, block_size)
    if block == 0:
        empty = np.zeros(0, dtype=np.int64)
        return ChunkPlan(empty, empty, empty, 0)
    overflow = np.maximum(counts - block, 0)
    if stride > block and bool((overflow > 0).any()):
        index = int(np.argmax(overflow > 0))
        raise RequestError(
            f"option 'stride' ({stride}) exceeds the block size in use ({block} tokens) for TEXT[{index}], "
            f"which would leave tokens unscored; use stride <= {block}"
        )
    n_chunks = np.where(counts > 0, -(-overflow // stride) + 1, 0)
    text = np.repeat(np.arange(len(counts), dtype=np.int64), n_chunks)
    first = np.repeat(np.cumsum(n_chunks) - n_chunks, n_chunks)
    k = np.arange(len(text), dtype=np.int64) - first
    start = k * stride
    end = start + block
    last = k == (n_chunks[text] - 1)
    end = np.where(last, counts[text], end)
    start = np.where(last, overflow[text], start)
    return ChunkPlan(text=text, start=start, end=end, block_size=block)


def padded_length(max_tokens: int, multiple: int) -> int:
    """Sequence length of the model input: window + <s> + </s>, rounded up to ``multiple``
    (fewer distinct shapes, so Triton's dynamic batcher can merge requests), never over 512."""
    length = max_tokens + 2
    if multiple > 1:
        length = -(-length // multiple) * multiple
    return min(length, MAX_BLOCK_TOKENS + 2) if max_tokens <= MAX_BLOCK_TOKENS else length


def build_inputs(
    ids: np.ndarray,
    text_token_starts: np.ndarray,
    plan: ChunkPlan,
    cls_id: int,
    sep_id: int,
    pad_id: int,
    pad_to_multiple_of: int = 1,
    seq_len: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``input_ids`` and ``attention_mask`` (int64, [chunks, seq]) for the windows of ``plan``.

    ``ids`` are all texts' token ids concatenated; ``text_token_starts[i]`` is where text i begins.
    With no windows, one ``<s></s>`` row is returned so the ONNX step still gets a valid batch.
    ``seq_len`` fixes the width (a slice of a larger plan keeps the whole plan's padding).
    """
    if len(plan) == 0:
        return np.array([[cls_id, sep_id]], dtype=np.int64), np.ones((1, 2), dtype=np.int64)
    lengths = plan.lengths
    seq = padded_length(int(lengths.max()), pad_to_multiple_of) if seq_len is None else seq_len
    rows = np.arange(len(plan))
    cols = np.arange(seq - 2, dtype=np.int64)
    in_window = cols[None, :] < lengths[:, None]
    source = (text_token_starts[plan.text] + plan.start)[:, None] + cols[None, :]
    input_ids = np.full((len(plan), seq), pad_id, dtype=np.int64)
    body = input_ids[:, 1:-1]
    body[in_window] = ids[source[in_window]]
    input_ids[:, 0] = cls_id
    input_ids[rows, lengths + 1] = sep_id
    attention_mask = (np.arange(seq)[None, :] < (lengths + 2)[:, None]).astype(np.int64)
    return input_ids, attention_mask

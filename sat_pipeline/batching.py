"""Merging the window batches of several requests into one model call, and splitting the result."""

from __future__ import annotations

import numpy as np


def merge_rows(ids: list[np.ndarray], masks: list[np.ndarray], pad_id: int):
    """Stack [rows_i, seq_i] matrices into one [sum rows, max seq] batch (padding masked out).

    Returns the merged ids, the merged mask and each request's row count.
    """
    rows = [len(a) for a in ids]
    if len(ids) == 1:
        return ids[0], masks[0], rows
    seq = max(a.shape[1] for a in ids)
    merged_ids = np.full((sum(rows), seq), pad_id, dtype=ids[0].dtype)
    merged_mask = np.zeros((sum(rows), seq), dtype=masks[0].dtype)
    offset = 0
    for a, m in zip(ids, masks):
        merged_ids[offset : offset + len(a), : a.shape[1]] = a
        merged_mask[offset : offset + len(a), : a.shape[1]] = m
        offset += len(a)
    return merged_ids, merged_mask, rows


def split_rows(output: np.ndarray, rows: list[int], seqs: list[int]) -> list[np.ndarray]:
    """Cut a merged [sum rows, seq] output back into each request's [rows_i, seq_i]."""
    bounds = np.cumsum([0] + rows)
    return [output[a:b, :seq] for a, b, seq in zip(bounds[:-1], bounds[1:], seqs)]


def length_buckets(lengths: np.ndarray, granularity: int = 8) -> list[np.ndarray]:
    """Row indices grouped by real length (rounded up to ``granularity``), shortest first.

    Each group can run trimmed to its own longest row, so a short window is not padded to the longest
    window of the batch (attention costs grow with the square of the padded length)."""
    keys = -(-np.asarray(lengths) // granularity)
    order = np.argsort(keys, kind="stable")
    bounds = np.flatnonzero(np.diff(keys[order])) + 1
    return np.split(order, bounds)


def run_by_length(run, input_ids: np.ndarray, attention_mask: np.ndarray, granularity: int = 8) -> np.ndarray:
    """``run(ids, mask) -> logits [rows, seq]`` called once per length bucket; positions past a row's
    bucket length (all padding) get logit 0, which nothing downstream reads."""
    if granularity <= 0:
        return run(input_ids, attention_mask)
    lengths = attention_mask.sum(axis=1)
    out = np.zeros(input_ids.shape, dtype=np.float32)
    for rows in length_buckets(lengths, granularity):
        width = int(lengths[rows].max())
        out[rows, :width] = run(input_ids[rows, :width], attention_mask[rows, :width])
    return out

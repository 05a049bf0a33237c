"""From window logits back to one probability per character, on wtpsplit's numeric path.

wtpsplit sums each window's logits into a float16 buffer (``acc += weight * logit``, the product in
float32, the sum rounded to float16 after every window, windows in order), divides by the float16
sum of weights, puts each token's logit on the last character of the token (-inf elsewhere) and
applies a float32 sigmoid. Near the threshold those roundings decide, so they are reproduced here.
"""

from __future__ import annotations

import numpy as np

from .chunking import ChunkPlan


def window_weights(block_size: int, weighting: str) -> np.ndarray:
    """Per-position weights of a window, float16 as in wtpsplit."""
    if weighting == "uniform":
        return np.ones(block_size, dtype=np.float16)
    x = np.linspace(-(1 - 1 / block_size), 1 - 1 / block_size, block_size, dtype=np.float16)
    return 1 - np.abs(x)


class TokenLogitStitcher:
    """wtpsplit's float16 accumulation of window logits per token, fed the windows of ``plan`` in slices,
    in plan order, so a long text's windows never need to exist all at once.

    ``add(chunk_logits)`` takes the next windows' logits, ``chunk_logits[c, 1 + j]`` being the logit of
    token ``plan.start[c] + j`` of window c (position 0 is ``<s>``). Per token, contributions arrive in
    window order and each sum is rounded to float16 after every window, as in wtpsplit's loop; where the
    slices are cut does not change a bit (tests/test_stitching.py). Holds two float16 values per token.
    """

    def __init__(self, plan: ChunkPlan, token_counts: np.ndarray, weighting: str = "uniform"):
        counts = np.asarray(token_counts, dtype=np.int64)
        self.total = int(counts.sum())
        self.acc = np.zeros(self.total, dtype=np.float16)
        self.norm = np.zeros(self.total, dtype=np.float16)
        text_starts = np.cumsum(counts) - counts
        self.g_start = text_starts[plan.text] + plan.start  # window bounds in flat token coordinates
        self.g_end = text_starts[plan.text] + plan.end
        self.weights = window_weights(plan.block_size, weighting) if len(plan) else None
        self.windows = len(plan)
        self.done = 0  # windows added so far

    def add(self, chunk_logits: np.ndarray) -> None:
        first_window, stop = self.done, self.done + len(chunk_logits)
        if stop > self.windows:
            raise ValueError(f"{stop} windows given, the plan has {self.windows}")
        if stop == first_window:
            return
        g_start, g_end = self.g_start[first_window:stop], self.g_end[first_window:stop]
        # Windows are sorted by start and by end, and together cover the tokens between the first one's
        # start and the last one's end without a gap; the windows covering a token are consecutive.
        position = np.arange(g_start[0], g_end[-1], dtype=np.int64)
        first = np.searchsorted(g_end, position, side="right")  # first window (of this slice) covering it
        last = np.searchsorted(g_start, position, side="right") - 1  # last one
        logits = np.asarray(chunk_logits, dtype=np.float32)
        acc, norm, weights = self.acc, self.norm, self.weights
        for layer in range(int((last - first).max()) + 1):
            sel = np.nonzero(first + layer <= last)[0]
            window = first[sel] + layer
            token = position[sel]
            local = token - g_start[window]
            w = weights[local]
            acc[token] = (acc[token] + w * logits[window, local + 1]).astype(np.float16)
            norm[token] = norm[token] + w
        self.done = stop

    def result(self) -> np.ndarray:
        """float16 [total tokens]: the averaged logits (once every window was added)."""
        if self.done != self.windows:
            raise ValueError(f"{self.done} of {self.windows} windows added")
        if self.total == 0 or self.windows == 0:
            return self.acc
        return self.acc / self.norm


def stitch_token_logits(
    chunk_logits: np.ndarray,
    plan: ChunkPlan,
    token_counts: np.ndarray,
    weighting: str = "uniform",
) -> np.ndarray:
    """Average the windows' boundary logits per token: float16 [total tokens], texts concatenated.

    ``chunk_logits[c, 1 + j]`` is the logit of token ``plan.start[c] + j`` of window c (position 0 is
    ``<s>``). Vectorised over all tokens: a token covered by several windows takes their
    contributions one "layer" at a time, in window order, exactly as wtpsplit's loop adds them.
    """
    stitcher = TokenLogitStitcher(plan, token_counts, weighting)
    if len(plan):
        stitcher.add(chunk_logits[: len(plan)])
    return stitcher.result()


def char_probabilities(
    text_lengths: np.ndarray,
    token_logits: np.ndarray,
    token_ends: np.ndarray,
    token_counts: np.ndarray,
) -> np.ndarray:
    """float32 [sum of text_lengths]: every text's character probabilities, texts concatenated.

    Per text as wtpsplit's ``token_to_char_probs`` then sigmoid: each token's logit on the token's
    last character, -inf (probability 0) elsewhere. A token ending at offset 0 lands on its text's last
    character, as numpy's index -1 does in wtpsplit; when several tokens end on one character the last
    of them wins, as in wtpsplit. ``token_counts[i]`` tokens of ``token_logits``/``token_ends`` belong
    to text i, in order.
    """
    lengths = np.asarray(text_lengths, dtype=np.int64)
    counts = np.asarray(token_counts, dtype=np.int64)
    char_logits = np.full(int(lengths.sum()), -np.inf, dtype=np.float32)
    if len(token_ends):
        owner = np.repeat(np.arange(len(counts)), counts)
        ends = np.asarray(token_ends, dtype=np.int64)
        local = np.where(ends > 0, ends, lengths[owner]) - 1
        char_logits[(np.cumsum(lengths) - lengths)[owner] + local] = token_logits
    return 1 / (1 + np.exp(-char_logits))

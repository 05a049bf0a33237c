"""The long model's request, streamed: memory grows with the text in bounded steps, not all at once.

``<name>_long`` takes texts of millions of characters. Instead of the ensemble's whole-request
matrices it

1. tokenizes in pieces of ~32,000 characters, a few at a time, keeping compact arrays (int32 ids,
   int64 ends): :func:`sat_triton.pipeline.text_pieces.tokenize_in_pieces`, identical to one call;
2. builds the windows ``max_chunks`` at a time (what the ONNX step takes in one request), runs them
   and adds their logits to the float16 per-token sums at once
   (:class:`sat_triton.pipeline.stitching.TokenLogitStitcher`, wtpsplit's numeric path bit for bit), so
   no window matrix or logit matrix of the whole text ever exists;
3. cuts sentences from the per-token logits as the ensemble's postprocessor does
   (:func:`sat_triton.pipeline.pipeline.finish_tokens`).

Between tokenizer calls and between window slices it asks ``cancelled()`` and stops with
:class:`RequestCancelled` once the client has given up.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .chunking import build_inputs, padded_length, plan_chunks
from .errors import RequestCancelled
from .options import Options
from .pipeline import Segmented, TokenizerSettings, check_costs, finish_tokens, model_texts
from .stitching import TokenLogitStitcher
from .text_pieces import CALL_CHARS, PIECE_CHARS, tokenize_in_pieces

CANCELLED_MESSAGE = "the client cancelled the request (or its timeout passed); the server stopped working on it"


def segment_streamed(
    tokenizer,
    texts: list[str],
    options: Options,
    settings: TokenizerSettings,
    run: Callable[[np.ndarray, np.ndarray], np.ndarray],
    max_chunks: int,
    default_threshold: float,
    language: str | None = None,
    cancelled: Callable[[], bool] = lambda: False,
    split: bool = True,
    piece_chars: int = PIECE_CHARS,
    call_chars: int = CALL_CHARS,
) -> Segmented:
    """What the ensemble answers for ``texts``, computed slice by slice.

    ``run(input_ids, attention_mask) -> logits`` runs at most ``max_chunks`` windows (the ONNX model);
    ``split`` tokenizes long texts in pieces (only for a tokenizer that ``splits_safely``).
    """

    def check() -> None:
        if cancelled():
            raise RequestCancelled(CANCELLED_MESSAGE)

    check_costs(texts, options)
    inputs, include = model_texts(texts, options)
    tokens = tokenize_in_pieces(tokenizer, inputs, include, split=split, piece_chars=piece_chars,
                                call_chars=call_chars, between_calls=check)
    del inputs
    plan = plan_chunks(tokens.counts, options.block_size, options.stride)
    stitcher = TokenLogitStitcher(plan, tokens.counts, options.weighting)
    if len(plan):
        # every slice padded as the whole plan would be, so the ONNX step sees what one request would give it
        seq_len = padded_length(int(plan.lengths.max()), settings.pad_to_multiple_of)
        text_starts = tokens.starts
        for first in range(0, len(plan), max_chunks):
            check()
            rows = plan.rows(first, first + max_chunks)
            input_ids, attention_mask = build_inputs(tokens.ids, text_starts, rows, settings.cls_id, settings.sep_id,
                                                     settings.pad_id, settings.pad_to_multiple_of, seq_len=seq_len)
            stitcher.add(run(input_ids, attention_mask))
    check()
    token_logits = stitcher.result()
    del stitcher
    return finish_tokens(texts, tokens.counts, tokens.ends, token_logits, options, default_threshold, language)


__all__ = ["segment_streamed", "CANCELLED_MESSAGE"]

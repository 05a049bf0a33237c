"""The two halves of a request around the ONNX model, composed from the pure steps.

:func:`prepare` is what the tokenizer model runs, :func:`finish` what the postprocessor runs; the
long-text model runs both in one process and feeds the ONNX model in slices between them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import wire
from .constraints import constrained_pieces, paragraph_constrained_pieces
from .errors import RequestError
from .chunking import build_inputs, plan_chunks
from .options import Options
from .segmentation import batch_sentence_spans, paragraph_sentence_spans
from .stitching import char_probabilities, stitch_token_logits
from .texts import TextBatch, is_blank, utf8_slices
from .tokenization import TokenizedBatch, tokenize


@dataclass(frozen=True)
class TokenizerSettings:
    cls_id: int
    sep_id: int
    pad_id: int
    pad_to_multiple_of: int = 1

    @classmethod
    def from_parameters(cls, params: dict[str, str]) -> "TokenizerSettings":
        """From the string parameters the builder renders into the tokenizer's config."""
        return cls(int(params["cls_id"]), int(params["sep_id"]), int(params["pad_id"]),
                   int(params["pad_to_multiple_of"]))


def model_texts(texts: list[str], options: Options) -> tuple[list[str], np.ndarray]:
    """The texts the model sees (spaces removed if asked) and which of them take part in inference."""
    if options.remove_whitespace_before_inference:
        texts = [text.replace(" ", "") for text in texts]
    return texts, np.array([not is_blank(text) for text in texts], dtype=bool)


def check_costs(texts: list[str], options: Options) -> None:
    """Refuse, before any work, a request whose options would cost more than the server allows."""
    if options.length_constrained:
        for index, text in enumerate(texts):
            check_constrained_cost(index, len(text), options)


def prepare(tokenizer, texts: list[str], options: Options, settings: TokenizerSettings):
    """Tokenize and cut into windows: returns the batch, the plan and the ONNX inputs."""
    check_costs(texts, options)
    inputs, include = model_texts(texts, options)
    batch = tokenize(tokenizer, inputs, include)
    plan = plan_chunks(batch.counts, options.block_size, options.stride)
    input_ids, attention_mask = build_inputs(
        batch.ids, batch.starts, plan, settings.cls_id, settings.sep_id, settings.pad_id, settings.pad_to_multiple_of
    )
    return batch, plan, input_ids, attention_mask


@dataclass
class Segmented:
    texts: list[str]
    counts: np.ndarray  # int32 [texts]: sentences per text
    spans: np.ndarray  # int64 [sentences, 2]: each sentence's [start, end) in its text
    paragraphs: np.ndarray  # int32 [sentences]
    paragraph_counts: np.ndarray  # int32 [texts]
    char_probs: np.ndarray  # float32 [all texts' characters]: over the original texts, concatenated
    # The sentences as strings where one is not the slice of its span (wtpsplit's join of two stripped
    # pieces under length constraints); None: every sentence is texts[i][start:end], made only when asked.
    strings: list[str] | None = None

    @property
    def sentences(self) -> list[str]:
        """All texts' sentences, in order."""
        if self.strings is not None:
            return self.strings
        owner = np.repeat(np.arange(len(self.texts)), self.counts)
        return [self.texts[i][a:b] for i, (a, b) in zip(owner.tolist(), self.spans.tolist())]

    def encoded_sentences(self) -> np.ndarray:
        """The sentences as a BYTES tensor (object array of UTF-8 ``bytes``), cut from each text's UTF-8
        without making a ``str`` per sentence first (millions of them for a long text)."""
        if self.strings is not None:
            return np.array([s.encode("utf-8") for s in self.strings], dtype=np.object_).reshape(-1)
        return utf8_slices(self.texts, self.counts, self.spans)


def batch_probabilities(
    texts: list[str],
    batch: TextBatch,
    token_counts: np.ndarray,
    token_ends: np.ndarray,
    chunk_logits: np.ndarray,
    options: Options,
) -> np.ndarray:
    """Every character's boundary probability (what ``SaT.predict_proba`` computes), texts concatenated.

    ``batch`` is :meth:`TextBatch.of` ``texts``. With ``remove_whitespace_before_inference`` the model
    saw the texts without ' ', so the tokens' offsets count those texts' characters; the spaces get 0.
    """
    counts = np.asarray(token_counts, dtype=np.int64)
    plan = plan_chunks(counts, options.block_size, options.stride)
    token_logits = stitch_token_logits(chunk_logits, plan, counts, options.weighting)
    return token_probabilities(texts, batch, counts, token_ends, token_logits, options)


def token_probabilities(
    texts: list[str],
    batch: TextBatch,
    token_counts: np.ndarray,
    token_ends: np.ndarray,
    token_logits: np.ndarray,
    options: Options,
) -> np.ndarray:
    """:func:`batch_probabilities` from the stitched per-token logits."""
    counts = np.asarray(token_counts, dtype=np.int64)
    if not options.remove_whitespace_before_inference:
        return char_probabilities(batch.lengths, token_logits, token_ends, counts)
    keep = batch.cps != 0x20
    kept_lengths = [len(text) for text in model_texts(texts, options)[0]]
    probs = np.zeros(len(batch.cps), dtype=np.float32)
    probs[keep] = char_probabilities(kept_lengths, token_logits, token_ends, counts)
    return probs


def text_probabilities(
    texts: list[str],
    token_counts: np.ndarray,
    token_ends: np.ndarray,
    chunk_logits: np.ndarray,
    options: Options,
) -> list[np.ndarray]:
    """:func:`batch_probabilities` as one float32 array per text."""
    batch = TextBatch.of(texts)
    probs = batch_probabilities(texts, batch, token_counts, token_ends, chunk_logits, options)
    return np.split(probs, np.cumsum(batch.lengths)[:-1]) if len(texts) else []


# Length-constrained segmentation costs time proportional to a text's characters times the longest
# segment it may have, min(max_length, characters) (without max_length: the characters squared), in
# wtpsplit too. One text may cost at most this much: 20,000 characters without max_length, about 0.5-2 s
# on one core; a million characters with max_length up to 400.
MAX_UNBOUNDED_CONSTRAINED_CHARS = 20_000
MAX_CONSTRAINED_CELLS = MAX_UNBOUNDED_CONSTRAINED_CHARS ** 2


def check_constrained_cost(index: int, n_chars: int, options: Options) -> None:
    """Refuse a length-constrained text whose segmentation would cost more than ``MAX_CONSTRAINED_CELLS``,
    naming the text and what to change; a ``max_length`` past the text costs what the text's length does."""
    reach = n_chars if options.max_length is None else min(options.max_length, n_chars)
    if n_chars * reach <= MAX_CONSTRAINED_CELLS:
        return
    if options.max_length is None:
        raise RequestError(
            f"TEXT[{index}] has {n_chars:,} characters; min_length without max_length costs time quadratic in the "
            f"length, so it is limited to {MAX_UNBOUNDED_CONSTRAINED_CHARS:,} characters: set 'max_length' (at most "
            f"{MAX_CONSTRAINED_CELLS // n_chars:,} for this text) or send shorter texts"
        )
    raise RequestError(
        f"TEXT[{index}] has {n_chars:,} characters and max_length {options.max_length:,}; length-constrained "
        f"segmentation costs time proportional to the characters times min(max_length, characters), "
        f"{n_chars:,} x {reach:,} here, and one text may cost at most {MAX_CONSTRAINED_CELLS:,}: set 'max_length' "
        f"to at most {MAX_CONSTRAINED_CELLS // n_chars:,} for this text, or send shorter texts"
    )


def _segment_text(index: int, text: str, probs: np.ndarray, options: Options, threshold: float,
                  language: str | None):
    """One text's sentence spans, strings (None: the plain slices), paragraph indices and paragraph count,
    for the options that work text by text (length constraints, paragraphs)."""
    if options.length_constrained:
        constraint = (options.min_length, options.max_length, options.prior_type, options.prior_kwargs,
                      options.algorithm, options.strip_whitespace, language)
        if options.do_paragraph_segmentation:
            pieces, para, n_paragraphs = paragraph_constrained_pieces(
                text, probs, options.paragraph_threshold, *constraint)
        else:
            pieces = constrained_pieces(text, probs, *constraint)
            para = np.zeros(len(pieces.starts), dtype=np.int32)
            n_paragraphs = 1 if len(pieces.starts) else 0
        strings = pieces.texts(text) if pieces.has_cuts else None
        return pieces.starts, pieces.ends, strings, para, n_paragraphs
    (s, e), para, n_paragraphs = paragraph_sentence_spans(
        text, probs, threshold, options.paragraph_threshold, options.strip_whitespace)
    return s, e, None, para, n_paragraphs


def _segment_each(texts, probs, batch, options, threshold, language) -> Segmented:
    starts, ends, paragraphs, joined = [], [], [], {}
    counts = np.zeros(len(texts), dtype=np.int32)
    paragraph_counts = np.zeros(len(texts), dtype=np.int32)
    offsets = batch.starts
    for index, text in enumerate(texts):
        p = probs[offsets[index]: offsets[index] + len(text)]
        s, e, strings, para, paragraph_counts[index] = _segment_text(index, text, p, options, threshold, language)
        starts.append(s)
        ends.append(e)
        paragraphs.append(para)
        counts[index] = len(s)
        if strings is not None:
            joined[index] = strings
    if texts:
        spans = np.stack([np.concatenate(starts), np.concatenate(ends)], axis=1).astype(np.int64)
        paragraph = np.concatenate(paragraphs).astype(np.int32)
    else:
        spans, paragraph = np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.int32)
    segmented = Segmented(texts, counts, spans, paragraph, paragraph_counts, probs)
    if joined:
        sentences = []
        for index, text in enumerate(texts):
            sentences.extend(joined.get(index) or [text[a:b] for a, b in zip(starts[index].tolist(), ends[index].tolist())])
        segmented.strings = sentences
    return segmented


def finish(
    texts: list[str],
    token_counts: np.ndarray,
    token_ends: np.ndarray,
    chunk_logits: np.ndarray,
    options: Options,
    default_threshold: float,
    language: str | None = None,
) -> Segmented:
    """Stitch, threshold (or apply the length constraints) and cut every text into sentences.

    ``language`` is the model's language (a LoRA build's), used for the length priors' defaults.
    Plain thresholding runs once over the whole request; length constraints and paragraphs text by text."""
    counts = np.asarray(token_counts, dtype=np.int64)
    plan = plan_chunks(counts, options.block_size, options.stride)
    token_logits = stitch_token_logits(chunk_logits, plan, counts, options.weighting)
    return finish_tokens(texts, counts, token_ends, token_logits, options, default_threshold, language)


def finish_tokens(
    texts: list[str],
    token_counts: np.ndarray,
    token_ends: np.ndarray,
    token_logits: np.ndarray,
    options: Options,
    default_threshold: float,
    language: str | None = None,
) -> Segmented:
    """:func:`finish` from the stitched per-token logits (what the long model accumulates slice by slice)."""
    check_costs(texts, options)
    threshold = options.threshold if options.threshold is not None else default_threshold
    batch = TextBatch.of(texts)
    probs = token_probabilities(texts, batch, token_counts, token_ends, token_logits, options)
    if options.length_constrained or options.do_paragraph_segmentation:
        return _segment_each(texts, probs, batch, options, threshold, language)
    owner, starts, ends = batch_sentence_spans(batch.cps, batch.lengths, probs, threshold,
                                               options.strip_whitespace, options.split_on_input_newlines)
    del batch
    counts = np.bincount(owner, minlength=len(texts)).astype(np.int32)
    return Segmented(texts, counts, np.stack([starts, ends], axis=1).astype(np.int64),
                     np.zeros(len(owner), dtype=np.int32), (counts > 0).astype(np.int32), probs)


def output_arrays(segmented: Segmented, char_probs: bool = True) -> dict[str, np.ndarray]:
    """The public output tensors of a request, by wire name (``CHAR_PROBS`` only if asked for)."""
    outputs = {
        wire.SENTENCES: segmented.encoded_sentences(),
        wire.SENTENCE_COUNTS: segmented.counts.astype(np.int32),
        wire.SENTENCE_SPANS: segmented.spans.reshape(-1, 2).astype(np.int64),
        wire.SENTENCE_PARAGRAPH: segmented.paragraphs.astype(np.int32),
        wire.PARAGRAPH_COUNTS: segmented.paragraph_counts.astype(np.int32),
    }
    if char_probs:
        outputs[wire.CHAR_PROBS] = segmented.char_probs.astype(np.float32)
    return outputs


def string_parameters(model_config: dict) -> dict[str, str]:
    """A model config's ``parameters`` as plain strings (what the builder rendered)."""
    return {key: value["string_value"] for key, value in model_config.get("parameters", {}).items()}


__all__ = ["output_arrays", "string_parameters", "TokenizerSettings", "TokenizedBatch", "prepare", "finish",
           "finish_tokens", "batch_probabilities", "token_probabilities", "text_probabilities", "Segmented",
           "check_costs", "check_constrained_cost"]

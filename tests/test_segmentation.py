"""Sentence cutting against wtpsplit's own functions, on random texts and probabilities."""

import numpy as np
import pytest

from sat_triton.pipeline.segmentation import batch_sentence_spans, paragraph_sentence_spans, sentence_spans
from sat_triton.pipeline.texts import TextBatch

wtp_utils = pytest.importorskip("wtpsplit.utils")

ALPHABET = list("ab .!?\n\n  \t\u3000\u00a0xyz\u05d0😀e\u0301\r")


def reference_split(text, probs, threshold, strip_whitespace, split_on_input_newlines):
    """The no-constraints branch of wtpsplit 2.2.2's SaT._split, verbatim in behaviour."""
    sentences = wtp_utils.indices_to_sentences(
        text, np.where(probs > threshold)[0], strip_whitespace=strip_whitespace
    )
    if split_on_input_newlines:
        new_sentences = []
        for i, sentence in enumerate(sentences):
            if i < len(sentences) - 1 and sentence.endswith("\n"):
                sentence = sentence[:-1]
            new_sentences.extend(sentence.split("\n"))
        sentences = new_sentences
    return sentences


def reference_paragraphs(text, probs, threshold, paragraph_threshold, strip_whitespace):
    offset, paragraphs = 0, []
    for paragraph in wtp_utils.indices_to_sentences(text, np.where(probs > paragraph_threshold)[0]):
        paragraphs.append(
            list(
                wtp_utils.indices_to_sentences(
                    paragraph,
                    np.where(probs[offset : offset + len(paragraph)] > threshold)[0],
                    strip_whitespace=strip_whitespace,
                )
            )
        )
        offset += len(paragraph)
    return paragraphs


def random_case(rng):
    n = int(rng.integers(0, 40))
    text = "".join(rng.choice(ALPHABET, size=n)) if n else ""
    probs = rng.random(len(text)).astype(np.float32)
    return text, probs


@pytest.mark.parametrize("strip_whitespace", [False, True])
@pytest.mark.parametrize("split_on_input_newlines", [False, True])
def test_sentence_spans_match_wtpsplit(strip_whitespace, split_on_input_newlines):
    rng = np.random.default_rng(0)
    for _ in range(3000):
        text, probs = random_case(rng)
        threshold = float(rng.choice([0.1, 0.5, 0.9]))
        starts, ends = sentence_spans(text, probs, threshold, strip_whitespace, split_on_input_newlines)
        got = [text[a:b] for a, b in zip(starts, ends)]
        assert got == reference_split(text, probs, threshold, strip_whitespace, split_on_input_newlines), text


@pytest.mark.parametrize("strip_whitespace", [False, True])
@pytest.mark.parametrize("split_on_input_newlines", [False, True])
def test_one_call_over_a_request_cuts_each_text_as_wtpsplit(strip_whitespace, split_on_input_newlines):
    """The postprocessor cuts all texts of a request in one call; each must come out as wtpsplit cuts
    it alone, whatever its neighbours (empty, blank, ending in a boundary, a space or a newline)."""
    rng = np.random.default_rng(3)
    for _ in range(1500):
        cases = [random_case(rng) for _ in range(int(rng.integers(0, 8)))]
        texts = [text for text, _ in cases]
        probs = np.concatenate([p for _, p in cases]) if cases else np.zeros(0, dtype=np.float32)
        batch = TextBatch.of(texts)
        owner, starts, ends = batch_sentence_spans(batch.cps, batch.lengths, probs, 0.5, strip_whitespace,
                                                   split_on_input_newlines)
        assert np.all(np.diff(owner) >= 0)
        got = [[] for _ in texts]
        for i, a, b in zip(owner.tolist(), starts.tolist(), ends.tolist()):
            got[i].append(texts[i][a:b])
        expected = [reference_split(text, p, 0.5, strip_whitespace, split_on_input_newlines) for text, p in cases]
        assert got == expected, texts


@pytest.mark.parametrize("strip_whitespace", [False, True])
def test_paragraph_spans_match_wtpsplit(strip_whitespace):
    rng = np.random.default_rng(1)
    for _ in range(2000):
        text, probs = random_case(rng)
        (starts, ends), owner, n_paragraphs = paragraph_sentence_spans(text, probs, 0.5, 0.8, strip_whitespace)
        expected = reference_paragraphs(text, probs, 0.5, 0.8, strip_whitespace)
        assert n_paragraphs == len(expected)
        nested = [[] for _ in range(n_paragraphs)]
        for a, b, p in zip(starts, ends, owner):
            nested[p].append(text[a:b])
        assert nested == expected, text


def test_spans_account_for_every_character():
    """Gaps between spans hold only whitespace the options drop; nothing else is lost or changed."""
    rng = np.random.default_rng(2)
    for _ in range(2000):
        text, probs = random_case(rng)
        for strip in (False, True):
            starts, ends = sentence_spans(text, probs, 0.5, strip, True)
            assert np.all(starts <= ends)
            assert np.all(starts[1:] >= ends[:-1])
            edges = np.concatenate(([0], np.ravel(np.column_stack([starts, ends])), [len(text)]))
            gaps = [text[a:b] for a, b in zip(edges[::2], edges[1::2])]
            assert all(gap.isspace() or gap == "" for gap in gaps), (text, gaps)
            if not strip:
                # without stripping, only the newlines split on are left out
                assert all(set(gap) <= {"\n"} for gap in gaps[1:-1]), (text, gaps)


def test_threshold_compares_in_float32():
    """wtpsplit compares float32 probabilities with the threshold as float32."""
    text = "ab"
    p = np.array([np.float32(0.025), 0.0], dtype=np.float32)
    starts, _ = sentence_spans(text, p, 0.025)
    assert len(starts) == 1  # float32(0.025) > float32(0.025) is false
    p[0] = np.nextafter(np.float32(0.025), np.float32(1))
    starts, _ = sentence_spans(text, p, 0.025)
    assert len(starts) == 2


def test_whitespace_table_is_str_isspace_for_every_code_point():
    import sys

    from sat_triton.pipeline.texts import space_mask

    every = np.arange(sys.maxunicode + 1, dtype=np.uint32)
    expected = np.array([chr(c).isspace() for c in range(sys.maxunicode + 1)])
    assert np.array_equal(space_mask(every), expected)

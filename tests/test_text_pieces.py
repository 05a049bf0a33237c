"""Tokenizing in pieces (sat_pipeline/text_pieces.py) gives exactly the ids and offsets of one call, for
tokenizers built like SaT's: the tests' tiny one (NFKC, Metaspace) and one shaped as transformers
converts XLM-R's (a normalizer sequence with runs of spaces replaced and a right strip, an lstrip
``<mask>``, either prepend scheme), on random texts full of what could break a cut."""

import json

import numpy as np
import pytest

from sat_triton.pipeline.text_pieces import cut_points, splits_safely, tokenize_in_pieces
from sat_triton.pipeline.texts import codepoints
from sat_triton.pipeline.tokenization import load_tokenizer, tokenize

# Pieces of text: ASCII around spaces (the cut points), and what could join across one: combining
# marks, ZWJ sequences, regional indicators, a Prepend character, Hangul jamo, compatibility forms,
# runs of spaces, other whitespace, literal special tokens, controls.
ATOMS = ["ab", "x", "1", "a b", "x. Y", "c d", "q,r", ".", "!", "?", ",", "<", ">", " ", " ", " ", "  ", "   ", "\t", "\n", "\r\n", "e\u0301",
         "\u0301", "\u0308", "\u200d", "\U0001F468", "\U0001F469", "\U0001F1E9", "\U0001F1EA", "\u0600", "\u1100",
         "\u1161", "\u11a8", "\ufb01", "\u00a0", "\u3000", "\uff21", "\u2126", "\u00c5", "A\u030a", "<s>", "</s>",
         "<pad>", "<mask>", "<unk>", "\x00", "\x07", "\u4e2d\u6587", "\u0627\u0644", "word", "Sentence."]


def xlmr_shaped(tokenizer_dir, prepend_scheme="always"):
    """The tiny tokenizer with XLM-R's structure around it (transformers' converter: a normalizer
    sequence, runs of spaces replaced, right strip; ``<mask>`` with lstrip). NFKC stands in for the
    Precompiled charsmap, which needs a sentencepiece model."""
    from tokenizers import AddedToken, Tokenizer

    spec = json.loads((tokenizer_dir / "tokenizer.json").read_text())
    spec["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "NFKC"},
        {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "},
        {"type": "Strip", "strip_left": False, "strip_right": True},
    ]}
    spec["pre_tokenizer"]["prepend_scheme"] = prepend_scheme
    tokenizer = Tokenizer.from_str(json.dumps(spec))
    tokenizer.add_special_tokens([AddedToken("<mask>", lstrip=True, special=True)])
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def random_texts(rng, count, size):
    return ["".join(rng.choice(ATOMS, size=int(rng.integers(0, size)))) for _ in range(count)]


@pytest.mark.parametrize("shape", ["tiny", "xlmr_always", "xlmr_first"])
def test_pieces_give_the_tokens_of_one_call(tokenizer_dir, shape):
    tokenizer = (load_tokenizer(tokenizer_dir / "tokenizer.json") if shape == "tiny"
                 else xlmr_shaped(tokenizer_dir, shape.split("_")[1]))
    assert splits_safely(tokenizer)
    rng = np.random.default_rng(len(shape))
    cuts = 0
    for _ in range(60):
        texts = random_texts(rng, int(rng.integers(1, 6)), 400)
        include = rng.random(len(texts)) < 0.85
        piece_chars = int(rng.integers(2, 40))
        whole = tokenize(tokenizer, texts, include)
        pieces = tokenize_in_pieces(tokenizer, texts, include, piece_chars=piece_chars,
                                    call_chars=int(rng.integers(1, 300)))
        np.testing.assert_array_equal(pieces.counts, whole.counts)
        np.testing.assert_array_equal(pieces.ids, whole.ids)
        np.testing.assert_array_equal(pieces.ends, whole.ends)
        assert pieces.ids.dtype == np.int32
        cuts += sum(len(cut_points(codepoints(t), piece_chars)) for t in texts)
    assert cuts > 300  # the texts were cut, many times


def test_cut_points_sit_before_a_lone_space_between_printable_ascii():
    text = "Hello world.  Two  spaces\tand e\u0301 x 中 文 end. Last one"
    cps = codepoints(text)
    cuts = cut_points(cps, 5)
    assert len(cuts) > 0
    for cut in cuts.tolist():
        assert text[cut] == " " and "!" <= text[cut - 1] <= "~" and "!" <= text[cut + 1] <= "~"
    assert cut_points(cps, len(text)).size == 0
    assert cut_points(codepoints("中文" * 100), 10).size == 0  # no safe point: one piece


@pytest.mark.parametrize("change", [
    lambda s: s.update(pre_tokenizer={"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                                      "use_regex": True}),
    lambda s: s["pre_tokenizer"].update(split=False),
    lambda s: s.update(normalizer={"type": "Strip", "strip_left": True, "strip_right": True}),
    lambda s: s.update(normalizer={"type": "Replace", "pattern": {"String": "a b"}, "content": "c"}),
    lambda s: s.update(normalizer={"type": "Replace", "pattern": {"String": "a"}, "content": " "}),
    lambda s: s.update(normalizer={"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True,
                                   "strip_accents": None, "lowercase": True}),
    lambda s: s["added_tokens"].append({"id": 3, "content": "<unk>", "single_word": False, "lstrip": False,
                                        "rstrip": True, "normalized": False, "special": True}),
    lambda s: s["added_tokens"].append({"id": 3, "content": "a b", "single_word": False, "lstrip": False,
                                        "rstrip": False, "normalized": False, "special": True}),
])
def test_tokenizers_of_other_shapes_are_tokenized_whole(tokenizer_dir, change):
    from tokenizers import Tokenizer

    spec = json.loads((tokenizer_dir / "tokenizer.json").read_text())
    change(spec)
    assert not splits_safely(Tokenizer.from_str(json.dumps(spec)))

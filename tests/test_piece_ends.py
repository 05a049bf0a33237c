"""The tokenizer step's fast path (sat_pipeline/piece_ends.py): ends rebuilt from the pieces are exactly
``encode_batch``'s offsets, for every pipeline it accepts, on random texts and on fuzzed ones; it
declines pipelines it cannot follow, and it does rebuild most texts of an ordinary corpus."""

import json
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corpus import EDGE_CASES, SENTENCES, multilingual_texts
from test_tokenization import PIECES, one_by_one, random_texts

from sat_triton.pipeline.piece_ends import MIN_REBUILD_CHARS, PieceEnds
from sat_triton.pipeline.tokenization import ServingTokenizer, load_tokenizer, tokenize

NORMALIZERS = {
    "nfkc": {"type": "NFKC"},
    "none": None,
    "nfd": {"type": "NFD"},
    "lowercase": {"type": "Sequence", "normalizers": [{"type": "NFKC"}, {"type": "Lowercase"}]},
    # what transformers' SpmConverter writes around sentencepiece's charsmap: strip right, runs of spaces
    "spm-like": {"type": "Sequence", "normalizers": [
        {"type": "NFKC"}, {"type": "Strip", "strip_left": False, "strip_right": True},
        {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": "\u2581"}]},
}


def _metaspace(scheme):
    return {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": scheme, "split": True}


PRE_TOKENIZERS = {f"metaspace-{s}": _metaspace(s) for s in ("always", "first", "never")}
PRE_TOKENIZERS.update({f"whitespace+metaspace-{s}": {"type": "Sequence", "pretokenizers": [
    {"type": "WhitespaceSplit"}, _metaspace(s)]} for s in ("always", "first", "never")})


def variant(tokenizer_dir, normalizer, pre_tokenizer):
    from tokenizers import Tokenizer

    spec = json.loads((tokenizer_dir / "tokenizer.json").read_text())
    spec.update(normalizer=normalizer, pre_tokenizer=pre_tokenizer)
    library = Tokenizer.from_str(json.dumps(spec))
    library.no_padding()
    library.no_truncation()
    return library


def texts_for(seed: int) -> list[str]:
    rng = random.Random(seed)
    texts = random_texts(120, seed) + EDGE_CASES + multilingual_texts(20, seed=seed)
    texts += ["".join(rng.choice(PIECES) for _ in range(rng.randint(1, 25))) for _ in range(120)]
    texts += [" " + t for t in SENTENCES[:10]] + [t + "  " for t in SENTENCES[10:20]]
    rng.shuffle(texts)
    return texts


def assert_same_as_library(library, served, texts, include=None):
    batch = tokenize(served, texts, include)
    keep = np.ones(len(texts), bool) if include is None else include
    ids, ends, counts = one_by_one(library, texts, keep)
    assert batch.counts.tolist() == counts
    assert batch.ids.tolist() == ids
    assert batch.ends.tolist() == ends


@pytest.mark.parametrize("pre_tokenizer", sorted(PRE_TOKENIZERS))
@pytest.mark.parametrize("normalizer", sorted(NORMALIZERS))
def test_rebuilt_ends_are_the_librarys_for_every_accepted_pipeline(tokenizer_dir, normalizer, pre_tokenizer):
    library = variant(tokenizer_dir, NORMALIZERS[normalizer], PRE_TOKENIZERS[pre_tokenizer])
    pieces = PieceEnds.for_tokenizer(library)
    assert pieces is not None
    served = ServingTokenizer(library, pieces)
    texts = texts_for(len(normalizer) * 7 + len(pre_tokenizer))
    assert sum(map(len, texts)) >= MIN_REBUILD_CHARS  # one request: the rebuild runs
    rebuilt = pieces.encode(texts)[3]
    assert 0 < rebuilt.sum() < len(texts)  # both paths, then merged back in order
    assert_same_as_library(library, served, texts)
    include = np.array([i % 3 != 0 for i in range(len(texts))])
    assert_same_as_library(library, served, texts, include)


def test_most_texts_of_a_corpus_are_rebuilt(tokenizer_dir):
    """The fast path is used, not declined text by text: the test tokenizer's own corpus, and its
    texts with spaces of every kind, full-width punctuation and leading spaces."""
    served = ServingTokenizer.load(tokenizer_dir / "tokenizer.json")
    assert served.pieces is not None
    texts = SENTENCES + [s.replace(" ", "\u3000", 1) + "\uff01" for s in SENTENCES] + [" " + s for s in SENTENCES]
    assert served.pieces.encode(texts)[3].mean() > 0.9
    assert_same_as_library(served.library, served, texts)


def test_small_requests_read_the_librarys_offsets(tokenizer_dir, monkeypatch):
    served = ServingTokenizer.load(tokenizer_dir / "tokenizer.json")
    calls = []
    monkeypatch.setattr(served.pieces, "encode", lambda texts: calls.append(texts))
    small = ["Hello world."] * 3
    assert_same_as_library(served.library, served, small)
    assert calls == []  # under MIN_REBUILD_CHARS: encode_batch, no fixed numpy cost


def test_pipelines_it_cannot_follow_are_declined(tokenizer_dir):
    from tokenizers import Tokenizer, models, pre_tokenizers

    assert PieceEnds.for_tokenizer(variant(tokenizer_dir, None, {"type": "Whitespace"})) is None
    assert PieceEnds.for_tokenizer(variant(tokenizer_dir, None, None)) is None
    unsplit = dict(_metaspace("always"), split=False)
    assert PieceEnds.for_tokenizer(variant(tokenizer_dir, None, unsplit)) is None
    bpe = Tokenizer(models.BPE({"a": 0, "b": 1, "<unk>": 2}, [], unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.Metaspace()
    assert PieceEnds.for_tokenizer(bpe) is None
    # a bare library tokenizer never takes the fast path
    library = load_tokenizer(tokenizer_dir / "tokenizer.json")
    texts = SENTENCES * 4
    batch = tokenize(library, texts)
    ids, ends, counts = one_by_one(library, texts, np.ones(len(texts), bool))
    assert batch.ends.tolist() == ends


TRICKY = st.sampled_from(list(" \t\n\u00a0\u3000\u2009\u2581.,!?。，！？") + ["e\u0301", "\uff21", "\ufb01", "\u2460", "😀",
                                                                              "<s>", "\u0915\u094d\u0937"])
WORDS = st.sampled_from([w for s in SENTENCES for w in s.split()] + ["日本語", "Привет", "مرحبا"])


FUZZED = {}  # (tokenizer_dir, pre-tokenizer) -> (library tokenizer, its PieceEnds)


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(texts=st.lists(st.lists(st.one_of(WORDS, TRICKY, st.text(max_size=3)), max_size=40).map("".join),
                      min_size=1, max_size=12),
       scheme=st.sampled_from(sorted(PRE_TOKENIZERS)))
def test_fuzzed_texts_get_the_librarys_ends(tokenizer_dir, texts, scheme):
    if (tokenizer_dir, scheme) not in FUZZED:
        library = variant(tokenizer_dir, NORMALIZERS["nfkc"], PRE_TOKENIZERS[scheme])
        FUZZED[tokenizer_dir, scheme] = library, PieceEnds.for_tokenizer(library)
    library, pieces = FUZZED[tokenizer_dir, scheme]
    ids, ends, counts, rebuilt = pieces.encode(texts)  # the rebuild itself, whatever the request's size
    expected_ids, expected_ends, expected_counts = one_by_one(library, texts, rebuilt)
    assert counts.tolist() == expected_counts
    assert ids.tolist() == expected_ids
    assert ends.tolist() == expected_ends


def test_a_rebuild_that_cannot_be_set_up_leaves_the_library_path(tokenizer_dir, monkeypatch):
    """Another tokenizers version might reject the clone's description: the model still loads, with a
    warning, and reads encode_batch's offsets."""
    def broken(tokenizer):
        raise Exception("unknown field")

    monkeypatch.setattr(PieceEnds, "for_tokenizer", broken)
    with pytest.warns(RuntimeWarning, match="read from encode_batch"):
        served = ServingTokenizer.load(tokenizer_dir / "tokenizer.json")
    assert served.pieces is None
    assert_same_as_library(served.library, served, SENTENCES * 10)


def test_several_unknown_runs_in_one_word_are_rebuilt(tokenizer_dir):
    """Each <unk> is one run of characters without a piece of their own (private-use characters are in
    no vocabulary): two runs in one word, a run at a text's start and end, runs in a long text."""
    served = ServingTokenizer.load(tokenizer_dir / "tokenizer.json")
    stable = [s for s in SENTENCES if served.library.normalizer.normalize_str(s) == s]  # not "e\u0301" (NFKC: é)
    texts = ["x\ue000y\ue001z word \ue002\ue003.", "\ue004Hello\ue005", "日本\ue006語\ue007\ue008。",
             " ".join(f"{s}\ue009{s[:3]}\ue00a" for s in stable * 30)]
    ids, ends, counts, rebuilt = served.pieces.encode(texts)
    assert rebuilt.all()
    assert (ids == 3).sum() >= 10  # the <unk> id: several per text
    assert_same_as_library(served.library, served, texts)

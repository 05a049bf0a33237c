"""tokenize(): the flat arrays hold exactly the ids and code-point end offsets the tokenizers library
gives text by text, on random multilingual texts and the edge cases (bulk conversion, no Python step
per token)."""

import random

import numpy as np
import pytest

from corpus import EDGE_CASES, SENTENCES, long_text, multilingual_texts

from sat_triton.pipeline.tokenization import load_tokenizer, tokenize

# Pieces random texts are made of: scripts, combining marks, emoji (ZWJ families, flags, skin tones),
# CJK, every kind of space, controls, and the tokenizer's own special tokens written out.
PIECES = ["Hello", " world", ".", "!", "?", " ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u2009", "\u3000", "\u200b",
          "e\u0301", "a\u0308\u0323", "n\u0303", "\u0915\u094d\u0937", "\u0e01\u0e34\u0e48", "ﬁ", "①", "Ａ",
          "😀", "👨\u200d👩\u200d👧", "🇩🇪", "👍🏽", "日本語", "中文。", "한국어", "カタカナ", "Привет", "Καλημέρα",
          "مرحبا", "שלום", "<s>", "</s>", "<unk>", "<pad>", "\x00", "\x07", "123", "4.5", "’", "—", "…"]


def random_texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        size = rng.choice([0, 1, 2, 5, 20, 80, 300])
        texts.append("".join(rng.choice(PIECES + [rng.choice(SENTENCES)]) for _ in range(size)))
    return texts


def one_by_one(tokenizer, texts, include):
    """The reference: each kept text encoded alone, its ids and offsets read as Python lists."""
    ids, ends, counts = [], [], []
    for text, keep in zip(texts, include):
        encoding = tokenizer.encode(text, add_special_tokens=False) if keep else None
        counts.append(len(encoding.ids) if keep else 0)
        if keep:
            ids += encoding.ids
            ends += [end for _, end in encoding.offsets]
    return ids, ends, counts


@pytest.fixture(scope="module")
def tokenizer(tokenizer_dir):
    return load_tokenizer(tokenizer_dir / "tokenizer.json")


@pytest.mark.parametrize("seed", range(4))
def test_bulk_arrays_match_the_library_text_by_text(tokenizer, seed):
    rng = random.Random(seed)
    texts = random_texts(150, seed) + EDGE_CASES + multilingual_texts(30, seed=seed)
    if seed == 0:
        texts.append(long_text(60_000, seed=1))  # very long: thousands of tokens in one text
    rng.shuffle(texts)
    include = np.array([rng.random() > 0.2 for _ in texts])
    for keep in (include, None):
        batch = tokenize(tokenizer, texts, keep)
        ids, ends, counts = one_by_one(tokenizer, texts, np.ones(len(texts), bool) if keep is None else keep)
        assert batch.ids.dtype == batch.ends.dtype == batch.counts.dtype == np.int64
        assert batch.counts.tolist() == counts
        assert batch.ids.tolist() == ids
        assert batch.ends.tolist() == ends
        assert batch.starts.tolist() == np.concatenate(([0], np.cumsum(counts)[:-1])).tolist()


def test_nothing_to_encode(tokenizer):
    for texts, include in (([], None), (["", "a"], np.array([False, False]))):
        batch = tokenize(tokenizer, texts, include)
        assert batch.ids.shape == batch.ends.shape == (0,) and batch.counts.tolist() == [0] * len(texts)

"""Chunking and stitching against wtpsplit's ``extract`` and ``token_to_char_probs``, bit for bit.

A fake model whose logits depend only on (token id, position) stands in for the network, so the only
thing compared is the chunking, padding, float16 accumulation and token-to-character mapping.
"""

import types

import numpy as np
import pytest

from corpus import EDGE_CASES, long_text, multilingual_texts
from sat_triton.pipeline.chunking import build_inputs, plan_chunks
from sat_triton.pipeline.errors import RequestError
from sat_triton.pipeline.options import Options
from sat_triton.pipeline.pipeline import model_texts, text_probabilities
from sat_triton.pipeline.stitching import char_probabilities, stitch_token_logits
from sat_triton.pipeline.tokenization import load_tokenizer, tokenize

extract_mod = pytest.importorskip("wtpsplit.extract")
wtp_utils = pytest.importorskip("wtpsplit.utils")


def fake_logits(input_ids):
    pos = np.arange(input_ids.shape[1])[None, :]
    return (np.sin(input_ids * 0.37 + pos * 1.3) * 4 - 1).astype(np.float32)


class FakeModel:
    config = types.SimpleNamespace(model_type="xlm-token", num_labels=1)

    def __call__(self, attention_mask, input_ids=None, **kwargs):
        return {"logits": fake_logits(input_ids)[..., None]}


def reference_probs(texts, hf_tokenizer, stride, block_size, weighting):
    kept = [t for t in texts if t.strip()]
    logits, _, _, tokens = extract_mod.extract(
        kept, FakeModel(), stride=stride, max_block_size=block_size, batch_size=7, weighting=weighting,
        tokenizer=hf_tokenizer,
    )
    out, j = [], 0
    for text in texts:
        if not text.strip():
            out.append(None)
            continue
        char = wtp_utils.token_to_char_probs(text, tokens["input_ids"][j], logits[j], [], tokens["offset_mapping"][j])
        out.append(wtp_utils.sigmoid(char[:, 0]))
        j += 1
    return out


def our_probs(texts, tokenizer_dir, stride, block_size, weighting):
    tok = load_tokenizer(tokenizer_dir / "tokenizer.json")
    options = Options(stride=stride, block_size=block_size, weighting=weighting)
    inputs, include = model_texts(texts, options)
    batch = tokenize(tok, inputs, include)
    plan = plan_chunks(batch.counts, block_size, stride)
    input_ids, mask = build_inputs(batch.ids, batch.starts, plan, 0, 2, 1, pad_to_multiple_of=16)
    assert np.all(input_ids[mask == 0] == 1)
    return text_probabilities(texts, batch.counts, batch.ends, fake_logits(input_ids), options)


@pytest.mark.parametrize(
    "stride,block_size,weighting",
    [(64, 512, "uniform"), (3, 8, "uniform"), (5, 16, "hat"), (16, 16, "uniform"), (1, 4, "hat"), (7, 600, "hat")],
)
def test_probabilities_match_wtpsplit_bit_for_bit(tokenizer_dir, stride, block_size, weighting):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    texts = multilingual_texts(30, seed=stride) + [t for t in EDGE_CASES if t.strip()] + [long_text(3000, seed=1)]
    expected = reference_probs(texts, hf, stride, block_size, weighting)
    got = our_probs(texts, tokenizer_dir, stride, block_size, weighting)
    for text, e, g in zip(texts, expected, got):
        assert e.dtype == g.dtype == np.float32
        np.testing.assert_array_equal(g, e, err_msg=repr(text))


def test_plan_matches_wtpsplit_loop():
    for counts in ([1, 5, 9, 100, 513, 1000], [8, 8, 8], [3]):
        for block_size, stride in ((8, 3), (8, 8), (512, 64), (4, 1)):
            plan = plan_chunks(np.array(counts), block_size, stride)
            block = min(block_size, max(counts), 510)
            expected = []
            for i, length in enumerate(counts):
                for j in range(0, length, stride):
                    start, end = j, j + block
                    if end >= length:
                        expected.append((i, max(length - block, 0), length))
                        break
                    expected.append((i, start, end))
            assert list(zip(plan.text.tolist(), plan.start.tolist(), plan.end.tolist())) == expected


def test_stride_larger_than_block_is_rejected_only_when_it_matters():
    plan_chunks(np.array([3, 4]), block_size=8, stride=100)  # single windows: fine
    with pytest.raises(RequestError, match="stride.*TEXT\\[1\\]"):
        plan_chunks(np.array([3, 40]), block_size=8, stride=9)


def test_no_tokens_gives_a_valid_dummy_batch():
    plan = plan_chunks(np.array([0, 0]), 512, 64)
    ids, mask = build_inputs(np.zeros(0, dtype=np.int64), np.zeros(2, dtype=np.int64), plan, 0, 2, 1)
    assert ids.tolist() == [[0, 2]] and mask.tolist() == [[1, 1]]
    assert stitch_token_logits(np.zeros((1, 2)), plan, np.array([0, 0])).shape == (0,)


def test_run_by_length_trims_each_group_and_keeps_row_order():
    from sat_triton.pipeline.batching import length_buckets, merge_rows, run_by_length, split_rows

    rng = np.random.default_rng(0)
    lengths = np.array([5, 70, 33, 64, 2, 130, 31])
    mask = (np.arange(140)[None, :] < lengths[:, None]).astype(np.int64)
    ids = rng.integers(3, 100, size=mask.shape) * mask + (1 - mask)
    widths = []

    def run(i, m):
        widths.append(i.shape[1])
        assert i.shape[1] == m.sum(1).max()
        return fake_logits(i)

    out = run_by_length(run, ids, mask, granularity=32)
    full = fake_logits(ids)
    np.testing.assert_array_equal(out[mask == 1], full[mask == 1])
    assert sorted(widths) == [31, 64, 70, 130]  # (2, 5, 31) (33, 64) (70) (130)
    assert [sorted(g.tolist()) for g in length_buckets(lengths, 32)] == [[0, 4, 6], [2, 3], [1], [5]]
    merged_ids, merged_mask, rows = merge_rows([ids[:3, :80], ids[3:]], [mask[:3, :80], mask[3:]], pad_id=1)
    parts = split_rows(fake_logits(merged_ids), rows, [80, 140])
    assert [p.shape for p in parts] == [(3, 80), (4, 140)]


def test_char_probabilities_of_a_request_are_each_texts_own():
    """Probabilities for all texts of a request come from one array; each text's slice must be what
    wtpsplit's token_to_char_probs + sigmoid gives that text alone. A token ending at offset 0 goes on
    its own text's last character (numpy's -1 in wtpsplit), never on the previous text's."""
    rng = np.random.default_rng(5)
    for _ in range(300):
        lengths = rng.integers(0, 12, size=int(rng.integers(1, 7)))
        counts = np.array([rng.integers(0, 6) if n else 0 for n in lengths])
        ends = np.concatenate([np.sort(rng.integers(0, n + 1, size=c)) for n, c in zip(lengths, counts)])
        logits = rng.normal(0, 3, size=len(ends)).astype(np.float16)
        got = char_probabilities(lengths, logits, ends.astype(np.int64), counts)
        assert got.dtype == np.float32 and len(got) == lengths.sum()
        token_at, char_at = 0, 0
        for n, c in zip(lengths, counts):
            char_logits = np.full(n, -np.inf, dtype=np.float32)
            char_logits[ends[token_at:token_at + c] - 1] = logits[token_at:token_at + c]
            np.testing.assert_array_equal(got[char_at:char_at + n], wtp_utils.sigmoid(char_logits))
            token_at, char_at = token_at + c, char_at + n

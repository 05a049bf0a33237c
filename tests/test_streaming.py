"""The long model's streamed path (sat_pipeline/streaming.py) against wtpsplit and against the ensemble's
whole-request path: the same bits, with windows run and stitched a slice at a time, and a stop when the
client gives up."""

import numpy as np
import pytest

from corpus import EDGE_CASES, long_text, multilingual_texts
from sat_triton.pipeline.chunking import plan_chunks
from sat_triton.pipeline.errors import RequestCancelled
from sat_triton.pipeline.options import Options
from sat_triton.pipeline.pipeline import TokenizerSettings, finish, prepare
from sat_triton.pipeline.stitching import TokenLogitStitcher, stitch_token_logits
from sat_triton.pipeline.streaming import segment_streamed
from sat_triton.pipeline.tokenization import load_tokenizer
from test_stitching import fake_logits, reference_probs

SETTINGS = TokenizerSettings(cls_id=0, sep_id=2, pad_id=1, pad_to_multiple_of=16)


def counted(run, calls, max_chunks):
    def wrapped(input_ids, attention_mask):
        assert len(input_ids) <= max_chunks and input_ids.dtype == np.int64
        assert np.all(input_ids[attention_mask == 0] == SETTINGS.pad_id)
        calls.append(len(input_ids))
        return run(input_ids)
    return wrapped


@pytest.mark.parametrize(
    "stride,block_size,weighting,max_chunks,piece_chars",
    [(64, 512, "uniform", 3, 500), (3, 8, "uniform", 7, 64), (5, 16, "hat", 1, 200), (16, 16, "uniform", 16, 40),
     (7, 600, "hat", 2, 1000)],
)
def test_streamed_probabilities_match_wtpsplit_bit_for_bit(tokenizer_dir, stride, block_size, weighting, max_chunks,
                                                           piece_chars):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    texts = multilingual_texts(20, seed=stride) + [t for t in EDGE_CASES if t.strip()] + [long_text(3000, seed=1)]
    expected = reference_probs(texts, hf, stride, block_size, weighting)
    calls = []
    segmented = segment_streamed(
        load_tokenizer(tokenizer_dir / "tokenizer.json"), texts,
        Options(stride=stride, block_size=block_size, weighting=weighting), SETTINGS,
        counted(fake_logits, calls, max_chunks), max_chunks, 0.25, piece_chars=piece_chars, call_chars=3 * piece_chars,
    )
    assert len(calls) > 1
    got = np.split(segmented.char_probs, np.cumsum([len(t) for t in texts])[:-1])
    for text, e, g in zip(texts, expected, got):
        np.testing.assert_array_equal(g, e, err_msg=repr(text))


@pytest.mark.parametrize("options", [
    {}, {"stride": 16, "block_size": 32, "strip_whitespace": True}, {"remove_whitespace_before_inference": True},
    {"do_paragraph_segmentation": True, "max_length": 80}, {"min_length": 30, "prior_type": "gaussian"},
    {"threshold": 0.6, "split_on_input_newlines": False, "weighting": "hat"},
])
def test_streamed_answer_equals_the_ensemble_path(tokenizer_dir, options):
    tokenizer = load_tokenizer(tokenizer_dir / "tokenizer.json")
    texts = multilingual_texts(30, seed=2) + EDGE_CASES + [long_text(6000, seed=4), "x" * 900, ""]
    opts = Options(**options)
    batch, _, input_ids, _ = prepare(tokenizer, texts, opts, SETTINGS)
    whole = finish(texts, batch.counts, batch.ends, fake_logits(input_ids), opts, 0.25)
    streamed = segment_streamed(tokenizer, texts, opts, SETTINGS, lambda ids, mask: fake_logits(ids), 5, 0.25,
                                piece_chars=300, call_chars=1000)
    assert streamed.sentences == whole.sentences
    for name in ("counts", "spans", "paragraphs", "paragraph_counts", "char_probs"):
        np.testing.assert_array_equal(getattr(streamed, name), getattr(whole, name), err_msg=name)


def test_stitching_in_slices_changes_no_bit():
    rng = np.random.default_rng(3)
    for _ in range(300):
        counts = rng.integers(0, 60, size=int(rng.integers(1, 6)))
        block = int(rng.integers(1, 20))
        stride = int(rng.integers(1, block + 1))
        plan = plan_chunks(counts, block, stride)
        logits = rng.normal(0, 4, size=(max(len(plan), 1), plan.block_size + 2)).astype(np.float32)
        weighting = str(rng.choice(["uniform", "hat"]))
        whole = stitch_token_logits(logits, plan, counts, weighting)
        stitcher = TokenLogitStitcher(plan, counts, weighting)
        first = 0
        while first < len(plan):
            stop = first + int(rng.integers(1, 6))
            stitcher.add(logits[first:min(stop, len(plan))])
            first = stop
        np.testing.assert_array_equal(stitcher.result(), whole)
        assert stitcher.result().dtype == np.float16


def test_a_stitcher_refuses_too_many_or_too_few_windows():
    plan = plan_chunks(np.array([10]), 4, 2)
    stitcher = TokenLogitStitcher(plan, np.array([10]))
    with pytest.raises(ValueError, match="windows added"):
        stitcher.result()
    with pytest.raises(ValueError, match="the plan has"):
        stitcher.add(np.zeros((len(plan) + 1, 6), dtype=np.float32))


def test_a_cancelled_request_stops_between_slices(tokenizer_dir):
    tokenizer = load_tokenizer(tokenizer_dir / "tokenizer.json")
    text = long_text(20000, seed=8)
    calls, asked = [], []

    def cancelled():
        asked.append(1)
        return len(calls) >= 2  # the client gives up while the second slice runs

    with pytest.raises(RequestCancelled, match="cancelled"):
        segment_streamed(tokenizer, [text], Options(), SETTINGS, counted(fake_logits, calls, 4), 4, 0.25,
                         cancelled=cancelled)
    assert calls == [4, 4]  # of the ~170 windows, only two slices ran
    with pytest.raises(RequestCancelled):  # a request cancelled before it starts does no work at all
        segment_streamed(tokenizer, [text], Options(), SETTINGS, counted(fake_logits, calls, 4), 4, 0.25,
                         cancelled=lambda: True)
    assert calls == [4, 4]


def test_streamed_memory_does_not_grow_with_the_windows(tokenizer_dir):
    """Python-visible allocations (numpy included) at their peak: the whole-request path holds every
    window of the text at once, the streamed one a slice of them."""
    import tracemalloc

    tokenizer = load_tokenizer(tokenizer_dir / "tokenizer.json")
    text = long_text(120_000, seed=9)
    opts = Options()

    def peak(work):
        tracemalloc.start()
        try:
            work()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    def whole():
        batch, _, input_ids, _ = prepare(tokenizer, [text], opts, SETTINGS)
        finish([text], batch.counts, batch.ends, fake_logits(input_ids), opts, 0.25)

    def streamed():
        segment_streamed(tokenizer, [text], opts, SETTINGS, lambda ids, mask: fake_logits(ids), 16, 0.25)

    whole_peak, streamed_peak = peak(whole), peak(streamed)
    print(f"peak traced memory, 120,000 characters: whole {whole_peak / 1e6:.0f} MB, streamed {streamed_peak / 1e6:.0f} MB")
    assert streamed_peak < 0.5 * whole_peak


def test_sentences_are_encoded_from_the_texts_utf8():
    """SENTENCES is cut from each text's UTF-8 at numpy-computed byte offsets (no str per sentence)."""
    from sat_triton.pipeline.texts import utf8_slices

    rng = np.random.default_rng(12)
    alphabet = ["a", " ", "é", "中", "😀", "\u0301", "\n", "ß"]
    for _ in range(200):
        texts = ["".join(rng.choice(alphabet, size=int(rng.integers(0, 40)))) for _ in range(int(rng.integers(0, 5)))]
        spans, counts = [], []
        for text in texts:
            cuts = np.unique(rng.integers(0, len(text) + 1, size=int(rng.integers(0, 6))))
            pairs = [(a, b) for a, b in zip(cuts[:-1].tolist(), cuts[1:].tolist())]
            spans += pairs
            counts.append(len(pairs))
        spans = np.array(spans, dtype=np.int64).reshape(-1, 2)
        got = utf8_slices(texts, np.array(counts, dtype=np.int64), spans)
        owner = np.repeat(np.arange(len(texts)), counts)
        assert got.dtype == object and list(got) == [texts[i][a:b].encode() for i, (a, b) in zip(owner, spans.tolist())]


def test_bytes_are_serialized_as_triton_does():
    """serialize_bytes gives what the Python backend's own serialize_byte_tensor gives, for object arrays
    of bytes (any shape, empty and zero-byte elements included); anything else is left to Triton's."""
    import importlib.util
    import types
    from pathlib import Path

    from sat_triton.builder.server import find_tritonserver
    from sat_triton.pipeline.responses import serialize_bytes, serialize_bytes_with_numpy

    path = Path(find_tritonserver().backend_dir) / "python" / "triton_python_backend_utils.py"
    if not path.exists():
        pytest.skip(f"no {path}")
    spec = importlib.util.spec_from_file_location("triton_python_backend_utils_for_test", path)
    utils = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(utils)
    triton_serialize = utils.serialize_byte_tensor
    rng = np.random.default_rng(4)
    for size in (1, 2, 7, 70_000):
        items = [bytes(rng.integers(0, 256, size=int(rng.integers(0, 6))).astype(np.uint8)) for _ in range(size)]
        array = np.array(items + [b""], dtype=np.object_)
        assert serialize_bytes(array) == triton_serialize(array)
        if size == 2:
            square = np.array([[b"ab", b"\x00"], [b"", "é".encode()]], dtype=np.object_)
            assert serialize_bytes(square) == triton_serialize(square)
            assert serialize_bytes(square.T) == triton_serialize(square.T)  # C order, not memory order
    assert serialize_bytes(np.array([b"a", "b"], dtype=np.object_)) is None
    fake = types.SimpleNamespace(serialize_byte_tensor=triton_serialize)
    serialize_bytes_with_numpy(fake)
    mixed = np.array([b"a", "str"], dtype=np.object_)
    assert fake.serialize_byte_tensor(mixed) == triton_serialize(mixed)
    assert fake.serialize_byte_tensor(np.array([b"xy"], dtype=np.object_)) == triton_serialize(np.array([b"xy"], dtype=np.object_))

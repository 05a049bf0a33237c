"""Comparing the server's sentences with wtpsplit's, and saying how close they are."""

from __future__ import annotations

import numpy as np

# A text may differ from wtpsplit only where wtpsplit's own probability sits this close to the
# threshold: ONNX Runtime and PyTorch round differently in the last bits, and float16 accumulation
# can turn that into a flip exactly at the threshold. Anywhere else the sentences must be identical.
NEAR_THRESHOLD = 2e-3

PROBA_KEYS = ("stride", "block_size", "weighting", "remove_whitespace_before_inference")


def default_threshold(reference) -> float:
    name = str(reference.model_name_or_model)
    return 0.25 if "sm" in name else 0.025


_REFERENCE_SPLITS: dict = {}


def reference_split(reference, texts, **options) -> list:
    """wtpsplit's sentences, computed once per session for each reference, texts and options: the same
    test bodies run against the local server and the container, and wtpsplit's answer is the same."""
    key = (id(reference), tuple(texts), repr(sorted(options.items())))
    if key not in _REFERENCE_SPLITS:
        _REFERENCE_SPLITS[key] = list(reference.split(list(texts), **options))
    return _REFERENCE_SPLITS[key]


def assert_same_sentences(reference, texts, got, **options):
    expected = reference_split(reference, texts, **options)
    assert len(got) == len(expected)
    differing = [i for i, (g, e) in enumerate(zip(got, expected)) if g != e]
    threshold = options.get("threshold") or default_threshold(reference)
    proba_options = {k: v for k, v in options.items() if k in PROBA_KEYS}
    proba_options.setdefault("stride", 64)
    for i in differing:
        probs = np.asarray(reference.predict_proba(texts[i], **proba_options), dtype=np.float64)
        margin = float(np.min(np.abs(probs - threshold))) if probs.size else 1.0
        assert margin < NEAR_THRESHOLD, (
            f"text {i} differs from wtpsplit although every probability is {margin:.4f} or more from the "
            f"threshold:\n text={texts[i]!r}\n got={got[i]!r}\n wtpsplit={expected[i]!r}"
        )
    n_sentences = sum(len(e) for e in expected)
    return {"texts": len(texts), "identical": len(texts) - len(differing), "sentences": n_sentences}

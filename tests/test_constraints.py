"""Length-constrained segmentation against wtpsplit 2.2.2's own functions, on random texts and probabilities."""

import warnings

import numpy as np
import pytest

from sat_triton.pipeline import constraints
from sat_triton.pipeline.constraints import (
    constrained_boundaries,
    constrained_pieces,
    constrained_spans,
    enforce_segment_constraints,
    paragraph_constrained_pieces,
    paragraph_constrained_spans,
)
from sat_triton.pipeline.errors import RequestError
from sat_triton.pipeline.priors import create_prior, get_language_defaults

wtp_utils = pytest.importorskip("wtpsplit.utils")
wtp_constraints = pytest.importorskip("wtpsplit.utils.constraints")
wtp_priors = pytest.importorskip("wtpsplit.utils.priors")

ALPHABET = list("ab .!?\n\n   \t\u3000\u00a0xyz\u05d0\u4e2d\u6587😀e\u0301\r")
PRIOR_TYPES = ["uniform", "gaussian", "clipped_polynomial", "lognormal"]


def _local_kwargs(prior_kwargs, max_length, language):
    local = {} if prior_kwargs is None else prior_kwargs.copy()
    if max_length is not None:
        local["max_length"] = max_length
    if language and "lang_code" not in local and "target_length" not in local:
        local["lang_code"] = language
    return local


def _model_probs(text, probs):
    """wtpsplit's SaT.predict_proba gives a blank text a single 0 probability (sigmoid(-inf))."""
    return np.zeros(1) if not text.strip() else probs


def reference_split(text, probs, min_length, max_length, prior_type, prior_kwargs, algorithm, strip, language):
    """The constrained, non-paragraph branch of wtpsplit 2.2.2's SaT._split, verbatim in behaviour."""
    prior_fn = wtp_priors.create_prior_function(prior_type, _local_kwargs(prior_kwargs, max_length, language))
    boundaries = wtp_constraints.constrained_segmentation(
        _model_probs(text, probs), prior_fn, min_length=min_length, max_length=max_length, algorithm=algorithm
    )
    indices = [b - 1 for b in boundaries]
    return wtp_constraints._enforce_segment_constraints(text, indices, min_length, max_length, strip_whitespace=strip)


def reference_paragraphs(text, probs, paragraph_threshold, min_length, max_length, prior_type, prior_kwargs,
                         algorithm, strip, language):
    """The constrained, do_paragraph_segmentation branch of SaT._split."""
    probs = _model_probs(text, probs)
    offset, paragraphs = 0, []
    for paragraph in wtp_utils.indices_to_sentences(text, np.where(probs > paragraph_threshold)[0]):
        paragraph_probs = probs[offset : offset + len(paragraph)]
        prior_fn = wtp_priors.create_prior_function(prior_type, _local_kwargs(prior_kwargs, max_length, language))
        boundaries = wtp_constraints.constrained_segmentation(
            paragraph_probs, prior_fn, min_length=min_length, max_length=max_length, algorithm=algorithm
        )
        indices = [b - 1 for b in boundaries]
        paragraphs.append(
            wtp_constraints._enforce_segment_constraints(paragraph, indices, min_length, max_length, strip_whitespace=strip)
        )
        offset += len(paragraph)
    return paragraphs


def random_text(rng, max_len=70):
    n = int(rng.integers(0, max_len))
    if n and rng.random() < 0.05:
        return "".join(rng.choice([" ", "\n", "\t"], size=n))  # whitespace only
    return "".join(rng.choice(ALPHABET, size=n)) if n else ""


def random_probs(rng, n):
    kind = rng.integers(0, 4)
    if kind == 0:
        probs = rng.random(n)
    elif kind == 1:  # few distinct values: ties everywhere
        probs = rng.choice([0.0, 0.25, 0.5, 1.0], size=n)
    elif kind == 2:  # mostly small, a few confident boundaries, some exact zeros
        probs = rng.random(n) ** 6
        probs[rng.random(n) < 0.1] = 0.0
    else:
        probs = rng.choice([1e-4, 0.03, 0.97], size=n)
    return probs.astype(np.float32)


def random_prior_kwargs(rng):
    r = rng.random()
    if r < 0.25:
        return None
    if r < 0.35:
        return {}
    kwargs = {}
    if rng.random() < 0.5:
        kwargs["target_length"] = int(rng.integers(1, 40)) if rng.random() < 0.7 else float(rng.uniform(0.5, 40))
    if rng.random() < 0.5:
        kwargs["spread"] = int(rng.integers(1, 30)) if rng.random() < 0.7 else float(rng.uniform(0.3, 30))
    if rng.random() < 0.2:
        kwargs["lang_code"] = str(rng.choice(["en", "ja", "de", "zz", "th"]))
    if rng.random() < 0.15:
        kwargs["max_length"] = int(rng.integers(1, 50))  # only survives when the request has no max_length
    return kwargs


def random_lengths(rng):
    min_length = int(rng.choice([1, 1, 2, 3, 5, 8, 12, 20]))
    if rng.random() < 0.3:
        max_length = None
        if min_length == 1 and rng.random() < 0.8:
            min_length = 2  # SaT only constrains when max_length is set or min_length > 1
    else:
        max_length = min_length + int(rng.integers(0, 40))
    return min_length, max_length


def random_case(rng):
    text = random_text(rng)
    probs = random_probs(rng, len(text))
    min_length, max_length = random_lengths(rng)
    return dict(
        text=text,
        probs=probs,
        min_length=min_length,
        max_length=max_length,
        prior_type=str(rng.choice(PRIOR_TYPES)),
        prior_kwargs=random_prior_kwargs(rng),
        algorithm=str(rng.choice(["viterbi", "greedy"])),
        strip=bool(rng.random() < 0.5),
        language=[None, None, "en", "ja", "zz"][int(rng.integers(0, 5))],
    )


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # wtpsplit warns for unknown lang codes, numpy for degenerate priors
        yield


def _check(case, pieces):
    text = case["text"]
    expected = reference_split(
        text, case["probs"], case["min_length"], case["max_length"], case["prior_type"], case["prior_kwargs"],
        case["algorithm"], case["strip"], case["language"],
    )
    got = pieces.texts(text)
    assert got == expected, case
    starts, ends = pieces.spans
    assert starts.dtype == np.int64 and ends.dtype == np.int64
    assert np.all(starts < ends) and np.all(ends[:-1] <= starts[1:]), case
    for k, (a, b) in enumerate(zip(starts.tolist(), ends.tolist())):
        if pieces.cut_starts[k] == pieces.cut_ends[k]:
            assert text[a:b] == expected[k]
        else:  # the strip-then-join quirk: only the last segment, only with strip_whitespace
            assert case["strip"] and k == len(starts) - 1
            c, d = int(pieces.cut_starts[k]), int(pieces.cut_ends[k])
            assert a < c < d < b and not text[c:d].strip()  # only whitespace is dropped
            assert text[a:c] + text[d:b] == expected[k]
    if not case["strip"]:
        assert "".join(expected) == text
    return pieces.has_cuts


def test_constrained_pieces_match_wtpsplit():
    rng = np.random.default_rng(1234)
    cuts = 0
    for _ in range(2000):
        case = random_case(rng)
        pieces = constrained_pieces(
            case["text"], case["probs"], case["min_length"], case["max_length"], case["prior_type"],
            case["prior_kwargs"], case["algorithm"], case["strip"], case["language"],
        )
        cuts += _check(case, pieces)
    assert cuts > 0  # the non-slice quirk was exercised


def test_constrained_spans_are_the_covering_spans():
    rng = np.random.default_rng(7)
    for _ in range(300):
        case = random_case(rng)
        args = (case["text"], case["probs"], case["min_length"], case["max_length"], case["prior_type"],
                case["prior_kwargs"], case["algorithm"], case["strip"], case["language"])
        starts, ends = constrained_spans(*args)
        pieces = constrained_pieces(*args)
        assert np.array_equal(starts, pieces.starts) and np.array_equal(ends, pieces.ends)


def test_longer_texts_match_wtpsplit():
    """Fewer, longer texts: windows that do not reach the start, many segments, force splits."""
    rng = np.random.default_rng(99)
    for _ in range(60):
        case = random_case(rng)
        case["text"] = random_text(rng, max_len=400)
        case["probs"] = random_probs(rng, len(case["text"]))
        if case["max_length"] is None:
            case["max_length"] = case["min_length"] + int(rng.integers(0, 60))
        pieces = constrained_pieces(
            case["text"], case["probs"], case["min_length"], case["max_length"], case["prior_type"],
            case["prior_kwargs"], case["algorithm"], case["strip"], case["language"],
        )
        _check(case, pieces)


def test_paragraphs_match_wtpsplit():
    rng = np.random.default_rng(5)
    for _ in range(700):
        case = random_case(rng)
        threshold = float(rng.choice([0.1, 0.5, 0.9]))
        pieces, owners, count = paragraph_constrained_pieces(
            case["text"], case["probs"], threshold, case["min_length"], case["max_length"], case["prior_type"],
            case["prior_kwargs"], case["algorithm"], case["strip"], case["language"],
        )
        got = [[] for _ in range(count)]
        for owner, sentence in zip(owners.tolist(), pieces.texts(case["text"])):
            got[owner].append(sentence)
        expected = reference_paragraphs(
            case["text"], case["probs"], threshold, case["min_length"], case["max_length"], case["prior_type"],
            case["prior_kwargs"], case["algorithm"], case["strip"], case["language"],
        )
        assert got == expected, case
        spans, owners2 = paragraph_constrained_spans(
            case["text"], case["probs"], threshold, case["min_length"], case["max_length"], case["prior_type"],
            case["prior_kwargs"], case["algorithm"], case["strip"], case["language"],
        )
        assert np.array_equal(spans[0], pieces.starts) and np.array_equal(owners2, owners)


def test_boundaries_and_enforcement_separately():
    """The two halves on their own, with indices that Viterbi would not produce."""
    rng = np.random.default_rng(11)
    for _ in range(400):
        case = random_case(rng)
        text, probs = case["text"], case["probs"]
        if len(probs) == 0:
            continue
        kwargs = _local_kwargs(case["prior_kwargs"], case["max_length"], case["language"])
        ours = constrained_boundaries(probs, create_prior(case["prior_type"], kwargs), case["min_length"],
                                      case["max_length"], case["algorithm"])
        ref = wtp_constraints.constrained_segmentation(
            probs, wtp_priors.create_prior_function(case["prior_type"], kwargs), min_length=case["min_length"],
            max_length=case["max_length"], algorithm=case["algorithm"],
        )
        assert list(ours) == list(ref), case
        indices = sorted(set(rng.integers(0, len(text), size=int(rng.integers(0, 6))).tolist()))
        got = enforce_segment_constraints(text, indices, case["min_length"], case["max_length"], case["strip"])
        assert got.texts(text) == wtp_constraints._enforce_segment_constraints(
            text, indices, case["min_length"], case["max_length"], strip_whitespace=case["strip"]
        ), (case, indices)


def test_priors_match_wtpsplit_bit_for_bit():
    rng = np.random.default_rng(3)
    for _ in range(200):
        prior_type = str(rng.choice(PRIOR_TYPES))
        kwargs = random_prior_kwargs(rng) or {}
        ours, ref = create_prior(prior_type, kwargs), wtp_priors.create_prior_function(prior_type, kwargs)
        table = ours.values(300)
        for length in range(1, 301):
            assert table[length] == ref(length) or (np.isnan(table[length]) and np.isnan(ref(length)))
            assert ours(length) == table[length] or np.isnan(table[length])
    for code in [None, "en", "ja", "zz"]:
        assert get_language_defaults(code) == wtp_priors.get_language_defaults(code)


def test_degenerate_priors_match_wtpsplit():
    """Kwargs wtpsplit evaluates without raising, but that make the prior 0 or NaN everywhere."""
    rng = np.random.default_rng(21)
    odd = [
        ("lognormal", {"spread": 0}),
        ("lognormal", {"target_length": -30}),
        ("gaussian", {"target_length": float("inf")}),
        ("clipped_polynomial", {"target_length": 500, "spread": 3}),
        ("uniform", {"max_length": 3}),
        ("gaussian", {"spread": -5, "target_length": 4}),
    ]
    for prior_type, kwargs in odd:
        for _ in range(60):
            case = random_case(rng)
            case.update(prior_type=prior_type, prior_kwargs=kwargs)
            pieces = constrained_pieces(
                case["text"], case["probs"], case["min_length"], case["max_length"], prior_type, kwargs,
                case["algorithm"], case["strip"], case["language"],
            )
            _check(case, pieces)


def test_garbage_probabilities_match_wtpsplit():
    """NaN, values above 1 and negative ones: never produced by the model, handled as wtpsplit does."""
    rng = np.random.default_rng(8)
    for _ in range(200):
        case = random_case(rng)
        probs = case["probs"].copy()
        bad = rng.random(len(probs)) < 0.15
        probs[bad] = rng.choice([np.nan, 1.5, -0.2, np.inf], size=int(bad.sum()))
        case["probs"] = probs
        pieces = constrained_pieces(
            case["text"], probs, case["min_length"], case["max_length"], case["prior_type"], case["prior_kwargs"],
            case["algorithm"], case["strip"], case["language"],
        )
        _check(case, pieces)


def test_blocked_viterbi_equals_position_by_position():
    rng = np.random.default_rng(17)
    for _ in range(150):
        n = int(rng.integers(0, 600))
        probs = random_probs(rng, n)
        if rng.random() < 0.2:
            probs[rng.random(n) < 0.05] = np.nan
        min_length = int(rng.integers(3, 30))
        max_length = None if rng.random() < 0.2 else min_length + int(rng.integers(0, 120))
        prior_type = str(rng.choice(PRIOR_TYPES))
        prior = create_prior(prior_type, _local_kwargs(random_prior_kwargs(rng), max_length, None))
        m = n if max_length is None else max_length
        assert constraints._viterbi_blocked(probs, prior, min_length, m) == constraints._viterbi(
            probs, prior, min_length, m
        )


def test_join_quirk_is_reported_as_a_cut():
    # Viterbi splits after "." (lengths 12 + 5); the cut then takes the spaces, "Hi" is too short and
    # the final clean-up glues the two stripped strings together.
    text = "Hello world.   Hi"
    probs = np.full(len(text), 0.01, dtype=np.float32)
    probs[11] = 0.99
    expected = reference_split(text, probs, 5, 15, "uniform", None, "viterbi", True, None)
    assert expected == ["Hello world.Hi"]  # not a slice of the text
    pieces = constrained_pieces(text, probs, 5, 15, strip_whitespace=True)
    assert pieces.texts(text) == expected
    assert (pieces.starts.tolist(), pieces.ends.tolist()) == ([0], [17])
    assert (pieces.cut_starts.tolist(), pieces.cut_ends.tolist()) == ([12], [15])


@pytest.mark.parametrize(
    "prior_type, kwargs, fragment",
    [
        ("clipped_polynomial", {"spread": 0}, "'spread' must not be 0"),
        ("gaussian", {"spread": 0.0}, "'spread' must not be 0"),
        ("lognormal", {"target_length": 0}, "'target_length' must not be 0"),
        ("gaussian", {"target_length": "70"}, "'target_length' must be a number"),
        ("lognormal", {"spread": None}, "'spread' must be a number"),
        ("uniform", {"max_length": "5"}, "'max_length' must be a number"),
        ("clipped_polynomial", {"lang_code": ["en"]}, "'lang_code'"),
        ("clipped_polynomial", {"spread": 1e200}, "OverflowError"),
    ],
)
def test_invalid_prior_kwargs(prior_type, kwargs, fragment):
    # wtpsplit fails on these too (on creation or on the first evaluation) ...
    with pytest.raises((TypeError, ArithmeticError)):
        wtp_priors.create_prior_function(prior_type, kwargs)(10)
    # ... here they are a RequestError naming the option
    with pytest.raises(RequestError, match="option 'prior_kwargs'") as info:
        constrained_spans("Some text. More.", np.full(16, 0.1, np.float32), 2, None, prior_type, kwargs)
    assert fragment in str(info.value)


def test_invalid_options():
    probs = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match="Unknown prior"):
        wtp_priors.create_prior_function("cauchy", {})
    with pytest.raises(RequestError, match="option 'prior_type'"):
        constrained_spans("abcd", probs, 2, None, "cauchy", None)
    with pytest.raises(RequestError, match="option 'algorithm'"):
        constrained_spans("abcd", probs, 2, None, "uniform", None, "beam")
    with pytest.raises(RequestError, match="option 'min_length'"):
        constrained_spans("abcd", probs, 5, 3)
    with pytest.raises(RequestError, match="option 'prior_kwargs'"):
        constrained_spans("abcd", probs, 2, None, "uniform", "not a dict")


def test_unused_kwargs_are_ignored_like_wtpsplit():
    """wtpsplit's uniform prior looks only at max_length; other keys (even nonsense) are ignored."""
    text = "One. Two. Three."
    probs = np.full(len(text), 0.2, np.float32)
    kwargs = {"target_length": "nonsense", "foo": 1}
    assert constrained_pieces(text, probs, 3, 8, "uniform", kwargs).texts(text) == reference_split(
        text, probs, 3, 8, "uniform", kwargs, "viterbi", False, None
    )


HUGE = [10**7, 10**18]  # past the text; if the clamp went, 10**18 fails at once (no such allocation)


def test_huge_lengths_match_wtpsplit_and_take_no_time():
    """min_length/max_length at and past the text's length (clamp_lengths caps them at n + 1): the same
    segments as wtpsplit, whatever the value."""
    import time

    rng = np.random.default_rng(2024)
    for _ in range(400):
        case = random_case(rng)
        n = len(case["text"])
        case["min_length"] = int(rng.choice([n - 1, n, n + 1, n + 2, *HUGE])) if n > 1 else int(rng.choice(HUGE))
        if rng.random() < 0.3:
            case["max_length"] = None
        else:
            case["max_length"] = max(case["min_length"], int(rng.choice([n, n + 1, *HUGE])))
        if case["max_length"] is None and case["min_length"] == 1:
            case["min_length"] = 2
        if rng.random() < 0.3:  # a small min_length with a huge max_length: only max_length is capped
            case["min_length"], case["max_length"] = int(rng.integers(1, 5)), int(rng.choice(HUGE))
        pieces = constrained_pieces(
            case["text"], case["probs"], case["min_length"], case["max_length"], case["prior_type"],
            case["prior_kwargs"], case["algorithm"], case["strip"], case["language"],
        )
        _check(case, pieces)
    assert constraints.clamp_lengths(14, 10**9, None) == (15, None)
    assert constraints.clamp_lengths(14, 3, 10**18) == (3, 15)
    text = "Hello. World."  # min_length 1e8 took 2.4 s here, 1e9 42.6 s, before the clamp
    start = time.monotonic()
    for value in HUGE:
        constrained_pieces(text, np.full(len(text), 0.3, np.float32), value, None)
        constrained_pieces(text, np.full(len(text), 0.3, np.float32), 2, value, algorithm="greedy")
    assert time.monotonic() - start < 2.0


def test_huge_lengths_in_paragraphs_match_wtpsplit():
    rng = np.random.default_rng(77)
    for _ in range(200):
        case = random_case(rng)
        case["min_length"] = int(rng.choice(HUGE)) if rng.random() < 0.5 else int(rng.integers(1, 4))
        case["max_length"] = None if (rng.random() < 0.3 and case["min_length"] > 1) else max(
            case["min_length"], int(rng.choice(HUGE)))
        threshold = float(rng.choice([0.1, 0.5]))
        pieces, owners, count = paragraph_constrained_pieces(
            case["text"], case["probs"], threshold, case["min_length"], case["max_length"], case["prior_type"],
            case["prior_kwargs"], case["algorithm"], case["strip"], case["language"],
        )
        got = [[] for _ in range(count)]
        for owner, sentence in zip(owners.tolist(), pieces.texts(case["text"])):
            got[owner].append(sentence)
        assert got == reference_paragraphs(
            case["text"], case["probs"], threshold, case["min_length"], case["max_length"], case["prior_type"],
            case["prior_kwargs"], case["algorithm"], case["strip"], case["language"],
        ), case

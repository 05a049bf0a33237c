"""Request limits (sat_pipeline/limits.py) and the cost limit of length-constrained segmentation, as
pure functions; tests/test_bad_input.py sends the same requests to a real server."""

import numpy as np
import pytest

from sat_triton.pipeline import wire
from sat_triton.pipeline.errors import RequestError
from sat_triton.pipeline.limits import Limits, check_limits, utf8_char_counts
from sat_triton.pipeline.options import Options
from sat_triton.pipeline.pipeline import MAX_CONSTRAINED_CELLS, check_constrained_cost


def tensor(*texts):
    return np.array([t.encode("utf-8") if isinstance(t, str) else t for t in texts], dtype=np.object_)


def test_code_points_are_counted_from_the_bytes():
    rng = np.random.default_rng(0)
    alphabet = ["a", " ", "é", "中", "😀", "\u0301", "\x00", "\n"]
    texts = ["".join(rng.choice(alphabet, size=int(rng.integers(0, 50)))) for _ in range(300)]
    texts += ["é" * (1 << 20), "😀a" * 700_000, ""]  # large ones are counted in blocks
    got = utf8_char_counts([t.encode("utf-8") for t in texts])
    assert got.dtype == np.int64 and got.tolist() == [len(t) for t in texts]
    assert utf8_char_counts([]).size == 0
    assert utf8_char_counts([b"\xff\xfe ab"]).tolist() == [5]  # not UTF-8: at most its bytes, decoding says why


def test_within_the_limits_passes():
    limits = Limits(max_text_chars=10, max_request_chars=25, max_request_texts=3)
    check_limits(tensor("é" * 10, "中" * 10, "abc"), limits)  # 20 and 30 bytes, but 10 characters each
    check_limits(tensor(), limits)


@pytest.mark.parametrize("texts,words", [
    (["fine", "x" * 11], ["TEXT[1] has 11 characters", "10 a text may have", "max_text_chars", "--max_text_chars"]),
    (["😀" * 11], ["TEXT[0] has 11 characters"]),
    (["x" * 10, "y" * 10, "z" * 6], ["26 characters in 3 texts", "25 a request may have", "--max_request_chars"]),
    (["a", "b", "c", "d"], ["4 texts", "3 a request may have", "--max_request_texts"]),
])
def test_over_a_limit_is_refused_naming_it(texts, words):
    with pytest.raises(RequestError) as info:
        check_limits(tensor(*texts), Limits(max_text_chars=10, max_request_chars=25, max_request_texts=3))
    for word in words:
        assert word in str(info.value)
    assert wire.TOO_LONG_FOR_ENSEMBLE not in str(info.value)


def test_the_ensemble_request_size_carries_the_clients_marker():
    with pytest.raises(RequestError) as info:
        check_limits(tensor("x" * 10, "y" * 10, "z" * 6), Limits(10, 25, 3, ensemble=True))
    message = str(info.value)
    assert message.startswith(wire.TOO_LONG_FOR_ENSEMBLE) and "--max_ensemble_request_chars" in message
    assert "_long" in message


def test_limits_from_the_rendered_parameters():
    common = {"max_text_chars": "100", "max_request_texts": "7"}
    assert Limits.from_parameters({**common, "max_request_chars": "300"}) == Limits(100, 300, 7, False)
    assert Limits.from_parameters({**common, "max_ensemble_request_chars": "50"}) == Limits(100, 50, 7, True)


def test_length_constrained_cost_is_limited_by_the_text_not_the_value():
    check_constrained_cost(0, 20_000, Options(min_length=5))  # 20,000 x 20,000: the limit itself
    check_constrained_cost(0, 1_000_000, Options(max_length=400))
    check_constrained_cost(0, 14, Options(min_length=10**9, max_length=10**18))  # capped by the text
    with pytest.raises(RequestError, match=r"TEXT\[2\] has 20,001 characters; min_length without max_length"):
        check_constrained_cost(2, 20_001, Options(min_length=5))
    with pytest.raises(RequestError, match=r"1,000,000 x 401 here.*at most 400 for this text"):
        check_constrained_cost(0, 1_000_000, Options(max_length=401))
    with pytest.raises(RequestError, match="1,000,000 x 1,000,000 here"):
        check_constrained_cost(0, 1_000_000, Options(max_length=10**18))  # as costly as no max_length
    assert MAX_CONSTRAINED_CELLS == 20_000 ** 2

"""Property-based fuzzing (hypothesis) of a real tritonserver over TEXT bytes and every request parameter.

Whatever the request, the answer is either INVALID_ARGUMENT (HTTP 400) with a message, or sentences whose
spans account for every character of every text (README, "What every character becomes"); and no Python
step crashes meanwhile. Bounded: a fixed number of examples, derandomized, so the run is the same in CI.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from corpus import EDGE_CASES, SENTENCES
from sat_triton.pipeline.errors import RequestError
from sat_triton.pipeline.options import CLIENT_SIDE_ONLY, OPTION_NAMES, parse_options

pytestmark = pytest.mark.integration

PARAMETER_NAMES = OPTION_NAMES + CLIENT_SIDE_ONLY + ("treat_newline_as_space", "no_such_option")

HUGE = st.sampled_from([10**7, 10**9, 2**62])
flag = st.one_of(st.booleans(), st.sampled_from(["true", "false", "1", "0"]))
# Values the options take, mostly within what they accept (so that most requests are answered and their
# spans checked), sometimes at their extremes; length constraints and paragraphs in some requests only.
BASIC = {
    "threshold": st.one_of(st.floats(min_value=0, max_value=1), st.sampled_from(["0.3", 0, 1])),
    "stride": st.one_of(st.integers(min_value=16, max_value=600), st.integers(min_value=1, max_value=16), HUGE),
    "block_size": st.one_of(st.integers(min_value=16, max_value=700), st.integers(min_value=1, max_value=16), HUGE),
    "weighting": st.sampled_from(["uniform", "hat"]),
    "remove_whitespace_before_inference": flag,
    "strip_whitespace": flag,
    "split_on_input_newlines": flag,
    "treat_newline_as_space": flag,
}
PARAGRAPHS = {"do_paragraph_segmentation": flag, "paragraph_threshold": st.floats(min_value=0, max_value=1)}
CONSTRAINTS = {
    "min_length": st.one_of(st.integers(min_value=1, max_value=80), HUGE),
    "max_length": st.one_of(st.integers(min_value=1, max_value=300), HUGE),
    "prior_type": st.sampled_from(["uniform", "gaussian", "clipped_polynomial", "lognormal"]),
    "prior_kwargs": st.sampled_from(['{"target_length": 20, "spread": 5}', '{"lang_code": "de"}', "{}",
                                     '{"target_length": 1e308}', '{"spread": NaN}']),
    "algorithm": st.sampled_from(["viterbi", "greedy"]),
}
# Anything at all.
ANY = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["NaN", "-1", "1e9", "[]", "", '{"spread": 0}', "uniform", "greedy"]),
    st.text(max_size=8),
)
nothing = st.just({})
parameters = st.builds(
    lambda *parts: {key: value for part in parts for key, value in part.items()},
    st.fixed_dictionaries({}, optional=BASIC),
    st.one_of(nothing, nothing, st.fixed_dictionaries({}, optional=PARAGRAPHS)),
    st.one_of(nothing, nothing, st.fixed_dictionaries({}, optional=CONSTRAINTS)),
    st.one_of(nothing, nothing, nothing, st.dictionaries(st.sampled_from(PARAMETER_NAMES), ANY, max_size=2)),
)
text = st.one_of(
    st.text(max_size=120),
    st.text(alphabet=" \n\t\r.!?abXY\u3000\u00a0e\u0301😀中", max_size=200),
    st.lists(st.sampled_from(SENTENCES + EDGE_CASES), max_size=5).map(" ".join),
)
utf8 = text.map(lambda t: t.encode("utf-8"))
item = st.one_of(utf8, utf8, utf8, st.binary(max_size=40))
request = st.tuples(st.lists(item, max_size=4), parameters, st.sampled_from(["tiny", "tiny_long"]),
                    st.sampled_from(["grpc", "grpc", "http"]))


def call(server, protocol, model, items, params):
    if protocol == "grpc":
        import tritonclient.grpc as module
        client = module.InferenceServerClient(server.grpc_url)
    else:
        import tritonclient.http as module
        client = module.InferenceServerClient(server.http_url)
    data = np.array(items, dtype=np.object_)
    tensor = module.InferInput("TEXT", [len(items)], "BYTES")
    tensor.set_data_from_numpy(data)
    try:
        return client.infer(model, [tensor], parameters=params)
    finally:
        client.close()


def check_accounted(text, sentences, spans, strip, constrained):
    """Spans in order inside the text; between them only what the options drop; each sentence is its
    span, or with strip_whitespace and length constraints wtpsplit's join of two stripped pieces."""
    position = 0
    for sentence, (start, end) in zip(sentences, spans.tolist()):
        # (an empty sentence is wtpsplit's too: split_on_input_newlines keeps the empty lines of "a\n\nb")
        assert position <= start <= end <= len(text), (text, spans)
        gap = text[position:start]
        assert gap in ("", "\n") or (strip and gap.isspace()), (text, gap)
        piece = text[start:end]
        if sentence != piece:
            assert strip and constrained, (text, sentence, piece)
            k = 0
            while k < min(len(sentence), len(piece)) and sentence[k] == piece[k]:
                k += 1
            rest = len(sentence) - k
            assert piece[len(piece) - rest:] == sentence[k:] and piece[k:len(piece) - rest].isspace(), (text, sentence)
        position = end
    rest = text[position:]
    assert rest == "" or (rest.isspace() and (strip or not text.strip())), (text, rest)


OUTCOMES = {"answered": 0, "refused": 0}


@pytest.fixture(scope="module")
def log_mark(server):
    """Where the server's log stood when fuzzing began."""
    return server.log_file.stat().st_size if server.log_file else None


@settings(max_examples=80, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=request)
def test_every_answer_is_an_invalid_argument_or_accounts_for_every_character(server, log_mark, case):
    from tritonclient.utils import InferenceServerException

    items, params, model, protocol = case
    try:
        result = call(server, protocol, model, items, params)
    except InferenceServerException as exc:
        status = str(exc.status())
        assert "INVALID_ARG" in status or status == "400", f"{status}: {exc}"
        assert exc.message(), exc
        event(f"refused by {protocol}")
        OUTCOMES["refused"] += 1
        return
    event("answered")
    OUTCOMES["answered"] += 1
    decoded = [raw.decode("utf-8") for raw in items]  # bytes that are not UTF-8 must have been refused
    try:
        options = parse_options(params)
    except RequestError as exc:
        raise AssertionError(f"the server accepted parameters the options refuse: {params}: {exc}") from None
    sentences = [s.decode("utf-8") for s in result.as_numpy("SENTENCES")]
    counts, spans = result.as_numpy("SENTENCE_COUNTS"), result.as_numpy("SENTENCE_SPANS")
    paragraphs, paragraph_counts = result.as_numpy("SENTENCE_PARAGRAPH"), result.as_numpy("PARAGRAPH_COUNTS")
    assert len(counts) == len(items) == len(paragraph_counts) and counts.sum() == len(sentences) == len(spans)
    assert len(paragraphs) == len(sentences)
    offsets = np.concatenate(([0], np.cumsum(counts)))
    for index, text in enumerate(decoded):
        a, b = offsets[index], offsets[index + 1]
        check_accounted(text, sentences[a:b], spans[a:b], options.strip_whitespace, options.length_constrained)
        assert np.all(np.diff(paragraphs[a:b]) >= 0) and np.all(paragraphs[a:b] < max(paragraph_counts[index], 1))


def test_no_python_step_crashed_while_fuzzing(server, log_mark):
    if sum(OUTCOMES.values()):  # the fuzzing ran in this session: it must have checked answers, not only refusals
        assert OUTCOMES["answered"] >= OUTCOMES["refused"] / 2, OUTCOMES
    if log_mark is None:
        pytest.skip("the server's log is not at hand")
    with open(server.log_file, "rb") as log:
        log.seek(log_mark)
        written = log.read().decode("utf-8", errors="replace")
    for sign in ("Traceback", "Stub process", "is not healthy", "Segmentation fault", "core dumped"):
        assert sign not in written, written[-4000:]

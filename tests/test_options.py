"""Request parameters: names and defaults as SaT.split, clear errors naming the option."""

import pytest

from sat_triton.pipeline.errors import RequestError
from sat_triton.pipeline.options import OPTION_NAMES, Options, default_threshold, parse_options


def test_defaults_are_wtpsplits():
    inspect = pytest.importorskip("inspect")
    wtpsplit = pytest.importorskip("wtpsplit")
    signature = inspect.signature(wtpsplit.SaT.split).parameters
    for name in OPTION_NAMES:
        assert getattr(Options(), name) == signature[name].default, name


def test_json_string_and_typed_values():
    options = parse_options('{"threshold": 0.3, "stride": "32", "strip_whitespace": "true", "block_size": 256.0}')
    assert (options.threshold, options.stride, options.strip_whitespace, options.block_size) == (0.3, 32, True, 256)
    assert parse_options({}) == Options() == parse_options(None) == parse_options("")


def test_deprecated_treat_newline_as_space():
    assert parse_options({"treat_newline_as_space": True}).split_on_input_newlines is False


def test_client_side_options_are_accepted_and_ignored():
    assert parse_options({"batch_size": 8, "outer_batch_size": 10, "verbose": True}) == Options()


@pytest.mark.parametrize(
    "params,fragment",
    [
        ({"threshold": -0.1}, "'threshold' must be between 0 and 1"),
        ({"threshold": "nan"}, "'threshold'"),
        ({"stride": 0}, "'stride' must be >= 1"),
        ({"stride": 2.5}, "'stride' must be an integer"),
        ({"block_size": "big"}, "'block_size' must be an integer"),
        ({"strip_whitespace": "perhaps"}, "'strip_whitespace' must be a boolean"),
        ({"weighting": "triangle"}, "'weighting' must be one of uniform, hat"),
        ({"algorithm": "beam"}, "'algorithm' must be one of viterbi, greedy"),
        ({"prior_kwargs": "{not json"}, "'prior_kwargs' must be a JSON object"),
        ({"min_length": 10, "max_length": 5}, "'min_length' (10) cannot be greater than 'max_length' (5)"),
        ({"thresold": 0.2}, "unknown option 'thresold'"),
    ],
)
def test_bad_values_name_the_option(params, fragment):
    with pytest.raises(RequestError) as excinfo:
        parse_options(params)
    assert fragment in str(excinfo.value)


def test_default_threshold_rule_is_wtpsplits():
    assert default_threshold("sat-3l-sm") == 0.25
    assert default_threshold("sat-12l-no-limited-lookahead") == 0.01
    assert default_threshold("segment-any-text/sat-3l") == 0.025
    assert default_threshold("sat-3l", use_lora=True) == 0.5


def test_respond_each_answers_bad_requests_alone():
    """A RequestError becomes that request's INVALID_ARG; the other requests still get answers."""
    from types import SimpleNamespace

    from sat_triton.pipeline.responses import respond_each

    class TritonError:
        INVALID_ARG = "INVALID_ARG"

        def __init__(self, message, code):
            self.message, self.code = message, code

    pb_utils = SimpleNamespace(TritonError=TritonError, InferenceResponse=lambda **kw: kw)

    def handle(request):
        if request == "bad":
            raise RequestError("option 'stride' must be >= 1, got 0")
        return {"ok": request}

    out = respond_each(["a", "bad", "b"], handle, pb_utils)
    assert out[0] == {"ok": "a"} and out[2] == {"ok": "b"}
    assert out[1]["error"].code == "INVALID_ARG" and "stride" in out[1]["error"].message
    with pytest.raises(ZeroDivisionError):  # anything else is a bug: Triton reports it as INTERNAL
        respond_each(["x"], lambda r: 1 / 0, pb_utils)


def test_respond_each_passes_a_called_steps_error_on_with_its_code():
    """The long model's BLS call refused by the ONNX step's full queue: the client sees that refusal's
    code (UNAVAILABLE, which it retries), not INTERNAL."""
    from types import SimpleNamespace

    from sat_triton.pipeline.errors import StepError
    from sat_triton.pipeline.responses import respond_each

    class TritonError:
        INVALID_ARG, UNAVAILABLE = "INVALID_ARG", "UNAVAILABLE"

        def __init__(self, message, code):
            self.message, self.code = message, code

    pb_utils = SimpleNamespace(TritonError=TritonError, InferenceResponse=lambda **kw: kw)

    def handle(request):
        raise StepError("Exceeds maximum queue size", TritonError.UNAVAILABLE)

    (out,) = respond_each(["x"], handle, pb_utils)
    assert out["error"].code == "UNAVAILABLE" and out["error"].message == "Exceeds maximum queue size"

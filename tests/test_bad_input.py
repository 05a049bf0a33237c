"""Bad and odd requests on a real tritonserver: each gets its clear error or its right answer, at once,
the server keeps serving and its memory comes back; a client that gives up frees the long model."""

import time

import numpy as np
import pytest

from corpus import long_text
from parity import assert_same_sentences
from test_server import assert_invalid, raw_grpc

pytestmark = pytest.mark.integration


def tree_rss_mb(pid: int) -> float:
    """Resident memory of tritonserver and its Python stubs, MB."""
    from sat_triton.builder.processes import tree_rss_bytes

    return tree_rss_bytes(pid) / 2**20


def model_stats(server, name):
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        stats = client.get_inference_statistics(name).model_stats[0]
    finally:
        client.close()
    return stats.inference_stats.success.count, stats.inference_stats.fail.count, stats.execution_count


def still_serving(server, model="tiny"):
    assert raw_grpc(server, ["Still serving. Yes."], model=model).as_numpy("SENTENCE_COUNTS").tolist()[0] >= 1


@pytest.mark.parametrize("model", ["tiny", "tiny_long"])
def test_a_text_over_the_limit_is_refused_before_any_work(server, model):
    """2,000,001 characters (the default --max_text_chars is 2,000,000): one core tokenizes such a text in
    about 7 s; the refusal comes from the byte lengths, before tokenizing."""
    from tritonclient.utils import InferenceServerException

    text = long_text(2_000_001, seed=1)
    start = time.monotonic()
    with pytest.raises(InferenceServerException) as excinfo:
        raw_grpc(server, ["Fine.", text], model=model)
    elapsed = time.monotonic() - start
    assert_invalid(excinfo, "TEXT[1] has 2,000,001 characters", "2,000,000 a text may have", "--max_text_chars")
    assert elapsed < 5.0, elapsed
    still_serving(server, model)


@pytest.mark.parametrize("model", ["tiny_fast", "tiny_fast_long"])
def test_too_many_texts_or_characters_are_refused(server, model):
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException) as excinfo:
        raw_grpc(server, ["a."] * 201, model=model)  # tiny_fast: --max_request_texts 200
    assert_invalid(excinfo, "201 texts", "200 a request may have", "--max_request_texts")
    with pytest.raises(InferenceServerException) as excinfo:
        raw_grpc(server, ["x" * 30_001], model=model)
    assert_invalid(excinfo, "TEXT[0] has 30,001 characters", "--max_text_chars")
    if model.endswith("_long"):
        with pytest.raises(InferenceServerException) as excinfo:
            raw_grpc(server, ["x. " * 7000] * 2, model=model)  # 42,000 > --max_request_chars 40000
        assert_invalid(excinfo, "42,000 characters in 2 texts", "--max_request_chars")
    still_serving(server, model)


def test_the_ensemble_size_limit_names_itself_and_the_client_falls_back(server, reference):
    """tiny_fast's ensemble takes 4,000 characters a request: more is refused with the marker the client
    knows, and client.SaT, which grouped 16 one-window texts (4,800 characters), retries on <name>_long."""
    from tritonclient.utils import InferenceServerException

    from sat_triton.client import SaT

    with pytest.raises(InferenceServerException) as excinfo:
        raw_grpc(server, ["x " * 1250, "y " * 1000], model="tiny_fast")
    assert_invalid(excinfo, "too long for one ensemble request", "4,500 characters", "4,000 an ensemble request",
                   "--max_ensemble_request_chars", "_long")
    assert raw_grpc(server, ["x " * 1250, "y " * 1000], model="tiny_fast_long").as_numpy("SENTENCE_COUNTS").size == 2

    texts = [long_text(300, seed=seed) for seed in range(16)]
    ensemble, long = model_stats(server, "tiny_fast"), model_stats(server, "tiny_fast_long")
    sat = SaT("tiny-sat-sm", triton_url=server.grpc_url, triton_model_name="tiny_fast")
    got = list(sat.split(texts))
    sat.close()
    assert_same_sentences(reference, texts, got)
    assert model_stats(server, "tiny_fast")[1] > ensemble[1]  # refused (Triton counts an ensemble's failure twice) ...
    assert model_stats(server, "tiny_fast_long")[0] == long[0] + 1  # ... and answered by the long model


def infer(server, model, data, datatype="BYTES", parameters=None, protocol="grpc", inputs=True):
    if protocol == "grpc":
        import tritonclient.grpc as module
        client = module.InferenceServerClient(server.grpc_url)
    else:
        import tritonclient.http as module
        client = module.InferenceServerClient(server.http_url)
    tensors = []
    if inputs:
        tensor = module.InferInput("TEXT", list(data.shape), datatype)
        tensor.set_data_from_numpy(data)
        tensors = [tensor]
    try:
        return client.infer(model, tensors, parameters=parameters or {})
    finally:
        client.close()


def texts(*items):
    return np.array([t.encode("utf-8") if isinstance(t, str) else t for t in items], dtype=np.object_)


TEXT = "Hello world. This is a test! How are you? Fine."

# (what, request, words in the INVALID_ARGUMENT message, or None: answered)
ODD_REQUESTS = [
    ("missing TEXT", dict(data=None, inputs=False), ["TEXT"]),
    ("empty TEXT tensor", dict(data=texts()), None),
    ("wrong dtype", dict(data=np.array([1, 2], dtype=np.int32), datatype="INT32"), ["TEXT"]),
    ("wrong rank", dict(data=np.array([[b"a", b"b"]], dtype=np.object_)), ["TEXT"]),
    ("not UTF-8", dict(data=texts(b"ok", b"\xc3\x28 bad")), ["TEXT[1] is not valid UTF-8", "byte 0xc3"]),
    ("NaN threshold", dict(parameters={"threshold": float("nan")}), ["threshold", "between 0 and 1"]),
    ("inf stride", dict(parameters={"stride": float("inf")}), ["stride", "integer"]),
    ("negative stride", dict(parameters={"stride": -5}), ["stride", ">= 1"]),
    ("negative min_length", dict(parameters={"min_length": -1}), ["min_length", ">= 1"]),
    ("NaN max_length", dict(parameters={"max_length": float("nan")}), ["max_length", "integer"]),
    ("huge block_size", dict(parameters={"block_size": 2**62}), None),
    ("huge stride, one window", dict(parameters={"stride": 2**62}), None),
    ("huge min_length", dict(parameters={"min_length": 2**62}), None),
    ("huge max_length", dict(parameters={"max_length": 2**62, "min_length": 3}), None),
    ("min_length > max_length", dict(parameters={"min_length": 2**62, "max_length": 10}), ["min_length", "max_length"]),
    ("unknown parameter", dict(parameters={"temperature": 0.7}), ["unknown option 'temperature'"]),
    ("string number parameters", dict(parameters={"threshold": "0.3", "stride": "32"}), None),
    # the ensemble refuses them (10,000 windows, 70,000 characters: over either of its limits), naming
    # <name>_long, which answers them
    ("10,000 tiny texts", dict(data=texts(*(["Hi. Yo."] * 10_000))), {"tiny": ["in ensemble 'tiny'", "_long"]}),
]


def run_odd(server, model, request, protocol="grpc"):
    request = dict(request)
    data = request.pop("data", texts(TEXT))
    return infer(server, model, texts(TEXT) if data is None else data, protocol=protocol, **request)


@pytest.mark.parametrize("what,request_,words", ODD_REQUESTS, ids=[r[0] for r in ODD_REQUESTS])
@pytest.mark.parametrize("model", ["tiny", "tiny_long"])
def test_odd_requests_get_their_error_or_their_answer(server, reference, model, what, request_, words):
    from tritonclient.utils import InferenceServerException

    if isinstance(words, dict):
        words = words.get(model)
    start = time.monotonic()
    if words is not None:
        with pytest.raises(InferenceServerException) as excinfo:
            run_odd(server, model, request_)
        assert_invalid(excinfo, *words)
    else:
        result = run_odd(server, model, request_)
        sent = request_.get("data", texts(TEXT))
        counts = result.as_numpy("SENTENCE_COUNTS")
        assert len(counts) == len(sent)
        if len(sent) == 1:  # the right answer: wtpsplit's, with the same options
            sentences = [s.decode() for s in result.as_numpy("SENTENCES")]
            options = {k: int(v) if k != "threshold" else float(v) for k, v in request_.get("parameters", {}).items()}
            assert_same_sentences(reference, [TEXT], [sentences], **options)
    assert time.monotonic() - start < 20.0  # min_length 2**62 held the postprocessor for minutes before the clamp
    still_serving(server, model)


@pytest.mark.parametrize("what,request_,words", [r for r in ODD_REQUESTS if "parameters" in r[1]][:6],
                         ids=[r[0] for r in ODD_REQUESTS if "parameters" in r[1]][:6])
def test_odd_parameters_over_http(server, what, request_, words):
    """The same parameters as JSON over HTTP (tritonclient writes NaN and Infinity, which Triton's front end
    reads): the same answers, 400 for INVALID_ARGUMENT."""
    from tritonclient.utils import InferenceServerException

    if words is None:
        assert run_odd(server, "tiny", request_, protocol="http").as_numpy("SENTENCE_COUNTS").size == 1
        return
    with pytest.raises(InferenceServerException) as excinfo:
        run_odd(server, "tiny", request_, protocol="http")
    assert excinfo.value.status() == "400", str(excinfo.value)
    still_serving(server)


def test_memory_comes_back_after_bad_input(server):
    """The server's RSS (tritonserver plus its stubs) after a round of oversized and odd requests is
    within 10% of what it was before them."""
    from tritonclient.utils import InferenceServerException

    if server.pid is None:
        pytest.skip("needs the local server's process")
    oversized = long_text(2_000_001, seed=2)

    def round_of_bad_input():
        for model in ("tiny", "tiny_long"):
            for request in ([oversized], ["Hi. Yo."] * 10_000, ["Fine."]):
                try:
                    raw_grpc(server, request, model=model)
                except InferenceServerException:
                    pass
        for what, request, words in ODD_REQUESTS:
            try:
                run_odd(server, "tiny_long", request)
            except InferenceServerException:
                pass

    round_of_bad_input()  # the first round sizes the Python backend's shared memory pools, which stay
    before = tree_rss_mb(server.pid)
    for _ in range(2):
        round_of_bad_input()
    after = tree_rss_mb(server.pid)
    print(f"server RSS (tritonserver + stubs) before {before:.0f} MB, after two rounds of bad input {after:.0f} MB")
    assert after <= 1.1 * before
    still_serving(server)


def test_a_client_that_gives_up_frees_the_long_model(server):
    """A gRPC client whose timeout passes while the long model works on a million
    characters: the model stops (checks request.is_cancelled() between tokenizer calls and between window
    slices), so the next request is answered at once, and the ONNX model runs few or none of the
    abandoned text's ~1,000 window slices."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    text = long_text(1_000_000, seed=3)
    windows_before = model_stats(server, "tiny_onnx")[2]
    client = grpcclient.InferenceServerClient(server.grpc_url)
    tensor = grpcclient.InferInput("TEXT", [1], "BYTES")
    tensor.set_data_from_numpy(texts(text))
    with pytest.raises(InferenceServerException) as excinfo:
        client.infer("tiny_long", [tensor], client_timeout=1.0)
    client.close()
    assert "Deadline" in str(excinfo.value)
    start = time.monotonic()
    client = grpcclient.InferenceServerClient(server.grpc_url)
    tensor = grpcclient.InferInput("TEXT", [1], "BYTES")
    tensor.set_data_from_numpy(texts("Next one. Please."))
    result = client.infer("tiny_long", [tensor], client_timeout=120.0)  # bounded, should the model not stop
    client.close()
    waited = time.monotonic() - start
    assert result.as_numpy("SENTENCE_COUNTS").size == 1
    slices = model_stats(server, "tiny_onnx")[2] - windows_before
    print(f"next request answered {waited:.2f} s after the abandoned one; ONNX calls made: {slices}")
    assert slices < 100  # all of the text: ~1,000 (16 windows a call), and minutes here
    assert waited < 30.0

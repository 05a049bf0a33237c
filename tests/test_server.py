"""The whole product on a real tritonserver: `sat-triton build` output served, called through
`client.SaT` and raw tritonclient, compared sentence for sentence with wtpsplit's SaT.split."""

import json

import numpy as np
import pytest

from corpus import EDGE_CASES, long_text, multilingual_texts
from parity import assert_same_sentences

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sat(server):
    from sat_triton.client import SaT

    client = SaT("tiny-sat-sm", triton_url=server.grpc_url, triton_model_name="tiny")
    yield client
    client.close()


@pytest.fixture(scope="module")
def sat_lookahead(server):
    from sat_triton.client import SaT

    client = SaT("tiny-sat-la", triton_url=server.grpc_url, triton_model_name="tiny_la")
    yield client
    client.close()


def test_multilingual_corpus_matches_wtpsplit(sat, reference):
    texts = multilingual_texts(300, seed=3) + EDGE_CASES
    stats = assert_same_sentences(reference, texts, list(sat.split(texts)))
    print("parity, multilingual corpus:", stats)
    assert stats["identical"] >= 0.99 * stats["texts"]


def test_lookahead_model_matches_wtpsplit(sat_lookahead, lookahead_reference):
    texts = multilingual_texts(150, seed=4) + EDGE_CASES + [long_text(5000, seed=2)]
    stats = assert_same_sentences(lookahead_reference, texts, list(sat_lookahead.split(texts)))
    print("parity, lookahead model:", stats)


def test_lora_model_matches_wtpsplit(server, lora_reference):
    """A LoRA adapter (3-label head) merged at build time; default threshold 0.5 as wtpsplit's use_lora."""
    from sat_triton.client import SaT

    sat = SaT("tiny-sat-sm", triton_url=server.grpc_url, triton_model_name="tiny_lora")
    texts = multilingual_texts(100, seed=14) + EDGE_CASES
    got = list(sat.split(texts))
    sat.close()
    expected = list(lora_reference.split(texts))
    assert sum(g == e for g, e in zip(got, expected)) >= len(texts) - 1
    assert_same_sentences(lora_reference, texts, got, threshold=0.5)


def test_fused_batched_model_matches_wtpsplit(server, reference, repository):
    """The GPU defaults' shape (onnxruntime-fused graph, two ONNX instances behind the dynamic batcher,
    merged batches run as one padded call) under concurrent requests of mixed lengths."""
    from sat_triton.client import SaT

    config = (repository / "tiny_fast_onnx" / "config.pbtxt").read_text()
    assert "count: 2 kind: KIND_CPU" in config and "dynamic_batching" in config
    assert 'key: "length_granularity" value: { string_value: "0" }' in config
    sat = SaT("tiny-sat-sm", triton_url=server.grpc_url, triton_model_name="tiny_fast", concurrency=8)
    texts = multilingual_texts(200, seed=21) + EDGE_CASES + [long_text(3000, seed=5)]
    got = list(sat.split(texts, batch_size=3))
    sat.close()
    stats = assert_same_sentences(reference, texts, got)
    assert stats["identical"] >= 0.99 * stats["texts"]


def test_single_string_returns_a_list(sat, reference):
    text = "Hello world. This is a test! How are you?"
    got = sat.split(text)
    assert isinstance(got, list)
    assert_same_sentences(reference, [text], [got])


def test_texts_longer_than_one_block_match_wtpsplit(sat, reference):
    # 2k chars fit one ensemble request (<= 16 windows); 10k and 40k go to the long-text model.
    texts = [long_text(n, seed=n) for n in (700, 2000, 10000, 40000)]
    stats = assert_same_sentences(reference, texts, list(sat.split(texts)))
    print("parity, long texts:", stats)


@pytest.mark.parametrize(
    "options",
    [
        {"threshold": 0.1},
        {"threshold": 0.6, "strip_whitespace": True},
        {"split_on_input_newlines": False},
        {"strip_whitespace": True, "split_on_input_newlines": False},
        {"stride": 16, "block_size": 32},
        {"stride": 32, "block_size": 32, "threshold": 0.3},
        {"block_size": 600, "stride": 200},
        {"remove_whitespace_before_inference": True},
        {"do_paragraph_segmentation": True, "paragraph_threshold": 0.7},
        {"do_paragraph_segmentation": True, "strip_whitespace": True, "threshold": 0.3},
        {"max_length": 60},
        {"min_length": 10, "max_length": 80, "prior_type": "gaussian", "algorithm": "greedy"},
        {"min_length": 5, "max_length": 100, "prior_type": "clipped_polynomial", "prior_kwargs": {"target_length": 40}},
        {"max_length": 50, "prior_type": "lognormal", "strip_whitespace": True},
        {"min_length": 20, "prior_kwargs": {"lang_code": "de"}, "prior_type": "gaussian"},
        {"do_paragraph_segmentation": True, "max_length": 60, "weighting": "hat"},
    ],
    ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()),
)
def test_options_match_wtpsplit(sat, reference, options):
    texts = multilingual_texts(40, seed=5) + EDGE_CASES + [long_text(1500, seed=9)]
    stats = assert_same_sentences(reference, texts, list(sat.split(texts, **options)), **options)
    assert stats["identical"] >= stats["texts"] - 1


def test_hat_weighting_matches_wtpsplit(sat, reference):
    """With hat weighting wtpsplit's window weights depend on the longest text of its batch; for texts
    longer than one block (as here) that is the block itself, whatever the batching."""
    texts = [long_text(n, seed=n) for n in (1500, 2500, 4000)]
    stats = assert_same_sentences(reference, texts, list(sat.split(texts, weighting="hat")), weighting="hat")
    assert stats["identical"] == stats["texts"]


def test_http_client_gives_the_same(server, sat):
    from sat_triton.client import SaT

    texts = multilingual_texts(20, seed=6)
    over_http = SaT("tiny-sat-sm", triton_url=server.http_url, triton_model_name="tiny", protocol="http")
    assert list(over_http.split(texts)) == list(sat.split(texts))


def raw_grpc(server, texts, model="tiny", parameters=None, data=None, datatype="BYTES"):
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(server.grpc_url)
    if data is None:
        data = np.array([t.encode("utf-8") for t in texts], dtype=np.object_)
    text = grpcclient.InferInput("TEXT", list(data.shape), datatype)
    text.set_data_from_numpy(data)
    try:
        return client.infer(model, [text], parameters=parameters or {})
    finally:
        client.close()


def test_raw_tritonclient_call_and_spans(server, reference):
    texts = multilingual_texts(4, seed=7) + EDGE_CASES
    result = raw_grpc(server, texts, parameters={"strip_whitespace": True})
    sentences = [s.decode("utf-8") for s in result.as_numpy("SENTENCES")]
    counts = result.as_numpy("SENTENCE_COUNTS")
    spans = result.as_numpy("SENTENCE_SPANS")
    assert counts.dtype == np.int32 and spans.dtype == np.int64 and spans.shape == (len(sentences), 2)
    assert counts.sum() == len(sentences)
    owner = np.repeat(np.arange(len(texts)), counts)
    for sentence, (start, end), i in zip(sentences, spans, owner):
        assert texts[i][start:end] == sentence
    got = np.split(np.array(sentences, dtype=object), np.cumsum(counts)[:-1])
    assert_same_sentences(reference, texts, [list(g) for g in got], strip_whitespace=True)


def test_raw_http_call_with_string_parameters(server):
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(server.http_url)
    text = httpclient.InferInput("TEXT", [2], "BYTES")
    text.set_data_from_numpy(np.array([b"One. Two.", "Drei. Vier.".encode()], dtype=np.object_))
    result = client.infer("tiny", [text], parameters={"threshold": "0.5", "strip_whitespace": "true"})
    client.close()
    assert result.as_numpy("SENTENCE_COUNTS").shape == (2,)


def test_every_character_is_accounted_for(sat, server):
    """Without stripping, the spans of a text tile it except the single newlines split on."""
    texts = multilingual_texts(4, seed=8) + EDGE_CASES
    result = raw_grpc(server, texts)
    spans, counts = result.as_numpy("SENTENCE_SPANS"), result.as_numpy("SENTENCE_COUNTS")
    for text, text_spans in zip(texts, np.split(spans, np.cumsum(counts)[:-1])):
        position = 0
        for start, end in text_spans:
            assert text[position:start] in ("", "\n"), (text, position, start)
            position = end
        assert position == len(text) or (text[position:].isspace() and not text.strip()), text
        if text.strip() or not text:
            assert position == len(text)


def assert_invalid(excinfo, *words):
    message = str(excinfo.value)
    assert "INVALID_ARG" in str(excinfo.value.status()) or excinfo.value.status() == "400", message
    for word in words:
        assert word in message, message


@pytest.mark.parametrize(
    "parameters,words",
    [
        ({"threshold": 1.5}, ["threshold", "between 0 and 1"]),
        ({"threshold": "abc"}, ["threshold"]),
        ({"stride": 0}, ["stride", ">= 1"]),
        ({"block_size": -3}, ["block_size"]),
        ({"strip_whitespace": "maybe"}, ["strip_whitespace", "boolean"]),
        ({"split_on_input_newlines": 7}, ["split_on_input_newlines"]),
        ({"weighting": "triangle"}, ["weighting", "uniform, hat"]),
        ({"no_such_option": 1}, ["unknown option", "no_such_option"]),
        ({"min_length": 9, "max_length": 3}, ["min_length", "max_length"]),
        ({"max_length": 30, "prior_type": "beta"}, ["prior_type", "uniform"]),
        ({"max_length": 30, "prior_type": "gaussian", "prior_kwargs": '{"spread": 0}'}, ["prior_kwargs", "spread"]),
        ({"max_length": 30, "algorithm": "beam"}, ["algorithm", "viterbi"]),
    ],
)
def test_bad_options_are_rejected_and_the_server_keeps_serving(server, parameters, words):
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException) as excinfo:
        raw_grpc(server, ["Hello. World."], parameters=parameters)
    assert_invalid(excinfo, *words)
    assert raw_grpc(server, ["Hello. World."]).as_numpy("SENTENCE_COUNTS").tolist()[0] >= 1


def test_bad_utf8_names_the_text(server):
    from tritonclient.utils import InferenceServerException

    data = np.array([b"fine", b"bad \xff\xfe bytes"], dtype=np.object_)
    with pytest.raises(InferenceServerException) as excinfo:
        raw_grpc(server, None, data=data)
    assert_invalid(excinfo, "TEXT[1]", "UTF-8")
    assert raw_grpc(server, ["still serving."]).as_numpy("SENTENCES").size >= 1


def test_wrong_dtype_and_shape_are_rejected(server):
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException) as excinfo:
        raw_grpc(server, None, data=np.array([1, 2], dtype=np.int32), datatype="INT32")
    assert "TEXT" in str(excinfo.value)
    with pytest.raises(InferenceServerException):
        raw_grpc(server, None, data=np.array([[b"a", b"b"]], dtype=np.object_))
    assert raw_grpc(server, ["still serving."]).as_numpy("SENTENCES").size >= 1


def test_empty_request_gives_no_sentences(server):
    result = raw_grpc(server, [])
    assert result.as_numpy("SENTENCE_COUNTS").size == 0


def test_too_many_windows_gets_a_clear_error_and_the_client_copes(server, sat, reference):
    from tritonclient.utils import InferenceServerException

    text = long_text(20000, seed=11)  # ~100 windows, over this repository's max_batch_size of 16
    with pytest.raises(InferenceServerException) as excinfo:
        raw_grpc(server, [text])
    assert_invalid(excinfo, "too many chunks", "at most 16", "in ensemble 'tiny'", "_long", "--max_batch_size")
    long_result = raw_grpc(server, [text], model="tiny_long")
    sentences = [s.decode() for s in long_result.as_numpy("SENTENCES")]
    assert_same_sentences(reference, [text], [sentences])
    assert sat.split(text) == sentences


@pytest.mark.slow
def test_a_million_characters_through_the_client(sat):
    text = long_text(1_000_000, seed=12)
    sentences = sat.split(text, block_size=128, stride=128)
    assert "\n".join(sentences).replace("\n", "") == text.replace("\n", "")


@pytest.mark.parametrize("options", [{}, {"stride": 32, "block_size": 64}, {"remove_whitespace_before_inference": True}])
def test_char_probs_match_predict_proba(sat, reference, options):
    texts = multilingual_texts(20, seed=13) + EDGE_CASES + [long_text(3000, seed=3)]
    got = list(sat.predict_proba(texts, **options))
    expected = list(reference.predict_proba(texts, **options))
    for text, g, e in zip(texts, got, expected):
        assert g.dtype == np.float32 and g.shape == e.shape, text
        np.testing.assert_allclose(g, e, atol=2e-3, err_msg=repr(text))
    assert isinstance(sat.predict_proba("One. Two."), np.ndarray)


def test_char_probs_only_when_asked(server):
    with_probs = raw_grpc_outputs(server, ["One. Two.", "Drei."], ["CHAR_PROBS", "SENTENCE_COUNTS"])
    assert with_probs.as_numpy("CHAR_PROBS").shape == (len("One. Two.") + len("Drei."),)
    without = raw_grpc_outputs(server, ["One. Two."], ["SENTENCES"])
    assert without.as_numpy("CHAR_PROBS") is None


def raw_grpc_outputs(server, texts, outputs):
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(server.grpc_url)
    data = np.array([t.encode("utf-8") for t in texts], dtype=np.object_)
    text = grpcclient.InferInput("TEXT", [len(texts)], "BYTES")
    text.set_data_from_numpy(data)
    try:
        return client.infer("tiny", [text], outputs=[grpcclient.InferRequestedOutput(o) for o in outputs])
    finally:
        client.close()


def test_models_share_tokenizer_and_postprocessor_where_identical(repository):
    """Two ensembles built into one repository: the same tokenizer is one model; the postprocessor
    differs only because the default thresholds differ (0.25 for an "sm" name, 0.025 otherwise)."""
    import re

    def step_models(name):
        return re.findall(r'model_name: "([^"]+)"', (repository / name / "config.pbtxt").read_text())

    tiny, tiny_la, fast = step_models("tiny"), step_models("tiny_la"), step_models("tiny_fast")
    assert tiny[0] == tiny_la[0] and tiny[0].startswith("sat_tokenizer_")
    assert fast[0] != tiny[0] and fast[0].startswith("sat_tokenizer_")  # its request limits differ
    assert tiny[1:] != tiny_la[1:]
    assert {tiny[2], tiny_la[2]} == {"sat_postprocessor_t0_25", "sat_postprocessor_t0_025"}
    assert sorted(p.name for p in repository.iterdir()) == sorted(
        ["tiny", "tiny_onnx", "tiny_long", "tiny_la", "tiny_la_onnx", "tiny_la_long", tiny[0], tiny[2], tiny_la[2],
         "tiny_lora", "tiny_lora_onnx", "tiny_lora_long", "sat_postprocessor_t0_5",
         "tiny_fast", "tiny_fast_onnx", "tiny_fast_long", fast[0]]
    )


def test_serve_command_starts_prints_endpoints_and_stops_on_ctrl_c(repository):
    """`sat-triton serve REPO` as a user runs it: ready, endpoints printed, SIGINT stops it cleanly."""
    import signal
    import subprocess
    import sys
    import time

    from sat_triton.builder.server import free_port
    from servers import ROOT

    grpc_port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "sat_triton.builder", "serve", str(repository), "--http_port", str(free_port()),
         "--grpc_port", str(grpc_port), "--metrics_port", str(free_port()), "--health_port", str(free_port())],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines = []
    deadline = time.monotonic() + 180
    try:
        for line in process.stdout:
            lines.append(line)
            if "Ctrl-C stops it." in line or time.monotonic() > deadline:
                break
        output = "".join(lines)
        assert f"127.0.0.1:{grpc_port}" in output and "tiny_lora" in output, output
        result = raw_grpc(type("S", (), {"grpc_url": f"127.0.0.1:{grpc_port}"})(), ["Served. Yes."])
        assert result.as_numpy("SENTENCE_COUNTS").tolist()[0] >= 1
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, rest
    assert "tritonserver stopped" in rest


def test_cpu_build_waits_for_no_batch_but_bounds_the_queue(repository):
    """On CPU batches buy nothing (docs/performance.md): auto batching is off, so the ONNX step's batcher
    waits for no batch to fill (delay 0); it is there for the bounded queue every step has."""
    config = (repository / "tiny_onnx" / "config.pbtxt").read_text()
    assert "dynamic_batching { max_queue_delay_microseconds: 0 default_queue_policy" in config
    assert "max_batch_size: 16" in config

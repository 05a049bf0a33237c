"""Builder pieces that need no export: names, rendering, errors, the client's view of the wire."""

import re
import string

import pytest

from sat_triton.builder import repository
from sat_triton.builder.cli import default_triton_name, main
from sat_triton.builder.errors import BuildError


def test_default_names():
    assert default_triton_name("sat-3l-sm") == "sat_3l_sm"
    assert default_triton_name("/models/ckpt/my-sat/") == "my_sat"
    assert default_triton_name("segment-any-text/sat-12l") == "sat_12l"


def test_every_template_renders_strictly_and_parses():
    values = {**repository.wire_names(), "name": "m", "INPUT_IDS_TYPE": "TYPE_INT64",
              "ATTENTION_MASK_TYPE": "TYPE_INT64", "LOGITS_TYPE": "TYPE_FP32", "tokenizer_model": "m_tokenizer",
              "onnx_model": "m_onnx", "postprocessor_model": "m_postprocessor", "long_model": "m_long",
              "max_batch_size": 8, "tokenizer_instance_count": 1,
              "postprocessor_instance_count": 1, "instance_kind": "KIND_CPU", "max_queue_delay_us": 100,
              "intra_op_threads": 0, "length_granularity": 32,
              "onnx_instance_count": 1, "tokenizer_threads": "auto", "dynamic_batching": "", "step_queue": "",
              "long_instance_count": 1, "ort_threads": "", "optimization": "", "cls_id": 0, "sep_id": 2, "pad_id": 1,
              "pad_to_multiple_of": 64, "default_threshold": 0.25,
              "language": "", "max_text_chars": 100, "max_request_chars": 200, "max_ensemble_request_chars": 50,
              "max_request_texts": 10}
    templates = sorted(repository.TEMPLATES.glob("*/config.pbtxt"))
    assert len(templates) == 6
    for template in templates:
        text = repository.render(template, values)
        assert "${" not in text
    with pytest.raises(BuildError, match="needs a value for"):
        repository.render(templates[0], {"name": "m"})


def test_ensemble_maps_use_the_wire_names():
    from sat_triton.pipeline import wire

    text = (repository.TEMPLATES / "ensemble" / "config.pbtxt").read_text()
    for placeholder in set(re.findall(r"\$\{(\w+)\}", text)) - {"name", "tokenizer_model", "onnx_model",
                                                                  "postprocessor_model"}:
        assert hasattr(wire, placeholder), placeholder


def test_client_wire_copy_matches():
    import sat_triton.client.wire as client_wire
    from sat_triton.pipeline import wire

    for name in ("TEXT", "SENTENCES", "SENTENCE_COUNTS", "SENTENCE_SPANS", "SENTENCE_PARAGRAPH", "PARAGRAPH_COUNTS",
                 "TOO_MANY_CHUNKS", "TOO_LONG_FOR_ENSEMBLE"):
        assert getattr(client_wire, name) == getattr(wire, name)


def test_missing_checkpoint_is_a_one_line_error(tmp_path, capsys):
    code = main(["build", "--model_name_or_path", str(tmp_path / "nope"), "--output_dir", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "is not a checkpoint directory" in err[0]


def test_not_a_sat_checkpoint(tmp_path, capsys):
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    assert main(["build", "--model_name_or_path", str(tmp_path)]) == 2
    assert "model_type 'xlm-token'" in capsys.readouterr().err


def test_bad_flag_values(tmp_path, capsys):
    assert main(["build", "--model_name_or_path", str(tmp_path), "--max_batch_size", "0"]) == 2
    assert "--max_batch_size must be >= 1" in capsys.readouterr().err
    assert main(["build", "--model_name_or_path", str(tmp_path), "--max_queue_size", "-1"]) == 2
    assert "--max_queue_size must be >= 0 (0: no bound), got -1" in capsys.readouterr().err


def test_serve_refuses_an_empty_repository(tmp_path, capsys):
    assert main(["serve", str(tmp_path)]) == 2
    assert "holds no model" in capsys.readouterr().err


def test_onnxruntime_backend_repository_is_refused_by_the_bundled_server(tmp_path):
    from sat_triton.builder.server import TritonServerError, check_repository_servable, find_tritonserver

    install = find_tritonserver()
    if not install.bundled:
        pytest.skip("a tritonserver from PATH may have the onnxruntime backend")
    (tmp_path / "m_onnx").mkdir()
    (tmp_path / "m_onnx" / "config.pbtxt").write_text('name: "m_onnx"\nbackend: "onnxruntime"\n')
    with pytest.raises(TritonServerError, match="--onnx_backend python"):
        check_repository_servable(tmp_path, install)


def _configs(root, name):
    onnx = (root / f"{name}_onnx" / "config.pbtxt").read_text()
    steps = [(d / "config.pbtxt").read_text() for d in sorted(root.iterdir())
             if d.name.startswith(("sat_tokenizer_", "sat_postprocessor_"))]
    return onnx, steps


def test_device_defaults_are_rendered(checkpoint_dir, tokenizer_dir, tmp_path, capsys):
    """builder/defaults.py per --device: what the H100 and CPU measurements chose."""
    from sat_triton.builder.defaults import build_defaults

    common = ["build", "--model_name_or_path", str(checkpoint_dir), "--tokenizer_name_or_path", str(tokenizer_dir)]
    assert main([*common, "--output_dir", str(tmp_path / "gpu"), "--triton_model_name", "g", "--device", "gpu"]) == 0
    assert main([*common, "--output_dir", str(tmp_path / "cpu"), "--triton_model_name", "c", "--device", "cpu"]) == 0
    from sat_triton.builder.defaults import cpu_onnx_instances
    from sat_triton.pipeline.threads import available_cores

    gpu, cpu = build_defaults("gpu"), build_defaults("cpu")
    assert cpu["onnx_instance_count"] == "auto"
    cpu["onnx_instance_count"] = cpu_onnx_instances(available_cores())  # resolved from this machine's cores
    onnx, steps = _configs(tmp_path / "gpu", "g")
    assert f"count: {gpu['onnx_instance_count']} kind: KIND_GPU" in onnx
    assert f"max_batch_size: {gpu['max_batch_size']}" in onnx
    assert f"dynamic_batching {{ max_queue_delay_microseconds: {gpu['max_queue_delay_us']} default_queue_policy" in onnx
    assert f'key: "length_granularity" value: {{ string_value: "{gpu["length_granularity"]}" }}' in onnx
    assert len(steps) == 2 and all(f"count: {gpu['instance_count']} kind: KIND_CPU" in c for c in steps)
    onnx, steps = _configs(tmp_path / "cpu", "c")
    assert f"count: {cpu['onnx_instance_count']} kind: KIND_CPU" in onnx
    assert "dynamic_batching { max_queue_delay_microseconds: 0 default_queue_policy" in onnx  # no batch delay
    assert 'key: "intra_op_threads" value: { string_value: "0" }' in onnx  # auto: a share, taken at load time
    assert all('key: "tokenizer_threads" value: { string_value: "auto" }' in c for c in steps if "tokenizer" in c)
    assert f'key: "length_granularity" value: {{ string_value: "{cpu["length_granularity"]}" }}' in onnx
    assert all(f"count: {cpu['instance_count']} kind: KIND_CPU" in c for c in steps)
    for device, root in (("gpu", tmp_path / "gpu"), ("cpu", tmp_path / "cpu")):  # every step's queue is bounded
        policy = (f"default_queue_policy {{ max_queue_size: {build_defaults(device)['max_queue_size']} "
                  f"timeout_action: REJECT default_timeout_microseconds: "
                  f"{build_defaults(device)['queue_timeout_ms'] * 1000} allow_timeout_override: true }}")
        configs = {d.name: (d / "config.pbtxt").read_text() for d in root.iterdir()}
        assert len(configs) == 5
        for name, config in configs.items():  # every step but the ensemble, which has no queue of its own
            assert (policy in config) == (name not in ("g", "c")), name
            if name not in ("g", "c", "g_onnx", "c_onnx"):  # the Python steps: the bound, no batching
                assert f"dynamic_batching {{ max_queue_delay_microseconds: 0 {policy} }}" in config, name
                assert "max_batch_size: 0" in config, name  # the wire shape is unchanged
        # each bounded step runs at least two instances (with one, Triton 2.51 stalls: docs/reliability.md)
        assert "count: 2 kind: KIND_CPU" in configs[("g" if device == "gpu" else "c") + "_long"]


def test_explicit_flags_override_device_defaults(checkpoint_dir, tokenizer_dir, tmp_path):
    args = ["build", "--model_name_or_path", str(checkpoint_dir), "--tokenizer_name_or_path", str(tokenizer_dir),
            "--output_dir", str(tmp_path), "--triton_model_name", "x", "--device", "gpu", "--onnx_instance_count", "2",
            "--instance_count", "3", "--length_granularity", "16", "--max_batch_size", "32", "--optimize", "off",
            "--max_queue_size", "3", "--queue_timeout_ms", "1500", "--dynamic_batching", "off"]
    assert main(args) == 0
    onnx, steps = _configs(tmp_path, "x")
    assert "count: 2 kind: KIND_GPU" in onnx and "max_batch_size: 32" in onnx
    policy = ("default_queue_policy { max_queue_size: 3 timeout_action: REJECT default_timeout_microseconds: 1500000 "
              "allow_timeout_override: true }")
    assert f"dynamic_batching {{ max_queue_delay_microseconds: 0 {policy} }}" in onnx
    assert all(f"dynamic_batching {{ max_queue_delay_microseconds: 0 {policy} }}" in c for c in steps)
    assert 'key: "length_granularity" value: { string_value: "16" }' in onnx
    assert all("count: 3 kind: KIND_CPU" in c for c in steps)


def test_unbounded_queues_render_no_python_step_batcher(checkpoint_dir, tokenizer_dir, tmp_path):
    """--max_queue_size 0 --queue_timeout_ms 0: Triton's own unbounded queues, and one instance is allowed."""
    args = ["build", "--model_name_or_path", str(checkpoint_dir), "--tokenizer_name_or_path", str(tokenizer_dir),
            "--output_dir", str(tmp_path), "--triton_model_name", "x", "--device", "cpu", "--instance_count", "1",
            "--onnx_instance_count", "1", "--max_queue_size", "0", "--queue_timeout_ms", "0"]
    assert main(args) == 0
    onnx, steps = _configs(tmp_path, "x")
    assert not any("dynamic_batching {" in c for c in steps)
    assert "count: 1 kind: KIND_CPU" in (tmp_path / "x_long" / "config.pbtxt").read_text()


@pytest.mark.parametrize("flags, named", [(["--instance_count", "1"], "--instance_count 1"),
                                          (["--tokenizer_instance_count", "1"], "--tokenizer_instance_count 1"),
                                          (["--onnx_instance_count", "1"], "--onnx_instance_count 1")])
def test_one_instance_with_a_bounded_queue_is_refused(tmp_path, capsys, flags, named):
    code = main(["build", "--model_name_or_path", str(tmp_path), "--output_dir", str(tmp_path / "r"), *flags])
    err = capsys.readouterr().err
    assert code == 2 and named in err and "bounded queue needs at least 2 instances" in err
    assert "--max_queue_size 0 --queue_timeout_ms 0" in err


def test_tokenizer_and_postprocessor_instances_apart(checkpoint_dir, tokenizer_dir, tmp_path):
    """--tokenizer_instance_count / --postprocessor_instance_count override --instance_count per step."""
    args = ["build", "--model_name_or_path", str(checkpoint_dir), "--tokenizer_name_or_path", str(tokenizer_dir),
            "--output_dir", str(tmp_path), "--triton_model_name", "x", "--device", "cpu", "--instance_count", "3",
            "--tokenizer_instance_count", "6"]
    assert main(args) == 0
    tokenizer = next(tmp_path.glob("sat_tokenizer_*/config.pbtxt")).read_text()
    postprocessor = next(tmp_path.glob("sat_postprocessor_*/config.pbtxt")).read_text()
    assert "count: 6 kind: KIND_CPU" in tokenizer and "count: 3 kind: KIND_CPU" in postprocessor


def test_zero_step_instances_is_refused(tmp_path, capsys):
    code = main(["build", "--model_name_or_path", str(tmp_path), "--output_dir", str(tmp_path / "r"),
                 "--postprocessor_instance_count", "0"])
    assert code == 2 and "--postprocessor_instance_count must be >= 1, got 0" in capsys.readouterr().err


def test_optimized_graph_is_checked_and_fused(checkpoint_dir, tmp_path):
    """--optimize runs onnxruntime's transformer optimizer; the result must still pass the PyTorch check."""
    import onnx

    from sat_triton.builder import checkpoint, export, modeling

    ckpt = checkpoint.resolve(str(checkpoint_dir))
    network, vocab = modeling.load_network(ckpt), int(ckpt.config["vocab_size"])
    plain = export.export_onnx(network, tmp_path / "plain.onnx", vocab_size=vocab)
    fused = export.export_onnx(network, tmp_path / "fused.onnx", vocab_size=vocab, optimize=True)
    assert fused.max_abs_diff <= fused.tolerance and plain.max_abs_diff <= plain.tolerance
    count = lambda path: len(onnx.load(str(path)).graph.node)  # noqa: E731
    assert count(fused.path) < count(plain.path)
    assert onnx.load(str(fused.path)).ir_version == export.IR_VERSION


def test_tensorrt_refuses_contrib_ops(tmp_path, capsys):
    assert main(["build", "--model_name_or_path", str(tmp_path), "--device", "gpu", "--onnx_backend", "onnxruntime",
                 "--tensorrt", "--optimize", "on"]) == 2
    assert "--tensorrt cannot run onnxruntime's contrib ops" in capsys.readouterr().err
    assert main(["build", "--model_name_or_path", str(tmp_path), "--length_granularity", "-1"]) == 2
    assert "--length_granularity must be >= 0" in capsys.readouterr().err


def test_tensorrt_engine_cache_renders_the_onnxruntime_backend_options():
    """--tensorrt_cache_dir sets trt_engine_cache_enable/trt_engine_cache_path on the TensorRT accelerator
    (the onnxruntime backend's names for onnxruntime's TensorRT provider options); without it, no cache."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    def accelerator(**settings):
        text = repository._optimization(repository.RepositorySettings(
            names=repository.ModelNames("m"), device="gpu", onnx_backend="onnxruntime", tensorrt=True,
            precision="fp16", **settings))
        config = text_format.Parse(text, model_config_pb2.ModelConfig())
        (tensorrt,) = config.optimization.execution_accelerators.gpu_execution_accelerator
        assert tensorrt.name == "tensorrt"
        return dict(tensorrt.parameters)

    assert accelerator() == {"precision_mode": "FP16", "max_workspace_size_bytes": "1073741824"}
    assert accelerator(tensorrt_cache_dir="/cache/tensorrt") == {
        "precision_mode": "FP16", "max_workspace_size_bytes": "1073741824",
        "trt_engine_cache_enable": "1", "trt_engine_cache_path": "/cache/tensorrt"}


def test_tensorrt_cache_dir_needs_tensorrt_and_an_absolute_path(tmp_path, capsys):
    base = ["build", "--model_name_or_path", str(tmp_path), "--device", "gpu", "--onnx_backend", "onnxruntime"]
    assert main([*base, "--tensorrt_cache_dir", "/cache/tensorrt"]) == 2
    assert "--tensorrt_cache_dir needs --tensorrt" in capsys.readouterr().err
    assert main([*base, "--tensorrt", "--tensorrt_cache_dir", "cache"]) == 2
    assert "--tensorrt_cache_dir must be an absolute path" in capsys.readouterr().err

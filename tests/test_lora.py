"""LoRA adapters merged before export give the network wtpsplit's own LoRA-merged model computes.

The adapters are random, in the layout wtpsplit's train_lora.py writes (and the hub holds under
loras/<style_or_domain>/<language>/); wtpsplit (test-only reference) loads them with SaT(lora_path=...).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("wtpsplit")

from artifacts import LORA_ALPHA as ALPHA, LORA_RANK as RANK, make_adapter, make_checkpoint  # noqa: E402

from sat_triton.builder import lora  # noqa: E402
from sat_triton.builder.checkpoint import load_state_dict, resolve  # noqa: E402
from sat_triton.builder.errors import BuildError  # noqa: E402
from sat_triton.builder.modeling import load_network  # noqa: E402

LAYERS, HIDDEN = 2, 32


@pytest.fixture(scope="module")
def base_checkpoint(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("lora-ckpt") / "tiny-sat-sm", layers=LAYERS, hidden=HIDDEN,
                           seed=3)


@pytest.fixture(scope="module")
def lookahead_checkpoint(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("lora-ckpt") / "tiny-sat-la", layers=LAYERS, hidden=HIDDEN,
                           lookahead=4, lookahead_split_layers=1, seed=4)


def _inputs():
    generator = torch.Generator().manual_seed(7)
    ids = torch.randint(4, 600, (3, 29), generator=generator)
    ids[:, 0] = 0
    mask = torch.ones_like(ids)
    ids[2, 17:] = 1
    ids[2, 16] = 2
    mask[2, 17:] = 0
    ids[1, -1] = 2
    return ids, mask


def _wtpsplit_model(ckpt: Path, tokenizer_dir: Path, adapter: Path):
    import warnings

    from wtpsplit import SaT

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sat = SaT(str(ckpt), tokenizer_name_or_path=str(tokenizer_dir), lora_path=str(adapter))
    assert sat.use_lora
    return sat.model.model.eval()


@pytest.mark.parametrize("ckpt_fixture", ["base_checkpoint", "lookahead_checkpoint"])
@pytest.mark.parametrize("num_labels,targets", [
    (1, ("query", "value")),  # head with the checkpoint's num_labels
    (3, ("query", "value")),  # head with more labels: the classifier is resized, label 0 is still read
    (5, ("query", "key", "value", "intermediate", "output")),
])
def test_merged_network_matches_wtpsplit(request, tmp_path, tokenizer_dir, ckpt_fixture, num_labels, targets):
    ckpt_dir = request.getfixturevalue(ckpt_fixture)
    adapter = make_adapter(tmp_path / "adapter", num_labels=num_labels, seed=num_labels, targets=targets)
    ckpt = resolve(str(ckpt_dir))
    base = load_state_dict(ckpt.directory)
    merged, got_labels = lora.lora_state(base, adapter)
    assert got_labels == num_labels
    assert merged["classifier.weight"].shape == (num_labels, HIDDEN)

    reference = _wtpsplit_model(ckpt_dir, tokenizer_dir, adapter)
    assert reference.config.num_labels == num_labels
    # the merged tensors are wtpsplit's, bit for bit
    ref_params = dict(reference.named_parameters())
    for key, value in merged.items():
        if key in ref_params:
            assert torch.equal(value, ref_params[key].detach()), key
    changed = [k for k in merged if merged[k] is not base[k]]
    assert len(changed) == LAYERS * len(targets) + 2  # the LoRA targets and the classifier
    assert all(torch.equal(base[k], load_state_dict(ckpt.directory)[k]) for k in base)  # input left alone

    network = load_network(ckpt, extra_state=merged)
    assert network.classifier.out_features == num_labels
    ids, mask = _inputs()
    with torch.no_grad():
        got = network(ids, mask)
        expected = reference(input_ids=ids, attention_mask=mask).logits[..., 0].float()
        unmerged = load_network(ckpt)(ids, mask)
    real = mask.bool()
    assert torch.allclose(got[real], expected[real], atol=1e-5), (got[real] - expected[real]).abs().max()
    assert not torch.allclose(unmerged[real], expected[real], atol=1e-2)  # the adapter does change the logits


def test_other_adapter_names_and_alpha_over_r(tmp_path, base_checkpoint, tokenizer_dir):
    """The adapter name inside the keys does not matter (the hub's are saved as 'text', wtpsplit loads them as
    'sat-lora'); the scaling is alpha / r, also when it is not a whole number."""
    adapter = make_adapter(tmp_path / "adapter", num_labels=1, name="sat-lora", r=3, alpha=5)
    ckpt = resolve(str(base_checkpoint))
    merged, _ = lora.lora_state(load_state_dict(ckpt.directory), adapter)
    reference = _wtpsplit_model(base_checkpoint, tokenizer_dir, adapter)
    ref_params = dict(reference.named_parameters())
    for key in ("roberta.encoder.layer.0.attention.self.query.weight",
                "roberta.encoder.layer.1.attention.self.value.weight"):
        assert torch.equal(merged[key], ref_params[key].detach())


def test_head_keys_outside_the_model_are_ignored_like_wtpsplit(tmp_path, base_checkpoint, tokenizer_dir):
    """Same num_labels, a head file whose tensors are not model parameters: wtpsplit keeps the checkpoint's head."""
    adapter = make_adapter(tmp_path / "adapter", num_labels=1)
    head = torch.load(adapter / "pytorch_model_head.bin", weights_only=True)
    torch.save({f"heads.text.1.{k.split('.')[-1]}": v for k, v in head.items()}, adapter / "pytorch_model_head.bin")
    ckpt = resolve(str(base_checkpoint))
    base = load_state_dict(ckpt.directory)
    merged, _ = lora.lora_state(base, adapter)
    assert merged["classifier.weight"] is base["classifier.weight"]
    reference = _wtpsplit_model(base_checkpoint, tokenizer_dir, adapter)
    assert torch.equal(merged["classifier.weight"], reference.classifier.weight.detach())


@pytest.mark.parametrize("missing", lora.ADAPTER_FILES)
def test_missing_file_names_it(tmp_path, base_checkpoint, missing):
    adapter = make_adapter(tmp_path / "adapter", num_labels=3)
    (adapter / missing).unlink()
    with pytest.raises(BuildError, match=missing.replace(".", r"\.")) as info:
        lora.lora_state(load_state_dict(base_checkpoint), adapter)
    assert "--lora_path" in str(info.value) and "\n" not in str(info.value)


def test_not_a_directory(tmp_path, base_checkpoint):
    with pytest.raises(BuildError, match="is not a directory; pass the adapter directory"):
        lora.lora_state(load_state_dict(base_checkpoint), tmp_path / "nowhere")


@pytest.mark.parametrize("config,match", [
    ({"r": 4, "alpha": 8}, "no 'config' object with 'r' and 'alpha'"),
    ({"config": {"alpha": 8}}, "no 'config' object with 'r' and 'alpha'"),
    ({"config": {"r": 0, "alpha": 8}}, "config.r is 0"),
    ({"config": {"r": "4", "alpha": 8}}, "config.r is '4', not a number"),
    ({"config": {"r": 4, "alpha": 8, "composition_mode": "scale"}}, "composition_mode 'add'"),
    ([1, 2], "not an object"),
])
def test_bad_adapter_config(tmp_path, base_checkpoint, config, match):
    adapter = make_adapter(tmp_path / "adapter", num_labels=1)
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(BuildError, match=match):
        lora.lora_state(load_state_dict(base_checkpoint), adapter)


def test_bad_files(tmp_path, base_checkpoint):
    state = load_state_dict(base_checkpoint)
    adapter = make_adapter(tmp_path / "adapter", num_labels=1)
    (adapter / "head_config.json").write_text("{not json")
    with pytest.raises(BuildError, match="cannot read .*head_config.json"):
        lora.lora_state(state, adapter)

    adapter = make_adapter(tmp_path / "adapter2", num_labels=1)
    (adapter / "head_config.json").write_text(json.dumps({"num_labels": 0}))
    with pytest.raises(BuildError, match="num_labels is 0"):
        lora.lora_state(state, adapter)

    adapter = make_adapter(tmp_path / "adapter3", num_labels=1)
    weights = torch.load(adapter / "pytorch_adapter.bin", weights_only=True)
    del weights["roberta.encoder.layer.1.attention.self.value.loras.text.lora_B"]
    torch.save(weights, adapter / "pytorch_adapter.bin")
    with pytest.raises(BuildError, match="layer.1.attention.self.value has only lora_A"):
        lora.lora_state(state, adapter)

    adapter = make_adapter(tmp_path / "adapter4", num_labels=1)
    torch.save({"roberta.encoder.layer.0.attention.self.query.adapters.text.down": torch.zeros(2, 2)},
               adapter / "pytorch_adapter.bin")
    with pytest.raises(BuildError, match="holds no '<module>.loras.<name>.lora_A/lora_B' tensors"):
        lora.lora_state(state, adapter)

    adapter = make_adapter(tmp_path / "adapter5", num_labels=1)
    weights = torch.load(adapter / "pytorch_adapter.bin", weights_only=True)
    weights = {k.replace("roberta.", "bert."): v for k, v in weights.items()}
    torch.save(weights, adapter / "pytorch_adapter.bin")
    with pytest.raises(BuildError, match="targets bert.encoder.layer.*which the checkpoint does not have"):
        lora.lora_state(state, adapter)

    adapter = make_adapter(tmp_path / "adapter6", num_labels=1)
    (adapter / "pytorch_adapter.bin").write_bytes(b"not a torch file")
    with pytest.raises(BuildError, match=r"cannot load .*pytorch_adapter\.bin as tensors"):
        lora.lora_state(state, adapter)


def test_pickled_objects_are_refused(tmp_path, base_checkpoint):
    """weights_only=True: a head file holding arbitrary objects is not unpickled."""
    adapter = make_adapter(tmp_path / "adapter", num_labels=1)
    torch.save({"classifier.weight": torch.zeros(1, HIDDEN), "payload": Path("/")}, adapter / "pytorch_model_head.bin")
    with pytest.raises(BuildError, match=r"pytorch_model_head\.bin as tensors with torch\.load\(weights_only=True\)"):
        lora.lora_state(load_state_dict(base_checkpoint), adapter)


def test_resized_head_needs_its_weights(tmp_path, base_checkpoint):
    state = load_state_dict(base_checkpoint)
    adapter = make_adapter(tmp_path / "adapter", num_labels=3, head_keys=("classifier.weight",))
    with pytest.raises(BuildError, match="num_labels 3 .* has no classifier.bias"):
        lora.lora_state(state, adapter)

    adapter = make_adapter(tmp_path / "adapter2", num_labels=3)
    (adapter / "head_config.json").write_text(json.dumps({"num_labels": 4}))
    with pytest.raises(BuildError, match=r"classifier.weight has shape \(3, 32\), expected \(4, 32\)"):
        lora.lora_state(state, adapter)


def test_head_config_without_num_labels_keeps_the_checkpoints(tmp_path, base_checkpoint):
    state = load_state_dict(base_checkpoint)
    adapter = make_adapter(tmp_path / "adapter", num_labels=1)
    (adapter / "head_config.json").write_text(json.dumps({"model_class": "SubwordXLMForTokenClassification"}))
    merged, num_labels = lora.lora_state(state, adapter)
    assert num_labels is None and merged["classifier.weight"].shape == (1, HIDDEN)


def test_download_adapter_uses_the_models_loras_folder(tmp_path, monkeypatch):
    import huggingface_hub

    source = make_adapter(tmp_path / "src", num_labels=3)
    snapshot = tmp_path / "cache" / "snapshots" / "0123abc"
    calls = []

    def fake_download(repo_id, filename, *, subfolder=None, **kwargs):
        calls.append((repo_id, subfolder, filename, kwargs))
        if subfolder != "loras/ud/en":
            from huggingface_hub.errors import EntryNotFoundError

            raise EntryNotFoundError(f"404 {subfolder}/{filename}")
        target = snapshot / subfolder / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source / filename, target)
        return str(target)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    got = lora.download_adapter("segment-any-text/sat-3l-sm", "ud", "en")
    assert got == snapshot / "loras" / "ud" / "en"
    assert sorted(c[2] for c in calls) == sorted(lora.ADAPTER_FILES)
    assert {(c[0], c[1]) for c in calls} == {("segment-any-text/sat-3l-sm", "loras/ud/en")}

    with pytest.raises(BuildError, match="has no loras/opus100/xx/adapter_config.json on the Hugging Face Hub; "
                                         "check --style_or_domain and --language"):
        lora.download_adapter("segment-any-text/sat-3l-sm", "opus100", "xx")

    def offline(repo_id, filename, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'\nmore lines")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(BuildError, match=r"could not download loras/ud/en/adapter_config.json .*\(OSError: We couldn't "
                                         r"connect to 'https://huggingface.co'\); .*--lora_path DIR$"):
        lora.download_adapter("segment-any-text/sat-3l-sm", "ud", "en")

    with pytest.raises(BuildError, match="needs both --style_or_domain and --language"):
        lora.download_adapter("segment-any-text/sat-3l-sm", "ud", None)
    with pytest.raises(BuildError, match="not a single path component"):
        lora.download_adapter("segment-any-text/sat-3l-sm", "../x", "en")


def _cli_has_lora_flags() -> bool:
    from sat_triton.builder.cli import _build_parser

    build = next(a for a in _build_parser()._actions if getattr(a, "choices", None) and "build" in a.choices)
    options = {s for a in build.choices["build"]._actions for s in a.option_strings}
    return {"--use_lora", "--style_or_domain", "--language", "--lora_path"} <= options


needs_cli_flags = pytest.mark.skipif(not _cli_has_lora_flags(), reason="builder/cli.py has no LoRA flags yet")


@needs_cli_flags
def test_cli_build_with_lora_path(tmp_path, base_checkpoint, tokenizer_dir, capsys):
    """`sat-triton build --lora_path DIR`: the served ONNX model computes wtpsplit's LoRA logits (label 0 of a
    3-label head) and the repository's default threshold is 0.5."""
    import numpy as np
    import onnxruntime as ort

    from sat_triton.builder.cli import main
    from sat_triton.pipeline import wire

    adapter = make_adapter(tmp_path / "adapter", num_labels=3, seed=11)
    out = tmp_path / "repo"
    code = main(["build", "--model_name_or_path", str(base_checkpoint), "--tokenizer_name_or_path", str(tokenizer_dir),
                 "--output_dir", str(out), "--triton_model_name", "tiny_lora", "--device", "cpu",
                 "--lora_path", str(adapter)])
    assert code == 0, capsys.readouterr().err
    assert "LoRA: merged" in capsys.readouterr().out
    assert 'string_value: "0.5"' in (out / "tiny_lora_long" / "config.pbtxt").read_text()

    session = ort.InferenceSession(str(out / "tiny_lora_onnx" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    ids, mask = _inputs()
    got = session.run([wire.LOGITS], {wire.INPUT_IDS: ids.numpy(), wire.ATTENTION_MASK: mask.numpy()})[0]
    reference = _wtpsplit_model(base_checkpoint, tokenizer_dir, adapter)
    with torch.no_grad():
        expected = reference(input_ids=ids, attention_mask=mask).logits[..., 0].float().numpy()
    real = mask.numpy() == 1
    assert np.abs(got[real] - expected[real]).max() < 1e-4


@needs_cli_flags
@pytest.mark.parametrize("flags,match", [
    (["--use_lora"], "--use_lora needs --style_or_domain and --language"),
    (["--use_lora", "--style_or_domain", "ud"], "--use_lora needs --style_or_domain and --language"),
    (["--style_or_domain", "ud", "--language", "en"], "add --use_lora"),
    (["--use_lora", "--style_or_domain", "ud", "--language", "en"], "is a local directory; pass the adapter directory "
                                                                    "with --lora_path DIR"),
    (["--lora_path", "ADAPTER", "--use_lora", "--style_or_domain", "ud", "--language", "en"], "not both"),
    (["--lora_path", "MISSING"], "is not a directory; pass the adapter directory"),
])
def test_cli_lora_flag_errors(tmp_path, base_checkpoint, tokenizer_dir, capsys, flags, match):
    from sat_triton.builder.cli import main

    adapter = make_adapter(tmp_path / "adapter", num_labels=1)
    flags = [str(adapter) if f == "ADAPTER" else str(tmp_path / "missing") if f == "MISSING" else f for f in flags]
    code = main(["build", "--model_name_or_path", str(base_checkpoint), "--tokenizer_name_or_path", str(tokenizer_dir),
                 "--output_dir", str(tmp_path / "repo"), "--device", "cpu", *flags])
    err = capsys.readouterr().err
    assert code == 2 and match in err and err.count("\n") == 1, err
    assert not (tmp_path / "repo").exists()

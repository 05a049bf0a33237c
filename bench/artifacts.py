"""The benchmark's model artifacts, generated once and cached under ``--work_dir``.

* a Unigram tokenizer in XLM-R's layout (``<s> <pad> </s> <unk>`` = 0-3, NFKC, Metaspace) trained
  on the generated corpus (:mod:`bench.corpus`);
* a checkpoint of sat-3l-sm's shape (:class:`Shape`) with random weights, wtpsplit's own
  ``SubwordXLMForTokenClassification``, its classifier rescaled so ~4% of tokens are boundaries;
* the same network as ``model_optimized.onnx`` in the form wtpsplit's ``SaT(..., ort_providers=...)``
  loads.

Each directory carries a stamp of what made it; a different stamp rebuilds it.
"""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .common import GENERATOR_VERSION, ROOT, log
from .corpus import CorpusGenerator


@dataclass(frozen=True)
class Shape:
    layers: int = 3
    hidden: int = 768
    heads: int = 12
    intermediate: int = 3072
    vocab: int = 250002

    @property
    def tag(self) -> str:
        return f"L{self.layers}-H{self.hidden}-A{self.heads}-I{self.intermediate}-V{self.vocab}"


def stamp_ok(directory: Path, spec: dict) -> bool:
    stamp = directory / ".bench-stamp.json"
    return stamp.is_file() and json.loads(stamp.read_text()) == spec


def write_stamp(directory: Path, spec: dict) -> None:
    (directory / ".bench-stamp.json").write_text(json.dumps(spec, sort_keys=True))


def _test_sentences() -> list[str]:
    spec = importlib.util.spec_from_file_location("sat_bench_test_corpus", ROOT / "tests" / "corpus.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SENTENCES


def make_tokenizer(out: Path, generator: CorpusGenerator, vocab_size: int, train_sentences: int) -> Path:
    """As tests/artifacts.make_tokenizer (Unigram, <s> <pad> </s> <unk> = 0-3, NFKC, Metaspace),
    trained on generated multilingual sentences."""
    spec = {"version": GENERATOR_VERSION, "vocab": vocab_size, "train": train_sentences}
    if stamp_ok(out, spec):
        return out
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    SENTENCES = _test_sentences()  # the integration tests' sentences, so their characters are in the vocabulary

    log(f"training a Unigram tokenizer ({vocab_size} pieces) on {train_sentences} generated sentences")
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
                                      unk_token="<unk>", show_progress=False)
    tok.train_from_iterator(generator.training_sentences(train_sentences) + SENTENCES * 5, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", cls_token="<s>",
                                   sep_token="</s>", pad_token="<pad>", unk_token="<unk>")
    assert [fast.cls_token_id, fast.pad_token_id, fast.sep_token_id, fast.unk_token_id] == [0, 1, 2, 3]
    if out.exists():
        shutil.rmtree(out)
    fast.save_pretrained(str(out))
    write_stamp(out, spec)
    return out


def make_checkpoint(out: Path, shape: Shape, tokenizer_dir: Path, sample_texts: list[str],
                    boundary_rate: float = 0.04, threshold: float = 0.25, seed: int = 0) -> Path:
    """A SubwordXLMForTokenClassification (wtpsplit's class, model_type xlm-token) of ``shape`` with
    random weights. As tests/artifacts.py, the classifier is rescaled so boundary probabilities spread
    over (0, 1): its weights get std 0.6*sqrt(32/hidden) (artifacts' 0.6 at hidden 32), and its bias is
    set so that about ``boundary_rate`` of the tokens of sample texts are above ``threshold``
    (a sentence every ~25 tokens, like real text) instead of half of them."""
    spec = {"version": GENERATOR_VERSION, "shape": asdict(shape), "rate": boundary_rate, "seed": seed}
    if stamp_ok(out, spec):
        return out
    import torch
    from transformers import AutoTokenizer
    from wtpsplit.configs import SubwordXLMConfig
    from wtpsplit.models import SubwordXLMForTokenClassification

    log(f"generating a random checkpoint of shape {shape.tag}")
    torch.manual_seed(seed)
    config = SubwordXLMConfig(
        vocab_size=shape.vocab, hidden_size=shape.hidden, num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads, intermediate_size=shape.intermediate, max_position_embeddings=514,
        pad_token_id=1, bos_token_id=0, eos_token_id=2, type_vocab_size=1, num_labels=1, lookahead=None,
        lookahead_split_layers=None,
    )
    model = SubwordXLMForTokenClassification(config).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    with torch.no_grad():
        model.classifier.weight.normal_(0.0, 0.6 * math.sqrt(32 / shape.hidden))
        model.classifier.bias.zero_()
        enc = tokenizer(sample_texts, padding=True, return_tensors="pt")
        logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits[..., 0]
        real = enc["attention_mask"].bool()
        real[:, 0] = False
        values = logits[real].float().numpy()
        cut = float(np.quantile(values, 1.0 - boundary_rate))
        model.classifier.bias.fill_(math.log(threshold / (1 - threshold)) - cut)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    model.save_pretrained(str(out))
    write_stamp(out, spec)
    return out


def export_wtpsplit_onnx(checkpoint_dir: Path, out: Path) -> Path:
    """``model_optimized.onnx`` + ``config.json`` as wtpsplit's SaTORTWrapper reads them: inputs
    ``input_ids`` (int64) and ``attention_mask`` (float16), output ``logits`` [batch, seq, 1]. The
    network is builder.modeling's (the one the server exports), in a wrapper for that interface."""
    spec = {"version": GENERATOR_VERSION, "checkpoint": json.loads((checkpoint_dir / ".bench-stamp.json").read_text())}
    if stamp_ok(out, spec):
        return out
    import warnings

    import onnx
    import torch

    from sat_triton.builder import checkpoint as builder_checkpoint
    from sat_triton.builder import modeling

    log("exporting the ONNX model for wtpsplit's SaT(..., ort_providers=...)")
    network = modeling.load_network(builder_checkpoint.resolve(str(checkpoint_dir)))

    class WtpsplitInterface(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, input_ids, attention_mask):
            return self.net(input_ids, (attention_mask > 0.5).to(torch.int64))[..., None]

    wrapper = WtpsplitInterface(network).eval()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    ids = torch.randint(4, 1000, (2, 16))
    mask = torch.ones(2, 16, dtype=torch.float16)
    path = out / "model_optimized.onnx"
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, (ids, mask), str(path), input_names=["input_ids", "attention_mask"],
                          output_names=["logits"], opset_version=17, do_constant_folding=True, dynamo=False,
                          dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                                        "logits": {0: "batch", 1: "seq"}})
    onnx.checker.check_model(str(path))
    shutil.copy2(checkpoint_dir / "config.json", out / "config.json")
    write_stamp(out, spec)
    return out


@dataclass(frozen=True)
class Artifacts:
    tokenizer_dir: Path
    checkpoint_dir: Path
    wtpsplit_onnx_dir: Path


def tokenizer_path(work: Path, vocab_size: int = 8000) -> Path:
    """The generated tokenizer's directory (made if missing), as the benchmark and bench/steps.py use it."""
    return make_tokenizer(work / f"tokenizer-u{vocab_size}", CorpusGenerator(), vocab_size, train_sentences=6000)


def prepare(work: Path, shape: Shape, text_chars: int = 300, vocab_size: int = 8000) -> Artifacts:
    """Every artifact of one benchmark run, generated once per ``work`` directory."""
    generator = CorpusGenerator()
    tokenizer_dir = tokenizer_path(work, vocab_size)
    checkpoint_dir = make_checkpoint(work / f"sat-3l-sm-shape-{shape.tag}", shape, tokenizer_dir,
                                     generator.texts(16, seed=3, chars=text_chars))
    ort_dir = export_wtpsplit_onnx(checkpoint_dir, work / f"sat-3l-sm-shape-{shape.tag}-wtpsplit-onnx")
    return Artifacts(tokenizer_dir, checkpoint_dir, ort_dir)


def token_counts(tokenizer_dir: Path, texts: list[str]) -> np.ndarray:
    """Tokens per text (no ``<s>``/``</s>``) with the generated tokenizer."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    return np.array([len(e.ids) for e in tokenizer.encode_batch(texts, add_special_tokens=False)], dtype=np.int64)

#!/usr/bin/env python
"""sat-triton benchmark: the Triton ensemble against wtpsplit's SaT in-process, in one run.

    python bench/benchmark.py --quick            # ~3-5 minutes on a 2-core CPU
    python bench/benchmark.py                    # 1000 texts, 1/8/32 texts per request x 1/4/16 clients
    python bench/benchmark.py --quick --sweep    # also serve repositories built with other settings
    python bench/benchmark.py --device gpu       # GPU machine (onnxruntime-gpu, torch with CUDA)

What it does (everything on the same checkpoint, tokenizer and corpus):

1. generates (once, cached under --work_dir) a checkpoint of sat-3l-sm's shape with random weights
   (3 layers, hidden 768, 12 heads, intermediate 3072, vocabulary 250,002), an XLM-R-style Unigram
   tokenizer trained on a generated multilingual corpus, and an ONNX file in the form wtpsplit's
   ``SaT(..., ort_providers=...)`` loads (``model_optimized.onnx``);
2. builds a model repository with ``python -m sat_triton.builder build`` and serves it with tritonserver;
3. drives the server with concurrent gRPC clients (threads, one client each) at several
   texts-per-request settings, plus ``client.SaT`` and one ``async_infer`` client, and times a short
   text on the idle server;
4. runs wtpsplit's SaT in-process (PyTorch and ONNX Runtime; whole list in one call and one text
   per call) and the ONNX model alone on fixed-shape batches (the ceiling);
5. prints one table with chars/s, texts/s, tokens/s and latency percentiles, the ratios, and for
   every server phase Triton's per-model statistics plus the CPU each process used.

Reading the table on a shared machine: before and after every phase the ONNX model runs alone for
--probe_seconds on a corpus-shaped batch; "vs alone" is the phase's real tokens/s over the mean of
those two probes, so it holds when other work slows the machine down (the note then says "others
N cores", CPU used outside this benchmark, and "noisy" when the two probes disagree by > 15%).

--sweep rebuilds the repository with other settings (``sat-triton build`` flags; intra_op_threads and
dynamic batching off, which have no flag yet, are applied to the rendered *_onnx/config.pbtxt).
Results are also written as JSON to ``<work_dir>/results/``.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import gc
import itertools
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GENERATOR_VERSION = 3  # bump when the generated artifacts change, so caches are rebuilt
SHORT_TEXT = "Hello world. This is a test! How are you? I'm fine, thanks."
TRITON_NAME = "sat_bench"
# GPU runs: requests of 1 to 128 texts from up to 64 concurrent clients (texts_per_request:clients)
GPU_SETTINGS = "1:1,1:16,8:16,32:16,32:64,128:16,128:64"
GPU_SWEEP_SETTINGS = "8:16,32:64,128:64"


# ------------------------------------------------------------------------------------------------
# Multilingual corpus generator
# ------------------------------------------------------------------------------------------------
# Synthetic words built per script from syllables, drawn with a Zipf law. With the tokenizer trained
# below (Unigram, 8000 pieces) the per-language chars/token come out close to XLM-R's on real text
# (English ~3.8, German ~3, Chinese ~1.7, Korean ~1.6), about 2.3 on the mix.
LANGS = {
    "en": dict(cons="b c d f g h j k l m n p r s t v w y th sh ch st tr pl".split(),
               vows="a e i o u ea ou ai".split(), sep=" ", case=True, end=[". "] * 8 + ["? ", "! "]),
    "de": dict(cons="b d f g h k l m n p r s t w z sch ch st sp pf".split(),
               vows="a e i o u ä ö ü ei au ie".split(), sep=" ", case=True, end=[". "] * 8 + ["? ", "! "]),
    "fr": dict(cons="b c d f g j l m n p r s t v qu ch gn".split(),
               vows="a e i o u é è ê ou ai eau".split(), sep=" ", case=True, end=[". "] * 8 + [" ? ", " ! "]),
    "es": dict(cons="b c d f g j l m n ñ p r s t v ll rr".split(),
               vows="a e i o u á é í ó ú".split(), sep=" ", case=True, end=[". "] * 8 + ["? ", "! "]),
    "ru": dict(cons="б в г д ж з к л м н п р с т ф х ц ч ш щ".split(),
               vows="а е и о у ы э ю я ё".split(), sep=" ", case=True, end=[". "] * 8 + ["? ", "! "]),
    "el": dict(cons="β γ δ ζ θ κ λ μ ν ξ π ρ σ τ φ χ ψ".split(),
               vows="α ε η ι ο υ ω ά έ ί ό".split(), sep=" ", case=True, end=[". "] * 8 + ["; "]),
    "ar": dict(cons="ب ت ث ج ح خ د ذ ر ز س ش ص ض ط ظ ع غ ف ق ك ل م ن ه".split(),
               vows="ا و ي ة".split(), sep=" ", case=False, end=[". "] * 8 + ["؟ "]),
    "he": dict(cons="ב ג ד ה ז ח ט כ ל מ נ ס ע פ צ ק ר ש ת".split(),
               vows="א ו י".split(), sep=" ", case=False, end=[". "] * 8 + ["? "]),
    "hi": dict(cons="क ख ग घ च ज ट ड त द न प ब म य र ल व स ह".split(),
               vows="ा ि ी ु ू े ै ो ौ ं".split(), sep=" ", case=False, end=["। "] * 8 + ["? "]),
    "th": dict(cons="ก ข ค ง จ ช ด ต ท น บ ป พ ม ย ร ล ว ส ห อ".split(),
               vows="ะ า ิ ี ึ ื ุ ู เ แ".split(), sep="", case=False, end=[" "]),
    "ko": dict(hangul=800, sep=" ", case=False, end=[". "] * 8 + ["? "]),
    "zh": dict(cjk=1500, sep="", case=False, end=["。"] * 8 + ["？", "！"]),
    "ja": dict(cjk=800, kana=True, sep="", case=False, end=["。"] * 9 + ["？"]),
}
WEIGHTS = {"en": 2, "de": 1, "fr": 1, "es": 1, "ru": 2, "zh": 4, "ja": 3, "ko": 2, "ar": 1, "hi": 1, "el": 1,
           "he": 1, "th": 1}


class CorpusGenerator:
    def __init__(self, seed: int = 1234, lexicon: int = 20000):
        rng = random.Random(seed)
        self.lexicon = {}
        for name, spec in LANGS.items():
            words = set()
            while len(words) < lexicon:
                words.add(self._word(rng, spec))
            ordered = sorted(words)
            rng.shuffle(ordered)
            self.lexicon[name] = ordered
        self.cum = list(itertools.accumulate(1.0 / (r + 1) ** 1.05 for r in range(lexicon)))

    @staticmethod
    def _word(rng, spec) -> str:
        if "cjk" in spec:
            n = rng.choice([1, 2, 2, 2, 3, 4])
            return "".join(
                chr(rng.randint(0x3041, 0x3096)) if spec.get("kana") and rng.random() > 0.45
                else chr(0x4E00 + rng.randrange(spec["cjk"]))
                for _ in range(n))
        if "hangul" in spec:
            n = rng.choice([1, 2, 2, 3, 3, 4])
            return "".join(chr(0xAC00 + rng.randrange(spec["hangul"]) * 13) for _ in range(n))
        n = rng.choice([1, 1, 2, 2, 2, 3, 3, 4])
        cons, vows = spec["cons"], spec["vows"]
        word = "".join((rng.choice(cons) if rng.random() < 0.6 else rng.choice(cons) + rng.choice(cons))
                       + rng.choice(vows) for _ in range(n))
        return word + rng.choice(cons) if rng.random() < 0.3 else word

    def sentence(self, rng, lang: str) -> str:
        spec = LANGS[lang]
        n = rng.randint(4, 16) if spec["sep"] else rng.randint(6, 22)
        words = rng.choices(self.lexicon[lang], cum_weights=self.cum, k=n)
        if rng.random() < 0.15:
            number = rng.randint(1, 2030) if rng.random() < 0.5 else round(rng.random() * 100, 1)
            words.insert(rng.randrange(len(words)), str(number))
        if spec["sep"] and rng.random() < 0.3:
            i = rng.randrange(1, len(words))
            words[i - 1] += ","
        text = spec["sep"].join(words)
        if spec["case"]:
            text = text[0].upper() + text[1:]
        return text + rng.choice(spec["end"])

    def random_language(self, rng) -> str:
        return rng.choices(list(WEIGHTS), list(WEIGHTS.values()))[0]

    def texts(self, n: int, seed: int = 0, chars: int = 300) -> list[str]:
        """``n`` texts of about ``chars`` characters (+-15%), mostly one language each."""
        rng = random.Random(seed)
        out = []
        for _ in range(n):
            lang = self.random_language(rng)
            target = rng.randint(int(chars * 0.85), int(chars * 1.15))
            text = ""
            while True:
                piece = self.sentence(rng, lang if rng.random() < 0.9 else self.random_language(rng))
                if rng.random() < 0.08:
                    piece = piece.rstrip(" ") + "\n"
                if text and len(text) + len(piece) > target:
                    break
                text += piece
            out.append(text.rstrip())
        return out

    def training_sentences(self, n: int, seed: int = 99) -> list[str]:
        rng = random.Random(seed)
        return [self.sentence(rng, self.random_language(rng)) for _ in range(n)]


# ------------------------------------------------------------------------------------------------
# Artifacts: tokenizer, checkpoint, wtpsplit ONNX (cached)
# ------------------------------------------------------------------------------------------------
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


def _stamp_ok(directory: Path, spec: dict) -> bool:
    stamp = directory / ".bench-stamp.json"
    return stamp.is_file() and json.loads(stamp.read_text()) == spec


def _write_stamp(directory: Path, spec: dict) -> None:
    (directory / ".bench-stamp.json").write_text(json.dumps(spec, sort_keys=True))


def make_tokenizer(out: Path, generator: CorpusGenerator, vocab_size: int, train_sentences: int) -> Path:
    """As tests/artifacts.make_tokenizer (Unigram, <s> <pad> </s> <unk> = 0-3, NFKC, Metaspace),
    trained on generated multilingual sentences."""
    spec = {"version": GENERATOR_VERSION, "vocab": vocab_size, "train": train_sentences}
    if _stamp_ok(out, spec):
        return out
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    sys.path.insert(0, str(ROOT / "tests"))
    from corpus import SENTENCES  # noqa: E402  (the integration tests' sentences, for their characters)

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
    _write_stamp(out, spec)
    return out


def make_checkpoint(out: Path, shape: Shape, tokenizer_dir: Path, sample_texts: list[str],
                    boundary_rate: float = 0.04, threshold: float = 0.25, seed: int = 0) -> Path:
    """A SubwordXLMForTokenClassification (wtpsplit's class, model_type xlm-token) of ``shape`` with
    random weights. As tests/artifacts.py, the classifier is rescaled so boundary probabilities spread
    over (0, 1): its weights get std 0.6*sqrt(32/hidden) (artifacts' 0.6 at hidden 32), and its bias is
    set so that about ``boundary_rate`` of the tokens of sample texts are above ``threshold``
    (a sentence every ~25 tokens, like real text) instead of half of them."""
    spec = {"version": GENERATOR_VERSION, "shape": asdict(shape), "rate": boundary_rate, "seed": seed}
    if _stamp_ok(out, spec):
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
    _write_stamp(out, spec)
    return out


def export_wtpsplit_onnx(checkpoint_dir: Path, out: Path) -> Path:
    """``model_optimized.onnx`` + ``config.json`` as wtpsplit's SaTORTWrapper reads them: inputs
    ``input_ids`` (int64) and ``attention_mask`` (float16), output ``logits`` [batch, seq, 1]. The
    network is builder.modeling's (the one the server exports), in a wrapper for that interface."""
    spec = {"version": GENERATOR_VERSION, "checkpoint": json.loads((checkpoint_dir / ".bench-stamp.json").read_text())}
    if _stamp_ok(out, spec):
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
    _write_stamp(out, spec)
    return out


# ------------------------------------------------------------------------------------------------
# Repository build
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Variant:
    name: str
    instance_count: int = 1  # tokenizer and postprocessor instances
    tokenizer_instance_count: int = 0  # 0: instance_count
    postprocessor_instance_count: int = 0  # 0: instance_count
    onnx_instance_count: int = 1
    intra_op_threads: int = 0  # 0: onnxruntime's default (one thread per physical core)
    pad_to_multiple_of: int = 64
    max_queue_delay_us: int = 2000
    max_batch_size: int = 64
    dynamic_batching: bool = True
    length_granularity: int = 8
    precision: str = "fp32"
    optimize: bool = False

    @property
    def step_instances(self) -> dict[str, int]:
        """Instances of the tokenizer and of the postprocessor."""
        return {"tokenizer": self.tokenizer_instance_count or self.instance_count,
                "postprocessor": self.postprocessor_instance_count or self.instance_count}

    def describe(self) -> str:
        steps = self.step_instances
        instances = (f"instances={self.instance_count}" if len(set(steps.values())) == 1
                     else f"tokenizer_instances={steps['tokenizer']} postprocessor_instances={steps['postprocessor']}")
        return (f"{self.precision} {instances} onnx_instances={self.onnx_instance_count} "
                f"intra_op={self.intra_op_threads or 'default'} pad={self.pad_to_multiple_of} "
                f"max_batch={self.max_batch_size} "
                + (f"delay={self.max_queue_delay_us}us" if self.dynamic_batching else "no dynamic batching")
                + f" granularity={self.length_granularity}" + (" fused" if self.optimize else ""))

    def flags(self) -> list[str]:
        """Its ``sat-triton build`` flags (the settings that change what is exported or named)."""
        return ["--max_batch_size", str(self.max_batch_size), "--pad_to_multiple_of", str(self.pad_to_multiple_of),
                "--precision", self.precision, "--optimize", "on" if self.optimize else "off"]

    def config_flags(self) -> list[str]:
        """The ``sat-triton build`` flags that only change config.pbtxt lines (patched into a copy)."""
        steps = self.step_instances
        return ["--tokenizer_instance_count", str(steps["tokenizer"]),
                "--postprocessor_instance_count", str(steps["postprocessor"]),
                "--onnx_instance_count", str(self.onnx_instance_count),
                "--max_queue_delay_us", str(self.max_queue_delay_us), "--intra_op_threads", str(self.intra_op_threads),
                "--dynamic_batching", "on" if self.dynamic_batching else "off",
                "--length_granularity", str(self.length_granularity)]


def _sub_once(pattern: str, replacement: str, text: str, where: Path) -> str:
    text, n = re.subn(pattern, replacement, text, flags=re.M)
    if n != 1:
        raise SystemExit(f"{where}: expected one match of {pattern!r}, found {n}")
    return text


def patch_configs(repo: Path, variant: Variant) -> None:
    """Set ``variant``'s config-only settings in the rendered config.pbtxt files of ``repo`` (a copy of a
    repository built with the same build flags): what ``sat-triton build`` renders for those flags."""
    def rewrite(config: Path, edit) -> None:
        text = edit(config.read_text())
        config.unlink()  # the copy hard-links files: never write through to the original
        config.write_text(text)

    for kind, count in variant.step_instances.items():
        for step in repo.glob(f"sat_{kind}_*"):
            rewrite(step / "config.pbtxt", lambda t, c=step / "config.pbtxt", n=count: _sub_once(
                r"count: \d+ kind: KIND_CPU", f"count: {n} kind: KIND_CPU", t, c))
    config = repo / f"{TRITON_NAME}_onnx" / "config.pbtxt"

    def edit_onnx(text: str) -> str:
        text = _sub_once(r"count: \d+ kind: (KIND_\w+)", rf"count: {variant.onnx_instance_count} kind: \g<1>", text, config)
        text = _sub_once(r"^dynamic_batching \{.*\}\n?", "", text, config) if "dynamic_batching {" in text else text
        if variant.dynamic_batching:
            text += f"dynamic_batching {{ max_queue_delay_microseconds: {variant.max_queue_delay_us} }}\n"
        if 'backend: "onnxruntime"' in text:
            text = re.sub(r'^parameters \{ key: "intra_op_thread_count".*\n?', "", text, flags=re.M)
            if variant.intra_op_threads:
                text += (f'parameters {{ key: "intra_op_thread_count" value: {{ string_value: '
                         f'"{variant.intra_op_threads}" }} }}\n')
        else:
            text = _sub_once(r'(key: "intra_op_threads" value: \{ string_value: ")\d+(")',
                             rf"\g<1>{variant.intra_op_threads}\g<2>", text, config)
            text = _sub_once(r'(key: "length_granularity" value: \{ string_value: ")\d+(")',
                             rf"\g<1>{variant.length_granularity}\g<2>", text, config)
        return text

    rewrite(config, edit_onnx)


def build_repository(args, variant: Variant, checkpoint_dir: Path, tokenizer_dir: Path, out: Path,
                     same_flags_as: Path | None = None) -> Path:
    """``python -m sat_triton.builder build`` as a user runs it, with the variant's flags (cached by them); with
    ``same_flags_as`` (a repository built with the same build flags) that one is hard-linked instead and
    the variant's config-only settings (instances, queue delay, threads, dynamic batching, length
    granularity) are patched into its config.pbtxt files, as the builder renders them."""
    common = ["--model_name_or_path", str(checkpoint_dir), "--tokenizer_name_or_path", str(tokenizer_dir),
              "--triton_model_name", TRITON_NAME, "--device", args.device, "--onnx_backend", args.onnx_backend,
              *variant.flags()]
    cmd = [sys.executable, "-m", "sat_triton.builder", "build", "--output_dir", str(out), *common, *variant.config_flags()]
    spec = {"flags": common, "variant": asdict(variant),
            "checkpoint": json.loads((checkpoint_dir / ".bench-stamp.json").read_text()),
            "source": _source_digest()}
    if _stamp_ok(out, spec):
        return out
    if out.exists():
        shutil.rmtree(out)
    if same_flags_as is not None:
        log(f"linking {same_flags_as.name} to {out.name} (same build flags) and patching its configs")
        shutil.copytree(same_flags_as, out, copy_function=os.link)
        (out / ".bench-stamp.json").unlink(missing_ok=True)
        patch_configs(out, variant)
    else:
        log("building the model repository: " + " ".join(["python"] + cmd[1:]))
        started = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        if done.returncode != 0:
            raise SystemExit(f"sat-triton build failed:\n{done.stdout}\n{done.stderr}")
        log(f"built in {time.perf_counter() - started:.0f}s: {done.stdout.strip().splitlines()[0]}")
    _write_stamp(out, spec)
    return out


def sweep_variants(base: Variant, device: str) -> list[Variant]:
    """Settings worth comparing with ``base`` on this device."""
    replace = dataclasses.replace
    if device == "gpu":
        other = "fp32" if base.precision == "fp16" else "fp16"
        return [
            replace(base, name="onnx3", onnx_instance_count=3),
            replace(base, name="unfused" if base.optimize else "fused", optimize=not base.optimize),
            replace(base, name="gran32", length_granularity=32),
            replace(base, name=other, precision=other),
            replace(base, name="onnx1", onnx_instance_count=1),
            replace(base, name="inst2", instance_count=2, tokenizer_instance_count=0, postprocessor_instance_count=0),
            replace(base, name="inst8", instance_count=8, tokenizer_instance_count=0, postprocessor_instance_count=0),
            # the tokenizer saturated first on an H100 once the ONNX step had 3 instances; the postprocessor
            # costs a third as much per character since it cuts a whole request in one pass
            replace(base, name="tok8", tokenizer_instance_count=8, postprocessor_instance_count=4),
            replace(base, name="tok6-post2", tokenizer_instance_count=6, postprocessor_instance_count=2),
            replace(base, name="delay100us", max_queue_delay_us=100),
            replace(base, name="delay2ms", max_queue_delay_us=2000),
            replace(base, name="nobatch", dynamic_batching=False),
        ]
    cores = os.cpu_count() or 2
    instances = max(2, cores // 2)  # e.g. 2 x 1 thread on 2 cores, 8 x 2 threads on 16
    threads = max(1, cores // instances)
    split = f"inst{instances}-intra{threads}"
    return [
        replace(base, name=split, instance_count=instances, onnx_instance_count=instances, intra_op_threads=threads),
        replace(base, name="batching", dynamic_batching=True),
        replace(base, name=f"{split}-batching", instance_count=instances, onnx_instance_count=instances,
                intra_op_threads=threads, dynamic_batching=True),
        replace(base, name="pad16", pad_to_multiple_of=16),
        replace(base, name="gran32", length_granularity=32),  # the CPU default before 55b0aef
    ]


def _source_digest() -> str:
    """What the repository is built from (builder, templates, pipeline): a rebuild when it changes."""
    import hashlib

    digest = hashlib.sha256()
    for folder in ("builder", "model_repository_templates", "sat_pipeline", "sat_triton"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(ROOT)).encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def repository_models(root: Path) -> list[str]:
    return sorted(p.parent.name for p in root.glob("*/config.pbtxt"))


def onnx_file(root: Path) -> Path:
    found = sorted(root.glob(f"{TRITON_NAME}_onnx/*/model.onnx"))
    if not found:
        raise SystemExit(f"no {TRITON_NAME}_onnx/<version>/model.onnx in {root}")
    return found[-1]


# ------------------------------------------------------------------------------------------------
# Measurements
# ------------------------------------------------------------------------------------------------
@dataclass
class Row:
    mode: str
    group: str  # server | client | in-process | ceiling
    chars: int
    texts: int
    seconds: float
    latencies_ms: list = field(default_factory=list, repr=False)
    note: str = ""
    tokens: int = 0
    probe: float | None = None  # tokens/s of the ONNX model alone, measured just before this row

    @property
    def tokens_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    @property
    def vs_alone(self) -> float | None:
        """Real tokens/s of this row over the model alone's tokens/s measured right before it: a ratio
        that holds when other work on the machine slows everything down."""
        return self.tokens_s / self.probe if self.probe and self.tokens else None

    @property
    def chars_s(self) -> float:
        return self.chars / self.seconds if self.seconds else 0.0

    @property
    def texts_s(self) -> float:
        return self.texts / self.seconds if self.seconds else 0.0

    def pct(self, q: float):
        return float(np.percentile(self.latencies_ms, q)) if len(self.latencies_ms) >= 2 else None

    def as_dict(self) -> dict:
        return {"mode": self.mode, "group": self.group, "chars": self.chars, "texts": self.texts,
                "seconds": round(self.seconds, 4), "chars_per_s": round(self.chars_s, 1),
                "texts_per_s": round(self.texts_s, 2), "tokens": self.tokens,
                "p50_ms": self.pct(50), "p95_ms": self.pct(95), "p99_ms": self.pct(99),
                "requests": len(self.latencies_ms), "note": self.note, "tokens_per_s": round(self.tokens_s, 1),
                "probe_tokens_per_s": self.probe, "vs_alone": self.vs_alone}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def chunks(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def triton_infer(client, module, texts: list[str]):
    data = np.array([t.encode("utf-8") for t in texts], dtype=np.object_)
    text_input = module.InferInput("TEXT", [len(texts)], "BYTES")
    text_input.set_data_from_numpy(data)
    outputs = [module.InferRequestedOutput("SENTENCES"), module.InferRequestedOutput("SENTENCE_COUNTS")]
    return text_input, outputs


def unpack(result) -> list[list[str]]:
    sentences = [s.decode("utf-8") for s in result.as_numpy("SENTENCES").tolist()]
    out, offset = [], 0
    for count in result.as_numpy("SENTENCE_COUNTS").tolist():
        out.append(sentences[offset:offset + count])
        offset += count
    return out


def drive_threads(url: str, model: str, requests: list[list[str]], concurrency: int, min_seconds: float = 0.0):
    """``concurrency`` threads, each with its own gRPC client, send ``requests`` (repeated until
    ``min_seconds`` have passed, whole passes only). Returns wall seconds, latencies (ms), passes and the
    first pass's results."""
    import tritonclient.grpc as grpcclient

    clients = [grpcclient.InferenceServerClient(url=url) for _ in range(concurrency)]
    results: list = [None] * len(requests)
    latencies: list[float] = []
    lock = threading.Lock()
    state = {"next": 0, "pass": 0, "stop": False, "error": None}
    start_barrier = threading.Barrier(concurrency + 1)
    began = [0.0]

    def take():
        with lock:
            if state["stop"]:
                return None
            index = state["next"]
            if index >= len(requests):
                if time.perf_counter() - began[0] >= min_seconds:
                    state["stop"] = True
                    return None
                state["pass"] += 1
                index = 0
            state["next"] = index + 1
            return index, state["pass"]

    def worker(client):
        start_barrier.wait()
        while True:
            job = take()
            if job is None:
                return
            index, passno = job
            text_input, outputs = triton_infer(client, grpcclient, requests[index])
            t0 = time.perf_counter()
            try:
                result = client.infer(model, [text_input], outputs=outputs)
            except Exception as exc:  # surfaced after the run
                state["error"], state["stop"] = exc, True
                return
            elapsed = (time.perf_counter() - t0) * 1000
            with lock:
                latencies.append(elapsed)
            if passno == 0:
                results[index] = unpack(result)

    threads = [threading.Thread(target=worker, args=(c,), daemon=True) for c in clients]
    for t in threads:
        t.start()
    began[0] = time.perf_counter()
    start_barrier.wait()
    for t in threads:
        t.join()
    wall = time.perf_counter() - began[0]
    for c in clients:
        c.close()
    if state["error"] is not None:
        raise state["error"]
    return wall, latencies, state["pass"] + 1, results


def _client_process(url, model, requests, threads, min_seconds, start_at, keep_results, queue):
    """One load-generating process (``drive``): waits for the common start, then runs ``drive_threads``."""
    time.sleep(max(0.0, start_at - time.time()))
    try:
        wall, latencies, passes, results = drive_threads(url, model, requests, threads, min_seconds)
        queue.put((wall, latencies, passes, results if keep_results else None, None))
    except Exception as exc:  # reported by the parent
        queue.put((0.0, [], 0, None, repr(exc)))


def drive(url: str, model: str, requests: list[list[str]], concurrency: int, min_seconds: float = 0.0,
          processes: int = 1):
    """``drive_threads`` spread over ``processes`` client processes (one Python process cannot build and
    parse gRPC requests fast enough to load a GPU server); each runs ``concurrency / processes`` threads
    over the whole request list. Returns wall seconds (the slowest process), all latencies, the total
    number of corpus passes and the first process' results."""
    processes = max(1, min(processes, concurrency))
    if processes == 1:
        return drive_threads(url, model, requests, concurrency, min_seconds)
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    start_at = time.time() + 3.0  # time for the children to start and import
    shares = [concurrency // processes + (i < concurrency % processes) for i in range(processes)]
    children = [context.Process(target=_client_process, daemon=True,
                                args=(url, model, requests, share, min_seconds, start_at, i == 0, queue))
                for i, share in enumerate(shares)]
    for child in children:
        child.start()
    outcomes = [queue.get(timeout=1800) for _ in children]
    for child in children:
        child.join()
    errors = [o[4] for o in outcomes if o[4]]
    if errors:
        raise RuntimeError(f"client process failed: {errors[0]}")
    results = next(o[3] for o in outcomes if o[3] is not None)
    return (max(o[0] for o in outcomes), [x for o in outcomes for x in o[1]], sum(o[2] for o in outcomes), results)


def drive_async(url: str, model: str, requests: list[list[str]], in_flight: int):
    """One gRPC client, ``async_infer`` with at most ``in_flight`` requests outstanding."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url=url)
    slots = threading.Semaphore(in_flight)
    done = threading.Event()
    latencies: list[float] = []
    lock = threading.Lock()
    remaining = [len(requests)]
    errors = []

    def callback(t0, result=None, error=None):  # tritonclient calls callback(result=..., error=...)
        elapsed = (time.perf_counter() - t0) * 1000
        with lock:
            if error is not None:
                errors.append(error)
            latencies.append(elapsed)
            remaining[0] -= 1
            if remaining[0] == 0:
                done.set()
        slots.release()

    began = time.perf_counter()
    for texts in requests:
        slots.acquire()
        text_input, outputs = triton_infer(client, grpcclient, texts)
        t0 = time.perf_counter()
        client.async_infer(model, [text_input], callback=functools.partial(callback, t0), outputs=outputs)
    if not done.wait(timeout=1800):
        raise RuntimeError(f"async_infer: {remaining[0]} responses still missing after 30 minutes")
    wall = time.perf_counter() - began
    client.close()
    if errors:
        raise errors[0]
    return wall, latencies


def machine_busy() -> float | None:
    """CPU-seconds the whole machine (kernel-wide, every container) has been busy, from /proc/stat."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait


class Phase:
    """Bookkeeping around one measured phase: the model-alone probe just before and just after it (their
    mean is the row's reference speed), the CPU used by the benchmark's processes (this one, tritonserver
    and its stubs) and by everything else on the machine (other users of the cores)."""

    def __init__(self, alone, server_pid: int | None = None):
        self.alone, self.server_pid = alone, server_pid
        self.probe_before = alone.probe(reuse=True)
        self.cpu_start, self.busy_start = process_cpu(server_pid), machine_busy()
        self.t0 = time.perf_counter()
        self.cpu: dict[str, float] = {}
        self.others = self.probe_after = None

    def finish(self) -> "Phase":
        wall = time.perf_counter() - self.t0
        self.cpu = cpu_delta(self.cpu_start, process_cpu(self.server_pid), wall)
        busy = machine_busy()
        if busy is not None and self.busy_start is not None and wall > 0:
            self.others = max(0.0, (busy - self.busy_start) / wall - sum(self.cpu.values()))
        self.probe_after = self.alone.probe()
        return self

    @property
    def probe(self) -> float | None:
        values = [v for v in (self.probe_before, self.probe_after) if v]
        return sum(values) / len(values) if values else None

    def note(self) -> str:
        parts = []
        if self.others is not None:
            parts.append(f"others {self.others:.2f} cores")
        if self.probe_before and self.probe_after:
            spread = abs(self.probe_before - self.probe_after) / self.probe
            if spread > 0.15:
                parts.append(f"noisy: alone {self.probe_before:,.0f} -> {self.probe_after:,.0f} tok/s")
        return ", ".join(parts)


def short_latency(call, n: int) -> list[float]:
    for _ in range(10):  # reach every instance once (first calls load kernels, pools)
        call()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        out.append((time.perf_counter() - t0) * 1000)
    return out


# ------------------------------------------------------------------------------------------------
# Triton statistics
# ------------------------------------------------------------------------------------------------
def stats_snapshot(url: str) -> dict:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url=url)
    try:
        response = client.get_inference_statistics(model_name="")
    finally:
        client.close()
    snap = {}
    for m in response.model_stats:
        s = m.inference_stats
        batch_exec = sum(b.compute_infer.count for b in m.batch_stats)
        batch_ns = sum(b.compute_input.ns + b.compute_infer.ns + b.compute_output.ns for b in m.batch_stats)
        snap[m.name] = {
            "requests": s.success.count, "request_ns": s.success.ns, "queue_ns": s.queue.ns,
            "compute_input_ns": s.compute_input.ns, "compute_infer_ns": s.compute_infer.ns,
            "compute_output_ns": s.compute_output.ns, "inferences": m.inference_count,
            "executions": m.execution_count, "batch_executions": batch_exec, "batch_compute_ns": batch_ns,
        }
    return snap


def stats_delta(before: dict, after: dict, wall: float) -> dict:
    """Per model: requests, executions, requests per execution, mean queue / compute per request (ms),
    compute per execution (ms) and busy fraction (compute time of executions / wall time)."""
    out = {}
    for name, a in after.items():
        b = before.get(name, {k: 0 for k in a})
        d = {k: a[k] - b[k] for k in a}
        if d["requests"] == 0:
            continue
        req = d["requests"]
        execs = d["batch_executions"] or d["executions"]
        compute = d["compute_input_ns"] + d["compute_infer_ns"] + d["compute_output_ns"]
        exec_ns = d["batch_compute_ns"] if d["batch_executions"] else compute
        out[name] = {
            "requests": req, "executions": execs,
            "requests_per_exec": round(req / execs, 2) if execs else None,
            "inferences": d["inferences"],
            "request_ms": d["request_ns"] / req / 1e6, "queue_ms": d["queue_ns"] / req / 1e6,
            "compute_ms": compute / req / 1e6, "infer_ms": d["compute_infer_ns"] / req / 1e6,
            "exec_ms": exec_ns / execs / 1e6 if execs else None,
            "busy": exec_ns / 1e9 / wall if wall else None,
        }
    return out


def process_cpu(server_pid: int | None) -> dict[str, float]:
    """CPU seconds used so far by this process (the benchmark's clients or wtpsplit in-process) and, given
    its pid, by tritonserver and its Python-backend stubs (summed per model; Linux /proc only)."""
    out: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for entry in (Path("/proc").iterdir() if server_pid is not None and Path("/proc").is_dir() else []):
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            pid, ppid = int(entry.name), int(fields[1])
            if pid != server_pid and ppid != server_pid:
                continue
            cpu = (int(fields[11]) + int(fields[12])) / tick
            if pid == server_pid:
                name = "tritonserver process (gRPC, ensemble, schedulers)"
            else:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                name = f"{Path(argv[1].decode()).parent.parent.name} (python stub)"
        except (OSError, ValueError, IndexError):
            continue
        out[name] = out.get(name, 0.0) + cpu
    times = os.times()
    out["benchmark process (clients)"] = times.user + times.system
    return out


def cpu_delta(before: dict, after: dict, wall: float) -> dict[str, float]:
    return {name: (after[name] - before.get(name, 0.0)) / wall for name in after if wall}


def print_stats(title: str, delta: dict, cpu: dict | None = None, others: float | None = None) -> None:
    print(f"\n  Triton statistics, {title}  (queue/compute ms per request; busy = execution time / wall "
          "time, summed over instances)")
    print(f"    {'model':<26}{'requests':>9}{'execs':>7}{'req/exec':>9}{'queue ms':>10}{'compute ms':>11}"
          f"{'ms/exec':>9}{'busy':>7}{'e2e ms':>9}")
    order = sorted(delta, key=lambda n: (n == TRITON_NAME, "tokenizer" not in n, not n.endswith("_onnx"),
                                         "postprocessor" not in n, n))
    for name in order:
        d = delta[name]
        busy = f"{d['busy'] * 100:.0f}%" if d["busy"] is not None else "-"
        composite = name in (TRITON_NAME,)
        print(f"    {name:<26}{d['requests']:>9}{d['executions']:>7}{d['requests_per_exec'] or 0:>9.2f}"
              f"{'-' if composite else format(d['queue_ms'], '.1f'):>10}"
              f"{'-' if composite else format(d['compute_ms'], '.1f'):>11}"
              f"{'-' if composite or d['exec_ms'] is None else format(d['exec_ms'], '.1f'):>9}"
              f"{'-' if composite else busy:>7}{d['request_ms']:>9.1f}")
    if cpu:
        used = [f"{name} {value:.2f}" for name, value in sorted(cpu.items(), key=lambda kv: -kv[1]) if value >= 0.005]
        if others is not None:
            used.append(f"outside this benchmark {others:.2f}")
        print("    CPU cores used: " + ", ".join(used))


# ------------------------------------------------------------------------------------------------
# Phases
# ------------------------------------------------------------------------------------------------
def run_server(args, variant: Variant, repo: Path, corpus: list[str], tokens: int, settings: list[tuple[int, int]],
               extras: bool, reference: list | None, logdir: Path, alone) -> tuple[list[Row], list[dict], dict]:
    from sat_triton.builder.server import TritonServer, free_port

    chars = sum(map(len, corpus))
    rows: list[Row] = []
    phases: list[dict] = []
    info: dict = {}
    logdir.mkdir(parents=True, exist_ok=True)
    env = None
    if args.server_bin:  # the models' Python environment is the first python3 on PATH (the stub's rule)
        env = {"PATH": os.pathsep.join([str(Path(args.server_bin).resolve()), os.environ.get("PATH", "")])}
    server = TritonServer(repo, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                          extra_args=["--exit-timeout-secs=5"], log_file=logdir / f"tritonserver-{variant.name}.log",
                          env=env)
    log(f"starting tritonserver on {variant.name} ({variant.describe()})")
    t0 = time.perf_counter()
    server.start()
    try:
        server.wait_ready(repository_models(repo), timeout=900)
        info["startup_s"] = round(time.perf_counter() - t0, 1)
        server_pid = getattr(getattr(server, "_proc", None), "pid", None)
        log(f"server ready in {info['startup_s']}s")
        url = server.grpc_url
        # warm-up: every texts-per-request shape once
        for per_request in sorted({s[0] for s in settings}):
            drive_threads(url, TRITON_NAME, chunks(corpus[: max(per_request, 8)], per_request), 1)
        if args.latency_calls:
            import tritonclient.grpc as grpcclient

            client = grpcclient.InferenceServerClient(url=url)

            def call():
                text_input, outputs = triton_infer(client, grpcclient, [SHORT_TEXT])
                client.infer(TRITON_NAME, [text_input], outputs=outputs)

            before = stats_snapshot(url)
            lat = short_latency(call, args.latency_calls)
            phases.append({"variant": variant.name, "mode": f"server [{variant.name}]: 1 short text, idle",
                           "wall_s": sum(lat) / 1000, "stats": stats_delta(before, stats_snapshot(url), sum(lat) / 1000)})
            client.close()
            rows.append(Row(f"server [{variant.name}]: 1 short text, idle", "latency", len(SHORT_TEXT) * len(lat),
                            len(lat), sum(lat) / 1000, lat, note=f"{len(SHORT_TEXT)} chars, sequential"))
        for per_request, concurrency in settings:
            requests = chunks(corpus, per_request)
            before, phase = stats_snapshot(url), Phase(alone, server_pid)
            wall, lat, passes, results = drive(url, TRITON_NAME, requests, concurrency, args.min_seconds,
                                               args.client_processes)
            delta = stats_delta(before, stats_snapshot(url), wall)
            phase.finish()
            procs = max(1, min(args.client_processes, concurrency))
            mode = (f"server [{variant.name}]: {per_request} texts/req x {concurrency} clients"
                    + (f" ({procs} processes)" if procs > 1 else ""))
            row = Row(mode, "server", chars * passes, len(corpus) * passes, wall, lat, tokens=tokens * passes,
                      note=", ".join(filter(None, [f"{passes} pass(es)", phase.note()])), probe=phase.probe)
            rows.append(row)
            phases.append({"variant": variant.name, "mode": mode, "per_request": per_request,
                           "concurrency": concurrency, "wall_s": wall, "stats": delta, "cpu_cores": phase.cpu,
                           "other_cores": phase.others})
            log(f"{mode}: {row.chars_s:,.0f} chars/s, p50 {row.pct(50) or 0:.0f} ms")
            key = f"parity [{variant.name}]"
            if reference is not None and key not in info:
                flat = [r for group in results for r in group]
                same = sum(a == b for a, b in zip(flat, reference))
                info[key] = f"{same}/{len(reference)} texts split identically to wtpsplit (PyTorch fp32)"
        if extras:
            best_per_request = max(s[0] for s in settings)
            concurrency = max(s[1] for s in settings)
            from sat_triton.client import SaT as TritonSaT

            sat = TritonSaT(TRITON_NAME, triton_url=url, triton_model_name=TRITON_NAME, concurrency=concurrency)
            list(sat.split(corpus[:8], batch_size=best_per_request))
            before, phase = stats_snapshot(url), Phase(alone, server_pid)
            t0 = time.perf_counter()
            list(sat.split(corpus, batch_size=best_per_request))
            wall = time.perf_counter() - t0
            delta = stats_delta(before, stats_snapshot(url), wall)
            phase.finish()
            sat.close()
            mode = f"client.SaT.split(list, batch_size={best_per_request}, concurrency={concurrency})"
            rows.append(Row(mode, "server", chars, len(corpus), wall, tokens=tokens,
                            note=", ".join(filter(None, ["one call", phase.note()])), probe=phase.probe))
            phases.append({"variant": variant.name, "mode": mode, "wall_s": wall, "stats": delta,
                           "cpu_cores": phase.cpu, "other_cores": phase.others})
            log(f"{mode}: {rows[-1].chars_s:,.0f} chars/s")
            requests = chunks(corpus, best_per_request)
            phase = Phase(alone, server_pid)
            wall, lat = drive_async(url, TRITON_NAME, requests, concurrency)
            phase.finish()
            mode = f"server [{variant.name}]: async_infer, 1 client, {best_per_request} texts/req, {concurrency} in flight"
            rows.append(Row(mode, "server", chars, len(corpus), wall, lat, tokens=tokens, note=phase.note(),
                            probe=phase.probe))
            log(f"{mode}: {rows[-1].chars_s:,.0f} chars/s")
    finally:
        server.stop()
    return rows, phases, info


def run_inprocess(args, checkpoint_dir: Path, tokenizer_dir: Path, ort_dir: Path, corpus: list[str],
                  tokens: int, alone) -> tuple[list[Row], list]:
    """wtpsplit's SaT in this process: PyTorch (and fp16 on GPU) and ONNX Runtime; returns the rows and
    the PyTorch fp32 sentences (the parity reference)."""
    chars = sum(map(len, corpus))
    rows: list[Row] = []
    reference = None
    gpu = args.device == "gpu"
    variants = [("PyTorch", dict(), False)]
    if gpu:
        variants.append(("PyTorch fp16", dict(), True))
    providers = (["CUDAExecutionProvider", "CPUExecutionProvider"] if gpu else ["CPUExecutionProvider"])
    variants.append(("ONNX Runtime", dict(ort_providers=providers), False))
    for label, kwargs, half in variants:
        try:
            rows_of_mode, out = _run_inprocess_mode(args, label, kwargs, half, checkpoint_dir, tokenizer_dir, ort_dir,
                                                    corpus, chars, tokens, alone)
        except Exception as exc:  # one broken mode (a missing CUDA library, say) must not lose the others
            log(f"wtpsplit {label} failed: {exc!r}")
            continue
        rows += rows_of_mode
        if reference is None and label == "PyTorch":
            reference = out
        gc.collect()
        if gpu:
            import torch

            torch.cuda.empty_cache()
    return rows, reference


def _run_inprocess_mode(args, label, kwargs, half, checkpoint_dir, tokenizer_dir, ort_dir, corpus, chars, tokens,
                        alone):
    """One wtpsplit mode: split(list), split(text) per text, and a short text's latency."""
    from wtpsplit import SaT

    gpu = args.device == "gpu"
    rows: list[Row] = []
    directory = ort_dir if kwargs else checkpoint_dir
    log(f"wtpsplit SaT in-process, {label}")
    sat = SaT(str(directory), tokenizer_name_or_path=str(tokenizer_dir), **kwargs)
    session = getattr(sat.model, "ort_session", None)
    if gpu and session is not None and "CUDAExecutionProvider" not in session.get_providers():
        raise RuntimeError("wtpsplit's onnxruntime session fell back to the CPU")
    if not kwargs and gpu:
        if half:
            sat.half()
        sat.to("cuda")
    list(sat.split(corpus[:8]))  # warm-up
    phase = Phase(alone)
    t0 = time.perf_counter()
    out = list(sat.split(corpus))
    wall = time.perf_counter() - t0
    phase.finish()
    rows.append(Row(f"wtpsplit {label}: split(list), batch_size=32", "in-process", chars, len(corpus), wall,
                    tokens=tokens, note=", ".join(filter(None, ["one call", phase.note()])), probe=phase.probe))
    log(f"{rows[-1].mode}: {rows[-1].chars_s:,.0f} chars/s")
    lat = []
    phase = Phase(alone)
    t0 = time.perf_counter()
    for text in corpus:
        t1 = time.perf_counter()
        sat.split(text)
        lat.append((time.perf_counter() - t1) * 1000)
    wall = time.perf_counter() - t0
    phase.finish()
    rows.append(Row(f"wtpsplit {label}: split(text), one text per call", "in-process", chars, len(corpus), wall,
                    lat, tokens=tokens, note=phase.note(), probe=phase.probe))
    log(f"{rows[-1].mode}: {rows[-1].chars_s:,.0f} chars/s")
    lat = short_latency(lambda: sat.split(SHORT_TEXT), args.latency_calls)
    rows.append(Row(f"wtpsplit {label}: 1 short text", "latency", len(SHORT_TEXT) * len(lat), len(lat),
                    sum(lat) / 1000, lat, note=f"{len(SHORT_TEXT)} chars, sequential"))
    return rows, out


def ort_session(path: Path, gpu: bool):
    """An onnxruntime session on the CUDA provider (gpu) or the CPU; fails rather than fall back to the CPU."""
    import onnxruntime as ort

    if not gpu:
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    # main() has preloaded pip's CUDA/cuDNN libraries (preload_dlls) for every session of a gpu run
    session = ort.InferenceSession(str(path), providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    if "CUDAExecutionProvider" not in session.get_providers():
        raise SystemExit(f"onnxruntime fell back to the CPU for {path}: the CUDA provider did not start")
    return session


class OnnxAlone:
    """The served ``model.onnx`` in an onnxruntime session of this process, on random token batches."""

    def __init__(self, args, path: Path, probe_shape: tuple[int, int]):
        self.session = ort_session(path, args.device == "gpu")
        self.mask_type = {i.name: i.type for i in self.session.get_inputs()}["attention_mask"]
        self.probe_shape = probe_shape
        self.probe_seconds = args.probe_seconds
        self.last: tuple[float, float] | None = None

    def _feed(self, batch: int, seq: int) -> dict:
        rng = np.random.default_rng(seq)
        ids = rng.integers(4, 8000, (batch, seq), dtype=np.int64)
        ids[:, 0], ids[:, -1] = 0, 2
        mask = np.ones((batch, seq), dtype=np.float16 if "float16" in self.mask_type else np.int64)
        return {"input_ids": ids, "attention_mask": mask}

    def measure(self, batch: int, seq: int, seconds: float, min_runs: int = 2) -> tuple[int, float]:
        """(token positions computed, seconds), after one warm-up run."""
        feed = self._feed(batch, seq)
        self.session.run(None, feed)
        runs, t0 = 0, time.perf_counter()
        while runs < min_runs or time.perf_counter() - t0 < seconds:
            self.session.run(None, feed)
            runs += 1
        return batch * seq * runs, time.perf_counter() - t0

    def probe(self, reuse: bool = False) -> float | None:
        """tokens/s at the corpus' own shape: how fast the machine is right now (``reuse``: the last
        probe's value if it was taken less than 5 s ago, e.g. right after the previous phase)."""
        if self.probe_seconds <= 0:
            return None
        if reuse and self.last is not None and time.perf_counter() - self.last[0] < 5:
            return self.last[1]
        positions, wall = self.measure(*self.probe_shape, self.probe_seconds)
        self.last = (time.perf_counter(), positions / wall)
        return positions / wall


def run_model_alone(args, alone: OnnxAlone, shapes: list[tuple[int, int]], chars_per_token: float,
                    tokens_per_text: float) -> list[Row]:
    rows = []
    for batch, seq in shapes:
        phase = Phase(alone)
        positions, wall = alone.measure(batch, seq, args.model_seconds)
        phase.finish()
        row = Row(f"ONNX model alone: {batch}x{seq} tokens", "ceiling", int(positions * chars_per_token),
                  int(positions / tokens_per_text), wall, tokens=positions, probe=phase.probe,
                  note=", ".join(filter(None, [f"{positions / wall:,.0f} tokens/s x {chars_per_token:.2f} chars/token",
                                               phase.note()])))
        rows.append(row)
        log(f"{row.mode}: {positions / wall:,.0f} tokens/s")
    return rows


def make_model_variants(args, served: Path, shape: Shape, out: Path) -> dict[str, Path]:
    """Other forms of the served ONNX file, for the model-alone comparison (--model_variants): onnxruntime's
    transformer optimizer (fused GELU / LayerNorm; attention does not fuse with this additive mask) and,
    on CPU, dynamic int8 quantisation of the MatMuls, or on GPU the fused model in float16."""
    spec = {"served": [served.stat().st_size, served.stat().st_mtime_ns], "device": args.device,
            "version": GENERATOR_VERSION}
    files = {"fused": out / "fused.onnx"}
    files["int8" if args.device == "cpu" else "fused-fp16"] = out / ("int8.onnx" if args.device == "cpu"
                                                                   else "fused-fp16.onnx")
    if _stamp_ok(out, spec) and all(f.is_file() for f in files.values()):
        return files
    import logging

    from onnxruntime.transformers.optimizer import optimize_model

    logging.getLogger("onnxruntime").setLevel(logging.ERROR)
    out.mkdir(parents=True, exist_ok=True)
    log("writing model variants for the model-alone comparison (ORT transformer optimizer, "
        + ("int8)" if args.device == "cpu" else "fp16)"))
    fused = optimize_model(str(served), model_type="bert", num_heads=shape.heads, hidden_size=shape.hidden,
                           opt_level=1, use_gpu=args.device == "gpu")
    fused.save_model_to_file(str(files["fused"]))
    if args.device == "cpu":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # its "consider pre-processing" advice
        try:
            quantize_dynamic(str(served), str(files["int8"]), weight_type=QuantType.QInt8,
                             op_types_to_quantize=["MatMul"])
        finally:
            root.setLevel(level)
    else:
        fused.convert_float_to_float16(keep_io_types=True)
        fused.save_model_to_file(str(files["fused-fp16"]))
    _write_stamp(out, spec)
    return files


def run_model_variants(args, alone: OnnxAlone, files: dict[str, Path], seq: int, chars_per_token: float,
                       tokens_per_text: float, threshold: float = 0.25) -> list[Row]:
    """Each variant's tokens/s at 32 x ``seq``, and how far its logits are from the served model's."""
    rows = []
    reference_feed = alone._feed(32, seq)
    expected = alone.session.run(None, reference_feed)[0]
    cut = math.log(threshold / (1 - threshold))
    for name, path in files.items():
        variant = OnnxAlone(args, path, alone.probe_shape)
        got = variant.session.run(None, {k: v.astype(np.float16) if k == "attention_mask" and "float16" in
                                         variant.mask_type else v for k, v in reference_feed.items()})[0]
        diff = float(np.abs(got.astype(np.float32) - expected).max())
        agree = float(((got > cut) == (expected > cut)).mean())
        phase = Phase(alone)
        positions, wall = variant.measure(32, seq, args.model_seconds)
        phase.finish()
        rows.append(Row(f"ONNX model alone, {name}: 32x{seq} tokens", "model variants",
                        int(positions * chars_per_token), int(positions / tokens_per_text), wall, tokens=positions,
                        probe=phase.probe, note=", ".join(filter(None, [
                            f"max |logit diff| {diff:.2g}, boundary decisions {agree * 100:.2f}% equal",
                            phase.note()]))))
        log(f"{rows[-1].mode}: {positions / wall:,.0f} tokens/s ({rows[-1].note})")
        variant = None
        gc.collect()
    return rows


# ------------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------------
def fmt_ms(value) -> str:
    return "-" if value is None else f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def fmt_ratio(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def print_table(rows: list[Row]) -> None:
    width = max(len(r.mode) for r in rows) + 2
    print(f"\n{'mode':<{width}}{'chars/s':>10}{'texts/s':>9}{'tokens/s':>10}{'vs alone':>10}{'p50 ms':>9}{'p95 ms':>9}"
          f"{'p99 ms':>9}  note")
    print("-" * (width + 66 + 24))
    group = None
    for r in rows:
        if group is not None and r.group != group:
            print()
        group = r.group
        tokens_s = f"{r.tokens_s:,.0f}" if r.tokens else "-"
        print(f"{r.mode:<{width}}{r.chars_s:>10,.0f}{r.texts_s:>9,.1f}{tokens_s:>10}{fmt_ratio(r.vs_alone):>10}"
              f"{fmt_ms(r.pct(50)):>9}{fmt_ms(r.pct(95)):>9}{fmt_ms(r.pct(99)):>9}  {r.note}")


def markdown_table(rows: list[Row]) -> str:
    lines = ["| mode | chars/s | texts/s | tokens/s | vs alone | p50 ms | p95 ms | p99 ms | note |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        tokens_s = f"{r.tokens_s:,.0f}" if r.tokens else "-"
        lines.append(f"| {r.mode} | {r.chars_s:,.0f} | {r.texts_s:,.1f} | {tokens_s} | {fmt_ratio(r.vs_alone)} "
                     f"| {fmt_ms(r.pct(50))} | {fmt_ms(r.pct(95))} | {fmt_ms(r.pct(99))} | {r.note} |")
    return "\n".join(lines)


def compute_ratios(rows: list[Row]) -> dict[str, str]:
    """Raw ratios of chars/s, and the same with every row taken relative to the model-alone probe run
    just before it ("vs alone"), which cancels out a machine that got slower or faster in between."""
    ratios = {}
    server = [r for r in rows if r.group == "server"]
    inproc = [r for r in rows if r.group == "in-process"]
    ceiling = [r for r in rows if r.group == "ceiling"]
    if server:
        best = max(server, key=lambda r: r.chars_s)
        ratios["best server (raw)"] = f"{best.mode}: {best.chars_s:,.0f} chars/s"
        if inproc:
            best_in = max(inproc, key=lambda r: r.chars_s)
            ratios["server best / wtpsplit best in-process, raw chars/s"] = (
                f"{best.chars_s / best_in.chars_s:.2f} (vs {best_in.mode}: {best_in.chars_s:,.0f} chars/s)")
            normal = [r for r in server if r.vs_alone]
            normal_in = [r for r in inproc if r.vs_alone]
            if normal and normal_in:
                a = max(normal, key=lambda r: r.vs_alone)
                b = max(normal_in, key=lambda r: r.vs_alone)
                ratios["server best / wtpsplit best in-process, probe-normalised"] = (
                    f"{a.vs_alone / b.vs_alone:.2f} ({a.mode} at {a.vs_alone:.2f} of the model alone, "
                    f"{b.mode} at {b.vs_alone:.2f})")
        if ceiling:
            own = ceiling[-1]  # the corpus-shaped batch
            ratios["server best / ONNX model alone (corpus shape), raw"] = (
                f"{best.chars_s / own.chars_s:.2f} (vs {own.mode}: {own.chars_s:,.0f} chars/s = {own.note})")
            normal = [r for r in server if r.vs_alone]
            if normal:
                a = max(normal, key=lambda r: r.vs_alone)
                ratios["server best / ONNX model alone, probe-normalised"] = f"{a.vs_alone:.2f} ({a.mode})"
    if inproc and ceiling:
        best_in = max(inproc, key=lambda r: r.chars_s)
        ratios["wtpsplit best in-process / ONNX model alone (corpus shape), raw"] = (
            f"{best_in.chars_s / ceiling[-1].chars_s:.2f}")
    return ratios


def parse_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--quick", action="store_true", help="small corpus and fewer settings (~3-5 min on 2 cores)")
    parser.add_argument("--work_dir", type=Path, default=ROOT / "bench" / ".work",
                        help="cache for generated artifacts, repositories, logs, results (default: %(default)s)")
    parser.add_argument("--texts", type=int, help="corpus size (default: 120 with --quick, 4000 on gpu, else 1000)")
    parser.add_argument("--text_chars", type=int, default=300, help="characters per text, about (default: 300)")
    parser.add_argument("--texts_per_request", help="comma list (default: 1,8,32)")
    parser.add_argument("--concurrency", help="comma list of concurrent clients (default: 1,4,16)")
    parser.add_argument("--settings", help="explicit texts_per_request:clients pairs, e.g. 1:1,8:4 (default with "
                        "--quick: 1:1,1:4,8:4,32:4; on gpu: " + GPU_SETTINGS + "; otherwise every "
                        "--texts_per_request x --concurrency)")
    parser.add_argument("--min_seconds", type=float, help="repeat the corpus until each server setting ran this long "
                        "(default: 0 with --quick, 5 on gpu, else 20)")
    parser.add_argument("--client_processes", type=int,
                        help="spread the client threads over this many processes (default: 1; 4 on gpu)")
    parser.add_argument("--latency_calls", type=int, default=100, help="short-text calls for idle latency")
    parser.add_argument("--model_seconds", type=float, help="seconds per ONNX-alone shape (default 2 quick, else 5)")
    parser.add_argument("--probe_seconds", type=float,
                        help="before every measured phase, run the ONNX model alone this long (corpus-shaped batch "
                        "of 8) so each row can be read relative to the machine's speed at that moment (0: off; "
                        "default 1.5 on cpu, 0 on gpu)")
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu",
                        help="where the ONNX step, wtpsplit and the model alone run (gpu: onnxruntime-gpu + CUDA torch)")
    parser.add_argument("--onnx_backend", choices=["python", "onnxruntime"], default="python",
                        help="sat-triton build --onnx_backend (onnxruntime needs an NGC tritonserver on PATH)")
    # The base repository's settings: None takes the builder's default for --device
    parser.add_argument("--precision", choices=["fp32", "fp16"], help="build flag of the base repository")
    parser.add_argument("--instance_count", type=int, help="build flag of the base repository")
    parser.add_argument("--tokenizer_instance_count", type=int, default=0, help="build flag of the base repository")
    parser.add_argument("--postprocessor_instance_count", type=int, default=0,
                        help="build flag of the base repository")
    parser.add_argument("--onnx_instance_count", type=int, help="build flag of the base repository")
    parser.add_argument("--pad_to_multiple_of", type=int, help="build flag of the base repository")
    parser.add_argument("--max_queue_delay_us", type=int, help="build flag of the base repository")
    parser.add_argument("--max_batch_size", type=int, help="build flag of the base repository")
    parser.add_argument("--length_granularity", type=int, help="build flag of the base repository")
    parser.add_argument("--optimize", choices=["on", "off"], help="build flag of the base repository")
    parser.add_argument("--sweep", action="store_true",
                        help="also serve repositories with other instance/thread/batching/padding/delay/precision "
                        "settings (about 1 minute per variant on 2 cores)")
    parser.add_argument("--sweep_texts_per_request", default="1,8",
                        help="texts per request measured per sweep variant, at the largest concurrency (default: 1,8)")
    parser.add_argument("--sweep_settings", help="texts_per_request:clients pairs per sweep variant (default: "
                        "--sweep_texts_per_request at the largest concurrency; on gpu: " + GPU_SWEEP_SETTINGS + ")")
    parser.add_argument("--sweep_only", help="comma list of sweep variant names to run (default: all)")
    parser.add_argument("--deadline_s", type=float, default=0,
                        help="start no further sweep variant after this many seconds (0: no limit), so a run under a "
                        "time limit still prints its table")
    parser.add_argument("--model_variants", action="store_true",
                        help="also time the ONNX model alone after onnxruntime's transformer optimizer and (CPU) "
                        "int8 dynamic quantisation or (GPU) float16, with their logit differences")
    parser.add_argument("--keep_repos", action="store_true",
                        help="keep the sweep's repositories (~0.8 GB each for sat-3l-sm) under --work_dir")
    parser.add_argument("--skip_inprocess", action="store_true", help="skip wtpsplit in-process")
    parser.add_argument("--skip_server", action="store_true", help="skip the Triton server")
    parser.add_argument("--server_bin",
                        help="bin/ of the Python environment tritonserver's Python models run in (default: this "
                        "interpreter's), e.g. a venv with numpy<2, which the 24.10 stub needs, when this one has numpy 2")
    parser.add_argument("--tokenizer_vocab", type=int, default=8000, help="pieces of the generated tokenizer")
    parser.add_argument("--shape", default="3,768,12,3072,250002",
                        help="layers,hidden,heads,intermediate,vocab of the generated checkpoint (default: sat-3l-sm)")
    args = parser.parse_args(argv)
    gpu = args.device == "gpu"
    from sat_triton.builder.defaults import build_defaults

    for key, value in build_defaults(args.device).items():  # what `sat-triton build --device X` renders
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.precision = args.precision or ("fp16" if gpu else "fp32")  # fp16: the fast path on a GPU
    args.texts = args.texts or (120 if args.quick else 4000 if gpu else 1000)
    args.client_processes = args.client_processes or (4 if gpu else 1)
    args.probe_seconds = args.probe_seconds if args.probe_seconds is not None else (0.0 if gpu else 1.5)
    if not (args.settings or args.texts_per_request or args.concurrency):
        args.settings = GPU_SETTINGS if gpu else "1:1,1:4,8:4,32:4" if args.quick else None
    if args.settings:
        settings = [tuple(int(x) for x in item.split(":")) for item in args.settings.split(",") if item.strip()]
    else:
        settings = [(p, c) for p in parse_list(args.texts_per_request or "1,8,32")
                    for c in parse_list(args.concurrency or "1,4,16")]
    args.min_seconds = args.min_seconds if args.min_seconds is not None else (
        0.0 if args.quick else 5.0 if gpu else 20.0)
    args.model_seconds = args.model_seconds if args.model_seconds is not None else (2.0 if args.quick else 5.0)
    shape = Shape(*parse_list(args.shape))
    # SIGTERM (e.g. `timeout`) unwinds like Ctrl-C, so a running tritonserver is stopped on the way out
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))

    if gpu:
        import onnxruntime as ort

        if hasattr(ort, "preload_dlls"):  # CUDA/cuDNN from pip's nvidia-* packages, for every session
            ort.preload_dlls(directory="")
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise SystemExit("--device gpu needs onnxruntime-gpu (CUDAExecutionProvider); "
                             f"this onnxruntime has {ort.get_available_providers()}")

    started = time.perf_counter()
    work = args.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)

    # 1. artifacts ---------------------------------------------------------------------------------
    generator = CorpusGenerator()
    corpus = generator.texts(args.texts, seed=7, chars=args.text_chars)
    tokenizer_dir = make_tokenizer(work / f"tokenizer-u{args.tokenizer_vocab}", generator, args.tokenizer_vocab,
                                   train_sentences=6000)
    checkpoint_dir = make_checkpoint(work / f"sat-3l-sm-shape-{shape.tag}", shape, tokenizer_dir,
                                     generator.texts(16, seed=3, chars=args.text_chars))
    ort_dir = export_wtpsplit_onnx(checkpoint_dir, work / f"sat-3l-sm-shape-{shape.tag}-wtpsplit-onnx")

    from tokenizers import Tokenizer

    counts = np.array([len(e.ids) for e in Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json")).encode_batch(
        corpus, add_special_tokens=False)])
    tokens = int(counts.sum())
    chars = sum(map(len, corpus))
    chars_per_token = chars / tokens
    log(f"corpus: {len(corpus)} texts, {chars:,} chars, {tokens:,} tokens ({chars_per_token:.2f} chars/token, "
        f"{tokens / len(corpus):.0f} tokens/text, longest {int(counts.max())})")

    rows: list[Row] = []
    phases: list[dict] = []
    info: dict = {}

    # 4a. ONNX model alone (ceiling), on the file the server serves -------------------------------
    base_variant = Variant("base", instance_count=args.instance_count, onnx_instance_count=args.onnx_instance_count,
                           tokenizer_instance_count=args.tokenizer_instance_count,
                           postprocessor_instance_count=args.postprocessor_instance_count,
                           pad_to_multiple_of=args.pad_to_multiple_of, max_queue_delay_us=args.max_queue_delay_us,
                           max_batch_size=args.max_batch_size, dynamic_batching=gpu, precision=args.precision,
                           length_granularity=args.length_granularity, optimize=args.optimize == "on")
    repo_tag = f"{shape.tag}-{args.device}-{args.onnx_backend}"
    base_repo = build_repository(args, base_variant, checkpoint_dir, tokenizer_dir, work / f"repo-{repo_tag}-base")
    corpus_seq = min(int(np.median(counts)) + 2, 512)  # a typical window of the corpus, with <s> </s>
    alone = OnnxAlone(args, onnx_file(base_repo), probe_shape=(8, corpus_seq))
    # the last shape is the corpus' own: windows of its median length, no padding (the ratios' ceiling)
    model_shapes = [(16, 128), (8, 512), (32, corpus_seq)]
    if args.device == "gpu":  # a GPU wants full batches: the ceiling is the ONNX step's largest batch
        model_shapes.append((args.max_batch_size, corpus_seq))
    rows += run_model_alone(args, alone, model_shapes, chars_per_token, tokens / len(corpus))
    if args.model_variants:
        files = make_model_variants(args, onnx_file(base_repo), shape, work / f"onnx-variants-{repo_tag}")
        rows += run_model_variants(args, alone, files, corpus_seq, chars_per_token, tokens / len(corpus))

    # 4b. wtpsplit in-process ----------------------------------------------------------------------
    reference = None
    if not args.skip_inprocess:
        inproc, reference = run_inprocess(args, checkpoint_dir, tokenizer_dir, ort_dir, corpus, tokens, alone)
        rows += inproc
        gc.collect()

    # 2-3. server ---------------------------------------------------------------------------------
    if not args.skip_server:
        srows, sphases, sinfo = run_server(args, base_variant, base_repo, corpus, tokens, settings, True, reference,
                                           work / "logs", alone)
        rows += srows
        phases += sphases
        info.update(sinfo)
        if args.sweep:
            concurrency = max(c for _, c in settings)
            if args.sweep_settings or gpu:
                vsettings = [tuple(int(x) for x in item.split(":"))
                             for item in (args.sweep_settings or GPU_SWEEP_SETTINGS).split(",") if item.strip()]
            else:
                vsettings = [(p, concurrency) for p in parse_list(args.sweep_texts_per_request)]
            built = {tuple(base_variant.flags()): base_repo}
            variant_repos: list[Path] = []
            wanted = set(args.sweep_only.split(",")) if args.sweep_only else None
            for variant in sweep_variants(base_variant, args.device):
                if wanted is not None and variant.name not in wanted:
                    continue
                if args.deadline_s and time.perf_counter() - started > args.deadline_s:
                    log(f"deadline: {args.deadline_s:.0f}s passed, not serving sweep variant {variant.name}")
                    info[f"skipped [{variant.name}]"] = "deadline"
                    continue
                try:
                    repo = build_repository(args, variant, checkpoint_dir, tokenizer_dir,
                                            work / f"repo-{repo_tag}-{variant.name}",
                                            same_flags_as=built.get(tuple(variant.flags())))
                    built.setdefault(tuple(variant.flags()), repo)
                    variant_repos.append(repo)
                    vrows, vphases, vinfo = run_server(args, variant, repo, corpus, tokens, vsettings, False,
                                                       reference, work / "logs", alone)
                except (Exception, SystemExit) as exc:  # one failing variant must not lose the run
                    log(f"sweep variant {variant.name} failed: {exc!r}")
                    info[f"failed [{variant.name}]"] = repr(exc)[:300]
                    continue
                rows += vrows
                phases += vphases
                info.update(vinfo)
            if not args.keep_repos:
                for repo in variant_repos:
                    shutil.rmtree(repo, ignore_errors=True)

    # 5. report ----------------------------------------------------------------------------------
    order = {"server": 0, "in-process": 1, "ceiling": 2, "model variants": 3, "latency": 4}
    rows.sort(key=lambda r: order.get(r.group, 9))
    print(f"\n== sat-triton benchmark: {len(corpus)} texts x ~{args.text_chars} chars, {chars_per_token:.2f} chars/token,"
          f" checkpoint {shape.tag}, device {args.device}, onnx_backend {args.onnx_backend}, {args.precision}, "
          f"{os.cpu_count()} CPUs ==")
    print_table(rows)

    ratios = compute_ratios(rows)
    print()
    for key, value in ratios.items():
        print(f"{key}: {value}")
    for key, value in info.items():
        print(f"{key}: {value}")
    for phase in phases:
        print_stats(f"{phase['mode']} ({phase['wall_s']:.1f}s)", phase["stats"], phase.get("cpu_cores"),
                    phase.get("other_cores"))

    elapsed = time.perf_counter() - started
    print(f"\ntotal benchmark time: {elapsed:.0f}s")
    results_dir = work / "results"
    results_dir.mkdir(exist_ok=True)
    result_file = results_dir / f"bench-{time.strftime('%Y%m%d-%H%M%S')}{'-quick' if args.quick else ''}.json"
    result_file.write_text(json.dumps({
        "args": {k: str(v) for k, v in vars(args).items()}, "host": platform.node(), "cpus": os.cpu_count(),
        "corpus": {"texts": len(corpus), "chars": chars, "tokens": tokens, "chars_per_token": chars_per_token},
        "rows": [r.as_dict() for r in rows], "ratios": ratios, "info": info, "phases": phases,
        "markdown": markdown_table(rows), "elapsed_s": elapsed,
    }, indent=1, default=str))
    print(f"results: {result_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

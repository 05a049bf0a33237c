"""Tiny SaT checkpoints and XLM-R-style tokenizers, generated in seconds (nothing can be downloaded).

Checkpoints are made with wtpsplit's own classes (the test-only reference), random weights; the
classifier is scaled so boundary probabilities spread over (0, 1) instead of sitting at 0.5.
"""

from __future__ import annotations

import os
from pathlib import Path

from corpus import EDGE_CASES, SENTENCES


def make_tokenizer(out: Path, vocab_size: int = 600) -> Path:
    """A Unigram tokenizer with <s> <pad> </s> <unk> as ids 0-3, NFKC and a Metaspace pre-tokenizer,
    saved as a transformers tokenizer directory (tokenizer.json + tokenizer_config.json)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size, special_tokens=["<s>", "<pad>", "</s>", "<unk>"], unk_token="<unk>"
    )
    tok.train_from_iterator((SENTENCES + EDGE_CASES) * 20, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", cls_token="<s>", sep_token="</s>",
        pad_token="<pad>", unk_token="<unk>",
    )
    assert [fast.cls_token_id, fast.pad_token_id, fast.sep_token_id, fast.unk_token_id] == [0, 1, 2, 3]
    fast.save_pretrained(str(out))
    return out


def make_checkpoint(out: Path, lookahead=None, lookahead_split_layers=None, num_labels=1, seed=0,
                    layers=2, hidden=32, heads=2, vocab_size=600) -> Path:
    import torch
    from wtpsplit.configs import SubwordXLMConfig
    from wtpsplit.models import SubwordXLMForTokenClassification

    torch.manual_seed(seed)
    config = SubwordXLMConfig(
        vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=hidden * 2, max_position_embeddings=514, pad_token_id=1, bos_token_id=0,
        eos_token_id=2, type_vocab_size=1, num_labels=num_labels, lookahead=lookahead,
        lookahead_split_layers=lookahead_split_layers,
    )
    model = SubwordXLMForTokenClassification(config)
    with torch.no_grad():
        model.classifier.weight.normal_(0.0, 0.6)
        model.classifier.bias.fill_(-1.5)
    os.makedirs(out, exist_ok=True)
    model.save_pretrained(str(out))
    return out


LORA_RANK, LORA_ALPHA = 4, 8


def make_adapter(out: Path, num_labels: int, seed: int = 0, name: str = "text", targets=("query", "value"),
                 head_keys=("classifier.weight", "classifier.bias"), r: int = LORA_RANK, alpha: int = LORA_ALPHA, layers: int = 2, hidden: int = 32) -> Path:
    """A random LoRA adapter as the adapters library saves it from SubwordXLMForTokenClassification."""
    import json

    import torch

    generator = torch.Generator().manual_seed(seed)
    paths = {
        "query": "attention.self.query", "key": "attention.self.key", "value": "attention.self.value",
        "intermediate": "intermediate.dense", "output": "output.dense",
    }
    weights = {}
    for layer in range(layers):
        for target in targets:
            module = f"roberta.encoder.layer.{layer}.{paths[target]}"
            out_features = hidden * 2 if target == "intermediate" else hidden
            in_features = hidden * 2 if target == "output" else hidden
            weights[f"{module}.loras.{name}.lora_A"] = torch.randn(r, in_features, generator=generator) * 0.3
            weights[f"{module}.loras.{name}.lora_B"] = torch.randn(out_features, r, generator=generator) * 0.3
    head = {
        "classifier.weight": torch.randn(num_labels, hidden, generator=generator) * 0.6,
        "classifier.bias": torch.randn(num_labels, generator=generator) - 1.0,
    }
    out.mkdir(parents=True, exist_ok=True)
    config = {
        "config": {"architecture": "lora", "selfattn_lora": True, "intermediate_lora": False, "output_lora": False,
                   "attn_matrices": ["q", "v"], "r": r, "alpha": alpha, "dropout": 0.1,
                   "composition_mode": "add", "init_weights": "lora", "use_gating": False},
        "hidden_size": hidden, "model_class": "SubwordXLMForTokenClassification", "model_name": None,
        "model_type": "xlm-token", "name": name, "version": "adapters.1.0.0",
    }
    (out / "adapter_config.json").write_text(json.dumps(config))
    head_config = {"config": None, "hidden_size": hidden, "label2id": {f"LABEL_{i}": i for i in range(num_labels)},
                   "model_class": "SubwordXLMForTokenClassification", "model_name": None, "model_type": "xlm-token",
                   "name": None, "num_labels": num_labels, "version": "adapters.1.0.0"}
    (out / "head_config.json").write_text(json.dumps(head_config))
    torch.save(weights, out / "pytorch_adapter.bin")
    torch.save({k: v for k, v in head.items() if k in head_keys}, out / "pytorch_model_head.bin")
    return out

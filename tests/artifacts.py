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

"""The tokenizer the reference uses, stored as ``tokenizer.json`` so serving needs only ``tokenizers``.

wtpsplit tokenizes with ``AutoTokenizer.from_pretrained(tokenizer_name_or_path)``; we load the same
and save its backend (a slow sentencepiece tokenizer is converted to a fast one by transformers
here, at build time). A build-time check encodes sample texts both ways and fails on any difference.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import BuildError

SAMPLES = [
    "Hello world. This is a test! How are you?",
    "Der Fuchs. 这是一个测试。مرحبا بالعالم. 😀 e\u0301 \u00a0 tabs\tand\nnewlines\n\n",
    "  leading spaces and <s> literal specials </s> <pad>",
]


@dataclass(frozen=True)
class TokenizerInfo:
    cls_id: int
    sep_id: int
    pad_id: int
    rebuilds_ends: bool = False  # the served step rebuilds token ends from the pieces (piece_ends.py)


def save_tokenizer(tokenizer_name_or_path: str, out_file: Path) -> TokenizerInfo:
    try:
        from transformers import AutoTokenizer

        hf = AutoTokenizer.from_pretrained(tokenizer_name_or_path)
    except Exception as exc:
        raise BuildError(
            f"could not load tokenizer {tokenizer_name_or_path!r} ({type(exc).__name__}: {exc}); pass a hub id "
            "or a local tokenizer directory with --tokenizer_name_or_path"
        ) from exc
    if not getattr(hf, "is_fast", False):
        raise BuildError(
            f"tokenizer {tokenizer_name_or_path!r} has no fast (tokenizers) version; install sentencepiece and "
            "protobuf so transformers can convert it, or pass a directory with tokenizer.json"
        )
    ids = (hf.cls_token_id, hf.sep_token_id, hf.pad_token_id)
    if None in ids:
        raise BuildError(f"tokenizer {tokenizer_name_or_path!r} lacks a cls, sep or pad token (got ids {ids})")
    backend = hf.backend_tokenizer
    backend.no_padding()
    backend.no_truncation()
    out_file.parent.mkdir(parents=True, exist_ok=True)
    backend.save(str(out_file))
    _check_same_encoding(hf, out_file)
    from sat_triton.pipeline.tokenization import ServingTokenizer

    return TokenizerInfo(*ids, rebuilds_ends=ServingTokenizer.load(out_file).pieces is not None)


def _check_same_encoding(hf, tokenizer_file: Path) -> None:
    from sat_triton.pipeline.tokenization import load_tokenizer

    served = load_tokenizer(str(tokenizer_file))
    reference = hf(SAMPLES, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    for index, encoding in enumerate(served.encode_batch(SAMPLES, add_special_tokens=False)):
        same_ids = list(encoding.ids) == list(reference["input_ids"][index])
        same_offsets = [tuple(o) for o in encoding.offsets] == [tuple(o) for o in reference["offset_mapping"][index]]
        if not (same_ids and same_offsets):
            raise BuildError(
                f"the saved tokenizer.json encodes {SAMPLES[index]!r} differently from transformers; "
                "this tokenizer cannot be served as-is"
            )

"""The ensemble's two Python steps alone: chars/s of the tokenizer and the postprocessor, side by side.

Runs the code the Triton models run (``sat_pipeline.pipeline.prepare`` and ``finish`` plus the output
arrays) in this process, on the benchmark's corpus and tokenizer, at several texts per request. It
needs no model: the postprocessor gets random window logits with a few percent of tokens over the
threshold, about what the benchmark's checkpoint gives. What it tells:

* how many characters per second one instance of each step can take on this CPU, so how many
  instances a target throughput needs (on an H100 the network is cheap and these steps decide);
* the postprocessor/tokenizer ratio: how many tokenizer instances balance one postprocessor instance
  (``sat-triton build --tokenizer_instance_count`` / ``--postprocessor_instance_count``).

    python bench/steps.py                     # ~1 minute on 2 cores
    python bench/steps.py --texts_per_request 32 --texts 4000
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import benchmark  # noqa: E402  (the corpus generator and tokenizer of the end-to-end benchmark)
from sat_triton.pipeline.options import parse_options  # noqa: E402
from sat_triton.pipeline.pipeline import TokenizerSettings, finish, output_arrays, prepare  # noqa: E402
from sat_triton.pipeline.texts import decode_texts  # noqa: E402
from sat_triton.pipeline.tokenization import load_tokenizer  # noqa: E402


def best_seconds(run, repeat: int) -> float:
    run()  # warm up
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=2048, help="corpus size (default: %(default)s)")
    parser.add_argument("--text_chars", type=int, default=300, help="characters per text, about")
    parser.add_argument("--texts_per_request", default="1,8,32,128", help="comma list (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=3, help="passes per setting; the best counts")
    parser.add_argument("--threshold", type=float, default=0.25)
    parser.add_argument("--work_dir", default=str(ROOT / "bench" / ".work"))
    args = parser.parse_args(argv)

    generator = benchmark.CorpusGenerator()
    tokenizer_dir = benchmark.make_tokenizer(Path(args.work_dir) / "tokenizer-u8000", generator, 8000,
                                             train_sentences=6000)
    tokenizer = load_tokenizer(tokenizer_dir / "tokenizer.json")
    corpus = generator.texts(args.texts, seed=0, chars=args.text_chars)
    chars = sum(map(len, corpus))
    settings = TokenizerSettings(cls_id=0, sep_id=2, pad_id=1, pad_to_multiple_of=64)
    options = parse_options({})
    rng = np.random.default_rng(0)

    print(f"{len(corpus)} texts, {chars:,} characters; best of {args.repeat} passes; "
          f"{os.cpu_count()} CPUs")
    print(f"{'texts/request':>13} {'tokenizer chars/s':>18} {'ms/request':>10} {'postprocessor chars/s':>22} "
          f"{'ms/request':>10} {'post/tok':>9}")
    for k in [int(x) for x in args.texts_per_request.split(",")]:
        requests = [np.array([t.encode("utf-8") for t in corpus[i:i + k]], dtype=np.object_)
                    for i in range(0, len(corpus), k)]

        def tokenize_all():
            return [prepare(tokenizer, decode_texts(raw), options, settings) for raw in requests]

        prepared = tokenize_all()
        # about 3% of tokens over the 0.25 threshold: a sentence every ~30 tokens
        logits = [rng.normal(-4.0, 1.5, size=input_ids.shape).astype(np.float32) for _, _, input_ids, _ in prepared]

        def postprocess_all():
            for raw, (batch, _, _, _), window_logits in zip(requests, prepared, logits):
                segmented = finish(decode_texts(raw), batch.counts, batch.ends, window_logits, options,
                                   args.threshold)
                output_arrays(segmented, char_probs=False)

        tok_s = best_seconds(tokenize_all, args.repeat)
        post_s = best_seconds(postprocess_all, args.repeat)
        print(f"{k:>13} {chars / tok_s:>18,.0f} {tok_s / len(requests) * 1e3:>10.2f} {chars / post_s:>22,.0f} "
              f"{post_s / len(requests) * 1e3:>10.2f} {tok_s / post_s:>9.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

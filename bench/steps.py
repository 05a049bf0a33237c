#!/usr/bin/env python
"""The ensemble's two Python steps alone: chars/s of the tokenizer and the postprocessor, side by side.

Runs the code the Triton models run (``sat_pipeline.pipeline.prepare`` and ``finish`` plus the output
arrays) in this process, on the benchmark's corpus and tokenizer, at several texts per request. It
needs no model: the postprocessor gets random window logits with a few percent of tokens over the
threshold, about what the benchmark's checkpoint gives. What it tells:

* how many characters per second one instance of each step can take on this CPU, so how many
  instances a target throughput needs (on an H100 the network is cheap and these steps decide);
* the postprocessor/tokenizer ratio: how many tokenizer instances balance one postprocessor instance
  (``sat-triton build --tokenizer_instance_count`` / ``--postprocessor_instance_count``);
* the tokenizer step as it was and as it is, timed in alternating passes of the same run:
  ``per-token`` (``encode_batch``, its ids and offsets turned into numpy one Python step per token:
  the step when the tokenizer issue was filed), ``bulk`` (``encode_batch``, read in bulk: every text
  where the fast path does not apply) and today's (``encode_batch_fast`` ids, ends rebuilt from the
  pieces: :mod:`sat_triton.pipeline.piece_ends`);
* one long text (``--long_chars``) as the ``<name>_long`` model tokenizes it, in pieces: today's step
  against ``encode_batch`` read in bulk;
* with ``--instances``: N tokenizer instances at once (one process each, as Triton runs them), each
  with ``--threads`` rayon threads (``auto``: cores / N, what the build renders; ``0``: the library's
  own pool of every core): chars/s per instance and in all, against the step as it was (per-token
  conversion, every instance with the library's pool of all cores) in the same run.

    python bench/steps.py                              # ~1 minute on 2 cores
    python bench/steps.py --texts_per_request 32 --texts 4000
    python bench/steps.py --instances 1,2,4,8 --threads auto,0 --texts_per_request 32   # the tokenizer sweep
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if sys.path and Path(sys.path[0] or ".").resolve() == ROOT / "bench":
    sys.path.pop(0)  # bench/'s modules are bench.*, never top-level names
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.artifacts import tokenizer_path  # noqa: E402
from bench.corpus import CorpusGenerator  # noqa: E402
from sat_triton.pipeline.chunking import build_inputs, plan_chunks  # noqa: E402
from sat_triton.pipeline.options import parse_options  # noqa: E402
from sat_triton.pipeline.pipeline import TokenizerSettings, finish, model_texts, output_arrays, prepare  # noqa: E402
from sat_triton.pipeline.text_pieces import tokenize_in_pieces  # noqa: E402
from sat_triton.pipeline.texts import decode_texts  # noqa: E402
from sat_triton.pipeline.threads import available_cores, cap_tokenizer_threads  # noqa: E402
from sat_triton.pipeline.tokenization import ServingTokenizer, TokenizedBatch  # noqa: E402

SETTINGS = TokenizerSettings(cls_id=0, sep_id=2, pad_id=1, pad_to_multiple_of=64)


def tokenize_per_token(tokenizer, texts: list[str], include: np.ndarray | None = None) -> TokenizedBatch:
    """``tokenize`` as it was before the bulk conversion (kept to time both side by side): the ids and
    offsets of every token pass through a Python generator into numpy."""
    if include is None:
        include = np.ones(len(texts), dtype=bool)
    chosen = [text for text, keep in zip(texts, include) if keep]
    encodings = tokenizer.encode_batch(chosen, add_special_tokens=False) if chosen else []
    counts = np.zeros(len(texts), dtype=np.int64)
    counts[np.asarray(include, dtype=bool)] = [len(e.ids) for e in encodings]
    total = int(counts.sum())
    ids = np.fromiter((i for e in encodings for i in e.ids), dtype=np.int64, count=total)
    ends = np.fromiter((end for e in encodings for _, end in e.offsets), dtype=np.int64, count=total)
    return TokenizedBatch(ids=ids, ends=ends, counts=counts)


def prepare_per_token(tokenizer, texts, options, settings):
    """``prepare`` with :func:`tokenize_per_token` in place of ``tokenize``."""
    inputs, include = model_texts(texts, options)
    batch = tokenize_per_token(tokenizer, inputs, include)
    plan = plan_chunks(batch.counts, options.block_size, options.stride)
    input_ids, attention_mask = build_inputs(batch.ids, batch.starts, plan, settings.cls_id, settings.sep_id,
                                             settings.pad_id, settings.pad_to_multiple_of)
    return batch, plan, input_ids, attention_mask


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def best_seconds(runs: dict, repeat: int, clock=time.perf_counter) -> dict[str, float]:
    """Each callable's best time over ``repeat`` passes, the callables taking turns within each pass (so
    a machine that slows down in between weighs on all of them alike). ``clock``: wall time, or this
    process's CPU time (all its threads), which others' load on a shared machine distorts far less."""
    for run in runs.values():
        run()  # warm up
    best = {name: float("inf") for name in runs}
    for _ in range(repeat):
        for name, run in runs.items():
            started = clock()
            run()
            best[name] = min(best[name], clock() - started)
    return best


def requests_of(corpus: list[str], k: int) -> list[np.ndarray]:
    return [np.array([t.encode("utf-8") for t in corpus[i:i + k]], dtype=np.object_) for i in range(0, len(corpus), k)]


def steps_table(args, tokenizer_file: Path) -> None:
    served = ServingTokenizer.load(tokenizer_file)  # today's step: the fast path where it applies
    library = served.library  # encode_batch for every text
    corpus = CorpusGenerator().texts(args.texts, seed=0, chars=args.text_chars)
    chars = sum(map(len, corpus))
    options = parse_options({})
    rng = np.random.default_rng(0)
    threads = os.environ.get("RAYON_NUM_THREADS") or ("1" if os.environ.get("TOKENIZERS_PARALLELISM") == "false"
                                                     else "the library's own")
    rebuilt = served.pieces.encode(corpus)[3].mean() if served.pieces else 0.0
    print(f"{len(corpus)} texts, {chars:,} characters; best of {args.repeat} alternating passes, {args.clock} time; "
          f"{os.cpu_count()} CPUs; one instance (this process), rayon threads: {threads}; "
          f"ends rebuilt from the pieces for {rebuilt:.1%} of the texts")
    print(f"{'texts/request':>13} {'tokenizer chars/s':>18} {'ms/request':>10} {'per-token':>10} {'bulk':>10} "
          f"{'vs per-token':>12} {'vs bulk':>8} {'postprocessor chars/s':>22} {'ms/request':>10} {'post/tok':>9}")
    for k in [int(x) for x in args.texts_per_request.split(",")]:
        requests = requests_of(corpus, k)
        for raw in requests[:4]:  # the three paths give the same arrays
            texts = decode_texts(raw)
            a = prepare(served, texts, options, SETTINGS)
            for b in (prepare_per_token(library, texts, options, SETTINGS), prepare(library, texts, options, SETTINGS)):
                assert all(np.array_equal(x, y) for x, y in [(a[0].ids, b[0].ids), (a[0].ends, b[0].ends),
                                                              (a[0].counts, b[0].counts), (a[2], b[2]), (a[3], b[3])])
        prepared = [prepare(served, decode_texts(raw), options, SETTINGS) for raw in requests]
        # about 3% of tokens over the 0.25 threshold: a sentence every ~30 tokens
        logits = [rng.normal(-4.0, 1.5, size=input_ids.shape).astype(np.float32) for _, _, input_ids, _ in prepared]

        def postprocess_all():
            for raw, (batch, _, _, _), window_logits in zip(requests, prepared, logits):
                segmented = finish(decode_texts(raw), batch.counts, batch.ends, window_logits, options,
                                   args.threshold)
                output_arrays(segmented, char_probs=False)

        best = best_seconds({
            "today": lambda: [prepare(served, decode_texts(raw), options, SETTINGS) for raw in requests],
            "per-token": lambda: [prepare_per_token(library, decode_texts(raw), options, SETTINGS)
                                  for raw in requests],
            "bulk": lambda: [prepare(library, decode_texts(raw), options, SETTINGS) for raw in requests],
            "post": postprocess_all}, args.repeat, CLOCKS[args.clock])
        tok_s, old_s, bulk_s, post_s = best["today"], best["per-token"], best["bulk"], best["post"]
        print(f"{k:>13} {chars / tok_s:>18,.0f} {tok_s / len(requests) * 1e3:>10.2f} {chars / old_s:>10,.0f} "
              f"{chars / bulk_s:>10,.0f} {old_s / tok_s:>12.2f} {bulk_s / tok_s:>8.2f} {chars / post_s:>22,.0f} "
              f"{post_s / len(requests) * 1e3:>10.2f} {tok_s / post_s:>9.2f}", flush=True)


def long_text_row(args, served) -> None:
    """One long text as the ``<name>_long`` model tokenizes it (in pieces, a few per call): today's step
    against ``encode_batch`` read in bulk, alternating passes."""
    texts = CorpusGenerator().texts(args.long_chars // 200 + 1, seed=3, chars=args.text_chars)
    text = " ".join(texts)[:args.long_chars]
    rebuilt, library = tokenize_in_pieces(served, [text]), tokenize_in_pieces(served.library, [text])
    assert np.array_equal(rebuilt.ids, library.ids) and np.array_equal(rebuilt.ends, library.ends)
    best = best_seconds({"today": lambda: tokenize_in_pieces(served, [text]),
                         "bulk": lambda: tokenize_in_pieces(served.library, [text])}, args.repeat, CLOCKS[args.clock])
    print(f"one text of {len(text):,} characters, in pieces (the long model): today {len(text) / best['today']:,.0f} "
          f"chars/s, bulk {len(text) / best['bulk']:,.0f}, today / bulk {best['bulk'] / best['today']:.2f}", flush=True)


def _instance(tokenizer_file: str, threads: int, per_token: bool, texts: list[str], k: int, passes: int, barrier,
              queue) -> None:
    """One tokenizer instance (a process, as Triton runs it): rayon threads capped first, then timed."""
    cap_tokenizer_threads(threads)
    served = ServingTokenizer.load(tokenizer_file)
    tokenizer = served.library if per_token else served
    options = parse_options({})
    step = prepare_per_token if per_token else prepare
    requests = requests_of(texts, k)
    [step(tokenizer, decode_texts(raw), options, SETTINGS) for raw in requests[:4]]  # warm up (starts the pool)
    barrier.wait()
    started, cpu = time.perf_counter(), time.process_time()
    for _ in range(passes):
        for raw in requests:
            step(tokenizer, decode_texts(raw), options, SETTINGS)
    queue.put((time.perf_counter() - started, time.process_time() - cpu,
               len(os.listdir("/proc/self/task")) if os.path.isdir("/proc") else 0))


def instances_table(args, tokenizer_file: Path) -> None:
    """N instances at once per setting: today's step (ends rebuilt from the pieces) at each ``--threads``,
    and the step as it was (per-token conversion, the library's own pool in every instance) as the
    baseline; settings take turns for ``--rounds`` rounds, the best round counts."""
    cores = available_cores()
    corpus = CorpusGenerator().texts(args.texts, seed=0, chars=args.text_chars)
    chars = sum(map(len, corpus))
    context = multiprocessing.get_context("spawn")
    k = args.instance_texts_per_request
    print(f"\ntokenizer instances at once ({cores} cores; {args.texts} texts x {args.passes} passes each, "
          f"{k} texts/request; best of {args.rounds} rounds)")
    print(f"{'instances':>9} {'conversion':>11} {'threads':>9} {'chars/s per instance':>21} {'chars/s in all':>15} "
          f"{'vs before':>10} {'chars/CPU-s':>12} {'vs before':>10} {'OS threads':>11}")
    for n in [int(x) for x in args.instances.split(",")]:
        settings = [("per-token", "0")] + [("today", t) for t in args.threads.split(",")]
        best: dict = {}
        for _ in range(args.rounds):
            for path, threads in settings:
                count = max(1, cores // n) if threads == "auto" else int(threads)
                barrier, queue = context.Barrier(n), context.Queue()
                procs = [context.Process(target=_instance, args=(str(tokenizer_file), count, path == "per-token",
                                                                  corpus, k, args.passes, barrier, queue))
                         for _ in range(n)]
                for proc in procs:
                    proc.start()
                results = [queue.get(timeout=900) for _ in procs]
                for proc in procs:
                    proc.join()
                per = chars * args.passes / max(wall for wall, _, _ in results)  # while all of them ran
                per_cpu = chars * args.passes * n / sum(cpu for _, cpu, _ in results)
                old = best.get((path, threads), (0.0, 0.0, 0, 0))
                best[(path, threads)] = (max(per, old[0]), max(per_cpu, old[1]), max(t for _, _, t in results), count)
        before, before_cpu = best[("per-token", "0")][:2]
        for path, threads in settings:
            per, per_cpu, os_threads, count = best[(path, threads)]
            label = f"{threads} ({count})" if threads == "auto" else threads
            print(f"{n:>9} {path:>11} {label:>9} {per:>21,.0f} {per * n:>15,.0f} {per / before:>10.2f} "
                  f"{per_cpu:>12,.0f} {per_cpu / before_cpu:>10.2f} {os_threads:>11}", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--texts", type=int, default=2048, help="corpus size (default: %(default)s)")
    parser.add_argument("--text_chars", type=int, default=300, help="characters per text, about (default: %(default)s)")
    parser.add_argument("--texts_per_request", default="1,8,32,128", help="comma list (default: %(default)s)")
    parser.add_argument("--long_chars", type=int, default=1_000_000,
                        help="also time one text this long, as the long model tokenizes it; 0: skip "
                        "(default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=3, help="passes per setting; the best counts (default: %(default)s)")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="time the steps by wall clock or by this process's CPU time (default: %(default)s)")
    parser.add_argument("--threshold", type=float, default=0.25, help="postprocessor threshold (default: %(default)s)")
    parser.add_argument("--instances", help="comma list: also run this many tokenizer instances at once, one process "
                        "each (default: none)")
    parser.add_argument("--threads", default="auto,0",
                        help="rayon threads per instance with --instances: auto (cores / instances), 0 (the library's "
                        "own pool of every core) or N (default: %(default)s)")
    parser.add_argument("--instance_texts_per_request", type=int, default=32,
                        help="texts per request with --instances (default: %(default)s)")
    parser.add_argument("--passes", type=int, default=3, help="corpus passes per instance with --instances "
                        "(default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of every --instances setting; the best counts "
                        "(default: %(default)s)")
    parser.add_argument("--skip_steps", action="store_true", help="only the --instances table")
    parser.add_argument("--work_dir", default=str(ROOT / "bench" / ".work"),
                        help="the benchmark's cache of generated artifacts (default: %(default)s)")
    args = parser.parse_args(argv)
    tokenizer_file = tokenizer_path(Path(args.work_dir)) / "tokenizer.json"
    if not args.skip_steps:
        steps_table(args, tokenizer_file)
        if args.long_chars:
            long_text_row(args, ServingTokenizer.load(tokenizer_file))
    if args.instances:
        instances_table(args, tokenizer_file)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

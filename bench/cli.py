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

--sweep rebuilds the repository with other settings (``sat-triton build`` flags; variants that differ
only in config.pbtxt lines are hard-linked copies with those lines rewritten). The capacity curve
(open-loop load from idle to past capacity) is its own command: ``python bench/capacity.py``.
Results are also written as JSON to ``<work_dir>/results/``; the code is the ``bench`` package
(bench/__init__.py lists its modules).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import signal
import time
from pathlib import Path

import numpy as np

from . import artifacts
from .accounting import print_stats
from .artifacts import Shape
from .baselines import OnnxAlone, make_model_variants, run_inprocess, run_model_alone, run_model_variants
from .common import GPU_SETTINGS, GPU_SWEEP_SETTINGS, ROOT, log, parse_list, parse_settings
from .corpus import CorpusGenerator
from .report import Row, compute_ratios, markdown_table, print_table, target_ratios
from .serving import run_server
from .variants import Variant, build_repository, onnx_file, sweep_variants


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Where artifacts live, the device, and the base repository's ``sat-triton build`` flags (unset:
    the builder's default for ``--device``); shared with bench/capacity.py."""
    parser.add_argument("--work_dir", type=Path, default=ROOT / "bench" / ".work",
                        help="cache for generated artifacts, repositories, logs, results (default: %(default)s)")
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu",
                        help="where the ONNX step, wtpsplit and the model alone run (gpu: onnxruntime-gpu + CUDA "
                        "torch; default: %(default)s)")
    parser.add_argument("--onnx_backend", choices=["python", "onnxruntime"], default="python",
                        help="sat-triton build --onnx_backend (onnxruntime needs an NGC tritonserver on PATH; "
                        "default: %(default)s)")
    parser.add_argument("--server_bin",
                        help="bin/ of the Python environment tritonserver's Python models run in (default: this "
                        "interpreter's), e.g. a venv with numpy<2, which the 24.10 stub needs, when this one has numpy 2")
    parser.add_argument("--tokenizer_vocab", type=int, default=8000,
                        help="pieces of the generated tokenizer (default: %(default)s)")
    parser.add_argument("--shape", default="3,768,12,3072,250002",
                        help="layers,hidden,heads,intermediate,vocab of the generated checkpoint (default: sat-3l-sm)")
    parser.add_argument("--text_chars", type=int, default=300, help="characters per text, about (default: 300)")
    flag = "build flag of the base repository (default: the builder's for --device)"
    parser.add_argument("--precision", choices=["fp32", "fp16"], help=flag + "; fp16 on gpu")
    parser.add_argument("--instance_count", type=int, help=flag)
    parser.add_argument("--tokenizer_instance_count", type=int, default=0, help=flag)
    parser.add_argument("--postprocessor_instance_count", type=int, default=0, help=flag)
    parser.add_argument("--onnx_instance_count", type=_auto_or_int, help=flag)
    parser.add_argument("--intra_op_threads", type=_auto_or_int, default="auto", help=flag)
    parser.add_argument("--tokenizer_threads", type=_auto_or_int, default="auto", help=flag)
    parser.add_argument("--pad_to_multiple_of", type=int, help=flag)
    parser.add_argument("--max_queue_delay_us", type=int, help=flag)
    parser.add_argument("--max_queue_size", type=int, help=flag + " (every step's bounded queue; 0 with --queue_timeout_ms 0: unbounded)")
    parser.add_argument("--queue_timeout_ms", type=int, help=flag)
    parser.add_argument("--max_batch_size", type=int, help=flag)
    parser.add_argument("--length_granularity", type=int, help=flag)
    parser.add_argument("--optimize", choices=["on", "off"], help=flag)


def _auto_or_int(value: str) -> int | str:
    return "auto" if value.strip().lower() == "auto" else int(value)


def base_variant(args) -> Variant:
    """The base repository: the flags given, the builder's defaults for ``--device`` otherwise (``auto``
    resolved from this machine's cores, as ``sat-triton build`` does)."""
    from sat_triton.builder.defaults import build_defaults, cpu_onnx_instances
    from sat_triton.pipeline.threads import available_cores

    for key, value in build_defaults(args.device).items():  # what `sat-triton build --device X` renders
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.onnx_instance_count == "auto":
        args.onnx_instance_count = cpu_onnx_instances(available_cores())
    args.precision = args.precision or ("fp16" if args.device == "gpu" else "fp32")  # fp16: the fast path on a GPU
    return Variant("base", instance_count=args.instance_count, onnx_instance_count=args.onnx_instance_count,
                   tokenizer_instance_count=args.tokenizer_instance_count,
                   postprocessor_instance_count=args.postprocessor_instance_count,
                   intra_op_threads=0 if args.intra_op_threads == "auto" else args.intra_op_threads,
                   tokenizer_threads=str(args.tokenizer_threads), pad_to_multiple_of=args.pad_to_multiple_of,
                   max_queue_delay_us=args.max_queue_delay_us, max_queue_size=args.max_queue_size,
                   queue_timeout_ms=args.queue_timeout_ms, max_batch_size=args.max_batch_size,
                   dynamic_batching=args.device == "gpu", precision=args.precision,
                   length_granularity=args.length_granularity, optimize=args.optimize == "on")


def check_device(device: str) -> None:
    """On gpu: onnxruntime-gpu with its CUDA libraries loaded once, for every session of the run."""
    if device != "gpu":
        return
    import onnxruntime as ort

    if hasattr(ort, "preload_dlls"):  # CUDA/cuDNN from pip's nvidia-* packages, for every session
        ort.preload_dlls(directory="")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise SystemExit("--device gpu needs onnxruntime-gpu (CUDAExecutionProvider); "
                         f"this onnxruntime has {ort.get_available_providers()}")


def stop_on_sigterm() -> None:
    """SIGTERM (e.g. ``timeout``) unwinds like Ctrl-C, so a running tritonserver is stopped on the way out."""
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--quick", action="store_true", help="small corpus and fewer settings (~3-5 min on 2 cores)")
    add_common_arguments(parser)
    parser.add_argument("--texts", type=int, help="corpus size (default: 120 with --quick, 4000 on gpu, else 1000)")
    parser.add_argument("--texts_per_request", help="comma list (default: 1,8,32)")
    parser.add_argument("--concurrency", help="comma list of concurrent clients (default: 1,4,16)")
    parser.add_argument("--settings", help="explicit texts_per_request:clients pairs, e.g. 1:1,8:4 (default with "
                        "--quick: 1:1,1:4,8:4,32:4; on gpu: " + GPU_SETTINGS + "; otherwise every "
                        "--texts_per_request x --concurrency)")
    parser.add_argument("--min_seconds", type=float, help="repeat the corpus until each server setting ran this long "
                        "(default: 0 with --quick, 5 on gpu, else 20)")
    parser.add_argument("--client_processes", type=int,
                        help="spread the client threads over this many processes (default: 1; 4 on gpu)")
    parser.add_argument("--latency_calls", type=int, default=100,
                        help="short-text calls for idle latency (default: %(default)s)")
    parser.add_argument("--model_seconds", type=float, help="seconds per ONNX-alone shape (default 2 quick, else 5)")
    parser.add_argument("--probe_seconds", type=float,
                        help="before every measured phase, run the ONNX model alone this long (corpus-shaped batch "
                        "of 8) so each row can be read relative to the machine's speed at that moment (0: off; "
                        "default 1.5 on cpu, 0 on gpu)")
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
    return parser


def resolve_settings(args) -> list[tuple[int, int]]:
    """Fill the run's defaults (they depend on --quick and --device); the server settings to measure."""
    gpu = args.device == "gpu"
    args.texts = args.texts or (120 if args.quick else 4000 if gpu else 1000)
    args.client_processes = args.client_processes or (4 if gpu else 1)
    args.probe_seconds = args.probe_seconds if args.probe_seconds is not None else (0.0 if gpu else 1.5)
    args.min_seconds = args.min_seconds if args.min_seconds is not None else (
        0.0 if args.quick else 5.0 if gpu else 20.0)
    args.model_seconds = args.model_seconds if args.model_seconds is not None else (2.0 if args.quick else 5.0)
    if not (args.settings or args.texts_per_request or args.concurrency):
        args.settings = GPU_SETTINGS if gpu else "1:1,1:4,8:4,32:4" if args.quick else None
    if args.settings:
        return parse_settings(args.settings)
    return [(p, c) for p in parse_list(args.texts_per_request or "1,8,32") for c in parse_list(args.concurrency or "1,4,16")]


def run_sweep(args, base: Variant, base_repo: Path, made, repo_tag: str, corpus, tokens, settings, reference, alone,
              started: float) -> tuple[list[Row], list[dict], dict]:
    """Every sweep variant of ``base``: built (or linked and patched), served and measured in turn."""
    rows: list[Row] = []
    phases: list[dict] = []
    info: dict = {}
    work = args.work_dir.resolve()
    concurrency = max(c for _, c in settings)
    if args.sweep_settings or args.device == "gpu":
        vsettings = parse_settings(args.sweep_settings or GPU_SWEEP_SETTINGS)
    else:
        vsettings = [(p, concurrency) for p in parse_list(args.sweep_texts_per_request)]
    built = {tuple(base.flags()): base_repo}
    variant_repos: list[Path] = []
    wanted = set(args.sweep_only.split(",")) if args.sweep_only else None
    for variant in sweep_variants(base, args.device):
        if wanted is not None and variant.name not in wanted:
            continue
        if args.deadline_s and time.perf_counter() - started > args.deadline_s:
            log(f"deadline: {args.deadline_s:.0f}s passed, not serving sweep variant {variant.name}")
            info[f"skipped [{variant.name}]"] = "deadline"
            continue
        try:
            repo = build_repository(variant, made.checkpoint_dir, made.tokenizer_dir,
                                    work / f"repo-{repo_tag}-{variant.name}", args.device, args.onnx_backend,
                                    same_flags_as=built.get(tuple(variant.flags())))
            built.setdefault(tuple(variant.flags()), repo)
            variant_repos.append(repo)
            vrows, vphases, vinfo = run_server(args, variant, repo, corpus, tokens, vsettings, False, reference,
                                               work / "logs", alone)
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
    return rows, phases, info


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    settings = resolve_settings(args)
    base = base_variant(args)
    shape = Shape(*parse_list(args.shape))
    stop_on_sigterm()
    check_device(args.device)
    started = time.perf_counter()
    work = args.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)

    # 1. artifacts ---------------------------------------------------------------------------------
    corpus = CorpusGenerator().texts(args.texts, seed=7, chars=args.text_chars)
    made = artifacts.prepare(work, shape, args.text_chars, args.tokenizer_vocab)
    counts = artifacts.token_counts(made.tokenizer_dir, corpus)
    tokens = int(counts.sum())
    chars = sum(map(len, corpus))
    chars_per_token = chars / tokens
    log(f"corpus: {len(corpus)} texts, {chars:,} chars, {tokens:,} tokens ({chars_per_token:.2f} chars/token, "
        f"{tokens / len(corpus):.0f} tokens/text, longest {int(counts.max())})")

    rows: list[Row] = []
    phases: list[dict] = []
    info: dict = {}

    # 2. the base repository, and the ONNX model alone (the ceiling) on the file it serves -----------
    repo_tag = f"{shape.tag}-{args.device}-{args.onnx_backend}"
    base_repo = build_repository(base, made.checkpoint_dir, made.tokenizer_dir, work / f"repo-{repo_tag}-base",
                                 args.device, args.onnx_backend)
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

    # 3. wtpsplit in-process -----------------------------------------------------------------------
    reference = None
    if not args.skip_inprocess:
        inproc, reference = run_inprocess(args, made.checkpoint_dir, made.tokenizer_dir, made.wtpsplit_onnx_dir,
                                          corpus, tokens, alone)
        rows += inproc
        gc.collect()

    # 4. the server, and the sweep's variants ------------------------------------------------------
    if not args.skip_server:
        for part in [run_server(args, base, base_repo, corpus, tokens, settings, True, reference, work / "logs",
                                alone)] + ([run_sweep(args, base, base_repo, made, repo_tag, corpus, tokens, settings,
                                                      reference, alone, started)] if args.sweep else []):
            rows += part[0]
            phases += part[1]
            info.update(part[2])

    # 5. report ------------------------------------------------------------------------------------
    order = {"server": 0, "in-process": 1, "ceiling": 2, "model variants": 3, "latency": 4}
    rows.sort(key=lambda r: order.get(r.group, 9))
    print(f"\n== sat-triton benchmark: {len(corpus)} texts x ~{args.text_chars} chars, {chars_per_token:.2f} chars/token,"
          f" checkpoint {shape.tag}, device {args.device}, onnx_backend {args.onnx_backend}, {args.precision}, "
          f"{os.cpu_count()} CPUs, base: {base.describe()} ==")
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
        "base": base.describe(),
        "corpus": {"texts": len(corpus), "chars": chars, "tokens": tokens, "chars_per_token": chars_per_token},
        "rows": [r.as_dict() for r in rows], "ratios": ratios, "targets": target_ratios(rows), "info": info,
        "phases": phases, "markdown": markdown_table(rows), "elapsed_s": elapsed,
    }, indent=1, default=str))
    print(f"results: {result_file}")
    return 0

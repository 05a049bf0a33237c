"""``sat-triton``: build a Triton model repository from a SaT checkpoint, and serve it.

    sat-triton build --model_name_or_path sat-3l-sm --output_dir model_repository
    sat-triton serve model_repository
    sat-triton health

Errors print one line that says what to do (exit status 2 for a bad argument or input, 1 otherwise);
``--debug`` prints the traceback instead.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from sat_triton import __version__
from sat_triton.client.sat import default_triton_name

from sat_triton.pipeline.limits import (DEFAULT_MAX_REQUEST_CHARS, DEFAULT_MAX_REQUEST_TEXTS, DEFAULT_MAX_TEXT_CHARS,
                                        ENSEMBLE_CHARS_PER_WINDOW, default_ensemble_request_chars)
from sat_triton.pipeline.piece_ends import MIN_REBUILD_CHARS

from .errors import BuildError


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sat-triton", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"sat-triton {__version__}",
                        help="print the version and exit")
    parser.add_argument("--debug", action="store_true", help="on an error, print the traceback (default: off)")
    # --debug after the subcommand too; SUPPRESS keeps a --debug given before it
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="on an error, print the traceback (default: off)")
    sub = parser.add_subparsers(dest="command", required=True)

    build = sub.add_parser("build", parents=[common], help="export a SaT checkpoint and write a Triton model repository")
    build.add_argument("--model_name_or_path", required=True,
                       help="hub id (a bare name such as sat-3l-sm means segment-any-text/sat-3l-sm) or local directory "
                            "(required)")
    build.add_argument("--output_dir", default="model_repository",
                       help="model repository root, created if missing; models already in it are kept "
                            "(default: %(default)s)")
    build.add_argument("--triton_model_name", help="name of the ensemble (default: from the model name)")
    build.add_argument("--tokenizer_name_or_path", default="facebookAI/xlm-roberta-base",
                       help="hub id or local tokenizer directory (default: %(default)s)")
    build.add_argument("--max_batch_size", type=int,
                       help="most windows (512-token chunks) the ONNX step takes in one batch (default: 256 on gpu, "
                            "64 on cpu)")
    build.add_argument("--device", choices=["gpu", "cpu"], default="gpu",
                       help="where the ONNX model runs; other defaults follow it (default: %(default)s)")
    build.add_argument("--onnx_backend", choices=["onnxruntime", "python"], default="python",
                       help="Triton's onnxruntime backend (NGC images) or onnxruntime inside the Python backend "
                            "(default: %(default)s)")
    build.add_argument("--precision", choices=["fp32", "fp16"], default="fp32",
                       help="weights of the exported model: fp32 is exact, fp16 the fast choice on a GPU "
                            "(default: %(default)s)")
    build.add_argument("--instance_count", type=int,
                       help="instances of the tokenizer and postprocessor steps, at least 2 while their queues are "
                            "bounded (default: 4 on gpu, 2 on cpu)")
    build.add_argument("--tokenizer_instance_count", type=int,
                       help="instances of the tokenizer step alone (default: --instance_count); on a GPU it is the "
                            "step that saturates first (docs/performance.md)")
    build.add_argument("--postprocessor_instance_count", type=int,
                       help="instances of the postprocessor step alone (default: --instance_count)")
    build.add_argument("--model_version", type=int, default=1,
                       help="version directory to write, beside the ones already there (default: %(default)s)")
    build.add_argument("--pad_to_multiple_of", type=int,
                       help="round window lengths up to this many tokens so requests batch together (default: 64)")
    build.add_argument("--max_queue_delay_us", type=int,
                       help="dynamic batcher queue delay (default: 500 on gpu, 2000 on cpu)")
    build.add_argument("--dynamic_batching", choices=["auto", "on", "off"], default="auto",
                       help="the ONNX step waits up to --max_queue_delay_us for a batch to fill (on) or not at all "
                            "(off: delay 0; its queue stays bounded); auto: on for gpu, off for cpu, where batches "
                            "buy nothing (default: %(default)s; docs/performance.md)")
    build.add_argument("--max_queue_size", type=int,
                       help="requests that may wait for each step (tokenizer, ONNX, postprocessor, <name>_long); one "
                            "more is refused at once with UNAVAILABLE (gRPC) / 503 (HTTP) 'Exceeds maximum queue "
                            "size'. Past capacity an accepted request waits about this many requests' time at the "
                            "step that saturates; 0 (with --queue_timeout_ms 0): no bound (default: 64 on gpu, 8 on "
                            "cpu; docs/reliability.md)")
    build.add_argument("--queue_timeout_ms", type=int,
                       help="a request that waited this long for a step is refused (UNAVAILABLE / 503 "
                            "'Request timeout expired'); a request's own 'timeout' may only shorten it; 0: no "
                            "timeout (default: 30000; docs/reliability.md)")
    build.add_argument("--onnx_instance_count", type=_auto_or_int,
                       help="instances of the ONNX step (default: 3 on gpu; auto on cpu: one per core up to 3 "
                            "cores, then one per two cores, at most 8, counted on this machine; "
                            "builder/defaults.py)")
    build.add_argument("--length_granularity", type=int,
                       help="the ONNX step (python backend) runs a batch's windows in groups of similar length, "
                            "rounded to this many tokens; 0: one padded call (default: 0 on gpu, 8 on cpu)")
    build.add_argument("--optimize", choices=["on", "off"],
                       help="fuse the graph with onnxruntime's transformer optimizer (contrib ops, onnxruntime "
                            "only; default: on for gpu, off for cpu)")
    build.add_argument("--intra_op_threads", type=_auto_or_int, default="auto",
                       help="onnxruntime threads per ONNX instance (default: auto = the serving host's cores / "
                            "CPU instances, at least 1, all cores for one instance; 0 means auto)")
    build.add_argument("--tokenizer_threads", type=_auto_or_int, default="auto",
                       help="rayon threads of each tokenizer instance's tokenizers library (default: auto = the "
                            "serving host's cores / tokenizer instances, at least 1, so instances x threads fit the "
                            "cores; 0 = the library's own: every core in every instance)")
    build.add_argument("--max_text_chars", type=int, default=DEFAULT_MAX_TEXT_CHARS,
                       help="longest text (in characters) a request may carry, to the ensemble or to <name>_long; "
                            "longer ones are refused with INVALID_ARGUMENT before any work (default: %(default)s)")
    build.add_argument("--max_request_chars", type=int, default=DEFAULT_MAX_REQUEST_CHARS,
                       help="most characters, all texts together, in one request to <name>_long (default: %(default)s)")
    build.add_argument("--max_ensemble_request_chars", type=int,
                       help="most characters, all texts together, in one request to the ensemble; larger ones are "
                            "refused before tokenizing and client.SaT sends them to <name>_long (default: "
                            f"{ENSEMBLE_CHARS_PER_WINDOW} x --max_batch_size, 8 characters a token for its windows)")
    build.add_argument("--max_request_texts", type=int, default=DEFAULT_MAX_REQUEST_TEXTS,
                       help="most texts in one request, to the ensemble or to <name>_long (default: %(default)s)")
    build.add_argument("--tensorrt", action="store_true",
                       help="enable the TensorRT execution accelerator of the onnxruntime backend (default: off)")
    build.add_argument("--tensorrt_cache_dir",
                       help="with --tensorrt: absolute path, inside the serving container, where onnxruntime caches "
                            "the TensorRT engines it builds at load, so a restart reuses them instead of building "
                            "again (trt_engine_cache_path; mount a writable volume there, e.g. the gpu overlay's "
                            "/cache/tensorrt; default: no cache, engines built at every load)")
    build.add_argument("--use_lora", action="store_true",
                       help="merge the LoRA adapter loras/<style_or_domain>/<language>/ of the model's hub repository "
                            "into the weights before export; the default threshold becomes 0.5, as in wtpsplit "
                            "(default: off)")
    build.add_argument("--style_or_domain",
                       help="the hub LoRA adapter's style or domain, e.g. ud (with --use_lora; default: none)")
    build.add_argument("--language", help="the hub LoRA adapter's language, e.g. en (with --use_lora; default: none)")
    build.add_argument("--lora_path", type=Path,
                       help="a local LoRA adapter directory in wtpsplit's layout (adapter_config.json, head_config.json, "
                            "pytorch_adapter.bin, pytorch_model_head.bin), merged into the weights before export "
                            "(default: none)")

    serve = sub.add_parser(
        "serve", parents=[common], help="run tritonserver on a model repository under a supervisor (truthful health, healing, "
                      "drain on SIGTERM) until Ctrl-C or SIGTERM; see docs/reliability.md")
    serve.add_argument("repository", type=Path, help="the model repository that sat-triton build wrote")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address HTTP, gRPC, metrics and health bind to; 0.0.0.0 for every interface, as in a "
                            "container (default: %(default)s)")
    serve.add_argument("--http_port", "--http-port", type=int, default=8000, help="Triton's HTTP port (default: %(default)s)")
    serve.add_argument("--grpc_port", "--grpc-port", type=int, default=8001,
                       help="Triton's gRPC port (default: %(default)s)")
    serve.add_argument("--metrics_port", "--metrics-port", type=int, default=8002,
                       help="Triton's Prometheus metrics port (default: %(default)s)")
    serve.add_argument("--health_port", "--health-port", type=int, default=8003,
                       help="the supervisor's /v2/health/ready and /v2/health/live, for probes and HEALTHCHECK "
                            "(default: %(default)s)")
    serve.add_argument("--exit_timeout", "--exit-timeout", type=float, default=30.0,
                       help="on SIGTERM or Ctrl-C, seconds to wait for in-flight requests before stopping "
                            "tritonserver; serve exits within this + 30 s (default: %(default)s)")
    serve.add_argument("--model_control_mode", choices=["explicit", "none", "poll"], default="explicit",
                       help="explicit: every model loaded at start, the repository API restricted to the "
                            "supervisor, which reloads a broken model; none/poll: a broken model costs a "
                            "tritonserver restart (default: %(default)s)")
    serve.add_argument("--timeout", type=float, default=300.0,
                       help="seconds to wait for tritonserver and every model to be ready (default: %(default)s)")
    serve.add_argument("--canary_interval", type=float, default=5.0,
                       help="seconds between canary requests through every ensemble and long model "
                            "(default: %(default)s)")
    serve.add_argument("--canary_timeout", type=float, default=10.0,
                       help="seconds a canary request may take before it counts as unanswered "
                            "(default: %(default)s)")
    serve.add_argument("--log_file", help="tritonserver's log: a file, or - for this terminal "
                                          "(default: a new temporary file, printed at start)")
    serve.add_argument("--log_verbose", type=int, default=0, help="tritonserver's --log-verbose (default: %(default)s)")
    serve.add_argument("--recycle_shm_mb", type=float, default=16.0,
                       help="reload a Python model (beside the serving instances, readiness stays 200) once the "
                            "shared-memory pool of one of its stubs grew past this many MB, at most once a minute: "
                            "the Python backend never shrinks a pool, so one oversized request would keep it large "
                            "for good; 0: never (default: %(default)s; docs/limits.md)")

    health = sub.add_parser("health", parents=[common], help="exit 0 when a sat-triton serve is ready, 1 otherwise, printing one line "
                                           "(for a container HEALTHCHECK; no curl needed)")
    health.add_argument("--url", default="http://127.0.0.1:8003/v2/health/ready",
                        help="the supervisor's readiness endpoint (default: %(default)s)")
    health.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for an answer (default: %(default)s)")
    return parser


def _auto_or_int(value: str) -> int | str:
    """``auto`` or a whole number (checked against each flag's minimum in :func:`build`)."""
    if value.strip().lower() == "auto":
        return "auto"
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a whole number, got {value!r}") from None


def build(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from sat_triton.pipeline.options import default_threshold
    from sat_triton.pipeline.threads import available_cores

    from . import checkpoint, export, lora, modeling, repository, tokenizer
    from .defaults import build_defaults, cpu_onnx_instances, onnx_threads

    if args.tensorrt and args.optimize is None:
        args.optimize = "off"  # TensorRT runs no onnxruntime contrib ops
    for flag, value in build_defaults(args.device).items():  # builder/defaults.py: chosen by measurement
        if getattr(args, flag) is None:
            setattr(args, flag, value)
    cores = available_cores()
    if args.onnx_instance_count == "auto":  # cpu: from this machine's cores (builder/defaults.py)
        args.onnx_instance_count = cpu_onnx_instances(cores) if args.device == "cpu" else build_defaults("gpu")[
            "onnx_instance_count"]
    for flag in ("intra_op_threads", "tokenizer_threads"):
        if getattr(args, flag) != "auto" and getattr(args, flag) < 0:
            raise BuildError(f"--{flag} must be auto or >= 0, got {getattr(args, flag)}")
    if args.max_ensemble_request_chars is None:
        args.max_ensemble_request_chars = default_ensemble_request_chars(args.max_batch_size)
    for flag in ("max_batch_size", "instance_count", "tokenizer_instance_count", "postprocessor_instance_count",
                 "onnx_instance_count", "model_version", "pad_to_multiple_of", "max_text_chars", "max_request_chars",
                 "max_ensemble_request_chars", "max_request_texts"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:  # a step's own count: None = --instance_count
            raise BuildError(f"--{flag} must be >= 1, got {getattr(args, flag)}")
    if args.tensorrt and args.onnx_backend != "onnxruntime":
        raise BuildError("--tensorrt needs --onnx_backend onnxruntime (an NGC tritonserver image)")
    if args.tensorrt_cache_dir is not None and not args.tensorrt:
        raise BuildError("--tensorrt_cache_dir needs --tensorrt (it caches TensorRT engines)")
    if args.tensorrt_cache_dir is not None and not args.tensorrt_cache_dir.startswith("/"):
        raise BuildError(f"--tensorrt_cache_dir must be an absolute path inside the serving container, "
                         f"got {args.tensorrt_cache_dir!r}")
    if args.tensorrt and args.optimize == "on":
        raise BuildError("--tensorrt cannot run onnxruntime's contrib ops: leave out --optimize on")
    for flag in ("max_queue_size", "queue_timeout_ms"):
        if getattr(args, flag) < 0:
            raise BuildError(f"--{flag} must be >= 0 (0: no bound), got {getattr(args, flag)}")
    if args.max_queue_size > 0 or args.queue_timeout_ms > 0:  # a bounded queue needs two instances per step
        counts = {}  # the flag that sets each step's count: a step's own, else --instance_count
        for step in ("tokenizer", "postprocessor"):
            own = getattr(args, f"{step}_instance_count")
            counts["--" + (f"{step}_instance_count" if own else "instance_count")] = own or args.instance_count
        counts["--onnx_instance_count"] = args.onnx_instance_count
        small = [f"{flag} {count}" for flag, count in counts.items() if count < repository.MIN_BOUNDED_INSTANCES]
        if small:
            raise BuildError(f"{', '.join(small)}: a step with a bounded queue needs at least "
                             f"{repository.MIN_BOUNDED_INSTANCES} instances (with one, tritonserver 2.51 waits 500 ms "
                             "per request once its queue is full; docs/reliability.md); raise it, or pass "
                             "--max_queue_size 0 --queue_timeout_ms 0 for no bound")
    if args.length_granularity < 0:
        raise BuildError(f"--length_granularity must be >= 0, got {args.length_granularity}")
    hub_lora = bool(args.style_or_domain or args.language)
    if args.lora_path is not None and hub_lora:
        raise BuildError("pass either --lora_path DIR or --use_lora --style_or_domain S --language L, not both")
    if hub_lora and not args.use_lora:
        raise BuildError("--style_or_domain and --language pick a hub LoRA adapter; add --use_lora")
    if args.use_lora and args.lora_path is None and not (args.style_or_domain and args.language):
        raise BuildError("--use_lora needs --style_or_domain and --language (e.g. --style_or_domain ud --language en), "
                         "or pass --lora_path DIR")
    if hub_lora and Path(args.model_name_or_path).expanduser().is_dir():
        raise BuildError("--use_lora downloads the adapter from the model's hub repository, but --model_name_or_path "
                         "is a local directory; pass the adapter directory with --lora_path DIR")
    use_lora = args.use_lora or args.lora_path is not None
    ensemble = args.triton_model_name or default_triton_name(args.model_name_or_path)
    out = Path(args.output_dir)
    _check_output_dir(out)
    ckpt = checkpoint.resolve(args.model_name_or_path)  # fails fast, before any progress output
    lora_dir = None
    if use_lora:
        lora_dir = lora.check_adapter_dir(args.lora_path) if args.lora_path is not None else lora.download_adapter(
            checkpoint.hub_id(args.model_name_or_path), args.style_or_domain, args.language)
    with tempfile.TemporaryDirectory(prefix="sat-triton-build-") as tmp, \
            tqdm(total=4, desc="sat-triton build", unit="step", file=sys.stderr) as steps:
        steps.set_postfix_str("load weights")
        state = None
        if lora_dir is not None:
            state, _ = lora.lora_state(checkpoint.load_state_dict(ckpt.directory), lora_dir)
        network = modeling.load_network(ckpt, state=state)
        steps.update()
        steps.set_postfix_str("export ONNX")
        report = export.export_onnx(network, Path(tmp) / "model.onnx", args.precision,
                                    vocab_size=int(ckpt.config.get("vocab_size", 250002)),
                                    optimize=args.optimize == "on", gpu=args.device == "gpu")
        steps.update()
        steps.set_postfix_str("tokenizer")
        info = tokenizer.save_tokenizer(args.tokenizer_name_or_path, Path(tmp) / "tokenizer.json")
        steps.update()
        steps.set_postfix_str("repository")
        threshold = default_threshold(args.model_name_or_path, use_lora=use_lora)
        names = repository.shared_names(ensemble, Path(tmp) / "tokenizer.json", (info.cls_id, info.sep_id, info.pad_id),
                                        args.max_batch_size, args.pad_to_multiple_of, threshold,
                                        language=args.language if args.use_lora else "",
                                        limits=(args.max_text_chars, args.max_ensemble_request_chars,
                                                args.max_request_texts))
        settings = repository.RepositorySettings(
            names=names, max_batch_size=args.max_batch_size, instance_count=args.instance_count,
            tokenizer_instance_count=args.tokenizer_instance_count,
            postprocessor_instance_count=args.postprocessor_instance_count,
            device=args.device, onnx_backend=args.onnx_backend, model_version=args.model_version,
            default_threshold=threshold, language=args.language if args.use_lora else "",
            pad_to_multiple_of=args.pad_to_multiple_of, max_queue_delay_us=args.max_queue_delay_us,
            tensorrt=args.tensorrt, tensorrt_cache_dir=args.tensorrt_cache_dir, precision=args.precision,
            onnx_instance_count=args.onnx_instance_count,
            intra_op_threads=onnx_threads(args.intra_op_threads, args.device, args.onnx_backend,
                                          args.onnx_instance_count, cores),
            tokenizer_threads=str(args.tokenizer_threads), length_granularity=args.length_granularity,
            dynamic_batching=args.dynamic_batching == "on" or (args.dynamic_batching == "auto" and args.device == "gpu"),
            max_queue_size=args.max_queue_size, queue_timeout_ms=args.queue_timeout_ms,
            max_text_chars=args.max_text_chars, max_request_chars=args.max_request_chars,
            max_ensemble_request_chars=args.max_ensemble_request_chars, max_request_texts=args.max_request_texts,
        )
        written = repository.write_repository(
            out, settings, report.path, export.graph_io(report.path), Path(tmp) / "tokenizer.json",
            (info.cls_id, info.sep_id, info.pad_id),
        )
        steps.update()
    if lora_dir is not None:
        print(f"LoRA: merged {lora_dir} (head: {network.classifier.out_features} labels, label 0 served); "
              f"default threshold {settings.default_threshold}")
    print(f"ONNX check: max |ONNX - PyTorch| = {report.max_abs_diff:.2e} logits (allowed {report.tolerance})")
    onnx_share = (f"{settings.intra_op_threads} onnxruntime thread(s) each" if settings.intra_op_threads
                  else "sharing the serving host's cores")
    tokenizer_share = ("sharing the serving host's cores" if settings.tokenizer_threads == "auto"
                       else f"{settings.tokenizer_threads} rayon thread(s) each (0: all cores)")
    print(f"steps: ONNX {settings.onnx_instance_count} instance(s), {onnx_share}; tokenizer "
          f"{settings.tokenizer_instance_count or settings.instance_count} instance(s), {tokenizer_share} "
          f"(this machine: {cores} cores)")
    print("token ends: " + ("rebuilt from the pieces' lengths in requests of at least "
                            f"{MIN_REBUILD_CHARS:,} characters, read from encode_batch otherwise"
                            if info.rebuilds_ends else "read from encode_batch (this tokenizer's pipeline is not "
                            "one sat_pipeline/piece_ends.py rebuilds)"))
    print(f"wrote {', '.join(written)} to {out}")
    print(f"serve it:  sat-triton serve {out}")
    print(f"call it:   from sat_triton import SaT; SaT('{args.model_name_or_path}', "
          f"triton_model_name='{names.ensemble}').split('...')")
    return 0


def _check_output_dir(out: Path) -> None:
    """Fail at once, before minutes of export, on an ``--output_dir`` that cannot be written: try to make
    it and write in it, then remove what the try made."""
    if out.exists() and not out.is_dir():
        raise BuildError(f"--output_dir {out} is a file; pass a directory (it is created if missing)")
    made = []
    parent = out
    while not parent.exists():
        made.append(parent)
        parent = parent.parent
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        raise BuildError(f"--output_dir {out} cannot be written ({exc.strerror or exc}); pass a directory you can "
                         "write to") from None
    finally:
        for directory in made:  # deepest first
            try:
                directory.rmdir()
            except OSError:
                break


def serve(args: argparse.Namespace) -> int:
    from .supervisor import ServeOptions, Supervisor

    for flag in ("http_port", "grpc_port", "metrics_port", "health_port"):
        if not 0 < getattr(args, flag) < 65536:
            raise BuildError(f"--{flag} must be a TCP port (1-65535), got {getattr(args, flag)}")
    ports = [args.http_port, args.grpc_port, args.metrics_port, args.health_port]
    if len(set(ports)) != len(ports):
        raise BuildError(f"--http_port, --grpc_port, --metrics_port and --health_port must differ, got {ports}")
    for flag in ("exit_timeout", "canary_interval", "canary_timeout", "timeout"):
        if getattr(args, flag) <= 0:
            raise BuildError(f"--{flag} must be > 0, got {getattr(args, flag)}")
    if args.recycle_shm_mb < 0:
        raise BuildError(f"--recycle_shm_mb must be >= 0 (0: never), got {args.recycle_shm_mb}")
    options = ServeOptions(
        host=args.host, http_port=args.http_port, grpc_port=args.grpc_port, metrics_port=args.metrics_port,
        health_port=args.health_port, exit_timeout=args.exit_timeout, model_control_mode=args.model_control_mode,
        startup_timeout=args.timeout, canary_interval=args.canary_interval, canary_timeout=args.canary_timeout,
        log_verbose=args.log_verbose, log_file=args.log_file, recycle_shm_mb=args.recycle_shm_mb)
    return Supervisor(args.repository, options).run()


def health(args: argparse.Namespace) -> int:
    from .health import check

    ready, line = check(args.url, args.timeout)
    print(line)
    return 0 if ready else 1


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    try:
        return {"build": build, "serve": serve, "health": health}[args.command](args)
    except BuildError as exc:
        if args.debug:
            raise
        print(f"sat-triton {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # anything unforeseen: one line, the traceback with --debug
        if args.debug:
            raise
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"sat-triton {args.command}: error: {type(exc).__name__}{': ' + detail if detail else ''} "
              f"(run again with --debug for the traceback)", file=sys.stderr)
        return 1

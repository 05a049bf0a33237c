"""``sat-triton``: build a Triton model repository from a SaT checkpoint, and serve it.

    sat-triton build --model_name_or_path sat-3l-sm --output_dir model_repository
    sat-triton serve model_repository
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from pathlib import Path

from sat_triton.client.sat import default_triton_name

from .errors import BuildError


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sat-triton", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    build = sub.add_parser("build", help="export a SaT checkpoint and write a Triton model repository")
    build.add_argument("--model_name_or_path", required=True,
                       help="hub id (a bare name such as sat-3l-sm means segment-any-text/sat-3l-sm) or local directory")
    build.add_argument("--output_dir", default="model_repository", help="model repository root (other models kept)")
    build.add_argument("--triton_model_name", help="name of the ensemble (default: from the model name)")
    build.add_argument("--tokenizer_name_or_path", default="facebookAI/xlm-roberta-base",
                       help="hub id or local tokenizer directory (default: %(default)s)")
    build.add_argument("--max_batch_size", type=int,
                       help="most windows (512-token chunks) the ONNX step takes in one batch (default: 256 on gpu, "
                            "64 on cpu)")
    build.add_argument("--device", choices=["gpu", "cpu"], default="gpu", help="where the ONNX model runs")
    build.add_argument("--onnx_backend", choices=["onnxruntime", "python"], default="python",
                       help="Triton's onnxruntime backend (NGC images) or onnxruntime inside the Python backend")
    build.add_argument("--precision", choices=["fp32", "fp16"], default="fp32")
    build.add_argument("--instance_count", type=int,
                       help="instances of the tokenizer and postprocessor steps (default: 4 on gpu, 1 on cpu)")
    build.add_argument("--tokenizer_instance_count", type=int,
                       help="instances of the tokenizer step alone (default: --instance_count); on a GPU it is the "
                            "step that saturates first (docs/performance.md)")
    build.add_argument("--postprocessor_instance_count", type=int,
                       help="instances of the postprocessor step alone (default: --instance_count)")
    build.add_argument("--model_version", type=int, default=1, help="version directory to write")
    build.add_argument("--pad_to_multiple_of", type=int,
                       help="round window lengths up to this many tokens so requests batch together (default: 64)")
    build.add_argument("--max_queue_delay_us", type=int,
                       help="dynamic batcher queue delay (default: 500 on gpu, 2000 on cpu)")
    build.add_argument("--dynamic_batching", choices=["auto", "on", "off"], default="auto",
                       help="Triton's dynamic batcher on the ONNX step; auto: on for gpu, off for cpu, where it "
                            "spins a core while requests queue (docs/performance.md)")
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
    build.add_argument("--tensorrt", action="store_true",
                       help="enable the TensorRT execution accelerator of the onnxruntime backend")
    build.add_argument("--use_lora", action="store_true",
                       help="merge the LoRA adapter loras/<style_or_domain>/<language>/ of the model's hub repository "
                            "into the weights before export (default threshold becomes 0.5, as in wtpsplit)")
    build.add_argument("--style_or_domain", help="the hub LoRA adapter's style or domain, e.g. ud (with --use_lora)")
    build.add_argument("--language", help="the hub LoRA adapter's language, e.g. en (with --use_lora)")
    build.add_argument("--lora_path", type=Path,
                       help="a local LoRA adapter directory in wtpsplit's layout (adapter_config.json, head_config.json, "
                            "pytorch_adapter.bin, pytorch_model_head.bin), merged into the weights before export")

    serve = sub.add_parser("serve", help="run tritonserver on a model repository until Ctrl-C")
    serve.add_argument("repository", type=Path)
    serve.add_argument("--http_port", "--http-port", type=int, default=8000)
    serve.add_argument("--grpc_port", "--grpc-port", type=int, default=8001)
    serve.add_argument("--metrics_port", "--metrics-port", type=int, default=8002)
    serve.add_argument("--model_control_mode", choices=["none", "explicit", "poll"], default="none")
    serve.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for readiness")
    serve.add_argument("--log_verbose", type=int, default=0)
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
    for flag in ("max_batch_size", "instance_count", "tokenizer_instance_count", "postprocessor_instance_count",
                 "onnx_instance_count", "model_version", "pad_to_multiple_of"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:  # a step's own count: None = --instance_count
            raise BuildError(f"--{flag} must be >= 1, got {getattr(args, flag)}")
    if args.tensorrt and args.onnx_backend != "onnxruntime":
        raise BuildError("--tensorrt needs --onnx_backend onnxruntime (an NGC tritonserver image)")
    if args.tensorrt and args.optimize == "on":
        raise BuildError("--tensorrt cannot run onnxruntime's contrib ops: leave out --optimize on")
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
                                        language=args.language if args.use_lora else "")
        settings = repository.RepositorySettings(
            names=names, max_batch_size=args.max_batch_size, instance_count=args.instance_count,
            tokenizer_instance_count=args.tokenizer_instance_count,
            postprocessor_instance_count=args.postprocessor_instance_count,
            device=args.device, onnx_backend=args.onnx_backend, model_version=args.model_version,
            default_threshold=threshold, language=args.language if args.use_lora else "",
            pad_to_multiple_of=args.pad_to_multiple_of, max_queue_delay_us=args.max_queue_delay_us,
            tensorrt=args.tensorrt, precision=args.precision, onnx_instance_count=args.onnx_instance_count,
            intra_op_threads=onnx_threads(args.intra_op_threads, args.device, args.onnx_backend,
                                          args.onnx_instance_count, cores),
            tokenizer_threads=str(args.tokenizer_threads), length_granularity=args.length_granularity,
            dynamic_batching=args.dynamic_batching == "on" or (args.dynamic_batching == "auto" and args.device == "gpu"),
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
    print(f"wrote {', '.join(written)} to {out}")
    print(f"serve it:  sat-triton serve {out}")
    print(f"call it:   client.SaT('{args.model_name_or_path}', triton_model_name='{names.ensemble}').split('...')")
    return 0


def repository_models(root: Path) -> list[str]:
    return sorted(p.parent.name for p in root.glob("*/config.pbtxt"))


def serve(args: argparse.Namespace) -> int:
    from .server import TritonServer, TritonServerError

    root = args.repository
    models = repository_models(root)
    if not models:
        raise BuildError(f"{root} holds no model (no */config.pbtxt); build one with: sat-triton build ...")
    server = TritonServer(root, http_port=args.http_port, grpc_port=args.grpc_port, metrics_port=args.metrics_port,
                          log_verbose=args.log_verbose, model_control_mode=args.model_control_mode,
                          extra_args=["--exit-timeout-secs=5"])
    try:
        server.start()
        server.wait_ready(models, timeout=args.timeout)
    except TritonServerError as exc:
        server.stop()
        raise BuildError(str(exc)) from None
    print(f"tritonserver ready: {', '.join(models)}")
    print(f"  gRPC     {server.grpc_url}")
    print(f"  HTTP     {server.http_url}")
    print(f"  metrics  http://{server.metrics_url}/metrics")
    print(f"  log      {server.log_file}")
    print("Ctrl-C stops it.", flush=True)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        while server.running:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    code = server.stop()
    print(f"tritonserver stopped (exit code {code})")
    return 0


def _raise_interrupt(*_):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    try:
        return build(args) if args.command == "build" else serve(args)
    except BuildError as exc:
        print(f"sat-triton {args.command}: error: {exc}", file=sys.stderr)
        return 2

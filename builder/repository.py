"""Rendering the Triton model repository from ``model_repository_templates/``.

Templates hold ``${placeholders}`` filled strictly (``string.Template.substitute``: a missing value is
an error, never a leftover ``${...}``); every rendered ``config.pbtxt`` is parsed into Triton's
``ModelConfig`` protobuf so a bad render fails here, not in the server. Tensor names come from
:mod:`sat_triton.pipeline.wire` and the exported ONNX graph.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import string
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import sat_triton.pipeline as sat_pipeline
from sat_triton.pipeline import wire
from sat_triton.pipeline.limits import (DEFAULT_MAX_REQUEST_CHARS, DEFAULT_MAX_REQUEST_TEXTS, DEFAULT_MAX_TEXT_CHARS,
                                        default_ensemble_request_chars)

from .errors import BuildError

# Package data (model_repository_templates/ in the repository), found the same way in a checkout and a wheel.
TEMPLATES = resources.files("sat_triton.model_repository_templates")
PIPELINE_PACKAGE = Path(sat_pipeline.__file__).resolve().parent

ONNX_TO_TRITON = {"INT64": "TYPE_INT64", "INT32": "TYPE_INT32", "FLOAT": "TYPE_FP32", "FLOAT16": "TYPE_FP16"}


@dataclass(frozen=True)
class ModelNames:
    """Per-ensemble models are named after it; the tokenizer and postprocessor are shared by every
    ensemble of a repository that would get an identical one (same tokenizer file and settings, same
    default threshold), so they are named after their content."""

    ensemble: str
    tokenizer: str = ""
    postprocessor: str = ""

    @property
    def onnx(self) -> str:
        return f"{self.ensemble}_onnx"

    @property
    def long(self) -> str:
        return f"{self.ensemble}_long"

    def all(self) -> list[str]:
        return [self.ensemble, self.tokenizer, self.onnx, self.postprocessor, self.long]


def shared_names(ensemble: str, tokenizer_file: Path, token_ids: tuple[int, int, int], max_batch_size: int,
                 pad_to_multiple_of: int, default_threshold: float, language: str = "",
                 limits: tuple = ()) -> ModelNames:
    """``sat_tokenizer_<digest>`` of what the tokenizer model holds; ``sat_postprocessor_t<threshold>[_<language>]``.
    ``limits``: the tokenizer's request limits (ensembles with different limits need their own tokenizer)."""
    digest = hashlib.sha256(tokenizer_file.read_bytes())
    digest.update(repr((token_ids, max_batch_size, pad_to_multiple_of)).encode())
    if limits:
        digest.update(repr(tuple(limits)).encode())
    threshold = repr(float(default_threshold)).replace(".", "_").replace("-", "m")
    return ModelNames(ensemble, tokenizer=f"sat_tokenizer_{digest.hexdigest()[:10]}",
                      postprocessor=f"sat_postprocessor_t{threshold}" + (f"_{language}" if language else ""))


@dataclass(frozen=True)
class RepositorySettings:
    names: ModelNames
    max_batch_size: int = 64
    instance_count: int = 1  # tokenizer and postprocessor instances, unless set apart below
    tokenizer_instance_count: int | None = None
    postprocessor_instance_count: int | None = None
    device: str = "cpu"  # gpu | cpu
    onnx_backend: str = "python"  # onnxruntime | python
    model_version: int = 1
    default_threshold: float = 0.025
    pad_to_multiple_of: int = 64
    max_queue_delay_us: int = 2000
    intra_op_threads: int = 0  # 0: a share of the serving host's cores per CPU instance (one instance: all)
    onnx_instance_count: int = 1
    tokenizer_threads: str = "auto"  # rayon threads per tokenizer instance: auto, 0 (the library's: all cores), N
    dynamic_batching: bool = True
    max_queue_size: int = 8  # requests waiting for each step; 0: no bound (Triton's default)
    queue_timeout_ms: int = 30000  # longest wait in each step's queue; 0: no timeout
    length_granularity: int = 8
    tensorrt: bool = False
    tensorrt_cache_dir: str | None = None  # trt_engine_cache_path in the server's filesystem; None: no cache
    precision: str = "fp32"
    language: str = ""  # the model's language (a hub LoRA's): default for the length priors
    # Request limits (sat_pipeline/limits.py): per text, per request to <name>_long, per ensemble request.
    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS
    max_request_chars: int = DEFAULT_MAX_REQUEST_CHARS
    max_ensemble_request_chars: int | None = None  # None: sized from max_batch_size
    max_request_texts: int = DEFAULT_MAX_REQUEST_TEXTS


def wire_names() -> dict[str, str]:
    return {name: value for name, value in vars(wire).items() if name.isupper() and isinstance(value, str)}


def render(template, values: dict[str, object]) -> str:
    """Fill ``template`` strictly and check the result is a valid Triton model config."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    try:
        text = string.Template(template.read_text()).substitute({k: str(v) for k, v in values.items()})
    except KeyError as exc:
        raise BuildError(f"template {template} needs a value for {exc}") from None
    try:
        text_format.Parse(text, model_config_pb2.ModelConfig())
    except text_format.ParseError as exc:
        raise BuildError(f"rendering {template} gave an invalid config.pbtxt: {exc}") from None
    return text


MIN_BOUNDED_INSTANCES = 2  # instances a step with a bounded queue needs on tritonserver 2.51 (sat-triton build checks it)


def bounded(settings: RepositorySettings) -> bool:
    """Whether the steps get a queue policy at all (``max_queue_size`` or ``queue_timeout_ms`` set)."""
    return settings.max_queue_size > 0 or settings.queue_timeout_ms > 0


def long_instance_count(settings: RepositorySettings) -> int:
    """``<name>_long`` runs one request per instance; with a bounded queue it needs two (the stall below)."""
    return MIN_BOUNDED_INSTANCES if bounded(settings) else 1


def queue_policy(settings: RepositorySettings) -> str:
    """Triton's bound on a step's queue: a request that finds ``max_queue_size`` requests waiting is
    refused at once (gRPC UNAVAILABLE, HTTP 503 "Exceeds maximum queue size") instead of queueing
    without bound; with ``queue_timeout_ms``, one that waited that long is refused too. A client may ask
    for a shorter timeout (the request's ``timeout``), never a longer one."""
    return ("default_queue_policy { "
            f"max_queue_size: {settings.max_queue_size} timeout_action: REJECT "
            f"default_timeout_microseconds: {settings.queue_timeout_ms * 1000} allow_timeout_override: true }}")


def dynamic_batching(settings: RepositorySettings, batching: bool) -> str:
    """The ONNX step's ``dynamic_batching`` block, on one line; it is always there, for the bounded queue.
    ``batching``: wait up to ``max_queue_delay_us`` for a batch to fill; otherwise wait for nothing (delay
    0: a request starts as soon as an instance is free; requests that queued behind a busy instance may
    still run together)."""
    delay = settings.max_queue_delay_us if batching else 0
    return f"dynamic_batching {{ max_queue_delay_microseconds: {delay} {queue_policy(settings)} }}"


def step_queue(settings: RepositorySettings) -> str:
    """The Python steps' (tokenizer, postprocessor, ``<name>_long``; ``max_batch_size: 0``) ``dynamic_batching``
    block: no batching, only the bounded queue, so that whichever step saturates first refuses the overload.
    Empty without a bound. Each such step runs at least :data:`MIN_BOUNDED_INSTANCES` instances: with one
    instance and a full queue, tritonserver 2.51's batcher misses the wake-up of the freed instance (a refused
    request never signals it) and sleeps its 500 ms default wait per request (docs/reliability.md)."""
    if not bounded(settings):
        return ""
    return f"dynamic_batching {{ max_queue_delay_microseconds: 0 {queue_policy(settings)} }}"



def _optimization(settings: RepositorySettings) -> str:
    if not settings.tensorrt:
        return ""
    precision = "FP16" if settings.precision == "fp16" else "FP32"
    parameters = {"precision_mode": precision, "max_workspace_size_bytes": "1073741824"}
    if settings.tensorrt_cache_dir:
        # The onnxruntime backend's names for onnxruntime's TensorRT provider options of the same name.
        parameters.update(trt_engine_cache_enable="1", trt_engine_cache_path=settings.tensorrt_cache_dir)
    rendered = " ".join(f"parameters {{ key: {json.dumps(key)} value: {json.dumps(value, ensure_ascii=False)} }}"
                        for key, value in parameters.items())
    return ("optimization { execution_accelerators { gpu_execution_accelerator: [ { name: \"tensorrt\" "
            f"{rendered} }} ] }} }}")


def _copy_pipeline(version_dir: Path) -> None:
    shutil.copytree(PIPELINE_PACKAGE, version_dir / "sat_pipeline", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def _write_python_model(root: Path, template: str, name: str, version: int, values: dict) -> Path:
    model_dir = root / name
    version_dir = model_dir / str(version)
    version_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "config.pbtxt").write_text(render(TEMPLATES / template / "config.pbtxt", {**values, "name": name}))
    (version_dir / "model.py").write_bytes((TEMPLATES / template / "1" / "model.py").read_bytes())
    _copy_pipeline(version_dir)
    return version_dir


def write_repository(
    root: Path,
    settings: RepositorySettings,
    onnx_file: Path,
    onnx_io: dict[str, tuple[str, list]],
    tokenizer_file: Path,
    token_ids: tuple[int, int, int],
) -> list[str]:
    """Write (or overwrite) this model's five entries under ``root``; other models there are kept."""
    names = settings.names
    for tensor in (wire.INPUT_IDS, wire.ATTENTION_MASK, wire.LOGITS):
        if tensor not in onnx_io:
            raise BuildError(f"the exported ONNX graph has no tensor named {tensor!r} (it has {sorted(onnx_io)})")
    types = {}
    for tensor, key in ((wire.INPUT_IDS, "INPUT_IDS_TYPE"), (wire.ATTENTION_MASK, "ATTENTION_MASK_TYPE"),
                        (wire.LOGITS, "LOGITS_TYPE")):
        onnx_type = onnx_io[tensor][0]
        if onnx_type not in ONNX_TO_TRITON:
            raise BuildError(f"ONNX tensor {tensor!r} has element type {onnx_type}, which the pipeline cannot feed")
        types[key] = ONNX_TO_TRITON[onnx_type]
    cls_id, sep_id, pad_id = token_ids
    values = {
        **wire_names(),
        **types,
        "tokenizer_model": names.tokenizer,
        "onnx_model": names.onnx,
        "postprocessor_model": names.postprocessor,
        "long_model": names.long,
        "max_batch_size": settings.max_batch_size,
        "tokenizer_instance_count": settings.tokenizer_instance_count or settings.instance_count,
        "postprocessor_instance_count": settings.postprocessor_instance_count or settings.instance_count,
        "instance_kind": "KIND_GPU" if settings.device == "gpu" else "KIND_CPU",
        "max_queue_delay_us": settings.max_queue_delay_us,
        "intra_op_threads": settings.intra_op_threads,
        "onnx_instance_count": settings.onnx_instance_count,
        "tokenizer_threads": settings.tokenizer_threads,
        "dynamic_batching": dynamic_batching(settings, settings.dynamic_batching),  # the ONNX step
        "step_queue": step_queue(settings),  # the Python steps
        "long_instance_count": long_instance_count(settings),
        "ort_threads": (f'parameters {{ key: "intra_op_thread_count" value: {{ string_value: "{settings.intra_op_threads}" }} }}'
                        if settings.intra_op_threads > 0 else ""),
        "length_granularity": settings.length_granularity,
        "optimization": _optimization(settings),
        "cls_id": cls_id,
        "sep_id": sep_id,
        "pad_id": pad_id,
        "pad_to_multiple_of": settings.pad_to_multiple_of,
        "default_threshold": repr(float(settings.default_threshold)),
        "language": settings.language,
        "max_text_chars": settings.max_text_chars,
        "max_request_chars": settings.max_request_chars,
        "max_ensemble_request_chars": (settings.max_ensemble_request_chars
                                       or default_ensemble_request_chars(settings.max_batch_size)),
        "max_request_texts": settings.max_request_texts,
    }
    root.mkdir(parents=True, exist_ok=True)
    version = settings.model_version

    ensemble_dir = root / names.ensemble
    (ensemble_dir / str(version)).mkdir(parents=True, exist_ok=True)
    (ensemble_dir / "config.pbtxt").write_text(
        render(TEMPLATES / "ensemble" / "config.pbtxt", {**values, "name": names.ensemble})
    )

    tokenizer_version = _write_python_model(root, "tokenizer", names.tokenizer, version, values)
    shutil.copy2(tokenizer_file, tokenizer_version / "tokenizer.json")
    _write_python_model(root, "postprocessor", names.postprocessor, version, values)
    _write_python_model(root, "long", names.long, version, values)

    if settings.onnx_backend == "python":
        onnx_version = _write_python_model(root, "onnx_python", names.onnx, version, values)
    else:
        onnx_version = root / names.onnx / str(version)
        onnx_version.mkdir(parents=True, exist_ok=True)
        (root / names.onnx / "config.pbtxt").write_text(
            render(TEMPLATES / "onnx_onnxruntime" / "config.pbtxt", {**values, "name": names.onnx})
        )
    shutil.copy2(onnx_file, onnx_version / "model.onnx")
    return names.all()

"""PyTorch -> ONNX with dynamic batch and sequence axes, checked against PyTorch before it is kept.

Target: the onnxruntime inside Triton 24.10 (server 2.51) is 1.19.2, which reads ONNX IR version
10 and opsets up to 21. We export opset 17 and write IR version 8 (the IR of opset 17), which every
onnxruntime since 1.13 loads, so the same file serves on older NGC images too.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sat_triton.pipeline import wire

from .errors import BuildError

OPSET = 17
IR_VERSION = 8
# Largest |ONNX - PyTorch| allowed on real (unpadded) positions, in logits.
TOLERANCE = {"fp32": 1e-3, "fp16": 5e-2}


@dataclass(frozen=True)
class ExportReport:
    path: Path
    max_abs_diff: float
    tolerance: float


def _sample_inputs(vocab_size: int, batch: int, seq: int, seed: int):
    import torch

    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, max(vocab_size, 5), (batch, seq), generator=generator)
    ids[:, 0] = 0
    mask = torch.ones(batch, seq, dtype=torch.int64)
    if batch > 1:  # a padded row, as the tokenizer step sends
        cut = max(seq // 2, 2)
        ids[-1, cut:] = 1
        ids[-1, cut - 1] = 2
        mask[-1, cut:] = 0
    return ids, mask


def export_onnx(network, path: Path, precision: str = "fp32", vocab_size: int = 250002, optimize: bool = False,
                gpu: bool = False) -> ExportReport:
    """Export ``network`` (eval mode) to ``path`` and fail unless ONNX Runtime agrees with PyTorch.

    ``optimize``: rewrite the graph with onnxruntime's transformer optimizer (fused LayerNorm, GELU and
    bias ops, fewer casts; measured +20-28% tokens/s on an H100 in fp16) before the check; the file then
    holds onnxruntime contrib ops (``com.microsoft``), which only onnxruntime runs. ``gpu``: optimize for
    the CUDA provider (and check on it if the CPU cannot run the result)."""
    import onnx
    import torch

    if precision == "fp16":
        network = network.half()
    network.eval()
    ids, mask = _sample_inputs(vocab_size, batch=2, seq=16, seed=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            network,
            (ids, mask),
            str(path),
            input_names=[wire.INPUT_IDS, wire.ATTENTION_MASK],
            output_names=[wire.LOGITS],
            dynamic_axes={
                wire.INPUT_IDS: {0: "batch", 1: "sequence"},
                wire.ATTENTION_MASK: {0: "batch", 1: "sequence"},
                wire.LOGITS: {0: "batch", 1: "sequence"},
            },
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    network.eval()  # the exporter restores the mode of the module it was given; keep it in eval
    if optimize:
        optimize_graph(path, gpu)
    model = onnx.load(str(path))
    model.ir_version = IR_VERSION
    if not optimize:  # the checker knows no contrib-op schemas
        onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return verify(network, path, precision, vocab_size, gpu)


def optimize_graph(path: Path, gpu: bool) -> None:
    """onnxruntime's transformer optimizer (BERT fusions; heads and hidden size read from the graph), in place."""
    import logging

    from onnxruntime.transformers.optimizer import optimize_model

    quiet = logging.getLogger("onnxruntime")  # its fusion report and "no gpu" notes
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        model = optimize_model(str(path), model_type="bert", num_heads=0, hidden_size=0, opt_level=1, use_gpu=gpu)
        model.save_model_to_file(str(path))
    finally:
        quiet.setLevel(level)


def _check_session(path: Path, gpu: bool):
    """An onnxruntime session to check ``path`` with: the CPU, or for ``gpu`` builds whose graph the CPU
    cannot run (a fused fp16 op without a CPU kernel) the CUDA provider with TF32 off."""
    import onnxruntime as ort

    try:
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception:
        if not (gpu and "CUDAExecutionProvider" in ort.get_available_providers()):
            raise
    if hasattr(ort, "preload_dlls"):
        ort.preload_dlls(directory="")
    return ort.InferenceSession(str(path), providers=[("CUDAExecutionProvider", {"use_tf32": 0}),
                                                      "CPUExecutionProvider"])


def verify(network, path: Path, precision: str, vocab_size: int, gpu: bool = False) -> ExportReport:
    """Run ONNX Runtime and PyTorch on inputs of a shape other than the traced one."""
    import torch

    session = _check_session(path, gpu)
    ids, mask = _sample_inputs(vocab_size, batch=3, seq=37, seed=1)
    with torch.no_grad():
        expected = network(ids, mask).float().numpy()
    got = session.run([wire.LOGITS], {wire.INPUT_IDS: ids.numpy(), wire.ATTENTION_MASK: mask.numpy()})[0]
    real = mask.numpy() == 1
    diff = float(np.abs(got[real] - expected[real]).max())
    tolerance = TOLERANCE[precision]
    if not np.isfinite(diff) or diff > tolerance:
        raise BuildError(
            f"the exported ONNX model differs from PyTorch by {diff:.3g} logits (allowed {tolerance}); "
            f"not keeping {path}. Try --precision fp32"
        )
    return ExportReport(path=path, max_abs_diff=diff, tolerance=tolerance)


def graph_io(path: Path) -> dict[str, tuple[str, list]]:
    """Names, element types and shapes of the ONNX graph's inputs and outputs (for config.pbtxt)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    result = {}
    for value in list(model.graph.input) + list(model.graph.output):
        tensor = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
        result[value.name] = (onnx.TensorProto.DataType.Name(tensor.elem_type), dims)
    return result

"""What the server is compared with, in this process: wtpsplit's SaT and the ONNX model alone.

* :func:`run_inprocess`: wtpsplit 2.2.2's ``SaT`` with PyTorch (and fp16 on a GPU) and with ONNX
  Runtime, the whole list in one ``split`` call and one text per call, and a short text's latency;
  its PyTorch sentences are the parity reference;
* :class:`OnnxAlone`: the served ``model.onnx`` in an onnxruntime session on random batches: the
  ceiling rows (:func:`run_model_alone`) and the probe each phase is normalised by;
* :func:`make_model_variants` / :func:`run_model_variants`: the network after onnxruntime's fusions,
  int8 (CPU) or fp16 (GPU), against the served file (``--model_variants``).
"""

from __future__ import annotations

import gc
import math
import time
from pathlib import Path

import numpy as np

from .accounting import Phase
from .artifacts import Shape, stamp_ok, write_stamp
from .common import GENERATOR_VERSION, SHORT_TEXT, log
from .load import short_latency
from .report import Row


def run_inprocess(args, checkpoint_dir: Path, tokenizer_dir: Path, ort_dir: Path, corpus: list[str],
                  tokens: int, alone) -> tuple[list[Row], list]:
    """wtpsplit's SaT in this process: PyTorch (and fp16 on GPU) and ONNX Runtime; returns the rows and
    the PyTorch fp32 sentences (the parity reference)."""
    chars = sum(map(len, corpus))
    rows: list[Row] = []
    reference = None
    gpu = args.device == "gpu"
    variants = [("PyTorch", dict(), False)]
    if gpu:
        variants.append(("PyTorch fp16", dict(), True))
    providers = (["CUDAExecutionProvider", "CPUExecutionProvider"] if gpu else ["CPUExecutionProvider"])
    variants.append(("ONNX Runtime", dict(ort_providers=providers), False))
    for label, kwargs, half in variants:
        try:
            rows_of_mode, out = _run_inprocess_mode(args, label, kwargs, half, checkpoint_dir, tokenizer_dir, ort_dir,
                                                    corpus, chars, tokens, alone)
        except Exception as exc:  # one broken mode (a missing CUDA library, say) must not lose the others
            log(f"wtpsplit {label} failed: {exc!r}")
            continue
        rows += rows_of_mode
        if reference is None and label == "PyTorch":
            reference = out
        gc.collect()
        if gpu:
            import torch

            torch.cuda.empty_cache()
    return rows, reference


def _run_inprocess_mode(args, label, kwargs, half, checkpoint_dir, tokenizer_dir, ort_dir, corpus, chars, tokens,
                        alone):
    """One wtpsplit mode: split(list), split(text) per text, and a short text's latency."""
    from wtpsplit import SaT

    gpu = args.device == "gpu"
    rows: list[Row] = []
    directory = ort_dir if kwargs else checkpoint_dir
    log(f"wtpsplit SaT in-process, {label}")
    sat = SaT(str(directory), tokenizer_name_or_path=str(tokenizer_dir), **kwargs)
    session = getattr(sat.model, "ort_session", None)
    if gpu and session is not None and "CUDAExecutionProvider" not in session.get_providers():
        raise RuntimeError("wtpsplit's onnxruntime session fell back to the CPU")
    if not kwargs and gpu:
        if half:
            sat.half()
        sat.to("cuda")
    list(sat.split(corpus[:8]))  # warm-up
    phase = Phase(alone)
    t0 = time.perf_counter()
    out = list(sat.split(corpus))
    wall = time.perf_counter() - t0
    phase.finish()
    rows.append(Row(f"wtpsplit {label}: split(list), batch_size=32", "in-process", chars, len(corpus), wall,
                    tokens=tokens, note=", ".join(filter(None, ["one call", phase.note()])), probe=phase.probe))
    log(f"{rows[-1].mode}: {rows[-1].chars_s:,.0f} chars/s")
    lat = []
    phase = Phase(alone)
    t0 = time.perf_counter()
    for text in corpus:
        t1 = time.perf_counter()
        sat.split(text)
        lat.append((time.perf_counter() - t1) * 1000)
    wall = time.perf_counter() - t0
    phase.finish()
    rows.append(Row(f"wtpsplit {label}: split(text), one text per call", "in-process", chars, len(corpus), wall,
                    lat, tokens=tokens, note=phase.note(), probe=phase.probe))
    log(f"{rows[-1].mode}: {rows[-1].chars_s:,.0f} chars/s")
    lat = short_latency(lambda: sat.split(SHORT_TEXT), args.latency_calls)
    rows.append(Row(f"wtpsplit {label}: 1 short text", "latency", len(SHORT_TEXT) * len(lat), len(lat),
                    sum(lat) / 1000, lat, note=f"{len(SHORT_TEXT)} chars, sequential"))
    return rows, out


def ort_session(path: Path, gpu: bool):
    """An onnxruntime session on the CUDA provider (gpu) or the CPU; fails rather than fall back to the CPU."""
    import onnxruntime as ort

    if not gpu:
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    # main() has preloaded pip's CUDA/cuDNN libraries (preload_dlls) for every session of a gpu run
    session = ort.InferenceSession(str(path), providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    if "CUDAExecutionProvider" not in session.get_providers():
        raise SystemExit(f"onnxruntime fell back to the CPU for {path}: the CUDA provider did not start")
    return session


class OnnxAlone:
    """The served ``model.onnx`` in an onnxruntime session of this process, on random token batches."""

    def __init__(self, args, path: Path, probe_shape: tuple[int, int]):
        self.session = ort_session(path, args.device == "gpu")
        self.mask_type = {i.name: i.type for i in self.session.get_inputs()}["attention_mask"]
        self.probe_shape = probe_shape
        self.probe_seconds = args.probe_seconds
        self.last: tuple[float, float] | None = None

    def _feed(self, batch: int, seq: int) -> dict:
        rng = np.random.default_rng(seq)
        ids = rng.integers(4, 8000, (batch, seq), dtype=np.int64)
        ids[:, 0], ids[:, -1] = 0, 2
        mask = np.ones((batch, seq), dtype=np.float16 if "float16" in self.mask_type else np.int64)
        return {"input_ids": ids, "attention_mask": mask}

    def measure(self, batch: int, seq: int, seconds: float, min_runs: int = 2) -> tuple[int, float]:
        """(token positions computed, seconds), after one warm-up run."""
        feed = self._feed(batch, seq)
        self.session.run(None, feed)
        runs, t0 = 0, time.perf_counter()
        while runs < min_runs or time.perf_counter() - t0 < seconds:
            self.session.run(None, feed)
            runs += 1
        return batch * seq * runs, time.perf_counter() - t0

    def probe(self, reuse: bool = False) -> float | None:
        """tokens/s at the corpus' own shape: how fast the machine is right now (``reuse``: the last
        probe's value if it was taken less than 5 s ago, e.g. right after the previous phase)."""
        if self.probe_seconds <= 0:
            return None
        if reuse and self.last is not None and time.perf_counter() - self.last[0] < 5:
            return self.last[1]
        positions, wall = self.measure(*self.probe_shape, self.probe_seconds)
        self.last = (time.perf_counter(), positions / wall)
        return positions / wall


def run_model_alone(args, alone: OnnxAlone, shapes: list[tuple[int, int]], chars_per_token: float,
                    tokens_per_text: float) -> list[Row]:
    rows = []
    for batch, seq in shapes:
        phase = Phase(alone)
        positions, wall = alone.measure(batch, seq, args.model_seconds)
        phase.finish()
        row = Row(f"ONNX model alone: {batch}x{seq} tokens", "ceiling", int(positions * chars_per_token),
                  int(positions / tokens_per_text), wall, tokens=positions, probe=phase.probe,
                  note=", ".join(filter(None, [f"{positions / wall:,.0f} tokens/s x {chars_per_token:.2f} chars/token",
                                               phase.note()])))
        rows.append(row)
        log(f"{row.mode}: {positions / wall:,.0f} tokens/s")
    return rows


def make_model_variants(args, served: Path, shape: Shape, out: Path) -> dict[str, Path]:
    """Other forms of the served ONNX file, for the model-alone comparison (--model_variants): onnxruntime's
    transformer optimizer (fused GELU / LayerNorm; attention does not fuse with this additive mask) and,
    on CPU, dynamic int8 quantisation of the MatMuls, or on GPU the fused model in float16."""
    spec = {"served": [served.stat().st_size, served.stat().st_mtime_ns], "device": args.device,
            "version": GENERATOR_VERSION}
    files = {"fused": out / "fused.onnx"}
    files["int8" if args.device == "cpu" else "fused-fp16"] = out / ("int8.onnx" if args.device == "cpu"
                                                                   else "fused-fp16.onnx")
    if stamp_ok(out, spec) and all(f.is_file() for f in files.values()):
        return files
    import logging

    from onnxruntime.transformers.optimizer import optimize_model

    logging.getLogger("onnxruntime").setLevel(logging.ERROR)
    out.mkdir(parents=True, exist_ok=True)
    log("writing model variants for the model-alone comparison (ORT transformer optimizer, "
        + ("int8)" if args.device == "cpu" else "fp16)"))
    fused = optimize_model(str(served), model_type="bert", num_heads=shape.heads, hidden_size=shape.hidden,
                           opt_level=1, use_gpu=args.device == "gpu")
    fused.save_model_to_file(str(files["fused"]))
    if args.device == "cpu":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # its "consider pre-processing" advice
        try:
            quantize_dynamic(str(served), str(files["int8"]), weight_type=QuantType.QInt8,
                             op_types_to_quantize=["MatMul"])
        finally:
            root.setLevel(level)
    else:
        fused.convert_float_to_float16(keep_io_types=True)
        fused.save_model_to_file(str(files["fused-fp16"]))
    write_stamp(out, spec)
    return files


def run_model_variants(args, alone: OnnxAlone, files: dict[str, Path], seq: int, chars_per_token: float,
                       tokens_per_text: float, threshold: float = 0.25) -> list[Row]:
    """Each variant's tokens/s at 32 x ``seq``, and how far its logits are from the served model's."""
    rows = []
    reference_feed = alone._feed(32, seq)
    expected = alone.session.run(None, reference_feed)[0]
    cut = math.log(threshold / (1 - threshold))
    for name, path in files.items():
        variant = OnnxAlone(args, path, alone.probe_shape)
        got = variant.session.run(None, {k: v.astype(np.float16) if k == "attention_mask" and "float16" in
                                         variant.mask_type else v for k, v in reference_feed.items()})[0]
        diff = float(np.abs(got.astype(np.float32) - expected).max())
        agree = float(((got > cut) == (expected > cut)).mean())
        phase = Phase(alone)
        positions, wall = variant.measure(32, seq, args.model_seconds)
        phase.finish()
        rows.append(Row(f"ONNX model alone, {name}: 32x{seq} tokens", "model variants",
                        int(positions * chars_per_token), int(positions / tokens_per_text), wall, tokens=positions,
                        probe=phase.probe, note=", ".join(filter(None, [
                            f"max |logit diff| {diff:.2g}, boundary decisions {agree * 100:.2f}% equal",
                            phase.note()]))))
        log(f"{rows[-1].mode}: {positions / wall:,.0f} tokens/s ({rows[-1].note})")
        variant = None
        gc.collect()
    return rows

"""Model repositories to serve: the base build and the sweep's variants, built as a user builds them.

A :class:`Variant` is a set of ``sat-triton build`` flags. :func:`build_repository` runs
``python -m sat_triton.builder build`` with them (cached by flags and by the source they are built
from); variants that differ only in config.pbtxt lines (instances, threads, queue delay, dynamic
batching, length groups) are hard-linked copies of a built repository with those lines rewritten as
the builder renders them, which saves a two-minute export per variant.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from sat_triton.builder.defaults import cpu_onnx_instances, onnx_threads
from sat_triton.builder.repository import ModelNames, RepositorySettings
from sat_triton.builder.repository import dynamic_batching as builder_dynamic_batching
from sat_triton.builder.repository import long_instance_count, step_queue
from sat_triton.pipeline.threads import available_cores

from .artifacts import stamp_ok, write_stamp
from .common import ROOT, TRITON_NAME, log


UNBOUNDED = {"max_queue_size": 0, "queue_timeout_ms": 0}  # for variants of one instance per step


@dataclass(frozen=True)
class Variant:
    name: str
    instance_count: int = 2  # tokenizer and postprocessor instances
    tokenizer_instance_count: int = 0  # 0: instance_count
    postprocessor_instance_count: int = 0  # 0: instance_count
    onnx_instance_count: int = 2
    intra_op_threads: int = 0  # 0: auto, a share of the host's cores per CPU instance (one instance: all)
    tokenizer_threads: str = "auto"  # rayon threads per tokenizer instance: auto, 0 (the library's: all cores), N
    pad_to_multiple_of: int = 64
    max_queue_delay_us: int = 2000
    max_queue_size: int = 8  # every step's bounded queue (0, with queue_timeout_ms 0: unbounded)
    queue_timeout_ms: int = 30000
    max_batch_size: int = 64
    dynamic_batching: bool = True
    length_granularity: int = 8
    precision: str = "fp32"
    optimize: bool = False

    @property
    def step_instances(self) -> dict[str, int]:
        """Instances of the tokenizer and of the postprocessor."""
        return {"tokenizer": self.tokenizer_instance_count or self.instance_count,
                "postprocessor": self.postprocessor_instance_count or self.instance_count}

    def describe(self) -> str:
        steps = self.step_instances
        instances = (f"instances={self.instance_count}" if len(set(steps.values())) == 1
                     else f"tokenizer_instances={steps['tokenizer']} postprocessor_instances={steps['postprocessor']}")
        return (f"{self.precision} {instances} onnx_instances={self.onnx_instance_count} "
                f"intra_op={self.intra_op_threads or 'auto'} tokenizer_threads={self.tokenizer_threads} "
                f"pad={self.pad_to_multiple_of} "
                f"max_batch={self.max_batch_size} "
                + (f"delay={self.max_queue_delay_us}us" if self.dynamic_batching else "no batching delay")
                + f" queue={self.max_queue_size or 'unbounded'}"
                + f" granularity={self.length_granularity}" + (" fused" if self.optimize else ""))

    def flags(self) -> list[str]:
        """Its ``sat-triton build`` flags (the settings that change what is exported or named)."""
        return ["--max_batch_size", str(self.max_batch_size), "--pad_to_multiple_of", str(self.pad_to_multiple_of),
                "--precision", self.precision, "--optimize", "on" if self.optimize else "off"]

    def config_flags(self) -> list[str]:
        """The ``sat-triton build`` flags that only change config.pbtxt lines (patched into a copy)."""
        steps = self.step_instances
        return ["--tokenizer_instance_count", str(steps["tokenizer"]),
                "--postprocessor_instance_count", str(steps["postprocessor"]),
                "--onnx_instance_count", str(self.onnx_instance_count),
                "--max_queue_delay_us", str(self.max_queue_delay_us), "--intra_op_threads", str(self.intra_op_threads),
                "--max_queue_size", str(self.max_queue_size), "--queue_timeout_ms", str(self.queue_timeout_ms),
                "--tokenizer_threads", str(self.tokenizer_threads),
                "--dynamic_batching", "on" if self.dynamic_batching else "off",
                "--length_granularity", str(self.length_granularity)]


def _sub_once(pattern: str, replacement: str, text: str, where: Path) -> str:
    text, n = re.subn(pattern, replacement, text, flags=re.M)
    if n != 1:
        raise SystemExit(f"{where}: expected one match of {pattern!r}, found {n}")
    return text


def patch_configs(repo: Path, variant: Variant, device: str) -> None:
    """Set ``variant``'s config-only settings in the rendered config.pbtxt files of ``repo`` (a copy of a
    repository built with the same build flags): what ``sat-triton build`` renders for those flags."""
    def rewrite(config: Path, edit) -> None:
        text = edit(config.read_text())
        config.unlink()  # the copy hard-links files: never write through to the original
        config.write_text(text)

    settings = RepositorySettings(names=ModelNames(TRITON_NAME), max_queue_delay_us=variant.max_queue_delay_us,
                                  max_queue_size=variant.max_queue_size, queue_timeout_ms=variant.queue_timeout_ms)

    def queue(text: str) -> str:  # a Python step's bounded queue, as the builder renders it
        text = re.sub(r"^dynamic_batching \{.*\}\n?", "", text, flags=re.M)
        return text + (step_queue(settings) + "\n" if step_queue(settings) else "")

    steps = {f"sat_{kind}_*": count for kind, count in variant.step_instances.items()}
    steps[f"{TRITON_NAME}_long"] = long_instance_count(settings)
    for pattern, count in steps.items():
        for step in repo.glob(pattern):
            rewrite(step / "config.pbtxt", lambda t, c=step / "config.pbtxt", n=count: queue(_sub_once(
                r"count: \d+ kind: KIND_CPU", f"count: {n} kind: KIND_CPU", t, c)))
    for step in repo.glob("sat_tokenizer_*"):
        rewrite(step / "config.pbtxt", lambda t, c=step / "config.pbtxt": _sub_once(
            r'(key: "tokenizer_threads" value: \{ string_value: ")\w+(")', rf"\g<1>{variant.tokenizer_threads}\g<2>",
            t, c))
    config = repo / f"{TRITON_NAME}_onnx" / "config.pbtxt"

    def edit_onnx(text: str) -> str:
        text = _sub_once(r"count: \d+ kind: (KIND_\w+)", rf"count: {variant.onnx_instance_count} kind: \g<1>", text, config)
        text = _sub_once(r"^dynamic_batching \{.*\}\n?", "", text, config) if "dynamic_batching {" in text else text
        text += builder_dynamic_batching(settings, variant.dynamic_batching) + "\n"  # as the builder renders it
        if 'backend: "onnxruntime"' in text:
            text = re.sub(r'^parameters \{ key: "intra_op_thread_count".*\n?', "", text, flags=re.M)
            threads = onnx_threads(variant.intra_op_threads, device, "onnxruntime", variant.onnx_instance_count,
                                   available_cores())
            if threads:
                text += f'parameters {{ key: "intra_op_thread_count" value: {{ string_value: "{threads}" }} }}\n'
        else:
            text = _sub_once(r'(key: "intra_op_threads" value: \{ string_value: ")\d+(")',
                             rf"\g<1>{variant.intra_op_threads}\g<2>", text, config)
            text = _sub_once(r'(key: "length_granularity" value: \{ string_value: ")\d+(")',
                             rf"\g<1>{variant.length_granularity}\g<2>", text, config)
        return text

    rewrite(config, edit_onnx)


def build_repository(variant: Variant, checkpoint_dir: Path, tokenizer_dir: Path, out: Path, device: str,
                     onnx_backend: str = "python", same_flags_as: Path | None = None) -> Path:
    """``python -m sat_triton.builder build`` as a user runs it, with the variant's flags (cached by them); with
    ``same_flags_as`` (a repository built with the same build flags) that one is hard-linked instead and
    the variant's config-only settings (instances, queue delay, threads, dynamic batching, length
    granularity) are patched into its config.pbtxt files, as the builder renders them."""
    common = ["--model_name_or_path", str(checkpoint_dir), "--tokenizer_name_or_path", str(tokenizer_dir),
              "--triton_model_name", TRITON_NAME, "--device", device, "--onnx_backend", onnx_backend,
              *variant.flags()]
    cmd = [sys.executable, "-m", "sat_triton.builder", "build", "--output_dir", str(out), *common, *variant.config_flags()]
    spec = {"flags": common, "variant": asdict(variant),
            "checkpoint": json.loads((checkpoint_dir / ".bench-stamp.json").read_text()),
            "source": source_digest()}
    if stamp_ok(out, spec):
        return out
    if out.exists():
        shutil.rmtree(out)
    if same_flags_as is not None:
        log(f"linking {same_flags_as.name} to {out.name} (same build flags) and patching its configs")
        shutil.copytree(same_flags_as, out, copy_function=os.link)
        (out / ".bench-stamp.json").unlink(missing_ok=True)
        patch_configs(out, variant, device)
    else:
        log("building the model repository: " + " ".join(["python"] + cmd[1:]))
        started = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        if done.returncode != 0:
            raise SystemExit(f"sat-triton build failed:\n{done.stdout}\n{done.stderr}")
        log(f"built in {time.perf_counter() - started:.0f}s: {done.stdout.strip().splitlines()[0]}")
    write_stamp(out, spec)
    return out


def sweep_variants(base: Variant, device: str) -> list[Variant]:
    """Settings worth comparing with ``base`` on this device."""
    replace = dataclasses.replace
    if device == "gpu":
        other = "fp32" if base.precision == "fp16" else "fp16"
        return [
            replace(base, name="onnx3", onnx_instance_count=3),
            replace(base, name="unfused" if base.optimize else "fused", optimize=not base.optimize),
            replace(base, name="gran32", length_granularity=32),
            replace(base, name=other, precision=other),
            replace(base, name="onnx1", onnx_instance_count=1, **UNBOUNDED),
            replace(base, name="inst2", instance_count=2, tokenizer_instance_count=0, postprocessor_instance_count=0),
            replace(base, name="inst8", instance_count=8, tokenizer_instance_count=0, postprocessor_instance_count=0),
            # the tokenizer saturated first on an H100 once the ONNX step had 3 instances; the postprocessor
            # costs a third as much per character since it cuts a whole request in one pass
            replace(base, name="tok8", tokenizer_instance_count=8, postprocessor_instance_count=4),
            replace(base, name="tok6-post2", tokenizer_instance_count=6, postprocessor_instance_count=2),
            replace(base, name="delay100us", max_queue_delay_us=100),
            replace(base, name="delay2ms", max_queue_delay_us=2000),
            replace(base, name="nobatch", dynamic_batching=False),
        ]
    auto = cpu_onnx_instances(available_cores())
    variants = [
        # the default before auto (one pool); one instance needs unbounded queues (docs/reliability.md)
        replace(base, name="onnx1", onnx_instance_count=1, intra_op_threads=0, **UNBOUNDED),
        replace(base, name=f"onnx{auto}", onnx_instance_count=auto, intra_op_threads=0),  # the auto default
        replace(base, name=f"onnx{auto + 1}", onnx_instance_count=auto + 1, intra_op_threads=0),
        # one tokenizer and postprocessor instance (the default before the Python steps' queues were bounded)
        replace(base, name="inst1", instance_count=1, tokenizer_instance_count=0, postprocessor_instance_count=0,
                **UNBOUNDED),
        replace(base, name="tokthreads0", tokenizer_threads="0"),  # the tokenizers library's own pool (all cores)
        replace(base, name="batching", dynamic_batching=True),
        replace(base, name="pad16", pad_to_multiple_of=16),
        replace(base, name="gran32", length_granularity=32),  # the CPU default before 55b0aef
    ]
    same = base.flags() + base.config_flags()
    return [v for v in variants if v.flags() + v.config_flags() != same]  # never the base again under a new name


def source_digest() -> str:
    """What the repository is built from (builder, templates, pipeline): a rebuild when it changes."""
    digest = hashlib.sha256()
    for folder in ("builder", "model_repository_templates", "sat_pipeline", "sat_triton"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(ROOT)).encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def repository_models(root: Path) -> list[str]:
    return sorted(p.parent.name for p in root.glob("*/config.pbtxt"))


def onnx_file(root: Path) -> Path:
    found = sorted(root.glob(f"{TRITON_NAME}_onnx/*/model.onnx"))
    if not found:
        raise SystemExit(f"no {TRITON_NAME}_onnx/<version>/model.onnx in {root}")
    return found[-1]

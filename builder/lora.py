"""SaT LoRA adapters merged into the checkpoint's weights before export, as wtpsplit 2.2.2 merges them.

An adapter is a directory in the layout ``wtpsplit/train/train_lora.py`` writes (the ``adapters``
library's ``save_adapter(with_head=True)`` on the static-head model), and the one the hub holds
under ``loras/<style_or_domain>/<language>/`` of a SaT model's repository:

* ``adapter_config.json``    ``{"config": {"r": ..., "alpha": ..., ...}, ...}``
* ``pytorch_adapter.bin``    ``<module>.loras.<adapter name>.lora_A`` / ``.lora_B``, where ``<module>``
                             is a parameter path of ``SubwordXLMForTokenClassification`` without
                             ``.weight`` (``roberta.encoder.layer.0.attention.self.query``)
* ``head_config.json``       ``{"num_labels": ..., ...}``
* ``pytorch_model_head.bin`` the static head's tensors: ``classifier.weight``, ``classifier.bias``

The merge re-states ``wtpsplit._manual_lora_merge`` (the path wtpsplit takes without the
``adapters`` library) and the ``num_labels`` handling of ``SaT.__init__``: every target weight
becomes ``W + (alpha / r) * (B @ A)`` (computed in the same order and dtype, so bit for bit), head
tensors whose names are model parameters replace the checkpoint's, and an adapter whose
head_config.json names another ``num_labels`` than the checkpoint's classifier brings a classifier
of that size. Neither wtpsplit nor ``adapters`` is imported; tensors load with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import numbers
from pathlib import Path

from .errors import BuildError

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "pytorch_adapter.bin"
HEAD_CONFIG = "head_config.json"
HEAD_WEIGHTS = "pytorch_model_head.bin"
# wtpsplit requires all four, for a local lora_path and for a hub adapter alike.
ADAPTER_FILES = (ADAPTER_CONFIG, HEAD_CONFIG, ADAPTER_WEIGHTS, HEAD_WEIGHTS)

LORA_INFIX = ".loras."


def check_adapter_dir(lora_dir: Path) -> Path:
    """``lora_dir`` if it is a directory holding the four adapter files, else a BuildError naming what is missing."""
    lora_dir = Path(lora_dir).expanduser()
    if not lora_dir.is_dir():
        raise BuildError(
            f"--lora_path {str(lora_dir)!r} is not a directory; pass the adapter directory holding "
            f"{', '.join(ADAPTER_FILES)} (train_lora.py writes it to <output_dir>/<dataset_name>/<language>/)"
        )
    missing = [name for name in ADAPTER_FILES if not (lora_dir / name).is_file()]
    if missing:
        raise BuildError(
            f"LoRA adapter {lora_dir} lacks {', '.join(missing)}; pass a --lora_path directory holding "
            f"{', '.join(ADAPTER_FILES)}"
        )
    return lora_dir


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BuildError(f"cannot read {path} ({type(exc).__name__}: {exc}); pass an adapter saved by "
                         "wtpsplit's train_lora.py") from None
    if not isinstance(data, dict):
        raise BuildError(f"{path} holds a JSON {type(data).__name__}, not an object; pass an adapter saved by "
                         "wtpsplit's train_lora.py")
    return data


def _load_tensors(path: Path) -> dict:
    import torch

    try:
        tensors = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # not a torch file, or pickled objects other than tensors
        message = str(exc).splitlines()[0] if str(exc) else ""
        raise BuildError(f"cannot load {path} as tensors with torch.load(weights_only=True) "
                         f"({type(exc).__name__}: {message}); pass an adapter saved by wtpsplit's "
                         "train_lora.py") from None
    if not isinstance(tensors, dict) or not all(isinstance(v, torch.Tensor) for v in tensors.values()):
        raise BuildError(f"{path} is not a dict of tensors; pass an adapter saved by wtpsplit's train_lora.py")
    return tensors


def lora_scaling(config_path: Path) -> float:
    """``alpha / r`` from adapter_config.json's ``config`` section, as wtpsplit computes it."""
    adapter_cfg = _read_json(config_path)
    section = adapter_cfg.get("config")
    if not isinstance(section, dict) or "r" not in section or "alpha" not in section:
        raise BuildError(f"{config_path} has no 'config' object with 'r' and 'alpha'; pass a LoRA adapter "
                         "saved by wtpsplit's train_lora.py")
    r, alpha = section["r"], section["alpha"]
    for name, value in (("r", r), ("alpha", alpha)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise BuildError(f"{config_path}: config.{name} is {value!r}, not a number")
    if r == 0:
        raise BuildError(f"{config_path}: config.r is 0; a LoRA adapter needs a non-zero rank")
    # wtpsplit's manual merge adds B @ A; the adapters library merges that way only in "add" mode.
    mode = section.get("composition_mode", "add")
    if mode != "add":
        raise BuildError(f"{config_path}: config.composition_mode is {mode!r}; only LoRA adapters with "
                         "composition_mode 'add' merge into the weights")
    return alpha / r


def adapter_num_labels(head_config_path: Path) -> int | None:
    """head_config.json's ``num_labels`` (None when it names none, as wtpsplit then keeps the checkpoint's)."""
    value = _read_json(head_config_path).get("num_labels")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BuildError(f"{head_config_path}: num_labels is {value!r}, not a positive integer")
    return value


def _lora_pairs(adapter_weights: dict, weights_path: Path) -> dict:
    """``{module path: {"A": tensor, "B": tensor}}`` from ``<module>.loras.<name>.lora_A/B`` keys."""
    pairs: dict = {}
    for key, tensor in adapter_weights.items():
        if LORA_INFIX not in key:
            continue
        base_key = key.rsplit(LORA_INFIX, 1)[0]
        if key.endswith(".lora_A"):
            pairs.setdefault(base_key, {})["A"] = tensor
        elif key.endswith(".lora_B"):
            pairs.setdefault(base_key, {})["B"] = tensor
    for base_key, pair in pairs.items():
        if "A" not in pair or "B" not in pair:
            raise BuildError(f"{weights_path}: {base_key} has only lora_{'A' if 'A' in pair else 'B'}; "
                             "each LoRA module needs lora_A and lora_B")
    if not pairs:
        raise BuildError(f"{weights_path} holds no '<module>.loras.<name>.lora_A/lora_B' tensors; "
                         "pass a LoRA adapter saved by wtpsplit's train_lora.py")
    return pairs


def lora_state(checkpoint_state: dict, lora_dir: Path) -> tuple[dict, int | None]:
    """The checkpoint's state dict with the adapter merged in, and head_config.json's ``num_labels``.

    ``checkpoint_state`` uses the checkpoint's key names (``roberta.encoder.layer.0.attention.self.query.weight``,
    ``classifier.weight``) and is not modified: the result is a new dict that shares every tensor the
    adapter leaves alone. Its ``classifier.weight`` has the adapter's number of labels.
    """
    lora_dir = check_adapter_dir(lora_dir)
    scaling = lora_scaling(lora_dir / ADAPTER_CONFIG)
    num_labels = adapter_num_labels(lora_dir / HEAD_CONFIG)
    weights_path = lora_dir / ADAPTER_WEIGHTS
    pairs = _lora_pairs(_load_tensors(weights_path), weights_path)
    head_path = lora_dir / HEAD_WEIGHTS
    head = _load_tensors(head_path)

    state = dict(checkpoint_state)
    for base_key, pair in pairs.items():
        param_key = base_key + ".weight"
        if param_key not in state:
            raise BuildError(f"{weights_path} targets {param_key}, which the checkpoint does not have; "
                             "pass an adapter trained for this SaT model (adapters are model-specific)")
        weight = state[param_key]
        delta = pair["B"] @ pair["A"] if pair["B"].dim() == 2 and pair["A"].dim() == 2 else None
        if delta is None or tuple(delta.shape) != tuple(weight.shape):
            raise BuildError(
                f"{weights_path}: lora_B @ lora_A for {base_key} has shape "
                f"{tuple(pair['B'].shape)} @ {tuple(pair['A'].shape)}, the checkpoint's {param_key} "
                f"{tuple(weight.shape)}; pass an adapter trained for this SaT model"
            )
        # wtpsplit: param.add_(scaling * delta.to(dtype=param.dtype)), the same ops in the same order
        state[param_key] = weight + scaling * delta.to(dtype=weight.dtype)

    # The classifier wtpsplit builds: the checkpoint's, or (ignore_mismatched_sizes) a fresh one
    # with head_config.json's num_labels rows that only the head file can fill.
    base_labels = int(checkpoint_state["classifier.weight"].shape[0]) if "classifier.weight" in checkpoint_state \
        else None
    labels = num_labels if num_labels is not None else base_labels
    resized = labels is not None and base_labels is not None and labels != base_labels
    copied = set()
    for key, tensor in head.items():
        if key not in checkpoint_state:  # wtpsplit copies only tensors named like a model parameter
            continue
        target = checkpoint_state[key]
        expected = tuple(target.shape)
        if key.startswith("classifier.") and labels is not None:
            expected = (labels, *expected[1:])
        if tuple(tensor.shape) != expected:
            raise BuildError(f"{head_path}: {key} has shape {tuple(tensor.shape)}, expected {expected} "
                             f"(num_labels {labels} from {HEAD_CONFIG}); pass a matching adapter head")
        state[key] = tensor.to(dtype=target.dtype).clone()
        copied.add(key)
    if resized:
        unfilled = [k for k in ("classifier.weight", "classifier.bias") if k in checkpoint_state and k not in copied]
        if unfilled:
            raise BuildError(
                f"{HEAD_CONFIG} sets num_labels {labels} (the checkpoint has {base_labels}) but {head_path} "
                f"has no {', '.join(unfilled)}, so the resized classifier would be random; pass the adapter's head"
            )
    return state, num_labels


def download_adapter(model_repo_id: str, style_or_domain: str, language: str) -> Path:
    """The adapter files of ``loras/<style_or_domain>/<language>/`` in ``model_repo_id``, from the hub cache.

    Downloads as wtpsplit does (``hf_hub_download`` with ``subfolder``), into huggingface_hub's cache.
    """
    if not style_or_domain or not language:
        raise BuildError("a hub LoRA adapter needs both --style_or_domain and --language "
                         "(e.g. --style_or_domain ud --language en), or pass --lora_path DIR")
    for name, value in (("style_or_domain", style_or_domain), ("language", language)):
        if "/" in value or "\\" in value or value in (".", ".."):
            raise BuildError(f"--{name} {value!r} is not a single path component; pass e.g. "
                             "--style_or_domain ud --language en")
    subfolder = f"loras/{style_or_domain}/{language}"
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError
    except ImportError:
        raise BuildError("downloading a LoRA adapter needs huggingface_hub>=0.23 (pip install -U huggingface_hub), "
                         "or pass a local adapter with --lora_path DIR") from None
    paths = []
    for filename in ADAPTER_FILES:
        try:
            paths.append(Path(hf_hub_download(repo_id=model_repo_id, subfolder=subfolder, filename=filename)))
        except Exception as exc:  # missing repository/file, network, auth
            kind = type(exc).__name__
            if isinstance(exc, EntryNotFoundError) and not isinstance(exc, LocalEntryNotFoundError):
                raise BuildError(
                    f"{model_repo_id} has no {subfolder}/{filename} on the Hugging Face Hub; check "
                    "--style_or_domain and --language (e.g. --style_or_domain ud --language en) or pass "
                    "--lora_path DIR"
                ) from None
            message = str(exc).splitlines()[0] if str(exc) else ""
            raise BuildError(
                f"could not download {subfolder}/{filename} of {model_repo_id} from the Hugging Face Hub "
                f"({kind}: {message}); check the names and your connection, or pass --lora_path DIR"
            ) from None
    directories = {path.parent for path in paths}
    if len(directories) != 1:  # the files came from different revisions (the repository changed meanwhile)
        raise BuildError(f"the files of {subfolder} in {model_repo_id} came from different revisions; "
                         "run the build again")
    return check_adapter_dir(directories.pop())

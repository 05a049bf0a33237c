"""Finding and loading a SaT checkpoint: a hub id, a bare SaT name, or a local directory.

Weights load safely: safetensors, or ``torch.load(weights_only=True)``; nothing is unpickled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .errors import BuildError

HUB_PREFIX = "segment-any-text"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class Checkpoint:
    name: str  # as the user gave it (wtpsplit's default threshold rule reads it)
    directory: Path
    config: dict

    @property
    def lookahead(self):
        return self.config.get("lookahead")

    @property
    def lookahead_split_layers(self):
        return self.config.get("lookahead_split_layers")


def hub_id(name: str) -> str:
    """``sat-3l-sm`` -> ``segment-any-text/sat-3l-sm``; ids with an owner stay as they are."""
    return name if "/" in name else f"{HUB_PREFIX}/{name}"


def resolve(model_name_or_path: str) -> Checkpoint:
    """A local checkpoint directory, or the files of a hub model downloaded to the local cache."""
    path = Path(model_name_or_path).expanduser()
    if path.is_dir():
        directory = path
    elif path.exists() or model_name_or_path.startswith((".", "/", "~")):
        raise BuildError(
            f"--model_name_or_path {model_name_or_path!r} is not a checkpoint directory; pass a directory with "
            "config.json and model.safetensors, or a hub id such as sat-3l-sm"
        )
    else:
        directory = _download(hub_id(model_name_or_path))
    config_file = directory / "config.json"
    if not config_file.is_file():
        raise BuildError(f"{directory} has no config.json; pass a SaT checkpoint directory or hub id")
    config = json.loads(config_file.read_text())
    if config.get("model_type") != "xlm-token":
        raise BuildError(
            f"{directory} holds a model of type {config.get('model_type')!r}; sat-triton serves SaT checkpoints "
            "(model_type 'xlm-token', SubwordXLMForTokenClassification)"
        )
    return Checkpoint(name=model_name_or_path, directory=directory, config=config)


def _download(repo_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, allow_patterns=["config.json", *WEIGHT_FILES]))
    except Exception as exc:  # network, auth or a missing repository
        raise BuildError(
            f"could not download {repo_id} from the Hugging Face Hub ({type(exc).__name__}: {exc}); "
            "check the name and your connection, or pass a local checkpoint directory"
        ) from exc


def load_state_dict(directory: Path) -> dict:
    """The checkpoint's tensors, without unpickling arbitrary objects."""
    safetensors_file = directory / "model.safetensors"
    if safetensors_file.is_file():
        from safetensors.torch import load_file

        return load_file(str(safetensors_file))
    bin_file = directory / "pytorch_model.bin"
    if bin_file.is_file():
        import torch

        return torch.load(str(bin_file), map_location="cpu", weights_only=True)
    raise BuildError(f"{directory} has no model.safetensors or pytorch_model.bin")

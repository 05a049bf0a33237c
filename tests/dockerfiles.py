"""Reading the images' Dockerfiles as Docker reads them (for tests/test_deploy.py and tests/test_images.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILES = {"cpu": ROOT / "Dockerfile.cpu", "triton": ROOT / "Dockerfile.triton"}
# What an image's entrypoint may put before `sat-triton serve`: an init, or NGC's entrypoint script.
WRAPPERS = (["tini", "--"], ["/opt/nvidia/nvidia_entrypoint.sh"])
# The images' ports: Triton's, and the health port of `sat-triton serve` (CONTRACTS.md).
IMAGE_PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002, "health": 8003}


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs as Docker reads them: comments dropped, continuations joined."""
    instructions, buf = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and buf):
            continue  # Docker drops comment lines, even inside a continuation
        if not line:
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        keyword, _, args = buf.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
        buf = ""
    assert not buf, f"Dockerfile ends inside a line continuation: {buf!r}"
    return instructions


def instructions(path: Path, keyword: str) -> list[str]:
    return [args for kw, args in dockerfile_instructions(path.read_text()) if kw == keyword]


def final_stage(path: Path) -> list[tuple[str, str]]:
    """The instructions of the last stage (what the image is made of)."""
    found = dockerfile_instructions(path.read_text())
    last_from = max(i for i, (kw, _) in enumerate(found) if kw == "FROM")
    return found[last_from:]


def exec_form(args: str) -> list[str]:
    words = json.loads(args)  # exec form: a JSON array, no shell
    assert isinstance(words, list) and all(isinstance(w, str) for w in words), args
    return words


def entrypoint(path: Path) -> list[str]:
    """ENTRYPOINT plus CMD, as `docker run <image>` runs them (exec form only)."""
    words = []
    for keyword in ("ENTRYPOINT", "CMD"):
        found = [args for kw, args in final_stage(path) if kw == keyword]
        if found:
            words += exec_form(found[-1])
    return words


def serve_command(path: Path) -> list[str]:
    """The entrypoint without its wrapper (tini, NGC's entrypoint script): `sat-triton serve ...`."""
    words = entrypoint(path)
    for wrapper in WRAPPERS:
        if words[: len(wrapper)] == wrapper:
            return words[len(wrapper):]
    return words


def healthcheck(path: Path) -> tuple[str, list[str]]:
    """(the HEALTHCHECK options, its command in exec form)."""
    (check,) = instructions(path, "HEALTHCHECK")
    options, _, command = check.partition("CMD")
    return options, exec_form(command.strip())


def build_arg_default(path: Path, name: str) -> str:
    for arg in instructions(path, "ARG"):
        key, _, value = arg.partition("=")
        if key == name:
            return value
    raise AssertionError(f"{path.name} has no ARG {name}")


def pip_pins(text: str) -> dict[str, str]:
    """{distribution: version} of the "name==version" (or "name[extras]==version") words in a RUN."""
    return dict(re.findall(r'"([A-Za-z0-9_.-]+)(?:\[[^\]"]*\])?==([0-9][^"\s]*)"', text))

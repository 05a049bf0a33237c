"""Build the wheel and the sdist once, and make fresh virtual environments from the wheel, as a user
would: no checkout on sys.path, no editable install.

Installs are fast on a second run: the wheels of the dependencies are kept in a wheelhouse (pytest's
cache directory when it has one), and environments install from it without an index; only when it
lacks something does pip fetch it (``pip wheel``), with the machine's own index settings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import venv
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ONNXRUNTIMES = {"onnxruntime", "onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-openvino", "ort-nightly",
                "ort-nightly-gpu"}


@dataclass
class Dist:
    wheel: Path
    sdist: Path


def run(cmd: list, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kwargs)
    assert done.returncode == 0, f"{' '.join(map(str, cmd))} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return done


def build_dist(out: Path) -> Dist:
    """``python -m build``: the sdist, then the wheel built from that sdist (so a file missing from the
    sdist breaks the wheel too)."""
    run([sys.executable, "-m", "build", "--no-isolation", "--outdir", out, ROOT], timeout=300)
    (wheel,) = out.glob("sat_triton-*.whl")
    (sdist,) = out.glob("sat_triton-*.tar.gz")
    return Dist(wheel, sdist)


def wheel_names(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


def wheel_metadata(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return archive.read(name).decode()


def clean_env() -> dict:
    """The environment for a fresh venv's commands: nothing that points back at the checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PYTHONNOUSERSITE"] = "1"
    return env


def _pip(target_python: Path) -> list:
    # this environment's pip installs into the target (pip --python): the target needs no pip of its own
    return [sys.executable, "-m", "pip", "--python", target_python, "--disable-pip-version-check"]


def make_venv(path: Path, requirements: list[str], wheelhouse: Path, timeout: float = 600) -> Path:
    """A fresh venv at ``path`` with ``requirements`` installed from ``wheelhouse`` (filled on demand)."""
    started = time.monotonic()
    venv.EnvBuilder(with_pip=False, clear=True).create(path)
    python = path / "bin" / "python"
    install = [*_pip(python), "install", "--no-compile", "--no-index", "--find-links", wheelhouse, *requirements]
    first = subprocess.run([str(c) for c in install], capture_output=True, text=True, timeout=timeout)
    if first.returncode != 0:  # the wheelhouse lacks something: fetch it, with the machine's index settings
        run([sys.executable, "-m", "pip", "wheel", "--disable-pip-version-check", "--wheel-dir", wheelhouse,
             "--find-links", wheelhouse, *requirements], timeout=timeout)
        for stale in wheelhouse.glob("sat_triton-*"):  # only ever install the wheel built in this session
            stale.unlink()
        run(install, timeout=timeout)
    print(f"venv {path.parent.name}: {' '.join(requirements)} in {time.monotonic() - started:.0f} s "
          f"({'from the wheelhouse' if first.returncode == 0 else 'fetched into the wheelhouse'})")
    return python


def installed(python: Path) -> dict[str, str]:
    """Distribution name (normalised) -> version, of everything in the environment of ``python``."""
    code = ("import importlib.metadata as m, json; "
            "print(json.dumps({d.metadata['Name'].lower().replace('_', '-'): d.version for d in m.distributions()}))")
    return json.loads(run([python, "-c", code], env=clean_env()).stdout)


def resolve(requirement: str, timeout: float = 600) -> subprocess.Popen:
    """Start pip's resolution of ``requirement`` alone (``--dry-run --ignore-installed --report``); read it
    with :func:`resolved`. Runs in the background: it mostly waits on the index."""
    return subprocess.Popen([sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--quiet",
                             "--dry-run", "--ignore-installed", "--report", "-", requirement],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def resolved(process: subprocess.Popen, timeout: float = 600) -> dict[str, str]:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, f"pip could not resolve: {err[-3000:]}"
    report = json.loads(out)
    return {item["metadata"]["name"].lower().replace("_", "-"): item["metadata"]["version"]
            for item in report["install"]}

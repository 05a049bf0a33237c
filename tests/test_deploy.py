"""Deployment files, checked without Docker or a cluster: Dockerfile.triton parsed, docs/deployment.md
cross-checked, and the image's server command run on the local tritonserver (same Triton 2.51) to prove
its flags work. The Kubernetes manifests: tests/test_kubernetes.py; Prometheus: tests/test_prometheus.py."""

from __future__ import annotations

import json
import os
import re
import shlex
import textwrap
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import dockerfiles

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile.triton"
DOCS = ROOT / "docs" / "deployment.md"

TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:24.10-py3"
TRITON_PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}


# -- helpers ---------------------------------------------------------------------------------------
def instructions(keyword: str) -> list[str]:
    return dockerfiles.instructions(DOCKERFILE, keyword)


def image_cmd() -> list[str]:
    """What the image runs: `sat-triton serve /models ...` (without NGC's entrypoint script)."""
    return dockerfiles.serve_command(DOCKERFILE)


def build_arg_default(name: str) -> str:
    return dockerfiles.build_arg_default(DOCKERFILE, name)


def pip_install_run() -> str:
    (run,) = [r for r in instructions("RUN") if "pip install" in r]
    return run


def fenced_blocks(lang: str) -> list[str]:
    """Bodies of the docs' ```lang blocks, indented ones (inside list items) dedented."""
    found = re.findall(rf"^([ \t]*)```{lang}\n(.*?)^\1```", DOCS.read_text(), flags=re.S | re.M)
    return [textwrap.dedent(body) for _, body in found]


def shell_commands(program: str) -> list[list[str]]:
    """Every command of the docs' bash blocks that starts with ``program`` (continuations joined)."""
    found = []
    for block in fenced_blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words[: len(program.split())] == program.split():
                found.append(words)
    return found


# -- Dockerfile.triton (what both images share: tests/test_images.py) -------------------------------
def test_dockerfile_is_based_on_pinned_tritonserver_24_10():
    assert instructions("FROM") == [TRITON_IMAGE]


def test_dockerfile_pins_what_the_python_backend_models_import():
    run = pip_install_run()
    pins = dockerfiles.pip_pins(run)
    assert set(pins) == {"numpy", "tokenizers", "tritonclient", "onnxruntime-gpu"}, pins
    assert int(pins["numpy"].split(".")[0]) < 2, "the 24.10 python backend stub garbles BYTES under numpy 2"
    assert pins["tritonclient"].startswith("2.51."), "the client of the image's server, 2.51"
    # onnxruntime-gpu must be a CUDA 12 / cuDNN 9 build (1.19+ on PyPI) like the image's.
    assert tuple(int(x) for x in pins["onnxruntime-gpu"].split(".")[:2]) >= (1, 19)
    assert not re.search(r"\bonnxruntime(?!-gpu)\b[=<>]", run), "CPU onnxruntime would shadow onnxruntime-gpu"


def test_dockerfile_installs_onnxruntime_gpu_only_for_python_ort_repositories():
    """Native-ORT repositories (the GPU default) need no onnxruntime-gpu: only PYTHON_ORT=1 installs it."""
    assert build_arg_default("PYTHON_ORT") == "0"
    run = pip_install_run()
    guarded = re.search(r'if \[ "\$\{PYTHON_ORT\}" = 1 \]; then(.*?)fi', run)
    assert guarded and "onnxruntime-gpu==" in guarded[1]
    assert "onnxruntime-gpu" not in run.replace(guarded[0], ""), "onnxruntime-gpu installed unconditionally"


def test_dockerfile_installs_sat_triton_from_the_wheel_without_the_serve_extra():
    """The wheel built from the checkout (scripts/dockerhost.py); not its [serve] extra, whose pip
    tritonserver (2.51, no onnxruntime backend) `sat-triton serve` would prefer over the image's own."""
    (copy,) = [c for c in instructions("COPY") if "wheelhouse/" in c]
    assert copy.split()[0] == "wheelhouse/sat_triton-*.whl"
    run = pip_install_run()
    assert re.search(r"pip install\s+\S*sat_triton-\*\.whl\s", run)
    assert "[serve]" not in run and "nvidia-pytriton" not in run


def test_dockerfile_installs_every_third_party_module_the_server_code_imports():
    """The python models run sat_pipeline and the templates' model.py inside the image: whatever they
    import beyond the standard library must be installed there (else the container fails to load)."""
    import ast
    import sys

    if not hasattr(sys, "stdlib_module_names"):
        pytest.skip("needs Python 3.10+ (sys.stdlib_module_names)")
    sources = [*(ROOT / "sat_pipeline").rglob("*.py"), *(ROOT / "model_repository_templates").glob("*/1/*.py")]
    imported = set()
    for source in sources:
        for node in ast.walk(ast.parse(source.read_text(), filename=str(source))):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    provided = {"sat_pipeline", "triton_python_backend_utils"}  # copied into each model / given by Triton
    third_party = imported - set(sys.stdlib_module_names) - provided
    installed = set(dockerfiles.pip_pins(pip_install_run()))
    distributions = {"onnxruntime": "onnxruntime-gpu"}
    missing = {m for m in third_party if distributions.get(m, m) not in installed}
    assert not missing, f"imported by server-side code but not installed by Dockerfile.triton: {sorted(missing)}"


def test_dockerfile_pins_satisfy_pyproject():
    tomllib = pytest.importorskip("tomllib")
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    wanted = {}
    for spec in project["dependencies"] + extras.get("serve", []) + extras.get("gpu", []):
        req = Requirement(spec)
        wanted.setdefault(req.name, []).append(req.specifier)
    for name, version in dockerfiles.pip_pins(pip_install_run()).items():
        for specifier in wanted.get(name, []):
            assert version in specifier, f"Dockerfile.triton pins {name}=={version}, pyproject wants {specifier}"


def test_dockerignore_keeps_what_the_images_copy_and_drops_the_rest(tmp_path):
    docker_build = pytest.importorskip("docker.utils.build", reason="docker (docker-py, via testcontainers)")
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.strip().startswith("#")]
    kept = [
        "Dockerfile.triton",
        "Dockerfile.cpu",
        build_arg_default("MODEL_REPOSITORY") + "/README.md",
        "model_repository/sat/config.pbtxt",
        "model_repository/sat_onnx/1/model.onnx",
        "model_repository/sat_tokenizer/1/sat_pipeline/pipeline.py",
        "wheelhouse/sat_triton-0.1.0-py3-none-any.whl",
        "wheelhouse/cpu/requirements.txt",
        "wheelhouse/cpu/numpy-1.26.4-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    ]
    dropped = [
        "model_repository/sat_tokenizer/1/sat_pipeline/__pycache__/pipeline.cpython-310.pyc",
        ".git/HEAD", ".venv/bin/python", ".tools/checkov/bin/checkov", "tests/test_deploy.py",
        "sat_triton.egg-info/PKG-INFO", "build/lib/sat_triton/__init__.py",
    ]
    for name in kept + dropped:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    context = docker_build.exclude_paths(str(tmp_path), patterns, dockerfile="Dockerfile.triton")
    for name in kept:
        assert name in context, f"{name} excluded from the build context"
    for name in dropped:
        assert name not in context, f"{name} sent in the build context"


# -- docs/deployment.md ----------------------------------------------------------------------------
def test_docs_build_commands_parse_with_the_cli():
    from sat_triton.builder.cli import _build_parser

    commands = shell_commands("sat-triton build")
    assert len(commands) >= 3
    parser = _build_parser()
    seen = set()
    for words in commands:
        args = parser.parse_args(words[1:])  # SystemExit on an unknown or invalid option
        seen.add((args.device, args.onnx_backend, args.precision, args.tensorrt))
    assert ("gpu", "onnxruntime", "fp16", False) in seen
    assert ("gpu", "onnxruntime", "fp16", True) in seen
    assert any(device == "cpu" for device, *_ in seen)


def published_ports(run: list[str]) -> tuple[set[str], set[int]]:
    """(host addresses, container ports) of a `docker run`'s -p options; ranges such as 8000-8003 expanded."""
    addresses, ports = set(), set()
    for i, word in enumerate(run[:-1]):
        if word == "-p":
            parts = run[i + 1].split(":")
            addresses.add(parts[0] if len(parts) == 3 else "")
            first, _, last = parts[-1].partition("-")
            ports.update(range(int(first), int(last or first) + 1))
    return addresses, ports


def test_docs_docker_commands_use_the_images_as_built():
    builds = shell_commands("docker build")
    built = {b[b.index("-t") + 1].split(":")[0]: b[b.index("-f") + 1] for b in builds}
    assert set(built.values()) == {"Dockerfile.cpu", DOCKERFILE.name}, "both images built"
    assert all((ROOT / f).is_file() for f in built.values())
    runs = shell_commands("docker run")
    for image, dockerfile in built.items():
        mine = [r for r in runs if image in r]
        assert mine, f"no docker run of {image}"
        assert all(("--gpus" in r) == (dockerfile == DOCKERFILE.name) for r in mine), "GPUs for the NGC image only"
    for run in runs:
        assert any(image in run for image in built), run
        assert any(w.endswith(":/models:ro") for w in run), "repository mounted read-only at /models"
        addresses, ports = published_ports(run)
        assert ports == set(dockerfiles.IMAGE_PORTS.values()) and addresses == {"127.0.0.1"}, run


def test_docs_curl_request_is_a_valid_v2_request():
    from sat_triton.pipeline import wire

    (curl,) = [c for c in shell_commands("curl") if "-d" in c]
    url = next(w for w in curl if "/v2/models/" in w)
    assert re.search(r"localhost:8000/v2/models/\w+/infer$", url)
    body = json.loads(curl[curl.index("-d") + 1])
    (text,) = body["inputs"]
    assert (text["name"], text["datatype"], text["shape"]) == (wire.TEXT, "BYTES", [len(text["data"])])
    assert 0 < body["parameters"]["threshold"] < 1


def test_docs_links_point_to_files():
    for target in re.findall(r"\]\((\.\./[^)#]+)\)", DOCS.read_text()):
        assert (DOCS.parent / target).resolve().exists(), f"broken link {target}"


# -- the image's command on a real tritonserver (same 2.51 as the image) ---------------------------
def _http(url: str, method: str = "GET", headers: dict | None = None) -> int:
    request = urllib.request.Request(url, method=method, headers=headers or {},
                                     data=b"{}" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.integration
def test_image_command_runs_on_tritonserver_2_51(repository):
    """Dockerfile.triton's command, `sat-triton serve /models --host 0.0.0.0` (NGC's entrypoint script
    left out), run as written on the local tritonserver 2.51 (the image's release) with a real
    repository at /models' place: the image's HEALTHCHECK command turns to success once it is ready,
    Triton's endpoints and the health port answer, and SIGTERM stops it with exit code 0."""
    import signal
    import subprocess
    import sys
    import time

    from sat_triton.builder.server import TritonServerError, find_tritonserver, free_port

    try:
        find_tritonserver()
    except TritonServerError as exc:
        pytest.skip(str(exc))
    cmd = image_cmd()
    assert cmd[:3] == ["sat-triton", "serve", "/models"] and cmd[cmd.index("--host") + 1] == "0.0.0.0"
    ports = {name: free_port() for name in dockerfiles.IMAGE_PORTS}
    # loopback here (a shared machine); the container tests run the command as is
    argv = [str(Path(sys.executable).parent / cmd[0]), *cmd[1:]]
    argv[argv.index("/models")] = str(repository)
    argv[argv.index("--host") + 1] = "127.0.0.1"
    argv += [f"--{name}_port={port}" for name, port in ports.items()] + ["--exit_timeout=5"]
    _, check = dockerfiles.healthcheck(DOCKERFILE)
    check = [str(Path(sys.executable).parent / check[0]), *check[1:]]
    url = check.index("--url") + 1
    assert check[url] == f"http://127.0.0.1:{dockerfiles.IMAGE_PORTS['health']}/v2/health/ready"
    check[url] = f"http://127.0.0.1:{ports['health']}/v2/health/ready"

    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while subprocess.run(check, capture_output=True).returncode != 0:
            assert proc.poll() is None, f"the image's command exited:\n{proc.stdout.read().decode()[-4000:]}"
            assert time.monotonic() < deadline, "the image's HEALTHCHECK never passed"
            time.sleep(1)
        base = f"http://127.0.0.1:{ports['http']}"
        assert _http(base + "/v2/health/ready") == 200
        assert _http(f"http://127.0.0.1:{ports['metrics']}/metrics") == 200
        assert _http(f"http://127.0.0.1:{ports['health']}/v2/health/live") == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


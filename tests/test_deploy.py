"""Deployment files, checked without Docker or a cluster: Dockerfile.triton parsed, docs/deployment.md
cross-checked, and the image's server command run on the local tritonserver (same Triton 2.51) to prove
its flags work. The Kubernetes manifests: tests/test_kubernetes.py; Prometheus: tests/test_prometheus.py."""

from __future__ import annotations

import json
import re
import shlex
import textwrap
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile.triton"
DOCS = ROOT / "docs" / "deployment.md"

TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:24.10-py3"
TRITON_PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}


# -- helpers ---------------------------------------------------------------------------------------
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


def instructions(keyword: str) -> list[str]:
    return [args for kw, args in dockerfile_instructions(DOCKERFILE.read_text()) if kw == keyword]


def image_cmd() -> list[str]:
    (cmd,) = instructions("CMD")
    return json.loads(cmd)  # exec form: a JSON array, no shell


def build_arg_default(name: str) -> str:
    for arg in instructions("ARG"):
        key, _, value = arg.partition("=")
        if key == name:
            return value
    raise AssertionError(f"Dockerfile.triton has no ARG {name}")


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


# -- Dockerfile.triton -----------------------------------------------------------------------------
def test_dockerfile_is_based_on_pinned_tritonserver_24_10():
    assert instructions("FROM") == [TRITON_IMAGE]


def test_dockerfile_pins_what_the_python_backend_models_import():
    (run,) = [r for r in instructions("RUN") if "pip install" in r]
    pins = dict(re.findall(r'"([A-Za-z0-9_.-]+)==([0-9][^"\s]*)"', run))
    assert set(pins) == {"numpy", "tokenizers", "onnxruntime-gpu"}, pins
    assert int(pins["numpy"].split(".")[0]) < 2, "the 24.10 python backend stub garbles BYTES under numpy 2"
    # onnxruntime-gpu must be a CUDA 12 / cuDNN 9 build (1.19+ on PyPI) like the image's.
    assert tuple(int(x) for x in pins["onnxruntime-gpu"].split(".")[:2]) >= (1, 19)
    assert not re.search(r"\bonnxruntime(?!-gpu)\b[=<>]", run), "CPU onnxruntime would shadow onnxruntime-gpu"


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
    (run,) = [r for r in instructions("RUN") if "pip install" in r]
    installed = {name for name, _ in re.findall(r'"([A-Za-z0-9_.-]+)==([0-9][^"\s]*)"', run)}
    distributions = {"onnxruntime": "onnxruntime-gpu"}
    missing = {m for m in third_party if distributions.get(m, m) not in installed}
    assert not missing, f"imported by server-side code but not installed by Dockerfile.triton: {sorted(missing)}"


def test_dockerfile_pins_satisfy_pyproject_extras():
    tomllib = pytest.importorskip("tomllib")
    from packaging.requirements import Requirement

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    wanted = {}
    for spec in extras.get("serve", []) + extras.get("gpu", []):
        req = Requirement(spec)
        wanted.setdefault(req.name, []).append(req.specifier)
    (run,) = [r for r in instructions("RUN") if "pip install" in r]
    for name, version in re.findall(r'"([A-Za-z0-9_.-]+)==([0-9][^"\s]*)"', run):
        for specifier in wanted.get(name, []):
            assert version in specifier, f"Dockerfile.triton pins {name}=={version}, pyproject wants {specifier}"


def test_dockerfile_runs_the_server_as_a_non_root_user():
    kinds = [kw for kw, _ in dockerfile_instructions(DOCKERFILE.read_text())]
    users = instructions("USER")
    assert users, "no USER: the server would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    assert user == "1000", "numeric, so that Kubernetes' runAsNonRoot can check it (triton-server is uid 1000)"
    last_user = max(i for i, kw in enumerate(kinds) if kw == "USER")
    assert all(kw not in ("RUN", "COPY", "ADD") for kw in kinds[last_user:]), "install steps must stay before USER"


def test_dockerfile_exposes_the_triton_ports():
    exposed = {int(port.split("/")[0]) for line in instructions("EXPOSE") for port in line.split()}
    assert exposed == set(TRITON_PORTS.values())


def test_dockerfile_healthcheck_waits_for_readiness():
    (check,) = instructions("HEALTHCHECK")
    assert re.search(r"--start-period=\d+", check), "model loading needs a start period"
    _, _, cmd = check.partition("CMD")
    assert "http://localhost:8000/v2/health/ready" in cmd
    assert re.search(r"curl\s+-\w*f", cmd), "curl -f, so that an HTTP error fails the check"


def test_dockerfile_cmd_serves_models_with_model_control_none():
    cmd = image_cmd()
    assert cmd[0] == "tritonserver"
    assert "--model-repository=/models" in cmd
    assert "--model-control-mode=none" in cmd


def test_dockerfile_builds_with_the_classic_builder():
    """testcontainers builds through docker-py, which does not use BuildKit."""
    text = DOCKERFILE.read_text()
    assert not re.search(r"^#\s*syntax\s*=", text, flags=re.M)
    for run in instructions("RUN"):
        assert not run.startswith("--mount") and "<<" not in run, "BuildKit-only RUN syntax"
    for copy_args in instructions("COPY"):
        assert "--link" not in copy_args and "--parents" not in copy_args


def test_dockerfile_default_model_repository_exists_and_is_empty():
    default = ROOT / build_arg_default("MODEL_REPOSITORY")
    assert default.is_dir(), f"COPY source {default} missing"
    assert not list(default.glob("*/config.pbtxt")), "the default image must not carry a model"
    (copy_args,) = instructions("COPY")
    assert copy_args.split() == ["${MODEL_REPOSITORY}", "/models"]


def test_dockerignore_keeps_the_copied_repository_and_drops_the_rest(tmp_path):
    docker_build = pytest.importorskip("docker.utils.build", reason="docker (docker-py, via testcontainers)")
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.strip().startswith("#")]
    files = [
        "Dockerfile.triton",
        build_arg_default("MODEL_REPOSITORY") + "/README.md",
        "model_repository/sat/config.pbtxt",
        "model_repository/sat_onnx/1/model.onnx",
        "model_repository/sat_tokenizer/1/sat_pipeline/pipeline.py",
        "model_repository/sat_tokenizer/1/sat_pipeline/__pycache__/pipeline.cpython-310.pyc",
        ".git/HEAD", ".venv/bin/python", "tests/test_deploy.py", "sat_triton.egg-info/PKG-INFO",
        "builder/cli.py",
    ]
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    context = docker_build.exclude_paths(str(tmp_path), patterns, dockerfile="Dockerfile.triton")
    for kept in files[:5]:
        assert kept in context, f"{kept} excluded from the build context"
    for dropped in files[5:10]:
        assert dropped not in context, f"{dropped} sent in the build context"


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


def test_docs_docker_commands_use_the_image_as_built():
    (build, *_) = shell_commands("docker build")
    assert build[build.index("-f") + 1] == DOCKERFILE.name
    tag = build[build.index("-t") + 1]
    runs = shell_commands("docker run")
    assert any("--gpus" in r for r in runs) and any("--gpus" not in r for r in runs), "GPU and CPU-only runs"
    for run in runs:
        assert tag in run
        assert any(w.endswith(":/models:ro") for w in run), "repository mounted read-only at /models"
        published = {w.split(":")[-1] for i, w in enumerate(run) if i and run[i - 1] == "-p"}
        assert published == {str(p) for p in TRITON_PORTS.values()}


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


def documented_restricted_flags() -> list[str]:
    flags = [w for words in shell_commands("docker run") for w in words
             if w.startswith(("--http-restricted-api=", "--grpc-restricted-protocol="))]
    assert len(flags) == 2, flags
    return flags


def test_docs_restricted_apis_leave_what_clients_and_probes_use_open():
    for flag in documented_restricted_flags():
        apis, _, header = flag.split("=", 1)[1].partition(":")
        assert re.fullmatch(r"[\w-]+=\S+", header), flag
        # client.SaT reads the ONNX step's config; probes use health.
        assert not {"health", "metadata", "inference", "model-config"} & set(apis.split(","))
        assert "model-repository" in apis.split(",")


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
def test_image_command_and_documented_flags_run_on_tritonserver_2_51():
    """CMD's flags and the docs' restricted-API flags are accepted by tritonserver 2.51, the probe
    URLs answer 200, and the restricted groups want the documented header (HTTP and gRPC)."""
    from sat_triton.builder.server import TritonServer, TritonServerError, find_tritonserver, free_port

    try:
        find_tritonserver()
    except TritonServerError as exc:
        pytest.skip(str(exc))
    cmd = image_cmd()
    mode = next(w.split("=", 1)[1] for w in cmd if w.startswith("--model-control-mode="))
    extra = [w for w in cmd[1:] if not w.startswith(("--model-repository=", "--model-control-mode="))]
    restricted = documented_restricted_flags()
    server = TritonServer(ROOT / build_arg_default("MODEL_REPOSITORY"), http_port=free_port(),
                          grpc_port=free_port(), metrics_port=free_port(), model_control_mode=mode,
                          extra_args=extra + restricted)
    server.start()
    try:
        server.wait_ready([], timeout=120)
        base = f"http://{server.http_url}"
        (healthcheck,) = instructions("HEALTHCHECK")
        assert _http(base + re.search(r"http://localhost:8000(\S+)", healthcheck)[1]) == 200
        assert _http(f"http://{server.metrics_url}/metrics") == 200

        key, value = restricted[0].split(":", 1)[1].split("=", 1)
        assert _http(base + "/v2/repository/index", "POST") == 403
        assert _http(base + "/v2/repository/index", "POST", {key: value}) == 200
        assert _http(base + "/v2/models/absent/config") not in (200, 403)  # model-config open: not found
        assert _http(base + "/v2/repository/models/absent/load", "POST", {key: value}) != 200  # mode none

        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException

        client = grpcclient.InferenceServerClient(server.grpc_url)
        try:
            with pytest.raises(InferenceServerException, match="restricted"):
                client.get_model_repository_index()
            client.get_model_repository_index(headers={f"triton-grpc-protocol-{key}": value})
        finally:
            client.close()
    finally:
        server.stop()

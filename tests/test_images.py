"""The images. Dockerfile.cpu and Dockerfile.triton checked for what both promise (a high numeric
non-root user, `sat-triton serve` on all interfaces, the truthful HEALTHCHECK, the checkout's wheel),
linted with hadolint and checkov; scripts/dockerhost.py's pieces; and the CPU image built and run for
real under a restricted profile (testcontainers on the local daemon, tests/conftest.py's fixtures).
The same test bodies as the local server run against the CPU image through the `server` fixture."""

from __future__ import annotations

import json
import re
import subprocess
import time
import zipfile
from pathlib import Path

import pytest

import dockerhost
from dockerfiles import (DOCKERFILES, IMAGE_PORTS, ROOT, build_arg_default, dockerfile_instructions, final_stage,
                         healthcheck, instructions, serve_command)
from servers import container_log, stop_container

TOOLS = ROOT / ".tools"
MAX_CPU_IMAGE_BYTES = 1.5e9     # measured 0.75 GB: a doubling is a regression worth a look
MAX_START_TO_READY_S = 120      # measured about 10 s for the test repository on 2 shared cores


@pytest.fixture(params=sorted(DOCKERFILES))
def dockerfile(request) -> Path:
    return DOCKERFILES[request.param]


def cli_parser():
    from sat_triton.builder.cli import _build_parser

    return _build_parser()


# -- what both images promise ------------------------------------------------------------------------
def test_image_runs_as_a_high_numeric_non_root_user(dockerfile):
    stage = final_stage(dockerfile)
    users = [args for kw, args in stage if kw == "USER"]
    assert users, "no USER: the server would run as root"
    user, _, group = users[-1].partition(":")
    assert user.isdigit() and group.isdigit(), "numeric, so that Kubernetes' runAsNonRoot can check it"
    assert int(user) >= 10000, "a high UID (checkov CKV_K8S_40), no clash with the node's users"
    last_user = max(i for i, (kw, _) in enumerate(stage) if kw == "USER")
    assert all(kw not in ("RUN", "COPY", "ADD") for kw, _ in stage[last_user:]), "install steps stay before USER"


def test_image_exposes_triton_and_health_ports(dockerfile):
    exposed = {int(port.split("/")[0]) for line in instructions(dockerfile, "EXPOSE") for port in line.split()}
    assert exposed == set(IMAGE_PORTS.values())


def test_image_entrypoint_is_sat_triton_serve_on_all_interfaces(dockerfile):
    command = serve_command(dockerfile)
    assert command == ["sat-triton", "serve", "/models", "--host", "0.0.0.0"]
    args = cli_parser().parse_args(command[1:])  # SystemExit if `sat-triton serve` lacks a flag
    assert args.host == "0.0.0.0"
    assert args.health_port == IMAGE_PORTS["health"] and args.http_port == IMAGE_PORTS["http"]


def test_image_healthcheck_is_the_truthful_readiness(dockerfile):
    """sat-triton health on serve's health port (not Triton's /v2/health/ready, which stays 200 after a
    Python stub died), in exec form: no shell and no curl needed."""
    options, command = healthcheck(dockerfile)
    assert re.search(r"--start-period=\d+s", options), "model loading needs a start period"
    assert command[:2] == ["sat-triton", "health"]
    args = cli_parser().parse_args(command[1:])  # SystemExit if `sat-triton health` lacks a flag
    assert args.url == f"http://127.0.0.1:{IMAGE_PORTS['health']}/v2/health/ready"
    timeout = int(re.search(r"--timeout=(\d+)s", options)[1])
    assert args.timeout < timeout, "the check's own timeout must end before Docker's"


def test_image_installs_sat_triton_from_the_checkout_wheel(dockerfile):
    copies = [c.split() for c in instructions(dockerfile, "COPY")]
    assert any(c[0] == "wheelhouse/sat_triton-*.whl" for c in copies), "sat-triton from wheelhouse/"


def test_image_builds_with_the_classic_builder(dockerfile):
    """testcontainers builds through docker-py, which does not use BuildKit."""
    text = dockerfile.read_text()
    assert not re.search(r"^#\s*syntax\s*=", text, flags=re.M)
    for run in instructions(dockerfile, "RUN"):
        assert not run.startswith("--mount") and "<<" not in run, "BuildKit-only RUN syntax"
    for copy_args in instructions(dockerfile, "COPY"):
        assert "--link" not in copy_args and "--parents" not in copy_args


def test_image_default_model_repository_is_an_empty_placeholder(dockerfile):
    default = ROOT / build_arg_default(dockerfile, "MODEL_REPOSITORY")
    assert default.is_dir(), f"COPY source {default} missing"
    assert not list(default.glob("*/config.pbtxt")), "the default image must not carry a model"
    assert ["${MODEL_REPOSITORY}", "/models"] in [c.split() for c in instructions(dockerfile, "COPY")]


# -- Dockerfile.cpu ----------------------------------------------------------------------------------
def test_cpu_image_base_is_a_build_argument_defaulting_to_debian_bookworm_slim():
    found = dockerfile_instructions(DOCKERFILES["cpu"].read_text())
    first_from = next(i for i, (kw, _) in enumerate(found) if kw == "FROM")
    assert ("ARG", "BASE=debian:bookworm-slim") in found[:first_from], "ARG BASE before the first FROM"
    assert found[first_from][1].split()[0] == "${BASE}"
    stages = [args.split() for kw, args in found if kw == "FROM"]
    named = {s[2] for s in stages if len(s) == 3}
    assert all(s[0] in named | {"${BASE}"} for s in stages), "every stage starts from BASE"


def test_cpu_image_installs_python_packages_only_from_the_wheelhouse():
    """No index is reachable from a build here, and none is needed: pip --no-index everywhere, the
    dependencies exactly as wheelhouse/cpu/requirements.txt locks them."""
    runs = [r for r in instructions(DOCKERFILES["cpu"], "RUN") if "pip install" in r]
    assert runs
    for run in runs:
        for install in re.findall(r"pip install[^&]*", run):
            assert "--no-index" in install and "--find-links /wheelhouse/cpu" in install, install
    assert any("--requirement /wheelhouse/cpu/requirements.txt" in r for r in runs)
    assert any("[serve]" in r for r in runs), "sat-triton must find every dependency it declares"


def test_cpu_wheelhouse_pins_satisfy_pyproject():
    tomllib = pytest.importorskip("tomllib")
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = {}
    for line in dockerhost.CPU_PINS.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", f"{line}: pin an exact version"
            pins[req.name] = spec.version
    for spec in project["dependencies"] + project["optional-dependencies"]["serve"]:
        req = Requirement(spec)
        assert req.name in pins, f"the CPU image misses {req.name}"
        assert pins[req.name] in req.specifier, f"wheelhouse-cpu.txt pins {req.name}=={pins[req.name]}, pyproject: {spec}"
    assert pins["nvidia-pytriton"] == "0.7.0", "tritonserver 2.51, as the local server"


# -- hadolint and checkov ------------------------------------------------------------------------------
def tool(name: str) -> Path:
    path = TOOLS / name / "bin" / name
    if not path.is_file():
        pytest.skip(f"{path.relative_to(ROOT)} is not installed: run scripts/setup.sh (scripts/setup-tools.sh)")
    return path


def hadolint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(tool("hadolint")), "--no-color", "--failure-threshold", "info", str(path)],
                          capture_output=True, text=True)


def checkov(path: Path) -> dict:
    done = subprocess.run([str(tool("checkov")), "--quiet", "--skip-download", "--framework", "dockerfile",
                           "--output", "json", "--file", str(path)], capture_output=True, text=True)
    assert done.returncode in (0, 1), done.stderr[-3000:]
    report = json.loads(done.stdout)
    return report[0] if isinstance(report, list) else report


def test_hadolint_is_clean(dockerfile):
    done = hadolint(dockerfile)
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_catches_a_root_user(tmp_path):
    broken = tmp_path / "Dockerfile"
    broken.write_text(DOCKERFILES["cpu"].read_text().replace("USER 10001:10001", "USER root"))
    done = hadolint(broken)
    assert done.returncode != 0 and "DL3002" in done.stdout


def test_checkov_is_clean_and_skips_only_with_a_reason(dockerfile):
    report = checkov(dockerfile)
    failed = [(c["check_id"], c["check_name"]) for c in report["results"]["failed_checks"]]
    assert not failed, failed
    assert report["summary"]["passed"] > 10
    for line in dockerfile.read_text().splitlines():
        if "checkov:skip=" in line:
            assert re.search(r"checkov:skip=CKV\w+:\s*\S.{20,}", line), f"a skip without its reason: {line}"


def test_checkov_catches_a_missing_healthcheck(tmp_path):
    text = DOCKERFILES["cpu"].read_text()
    broken = tmp_path / "Dockerfile"
    broken.write_text(re.sub(r"^HEALTHCHECK .*?\n(    .*\n)*", "", text, flags=re.M))
    assert not instructions(broken, "HEALTHCHECK")
    failed = {c["check_id"] for c in checkov(broken)["results"]["failed_checks"]}
    assert "CKV_DOCKER_2" in failed


# -- scripts/dockerhost.py, without Docker -------------------------------------------------------------
def test_host_debian_mirror_reads_deb822_and_one_line_sources(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\n# http://snapshot.debian.org/archive/debian/20250520T000000Z\n"
        "URIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n"
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\n")
    assert dockerhost.host_debian_mirror(tmp_path) == "http://mirror.example/debian"
    (tmp_path / "sources.list").write_text(
        "deb http://security.example/debian-security bookworm-security main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://one.example/debian/ bookworm main contrib\n")
    assert dockerhost.host_debian_mirror(tmp_path) == "http://one.example/debian"
    empty = tmp_path / "none"
    empty.mkdir()
    assert dockerhost.host_debian_mirror(empty) == dockerhost.DEFAULT_MIRROR


def test_without_a_daemon_the_reason_says_what_is_missing(monkeypatch):
    """Where Docker cannot run, the container tests skip with this message: it must name the cause."""
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:9")
    with pytest.raises(dockerhost.DockerUnavailable, match="DOCKER_HOST=tcp://127.0.0.1:9 names another daemon"):
        dockerhost.ensure_daemon(wait=1)
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(dockerhost.DockerUnavailable, match="no Docker daemon answers.*names another daemon"):
        dockerhost.ensure_daemon(wait=1)
    monkeypatch.delenv("DOCKER_HOST")
    monkeypatch.setattr(dockerhost, "_client", lambda: (_ for _ in ()).throw(ConnectionError("no socket")))
    monkeypatch.setattr(dockerhost.os, "geteuid", lambda: 1000)
    with pytest.raises(dockerhost.DockerUnavailable, match="starting dockerd needs root"):
        dockerhost.ensure_daemon(wait=1)
    monkeypatch.setattr(dockerhost.os, "geteuid", lambda: 0)
    monkeypatch.setattr(dockerhost.shutil, "which", lambda name: None)
    with pytest.raises(dockerhost.DockerUnavailable, match="dockerd is not installed .*apt-get install docker.io"):
        dockerhost.ensure_daemon(wait=1)


def test_base_image_falls_back_to_the_registry_and_says_both_causes(monkeypatch):
    import docker.errors

    class Images:
        pulled = []

        def get(self, name):
            if name not in self.pulled:
                raise docker.errors.ImageNotFound(name)

        def pull(self, name):
            if name != "debian:bookworm-slim":
                raise docker.errors.APIError("registry unreachable")
            self.pulled.append(name)

    client = type("Client", (), {"images": Images()})()
    monkeypatch.delenv("SAT_TRITON_IMAGE_BASE", raising=False)
    monkeypatch.setattr(dockerhost, "local_base_image",
                        lambda client: (_ for _ in ()).throw(dockerhost.DockerUnavailable("no debootstrap")))
    assert dockerhost.base_image(client) == dockerhost.REGISTRY_BASE == "debian:bookworm-slim"
    monkeypatch.setattr(dockerhost, "REGISTRY_BASE", "unreachable/base:1")
    with pytest.raises(dockerhost.DockerUnavailable, match="no debootstrap; and unreachable/base:1 could not be"):
        dockerhost.base_image(client)
    monkeypatch.setenv("SAT_TRITON_IMAGE_BASE", "debian:bookworm-slim")
    assert dockerhost.base_image(client) == "debian:bookworm-slim"


def test_wheelhouse_mirror_replaces_a_lock_file_of_the_same_size(tmp_path):
    """A newer download can lock filelock==4.3.2 where the old lock said 4.3.1: same size, other bytes.
    The mirrored wheelhouse must carry the new lock, or pip in the image looks for a wheel that is gone."""
    cache, dest = tmp_path / "cache", tmp_path / "dest"
    cache.mkdir()
    (cache / "requirements.txt").write_text("filelock==4.3.1\n")
    (cache / "filelock-4.3.1-py3-none-any.whl").write_bytes(b"old")
    dockerhost._mirror_dir(cache, dest)
    (cache / "filelock-4.3.1-py3-none-any.whl").unlink()
    (cache / "requirements.txt").unlink()  # a fresh download: new files, not the linked ones rewritten
    (cache / "requirements.txt").write_text("filelock==4.3.2\n")
    (cache / "filelock-4.3.2-py3-none-any.whl").write_bytes(b"new")
    dockerhost._mirror_dir(cache, dest)
    assert (dest / "requirements.txt").read_text() == "filelock==4.3.2\n"
    assert sorted(p.name for p in dest.iterdir()) == ["filelock-4.3.2-py3-none-any.whl", "requirements.txt"]


def test_wheelhouse_targets_bookworm_python_and_glibc():
    args = dockerhost._platform_args("x86_64")
    assert args[args.index("--python-version") + 1] == "3.11"
    platforms = [args[i + 1] for i, a in enumerate(args) if a == "--platform"]
    assert "manylinux_2_36_x86_64" in platforms and "manylinux2014_x86_64" in platforms
    assert "manylinux_2_37_x86_64" not in platforms, "bookworm's glibc is 2.36"


def test_sat_triton_wheel_is_built_from_the_checkout(tmp_path):
    wheel = dockerhost.sat_triton_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    templates = {f"sat_triton/model_repository_templates/{p.relative_to(ROOT / 'model_repository_templates')}"
                 for p in (ROOT / "model_repository_templates").glob("*/1/*.py")}
    assert templates and templates <= names
    assert "sat_triton/pipeline/pipeline.py" in names and "sat_triton/builder/cli.py" in names
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    assert "sat-triton = sat_triton.builder.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
    mtime = wheel.stat().st_mtime_ns
    assert dockerhost.sat_triton_wheel(tmp_path).stat().st_mtime_ns == mtime, "rebuilt with no source change"


# -- the CPU image for real ----------------------------------------------------------------------------
@pytest.mark.integration
def test_cpu_image_serves_under_a_restricted_profile(cpu_image, repository):
    """The CPU image as Kubernetes' restricted profile runs it: read-only root filesystem with a tmpfs
    /tmp, every capability dropped, no privilege escalation, the image's own uid. Measured: size and
    container start to ready (the health port); then Docker's HEALTHCHECK says healthy, a request is
    served, /models is read-only, and SIGTERM stops it with exit code 0."""
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import HealthcheckWaitStrategy, HttpWaitStrategy

    from sat_triton.client import SaT

    container = (
        DockerContainer(cpu_image.tag, shm_size="256m")
        .with_volume_mapping(str(repository.resolve()), "/models", "ro")
        .with_tmpfs_mount("/tmp", "size=256m")  # docker tmpfs options
        .with_kwargs(read_only=True, cap_drop=["ALL"], security_opt=["no-new-privileges"])
        .with_command(["--exit_timeout", "5"])
        .waiting_for(HttpWaitStrategy(IMAGE_PORTS["health"], "/v2/health/ready").with_startup_timeout(300))
    )
    for port in IMAGE_PORTS.values():
        container.ports[f"{port}/tcp"] = ("127.0.0.1", None)  # loopback only
    started = time.monotonic()
    try:
        container.start()
        start_to_ready = time.monotonic() - started
        print(f"\nCPU image {cpu_image.tag}: {cpu_image.size_bytes / 1e9:.2f} GB "
              f"({cpu_image.size_bytes / 2**20:.0f} MiB), container start to ready {start_to_ready:.1f}s")
        HealthcheckWaitStrategy().with_startup_timeout(60).wait_until_ready(container)
        healthy = time.monotonic() - started
        print(f"Docker HEALTHCHECK healthy {healthy:.1f}s after start")

        sat = SaT("tiny-sat-sm", triton_url=f"127.0.0.1:{container.get_exposed_port(IMAGE_PORTS['grpc'])}",
                  triton_model_name="tiny")
        text = "Hello world. This is a test. And one more sentence here."
        assert "".join(sat.split(text)) == text
        sat.close()
        assert container.exec(["id", "-u"]).output.decode().strip() == "10001"
        assert container.exec(["sh", "-c", "touch /models/x"]).exit_code != 0, "/models must be read-only"
        assert container.exec(["sh", "-c", "touch /opt/x"]).exit_code != 0, "the root filesystem is read-only"
    except Exception:
        print(container_log(container))
        raise
    finally:
        code = stop_container(container, timeout=30)
    assert code == 0, "SIGTERM must stop sat-triton serve cleanly"
    assert cpu_image.size_bytes < MAX_CPU_IMAGE_BYTES
    assert start_to_ready < MAX_START_TO_READY_S

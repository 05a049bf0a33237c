"""`pip install sat-triton` works as a user meets it: the wheel and sdist build and pass twine, a fresh
venv with only the built wheel and the [serve,build] extras builds, serves and answers outside the
checkout, the bare wheel installs beside numpy 2 and calls that server, every install line of the README
brings exactly one onnxruntime, and the client's types check."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from corpus import multilingual_texts
from wheels import (ONNXRUNTIMES, ROOT, build_dist, clean_env, installed, make_venv, resolve, resolved, run,
                       wheel_metadata, wheel_names)

pytestmark = pytest.mark.integration

GPU_COMBINATION = "gpu,build-gpu"
TEXTS = multilingual_texts(6, seed=41) + ["Hello there. How are you? Fine, thanks."]


@pytest.fixture(scope="module")
def gpu_resolution(dist):
    """[gpu,build-gpu] resolved by pip against the index (nothing installed: no GPU here); started first
    because it mostly waits on the network, read by the test that needs it."""
    process = resolve(f"{dist.wheel}[{GPU_COMBINATION}]")
    yield process
    if process.poll() is None:
        process.kill()
        process.communicate()


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    return build_dist(tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="module")
def wheelhouse(request, tmp_path_factory):
    cache = getattr(request.config, "cache", None)
    return cache.mkdir("sat-triton-wheelhouse") if cache is not None else tmp_path_factory.mktemp("wheelhouse")


@pytest.fixture(scope="module")
def server_venv(dist, wheelhouse, tmp_path_factory, gpu_resolution):
    # 1.3 GB (torch): left to pytest's rotation of its temporary directories, since deleting it here took
    # up to a minute of test time on a busy disk
    return make_venv(tmp_path_factory.mktemp("venv-server") / "venv", [f"{dist.wheel}[serve,build]"], wheelhouse)


@pytest.fixture(scope="module")
def numpy2_venv(dist, wheelhouse, tmp_path_factory, gpu_resolution):
    # The bare wheel and numpy 2: the resolver must find sat-triton's own requirements compatible with it
    # (the wheelhouse also holds the server's numpy 1, which the bare wheel alone would happily take).
    return make_venv(tmp_path_factory.mktemp("venv-numpy2") / "venv", [str(dist.wheel), "numpy>=2"], wheelhouse)


@pytest.fixture(scope="module")
def installed_server(server_venv, checkpoint_dir, tokenizer_dir, tmp_path_factory):
    """`sat-triton build` then `sat-triton serve`, both from the fresh venv, in a directory outside the
    checkout; yields the URLs and what build printed."""
    from sat_triton.builder.server import free_port
    from sat_triton.client import wait_until_ready

    work = tmp_path_factory.mktemp("outside-the-checkout")
    bin_dir = server_venv.parent
    version = run([bin_dir / "sat-triton", "--version"], cwd=work, env=clean_env()).stdout.strip()
    started = time.monotonic()
    build = run([bin_dir / "sat-triton", "build", "--model_name_or_path", checkpoint_dir,
                 "--tokenizer_name_or_path", tokenizer_dir, "--output_dir", work / "model_repository",
                 "--triton_model_name", "tiny", "--device", "cpu", "--onnx_backend", "python",
                 "--max_batch_size", "16"], cwd=work, env=clean_env(), timeout=300)
    print(f"sat-triton build from the fresh venv: {time.monotonic() - started:.0f} s")
    ports = {"http": free_port(), "grpc": free_port(), "metrics": free_port()}
    serve = [bin_dir / "sat-triton", "serve", work / "model_repository", "--http_port", ports["http"],
             "--grpc_port", ports["grpc"], "--metrics_port", ports["metrics"]]
    flags = run([bin_dir / "sat-triton", "serve", "--help"], cwd=work, env=clean_env()).stdout
    if "--health_port" in flags:  # the supervisor's own port, where `serve` has one
        serve += ["--health_port", free_port()]
    log = open(work / "serve.log", "w")
    process = subprocess.Popen([str(c) for c in serve], cwd=work, env=clean_env(), stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        urls = {"grpc": f"127.0.0.1:{ports['grpc']}", "http": f"127.0.0.1:{ports['http']}"}
        try:
            started = time.monotonic()
            wait_until_ready(urls["grpc"], "tiny", timeout=180)
            print(f"sat-triton serve from the fresh venv: ready in {time.monotonic() - started:.0f} s")
        except TimeoutError:
            raise AssertionError(f"sat-triton serve not ready:\n{(work / 'serve.log').read_text()[-5000:]}")
        yield {"urls": urls, "version": version, "build": build.stdout, "work": work}
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture(scope="module")
def expected(installed_server):
    """The sentences the checkout's own client gets from that server."""
    from sat_triton import SaT

    with SaT("tiny-sat-sm", triton_url=installed_server["urls"]["grpc"], triton_model_name="tiny") as sat:
        return list(sat.split(TEXTS))


CLIENT_CALL = """
import json, sys
import numpy as np
import sat_triton
from sat_triton import SaT, AsyncSaT
import tritonclient.grpc as grpcclient, tritonclient.http as httpclient
texts = json.loads(sys.argv[3])
out = {"numpy": np.__version__, "sat_triton": sat_triton.__file__}
with SaT("tiny-sat-sm", triton_url=sys.argv[1], triton_model_name="tiny") as sat:
    out["grpc"] = list(sat.split(texts))
with SaT("tiny-sat-sm", triton_url=sys.argv[2], triton_model_name="tiny", protocol="http") as sat:
    out["http"] = list(sat.split(texts))
raw = []
for module, url in ((grpcclient, sys.argv[1]), (httpclient, sys.argv[2])):
    client = module.InferenceServerClient(url)
    inp = module.InferInput("TEXT", [len(texts)], "BYTES")
    inp.set_data_from_numpy(np.array([t.encode("utf-8") for t in texts], dtype=np.object_))
    result = client.infer("tiny", [inp])
    raw.append([[s.decode() for s in result.as_numpy("SENTENCES")], result.as_numpy("SENTENCE_COUNTS").tolist()])
    client.close()
out["raw"] = raw
print(json.dumps(out))
"""


def call_from(python: Path, server: dict, cwd: Path) -> dict:
    done = run([python, "-c", CLIENT_CALL, server["urls"]["grpc"], server["urls"]["http"], json.dumps(TEXTS)],
               cwd=cwd, env=clean_env(), timeout=120)
    return json.loads(done.stdout.strip().splitlines()[-1])


def per_text(flat: list[str], counts: list[int]) -> list[list[str]]:
    out, offset = [], 0
    for count in counts:
        out.append(flat[offset: offset + count])
        offset += count
    return out


def test_wheel_and_sdist_build_and_pass_twine(dist):
    run([sys.executable, "-m", "twine", "check", "--strict", dist.wheel, dist.sdist])
    names = wheel_names(dist.wheel)
    for shipped in ("sat_triton/py.typed", "sat_triton/client/py.typed", "sat_triton/client/aio.py",
                    "sat_triton/builder/cli.py", "sat_triton/pipeline/options.py",
                    "sat_triton/model_repository_templates/ensemble/config.pbtxt"):
        assert shipped in names, shipped
    tops = {n.split("/", 1)[0] for n in names}
    assert tops == {"sat_triton", f"{dist.wheel.name.split('-')[0]}-{dist.wheel.name.split('-')[1]}.dist-info"}
    metadata = wheel_metadata(dist.wheel)
    core = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert sorted(core) == ["Requires-Dist: numpy>=1.21", "Requires-Dist: tritonclient[grpc,http]>=2.50"], core
    extras = set(re.findall(r"^Provides-Extra: (\S+)", metadata, re.M))
    assert extras == {"serve", "gpu", "build", "build-gpu", "dev"}


def test_installed_wheel_builds_serves_and_answers_outside_the_checkout(server_venv, installed_server, expected):
    from sat_triton import __version__

    assert installed_server["version"] == f"sat-triton {__version__}"
    assert "wrote tiny" in installed_server["build"]
    got = call_from(server_venv, installed_server, installed_server["work"])
    assert Path(got["sat_triton"]).is_relative_to(server_venv.parent.parent)  # the installed copy, not the checkout
    assert got["numpy"].startswith("1.")  # [serve] keeps the server's numpy<2
    assert got["grpc"] == got["http"] == expected
    for flat, counts in got["raw"]:
        assert per_text(flat, counts) == expected


def test_bare_client_installs_beside_numpy_2_and_calls_the_server(numpy2_venv, installed_server, expected, tmp_path):
    have = installed(numpy2_venv)
    assert int(have["numpy"].split(".")[0]) >= 2
    for server_side in ("torch", "tokenizers", "nvidia-pytriton", "transformers", *ONNXRUNTIMES):
        assert server_side not in have, f"the bare client pulled in {server_side}"
    got = call_from(numpy2_venv, installed_server, tmp_path)
    assert got["numpy"] == have["numpy"]
    assert Path(got["sat_triton"]).is_relative_to(numpy2_venv.parent.parent)
    assert got["grpc"] == got["http"] == expected
    for flat, counts in got["raw"]:
        assert per_text(flat, counts) == expected


def readme_installs() -> set[frozenset[str]]:
    """The extras of every `pip install sat-triton[...]` line the README shows."""
    combos = set()
    for extras in re.findall(r'pip install "?sat-triton(?:\[([a-z,-]+)\])?"?', (ROOT / "README.md").read_text()):
        combos.add(frozenset(e for e in extras.split(",") if e))
    return combos


def test_every_install_line_of_the_readme_brings_one_onnxruntime(server_venv, numpy2_venv, gpu_resolution):
    """Resolved sets, not declared ones: the two venvs as installed, [gpu,build-gpu] by pip's resolver,
    [dev] as this environment has it. Each README line is one of these or a subset of one."""
    checked = {
        frozenset(): installed(numpy2_venv),
        frozenset({"serve", "build"}): installed(server_venv),
        frozenset(GPU_COMBINATION.split(",")): resolved(gpu_resolution),
        frozenset({"dev"}): installed(Path(sys.executable)),
    }
    runtimes = {combo: sorted(ONNXRUNTIMES & set(dists)) for combo, dists in checked.items()}
    assert runtimes == {frozenset(): [], frozenset({"serve", "build"}): ["onnxruntime"],
                        frozenset(GPU_COMBINATION.split(",")): ["onnxruntime-gpu"], frozenset({"dev"}): ["onnxruntime"]}
    shown = readme_installs()
    assert {frozenset(), frozenset({"serve"}), frozenset({"gpu"}), frozenset({"build"})} <= shown, shown
    for combo in shown:
        assert any(combo <= resolved_combo for resolved_combo in checked if combo or not resolved_combo), \
            f"README shows sat-triton[{','.join(sorted(combo))}]: resolve it here too"


def test_client_types_check():
    done = subprocess.run([sys.executable, "-m", "mypy", "client/"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr

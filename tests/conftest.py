import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from artifacts import make_adapter, make_checkpoint, make_tokenizer  # noqa: E402
from servers import build_repository, start_container, start_local, stop_container  # noqa: E402

import dockerhost  # noqa: E402  (scripts/, put on sys.path by servers)

# testcontainers against the local daemon with no registry: no reaper (its image cannot be pulled; the
# fixtures remove their containers themselves), and the ports published on this host, not the bridge
# gateway (a machine with /.dockerenv looks like a container to it). Read when testcontainers is imported.
for _key, _value in dockerhost.TESTCONTAINERS_ENV.items():
    os.environ.setdefault(_key, _value)

MAX_BATCH_SIZE = 16  # small, so that the too-many-windows path is easy to reach
# tiny_fast's request limits: an ensemble request of 16 one-window texts (what client.SaT may group) can
# exceed 4,000 characters, so the client's fallback on the ensemble's size limit is reached too.
SMALL_LIMITS = ("--max_text_chars", "30000", "--max_request_chars", "40000", "--max_ensemble_request_chars", "4000",
                "--max_request_texts", "200")


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory):
    return make_tokenizer(tmp_path_factory.mktemp("tokenizer") / "tok")


@pytest.fixture(scope="session")
def checkpoint_dir(tmp_path_factory):
    """Its name has "sm" in it, so wtpsplit's default threshold for it is 0.25."""
    pytest.importorskip("wtpsplit")
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny-sat-sm")


@pytest.fixture(scope="session")
def lookahead_checkpoint_dir(tmp_path_factory):
    pytest.importorskip("wtpsplit")
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny-sat-la", lookahead=4, lookahead_split_layers=1,
                           seed=1)


@pytest.fixture(scope="session")
def lora_dir(tmp_path_factory):
    """A random LoRA adapter in wtpsplit's layout, with a 3-label head (the checkpoint has 1)."""
    return make_adapter(tmp_path_factory.mktemp("lora") / "adapter", num_labels=3, seed=5)


@pytest.fixture(scope="session")
def repository(tmp_path_factory, checkpoint_dir, lookahead_checkpoint_dir, tokenizer_dir, lora_dir):
    """One repository, three models built into it by `sat-triton build` (each keeps the others)."""
    out = tmp_path_factory.mktemp("repo") / "model_repository"
    build_repository(checkpoint_dir, tokenizer_dir, out, "tiny", "--max_batch_size", str(MAX_BATCH_SIZE))
    build_repository(lookahead_checkpoint_dir, tokenizer_dir, out, "tiny_la", "--max_batch_size",
                     str(MAX_BATCH_SIZE))
    build_repository(checkpoint_dir, tokenizer_dir, out, "tiny_lora", "--max_batch_size", str(MAX_BATCH_SIZE),
                     "--lora_path", str(lora_dir))
    # the GPU defaults' serving shape on CPU: fused graph, several ONNX instances behind the dynamic
    # batcher, each merged batch run as one padded call
    # ... with small request limits (tests/test_bad_input.py)
    build_repository(checkpoint_dir, tokenizer_dir, out, "tiny_fast", "--max_batch_size", str(MAX_BATCH_SIZE),
                     "--optimize", "on", "--length_granularity", "0", "--onnx_instance_count", "2",
                     "--dynamic_batching", "on", "--max_queue_delay_us", "500", *SMALL_LIMITS)
    return out


MODELS = ["tiny", "tiny_la", "tiny_lora", "tiny_long", "tiny_la_long", "tiny_lora_long"]


@pytest.fixture(scope="session")
def docker_daemon():
    """A Docker daemon: the one that answers, or Debian's dockerd started for this session (as root)
    and stopped at its end. Skips, saying what is missing, only where Docker cannot run at all."""
    try:
        daemon = dockerhost.ensure_daemon()
    except dockerhost.DockerUnavailable as exc:
        pytest.skip(str(exc))
    yield daemon
    daemon.stop()


@pytest.fixture(scope="session")
def cpu_image(docker_daemon):
    """Dockerfile.cpu built on a local debootstrap base ($SAT_TRITON_IMAGE_BASE, e.g. debian:bookworm-slim,
    where a registry answers), from the wheelhouse; cached by a tag that hashes its inputs."""
    try:
        base = dockerhost.base_image(docker_daemon.client)
    except dockerhost.DockerUnavailable as exc:
        pytest.skip(str(exc))
    built = dockerhost.cpu_image(docker_daemon.client, base=base)
    how = f"built in {built.build_seconds:.0f}s" if built.build_seconds is not None else "cached"
    print(f"\nCPU image {built.tag} (BASE={base}): {built.size_bytes / 1e9:.2f} GB, {how}")
    return built


@pytest.fixture(scope="session", params=["local", "container"])
def server(request, repository):
    """The same tests run against a local tritonserver process and a container of the CPU image."""
    if request.param == "container":
        image = request.getfixturevalue("cpu_image")
        handle, running = start_container(repository, MODELS, image.tag)
        running.details["size_bytes"] = image.size_bytes
        print(f"\ncontainer {image.tag}: start to ready {running.details['start_to_ready_s']:.1f}s")
        yield running
        stop_container(handle)
    else:
        handle, running = start_local(repository, MODELS)
        yield running
        handle.stop()


@pytest.fixture(scope="session")
def reference(checkpoint_dir, tokenizer_dir):
    from wtpsplit import SaT

    return SaT(str(checkpoint_dir), tokenizer_name_or_path=str(tokenizer_dir))


@pytest.fixture(scope="session")
def lora_reference(checkpoint_dir, tokenizer_dir, lora_dir):
    from wtpsplit import SaT

    return SaT(str(checkpoint_dir), tokenizer_name_or_path=str(tokenizer_dir), lora_path=str(lora_dir))


@pytest.fixture(scope="session")
def lookahead_reference(lookahead_checkpoint_dir, tokenizer_dir):
    from wtpsplit import SaT

    return SaT(str(lookahead_checkpoint_dir), tokenizer_name_or_path=str(tokenizer_dir))

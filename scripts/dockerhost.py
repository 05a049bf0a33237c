"""The local Docker host for sat-triton's images, with no container registry in reach.

What the container tests (tests/servers.py) and scripts/setup.sh use:

- :func:`ensure_daemon` answers a Docker client; when no daemon answers and this process may start
  one (root, Debian's ``docker.io`` installed), it starts ``dockerd`` in the background, waits a
  bounded time for its socket, and hands back a handle whose ``stop()`` stops what it started.
- :func:`local_base_image` makes the base image ``sat-triton-base:bookworm`` itself: a Debian
  bookworm root filesystem from ``debootstrap --variant=minbase`` (from the host's own apt mirror),
  cached as a tarball, then ``docker import``-ed. Images of it are cached by tag in the daemon.
- :func:`wheelhouse` fills ``wheelhouse/`` (the images' build context): sat-triton's wheel built from
  this checkout, and ``wheelhouse/cpu/``, the CPU image's dependencies downloaded on the host for
  Linux / CPython 3.11 (pinned by ``scripts/wheelhouse-cpu.txt``, cached on disk), so that
  ``pip install --no-index`` in the build needs no index and no TLS inside the container.
- :func:`cpu_image` builds Dockerfile.cpu on a base, tagged by a hash of everything that goes into
  it, so an unchanged image is never built twice.

Command line (scripts/setup.sh runs ``prepare``)::

    python scripts/dockerhost.py prepare      # wheelhouse + the debootstrap tarball (no daemon needed)
    python scripts/dockerhost.py wheelhouse   # only wheelhouse/
    python scripts/dockerhost.py cpu-image    # start a daemon if needed, build Dockerfile.cpu, print the tag

The cache lives in ``$SAT_TRITON_CACHE`` (default ``~/.cache/sat-triton``), so fresh clones on the
same machine reuse it.
"""

from __future__ import annotations

import argparse
import fcntl
import filecmp
import hashlib
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WHEELHOUSE = ROOT / "wheelhouse"
CPU_PINS = ROOT / "scripts" / "wheelhouse-cpu.txt"
CACHE = Path(os.environ.get("SAT_TRITON_CACHE")
             or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sat-triton")

SUITE = "bookworm"                      # the images' Debian release: Python 3.11, like the stub they run
PYTHON_VERSION = "3.11"                 # Debian bookworm's python3
GLIBC_MINOR = 36                        # bookworm's glibc 2.36: the newest manylinux wheel it runs
BASE_TAG = f"sat-triton-base:{SUITE}"
REGISTRY_BASE = "debian:bookworm-slim"  # Dockerfile.cpu's default BASE
CPU_REPOSITORY = "sat-triton-cpu"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DOCKER_SOCKET = Path("/var/run/docker.sock")
DAEMON_WAIT_S = 60.0

# Environment testcontainers needs against a local daemon with no registry: its reaper image
# (ryuk) cannot be pulled, and in a machine with /.dockerenv it would otherwise connect through the
# bridge gateway instead of the ports published on the host.
TESTCONTAINERS_ENV = {"TESTCONTAINERS_RYUK_DISABLED": "true", "TESTCONTAINERS_CONNECTION_MODE": "docker_host"}


class DockerUnavailable(RuntimeError):
    """No Docker daemon answers and none can be started here; the message says what is missing."""


def log(message: str) -> None:
    print(f"[dockerhost] {message}", file=sys.stderr, flush=True)


@contextmanager
def locked(name: str):
    """An exclusive lock across processes (two test sessions must not both start dockerd or debootstrap)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _sha256(*parts: bytes | str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\0")
    return digest.hexdigest()


# -- the daemon --------------------------------------------------------------------------------------
def _client(timeout: float = 10.0):
    import docker

    client = docker.from_env(timeout=timeout)
    client.ping()
    return client


@dataclass
class Daemon:
    """A Docker client, and the dockerd process this session started (None if it found one running)."""

    client: object
    process: subprocess.Popen | None = None
    log_path: Path | None = None

    @property
    def started_here(self) -> bool:
        return self.process is not None

    def stop(self, grace: float = 30.0) -> None:
        """Stop dockerd if this session started it (SIGTERM stops its containers and containerd too)."""
        try:
            self.client.close()
        except Exception:
            pass
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _why_no_start() -> str | None:
    """None if this process can start dockerd; otherwise what is missing."""
    docker_host = os.environ.get("DOCKER_HOST", "")
    if docker_host not in ("", f"unix://{DOCKER_SOCKET}"):
        return f"DOCKER_HOST={docker_host} names another daemon; not starting a local one"
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "starting dockerd needs root (or start Docker yourself and give this user its socket)"
    if shutil.which("dockerd") is None:
        return "dockerd is not installed (as root on Debian: apt-get install docker.io; scripts/setup.sh does it)"
    return None


def ensure_daemon(wait: float = DAEMON_WAIT_S) -> Daemon:
    """A Docker client; starts Debian's dockerd in the background when none answers and root may.

    Raises DockerUnavailable, whose message says what is missing, when neither works.
    """
    try:
        return Daemon(_client())
    except Exception as exc:  # no socket, no daemon, no permission, no docker-py
        first = f"{type(exc).__name__}: {exc}"
    why = _why_no_start()
    if why:
        raise DockerUnavailable(f"no Docker daemon answers ({first}), and {why}")
    with locked("dockerd"):
        try:  # another session may have started one while this one waited for the lock
            return Daemon(_client())
        except Exception:
            pass
        pid_file = Path("/var/run/docker.pid")
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text().strip()), 0)
            except (ValueError, ProcessLookupError):
                pid_file.unlink()  # left by a dockerd that was killed: it would refuse to start
            except PermissionError:
                pass
        log_path = CACHE / "dockerd.log"
        log_file = open(log_path, "ab")
        log(f"no Docker daemon answers: starting dockerd (log: {log_path})")
        proc = subprocess.Popen(["dockerd", f"--host=unix://{DOCKER_SOCKET}"], stdout=log_file,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        log_file.close()
        daemon = Daemon(None, proc, log_path)
        deadline = time.monotonic() + wait
        last = "not started"
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            try:
                daemon.client = _client()
                log(f"dockerd ready after {wait - (deadline - time.monotonic()):.1f}s")
                return daemon
            except Exception as exc:
                last = f"{type(exc).__name__}: {exc}"
            time.sleep(0.5)
        daemon.stop(grace=10)
        tail = log_path.read_text(errors="replace").splitlines()[-15:]
        raise DockerUnavailable(f"dockerd did not answer within {wait:.0f}s ({last}; exit code {proc.returncode}); "
                                f"last lines of {log_path}:\n" + "\n".join(tail))


# -- the base image: debootstrap + docker import -----------------------------------------------------
def _deb822_entries(text: str):
    for stanza in re.split(r"\n\s*\n", text):
        fields = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.split()
        if "deb" in fields.get("types", []) and fields.get("enabled", ["yes"]) != ["no"]:
            for uri in fields.get("uris", []):
                yield uri, fields.get("suites", []), fields.get("components", [])


def _one_line_entries(text: str):
    for line in text.splitlines():
        words = re.sub(r"\[[^]]*\]", " ", line.split("#")[0]).split()  # drop [options]
        if len(words) >= 3 and words[0] == "deb":
            yield words[1], [words[2]], words[3:]


def host_debian_mirror(apt_dir: Path = Path("/etc/apt")) -> str:
    """The Debian archive this host's apt uses (not the security archive), from its sources files;
    deb.debian.org if it has none (a non-Debian host)."""
    files = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*.list")),
             *sorted((apt_dir / "sources.list.d").glob("*.sources"))]
    for path in files:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        entries = _deb822_entries(text) if path.suffix == ".sources" else _one_line_entries(text)
        for uri, suites, components in entries:
            if ("main" in components and uri.rstrip("/").endswith("/debian")
                    and not any(s.endswith("-security") for s in suites)):
                return uri.rstrip("/")
    return DEFAULT_MIRROR


def rootfs_tarball(mirror: str | None = None) -> Path:
    """A Debian bookworm minbase root filesystem as a tarball (cached): made with debootstrap."""
    mirror = mirror or host_debian_mirror()
    out = CACHE / f"rootfs-{SUITE}-minbase-{_sha256(mirror)[:8]}.tar"
    if out.is_file():
        return out
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None or os.geteuid() != 0:
        raise DockerUnavailable("making the base image here needs debootstrap as root (apt-get install "
                                "debootstrap; scripts/setup.sh does it)")
    with locked("rootfs"):
        if out.is_file():
            return out
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="sat-triton-rootfs-", dir=CACHE) as tmp:
            rootfs = Path(tmp) / "rootfs"
            log(f"debootstrap --variant=minbase {SUITE} from {mirror} ...")
            done = subprocess.run([debootstrap, "--variant=minbase", SUITE, str(rootfs), mirror],
                                  capture_output=True, text=True)
            if done.returncode != 0:
                raise DockerUnavailable(f"debootstrap failed ({done.returncode}):\n{done.stdout[-3000:]}\n"
                                        f"{done.stderr[-3000:]}")
            # as debian:*-slim leaves it: no package cache, no package lists (images run apt-get update)
            for leftover in [*rootfs.glob("var/cache/apt/archives/*.deb"), *rootfs.glob("var/lib/apt/lists/*_*")]:
                leftover.unlink()
            partial = out.with_suffix(".partial")
            with tarfile.open(partial, "w") as tar:
                tar.add(rootfs, arcname=".")
            partial.rename(out)
        log(f"rootfs {out.name}: {out.stat().st_size / 2**20:.0f} MiB in {time.monotonic() - started:.0f}s")
    return out


def local_base_image(client, mirror: str | None = None) -> str:
    """The tag of a Debian bookworm base image made here (debootstrap + docker import), cached by tag."""
    import docker.errors

    tarball = rootfs_tarball(mirror)
    tag = f"{BASE_TAG}-{tarball.stem.rsplit('-', 1)[-1]}"
    try:
        client.images.get(tag)
        return tag
    except docker.errors.ImageNotFound:
        pass
    repository, _, version = tag.partition(":")
    started = time.monotonic()
    client.api.import_image_from_file(str(tarball), repository=repository, tag=version,
                                      changes=["CMD [\"/bin/bash\"]"])
    log(f"docker import {tag}: {time.monotonic() - started:.1f}s")
    return tag


# -- the wheelhouse ------------------------------------------------------------------------------------
def _wheel_sources() -> list[Path]:
    """What sat-triton's wheel is built from: pyproject.toml, the README and the mapped package folders."""
    try:
        import tomllib
    except ImportError:  # Python < 3.11: the copy pip vendors
        from pip._vendor import tomli as tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    folders = sorted(set(project["tool"]["setuptools"]["package-dir"].values()))
    files = [ROOT / "pyproject.toml", ROOT / project["project"].get("readme", "README.md")]
    for folder in folders:
        files += sorted(p for p in (ROOT / folder).rglob("*")
                        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")
    return files


def sat_triton_wheel(dest: Path = WHEELHOUSE) -> Path:
    """sat-triton's wheel built from this checkout into ``dest`` (rebuilt only when its sources change).

    Built from a copy of just its sources, so a stale build/ or egg-info never leaks into it."""
    sources = _wheel_sources()
    digest = _sha256(*(f"{p.relative_to(ROOT)}\0".encode() + p.read_bytes() for p in sources))
    stamp = dest / ".sat_triton.sources-sha256"
    wheels = sorted(dest.glob("sat_triton-*.whl"))
    if len(wheels) == 1 and stamp.is_file() and stamp.read_text().strip() == digest:
        return wheels[0]
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sat-triton-wheel-") as tmp:
        src = Path(tmp) / "src"
        for path in sources:
            target = src / path.relative_to(ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        cmd = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(Path(tmp) / "out")]
        if _has_module("setuptools"):
            cmd.append("--no-build-isolation")  # this environment's setuptools: no index needed
        done = subprocess.run([*cmd, str(src)], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"building sat-triton's wheel failed:\n{done.stdout}\n{done.stderr}")
        (built,) = (Path(tmp) / "out").glob("sat_triton-*.whl")
        for old in wheels:
            old.unlink()
        shutil.copy2(built, dest / built.name)
    stamp.write_text(digest + "\n")
    log(f"built {built.name} from the checkout")
    return dest / built.name


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def _platform_args(machine: str | None = None) -> list[str]:
    """pip download flags for CPython 3.11 on glibc 2.36 Linux (Debian bookworm), this host's CPU."""
    machine = machine or platform.machine()
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine.lower(), machine)
    platforms = [f"manylinux_2_{minor}_{arch}" for minor in range(17, GLIBC_MINOR + 1)]
    platforms += [f"manylinux2014_{arch}"]
    if arch == "x86_64":
        platforms += ["manylinux2010_x86_64", "manylinux1_x86_64"]
    args = ["--only-binary=:all:", "--python-version", PYTHON_VERSION, "--implementation", "cp",
            "--abi", f"cp{PYTHON_VERSION.replace('.', '')}", "--abi", "abi3", "--abi", "none"]
    for tag in platforms:
        args += ["--platform", tag]
    return args


_WHEEL_NAME = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)(-\d[^-]*)?-[^-]+-[^-]+-[^-]+\.whl$")


def cpu_wheels(dest: Path = WHEELHOUSE / "cpu") -> Path:
    """The CPU image's dependency wheels in ``dest`` with a lock file, requirements.txt.

    Downloaded once per pin set (scripts/wheelhouse-cpu.txt) into the cache, then linked into dest."""
    args = _platform_args()
    pins = CPU_PINS.read_text()
    cached = CACHE / f"wheels-cpu-{_sha256(pins, *args)[:12]}"
    with locked("wheels"):
        if not (cached / "requirements.txt").is_file():
            started = time.monotonic()
            partial = cached.with_suffix(".partial")
            shutil.rmtree(partial, ignore_errors=True)
            cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(partial), *args,
                   "--requirement", str(CPU_PINS)]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"pip download for the CPU image failed:\n{done.stdout[-4000:]}\n"
                                   f"{done.stderr[-4000:]}")
            lock = []
            for wheel in sorted(partial.glob("*.whl")):
                match = _WHEEL_NAME.match(wheel.name)
                assert match, wheel.name
                lock.append(f"{match['name'].replace('_', '-').lower()}=={match['version']}")
            (partial / "requirements.txt").write_text(
                "# Written by scripts/dockerhost.py from scripts/wheelhouse-cpu.txt: every wheel here, pinned.\n"
                + "\n".join(lock) + "\n")
            shutil.rmtree(cached, ignore_errors=True)
            partial.rename(cached)
            size = sum(p.stat().st_size for p in cached.iterdir()) / 2**20
            log(f"CPU wheelhouse: {len(lock)} wheels, {size:.0f} MiB in {time.monotonic() - started:.0f}s")
    _mirror_dir(cached, dest)
    return dest


def _mirror_dir(src: Path, dest: Path) -> None:
    """Make dest hold exactly src's files (hard links where the file system allows)."""
    dest.mkdir(parents=True, exist_ok=True)
    wanted = {p.name for p in src.iterdir()}
    for stale in dest.iterdir():
        if stale.name not in wanted:
            stale.unlink()
    for path in src.iterdir():
        target = dest / path.name
        # the same file (a hard link), or the same bytes: a lock file of the same size can differ
        if target.exists() and (os.path.samefile(path, target) or filecmp.cmp(path, target, shallow=False)):
            continue
        target.unlink(missing_ok=True)
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)


def wheelhouse() -> Path:
    """wheelhouse/: sat-triton's wheel from this checkout and the CPU image's dependencies."""
    sat_triton_wheel()
    cpu_wheels()
    return WHEELHOUSE


# -- the CPU image -------------------------------------------------------------------------------------
def _context_digest(dockerfile: Path, build_args: dict[str, str], base_id: str) -> str:
    """What an image built from ``dockerfile`` depends on: the file, its build args, the base image's
    id, and every file it copies (the wheelhouse and the model repository)."""
    parts: list[bytes | str] = [dockerfile.read_bytes(), repr(sorted(build_args.items())), base_id]
    model_repository = build_args.get("MODEL_REPOSITORY", "deploy/docker/empty_model_repository")
    for folder in (WHEELHOUSE, ROOT / model_repository):
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            stat = path.stat()
            parts.append(f"{path.relative_to(ROOT)} {stat.st_size}")
            if path.suffix != ".whl" or path.name.startswith("sat_triton-"):
                parts.append(path.read_bytes())  # downloaded wheels are named by version: size is enough
    return _sha256(*parts)


def base_image(client) -> str:
    """The BASE build argument: $SAT_TRITON_IMAGE_BASE if set (pulled if absent); else the debootstrap
    base made here; else, where that cannot be made (no debootstrap, not root), Dockerfile.cpu's own
    default pulled from a registry. DockerUnavailable, saying both causes, when neither works."""
    base = os.environ.get("SAT_TRITON_IMAGE_BASE")
    if base:
        return _pulled(client, base)
    try:
        return local_base_image(client)
    except DockerUnavailable as no_local:
        try:
            return _pulled(client, REGISTRY_BASE)
        except Exception as exc:
            raise DockerUnavailable(f"{no_local}; and {REGISTRY_BASE} could not be pulled "
                                    f"({type(exc).__name__}: {exc})") from None


def _pulled(client, image: str) -> str:
    import docker.errors

    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        log(f"pulling {image} ...")
        client.images.pull(image)
    return image


@dataclass
class BuiltImage:
    tag: str
    size_bytes: int
    build_seconds: float | None  # None: the tag existed already (cached)


def cpu_image(client, base: str | None = None, model_repository: str | None = None, keep: int = 2) -> BuiltImage:
    """Build Dockerfile.cpu (cached by a tag that hashes its inputs) and return it.

    ``keep``: how many older sat-triton-cpu:test-* images to leave (older ones are removed, so a
    machine that runs the suite often does not fill its disk)."""
    import docker.errors

    wheelhouse()
    base = base or base_image(client)
    build_args = {"BASE": base}
    if model_repository:
        build_args["MODEL_REPOSITORY"] = model_repository
    base_id = client.images.get(base).id
    tag = f"{CPU_REPOSITORY}:test-{_context_digest(ROOT / 'Dockerfile.cpu', build_args, base_id)[:12]}"
    try:
        image = client.images.get(tag)
        return BuiltImage(tag, image.attrs["Size"], None)
    except docker.errors.ImageNotFound:
        pass
    started = time.monotonic()
    log(f"building Dockerfile.cpu as {tag} (BASE={base}) ...")
    try:
        image, _ = client.images.build(path=str(ROOT), dockerfile="Dockerfile.cpu", tag=tag, buildargs=build_args,
                                       rm=True, forcerm=True)
    except docker.errors.BuildError as exc:
        lines = "".join(chunk.get("stream", "") or chunk.get("error", "") for chunk in exc.build_log)
        raise RuntimeError(f"docker build -f Dockerfile.cpu failed: {exc}\n{lines[-6000:]}") from None
    seconds = time.monotonic() - started
    log(f"built {tag} in {seconds:.0f}s: {image.attrs['Size'] / 1e9:.2f} GB")
    _remove_old_test_images(client, keep=tag, count=keep)
    return BuiltImage(tag, image.attrs["Size"], seconds)


def _remove_old_test_images(client, keep: str, count: int) -> None:
    import docker.errors

    old = [img for img in client.images.list(name=CPU_REPOSITORY)
           if keep not in img.tags and any(t.startswith(f"{CPU_REPOSITORY}:test-") for t in img.tags)]
    old.sort(key=lambda img: img.attrs.get("Created", ""), reverse=True)
    for img in old[count:]:
        try:
            client.images.remove(img.id, force=False, noprune=False)
        except docker.errors.APIError:
            pass  # in use by a container: leave it


# -- command line ----------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("prepare", help="wheelhouse/ and, as root with debootstrap, the base root filesystem "
                                   "(what needs the network; no Docker daemon needed)")
    sub.add_parser("wheelhouse", help="only wheelhouse/ (sat-triton's wheel and the CPU image's dependencies)")
    image = sub.add_parser("cpu-image", help="build Dockerfile.cpu (starting dockerd if none answers and root "
                                             "may) and print its tag")
    image.add_argument("--base", help="BASE build argument (default: $SAT_TRITON_IMAGE_BASE, else the "
                                      "debootstrap base made here)")
    image.add_argument("--model_repository", help="MODEL_REPOSITORY build argument: a folder inside the "
                                                  "checkout to bake in (default: none, mount one at /models)")
    args = parser.parse_args(argv)
    if args.command in ("prepare", "wheelhouse"):
        print(wheelhouse())
        if args.command == "prepare":
            if shutil.which("debootstrap") and os.geteuid() == 0:
                print(rootfs_tarball())
            else:
                log(f"no debootstrap as root here: the container tests will pull {REGISTRY_BASE} "
                    "(or $SAT_TRITON_IMAGE_BASE) from a registry")
        return 0
    daemon = ensure_daemon()
    try:
        built = cpu_image(daemon.client, base=args.base, model_repository=args.model_repository)
    finally:
        if daemon.started_here:
            log("this command started dockerd; stopping it")
        daemon.stop()
    print(built.tag)
    return 0


if __name__ == "__main__":
    sys.exit(main())

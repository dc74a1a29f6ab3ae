"""Build the stack's images from the pinned artifacts, without a registry, cached by content.

    tags = ensure_images(client, log=print)     # {"toxiproxy": "pushctl/toxiproxy:1f2e...", ...}

Each target of `stack/Dockerfile` is tagged `pushctl/<target>:<content hash>`, the hash covering
the Dockerfile, the base image and every file the target copies in; a tag that exists is never
built again, so a warm `stack up` builds nothing. The build context is assembled from:

- the pinned Toxiproxy binary and Kafka jars (`pushctl.runtime.install`, `pushctl.runtime.kafka`);
- wheels of pushctl's dependencies, resolved for the image's interpreter rather than the host's:
  bookworm's python3 is 3.11.2, and markers such as `python_full_version < "3.11.3"` (redis-py's
  async-timeout) pull dependencies a newer host would skip. `uv pip compile --python-version
  3.11.2 --python-platform x86_64-manylinux_2_28` resolves them, constrained to the versions
  installed on the host (the image runs what the tests ran), then `pip download --no-deps
  --only-binary=:all:` fetches exactly those pins. Cached under `<cache>/docker/wheels/`;
- a wheel of pushctl itself (`pip wheel --no-deps`), rebuilt when its sources change.

pip inside a build cannot reach the package index on machines without a registry; apt can, so
the Dockerfile installs Debian packages (python3, redis-server, openjdk-17-jre-headless) with apt
and Python packages only from these wheels.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

# the Docker SDK ships no type hints (types-docker has them; either way works)
import docker  # type: ignore[import-untyped, unused-ignore]
import docker.errors  # type: ignore[import-untyped, unused-ignore]

from pushctl.contract.resources import checkout, resource
from pushctl.errors import ComponentFailed, MissingToolchain
from pushctl.runtime import install, kafka, prometheus
from pushctl.runtime.docker.spec import LABEL_CONTENT

Log = Callable[[str], None]

# the Dockerfile's order: each build reuses the last
TARGETS = ("toxiproxy", "prometheus", "redis", "kafka", "services")
IMAGE_PYTHON = "3.11.2"  # Debian bookworm's python3
IMAGE_PLATFORM = "x86_64-manylinux_2_28"  # uv's name; bookworm has glibc 2.36
PIP_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "linux_x86_64")
UV_VERSION = "0.13.9"
BASE_ENV = "PUSHCTL_DOCKER_BASE"
DEFAULT_BASES = ("debian:bookworm-slim", "pushctl/base:bookworm")  # an official image, else ours

DOCKERFILE = resource("stack/Dockerfile")
DOCKER_DIR = resource("stack/install/docker")
_SOURCES = ("pushctl", "stack/pushstack")
_BUILD_TIMEOUT_S = 1800


def ensure_images(client: docker.DockerClient, cache: Path, log: Log, *, force: bool = False) -> dict[str, str]:
    """The tag of every target, building those that do not exist yet."""
    if not DOCKERFILE.is_file():
        raise MissingToolchain(f"{DOCKERFILE} not found: the docker runtime needs a pushctl source checkout")
    _repo()  # before any slow step: the image's wheel of pushctl is built from the sources
    base = base_image(client, log)
    toxiproxy = install.ensure_toxiproxy(cache, log)
    prometheus_bin = prometheus.ensure_prometheus(cache, log)
    libs = kafka.install_kafka(cache, log)
    deps = dependency_wheels(cache, log)
    project = project_wheel(cache, log)
    inputs: dict[str, list[tuple[str, Path]]] = {
        "toxiproxy": [("toxiproxy/toxiproxy-server", toxiproxy)],
        "prometheus": [("prometheus/prometheus", prometheus_bin)],
        "redis": [],
        "kafka": [(f"kafka/libs/{p.name}", p) for p in sorted(libs.glob("*.jar"))]
        + [(f"docker/{p.name}", p) for p in sorted(DOCKER_DIR.glob("kafka-*"))],
        "services": [(f"wheels/deps/{p.name}", p) for p in sorted(deps.glob("*.whl"))]
        + [(f"wheels/project/{project.name}", project)],
    }
    common = hashlib.sha256(DOCKERFILE.read_bytes() + base.encode()).hexdigest()
    tags: dict[str, str] = {}
    context: Path | None = None
    try:
        for i, target in enumerate(TARGETS):
            # the legacy builder builds every stage before the target: hash what they copy too
            digest = _content_hash(common, target, [f for t in TARGETS[: i + 1] for f in inputs[t]])
            tag = f"pushctl/{target}:{digest[:16]}"
            tags[target] = tag
            if not force and _exists(client, tag):
                continue
            if context is None:
                context = _context([f for files in inputs.values() for f in files], cache)
            log(f"building image {tag} (base {base}) ...")
            _build(client, context, target, tag, base, digest)
            _prune_old(client, target, keep=tag)
    finally:
        if context is not None:
            shutil.rmtree(context, ignore_errors=True)
    return tags


# ---- base image -----------------------------------------------------------------------------------
def base_image(client: docker.DockerClient, log: Log) -> str:
    """The base to build on: $PUSHCTL_DOCKER_BASE, an official bookworm-slim, or ours (made here)."""
    wanted = os.environ.get(BASE_ENV)
    candidates = (wanted,) if wanted else DEFAULT_BASES
    for name in candidates:
        if _exists(client, name):
            return f"{name}@{client.images.get(name).id}"
    if not wanted:
        try:
            client.images.pull(*DEFAULT_BASES[0].split(":"))
            return f"{DEFAULT_BASES[0]}@{client.images.get(DEFAULT_BASES[0]).id}"
        except docker.errors.APIError:
            log(f"cannot pull {DEFAULT_BASES[0]}; building {DEFAULT_BASES[1]} without a registry ...")
        script = DOCKER_DIR / "base-image.sh"
        done = subprocess.run([str(script)], capture_output=True, text=True, check=False, timeout=900)
        if done.returncode == 0 and _exists(client, DEFAULT_BASES[1]):
            return f"{DEFAULT_BASES[1]}@{client.images.get(DEFAULT_BASES[1]).id}"
        raise MissingToolchain(
            f"no base image: {DEFAULT_BASES[0]} cannot be pulled and {script} failed:\n{_tail(done.stderr)}",
            hint=f"run {script} as root, or set {BASE_ENV} to a local Debian bookworm image",
        )
    raise MissingToolchain(f"{BASE_ENV}={wanted}: no such image on this engine (it is never pulled)")


# ---- wheels -------------------------------------------------------------------------------------
def dependency_wheels(cache: Path, log: Log) -> Path:
    """Wheels of pushctl's dependencies for the image's Python, resolved and fetched on the host."""
    requirements = _project_requirements()
    constraints = sorted(f"{name}=={ver}" for name, ver in _installed().items())
    key = hashlib.sha256(
        "\n".join([IMAGE_PYTHON, IMAGE_PLATFORM, UV_VERSION, *requirements, "--", *constraints]).encode()
    ).hexdigest()[:16]
    out = cache / "docker" / "wheels" / f"deps-{key}"
    if (out / ".complete").is_file():
        return out
    log(f"resolving pushctl's dependencies for python {IMAGE_PYTHON} ({IMAGE_PLATFORM}) ...")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".deps-", dir=out.parent))
    try:
        (staging / "requirements.in").write_text("\n".join(requirements) + "\n")
        (staging / "constraints.txt").write_text("\n".join(constraints) + "\n")
        _run(
            [str(_uv(cache, log)), "pip", "compile", "--quiet", "--no-header", "--no-annotate",
             "--python-version", IMAGE_PYTHON, "--python-platform", IMAGE_PLATFORM,
             "-c", str(staging / "constraints.txt"), "-o", str(staging / "pins.txt"),
             str(staging / "requirements.in")],
            "uv pip compile",
        )  # fmt: skip
        platforms = [arg for p in PIP_PLATFORMS for arg in ("--platform", p)]
        _run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
             "--no-deps", "--only-binary=:all:", *platforms, "--python-version", IMAGE_PYTHON,
             "--implementation", "cp", "--abi", "cp311", "--abi", "abi3", "--abi", "none",
             "-r", str(staging / "pins.txt"), "-d", str(staging)],
            "pip download",
        )  # fmt: skip
        (staging / ".complete").write_text(key + "\n")
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def project_wheel(cache: Path, log: Log) -> Path:
    """pushctl's own wheel (the toolkit and the stack's services), rebuilt when a source changes."""
    repo = _repo()
    digest = hashlib.sha256()
    for path in [repo / "pyproject.toml", *(p for src in _SOURCES for p in sorted((repo / src).rglob("*.py")))]:
        digest.update(str(path.relative_to(repo)).encode() + b"\0" + path.read_bytes())
    out = cache / "docker" / "wheels" / f"project-{digest.hexdigest()[:16]}"
    found = sorted(out.glob("*.whl"))
    if found:
        return found[0]
    log("building pushctl's wheel ...")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".project-", dir=out.parent))
    try:
        argv = [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check", "--no-deps"]
        # hatchling in this environment builds offline; else pip fetches it into an isolated env
        argv += ["--no-build-isolation"] if _has("hatchling") else []
        _run([*argv, "-w", str(staging), str(repo)], "pip wheel")
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for old in out.parent.glob("project-*"):  # one project wheel is enough
        if old != out:
            shutil.rmtree(old, ignore_errors=True)
    return sorted(out.glob("*.whl"))[0]


def _repo() -> Path:
    """The source checkout: the image's wheel of pushctl is built from it, not from an installed copy."""
    root = checkout()
    if root is None:
        raise MissingToolchain(
            "the docker runtime builds pushctl's wheel from the sources: it needs a pushctl source checkout",
            hint="run it from a clone of pushctl (./dev setup), or use --runtime process",
        )
    return root


def _uv(cache: Path, log: Log) -> Path:
    """uv, pinned, in a virtualenv of its own under the cache (it is not a runtime dependency)."""
    on_path = shutil.which("uv")
    if on_path and _version([on_path, "--version"]).endswith(UV_VERSION):
        return Path(on_path)
    venv = cache / "tools" / f"uv-{UV_VERSION}"
    uv = venv / "bin" / "uv"
    if not uv.is_file():
        log(f"installing uv {UV_VERSION} into {venv} ...")
        _run([sys.executable, "-m", "venv", str(venv)], "python -m venv")
        _run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
              f"uv=={UV_VERSION}"], "pip install uv")  # fmt: skip
    return uv


def _project_requirements() -> list[str]:
    """pyproject's dependencies: the source of truth (an editable install's metadata may be older)."""
    with (_repo() / "pyproject.toml").open("rb") as fh:
        return [str(r) for r in tomllib.load(fh)["project"]["dependencies"]]


def _installed() -> dict[str, str]:
    out: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name and name.lower() != "pushctl":
            out[name.lower()] = dist.version
    return out


def _has(module: str) -> bool:
    try:
        importlib.metadata.distribution(module)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


# ---- build --------------------------------------------------------------------------------------
def _content_hash(common: str, target: str, files: Iterable[tuple[str, Path]]) -> str:
    digest = hashlib.sha256(f"{common}\0{target}\0".encode())
    for name, path in files:
        digest.update(name.encode() + b"\0" + _file_digest(path).encode())
    return digest.hexdigest()


def _file_digest(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _context(files: Iterable[tuple[str, Path]], cache: Path) -> Path:
    """The build context: the Dockerfile and every input, hard-linked where possible."""
    root = Path(tempfile.mkdtemp(prefix="context-", dir=cache / "docker"))
    shutil.copy2(DOCKERFILE, root / "Dockerfile")
    for name, src in files:
        dst = root / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)
    return root


def _build(client: docker.DockerClient, context: Path, target: str, tag: str, base: str, digest: str) -> None:
    api = client.api
    lines: list[str] = []
    try:
        stream: Any = api.build(
            path=str(context), tag=tag, target=target, buildargs={"BASE_IMAGE": base.split("@")[0]},
            labels={LABEL_CONTENT: digest}, pull=False, rm=True, forcerm=True, decode=True,
            network_mode="host",  # apt reaches the mirror even when the engine runs without iptables
            timeout=_BUILD_TIMEOUT_S,
        )  # fmt: skip
        for chunk in stream:
            if "stream" in chunk:
                lines.extend(chunk["stream"].rstrip("\n").splitlines())
            if "error" in chunk:
                raise ComponentFailed(f"building {tag} failed: {chunk['error'].strip()}\n{_tail(chr(10).join(lines))}")
    except docker.errors.APIError as exc:
        raise ComponentFailed(f"building {tag} failed: {exc.explanation or exc}") from exc
    if not _exists(client, tag):
        raise ComponentFailed(f"building {tag} produced no image:\n{_tail(chr(10).join(lines))}")


def _prune_old(client: docker.DockerClient, target: str, *, keep: str) -> None:
    """Older builds of the same target; an image a container still uses stays."""
    for image in client.images.list(name=f"pushctl/{target}"):
        for tag in image.tags:
            if tag != keep and tag.startswith(f"pushctl/{target}:"):
                try:
                    client.images.remove(tag, noprune=False)
                except docker.errors.APIError:
                    pass


def _exists(client: docker.DockerClient, name: str) -> bool:
    try:
        client.images.get(name)
    except docker.errors.ImageNotFound:
        return False
    return True


def _run(argv: list[str], what: str) -> None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ComponentFailed(f"{what} failed: {exc}") from exc
    if done.returncode != 0:
        raise ComponentFailed(f"{what} failed (exit {done.returncode}):\n{_tail(done.stderr or done.stdout)}")


def _version(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30).stdout.strip()
    except OSError:
        return ""


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def main() -> None:
    """`stack/install/docker/images.sh`: build what `stack up --runtime docker` would, print the tags."""
    import argparse

    from pushctl.runtime.docker.engine import connect
    from pushctl.runtime.paths import cache_dir

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--force", action="store_true", help="build every target again")
    args = ap.parse_args()
    tags = ensure_images(connect(), cache_dir(), lambda msg: print(msg, file=sys.stderr), force=args.force)  # noqa: T201 - a command-line report: printing is its job
    for target, tag in tags.items():
        print(f"{target}\t{tag}")  # noqa: T201 - the script's output

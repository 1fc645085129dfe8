"""A container build context for one model version, and building it with Podman or Docker.

>>> context = docker_context("churn@champion", "build/churn")
>>> build_image(context)                      # podman build (docker when podman is absent)
'shipyard-churn:3'

The context holds everything the image needs, nothing fetched from the project at run time:

    Dockerfile          slim Python base (ARG BASE), non-root user, HEALTHCHECK, `shipyard serve`
    requirements.txt    the packages, pinned (with sha256 from uv.lock when there is one)
    wheels/             shipyard itself, as a wheel
    project/.shipyard/  a small SQLite project holding only this version (same name and number,
                        its aliases, its blobs checked by sha256) and the `[serving.NAME]` options
    project/*.py        the hook modules those options name, copied from the project folder
    deployment.json     what was packaged, from which project, with which requirements

The model is served under the name and version number it has in the source project, so the
prediction log inside the container records the same `model` and `version` as everywhere else.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import shipyard
from shipyard.deploy.folder import check_output_folder, staged_folder
from shipyard.deploy.requirements import (
    Requirements,
    build_wheel,
    installed_requirements,
    locked_requirements,
    normalise,
    repack_wheel,
    source_tree,
)
from shipyard.errors import InvalidInput, ShipyardError
from shipyard.project import SETTINGS_TEMPLATE, Project, current

if TYPE_CHECKING:
    from shipyard.registry.versions import ModelVersion

APP_DIR = "/srv/shipyard"  # the image's project folder; `.shipyard/` is inside it
APP_HOME = f"{APP_DIR}/.shipyard"
APP_UID = 10001
DEFAULT_PORT = 8080
HEALTH_LIVE = "/v2/health/live"
HEALTH_READY = "/v2/health/ready"
MANIFEST = "deployment.json"
CA_SECRET = "pip-ca"
HOOK_KEYS = ("preprocess", "postprocess", "filters")

_SEGMENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE = re.compile(
    rf"^(?:[A-Za-z0-9.-]+(?::[0-9]+)?/)?{_SEGMENT}(?:/{_SEGMENT})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$"
)


class BuildFailed(ShipyardError):
    """The image build tool ran and failed; the message ends with its last lines."""

    exit_code = 1


# -- names and option checks ------------------------------------------------------------------


def resource_name(model: str) -> str:
    """`shipyard-<model>` as a lowercase DNS label: a valid image name and Kubernetes name."""
    slug = re.sub(r"[^a-z0-9]+", "-", model.lower()).strip("-")
    return f"shipyard-{slug}"[:63].rstrip("-")


def default_tag(model: str, version: int) -> str:
    """The image tag `deploy docker --build` gives and `deploy k8s` expects by default."""
    return f"{resource_name(model)}:{version}"


def check_image(value: str, option: str) -> str:
    if not isinstance(value, str) or len(value) > 255 or not _IMAGE.match(value):
        raise InvalidInput(
            f"{option} {value!r} is not an image reference: expected [REGISTRY/]NAME[:TAG]"
            "[@sha256:DIGEST] with a lowercase name, e.g. python:3.11-slim or "
            "registry.example.com/team/churn:3"
        )
    return value


def check_port(value: int, option: str = "--port") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
        raise InvalidInput(f"{option} must be an integer between 1 and 65535; got {value!r}")
    return value


def check_positive(value: int, option: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput(f"{option} must be an integer >= 1; got {value!r}")
    return value


def default_base(version: ModelVersion) -> str:
    """`python:X.Y-slim` for the Python the version was saved with (this one's when unknown)."""
    import platform

    recorded = str(version.dependencies.get("python") or platform.python_version())
    major_minor = ".".join(recorded.split(".")[:2])
    return f"python:{major_minor}-slim"


def serve_command(ref: str, port: int, workers: int) -> list[str]:
    """The server's command line inside the container (listening on every interface)."""
    return ["shipyard", "serve", ref, "--host", "0.0.0.0", "--port", str(port),
            "--workers", str(workers)]  # fmt: skip


# -- the build context ------------------------------------------------------------------------


@dataclass(frozen=True)
class DockerContext:
    """A finished build context: where it is and what it packages."""

    path: Path
    model: str
    version: int
    requested: str  # the reference asked for, e.g. churn@champion
    base: str
    port: int
    workers: int
    tag: str  # the default image tag
    requirements: str  # where the pins came from: "uv.lock" or "installed distributions"
    hashed: bool  # whether every requirement carries its sha256
    wheel: str  # shipyard's wheel, under wheels/

    @property
    def dockerfile(self) -> Path:
        return self.path / "Dockerfile"


def docker_context(
    ref: str,
    out: Path | str,
    *,
    base: str | None = None,
    port: int = DEFAULT_PORT,
    workers: int = 1,
    project: Project | None = None,
) -> DockerContext:
    """Write the build context for the version `ref` names (NAME, NAME@VERSION, NAME@ALIAS)
    into the new or empty folder `out`: whole, or not at all."""
    from shipyard.registry.transfer import copy_version
    from shipyard.registry.versions import get

    check_port(port)
    check_positive(workers, "--workers")
    project = project or current()
    version = get(ref, project=project)
    base = check_image(base if base is not None else default_base(version), "--base")
    out_path = check_output_folder(Path(out))
    serving = dict(project.settings.serving.get(version.name, {}))
    requirements = _requirements(version)
    hooks = _hook_sources(serving, version.name, project, requirements)
    with staged_folder(out_path) as stage:
        (stage / "requirements.txt").write_text(requirements.text)
        root = source_tree()
        wheel = build_wheel(root, stage / "wheels") if root else repack_wheel(stage / "wheels")
        folder = stage / "project"
        home = folder / ".shipyard"
        home.mkdir(parents=True)
        (home / "shipyard.toml").write_text(_settings_text(version.name, serving, project))
        target = Project.init(
            home,
            database_url=f"sqlite:///{home / 'shipyard.db'}",
            artifact_url=str(home / "artifacts"),
            artifact_options={},
            s3_endpoint_url=None,
        )
        try:
            transfer = copy_version(version.ref, source=project, target=target)
        finally:
            target.close()
        for module, path in hooks.items():
            _copy_module(path, folder, module)
        (home / "shipyard.db.migrate.lock").unlink(missing_ok=True)
        context = DockerContext(
            path=out_path,
            model=version.name,
            version=version.version,
            requested=ref,
            base=base,
            port=port,
            workers=workers,
            tag=default_tag(version.name, version.version),
            requirements=requirements.source,
            hashed=requirements.hashed,
            wheel=wheel.name,
        )
        manifest = _manifest(context, version, transfer.source, requirements, hooks, project)
        (stage / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        (stage / "Dockerfile").write_text(render_dockerfile(context, version))
        (stage / ".dockerignore").write_text("**/__pycache__\n**/*.pyc\n")
    return context


def _requirements(version: ModelVersion) -> Requirements:
    """The pins for shipyard[serve] and what the model needs; refused when they disagree."""
    from shipyard.registry.flavors import get_flavor

    needed = {k: str(v) for k, v in version.dependencies.items() if k != "python"}
    extras = {"serve"}
    if version.onnx is not None or version.flavor == "onnx":
        extras.add("onnx")  # serving runs the ONNX sibling when the version has one
    if version.onnx is not None:
        needed.update(get_flavor("onnx").dependencies(version.onnx["meta"]))
    root = source_tree()
    if root is not None:
        requirements = locked_requirements(root, extras)
    else:
        requirements = installed_requirements(extras, needed)
    missing, different = requirements.missing_or_different(needed)
    where = f"{root / 'uv.lock'}" if root else "the installed distributions"
    if missing:
        raise InvalidInput(
            f"{version.ref} needs {', '.join(missing)}, which {where} does not provide for "
            "shipyard[serve]: add it to shipyard's dependencies (or an extra) and lock it, then "
            "package the model again"
        )
    if different:
        raise InvalidInput(
            f"{version.ref} was saved with {', '.join(different)} in {where}: a model loaded "
            "under other library versions may fail or predict differently; register it again "
            "from an environment synced from the lock (`uv sync --frozen`)"
        )
    return requirements


def _settings_text(name: str, serving: Mapping[str, Any], source: Project) -> str:
    import tomli_w

    if not serving:
        return SETTINGS_TEMPLATE
    header = (
        f"\n# Serving options of {name}, copied from {source.settings.settings_file.resolve()}"
        "\n# when this image was packaged (a Kubernetes ConfigMap may replace this file).\n"
    )
    return SETTINGS_TEMPLATE + header + tomli_w.dumps({"serving": {name: dict(serving)}})


def hook_modules(serving: Mapping[str, Any]) -> list[str]:
    """The top-level modules the `module:function` hooks of serving options live in."""
    references: list[str] = []
    for key in HOOK_KEYS:
        value = serving.get(key)
        references += [value] if isinstance(value, str) else list(value or [])
    modules = {str(ref).partition(":")[0].split(".")[0] for ref in references if ref}
    return sorted(m for m in modules if m)


def _hook_sources(
    serving: Mapping[str, Any], name: str, project: Project, requirements: Requirements
) -> dict[str, Path]:
    """Hook modules to copy from the project folder; installed ones must be in the pins."""
    from shipyard.registry.flavors.packages import distributions_for

    root = project.home.resolve().parent
    found: dict[str, Path] = {}
    for module in hook_modules(serving):
        for candidate in (root / f"{module}.py", root / module):
            if candidate.exists():
                found[module] = candidate
                break
        else:
            if importlib.util.find_spec(module) is None:
                raise InvalidInput(
                    f"[serving.{name}] names hook module {module!r}, which is neither in the "
                    f"project folder {root} nor installed: the image could not import it"
                )
            providers = {normalise(d) for d in distributions_for([module])}
            if providers and not providers & set(requirements.pins):
                raise InvalidInput(
                    f"[serving.{name}] names hook module {module!r}, installed here from "
                    f"{', '.join(sorted(providers))}, which the image's requirements do not "
                    "pin: move the hook into the project folder, or add that package"
                )
    return found


def _copy_module(path: Path, folder: Path, module: str) -> None:
    if path.is_dir():
        shutil.copytree(
            path, folder / module, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
    else:
        shutil.copy2(path, folder / f"{module}.py")


def _manifest(
    context: DockerContext,
    version: ModelVersion,
    source: Any,
    requirements: Requirements,
    hooks: Mapping[str, Path],
    project: Project,
) -> dict[str, Any]:
    import hashlib

    return {
        "model": version.name,
        "version": version.version,
        "requested": context.requested,
        "aliases": version.aliases,
        "flavor": version.flavor,
        "artifact": version.artifact,
        "onnx_artifact": None if version.onnx is None else version.onnx["artifact"],
        "lineage": {
            "run_id": version.run_id,
            "datasets": version.datasets,
            "note": "references into the source project; its runs and datasets are not copied",
        },
        "source_project": asdict(source),
        "requirements": {
            "source": requirements.source,
            "hashed": requirements.hashed,
            "sha256": hashlib.sha256(requirements.text.encode()).hexdigest(),
        },
        "shipyard": {"version": shipyard.__version__, "wheel": context.wheel},
        "hook_modules": sorted(hooks),
        "image": {
            "base": context.base,
            "tag": context.tag,
            "port": context.port,
            "workers": context.workers,
            "command": serve_command(version.ref, context.port, context.workers),
        },
        "packaged_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "packaged_by": project.user,
    }


def render_dockerfile(context: DockerContext, version: ModelVersion) -> str:
    """The Dockerfile of a context; hadolint finds nothing to say about it."""
    venv = "/opt/shipyard/venv"
    pip = f"{venv}/bin/pip install --no-cache-dir"
    if context.hashed:
        install = f"{pip} --require-hashes --no-deps -r /opt/shipyard/requirements.txt"
        pinned = "pinned from uv.lock, each checked against its sha256"
    else:
        install = f"{pip} -r /opt/shipyard/requirements.txt"
        pinned = "pinned from the installed distributions (no hashes)"
    probe = (
        "import urllib.request; "
        f"urllib.request.urlopen('http://127.0.0.1:{context.port}{HEALTH_READY}', timeout=4)"
    )
    labels = {
        "org.opencontainers.image.title": resource_name(version.name),
        "org.opencontainers.image.version": str(version.version),
        "org.opencontainers.image.description": f"shipyard serving {version.ref}",
        "ai.shipyard.model": version.name,
        "ai.shipyard.version": str(version.version),
        "ai.shipyard.artifact": f"sha256:{version.artifact}",
    }
    label_lines = " \\\n      ".join(f"{k}={json.dumps(v)}" for k, v in labels.items())
    command = json.dumps(serve_command(version.ref, context.port, context.workers))
    return f"""\
# Serves {version.ref} ({context.requested} when packaged), made by shipyard {shipyard.__version__}.
# Build: podman build --format docker -t {context.tag} .   (or: docker build -t {context.tag} .)
# Run:   podman run --rm -p 127.0.0.1:{context.port}:{context.port} {context.tag}
ARG BASE={context.base}
FROM ${{BASE}}

LABEL {label_lines}

ENV PYTHONDONTWRITEBYTECODE=1 \\
    PYTHONUNBUFFERED=1 \\
    PIP_DISABLE_PIP_VERSION_CHECK=1 \\
    PATH={venv}/bin:$PATH \\
    SHIPYARD_HOME={APP_HOME}

RUN groupadd --system --gid {APP_UID} shipyard \\
    && useradd --system --uid {APP_UID} --gid {APP_UID} --home-dir {APP_DIR} \\
       --no-create-home --shell /usr/sbin/nologin shipyard

# Dependencies first, {pinned};
# this layer is reused until they change. A CA bundle for pip can be lent as the build
# secret "{CA_SECRET}" (podman/docker build --secret id={CA_SECRET},src=FILE); no layer keeps it.
COPY requirements.txt /opt/shipyard/requirements.txt
RUN --mount=type=secret,id={CA_SECRET} \\
    if [ -s /run/secrets/{CA_SECRET} ]; then export PIP_CERT=/run/secrets/{CA_SECRET}; fi \\
    && python3 -m venv {venv} \\
    && {install}

COPY wheels/ /opt/shipyard/wheels/
RUN {pip} --no-deps --no-index /opt/shipyard/wheels/{context.wheel} \\
    && {venv}/bin/pip check \\
    && shipyard version

# The model's own project: this version only, writable by the server (SQLite, prediction log).
COPY --chown={APP_UID}:{APP_UID} project/ {APP_DIR}/
COPY {MANIFEST} /opt/shipyard/{MANIFEST}

USER {APP_UID}:{APP_UID}
WORKDIR {APP_DIR}
EXPOSE {context.port}
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \\
    CMD {json.dumps(["python3", "-c", probe])}
CMD {command}
"""


# -- building ---------------------------------------------------------------------------------


def build_tool() -> tuple[str, str]:
    """("podman", path) when Podman is installed, else ("docker", path)."""
    for name in ("podman", "docker"):
        found = shutil.which(name)
        if found:
            return name, found
    raise InvalidInput(
        "building an image needs Podman or Docker, and neither is on PATH: install one "
        "(Debian: apt-get install podman buildah), or build the context elsewhere"
    )


def build_command(
    context: Path, tag: str, *, tool: tuple[str, str], ca_bundle: Path | None = None
) -> list[str]:
    name, path = tool
    command = [path, "build"]
    if name == "podman":
        # chroot isolation builds where the default OCI runtime cannot (nested, odd cgroups);
        # the docker format keeps HEALTHCHECK, which the OCI image format has no field for.
        command += ["--isolation=chroot", "--format", "docker"]
    command += ["--tag", tag]
    if ca_bundle is not None:
        command += ["--secret", f"id={CA_SECRET},src={ca_bundle}"]
    return [*command, str(context)]


def build_image(
    context: DockerContext | Path | str,
    *,
    tag: str | None = None,
    ca_bundle: Path | str | None = None,
    on_output: Callable[[str], None] | None = None,
) -> str:
    """Build the image of a context with Podman (Docker when Podman is absent); its tag.

    `ca_bundle` is lent to pip as a build secret (for a network that re-signs TLS); it is
    not stored in the image. `on_output` receives the build's output line by line.
    """
    folder = Path(context.path if isinstance(context, DockerContext) else context)
    if not (folder / "Dockerfile").is_file():
        raise InvalidInput(
            f"{folder} has no Dockerfile: expected a `shipyard deploy docker` output"
        )
    if tag is None:
        if not isinstance(context, DockerContext):
            manifest = json.loads((folder / MANIFEST).read_text())
            tag = str(manifest["image"]["tag"])
        else:
            tag = context.tag
    check_image(tag, "--tag")
    bundle = None
    if ca_bundle is not None:
        bundle = Path(ca_bundle).absolute()
        if not bundle.is_file():
            raise InvalidInput(f"--ca-bundle {bundle} is not a file: expected a PEM CA bundle")
    tool = build_tool()
    command = build_command(folder, tag, tool=tool, ca_bundle=bundle)
    env = {**os.environ, "DOCKER_BUILDKIT": "1"}  # docker needs BuildKit for build secrets
    tail: deque[str] = deque(maxlen=25)
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    ) as process:
        assert process.stdout is not None
        try:
            for line in process.stdout:
                tail.append(line.rstrip())
                if on_output is not None:
                    on_output(line.rstrip())
        except BaseException:
            process.terminate()
            raise
        code = process.wait()
    if code != 0:
        raise BuildFailed(
            f"`{' '.join(command)}` failed with exit status {code}; the context in {folder} is "
            "complete, fix the cause and build it again. Last lines:\n" + "\n".join(tail)
        )
    return tag

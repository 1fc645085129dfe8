"""The real thing: the context built into an image by Podman, from a Debian base made here by
mmdebstrap (no registry is reachable for base images), run, and asked for predictions on
127.0.0.1. The container answers what the model itself answers, as the same name and version,
and its prediction log says so too.

Slow (minutes: mmdebstrap, then pip installing the locked packages from PyPI), so it is marked
`container`; it still runs in `make test`. The base tarball is kept in pytest's cache folder
between sessions (`pytest --cache-clear` makes it again); the images a session imports or
builds are removed at its end.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from deploy_helpers import FEATURES, Registered, churn_frame, free_port

from shipyard.deploy.docker import APP_HOME, build_image, docker_context

# Debian's own packages, no registry: python3 with venv (and pip, which the venv seeds from).
MMDEBSTRAP = [
    "--variant=minbase",
    "--include=python3,python3-venv,python3-pip",
    "--dpkgopt=path-exclude=/usr/share/man/*",
    "--dpkgopt=path-exclude=/usr/share/doc/*",
    "--dpkgopt=path-exclude=/usr/share/locale/*",
    "bookworm",
]
# This machine's cgroups make Podman's default runtime (crun) fail; runc needs the ulimits.
RUN_FLAGS = ["--runtime", "runc", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]
READY_WITHIN_S = 120


def podman() -> str:
    """Podman's path; the test is skipped, loudly, only when Podman cannot run at all."""
    found = shutil.which("podman")
    if found is None:
        pytest.skip(
            "PODMAN IS NOT INSTALLED: the container image test cannot run. `make test` installs "
            "it (make system-packages: podman buildah runc busybox-static mmdebstrap)"
        )
    info = subprocess.run([found, "info"], capture_output=True, text=True, check=False)
    if info.returncode != 0:
        pytest.skip(f"PODMAN CANNOT RUN HERE (`podman info` failed): {info.stderr.strip()[-500:]}")
    return found


def run(*command: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


def must(*command: str, timeout: float = 600) -> str:
    done = run(*command, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(command)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="session")
def base_image(request: pytest.FixtureRequest) -> Iterator[str]:
    """A Debian bookworm image with python3, imported from a tarball made by mmdebstrap."""
    podman_bin = podman()
    mmdebstrap = shutil.which("mmdebstrap")
    if mmdebstrap is None:
        pytest.fail("mmdebstrap is missing: run `make system-packages` (Debian's mmdebstrap)")
    key = hashlib.sha256(json.dumps(MMDEBSTRAP).encode()).hexdigest()[:16]
    cache = request.config.cache.mkdir("shipyard-deploy-base")
    tarball = cache / f"bookworm-python3-{key}.tar"
    started = time.monotonic()
    if not tarball.is_file():
        for stale in cache.glob("*.tar"):
            stale.unlink()
        partial = cache / f".{uuid.uuid4().hex}.partial.tar"
        try:
            made = run(mmdebstrap, "--format=tar", *MMDEBSTRAP, str(partial), timeout=900)
            assert made.returncode == 0, f"mmdebstrap failed:\n{made.stderr[-3000:]}"
            partial.rename(tarball)
        finally:
            partial.unlink(missing_ok=True)
    made_s = time.monotonic() - started
    tag = f"localhost/shipyard-test-base:{uuid.uuid4().hex[:12]}"
    must(podman_bin, "import", "--quiet", str(tarball), tag)
    print(f"\nbase image: tarball {made_s:.0f} s, import {time.monotonic() - started:.0f} s")
    try:
        yield tag
    finally:
        run(podman_bin, "rmi", "--force", tag)


def wait_ready(port: int, container: str) -> float:
    url = f"http://127.0.0.1:{port}/v2/health/ready"
    started = time.monotonic()
    while time.monotonic() - started < READY_WITHIN_S:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return time.monotonic() - started
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        state = run("podman", "inspect", "--format", "{{.State.Running}}", container)
        if state.stdout.strip() != "true":
            logs = run("podman", "logs", container)
            pytest.fail(f"the container stopped before it was ready:\n{logs.stdout}{logs.stderr}")
        time.sleep(0.5)
    logs = run("podman", "logs", container)
    pytest.fail(f"not ready within {READY_WITHIN_S} s:\n{logs.stdout}{logs.stderr}")


def post(url: str, body: Any) -> Any:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def ca_bundle() -> Path | None:
    """The CA bundle pip uses on this host, lent to the build (a network may re-sign TLS)."""
    for name in ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        value = os.environ.get(name)
        if value and Path(value).is_file():
            return Path(value)
    return None


@pytest.mark.container
@pytest.mark.timeout(900)
def test_the_built_image_serves_the_models_own_predictions(
    registered: Registered, base_image: str, tmp_path: Path
) -> None:
    podman_bin = podman()
    context = docker_context(
        "churn@champion", tmp_path / "ctx", base=base_image, project=registered.project
    )
    tag = f"localhost/shipyard-test-churn:{uuid.uuid4().hex[:12]}"
    container = f"shipyard-test-{uuid.uuid4().hex[:12]}"
    port = free_port()
    started = time.monotonic()
    try:
        assert build_image(context, tag=tag, ca_bundle=ca_bundle()) == tag
        built_s = time.monotonic() - started
        healthcheck = must(podman_bin, "image", "inspect", "--format",
                           "{{json .Config.Healthcheck}}", tag)  # fmt: skip
        assert "/v2/health/ready" in healthcheck, healthcheck
        user = must(podman_bin, "image", "inspect", "--format", "{{.Config.User}}", tag)
        assert user.strip() == "10001:10001"

        must(podman_bin, "run", "--detach", "--name", container, *RUN_FLAGS,
             "--publish", f"127.0.0.1:{port}:{context.port}", tag)  # fmt: skip
        ready_s = wait_ready(port, container)
        assert must(podman_bin, "exec", container, "id", "-u").strip() == "10001"
        assert run(podman_bin, "healthcheck", "run", container).returncode == 0

        frame = churn_frame(20, seed=11)[FEATURES]
        records = json.loads(frame.to_json(orient="records"))
        answer = post(f"http://127.0.0.1:{port}/predict", records)
        expected = registered.champion.load(project=registered.project).predict(frame)
        assert answer["model"] == "churn"
        assert answer["version"] == 2  # the number it has in the source project
        assert answer["predictions"] == expected.tolist()

        # A graceful stop flushes the prediction log, which names the same model and version.
        must(podman_bin, "stop", "--time", "30", container)
        logs = Path(tempfile.mkdtemp(dir=tmp_path))
        must(podman_bin, "cp", f"{container}:{APP_HOME}/predictions", str(logs))
        files = sorted(logs.rglob("*.parquet"))
        assert files, f"no prediction log files in {logs}"
        logged = pd.concat([pd.read_parquet(f) for f in files])
        assert set(zip(logged["model"], logged["version"], strict=True)) == {("churn", 2)}
        print(
            f"\nimage: build {built_s:.0f} s, ready {ready_s:.1f} s after start, "
            f"total {time.monotonic() - started:.0f} s"
        )
    finally:
        run(podman_bin, "rm", "--force", "--time", "5", container)
        run(podman_bin, "rmi", "--force", tag)

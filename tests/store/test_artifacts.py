"""The content-addressed artifact store, on a local folder and on an S3 bucket (SeaweedFS)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from shipyard.errors import ArtifactCorrupted, ArtifactNotFound, InvalidInput
from shipyard.project import Project
from shipyard.store.artifacts import ArtifactStore

if TYPE_CHECKING:
    from conftest import S3Project, S3Server

MIB = 1024 * 1024
# A big file per backend, and a bound on Python's peak memory while it goes in and out; the
# bound does not grow with the file. Local: a few 4 MiB chunks (~8 MiB measured). S3: s3fs
# holds an 8 MiB upload part about three times over (its buffer, the part, the request;
# ~29 MiB measured), so its file is bigger to keep the bound well below the file's size.
BIG = {"local": 64 * MIB, "s3": 128 * MIB}
MEMORY_BOUND = {"local": 16 * MIB, "s3": 40 * MIB}


@dataclass
class Backend:
    """An artifact store plus the means to look behind its back."""

    name: str
    store: ArtifactStore
    url: str
    options: dict[str, Any]
    cache_dir: Path
    overwrite: Callable[[str, bytes], None]
    """Replace the stored bytes of a digest, bypassing the store."""
    tmp_entries: Callable[[], list[str]]
    """Whatever sits under tmp/: files (local) or objects and multipart uploads (S3)."""
    tmp_bytes: Callable[[], int]
    """How many bytes have reached tmp/ (S3: counting the parts of unfinished uploads)."""


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    cache = tmp_path / "cache"
    if request.param == "local":
        root = tmp_path / "artifacts"
        store = ArtifactStore(str(root), cache_dir=cache)

        def overwrite_local(digest: str, data: bytes) -> None:
            Path(store.key(digest)).write_bytes(data)

        def local_tmp() -> list[str]:
            folder = root / "tmp"
            return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []

        def local_tmp_bytes() -> int:
            return sum((root / "tmp" / name).stat().st_size for name in local_tmp())

        return Backend(
            "local", store, str(root), {}, cache, overwrite_local, local_tmp, local_tmp_bytes
        )

    server = request.getfixturevalue("s3_server")
    bucket = server.create_bucket()
    client = server.client()
    url = f"s3://{bucket}/p"
    options = server.storage_options()
    store = ArtifactStore(url, options, cache_dir=cache)

    def object_key(digest: str) -> str:
        return store.key(digest).removeprefix(f"{bucket}/")

    def overwrite_s3(digest: str, data: bytes) -> None:
        client.put_object(Bucket=bucket, Key=object_key(digest), Body=data)

    def s3_tmp() -> list[str]:
        objects = client.list_objects_v2(Bucket=bucket, Prefix="p/tmp/").get("Contents", [])
        uploads = client.list_multipart_uploads(Bucket=bucket, Prefix="p/tmp/").get("Uploads", [])
        return sorted(
            [o["Key"] for o in objects if not o["Key"].endswith("/")]
            + [f"upload:{u['Key']}" for u in uploads]
        )

    def s3_tmp_bytes() -> int:
        objects = client.list_objects_v2(Bucket=bucket, Prefix="p/tmp/").get("Contents", [])
        uploads = client.list_multipart_uploads(Bucket=bucket, Prefix="p/tmp/").get("Uploads", [])
        parts = [
            part
            for upload in uploads
            for part in client.list_parts(
                Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
            ).get("Parts", [])
        ]
        return sum(o["Size"] for o in objects) + sum(part["Size"] for part in parts)

    return Backend("s3", store, url, options, cache, overwrite_s3, s3_tmp, s3_tmp_bytes)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(MIB):
            digest.update(chunk)
    return digest.hexdigest()


# -- round trips and dedupe ---------------------------------------------------------------


def test_put_fetch_and_read_back(backend: Backend, tmp_path: Path) -> None:
    store = backend.store
    data = b"some bytes\n" * 1000
    blob = store.put_bytes(data)
    assert (blob.digest, blob.size, blob.created) == (_sha256(data), len(data), True)
    assert store.exists(blob.digest)
    assert store.size(blob.digest) == len(data)
    assert store.read_bytes(blob.digest) == data
    assert store.fetch(blob.digest).read_bytes() == data
    assert store.fetch(blob.digest).read_bytes() == data  # S3: from the verified cache

    source = tmp_path / "file.bin"
    source.write_bytes(b"\x00\x01" * 5000)
    from_file = store.put_file(source)
    assert from_file.digest == _sha256(source.read_bytes())
    assert store.fetch(from_file.digest).read_bytes() == source.read_bytes()

    streamed = store.put_stream(io.BytesIO(b"streamed"))
    assert store.read_bytes(streamed.digest) == b"streamed"
    assert sorted(store.digests()) == sorted({blob.digest, from_file.digest, streamed.digest})
    assert backend.tmp_entries() == []


def test_same_content_is_stored_once(backend: Backend, tmp_path: Path) -> None:
    store = backend.store
    first = store.put_bytes(b"twice")
    again = store.put_bytes(b"twice")
    assert first.created and not again.created
    assert again.digest == first.digest
    source = tmp_path / "copy.bin"
    source.write_bytes(b"twice")
    assert not store.put_file(source).created
    assert list(store.digests()) == [first.digest]
    assert backend.tmp_entries() == []  # the duplicates' staged copies are gone too


# -- corruption and bad digests -----------------------------------------------------------


def test_corrupted_blob_is_refused(backend: Backend) -> None:
    store = backend.store
    blob = store.put_bytes(b"original content")
    backend.overwrite(blob.digest, b"tampered content")

    with pytest.raises(ArtifactCorrupted, match=f"sha256:{blob.digest}.*corrupted") as caught:
        store.fetch(blob.digest)
    assert _sha256(b"tampered content") in str(caught.value)
    with pytest.raises(ArtifactCorrupted):
        store.read_bytes(blob.digest)
    # Nothing unverified was left in the download cache.
    cached = list(backend.cache_dir.rglob("*")) if backend.cache_dir.exists() else []
    assert [path for path in cached if path.is_file()] == []

    # Putting the original back (from a backup) makes it readable again.
    backend.overwrite(blob.digest, b"original content")
    assert store.read_bytes(blob.digest) == b"original content"
    assert store.fetch(blob.digest).read_bytes() == b"original content"


def test_storing_the_content_again_repairs_a_corrupted_blob(backend: Backend) -> None:
    store = backend.store
    blob = store.put_bytes(b"original content")
    backend.overwrite(blob.digest, b"tampered content")  # same size: only the hash can tell
    store.put_bytes(b"original content")  # what the ArtifactCorrupted message advises
    assert store.read_bytes(blob.digest) == b"original content"


def test_missing_digest_is_not_found(backend: Backend) -> None:
    missing = _sha256(b"never stored")
    for read in (backend.store.fetch, backend.store.read_bytes, backend.store.size):
        with pytest.raises(ArtifactNotFound, match=f"no blob sha256:{missing}"):
            read(missing)
    assert not backend.store.exists(missing)


@pytest.mark.parametrize(
    "digest",
    [
        "",
        "abc",
        "A" * 64,  # uppercase
        "g" * 64,
        "0" * 63,
        "0" * 65,
        "../" + "0" * 61,
        "sha256:" + "0" * 64,
    ],
)
def test_malformed_digest_is_invalid_input(backend: Backend, digest: str) -> None:
    store = backend.store
    for call in (store.fetch, store.read_bytes, store.exists, store.key):
        with pytest.raises(InvalidInput, match="is not a sha256 digest"):
            call(digest)


# -- large files, staging and crashes -----------------------------------------------------


def test_large_file_streams_with_bounded_memory(backend: Backend, tmp_path: Path) -> None:
    size = BIG[backend.name]
    source = tmp_path / "big.bin"
    expected = hashlib.sha256()
    with source.open("wb") as handle:
        for index in range(size // MIB):
            chunk = hashlib.sha256(str(index).encode()).digest() * (MIB // 32)
            expected.update(chunk)
            handle.write(chunk)
    digest = expected.hexdigest()
    bound = MEMORY_BOUND[backend.name]
    backend.store.exists(digest)  # S3: the client and its service model load outside the count

    tracemalloc.start()
    try:
        blob = backend.store.put_file(source)
        _, put_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        fetched = backend.store.fetch(blob.digest)
        _, fetch_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert (blob.digest, blob.size, blob.created) == (digest, size, True)
    assert _sha256_file(fetched) == digest
    assert fetched.stat().st_size == size
    assert backend.tmp_entries() == []
    assert put_peak < bound, f"put_file held {put_peak / MIB:.1f} MiB of a {size // MIB} MiB file"
    assert fetch_peak < bound, f"fetch held {fetch_peak / MIB:.1f} MiB of a {size // MIB} MiB file"


def test_staged_then_discarded_leaves_nothing(backend: Backend) -> None:
    store = backend.store
    staged = store.stage_stream(io.BytesIO(b"maybe"))
    assert staged.digest == _sha256(b"maybe")
    assert staged.size == len(b"maybe")
    assert len(backend.tmp_entries()) == 1  # staged: present, but not under its digest
    assert not store.exists(staged.digest)
    store.discard(staged)
    assert backend.tmp_entries() == []
    assert not store.exists(staged.digest)
    assert list(store.digests()) == []
    store.discard(staged)  # twice is harmless


# Runs put_stream over a stream that never ends, until it is killed.
ENDLESS_WRITER = """
import io, json, sys
from pathlib import Path
from shipyard.store.artifacts import ArtifactStore

url, options, cache = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]


def chunks():
    index = 0
    while True:
        yield index.to_bytes(8, "big") * (1024 * 1024 // 8)
        index += 1


class Endless(io.RawIOBase):
    def __init__(self):
        self.source = chunks()

    def readable(self):
        return True

    def read(self, size=-1):
        return next(self.source)


ArtifactStore(url, options, cache_dir=Path(cache)).put_stream(Endless())
print("the endless stream ended", flush=True)
sys.exit(3)
"""


def test_crash_mid_write_leaves_no_blob(backend: Backend) -> None:
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            ENDLESS_WRITER,
            backend.url,
            json.dumps(backend.options),
            str(backend.cache_dir),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60  # a bound on the wait, not a timing assertion
        while backend.tmp_bytes() == 0:
            assert writer.poll() is None, writer.communicate()
            assert time.monotonic() < deadline, "the writer never wrote to tmp/"
            time.sleep(0.05)
        os.kill(writer.pid, signal.SIGKILL)
    finally:
        if writer.poll() is None:
            writer.kill()
        writer.communicate(timeout=30)
    assert writer.returncode == -signal.SIGKILL

    store = backend.store
    assert list(store.digests()) == []
    blob = store.put_bytes(b"after the crash")
    assert blob.created
    assert store.fetch(blob.digest).read_bytes() == b"after the crash"
    assert list(store.digests()) == [blob.digest]


# -- S3 specifics: a project configured on S3, other processes, the download cache ----------


def test_project_with_artifacts_on_s3(s3_project: S3Project, s3_server: S3Server) -> None:
    import pandas as pd

    import shipyard.data as data

    project, bucket, prefix = s3_project.project, s3_project.bucket, s3_project.prefix
    assert not project.artifacts.is_local
    frame = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    version = data.add(frame, "on-s3", project=project)

    # The only object under the prefix is the blob, at its digest: nothing left in tmp/.
    listed = s3_server.client().list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/")
    keys = [item["Key"] for item in listed.get("Contents", []) if not item["Key"].endswith("/")]
    assert keys == [f"{prefix}/sha256/{version.artifact[:2]}/{version.artifact}"]
    assert list(project.artifacts.digests()) == [version.artifact]

    # A second opening of the project (another process would do the same) reads it back,
    # downloading into the project's cache folder.
    reopened = Project.open(
        project.home,
        artifact_url=f"s3://{bucket}/{prefix}",
        s3_endpoint_url=s3_server.endpoint,
        artifact_options=s3_server.storage_options(endpoint=False),
    )
    try:
        again = data.get("on-s3", project=reopened)
        assert again.content_hash == version.content_hash
        assert again.to_pandas().astype({"a": "int64"}).equals(frame)
        assert again.path().is_relative_to(project.home / "cache")
    finally:
        reopened.close()


def _same_shard(digest: str) -> bytes:
    """Content whose digest starts with the same two hex digits: it lands in the same folder."""
    index = 0
    while not _sha256(f"content {index}".encode()).startswith(digest[:2]):
        index += 1
    return f"content {index}".encode()


# Stores argv[3] in the store at argv[1] (options in argv[2]) and prints its digest.
PUT_BYTES = """
import json, sys
from shipyard.store.artifacts import ArtifactStore

print(ArtifactStore(sys.argv[1], json.loads(sys.argv[2])).put_bytes(sys.argv[3].encode()).digest)
"""


def test_s3_sees_blobs_stored_by_another_process_after_listing(
    s3_server: S3Server, tmp_path: Path
) -> None:
    url = f"s3://{s3_server.create_bucket()}/p"
    options = s3_server.storage_options()
    reader = ArtifactStore(url, options, cache_dir=tmp_path / "cache")
    first = reader.put_bytes(b"first")
    assert list(reader.digests()) == [first.digest]  # e.g. a garbage collection pass

    content = _same_shard(first.digest)
    writer = subprocess.run(
        [sys.executable, "-c", PUT_BYTES, url, json.dumps(options), content.decode()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    digest = writer.stdout.strip()
    assert digest == _sha256(content)
    assert sorted(reader.digests()) == sorted([first.digest, digest])
    assert reader.exists(digest)
    assert reader.fetch(digest).read_bytes() == content


def _s3_backend(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    server: S3Server = request.getfixturevalue("s3_server")
    url = f"s3://{server.create_bucket()}/p"
    return ArtifactStore(url, server.storage_options(), cache_dir=tmp_path / "cache")


def test_a_tampered_download_cache_is_never_handed_out(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    store = _s3_backend(request, tmp_path)
    blob = store.put_bytes(b"original content")
    cached = store.fetch(blob.digest)
    assert cached.is_relative_to(tmp_path / "cache")
    cached.write_bytes(b"tampered content")
    try:
        path = store.fetch(blob.digest)
    except ArtifactCorrupted as error:  # refusing is safe
        assert str(cached) in str(error)
    else:  # so is downloading the intact blob again
        assert path.read_bytes() == b"original content"
    assert store.read_bytes(blob.digest) == b"original content"  # the bucket's copy is intact


def test_storing_again_repairs_a_tampered_download_cache(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    store = _s3_backend(request, tmp_path)
    blob = store.put_bytes(b"original content")
    store.fetch(blob.digest).write_bytes(b"tampered content")
    store.put_bytes(b"original content")  # what the ArtifactCorrupted message advises
    assert store.fetch(blob.digest).read_bytes() == b"original content"

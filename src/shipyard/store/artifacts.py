"""The artifact store: content-addressed blobs (sha256) on any fsspec filesystem.

Layout under the root: `sha256/ab/abcdef...` for blobs, `tmp/` for writes in progress. A blob
is streamed into a temporary name while it is hashed, then renamed to its digest, so a crash
never leaves a partial blob under a real hash. Reads hash the bytes again and refuse a blob
that no longer matches.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from shipyard.errors import (
    ArtifactCorrupted,
    ArtifactError,
    ArtifactNotFound,
    ConfigError,
    InvalidInput,
)

CHUNK_SIZE = 4 * 1024 * 1024
_DIGEST = re.compile(r"^[0-9a-f]{64}$")

Progress = Callable[[int], None]
"""Called with the number of bytes just processed, for progress bars."""


@dataclass(frozen=True)
class Staged:
    """Bytes copied to a temporary name in the store, hashed, not yet visible."""

    tmp_key: str
    digest: str
    size: int


@dataclass(frozen=True)
class Blob:
    """A stored blob: its sha256 hex digest, its size, and whether this call created it."""

    digest: str
    size: int
    created: bool


def sha256_file(path: str | Path, progress: Progress | None = None) -> str:
    """The sha256 of a local file, read in chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(CHUNK_SIZE):
            digest.update(chunk)
            if progress:
                progress(len(chunk))
    return digest.hexdigest()


class ArtifactStore:
    """Content-addressed blobs in a local folder or an S3-compatible bucket."""

    def __init__(
        self,
        url: str,
        storage_options: dict[str, Any] | None = None,
        *,
        cache_dir: Path | None = None,
    ) -> None:
        options = dict(storage_options or {})
        if not url.startswith(("file://", "/")) and "://" in url:
            # Other processes add blobs at any time: a cached directory listing would hide them.
            options.setdefault("use_listings_cache", False)
        try:
            self.fs, root = fsspec.core.url_to_fs(url, **options)
        except (ImportError, ValueError) as exc:
            hint = " (pip install 'shipyard[s3]')" if url.startswith("s3") else ""
            raise ConfigError(f"cannot open artifact store {url!r}: {exc}{hint}") from None
        self.url = url
        self.root = root.rstrip("/")
        self.is_local = isinstance(self.fs, LocalFileSystem)
        self.cache_dir = cache_dir

    def __repr__(self) -> str:
        return f"ArtifactStore({self.url!r})"

    # -- paths ----------------------------------------------------------------------------

    def key(self, digest: str) -> str:
        """Where the blob with this digest lives in the filesystem."""
        _check_digest(digest)
        return f"{self.root}/sha256/{digest[:2]}/{digest}"

    def _tmp_key(self) -> str:
        return f"{self.root}/tmp/{uuid.uuid4().hex}"

    # -- writing --------------------------------------------------------------------------

    def put_file(self, path: str | Path, progress: Progress | None = None) -> Blob:
        """Store a local file, streaming it; the same content is stored once."""
        return self.commit(self.stage_file(path, progress))

    def put_bytes(self, data: bytes) -> Blob:
        """Store a small in-memory value."""
        return self.commit(self.stage_stream(io.BytesIO(data)))

    def put_stream(self, stream: IO[bytes], progress: Progress | None = None) -> Blob:
        """Store everything readable from `stream` without holding it in memory."""
        return self.commit(self.stage_stream(stream, progress))

    def stage_file(self, path: str | Path, progress: Progress | None = None) -> Staged:
        source = Path(path)
        if not source.is_file():
            raise InvalidInput(f"cannot store {source}: no such file")
        with source.open("rb") as handle:
            return self.stage_stream(handle, progress)

    def stage_stream(self, stream: IO[bytes], progress: Progress | None = None) -> Staged:
        """Copy `stream` to a temporary name while hashing it; `commit` or `discard` it next.

        Staging lets a caller hash and copy a file in the same pass as other work, and decide
        only at the end whether the blob may appear.
        """
        hasher = hashlib.sha256()
        size = 0

        def chunks() -> Iterator[bytes]:
            nonlocal size
            while chunk := stream.read(CHUNK_SIZE):
                hasher.update(chunk)
                size += len(chunk)
                if progress:
                    progress(len(chunk))
                yield chunk

        tmp = self._write_tmp(chunks())
        return Staged(tmp, hasher.hexdigest(), size)

    def commit(self, staged: Staged) -> Blob:
        """Move a staged blob under its digest (or drop it when that content is stored).

        A stored blob that no longer matches its digest is replaced by the staged bytes, so
        storing the same content again repairs a corrupted blob.
        """
        if self.exists(staged.digest) and self._intact(staged.digest):
            self.discard(staged)
            return Blob(staged.digest, staged.size, created=False)
        final = self.key(staged.digest)
        try:
            self.fs.makedirs(final.rsplit("/", 1)[0], exist_ok=True)
            # A rename is atomic on a local disk; on S3 the copy appears whole or not at all.
            self.fs.mv(staged.tmp_key, final)
        except OSError as exc:
            self.discard(staged)
            raise ArtifactError(f"cannot store blob {staged.digest} in {self.url}: {exc}") from None
        return Blob(staged.digest, staged.size, created=True)

    def _intact(self, digest: str) -> bool:
        try:
            self._verified_hash(digest)
        except ArtifactCorrupted:
            return False
        return True

    def _verified_hash(self, digest: str) -> None:
        hasher = hashlib.sha256()
        with self.fs.open(self.key(digest), "rb", **self._read_options()) as source:
            while chunk := source.read(CHUNK_SIZE):
                hasher.update(chunk)
        _verify(digest, hasher.hexdigest(), self.key(digest))

    def _read_options(self) -> dict[str, Any]:
        # s3fs reads ahead and buffers 50 MiB blocks by default: stream in our own chunks.
        return {} if self.is_local else {"block_size": CHUNK_SIZE, "cache_type": "none"}

    def _write_options(self) -> dict[str, Any]:
        # s3fs uploads a whole block as one part (50 MiB by default); 8 MiB keeps memory low
        # while staying above S3's 5 MiB minimum part size.
        return {} if self.is_local else {"block_size": 8 * 1024 * 1024}

    def discard(self, staged: Staged) -> None:
        """Forget a staged blob that must not be stored."""
        self._remove_quietly(staged.tmp_key)

    def _write_tmp(self, chunks: Iterator[bytes]) -> str:
        tmp = self._tmp_key()
        try:
            self.fs.makedirs(f"{self.root}/tmp", exist_ok=True)
            with self.fs.open(tmp, "wb", **self._write_options()) as handle:
                for chunk in chunks:
                    handle.write(chunk)
                if self.is_local:
                    handle.flush()
                    os.fsync(handle.fileno())
        except BaseException as exc:
            self._remove_quietly(tmp)
            if isinstance(exc, OSError):
                raise ArtifactError(f"cannot write to artifact store {self.url}: {exc}") from None
            raise
        return tmp

    def _remove_quietly(self, key: str) -> None:
        with contextlib.suppress(OSError, FileNotFoundError):
            self.fs.rm(key)

    # -- reading --------------------------------------------------------------------------

    def exists(self, digest: str) -> bool:
        return bool(self.fs.exists(self.key(digest)))

    def size(self, digest: str) -> int:
        self._require(digest)
        return int(self.fs.size(self.key(digest)))

    def read_bytes(self, digest: str) -> bytes:
        """A small blob's bytes, verified against its digest."""
        self._require(digest)
        data = bytes(self.fs.cat_file(self.key(digest)))
        _verify(digest, hashlib.sha256(data).hexdigest(), self.key(digest))
        return data

    def fetch(self, digest: str, progress: Progress | None = None) -> Path:
        """A local path holding the blob's verified bytes.

        Local blobs are hashed in place; remote ones are downloaded into the cache folder while
        being hashed, and only a download that matches is moved into place.
        """
        self._require(digest)
        if self.is_local:
            path = Path(self.key(digest))
            _verify(digest, sha256_file(path, progress), str(path))
            return path
        return self._fetch_remote(digest, progress)

    def _fetch_remote(self, digest: str, progress: Progress | None) -> Path:
        if self.cache_dir is None:
            raise ConfigError("a remote artifact store needs a cache folder to fetch into")
        cached = self.cache_dir / "sha256" / digest[:2] / digest
        if cached.is_file():
            if sha256_file(cached) == digest:
                return cached
            # The local copy was damaged; the store's copy is the truth, so fetch it again.
            cached.unlink()
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_name(f".{digest}.{uuid.uuid4().hex}.part")
        hasher = hashlib.sha256()
        try:
            with (
                self.fs.open(self.key(digest), "rb", **self._read_options()) as source,
                partial.open("wb") as target,
            ):
                while chunk := source.read(CHUNK_SIZE):
                    hasher.update(chunk)
                    target.write(chunk)
                    if progress:
                        progress(len(chunk))
            _verify(digest, hasher.hexdigest(), self.key(digest))
            partial.replace(cached)
        finally:
            partial.unlink(missing_ok=True)
        return cached

    def _require(self, digest: str) -> None:
        if not self.exists(digest):
            raise ArtifactNotFound(
                f"no blob sha256:{digest} in artifact store {self.url}; it was never stored "
                "or has been deleted"
            )

    def digests(self) -> Iterator[str]:
        """Every stored digest (used by checks and garbage collection)."""
        base = f"{self.root}/sha256"
        if not self.fs.exists(base):
            return
        for key in self.fs.find(base):
            name = str(key).rsplit("/", 1)[-1]
            if _DIGEST.match(name):
                yield name

    def delete(self, digest: str) -> None:
        """Remove a blob; used to undo a blob written by an operation that then failed."""
        self._remove_quietly(self.key(digest))


def _check_digest(digest: str) -> None:
    if not _DIGEST.match(digest):
        raise InvalidInput(f"{digest!r} is not a sha256 digest: expected 64 lowercase hex digits")


def _verify(expected: str, actual: str, where: str) -> None:
    if expected != actual:
        raise ArtifactCorrupted(
            f"artifact sha256:{expected} at {where} is corrupted (its bytes hash to "
            f"sha256:{actual}); it was not loaded. Restore it from a backup, or store the same "
            "content again, which replaces a corrupted blob"
        )
